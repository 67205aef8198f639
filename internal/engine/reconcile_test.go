package engine

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// faulty is a store whose writes fail before reaching it while fail(op,
// key) says so, as requests that time out unsent.
func faulty(st store.Backend, fail func(op, key string) bool) store.Backend {
	return testkit.Interposed{Backend: st, Before: func(_ context.Context, op, key string) error {
		if fail(op, key) {
			return errInjected
		}
		return nil
	}}
}

var errInjected = errors.New("injected: request not sent")

// A release whose delete never reached the store leaves a record that
// names this node's live session but no lease: the keeper deletes it, and
// keeps trying while its own deletes fail, though no record changes in
// the meantime to remind it.
func TestReleasedRecordDeletedAfterFailedDeletes(t *testing.T) {
	for _, fails := range []int32{1, 3} {
		synctest.Test(t, func(t *testing.T) {
			var n atomic.Int32
			reg := NewRegistry(Host{
				Store:  faulty(memstore.New(time.Now).Backend(), func(op, _ string) bool { return op == "delete" && n.Add(-1) >= 0 }),
				NodeID: "n1",
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			defer reg.Close(time.Second)
			b, err := reg.Bucket(t.Context(), BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1})
			require.NoError(t, err)
			defer b.Join()()
			var l *Lease
			for l == nil {
				time.Sleep(10 * time.Millisecond) // a new bucket: one TTL until genesis
				l, _ = b.TryAcquire(t.Context(), "k", "c")
			}
			time.Sleep(3 * b.spec.RetryPeriod) // the keeper's rounds have looked at the lease

			n.Store(fails)
			require.Error(t, b.Release(t.Context(), l))
			time.Sleep(time.Duration(fails+2) * b.spec.RetryPeriod)
			_, err = b.kv.Get(t.Context(), "k")
			require.ErrorIs(t, err, store.ErrNotFound, "%d failed deletes: the record is freed", fails)
		})
	}
}

// A handover that the named node refuses leaves a record that names its
// session but no lease: the keeper there deletes it, freeing the key.
func TestRefusedHandoverFreed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memstore.New(time.Now).Backend()
		from, to := joinOn(t, st, "n1"), joinOn(t, st, "n2")
		to.Accept(func(*Lease) bool { return false })
		var l *Lease
		for l == nil {
			time.Sleep(10 * time.Millisecond) // a new bucket: one TTL until genesis
			l, _ = from.TryAcquire(t.Context(), "k", "c")
		}
		for {
			from.mu.Lock()
			_, seen := from.v.liveSession("n2")
			from.mu.Unlock()
			if seen {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		require.NoError(t, from.HandOver(t.Context(), l, "n2"))
		time.Sleep(3 * to.spec.RetryPeriod)
		_, err := from.kv.Get(t.Context(), "k")
		require.ErrorIs(t, err, store.ErrNotFound, "the refused record is deleted")
	})
}

// A new bucket grants leadership one TTL after its view first lacked the
// genesis record, not at the first renew after that: the sync wakes the
// keeper, and the session is renewed early so that the genesis write,
// which must follow an acknowledged renew, goes out at once. The session's
// create takes 100 ms, so that the view is complete while the keeper is
// busy with it.
func TestGenesisWrittenWhenDue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const createTakes = 100 * time.Millisecond
		reg := NewRegistry(Host{
			Store: testkit.Interposed{Backend: memstore.New(time.Now).Backend(), Before: func(_ context.Context, op, key string) error {
				if op == "create" && strings.HasPrefix(key, SessionPrefix) {
					time.Sleep(createTakes)
				}
				return nil
			}},
			NodeID: "n1",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		defer reg.Close(time.Second)
		// Renews at 0, 300, 600, 900 and 1200 ms: none at the TTL.
		timing := Timing{TTL: time.Second, RenewDeadline: 660 * time.Millisecond, RetryPeriod: 300 * time.Millisecond}
		b, err := reg.Bucket(t.Context(), BucketSpec{Name: "b", Timing: timing, Replicas: 1})
		require.NoError(t, err)
		t0 := time.Now()
		defer b.Join()()
		awaitAcquirable(t, b)
		took := time.Since(t0)
		require.GreaterOrEqual(t, took, timing.TTL, "nothing granted for a TTL")
		require.Less(t, took, timing.TTL+createTakes+50*time.Millisecond, "granted when the TTL ran out")
	})
}

// A purge during a genesis grace costs this node its session; its next
// session begins a CAS chain that cannot tell of anything before it, so
// the grace must run a whole TTL from that session's start, not from the
// loss of the old one: a holder whose record the purge erased may act
// until a TTL after the purge.
func TestNewSessionRestartsTheGrace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New(time.Now)
		var failing atomic.Bool
		reg := NewRegistry(Host{
			Store: faulty(mem.Backend(), func(op, key string) bool {
				return op == "create" && failing.Load() && strings.HasPrefix(key, SessionPrefix)
			}),
			NodeID: "n1",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		defer reg.Close(time.Second)
		timing := Timing{TTL: time.Second}
		b, err := reg.Bucket(t.Context(), BucketSpec{Name: "b", Timing: timing, Replicas: 1})
		require.NoError(t, err)
		defer b.Join()()
		time.Sleep(300 * time.Millisecond) // the grace of the new bucket runs
		failing.Store(true)
		mem.Purge("b")
		time.Sleep(700 * time.Millisecond) // the session is lost; no new one meanwhile
		b.mu.Lock()
		old := b.sess
		b.mu.Unlock()
		failing.Store(false)
		var started time.Time
		deadline := time.Now().Add(time.Minute)
		for !b.Acquirable() {
			require.True(t, time.Now().Before(deadline), "never acquirable again")
			b.mu.Lock()
			if b.sess != nil && b.sess != old && started.IsZero() {
				started = time.Now()
			}
			b.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
		require.False(t, started.IsZero(), "a new session began")
		require.GreaterOrEqual(t, time.Since(started), timing.TTL, "granted less than a TTL after the new session began")
	})
}

