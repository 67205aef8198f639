package worker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nonchan7720/ronin/internal/clock"
)

// fakeLease is a lease whose validity and end the test controls.
type fakeLease struct {
	mu      sync.Mutex
	invalid bool
	ended   bool
	onEnd   []func()
}

func (l *fakeLease) Valid() bool { l.mu.Lock(); defer l.mu.Unlock(); return !l.invalid }
func (l *fakeLease) Rev() uint64 { return 42 }
func (l *fakeLease) OnEnd(f func()) {
	l.mu.Lock()
	if !l.ended {
		l.onEnd = append(l.onEnd, f)
		l.mu.Unlock()
		return
	}
	l.mu.Unlock()
	f()
}

// end ends the lease, calling its callbacks on this goroutine.
func (l *fakeLease) end() {
	l.mu.Lock()
	l.invalid, l.ended = true, true
	fs := l.onEnd
	l.mu.Unlock()
	for _, f := range fs {
		f()
	}
}

func job(l Lease, call func(ctx context.Context, shardID int, rev uint64) error) Job {
	return Job{Shard: 3, Lease: l, Call: call, Clock: clock.Real(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestPanicAndEarlyReturnRestartWithSameRev(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &fakeLease{}
		var calls, restarts atomic.Int32
		j := job(l, func(ctx context.Context, id int, rev uint64) error {
			if id != 3 || rev != 42 {
				t.Errorf("handler called with shard %d rev %d, want 3 and 42", id, rev)
			}
			switch calls.Add(1) {
			case 1:
				panic("boom")
			case 2:
				return errors.New("failed")
			case 3:
				return nil
			}
			<-ctx.Done()
			return nil
		})
		j.OnRestart = func() { restarts.Add(1) }
		exited := make(chan struct{})
		j.OnExit = func() { close(exited) }
		r := Start(t.Context(), j)
		time.Sleep(10 * time.Second)
		if calls.Load() != 4 || restarts.Load() != 3 {
			t.Fatalf("calls %d restarts %d, want 4 and 3", calls.Load(), restarts.Load())
		}
		l.end()
		<-r.Done()
		<-exited
	})
}

func TestLeaseEndCancelsCtxOnTheEndingGoroutine(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &fakeLease{}
		got := make(chan context.Context, 1)
		r := Start(t.Context(), job(l, func(ctx context.Context, _ int, _ uint64) error {
			got <- ctx
			<-ctx.Done()
			return nil
		}))
		ctx := <-got
		l.end()
		select { // no goroutine hop: Done is closed when end returns
		case <-ctx.Done():
		default:
			t.Fatal("ctx not cancelled when the lease's end callbacks returned")
		}
		<-r.Done()
	})
}

func TestErrReadsTheLeaseBeforeItsEndFires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &fakeLease{}
		got := make(chan context.Context, 1)
		r := Start(t.Context(), job(l, func(ctx context.Context, _ int, _ uint64) error {
			got <- ctx
			<-ctx.Done()
			return nil
		}))
		ctx := <-got
		l.mu.Lock()
		l.invalid = true // deadline passed, timers not yet fired (a paused process)
		l.mu.Unlock()
		if !errors.Is(ctx.Err(), context.Canceled) {
			t.Fatalf("ctx.Err() = %v with an invalid lease, want context.Canceled", ctx.Err())
		}
		l.end()
		<-r.Done()
	})
}

func TestParentCancellationDoesNotEndTheHandler(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &fakeLease{}
		parent, cancel := context.WithCancel(context.WithValue(t.Context(), "k", "v"))
		got := make(chan context.Context, 1)
		r := Start(parent, job(l, func(ctx context.Context, _ int, _ uint64) error {
			got <- ctx
			<-ctx.Done()
			return nil
		}))
		ctx := <-got
		cancel()
		synctest.Wait()
		if ctx.Err() != nil || ctx.Value("k") != "v" {
			t.Fatalf("after parent cancel: Err %v, value %v; want nil and the parent's value", ctx.Err(), ctx.Value("k"))
		}
		if !r.Stop(time.Second) {
			t.Fatal("Stop did not see the handler return")
		}
	})
}

func TestStopIsBoundedWhenTheHandlerIgnoresCtx(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &fakeLease{}
		release := make(chan struct{})
		r := Start(t.Context(), job(l, func(context.Context, int, uint64) error {
			<-release
			return nil
		}))
		start := time.Now()
		if r.Stop(2 * time.Second) {
			t.Fatal("Stop reported a return that did not happen")
		}
		if d := time.Since(start); d != 2*time.Second {
			t.Fatalf("Stop waited %v, want exactly its 2s bound", d)
		}
		close(release)
		<-r.Done()
	})
}
