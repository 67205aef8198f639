package engine

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
)

func testRegistry(h Host) *Registry {
	h.Store = memstore.New(time.Now).Backend()
	h.NodeID = "n1"
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewRegistry(h)
}

// One replica in a cluster would keep every fencing token on one disk.
func TestReplicasOneRefusedInCluster(t *testing.T) {
	spec := BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1}

	_, err := testRegistry(Host{Clustered: true, ClusterSize: 3}).Bucket(context.Background(), spec)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "Replicas 1 in a cluster")
	require.ErrorContains(t, err, "AllowSingleReplica")

	_, err = testRegistry(Host{Clustered: true, ClusterSize: 3, AllowSingleReplica: true}).Bucket(context.Background(), spec)
	require.NoError(t, err, "opted in")
	_, err = testRegistry(Host{ClusterSize: 1}).Bucket(context.Background(), spec)
	require.NoError(t, err, "single node")
}

// A lease's end runs OnEnd callbacks on the goroutine that ends it, so a
// handler ctx cancelled from one is done, with everything derived from
// it, before end returns.
func TestLeaseEndCancelsSynchronously(t *testing.T) {
	l := newLease(nil, "k", "c", 7, nil)
	ctx, cancel := context.WithCancel(context.Background())
	l.OnEnd(cancel)
	derived, stop := context.WithTimeout(ctx, time.Hour)
	defer stop()
	l.end()
	require.Error(t, derived.Err(), "derived ctx cancelled in the same step")

	late, cancelLate := context.WithCancel(context.Background())
	l.OnEnd(cancelLate)
	require.Error(t, late.Err(), "OnEnd after the end runs at once")
}

// A session whose deadline passed is lost for good: a late acknowledgement
// of a renew sent before the deadline must not make it valid again.
func TestDeadlineNeverExtendedOncePassed(t *testing.T) {
	b, err := testRegistry(Host{}).Bucket(context.Background(), BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1})
	require.NoError(t, err)
	now := b.clock.Now()
	s := &session{id: "s", lost: make(chan struct{})}
	past := newDeadline(now.Add(-2*time.Second), time.Second)
	s.dl.Store(&past)
	b.mu.Lock()
	extended := b.extendLocked(s, now.Add(-100*time.Millisecond))
	b.mu.Unlock()
	require.False(t, extended)
	require.False(t, s.valid(b.clock.Now()))
}

// A renew whose wall and monotonic clocks moved apart by more than the
// margin since the last one (a suspended machine, a stepped clock) gives
// the session up instead of extending it.
func TestRenewGivesUpWhenClocksDisagree(t *testing.T) {
	ctx := context.Background()
	b, err := testRegistry(Host{}).Bucket(ctx, BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1})
	require.NoError(t, err)
	require.True(t, b.createSession(ctx))
	s := b.sess
	require.True(t, b.renew(ctx, s), "clocks agree: renewed")
	s.lastSent.Wall = s.lastSent.Wall.Add(-time.Hour) // an hour of wall time passed, no monotonic time
	require.False(t, b.renew(ctx, s))
	select {
	case <-s.lost:
	default:
		t.Fatal("session kept after the clocks disagreed")
	}
}

// An acquisition that waited for a write slot re-reads the view first: a
// key taken meanwhile gets no CAS write, which could only conflict (with
// thousands of keys campaigning, such writes were most of the traffic).
func TestAcquireWriteSkipsKeyTakenWhileWaitingForSlot(t *testing.T) {
	ctx := context.Background()
	b, err := testRegistry(Host{}).Bucket(ctx, BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1})
	require.NoError(t, err)
	for range cap(b.writeSlot) {
		b.writeSlot <- struct{}{} // every slot busy
	}
	type result struct {
		rev uint64
		err error
	}
	done := make(chan result, 1)
	go func() {
		rev, err := b.acquireWrite(ctx, "k", record{Candidate: "a", Node: "n1", Session: "n1.s"}, 0)
		done <- result{rev, err}
	}()
	b.mu.Lock()
	b.applyLocked(put("k", 5, record{Candidate: "b", Node: "n2", Session: "n2.s"})) // taken while it waits
	b.applyLocked(put(sessionKey("n2.s"), 6, sessionValue{Node: "n2"}))
	b.mu.Unlock()
	<-b.writeSlot // a slot frees
	r := <-done
	require.ErrorIs(t, r.err, ErrHeld)
	_, err = b.kv.Get(ctx, "k")
	require.ErrorIs(t, err, store.ErrNotFound, "no write was sent for the held key")
}
