package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nonchan7720/ronin/internal/clock"
)

// session is this node's liveness record in a bucket. Leases taken under it
// are valid while it is: until its deadline, RenewDeadline after the send
// time of its last acknowledged renew, by both of the node's clocks.
type session struct {
	id       string
	val      sessionValue  // wanted value; guarded by Bucket.mu
	written  sessionValue  // value of the last acknowledged write; keeper only
	rev      uint64        // last known revision; guarded by Bucket.mu
	lastSent clock.Instant // send time of the last renew attempt
	dl       atomic.Pointer[deadline]
	lost     chan struct{}
	lostOnce sync.Once
	timer    clock.Timer // fires at the deadline
	// readsBefore is Bucket.reads when the session's create was
	// acknowledged: only a read started after it shows every purge that
	// came before the session's CAS chain began (which detects the later
	// ones), so leases need a view completed by such a read.
	readsBefore uint64
	// createdRev is the revision of its create. A read started after the
	// create may still end short of it: JetStream places a watch's
	// consumer on any replica of the stream, one still catching up
	// included, which reports the initial values complete at its own
	// tail, before a purge perhaps. Leases need a view that has reached
	// createdRev. (A later read that ends short of it drops the session,
	// which a view that reached createdRev had shown: the session is then
	// lost, so the view's highest revision so far is the one to compare.)
	createdRev uint64
	ackedSend  uint64 // Bucket.renewSends of the last acknowledged renew; guarded by Bucket.mu
}

// valid reports whether leases under s may act at now.
func (s *session) valid(now clock.Instant) bool {
	select {
	case <-s.lost:
		return false
	default:
	}
	d := s.dl.Load()
	return d != nil && d.valid(now)
}

// remaining is the time left on s at now.
func (s *session) remaining(now clock.Instant) time.Duration {
	if d := s.dl.Load(); d != nil && s.valid(now) {
		return d.remaining(now)
	}
	return 0
}

// keeper maintains the node's session and expires others' until ctx ends.
// It wakes every RetryPeriod, at the next expiry of another session, when
// a new bucket becomes old enough to grant leadership, and when kicked.
func (b *Bucket) keeper(ctx context.Context) {
	tick := clock.NewTimer(b.clock, 0)
	defer tick.Stop()
	for {
		acked := b.maintainSession(ctx)
		b.mu.Lock()
		b.startWatchLocked() // after the first session attempt (see Bucket.reads)
		b.mu.Unlock()
		b.maintainGenesis(ctx, acked)
		b.deleteDead(ctx)
		b.expireSessions(ctx)
		b.reconcile(ctx)
		b.checkWatcher()
		b.checkSuspects()
		b.mu.Lock()
		if b.gone != nil {
			b.mu.Unlock()
			return
		}
		now := b.clock.Now()
		wait := b.spec.RetryPeriod
		if s := b.sess; s != nil {
			wait = max(0, b.spec.RetryPeriod-now.Sub(s.lastSent))
		} else if b.out.active {
			wait = b.retry.Next() // stepped down and cut off: do not hammer
		}
		if next, ok := b.v.obs.nextExpiry(now.Mono, b.ownIDLocked()); ok && b.expiresLocked(now) {
			wait = min(wait, max(0, next-now.Mono))
		}
		if b.grantAfter > now.Mono {
			wait = min(wait, b.grantAfter-now.Mono) // then renew early (renewDue)
		}
		settled, next, ok := b.v.settleUnseen(now.Mono)
		b.reactLocked(settled)
		if ok {
			wait = min(wait, max(0, next-now.Mono))
		}
		kick := b.kick
		b.mu.Unlock()
		tick.Reset(max(wait, minKeeperWait))
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-kick:
		}
	}
}

// minKeeperWait is the least time between two rounds of the keeper, so
// that a countdown that is due but cannot be acted on yet (its view is
// stale, its write failed) does not make the keeper spin.
const minKeeperWait = time.Millisecond

func (b *Bucket) ownIDLocked() string {
	if b.sess == nil {
		return ""
	}
	return b.sess.id
}

