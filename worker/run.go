// Package worker runs the handler of one won shard: a context that ends
// with the lease, supervision (restart with backoff after an error, a
// panic or an early return, with the same token), and a bounded stop.
package worker

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/nonchan7720/ronin/internal/backoff"
	"github.com/nonchan7720/ronin/internal/clock"
)

// Restart backoff of a failing handler.
const (
	restartBackoffMin = 100 * time.Millisecond
	restartBackoffMax = 5 * time.Second
)

// Lease is what a run needs of the leadership it runs under.
type Lease interface {
	// Valid reports whether the lease still holds, reading its clock.
	Valid() bool
	// Rev is the lease's fencing token.
	Rev() uint64
	// OnEnd calls f when the lease ends, on the goroutine that ends it, or
	// at once if it has ended.
	OnEnd(f func())
}

// Job is one shard's handler and what its run reports to.
type Job struct {
	// Shard is the shard id, passed to Call's caller and used in logs.
	Shard int
	// Lease is the ownership the handler runs under.
	Lease Lease
	// Call runs the handler once; ctx ends with the lease or Stop.
	Call func(ctx context.Context, shardID int, rev uint64) error
	// Clock times the restart backoff and the stop bound.
	Clock clock.Clock
	// Log receives restarts and stops that time out.
	Log *slog.Logger
	// OnRestart, if set, is called before each restart.
	OnRestart func()
	// OnExit, if set, is called once the handler has returned for good.
	OnExit func()
}

// Run is a running handler.
type Run struct {
	job    Job
	cancel context.CancelFunc
	done   chan struct{}
}

// Start runs job's handler in a goroutine. The handler's ctx keeps
// parent's values but not its cancellation: it is cancelled when the lease
// ends (on the goroutine that ends it, with no further hop) or by Stop, and
// its Err reads the lease's clock on every call, so a handler that checks
// ctx.Err() before acting never acts after the lease deadline, even in a
// process that resumes after a pause before its timers have fired.
func Start(parent context.Context, job Job) *Run {
	inner, cancel := context.WithCancel(context.WithoutCancel(parent))
	r := &Run{job: job, cancel: cancel, done: make(chan struct{})}
	job.Lease.OnEnd(cancel)
	go func() {
		defer close(r.done)
		r.supervise(leaseContext{Context: inner, lease: job.Lease})
		if job.OnExit != nil {
			job.OnExit()
		}
	}()
	return r
}

// Done is closed once the handler has returned for good (and OnExit ran).
func (r *Run) Done() <-chan struct{} { return r.done }

// Stop cancels the handler's ctx and waits up to timeout for it to return;
// it reports whether it did. A handler that does not return is logged and
// left behind: its ctx is cancelled and its lease ends anyway.
func (r *Run) Stop(timeout time.Duration) bool {
	r.cancel()
	t := clock.NewTimer(r.job.Clock, timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return true
	case <-t.C:
		r.job.Log.Error("ronin: shard handler did not return after its ctx was cancelled; releasing the shard anyway", "shard", r.job.Shard, "timeout", timeout)
		return false
	}
}

// supervise runs the handler until ctx ends, restarting it with backoff
// while the lease holds.
func (r *Run) supervise(ctx context.Context) {
	rev := r.job.Lease.Rev()
	wait := backoff.New(restartBackoffMin, restartBackoffMax)
	for {
		err := r.call(ctx, rev)
		if ctx.Err() != nil {
			return
		}
		if r.job.OnRestart != nil {
			r.job.OnRestart()
		}
		d := wait.Next()
		r.job.Log.Warn("ronin: shard handler returned while owner; restarting", "shard", r.job.Shard, "rev", rev, "err", err, "backoff", d)
		if !clock.Sleep(ctx, r.job.Clock, d) {
			return
		}
	}
}

// call runs the handler once, turning a panic into an error.
func (r *Run) call(ctx context.Context, rev uint64) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("ronin: shard handler panicked: %v\n%s", p, debug.Stack())
		}
	}()
	return r.job.Call(ctx, r.job.Shard, rev)
}

// leaseContext is a handler's ctx: Done closes when the lease ends or the
// run stops; Err also reads the lease's clock.
type leaseContext struct {
	context.Context
	lease Lease
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
