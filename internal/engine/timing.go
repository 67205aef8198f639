package engine

import (
	"fmt"
	"time"
)

// Timing defaults. RenewDeadline and RetryPeriod default to fractions of the
// TTL, as in client-go (15 s / 10 s / 2 s).
const (
	// MinTTL is the shortest TTL accepted. Below it, scheduling noise on a
	// loaded machine eats the margin between RenewDeadline and TTL.
	MinTTL = 500 * time.Millisecond
	// DefaultTTL is used when a config leaves TTL at zero in places where a
	// default is allowed (shard groups). Candidates must set TTL.
	DefaultTTL = 5 * time.Second
	// DefaultRenewDeadlineRatio is RenewDeadline/TTL when RenewDeadline is 0.
	DefaultRenewDeadlineRatio = 2.0 / 3.0
	// DefaultRetryPeriodRatio is RetryPeriod/TTL when RetryPeriod is 0.
	DefaultRetryPeriodRatio = 1.0 / 6.0
	// MaxRequestTimeout caps the timeout of a single store request.
	MaxRequestTimeout = 2 * time.Second
)

// Timing is the lease timing of one bucket.
//
// Safety rests on RenewDeadline < TTL: a holder stops by its own clock
// RenewDeadline after it *sent* its last acknowledged renew, while observers
// wait TTL after they *saw* that renew before they may take over. The gap
// TTL-RenewDeadline absorbs clock-rate drift and timer lateness.
type Timing struct {
	// TTL is how long observers wait, without seeing a renew, before they
	// expire a session. It must agree across the cluster for a bucket.
	TTL time.Duration
	// RenewDeadline is how long after sending its last acknowledged renew a
	// holder keeps acting as leader. Default TTL*2/3.
	RenewDeadline time.Duration
	// RetryPeriod is the renew interval. Default TTL/6.
	RetryPeriod time.Duration
}

// withDefaults fills zero RenewDeadline and RetryPeriod from TTL.
func (t Timing) withDefaults() Timing {
	if t.RenewDeadline == 0 {
		t.RenewDeadline = time.Duration(float64(t.TTL) * DefaultRenewDeadlineRatio)
	}
	if t.RetryPeriod == 0 {
		t.RetryPeriod = time.Duration(float64(t.TTL) * DefaultRetryPeriodRatio)
	}
	return t
}

// validate checks the fields and their relations; the message names both
// values of a violated relation.
func (t Timing) validate() error {
	switch {
	case t.TTL < MinTTL:
		return fmt.Errorf("%w: TTL %v: must be at least %v", ErrInvalidConfig, t.TTL, MinTTL)
	case t.RenewDeadline <= 0:
		return fmt.Errorf("%w: RenewDeadline %v: must be positive", ErrInvalidConfig, t.RenewDeadline)
	case t.RetryPeriod <= 0:
		return fmt.Errorf("%w: RetryPeriod %v: must be positive", ErrInvalidConfig, t.RetryPeriod)
	case t.RenewDeadline > t.TTL*9/10:
		return fmt.Errorf("%w: RenewDeadline %v: must be at most 90%% of TTL %v (margin for clock drift)", ErrInvalidConfig, t.RenewDeadline, t.TTL)
	case t.RetryPeriod*2 > t.RenewDeadline:
		return fmt.Errorf("%w: RetryPeriod %v: must be at most half of RenewDeadline %v (at least two renew attempts per deadline)", ErrInvalidConfig, t.RetryPeriod, t.RenewDeadline)
	}
	return nil
}

// RequestTimeout bounds every store request: below RetryPeriod, so a stalled
// request never delays the next renew attempt, and never above
// MaxRequestTimeout.
func (t Timing) RequestTimeout() time.Duration {
	return min(t.RetryPeriod, MaxRequestTimeout)
}

// renewTimeout bounds a session write (create or renew). It is longer than
// RequestTimeout: a renew that is slow because the stream leader is busy
// still extends the lease from its send time, while one abandoned at
// RetryPeriod would be retried into the same queue until the session is
// lost. Two attempts still fit in a RenewDeadline.
func (t Timing) renewTimeout() time.Duration {
	return min(t.RenewDeadline/2, MaxRequestTimeout)
}

// stallGap is how long the watcher may be silent before observers treat the
// store as having stalled. Every live session renews each RetryPeriod, so
// silence longer than this means the store or the watcher was not working.
func (t Timing) stallGap() time.Duration {
	return 3 * t.RetryPeriod
}
