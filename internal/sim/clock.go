package sim

import (
	"sync"
	"time"

	"github.com/nonchan7720/ronin/internal/clock"
)

// nodeClock is one simulated node's clock, driven by the bubble's virtual
// time (time.Now inside testing/synctest). Its monotonic clock runs at
// rate (clock-rate drift) and stands still while the node is suspended;
// its wall clock follows virtual time plus an offset that a step moves.
// While the node is held (paused or suspended) its timers do not run; they
// run when it resumes.
type nodeClock struct {
	mu         sync.Mutex
	rate       float64
	base       time.Time     // virtual time of the last rate change
	monoAtBase time.Duration // monotonic reading at base
	wallOffset time.Duration
	suspended  bool
	held       bool
	resumed    chan struct{} // closed when the node resumes
	pending    []*simTimer   // timers that came due while held
}

var epoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newNodeClock(rate float64, wallOffset time.Duration) *nodeClock {
	c := &nodeClock{rate: rate, base: time.Now(), wallOffset: wallOffset, resumed: make(chan struct{})}
	close(c.resumed)
	return c
}

func (c *nodeClock) monoLocked(v time.Time) time.Duration {
	if c.suspended {
		return c.monoAtBase
	}
	return c.monoAtBase + time.Duration(float64(v.Sub(c.base))*c.rate)
}

// Now reads both clocks.
func (c *nodeClock) Now() clock.Instant {
	c.mu.Lock()
	defer c.mu.Unlock()
	v := time.Now()
	return clock.Instant{Mono: c.monoLocked(v), Wall: v.Add(c.wallOffset).Round(0)}
}

// rebaseLocked starts a new segment at virtual time v.
func (c *nodeClock) rebaseLocked(v time.Time) {
	c.monoAtBase = c.monoLocked(v)
	c.base = v
}

// hold stops the node: its timers and its I/O wait for resume. A suspend
// also stops its monotonic clock (a suspended machine); a pause does not
// (a stopped process).
func (c *nodeClock) hold(suspend bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held {
		return
	}
	c.rebaseLocked(time.Now())
	c.held, c.suspended = true, suspend
	c.resumed = make(chan struct{})
}

// resume lets the node run again and fires the timers that came due.
func (c *nodeClock) resume() {
	c.mu.Lock()
	if !c.held {
		c.mu.Unlock()
		return
	}
	c.rebaseLocked(time.Now())
	c.held, c.suspended = false, false
	close(c.resumed)
	due := c.pending
	c.pending = nil
	c.mu.Unlock()
	for _, t := range due {
		t.fire()
	}
}

// running returns a channel closed while the node runs.
func (c *nodeClock) running() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resumed
}

func (c *nodeClock) isHeld() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.held
}

// step moves the wall clock by d.
func (c *nodeClock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wallOffset += d
}

// setRate changes the monotonic clock's rate from now on.
func (c *nodeClock) setRate(rate float64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rebaseLocked(time.Now())
	c.rate = rate
}

// virtualDelay is how much virtual time d of this clock takes.
func (c *nodeClock) virtualDelay(d time.Duration) time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Duration(float64(d)/c.rate) + 1
}

// AfterFunc runs f once d has passed on the node's monotonic clock, and
// the node runs.
func (c *nodeClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	t := &simTimer{c: c, f: f}
	t.Reset(d)
	return t
}

type simTimer struct {
	c      *nodeClock
	f      func()
	mu     sync.Mutex
	gen    uint64
	armed  bool
	target time.Duration // monotonic time at which it is due
	vt     *time.Timer
}

func (t *simTimer) Reset(d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := t.stopLocked()
	t.gen++
	t.armed = true
	t.target = t.c.Now().Mono + d
	gen := t.gen
	t.vt = time.AfterFunc(t.c.virtualDelay(max(d, 0)), func() { t.due(gen) })
	return was
}

func (t *simTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stopLocked()
}

func (t *simTimer) stopLocked() bool {
	was := t.armed
	t.armed = false
	t.gen++
	if t.vt != nil {
		t.vt.Stop()
	}
	return was
}

// due runs when the virtual timer fires: if the node's clock has not
// reached the target (it was suspended, or runs slow), it re-arms; if the
// node is held, it waits for resume.
func (t *simTimer) due(gen uint64) {
	t.mu.Lock()
	if gen != t.gen || !t.armed {
		t.mu.Unlock()
		return
	}
	if left := t.target - t.c.Now().Mono; left > 0 {
		t.vt = time.AfterFunc(t.c.virtualDelay(left), func() { t.due(gen) })
		t.mu.Unlock()
		return
	}
	t.mu.Unlock()
	t.c.mu.Lock()
	if t.c.held {
		t.c.pending = append(t.c.pending, t)
		t.c.mu.Unlock()
		return
	}
	t.c.mu.Unlock()
	t.fireGen(gen)
}

// fire runs a timer that came due while its node was held.
func (t *simTimer) fire() {
	t.mu.Lock()
	gen := t.gen
	t.mu.Unlock()
	t.due(gen)
}

func (t *simTimer) fireGen(gen uint64) {
	t.mu.Lock()
	if gen != t.gen || !t.armed {
		t.mu.Unlock()
		return
	}
	t.armed = false
	t.mu.Unlock()
	go t.f()
}
