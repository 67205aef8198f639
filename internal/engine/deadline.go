package engine

import (
	"time"

	"github.com/nonchan7720/ronin/internal/clock"
)

// deadline is a holder's lease deadline on both of its clocks. It is valid
// while the monotonic clock and the wall clock are both before it: the
// monotonic reading is immune to wall-clock steps, the wall reading catches a
// suspended machine, whose monotonic clock stood still while others' ran.
type deadline clock.Instant

// newDeadline is the deadline of a renew sent at sent: sent + renewDeadline.
func newDeadline(sent clock.Instant, renewDeadline time.Duration) deadline {
	return deadline(sent.Add(renewDeadline))
}

// valid reports whether now is before the deadline on both clocks.
func (d deadline) valid(now clock.Instant) bool {
	return now.Mono < d.Mono && now.Wall.Before(d.Wall)
}

// remaining is the time left by the monotonic clock; zero once invalid.
func (d deadline) remaining(now clock.Instant) time.Duration {
	if !d.valid(now) {
		return 0
	}
	return d.Mono - now.Mono
}

// clocksAgree reports whether the wall clock and the monotonic clock advanced
// by the same amount (within margin) between two readings. A machine that was
// suspended shows more wall time than monotonic time.
func clocksAgree(earlier, now clock.Instant, margin time.Duration) bool {
	diff := now.Wall.Sub(earlier.Wall) - (now.Mono - earlier.Mono)
	return diff <= margin && diff >= -margin
}
