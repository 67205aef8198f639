package engine

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

	mu    sync.Mutex
	done  chan struct{}
	ended bool
	onEnd []func()
}

func newLease(b *Bucket, key, candidate string, rev uint64, s *session) *Lease {
	return &Lease{b: b, key: key, candidate: candidate, rev: rev, sess: s, done: make(chan struct{})}
}

// Key is the leased key.
func (l *Lease) Key() string { return l.key }

// Rev is the lease's fencing token: the revision of the record that took the
// key. It is greater than every token issued before for any key of the bucket.
func (l *Lease) Rev() uint64 { return l.rev }

// Done is closed when the term ends: released, taken over, or the session's
// deadline passed. It closes at the latest at that deadline.
func (l *Lease) Done() <-chan struct{} { return l.done }

// OnEnd calls f when the term ends, synchronously on the goroutine that
// ends it (at once if it has ended). f must be quick and must not block:
// cancelling a context is what it is for, so that contexts derived from a
// handler's ctx are cancelled without a goroutine hop.
func (l *Lease) OnEnd(f func()) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		f()
		return
	}
	l.onEnd = append(l.onEnd, f)
	l.mu.Unlock()
}

// Valid reports whether the holder may act now. It reads both clocks on
// every call, so a process that was paused never acts on a stale lease even
// before any of its goroutines has run.
func (l *Lease) Valid() bool {
	select {
	case <-l.done:
		return false
	default:
	}
	return l.sess.valid(l.b.clock.Now())
}

// Remaining is the time left before the lease's deadline; zero once invalid.
func (l *Lease) Remaining() time.Duration {
	select {
	case <-l.done:
		return 0
	default:
	}
	return l.sess.remaining(l.b.clock.Now())
}

func (l *Lease) end() {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return
	}
	l.ended = true
	close(l.done)
	fs := l.onEnd
	l.onEnd = nil
	l.mu.Unlock()
	for _, f := range fs {
		f()
	}
}
