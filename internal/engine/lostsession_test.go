package engine

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// afterOutage runs a store outage longer than the TTL for nodes n1 and n2
// (TTL 1 s), ends it for n1 only, and returns n1, its session writes in
// the order sent, its old session's ID, and when its new session started.
func afterOutage(t *testing.T) (n1 *Bucket, writes func() []string, old string, restarted time.Time) {
	mem := memstore.New(time.Now).Backend()
	var cut1, cut2 atomic.Bool
	var mu sync.Mutex
	var sent []string
	n1 = joinOn(t, testkit.Interposed{Backend: mem, Before: func(_ context.Context, op, key string) error {
		if cut1.Load() {
			return errInjected
		}
		if strings.HasPrefix(key, SessionPrefix) {
			mu.Lock()
			sent = append(sent, op+" "+key)
			mu.Unlock()
		}
		return nil
	}}, "n1")
	n2 := joinOn(t, faulty(mem, func(string, string) bool { return cut2.Load() }), "n2")
	awaitAcquirable(t, n1)
	awaitAcquirable(t, n2)
	for members, _ := n1.Members(); !slices.Contains(members, "n2"); members, _ = n1.Members() {
		time.Sleep(time.Millisecond)
	}
	old = n1.SessionID()
	cut1.Store(true)
	cut2.Store(true)
	time.Sleep(2 * time.Second) // both sessions run out
	cut1.Store(false)
	for n1.SessionID() == "" || n1.SessionID() == old {
		time.Sleep(time.Millisecond)
	}
	return n1, func() []string { mu.Lock(); defer mu.Unlock(); return slices.Clone(sent) }, old, time.Now()
}

// A node whose session was lost creates its new session before it deletes
// the old one: the other nodes never see it without a session, so they
// never plan without it for a moment (and take its shards).
func TestNewSessionBeforeTheLostOnesDelete(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n1, writes, old, _ := afterOutage(t)
		deleted := "delete " + sessionKey(old)
		for !slices.Contains(writes(), deleted) {
			time.Sleep(time.Millisecond)
		}
		w := writes()
		created := slices.Index(w, "create "+sessionKey(n1.SessionID()))
		require.GreaterOrEqual(t, created, 0, "the new session's create in %v", w)
		assert.Less(t, created, slices.Index(w, deleted), "the new session is created first: %v", w)
	})
}

// A node whose session was lost (a store outage, most often) gives every
// other session a TTL from its new session's start before expiring it:
// they likely lost theirs to the same outage and need time to come back.
// Without the restart, n2's session, unrenewed for 2 s, would be expired
// at once.
func TestNewSessionRestartsTheOthersCountdowns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n1, _, _, restarted := afterOutage(t)
		for members, _ := n1.Members(); slices.Contains(members, "n2"); members, _ = n1.Members() {
			require.Less(t, time.Since(restarted), time.Minute, "n2's session never expired")
			time.Sleep(time.Millisecond)
		}
		assert.GreaterOrEqual(t, time.Since(restarted), time.Second, "expired a TTL after n1's new session started")
	})
}

// A grace ends as soon as the view shows the genesis record, not at the
// keeper's next round: a re-read that finds the record purged a moment
// later must start a new grace, a TTL from that read, not find the old one
// due and write the record at once.
func TestGenesisSeenEndsTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := joinOn(t, memstore.New(time.Now).Backend(), "n1")
		awaitAcquirable(t, b)
		b.mu.Lock()
		defer b.mu.Unlock()
		b.grantAfter = b.clock.Now().Mono - time.Second // a grace begun on a view that lacked the record, due now
		b.applyLocked(store.Entry{Key: genesisKey, Value: []byte("{}"), Rev: b.v.lastRev + 1, Op: store.Put})
		assert.Zero(t, b.grantAfter, "the grace ended when the view showed the record")
	})
}
