package engine

import (
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
)

// twoNodes opens bucket b on nodes n1 and n2 over one store whose writes
// pass through fail, and returns them once each sees the other's session
// and n1 holds key k.
func twoNodes(t *testing.T, fail func(op, key string) bool) (n1, n2 *Bucket, l *Lease) {
	st := faulty(memstore.New(time.Now).Backend(), fail)
	n1, n2 = joinOn(t, st, "n1"), joinOn(t, st, "n2")
	for l == nil {
		time.Sleep(10 * time.Millisecond) // a new bucket: one TTL until genesis
		l, _ = n1.TryAcquire(t.Context(), "k", "a")
	}
	awaitAcquirable(t, n2)
	return n1, n2, l
}

// advertised waits until n1's view shows n2's session advertising want as
// the candidate waiting for k.
func advertised(t *testing.T, n1 *Bucket, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n1.mu.Lock()
		candidate, _, _, ok := n1.waiterLocked("k")
		n1.mu.Unlock()
		if ok && candidate == want {
			return
		}
		require.True(t, time.Now().Before(deadline), "n2's waiter %q never advertised", want)
		time.Sleep(time.Millisecond)
	}
}

// A holder that resigns hands its key to the candidate waiting on another
// node in one write, no release: the waiter takes a lease at that write's
// revision.
func TestResignHandsTheKeyToAWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var deletes atomic.Int32
		n1, n2, l := twoNodes(t, func(op, key string) bool {
			if op == "delete" && key == "k" {
				deletes.Add(1)
			}
			return false
		})
		took := make(chan *Lease, 1)
		defer n2.Wait("k", "b", func(l *Lease) bool { took <- l; return true })()
		advertised(t, n1, "b")

		require.NoError(t, n1.Resign(t.Context(), l))
		assert.False(t, l.Valid(), "the resigned lease ends")
		select {
		case got := <-took:
			assert.Greater(t, got.Rev(), l.Rev())
			assert.True(t, got.Valid())
			h, _ := n2.Holder("k")
			assert.Equal(t, "b", h.Candidate)
		case <-time.After(time.Second):
			t.Fatal("the waiter was not handed the key")
		}
		assert.Zero(t, deletes.Load(), "no release")
	})
}

// Once a wait has ended, its candidate is never handed a lease, even by a
// holder whose view still shows it advertised; nor does another candidate
// waiting for the key on that node take a lease written for it.
func TestEndedWaitTakesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n1, n2, l := twoNodes(t, func(string, string) bool { return false })
		var mu sync.Mutex
		var took []string
		taker := func(who string) func(*Lease) bool {
			return func(*Lease) bool {
				mu.Lock()
				defer mu.Unlock()
				took = append(took, who)
				return true
			}
		}
		stopB1 := n2.Wait("k", "b1", taker("b1"))
		defer n2.Wait("k", "b2", taker("b2"))()
		advertised(t, n1, "b1")

		stopB1() // n1 still sees b1 advertised: nothing has run since
		require.NoError(t, n1.Resign(t.Context(), l))
		time.Sleep(3 * n2.spec.RetryPeriod)
		mu.Lock()
		defer mu.Unlock()
		assert.Empty(t, took, "a lease written for b1 was taken")
		_, err := n1.kv.Get(t.Context(), "k")
		require.ErrorIs(t, err, store.ErrNotFound, "the record nobody took is freed")
	})
}
