// Package clock is the time seam of Ronin's protocol: every time reading and
// every timer of the election and shard layers goes through a Clock, so that
// a simulator can give each node its own clock (rate drift, wall-clock
// steps, pauses) without touching the protocol code.
package clock

import (
	"context"
	"time"
)

// Instant is one reading of both of a node's clocks: monotonic time since
// the clock's anchor, and the wall clock. Keeping both explicit lets the
// protocol compare them (a suspended machine shows more wall time than
// monotonic time) and lets tests build readings where they disagree.
type Instant struct {
	// Mono is monotonic time since the clock's anchor: immune to wall-clock
	// steps, stopped while the machine is suspended.
	Mono time.Duration
	// Wall is the wall clock, without a monotonic reading.
	Wall time.Time
}

// Add moves both clocks by d.
func (i Instant) Add(d time.Duration) Instant {
	return Instant{Mono: i.Mono + d, Wall: i.Wall.Add(d)}
}

// Sub is the monotonic time from j to i.
func (i Instant) Sub(j Instant) time.Duration { return i.Mono - j.Mono }

// Clock reads instants and runs timers on one node's clock.
type Clock interface {
	// Now reads both clocks.
	Now() Instant
	// AfterFunc calls f in its own goroutine once d has passed on this
	// clock's monotonic time.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a timer made by AfterFunc; Stop and Reset behave as
// time.Timer's do for a timer made by time.AfterFunc.
type Timer interface {
	Stop() bool
	Reset(d time.Duration) bool
}

// Real returns the process's clock: time.Now and time.AfterFunc.
func Real() Clock { return realClock{anchor: time.Now()} }

type realClock struct{ anchor time.Time }

func (c realClock) Now() Instant {
	t := time.Now()
	return Instant{Mono: t.Sub(c.anchor), Wall: t.Round(0)}
}

func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// OrReal returns c, or the real clock if c is nil.
func OrReal(c Clock) Clock {
	if c == nil {
		return Real()
	}
	return c
}

// ChanTimer is a timer that delivers on a channel, like time.NewTimer, on
// a Clock. Reset and Stop discard a value not yet received, so a receive
// after either never sees a stale expiry.
type ChanTimer struct {
	C <-chan struct{}
	c chan struct{}
	t Timer
}

// NewTimer returns a ChanTimer that fires once d has passed on c.
func NewTimer(c Clock, d time.Duration) *ChanTimer {
	ch := make(chan struct{}, 1)
	ct := &ChanTimer{C: ch, c: ch}
	ct.t = c.AfterFunc(d, ct.fire)
	return ct
}

func (t *ChanTimer) fire() {
	select {
	case t.c <- struct{}{}:
	default:
	}
}

// Reset makes t fire once d has passed from now, discarding a pending
// expiry.
func (t *ChanTimer) Reset(d time.Duration) {
	t.t.Stop()
	t.drain()
	t.t.Reset(d)
}

// Stop stops t and discards a pending expiry.
func (t *ChanTimer) Stop() {
	t.t.Stop()
	t.drain()
}

func (t *ChanTimer) drain() {
	select {
	case <-t.c:
	default:
	}
}

// Sleep waits for d on c, or until ctx ends; it reports whether the full
// time passed.
func Sleep(ctx context.Context, c Clock, d time.Duration) bool {
	t := NewTimer(c, d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