// maintainGenesis writes the genesis record once a TTL has passed, by this
// node's clock, since its complete view first lacked it: by then every
// holder of a key that was lost with it (a purge, a bucket deleted and
// created anew) has passed its deadline, since RenewDeadline < TTL. The
// write follows an acknowledged renew of the session in the same round
// (acked): a purge since the grace began would have broken the session's
// CAS chain and restarted the grace (restartGraceLocked), and a grace is
// never older than the chain (a new session restarts it).
func (b *Bucket) maintainGenesis(ctx context.Context, acked bool) {
	b.mu.Lock()
	now := b.clock.Now().Mono
	switch {
	case !b.v.synced:
		b.mu.Unlock()
		return
	case b.v.genesis: // genesisSeenLocked ended any grace
		b.mu.Unlock()
		return
	case b.grantAfter == 0:
		b.grantAfter = now + b.spec.TTL
		b.log.Info("ronin: the bucket has no genesis record (new, created anew or purged); nothing is acquired for a TTL", "ttl", b.spec.TTL)
		b.mu.Unlock()
		return
	case now < b.grantAfter || !acked:
		b.mu.Unlock()
		return
	}
	b.grantAfter = now + b.spec.RetryPeriod // until the view shows it
	b.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, b.spec.RequestTimeout())
	defer cancel()
	if _, err := b.kv.Create(rctx, genesisKey, []byte("{}")); err != nil && !isCASConflict(err) {
		b.checkGone(err)
	}
}

// restartGraceLocked restarts the wait for the genesis record, if one is
// under way, on evidence that the store lost writes (this node's session
// was lost or its renew conflicted unexplained), and when a new session's
// CAS chain begins.
func (b *Bucket) restartGraceLocked() {
	if !b.v.genesis && b.grantAfter != 0 {
		b.grantAfter = b.clock.Now().Mono + b.spec.TTL
	}
}

// maintainSession deletes own lost sessions, creates a session when there is
// none, and renews the current one when a RetryPeriod has passed. It
// reports whether a session write was acknowledged.
func (b *Bucket) maintainSession(ctx context.Context) bool {
	b.mu.Lock()
	b.refreshWaitingLocked()
	s := b.sess
	b.mu.Unlock()
	if s == nil {
		return b.createSession(ctx)
	}
	now := b.clock.Now()
	if now.Sub(s.lastSent) >= b.spec.RetryPeriod || b.renewDue(s, now.Mono) {
		return b.renew(ctx, s)
	}
	return false
}

// deleteDead deletes this node's lost sessions. It stopped acting on each
// at its deadline, so deleting it only frees its keys sooner. It deletes
// nothing until this node can acquire again (a live session, and a view
// read since it began): the other nodes never see it without a session
// (they would plan without it for a moment and take its shards), and its
// keys are not freed while it cannot take them back itself (a watch that
// the store refuses for seconds after an outage; the others would rescue
// its shards meanwhile). The keeper calls it after maintainSession and
// maintainGenesis, whose write follows the round's renew with no other
// write between.
func (b *Bucket) deleteDead(ctx context.Context) {
	b.mu.Lock()
	if !b.acquirableLocked(b.clock.Now()) {
		b.mu.Unlock()
		return
	}
	dead := b.dead
	b.dead = nil
	b.mu.Unlock()
	for _, d := range dead {
		if _, err := b.deleteSession(ctx, d.id, d.rev); err != nil {
			b.mu.Lock()
			b.dead = append(b.dead, d)
			b.mu.Unlock()
		}
	}
}

// renewDue reports whether s is to be renewed before its RetryPeriod: its
// stored value lags its wanted value (SetLeaving since the last write), a
// created record waits for a renew sent after it (confirmCreate), or
// the genesis record has come due since the last renew: its write follows
// an acknowledged renew in the same round (maintainGenesis), so renewing
// now writes it at once, not up to a RetryPeriod late. If that renew
// fails, the next one keeps its RetryPeriod.
func (b *Bucket) renewDue(s *session, now time.Duration) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	genesisDue := b.v.synced && !b.v.genesis && b.grantAfter != 0 && now >= b.grantAfter
	confirmDue := b.confirming > 0 && b.renewSends <= b.confirmAfter
	return s.written != s.val || genesisDue && s.lastSent.Mono < b.grantAfter || confirmDue
}

