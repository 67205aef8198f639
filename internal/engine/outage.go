package engine

import (
	"log/slog"
	"time"
)

// outageLogEvery is how often a continuing outage is logged again.
const outageLogEvery = 30 * time.Second

// outage tracks one bucket's trouble reaching the store, so that a node cut
// off from it logs the cause once, then at most every outageLogEvery with
// the count of failures in between, and once more when the store answers
// again. It is pure: callers pass the monotonic time and hold the bucket's
// lock.
type outage struct {
	since      time.Duration // when the outage began; valid while active
	active     bool
	cause      error // the last failure
	op         string
	loggedAt   time.Duration
	suppressed int
}

// fail records a failed store operation at now and logs it if due.
func (o *outage) fail(log *slog.Logger, now time.Duration, op string, err error) {
	o.cause, o.op = err, op
	switch {
	case !o.active:
		o.active, o.since, o.loggedAt, o.suppressed = true, now, now, 0
		log.Warn("ronin: cannot reach the store; leaders here step down at their deadline, retrying with backoff", "op", op, "err", err)
	case now-o.loggedAt >= outageLogEvery:
		log.Warn("ronin: still cannot reach the store", "op", op, "err", err, "for", (now - o.since).Round(time.Millisecond), "failures", o.suppressed+1)
		o.loggedAt, o.suppressed = now, 0
	default:
		o.suppressed++
	}
}

// ok records an acknowledged write at now and logs the end of an outage.
func (o *outage) ok(log *slog.Logger, now time.Duration) {
	if o.active {
		log.Info("ronin: the store answers again", "after", (now - o.since).Round(time.Millisecond))
	}
	o.active, o.cause = false, nil
}
