package worker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/nonchan7720/ronin/election"
	"github.com/nonchan7720/ronin/internal/clock"
)

// Restart backoff of a failing handler.
const (
	restartBackoffMin = 100 * time.Millisecond
	restartBackoffMax = 5 * time.Second
)

// handlerRun is one shard this node holds (or is acquiring) and the
// goroutine that runs its handler.
type handlerRun struct {
	shard     int
	acquiring bool // placeholder while the CAS write is in flight
	moving    bool // a handoff is under way
	lease     *election.Lease
	cancel    context.CancelFunc
	done      chan struct{} // closed when the handler goroutine returned
}

// leaseContext is a handler's ctx. Done closes when the lease ends (on the
// goroutine that ends it, with no further hop, so contexts derived from it
// are cancelled in the same step) or a handoff cancels it; Err also reads
// the lease's clock on every call, so a handler that checks ctx.Err()
// before acting never acts after the lease deadline, even in a process
// that resumes after a pause before its timers have fired.
type leaseContext struct {
	context.Context
	lease *election.Lease
}

// Err returns context.Canceled once the lease is no longer valid.
func (c leaseContext) Err() error {
	if err := c.Context.Err(); err != nil {
		return err
	}
	if !c.lease.Valid() {
		return context.Canceled
	}
	return nil
}

// start registers shard id as owned under lease l and runs its handler.
// The handler's ctx keeps parent's values but not its cancellation: it is
// cancelled when the lease ends (at the latest at its deadline) or by a
// handoff. The run is registered before the handler starts, so a handler
// that returns at once is reaped, never left behind as owned.
func (g *Group) start(parent context.Context, id int, l *election.Lease) {
	inner, cancel := context.WithCancel(context.WithoutCancel(parent))
	ctx := leaseContext{Context: inner, lease: l}
	r := &handlerRun{shard: id, lease: l, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	g.running[id] = r
	g.mu.Unlock()
	l.OnEnd(cancel)
	go func() {
		defer close(r.done)
		g.supervise(ctx, id, l.Rev())
		g.reap(r)
		g.signal()
	}()
}

// supervise runs the handler until ctx ends. A handler that returns (with
// or without an error) or panics while this node still owns the shard is
// restarted with backoff, with the same token; each restart is counted.
func (g *Group) supervise(ctx context.Context, id int, rev uint64) {
	backoff := restartBackoffMin
	for {
		err := g.call(ctx, id, rev)
		if ctx.Err() != nil {
			return
		}
		g.metrics.restarts.Add(context.Background(), 1, g.metrics.attrs)
		g.log.Warn("ronin: shard handler returned while owner; restarting", "shard", id, "rev", rev, "err", err, "backoff", backoff)
		if !clock.Sleep(ctx, g.clock, backoff) {
			return
		}
		backoff = min(backoff*2, restartBackoffMax)
	}
}

// call runs the handler once, turning a panic into an error.
func (g *Group) call(ctx context.Context, id int, rev uint64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ronin: shard handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return g.cfg.Handler(ctx, id, rev)
}

// stop cancels the handler and waits up to timeout for it to return.
func (r *handlerRun) stop(c clock.Clock, timeout time.Duration, log *slog.Logger) {
	r.cancel()
	t := clock.NewTimer(c, timeout)
	defer t.Stop()
	select {
	case <-r.done:
	case <-t.C:
		log.Error("ronin: shard handler did not return after its ctx was cancelled; releasing the shard anyway", "shard", r.shard, "timeout", timeout)
	}
}
