// Package backoff is the one retry schedule of the module: doubling from a
// minimum to a maximum, with jitter so that nodes retrying the same failure
// do not retry in step.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff yields the waits of successive retries. The zero value is not
// usable; make one with New. It is not safe for concurrent use.
type Backoff struct {
	min, max, next time.Duration
}

// New returns a schedule whose un-jittered waits double from min to max.
func New(min, max time.Duration) *Backoff {
	return &Backoff{min: min, max: max, next: min}
}

// Next returns the next wait: a uniform draw from [d/2, d], where d doubles
// at each call from min up to max ("equal jitter").
func (b *Backoff) Next() time.Duration {
	d := b.next
	b.next = min(2*b.next, b.max)
	half := d / 2
	return half + rand.N(d-half+1)
}

// Reset starts the schedule over from min, after a success.
func (b *Backoff) Reset() { b.next = b.min }
