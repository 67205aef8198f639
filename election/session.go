package election

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// session is this node's liveness record in a bucket. Leases taken under it
// are valid while it is: until its deadline, RenewDeadline after the send
// time of its last acknowledged renew, by both of the node's clocks.
type session struct {
	id       string
	val      sessionValue // wanted value; guarded by Bucket.mu
	written  sessionValue // value of the last acknowledged write; keeper only
	rev      uint64       // last known revision; guarded by Bucket.mu
	lastSent instant      // send time of the last renew attempt
	dl       atomic.Pointer[deadline]
	lost     chan struct{}
	lostOnce sync.Once
	timer    *time.Timer // fires at the deadline
}

// valid reports whether leases under s may act at now.
func (s *session) valid(now instant) bool {
	select {
	case <-s.lost:
		return false
	default:
	}
	d := s.dl.Load()
	return d != nil && d.valid(now)
}

// remaining is the time left on s at now.
func (s *session) remaining(now instant) time.Duration {
	if d := s.dl.Load(); d != nil && s.valid(now) {
		return d.remaining(now)
	}
	return 0
}

// keeper maintains the node's session and expires others' until ctx ends.
// It wakes every RetryPeriod, at the next expiry of another session, and
// when kicked.
func (b *Bucket) keeper(ctx context.Context) {
	tick := time.NewTimer(0)
	defer tick.Stop()
	for {
		b.maintainSession(ctx)
		b.expireSessions(ctx)
		b.reconcile(ctx)
		b.checkWatcher()
		wait := b.spec.RetryPeriod
		b.mu.Lock()
		if s := b.sess; s != nil {
			wait = max(0, b.spec.RetryPeriod-(b.clock.now().mono-s.lastSent.mono))
		}
		now := b.clock.now().mono
		if next, ok := b.obs.nextExpiry(now, b.ownIDLocked()); ok && b.synced {
			wait = min(wait, max(0, next-now))
		}
		kick := b.kick
		b.mu.Unlock()
		tick.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-kick:
		}
	}
}

func (b *Bucket) ownIDLocked() string {
	if b.sess == nil {
		return ""
	}
	return b.sess.id
}

// maintainSession deletes own lost sessions, creates a session when there is
// none, and renews the current one when a RetryPeriod has passed.
func (b *Bucket) maintainSession(ctx context.Context) {
	b.mu.Lock()
	dead := b.dead
	b.dead = nil
	s := b.sess
	b.mu.Unlock()
	for _, d := range dead {
		// Our own lost session: we stopped acting on it at its deadline, so
		// deleting it now only frees its keys for others sooner.
		if _, err := b.deleteSession(ctx, d.id, d.rev); err != nil {
			b.mu.Lock()
			b.dead = append(b.dead, d)
			b.mu.Unlock()
		}
	}
	if s == nil {
		b.createSession(ctx)
		return
	}
	now := b.clock.now()
	if now.mono-s.lastSent.mono >= b.spec.RetryPeriod || b.valueOutdated(s) {
		b.renew(ctx, s)
	}
}

// valueOutdated reports whether s's stored value lags its wanted value
// (SetLeaving since the last write).
func (b *Bucket) valueOutdated(s *session) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return s.written != s.val
}

