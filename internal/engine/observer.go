package engine

import "time"

// observer implements observer-clock expiry (client-go's rule): a session
// whose revision has not changed for ttl, by the observer's own monotonic
// clock, may be killed by a CAS delete at exactly that revision. It has no
// I/O and no goroutines; callers pass the monotonic time.
type observer struct {
	ttl       time.Duration
	stallGap  time.Duration
	sessions  map[string]observation
	lastEvent time.Duration
	started   bool
}

// observation is the last revision of a session and when it was first seen.
type observation struct {
	rev  uint64
	seen time.Duration // monotonic
}

// expiredSession names a session that may be killed at rev.
type expiredSession struct {
	id  string
	rev uint64
}

func newObserver(ttl, stallGap time.Duration) *observer {
	return &observer{ttl: ttl, stallGap: stallGap, sessions: map[string]observation{}}
}

// event records that the store delivered something at now.
func (o *observer) event(now time.Duration) {
	o.lastEvent, o.started = now, true
}

// silent reports whether nothing was delivered for longer than stallGap:
// this node's view may be stale, so nothing is expired until it is fresh
// again. Every live session renews each RetryPeriod, so a working store and
// watcher are never silent that long. (Expiring on a stale view would still
// be safe, since the kill is a CAS at the revision seen; it would only waste
// writes.) A stall does not restart countdowns: a session whose revision is
// unchanged once the view is fresh again has not renewed since it was seen,
// and a holder rides out a store outage shorter than its RenewDeadline
// because RenewDeadline < TTL.
func (o *observer) silent(now time.Duration) bool {
	return o.started && now-o.lastEvent > o.stallGap
}

// postpone moves the expiry of session id at revision rev to at, after a
// failed expiry attempt. It never touches another revision's countdown (a
// countdown for revision r only ever starts at the moment r was first
// seen), and never brings an expiry forward.
func (o *observer) postpone(id string, rev uint64, at time.Duration) {
	if s, ok := o.sessions[id]; ok && s.rev == rev {
		s.seen = max(s.seen, at-o.ttl)
		o.sessions[id] = s
	}
}

// restart restarts every countdown at now, as if each session were first
// seen now. It only delays expiries.
func (o *observer) restart(now time.Duration) {
	for id, s := range o.sessions {
		s.seen = max(s.seen, now)
		o.sessions[id] = s
	}
}

// seen records revision rev of session id at now. The countdown restarts
// only when the revision changes.
func (o *observer) seen(id string, rev uint64, now time.Duration) {
	if s, ok := o.sessions[id]; ok && s.rev == rev {
		return
	}
	o.sessions[id] = observation{rev: rev, seen: now}
}

// gone forgets a deleted session.
func (o *observer) gone(id string) { delete(o.sessions, id) }

// expired lists the sessions, other than skip, unchanged for ttl at now;
// none while the store is silent.
func (o *observer) expired(now time.Duration, skip string) []expiredSession {
	if o.silent(now) {
		return nil
	}
	var out []expiredSession
	for id, s := range o.sessions {
		if id != skip && now-s.seen >= o.ttl {
			out = append(out, expiredSession{id: id, rev: s.rev})
		}
	}
	return out
}

// nextExpiry is the earliest time at which some session other than skip
// expires, and whether there is one; none while the store is silent.
func (o *observer) nextExpiry(now time.Duration, skip string) (time.Duration, bool) {
	if o.silent(now) {
		return 0, false
	}
	var next time.Duration
	found := false
	for id, s := range o.sessions {
		if id == skip {
			continue
		}
		if at := s.seen + o.ttl; !found || at < next {
			next, found = at, true
		}
	}
	return next, found
}
