package election

import (
	"sync"
	"time"
)

// Lease is one term of leadership of a key, taken under this node's session.
type Lease struct {
	b         *Bucket
	key       string
	candidate string
	rev       uint64
	sess      *session
	done      chan struct{}
	endOnce   sync.Once
}

// Key is the leased key.
func (l *Lease) Key() string { return l.key }

// Rev is the lease's fencing token: the revision of the record that took the
// key. It is greater than every token issued before for any key of the bucket.
func (l *Lease) Rev() uint64 { return l.rev }

// Done is closed when the term ends: released, taken over, or the session's
// deadline passed. It closes at the latest at that deadline.
func (l *Lease) Done() <-chan struct{} { return l.done }

// Valid reports whether the holder may act now. It reads both clocks on
// every call, so a process that was paused never acts on a stale lease even
// before any of its goroutines has run.
func (l *Lease) Valid() bool {
	select {
	case <-l.done:
		return false
	default:
	}
	return l.sess.valid(l.b.clock.now())
}

// Remaining is the time left before the lease's deadline; zero once invalid.
func (l *Lease) Remaining() time.Duration {
	select {
	case <-l.done:
		return 0
	default:
	}
	return l.sess.remaining(l.b.clock.now())
}

func (l *Lease) end() { l.endOnce.Do(func() { close(l.done) }) }