func (b *Bucket) createSession(ctx context.Context) {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	b.mu.Lock()
	s := &session{id: b.NodeID() + "." + hex.EncodeToString(nonce[:]), val: sessionValue{Node: b.NodeID(), Leaving: b.leaving}, lost: make(chan struct{})}
	b.mu.Unlock()
	sent := b.clock.now()
	s.lastSent = sent
	rctx, cancel := context.WithTimeout(ctx, b.spec.renewTimeout())
	rev, err := b.kv.Create(rctx, sessionKey(s.id), encode(s.val))
	cancel()
	if err != nil {
		b.renewFailures.Add(1)
		b.log.Warn("ronin: cannot create session", "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s.rev, s.written = rev, s.val
	if !b.extendLocked(s, sent) {
		b.dead = append(b.dead, s)
		return
	}
	b.sess = s
	b.log.Info("ronin: session started", "session", s.id, "rev", rev)
	b.notifyAllLocked()
}

// renew extends s by a CAS write on its last revision.
func (b *Bucket) renew(ctx context.Context, s *session) {
	sent := b.clock.now()
	margin := b.spec.TTL - b.spec.RenewDeadline
	if !s.lastSent.wall.IsZero() && !clocksAgree(s.lastSent, sent, margin) {
		b.mu.Lock()
		b.log.Warn("ronin: wall and monotonic clocks disagree (suspended?); giving up the session", "session", s.id)
		b.loseSessionLocked(s)
		b.mu.Unlock()
		return
	}
	s.lastSent = sent
	b.mu.Lock()
	rev, val := s.rev, s.val
	b.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, b.spec.renewTimeout())
	newRev, err := b.kv.Update(rctx, sessionKey(s.id), encode(val), rev)
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.renewFailures.Add(1)
		if isCASConflict(err) {
			// A renew whose acknowledgement we lost may have landed. Adopt
			// the revision we see, without extending the deadline: only an
			// acknowledged write's send time may extend it.
			if e, ok := b.sessions[s.id]; ok && e.rev != rev && b.synced {
				s.rev = e.rev
				b.kickLocked()
				return
			}
			if _, ok := b.sessions[s.id]; !ok && b.synced {
				b.loseSessionLocked(s)
				return
			}
		}
		b.log.Debug("ronin: renew failed", "session", s.id, "err", err)
		return
	}
	s.rev, s.written = newRev, val
	if b.sess != s || !b.extendLocked(s, sent) {
		return
	}
	if b.lastRev >= b.ackedRev {
		b.ackedAt = b.clock.now() // time the oldest renew not yet seen
	}
	b.ackedRev = newRev
	b.log.Debug("ronin: renewed", "session", s.id, "rev", newRev)
}

// extendLocked moves s's deadline to sent+RenewDeadline and re-arms its
// timer. It fails if s is already lost or its deadline already passed.
func (b *Bucket) extendLocked(s *session, sent instant) bool {
	now := b.clock.now()
	if old := s.dl.Load(); old != nil && !old.valid(now) {
		b.loseSessionLocked(s) // never resurrect a lease whose deadline passed
		return false
	}
	select {
	case <-s.lost:
		return false
	default:
	}
	d := newDeadline(sent, b.spec.RenewDeadline)
	if !d.valid(now) {
		return false
	}
	s.dl.Store(&d)
	if s.timer == nil {
		s.timer = time.AfterFunc(d.remaining(now), func() { b.expireOwn(s) })
	} else {
		s.timer.Reset(d.remaining(now))
	}
	return true
}

// expireOwn runs at s's deadline: if no renew moved it, s is lost.
func (b *Bucket) expireOwn(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.now()
	if d := s.dl.Load(); d != nil && d.valid(now) {
		s.timer.Reset(d.remaining(now)) // renewed meanwhile
		return
	}
	b.log.Warn("ronin: session deadline passed without a renew; stepping down", "session", s.id)
	b.loseSessionLocked(s)
}

// loseSessionLocked ends s and every lease under it; the keeper deletes it
// from the store and starts a new one.
func (b *Bucket) loseSessionLocked(s *session) {
	s.lostOnce.Do(func() {
		close(s.lost)
		if s.timer != nil {
			s.timer.Stop()
		}
		for key, l := range b.leases {
			if l.sess == s {
				delete(b.leases, key)
				l.end()
			}
		}
		if b.sess == s {
			b.sess = nil
		}
		if _, stored := b.sessions[s.id]; stored {
			b.dead = append(b.dead, s)
		}
		b.notifyAllLocked()
		b.kickLocked()
	})
}

