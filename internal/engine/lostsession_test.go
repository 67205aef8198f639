package engine

import (
	"context"
	"fmt"
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

// pairOn joins n1 over mem with before in front of its writes, and n2
// with its writes failing while cut2 holds, and returns once both can
// acquire and n1 sees n2.
func pairOn(t *testing.T, mem store.Backend, before func(ctx context.Context, op, key string) error, cut2 *atomic.Bool) (n1, n2 *Bucket) {
	n1 = joinOn(t, testkit.Interposed{Backend: mem, Before: before}, "n1")
	n2 = joinOn(t, faulty(mem, func(string, string) bool { return cut2.Load() }), "n2")
	awaitAcquirable(t, n1)
	awaitAcquirable(t, n2)
	for members, _ := n1.Members(); !slices.Contains(members, "n2"); members, _ = n1.Members() {
		time.Sleep(time.Millisecond)
	}
	return n1, n2
}

// awaitNewSession returns once b has a session other than old.
func awaitNewSession(b *Bucket, old string) {
	for b.SessionID() == "" || b.SessionID() == old {
		time.Sleep(time.Millisecond)
	}
}

// lockedAcquirable joins n1 on a fresh in-memory store, waits until it can
// acquire, and returns it locked until the test ends.
func lockedAcquirable(t *testing.T) *Bucket {
	b := joinOn(t, memstore.New(time.Now).Backend(), "n1")
	awaitAcquirable(t, b)
	b.mu.Lock()
	t.Cleanup(b.mu.Unlock)
	return b
}

// keepFresh writes a key of its own to bucket b of mem every 100 ms until
// the returned stop is called or the test ends: deliveries keep the nodes'
// views fresh (not silent), so that their observers expire what comes due.
func keepFresh(t *testing.T, mem store.Backend) (stop func()) {
	raw, err := mem.Lookup(t.Context(), "b")
	require.NoError(t, err)
	tick := time.NewTicker(100 * time.Millisecond)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-t.Context().Done():
				return
			case <-tick.C:
				_, _ = raw.Bucket.Create(t.Context(), fmt.Sprintf("noise.%d", i), []byte("{}"))
			}
		}
	}()
	t.Cleanup(tick.Stop)
	return tick.Stop
}

// afterOutage runs a store outage longer than the TTL for nodes n1 and n2
// (TTL 1 s), ends it for n1 only, and returns n1, its session writes in
// the order sent, its old session's ID, and when its new session started.
func afterOutage(t *testing.T) (n1 *Bucket, writes func() []string, old string, restarted time.Time) {
	mem := memstore.New(time.Now).Backend()
	var cut1, cut2 atomic.Bool
	var mu sync.Mutex
	var sent []string
	n1, _ = pairOn(t, mem, func(_ context.Context, op, key string) error {
		if cut1.Load() {
			return errInjected
		}
		if strings.HasPrefix(key, SessionPrefix) {
			mu.Lock()
			sent = append(sent, op+" "+key)
			mu.Unlock()
		}
		return nil
	}, &cut2)
	old = n1.SessionID()
	cut1.Store(true)
	cut2.Store(true)
	time.Sleep(2 * time.Second) // both sessions run out
	cut1.Store(false)
	awaitNewSession(n1, old)
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
		b := lockedAcquirable(t)
		b.grantAfter = b.clock.Now().Mono - time.Second // a grace begun on a view that lacked the record, due now
		b.applyLocked(store.Entry{Key: genesisKey, Value: []byte("{}"), Rev: b.v.lastRev + 1, Op: store.Put})
		assert.Zero(t, b.grantAfter, "the grace ended when the view showed the record")
	})
}

// A node without a live session deletes no session, even where the store
// still takes its deletes. It expires nobody: it could not take what the
// expiry frees, and the others likely lost their sessions to the same
// outage. (In a chaos split, the first node back expired a peer's session
// two seconds before its own new one started, and then took that peer's
// shards.) Nor does it delete its own lost session before its new one
// exists. (In a chaos kill, a node whose create had failed deleted its
// lost session as the store came back, and a restarted peer took its
// shards at once.)
func TestNoSessionDeletesNoSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New(time.Now).Backend()
		var cut atomic.Bool
		var mu sync.Mutex
		var deletedWhileCut []string
		n1, _ := pairOn(t, mem, func(_ context.Context, op, key string) error {
			if !cut.Load() {
				return nil
			}
			if op == "delete" {
				mu.Lock()
				deletedWhileCut = append(deletedWhileCut, key)
				mu.Unlock()
				return nil // deletes still land; its session writes do not
			}
			return errInjected
		}, &cut)
		keepFresh(t, mem) // n2's session comes due in n1's view
		cut.Store(true)
		time.Sleep(3 * time.Second) // n1's session is lost; n2's is unrenewed for longer than a TTL
		require.Empty(t, n1.SessionID(), "n1's session was lost")
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, deletedWhileCut, "n1 deleted sessions while it had none")
	})
}