// A purge shows only as CAS conflicts the view cannot explain: the node
// re-reads the bucket a RetryPeriod after the first one, not only once its
// session has run out (RenewDeadline) and a new one forces a read.
func TestUnexplainedConflictRereadsTheBucket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mem := memstore.New(time.Now)
		reg := NewRegistry(Host{Store: mem.Backend(), NodeID: "n1", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		defer reg.Close(time.Second)
		timing := Timing{TTL: 3 * time.Second} // RetryPeriod 500 ms, RenewDeadline 2 s
		b, err := reg.Bucket(t.Context(), BucketSpec{Name: "b", Timing: timing, Replicas: 1})
		require.NoError(t, err)
		defer b.Join()()
		awaitAcquirable(t, b) // a new bucket: one TTL until genesis
		b.mu.Lock()
		before := b.reads
		b.mu.Unlock()
		mem.Purge("b")
		purged := time.Now()
		for {
			b.mu.Lock()
			reads := b.reads
			b.mu.Unlock()
			if reads > before {
				break
			}
			time.Sleep(time.Millisecond)
		}
		require.Less(t, time.Since(purged), 1250*time.Millisecond, "re-read within two RetryPeriods and a bit, not after the session ran out")
	})
}

// awaitAcquirable waits until b can acquire, failing after a minute (of
// virtual time: a guard removed by make mutate must fail, not hang).
func awaitAcquirable(t *testing.T, b *Bucket) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !b.Acquirable() {
		require.True(t, time.Now().Before(deadline), "never acquirable")
		time.Sleep(time.Millisecond)
	}
}

// joinOn opens bucket b (TTL 1 s, one replica) over st as node and joins
// it until t ends.
func joinOn(t *testing.T, st store.Backend, node string) *Bucket {
	reg := NewRegistry(Host{Store: st, NodeID: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { reg.Close(time.Second) })
	b, err := reg.Bucket(t.Context(), BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1})
	require.NoError(t, err)
	t.Cleanup(b.Join())
	return b
}

// A session may acquire only on a view whose read began after the
// session did: a read that began before it may predate a purge that the
// session's CAS chain cannot reveal. A read started afterwards (the
// re-read every new session asks for) makes it acquirable again.
func TestSessionAcquiresOnlyOnALaterRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := joinOn(t, memstore.New(time.Now).Backend(), "n1")
		awaitAcquirable(t, b)
		b.mu.Lock()
		b.sess.readsBefore = b.reads // as if the session began after the current read
		b.mu.Unlock()
		require.False(t, b.Acquirable(), "acquirable on a read that began before the session")
		b.mu.Lock()
		b.requestRewatchLocked()
		b.mu.Unlock()
		awaitAcquirable(t, b)
	})
}

// lostAcks is a store whose writes of key land but report an error half a
// second later, as when the acknowledgement is lost on the way back and
// the request times out.
type lostAcks struct {
	store.Backend
	key string
}

func (s lostAcks) Open(ctx context.Context, spec store.Spec) (store.Opened, error) {
	o, err := s.Backend.Open(ctx, spec)
	o.Bucket = lostAckBucket{o.Bucket, s.key}
	return o, err
}

type lostAckBucket struct {
	store.Bucket
	key string
}

func (b lostAckBucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := b.Bucket.Update(ctx, key, value, rev)
	if err == nil && key == b.key {
		time.Sleep(500 * time.Millisecond)
		return 0, errInjected
	}
	return n, err
}

// An acquisition whose write landed but reported an error (a lost ack)
// leaves a record that names this node's live session but no lease. The
// record's delivery came while the acquisition was still under way, so
// the keeper's look then left it alone; the failure itself makes the
// keeper look again (nothing else changes to remind it), and it deletes
// the record, freeing the key.
func TestFailedAcquisitionRecordFreed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := joinOn(t, lostAcks{memstore.New(time.Now).Backend(), "k"}, "n1")
		awaitAcquirable(t, b)
		time.Sleep(3 * b.spec.RetryPeriod) // the keeper's rounds found nothing to do
		_, err := b.TryAcquire(t.Context(), "k", "c")
		require.ErrorIs(t, err, errInjected)
		time.Sleep(3 * b.spec.RetryPeriod)
		_, err = b.kv.Get(t.Context(), "k")
		require.ErrorIs(t, err, store.ErrNotFound, "the record without a lease is deleted")
	})
}