// closeSession releases the session when the last user leaves.
func (b *Bucket) closeSession() {
	b.mu.Lock()
	s := b.sess
	dead := b.dead
	b.dead = nil
	if s != nil {
		b.loseSessionLocked(s)
		b.dead = nil
	}
	b.mu.Unlock()
	ctx := context.Background()
	for _, d := range dead {
		_, _ = b.deleteSession(ctx, d.id, d.rev)
	}
	if s != nil {
		if _, err := b.deleteSession(ctx, s.id, s.rev); err != nil {
			b.log.Warn("ronin: cannot delete session on close; others expire it after TTL", "session", s.id, "err", err)
		} else {
			b.log.Info("ronin: session closed", "session", s.id)
		}
	}
}

// deleteSession deletes session id by CAS at rev and reports whether this
// call deleted it. A conflict (it renewed, or is already gone) is no error.
func (b *Bucket) deleteSession(ctx context.Context, id string, rev uint64) (bool, error) {
	rctx, cancel := context.WithTimeout(ctx, b.spec.requestTimeout())
	defer cancel()
	err := b.kv.Delete(rctx, sessionKey(id), jetstream.LastRevision(rev))
	switch {
	case err == nil:
		return true, nil
	case isCASConflict(err):
		return false, nil
	}
	return false, err
}

// expireSessions kills every other session unchanged for TTL in this
// node's view, by a CAS delete at the revision seen. If its holder renewed
// meanwhile, the delete fails and nothing happens.
func (b *Bucket) expireSessions(ctx context.Context) {
	b.mu.Lock()
	if !b.synced {
		b.mu.Unlock()
		return
	}
	expired := b.obs.expired(b.clock.now().mono, b.ownIDLocked())
	b.mu.Unlock()
	for _, e := range expired {
		deleted, err := b.deleteSession(ctx, e.id, e.rev)
		b.mu.Lock()
		switch {
		case err != nil:
			b.log.Warn("ronin: cannot expire session", "session", e.id, "rev", e.rev, "err", err)
			b.obs.postpone(e.id, b.clock.now().mono+b.spec.RetryPeriod)
		case !deleted:
			// It renewed after all; the watcher will show the new revision.
			b.obs.postpone(e.id, b.clock.now().mono+b.spec.RetryPeriod)
		default:
			b.log.Info("ronin: expired a session that stopped renewing", "session", e.id, "rev", e.rev)
			// The delete marker reaches the watcher soon; stop counting now
			// so the keeper does not delete twice.
			b.obs.gone(e.id)
		}
		b.mu.Unlock()
	}
}

// reconcile deletes records that point at this node's live session but are
// not held by a lease here (a release whose delete failed).
func (b *Bucket) reconcile(ctx context.Context) {
	b.mu.Lock()
	s := b.sess
	if s == nil || !b.synced {
		b.mu.Unlock()
		return
	}
	type stale struct {
		key string
		rev uint64
	}
	var todo []stale
	for key := range b.bySession[s.id] {
		_, busy := b.acquiring[key]
		if l := b.leases[key]; !busy && (l == nil || l.rev != b.records[key].rev) {
			todo = append(todo, stale{key, b.records[key].rev})
		}
	}
	b.mu.Unlock()
	for _, st := range todo {
		rctx, cancel := context.WithTimeout(ctx, b.spec.requestTimeout())
		err := b.kv.Delete(rctx, st.key, jetstream.LastRevision(st.rev))
		cancel()
		if err != nil && !isCASConflict(err) {
			b.log.Debug("ronin: cannot delete a released record; will retry", "key", st.key, "rev", st.rev, "err", err)
		}
	}
}

// watcherLagLimit is the least time the watcher may take to deliver this
// node's own acknowledged renew before it is restarted.
const watcherLagLimit = time.Second

// checkWatcher restarts the watcher when it has not delivered this node's
// own acknowledged renew in time: it is stuck (for example its consumer
// lived on a server that went away).
func (b *Bucket) checkWatcher() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ackedRev == 0 || b.lastRev >= b.ackedRev {
		return
	}
	if b.clock.now().mono-b.ackedAt.mono > max(b.spec.stallGap(), watcherLagLimit) {
		b.ackedRev = 0
		select {
		case b.rewatch <- struct{}{}:
		default:
		}
	}
}
