package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

func put(key string, rev uint64, v any) store.Entry {
	return store.Entry{Key: key, Rev: rev, Op: store.Put, Value: encode(v)}
}

func del(key string, rev uint64) store.Entry {
	return store.Entry{Key: key, Rev: rev, Op: store.Delete}
}

// A watcher can deliver a record before its session (the session's older
// revision was dropped when it renewed during the read): the record must
// not look free, or another node would take a key a live session holds.
func TestRecordBeforeItsSessionIsHeld(t *testing.T) {
	const ttl = time.Second
	v := newView(ttl, ttl/2)
	v.resync()
	v.apply(put("k", 10, record{Candidate: "a", Node: "n1", Session: "n1.s"}), 0)
	v.finishSync(0)
	h, _ := v.holder("k")
	require.Equal(t, "a", h.Candidate, "a record whose session the view has not seen yet is held")

	v.apply(put(sessionKey("n1.s"), 12, sessionValue{Node: "n1"}), 100*time.Millisecond)
	h, _ = v.holder("k")
	require.Equal(t, "a", h.Candidate, "and still once the session shows up")
	c, _, _ := v.settleUnseen(2 * ttl)
	require.Empty(t, c.freed, "a session seen is not settled by the unseen rule")
}

func TestRecordOfAnEndedSessionIsFree(t *testing.T) {
	const ttl = time.Second
	v := newView(ttl, ttl/2)
	v.resync()
	v.apply(put("k", 10, record{Candidate: "a", Node: "n1", Session: "n1.s"}), 0)
	v.apply(del(sessionKey("n1.s"), 11), 0) // its delete marker, delivered after it
	v.finishSync(0)
	h, _ := v.holder("k")
	require.Empty(t, h.Candidate, "the session's delete marker frees its records at once")
}

func TestUnseenSessionEndsAfterATTLOfALiveStore(t *testing.T) {
	const ttl = time.Second
	v := newView(ttl, ttl/2)
	v.resync()
	v.apply(put("k", 10, record{Candidate: "a", Node: "n1", Session: "n1.s"}), 0)
	v.finishSync(0)

	v.apply(put("other", 20, record{Candidate: "b", Node: "n2", Session: "n2.s"}), 400*time.Millisecond)
	v.apply(put(sessionKey("n2.s"), 21, sessionValue{Node: "n2"}), 800*time.Millisecond)
	c, next, ok := v.settleUnseen(900 * time.Millisecond)
	require.Empty(t, c.freed)
	require.True(t, ok)
	require.Equal(t, ttl, next, "due a TTL after the view first missed it")

	// The store went silent: nothing is concluded from a stale view.
	c, _, _ = v.settleUnseen(ttl + 400*time.Millisecond)
	require.Empty(t, c.freed, "settled while the store was silent")

	v.apply(put(sessionKey("n2.s"), 22, sessionValue{Node: "n2"}), ttl+500*time.Millisecond)
	c, _, _ = v.settleUnseen(ttl + 500*time.Millisecond)
	require.Equal(t, []string{"k"}, c.freed)
	h, _ := v.holder("k")
	require.Empty(t, h.Candidate, "free a TTL after its session was first missed")
	h, _ = v.holder("other")
	require.Equal(t, "b", h.Candidate)
}

// A resync that does not deliver a session it knew (renewed while the new
// watch read past it) keeps its records held until a TTL settles it.
func TestResyncKeepsAMissedSessionsRecordsHeld(t *testing.T) {
	const ttl = time.Second
	v := newView(ttl, ttl/2)
	v.resync()
	v.apply(put(sessionKey("n1.s"), 5, sessionValue{Node: "n1"}), 0)
	v.apply(put("k", 10, record{Candidate: "a", Node: "n1", Session: "n1.s"}), 0)
	v.finishSync(0)
	v.resync()
	v.apply(put("k", 10, record{Candidate: "a", Node: "n1", Session: "n1.s"}), 100*time.Millisecond)
	v.finishSync(100 * time.Millisecond)
	h, _ := v.holder("k")
	require.Equal(t, "a", h.Candidate)
}
