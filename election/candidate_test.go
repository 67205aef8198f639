package election

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store/memstore"
)

// On a resign, OnSteppingDown returns before the key is released, so work
// it stops never overlaps the successor's term.
func TestResignStepsDownBeforeRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := engine.NewRegistry(engine.Host{
			Store:  memstore.New(time.Now).Backend(),
			NodeID: "n1",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		defer reg.Close(time.Second)
		var mu sync.Mutex
		var steppedDown, elected time.Time
		a, err := NewCandidate(t.Context(), reg, CandidateConfig{CandidateID: "a", BucketName: "b", KeyName: "k", TTL: time.Second, Replicas: 1,
			OnSteppingDown: func() {
				time.Sleep(300 * time.Millisecond) // the user's work winding down
				mu.Lock()
				steppedDown = time.Now()
				mu.Unlock()
			}})
		require.NoError(t, err)
		b, err := NewCandidate(t.Context(), reg, CandidateConfig{CandidateID: "b", BucketName: "b", KeyName: "k", TTL: time.Second, Replicas: 1,
			OnElected: func() {
				mu.Lock()
				elected = time.Now()
				mu.Unlock()
			}})
		require.NoError(t, err)

		stopA := run(t, a)
		for !a.IsLeader() { // the bucket is new: one TTL until genesis
			time.Sleep(10 * time.Millisecond)
		}
		stopB := run(t, b)
		time.Sleep(100 * time.Millisecond)
		stopA()
		for !b.IsLeader() {
			time.Sleep(time.Millisecond)
		}
		stopB()
		mu.Lock()
		defer mu.Unlock()
		require.False(t, steppedDown.IsZero())
		require.False(t, elected.Before(steppedDown), "b elected %v before a's OnSteppingDown returned", steppedDown.Sub(elected))
	})
}

// run runs c until the returned function, which checks that Run
// returned nil.
func run(t *testing.T, c *Candidate) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	return func() {
		cancel()
		require.NoError(t, <-done)
	}
}

// newTestRegistry is node's registry over st, closed when t ends.
func newTestRegistry(t *testing.T, st *memstore.Store, node string) *engine.Registry {
	reg := engine.NewRegistry(engine.Host{Store: st.Backend(), NodeID: node, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() { reg.Close(time.Second) })
	return reg
}

// A candidate whose Run returned is never handed the key: it stops
// waiting for it before it resigns.
func TestStoppedCandidateIsNotHandedTheKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memstore.New(time.Now)
		cfg := func(id string) CandidateConfig {
			return CandidateConfig{CandidateID: id, BucketName: "b", KeyName: "k", TTL: time.Second, Replicas: 1}
		}
		a, err := NewCandidate(t.Context(), newTestRegistry(t, st, "n1"), cfg("a"))
		require.NoError(t, err)
		b, err := NewCandidate(t.Context(), newTestRegistry(t, st, "n2"), cfg("b"))
		require.NoError(t, err)
		defer b.bucket.Join()() // n2 stays in the bucket after b stops
		stopA := run(t, a)
		for !a.IsLeader() { // the bucket is new: one TTL until genesis
			time.Sleep(10 * time.Millisecond)
		}
		stopB := run(t, b)
		time.Sleep(time.Second) // b waits, and n2's session says so
		stopB()
		time.Sleep(time.Second) // n2's session no longer says so

		stopA()
		time.Sleep(500 * time.Millisecond)
		require.False(t, b.IsLeader(), "a candidate that does not run leads")
	})
}

// OnSteppingDown runs only for a lease that OnElected ran for: a lease
// handed over and lost before Run told the user is dropped silently.
func TestSteppingDownOnlyAfterElected(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := newTestRegistry(t, memstore.New(time.Now), "n1")
		bucket, err := reg.Bucket(t.Context(), engine.BucketSpec{Name: "b", Timing: engine.Timing{TTL: time.Second}, Replicas: 1})
		require.NoError(t, err)
		defer bucket.Join()()
		var l *engine.Lease
		for l == nil {
			time.Sleep(10 * time.Millisecond)
			l, _ = bucket.TryAcquire(t.Context(), "k", "a")
		}
		var elected, steppedDown int
		c := &Candidate{log: slog.New(slog.NewTextHandler(io.Discard, nil)), cfg: CandidateConfig{
			OnElected:      func() { elected++ },
			OnSteppingDown: func() { steppedDown++ },
		}}
		c.lease.Store(l)
		c.stepDown()
		require.Equal(t, 0, steppedDown, "stepped down without being elected")
		c.lease.Store(l)
		c.tell(l)
		c.tell(l)
		c.stepDown()
		require.Equal(t, []int{1, 1}, []int{elected, steppedDown})
	})
}