// A node cut off from the store retries its session with backoff, not in
// a spin (a peer's session coming due for expiry does not wake it: it
// expires nobody without a session), and at most TTL/2 apart, so that
// every node is back well within the TTL that the first node back gives
// the others (observer.restart).
func TestCutOffNodeRetriesItsSessionCalmlyAndPromptly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New(time.Now).Backend()
		var cut atomic.Bool
		var creates atomic.Int32
		n1, _ := pairOn(t, mem, func(_ context.Context, op, key string) error {
			if op == "create" && strings.HasPrefix(key, sessionKey("n1.")) {
				creates.Add(1)
			}
			if cut.Load() {
				return errInjected
			}
			return nil
		}, &cut)
		noise := keepFresh(t, mem) // so n2's session comes due in n1's view while n1 has none
		const ttl = time.Second
		for round := range 10 {
			old := n1.SessionID()
			cut.Store(true)
			creates.Store(0)
			time.Sleep(3 * ttl)
			if round == 0 {
				noise()
				// Waits doubling from RetryPeriod (TTL/6) to TTL/2, each
				// jittered down to half: 8 or 9 tries in 3 TTL here; a
				// spin makes thousands.
				assert.LessOrEqual(t, creates.Load(), int32(20), "session creates while cut off for 3 s")
			}
			cut.Store(false)
			back := time.Now()
			for n1.SessionID() == "" || n1.SessionID() == old {
				time.Sleep(time.Millisecond)
			}
			require.LessOrEqual(t, time.Since(back), ttl/2, "round %d: a new session within TTL/2 of the store's return", round)
		}
	})
}

// A node keeps its lost session until it can acquire again: its new
// session is live, but the store refuses its watch (as JetStream does for
// seconds after an outage, "temporarily unavailable"), so it cannot take
// its keys back yet; deleting the lost session would free them for the
// others to rescue meanwhile. Once its view is read again, it deletes it.
func TestLostSessionKeptUntilTheViewIsReadAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cutWrites, cutWatch atomic.Bool
		var mu sync.Mutex
		var deleted []string
		n1 := joinOn(t, testkit.Interposed{Backend: memstore.New(time.Now).Backend(), Before: func(_ context.Context, op, key string) error {
			switch {
			case cutWrites.Load():
				return errInjected
			case op == "delete":
				mu.Lock()
				deleted = append(deleted, key)
				mu.Unlock()
			}
			return nil
		}, BeforeWatch: func(context.Context) error {
			if cutWatch.Load() {
				return errInjected
			}
			return nil
		}}, "n1")
		awaitAcquirable(t, n1)
		old := n1.SessionID()
		cutWrites.Store(true)
		cutWatch.Store(true)
		time.Sleep(2 * time.Second) // the session runs out
		cutWrites.Store(false)
		awaitNewSession(n1, old)
		time.Sleep(2 * time.Second)
		mu.Lock()
		assert.NotContains(t, deleted, sessionKey(old), "deleted while its view could not be read")
		mu.Unlock()
		cutWatch.Store(false)
		awaitAcquirable(t, n1)
		for {
			mu.Lock()
			done := slices.Contains(deleted, sessionKey(old))
			mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
	})
}

// A view whose read ended short of the session's create grants nothing:
// JetStream may serve a watch from a replica still catching up, which
// reports its initial values complete at its own tail (before a purge,
// perhaps), though the read began after the session was created.
func TestViewShortOfTheSessionsCreateGrantsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := lockedAcquirable(t)
		now := b.clock.Now()
		b.v.lastRev = b.sess.createdRev - 1 // read from a replica that had not reached the create
		assert.False(t, b.acquirableLocked(now), "acquirable on a view short of the session's create")
		b.v.lastRev = b.sess.createdRev
		assert.True(t, b.acquirableLocked(now), "acquirable once the view reached it")
	})
}