func (b *Bucket) createSession(ctx context.Context) bool {
	var nonce [6]byte
	_, _ = rand.Read(nonce[:])
	b.mu.Lock()
	s := &session{id: b.NodeID() + "." + hex.EncodeToString(nonce[:]), val: b.want, lost: make(chan struct{})}
	b.mu.Unlock()
	sent := b.clock.Now()
	s.lastSent = sent
	rctx, cancel := context.WithTimeout(ctx, b.spec.renewTimeout())
	rev, err := b.kv.Create(rctx, sessionKey(s.id), encode(s.val))
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.renewFailures.Add(1)
		if !b.checkGoneLocked(err) {
			b.out.fail(b.log, b.clock.Now().Mono, "create session", err)
		}
		return false
	}
	b.storeAnsweredLocked()
	s.rev, s.createdRev, s.written = rev, rev, s.val
	if !b.extendLocked(s, sent) {
		b.dead = append(b.dead, s)
		return false
	}
	b.sess = s
	if b.sessionLost {
		// Whatever cost this node its session (a store outage, most
		// often) likely cost the others theirs: each gets a TTL from now
		// to come back before its keys are taken.
		b.v.obs.restart(b.clock.Now().Mono)
		b.sessionLost = false
	}
	// A grace under way restarts: the new session's CAS chain, which
	// detects a purge by a conflicting renew, begins only now, and a purge
	// before now is covered only by a TTL from now. For the same reason the
	// view must be read again if its read began before now.
	b.restartGraceLocked()
	s.readsBefore = b.reads
	if b.watchStop != nil {
		b.requestRewatchLocked()
	}
	b.log.Info("ronin: session started", "session", s.id, "rev", rev)
	b.notifyAllLocked()
	return true
}

// renew extends s by a CAS write on its last revision and reports whether
// it was acknowledged.
func (b *Bucket) renew(ctx context.Context, s *session) bool {
	sent := b.clock.Now()
	margin := b.spec.TTL - b.spec.RenewDeadline
	if !s.lastSent.Wall.IsZero() && !clocksAgree(s.lastSent, sent, margin) {
		b.mu.Lock()
		b.log.Warn("ronin: wall and monotonic clocks disagree (suspended?); giving up the session", "session", s.id)
		b.loseSessionLocked(s)
		b.mu.Unlock()
		return false
	}
	s.lastSent = sent
	b.mu.Lock()
	rev, val := s.rev, s.val
	b.renewSends++
	send := b.renewSends
	b.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, b.spec.renewTimeout())
	newRev, err := b.kv.Update(rctx, sessionKey(s.id), encode(val), rev)
	cancel()
	b.mu.Lock()
	defer b.mu.Unlock()
	if err != nil {
		b.renewFailures.Add(1)
		if b.checkGoneLocked(err) {
			return false
		}
		if isCASConflict(err) {
			// A renew whose acknowledgement we lost may have landed. Adopt
			// the revision we see, without extending the deadline: only an
			// acknowledged write's send time may extend it.
			if e, ok := b.v.sessions[s.id]; ok && e.rev != rev && b.v.synced {
				s.rev = e.rev
				b.kickLocked()
				return false
			}
			if _, ok := b.v.sessions[s.id]; !ok && b.v.synced {
				b.log.Warn("ronin: this node's session renew conflicted and the view no longer has the session; starting a new one", "session", s.id)
				b.loseSessionLocked(s)
				return false
			}
			// The view cannot explain the conflict: the bucket may have
			// been replaced, or purged. Read the truth back.
			b.suspectLocked(sessionKey(s.id), rev)
			b.restartGraceLocked()
			return false
		}
		b.out.fail(b.log, b.clock.Now().Mono, "renew session", err)
		return false
	}
	b.storeAnsweredLocked()
	s.rev, s.written = newRev, val
	if b.sess != s || !b.extendLocked(s, sent) {
		return false
	}
	s.ackedSend = send
	close(b.renewed)
	b.renewed = make(chan struct{})
	if b.v.lastRev >= b.ackedRev {
		b.ackedAt = b.clock.Now() // time the oldest renew not yet seen
	}
	b.ackedRev = newRev
	b.log.Debug("ronin: renewed", "session", s.id, "rev", newRev)
	return true
}

// extendLocked moves s's deadline to sent+RenewDeadline and re-arms its
// timer. It fails if s is already lost or its deadline already passed.
func (b *Bucket) extendLocked(s *session, sent clock.Instant) bool {
	now := b.clock.Now()
	if old := s.dl.Load(); old != nil && !old.valid(now) {
		select {
		case <-s.lost: // the deadline timer said so already
		default:
			b.log.Warn("ronin: a session write was acknowledged after the session's deadline; stepping down", "session", s.id)
		}
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
		s.timer = b.clock.AfterFunc(d.remaining(now), func() { b.expireOwn(s) })
	} else {
		s.timer.Reset(d.remaining(now))
	}
	return true
}

// expireOwn runs at s's deadline: if no renew moved it, s is lost.
func (b *Bucket) expireOwn(s *session) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
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
			b.sessionLost = true
		}
		b.restartGraceLocked()
		if _, stored := b.v.sessions[s.id]; stored {
			b.dead = append(b.dead, s)
		}
		b.notifyAllLocked()
		b.kickLocked()
	})
}

// storeAnsweredLocked records an acknowledged session write.
func (b *Bucket) storeAnsweredLocked() {
	b.out.ok(b.log, b.clock.Now().Mono)
	b.retry.Reset()
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
	rctx, cancel := context.WithTimeout(ctx, b.spec.RequestTimeout())
	defer cancel()
	err := b.kv.Delete(rctx, sessionKey(id), rev)
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
// meanwhile, the delete fails and nothing happens. A node without a live
// session of its own expires nothing: it could not take what an expiry
// frees, and a node whose session was just lost (an outage, most often)
// gives the others a TTL from its new session's start instead
// (observer.restart), since they likely lost theirs to the same outage.
func (b *Bucket) expireSessions(ctx context.Context) {
	b.mu.Lock()
	if !b.expiresLocked(b.clock.Now()) {
		b.mu.Unlock()
		return
	}
	expired := b.v.obs.expired(b.clock.Now().Mono, b.ownIDLocked())
	b.mu.Unlock()
	for _, e := range expired {
		deleted, err := b.deleteSession(ctx, e.id, e.rev)
		b.mu.Lock()
		switch {
		case err != nil:
			if !b.checkGoneLocked(err) {
				b.out.fail(b.log, b.clock.Now().Mono, "expire session "+e.id, err)
				b.v.obs.postpone(e.id, e.rev, b.clock.Now().Mono+b.spec.RetryPeriod)
			}
		case !deleted:
			// It renewed after all, and the watcher will show the new
			// revision; if it never does, the store holds what the view
			// lacks (a purge) and the view is read back.
			b.v.obs.postpone(e.id, e.rev, b.clock.Now().Mono+b.spec.RetryPeriod)
			b.suspectLocked(sessionKey(e.id), e.rev)
		default:
			b.log.Info("ronin: expired a session that stopped renewing", "session", e.id, "rev", e.rev)
			// The delete marker reaches the watcher soon; stop counting now
			// so the keeper does not delete twice.
			b.v.obs.gone(e.id)
		}
		b.mu.Unlock()
	}
}

// expiresLocked reports whether this node expires other sessions now: its
// view is complete and it has a live session of its own.
func (b *Bucket) expiresLocked(now clock.Instant) bool {
	return b.v.synced && b.sess != nil && b.sess.valid(now)
}

// reconcile deletes records that point at this node's live session but are
// not held by a lease here (a release whose delete failed, a won write
// whose lease was not kept, a handover nobody accepted). It looks only
// when a record or a lease changed since it last found nothing to do: with thousands of keys held, a scan every round was most of an
// idle node's CPU.
func (b *Bucket) reconcile(ctx context.Context) {
	b.mu.Lock()
	s := b.sess
	if s == nil || !b.v.synced || !b.unsettled {
		b.mu.Unlock()
		return
	}
	b.unsettled = false
	type stale struct {
		key string
		rev uint64
	}
	var todo []stale
	for key := range b.v.bySession[s.id] {
		_, busy := b.acquiring[key]
		if l := b.leases[key]; !busy && (l == nil || l.rev != b.v.records[key].rev) {
			todo = append(todo, stale{key, b.v.records[key].rev})
		}
	}
	b.unsettled = len(todo) > 0 // look again until the deletes show in the view
	b.mu.Unlock()
	for _, st := range todo {
		rctx, cancel := context.WithTimeout(ctx, b.spec.RequestTimeout())
		err := b.kv.Delete(rctx, st.key, st.rev)
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
	if b.ackedRev == 0 || b.v.lastRev >= b.ackedRev {
		return
	}
	if b.clock.Now().Sub(b.ackedAt) > max(b.spec.stallGap(), watcherLagLimit) {
		b.ackedRev = 0
		b.requestRewatchLocked()
	}
}

// checkSuspects re-reads the bucket when a CAS conflict is still
// unexplained by the view a RetryPeriod later: the store has writes the
// watcher never delivered (a purge, a delete by hand) or the bucket was
// replaced. Without it, a loop that retries only on conflict would spin
// forever against a view that never changes.
func (b *Bucket) checkSuspects() {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now().Mono
	stale := false
	for key, sp := range b.suspects {
		switch {
		case b.v.rev(key) != sp.rev:
			delete(b.suspects, key) // the view moved on: explained
		case now-sp.at >= b.spec.RetryPeriod:
			stale = true
		}
	}
	if stale {
		clear(b.suspects)
		b.requestRewatchLocked()
	}
}
