package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nonchan7720/ronin/internal/backoff"
	"github.com/nonchan7720/ronin/internal/clock"
	"github.com/nonchan7720/ronin/internal/store"
)

// Bucket is one node's use of one election bucket: the view folded from a
// single wildcard watcher, the node's session (session.go), the leases
// taken under it, and the subscriptions that fan changes out. It runs while
// it has users (see Join).
type Bucket struct {
	reg   *Registry
	spec  BucketSpec
	kv    store.Bucket
	log   *slog.Logger
	clock clock.Clock

	renewFailures atomic.Uint64

	mu          sync.Mutex
	users       int
	stop        context.CancelFunc
	stopped     sync.WaitGroup
	kick        chan struct{} // wakes the keeper
	rewatch     chan struct{} // asks the watch loop to start over
	v           *view
	subs        map[string][]*Subscription
	allSubs     map[*Subscription]struct{}
	leases      map[string]*Lease
	accept      func(*Lease) bool    // takes leases handed over to this node (Accept)
	waiters     map[string][]*waiter // candidates here waiting for a key (Wait)
	acquiring   map[string]struct{}  // keys with a CAS write in flight
	writeSlot   chan struct{}        // bounds acquisition writes in flight
	released    map[string]struct{}  // keys released here and not yet taken
	unsettled   bool                 // a record or lease changed since reconcile last looked
	suspects    map[string]suspicion // keys whose CAS conflicted with the view
	grantAfter  time.Duration        // while the genesis record is missing: when to write it
	gone        error                // the bucket was deleted under its users
	sess        *session             // current session, nil when there is none
	dead        []*session           // own lost sessions still to delete
	sessionLost bool                 // a session of this node was lost since the last one started
	ackedRev    uint64               // revision of the last acknowledged renew
	ackedAt     clock.Instant
	want        sessionValue // what this node's session should say (SetLeaving, SetPrepared)
	out         outage
	retry       *backoff.Backoff // session creation while the store is out, at most TTL/2 apart (observer.restart)
	observers   int              // Observe users: the watcher runs for them too
	watchStop   context.CancelFunc
	watching    sync.WaitGroup
	// reads counts the watchers started, each a full read of the bucket;
	// syncedBy is the one whose read completed the view. A session may
	// acquire only on a read started after it began (session.readsBefore).
	reads, syncedBy uint64
	// renewSends numbers the renews sent; renewed is closed and replaced
	// when one is acknowledged. A created record's lease waits for a renew
	// numbered above confirmAfter (confirmCreate); confirming counts the
	// waiters.
	renewSends, confirmAfter uint64
	confirming               int
	renewed                  chan struct{}
}

// suspicion is a CAS conflict against the revision the view showed: if the
// view still shows that revision a RetryPeriod later, the store has
// something the watcher never delivered (a purge, a delete by hand), and
// the view is read back (resynced).
type suspicion struct {
	rev uint64
	at  time.Duration
}

// Holder describes who holds a key.
type Holder struct {
	// Candidate is the holder's CandidateID, "" when the key is free.
	Candidate string
	// Node is the holder's node.
	Node string
	// Rev is the record's revision: the holder's fencing token.
	Rev uint64
	// Since is the server time of the holder's acquisition; for a free key,
	// of its last write (zero if never written).
	Since time.Time
	// Released marks a free key whose holder released it (its record was
	// deleted), as opposed to one whose holder's session died.
	Released bool
}

func newBucket(r *Registry, spec BucketSpec, opened store.Opened) *Bucket {
	b := &Bucket{
		reg:       r,
		spec:      spec,
		kv:        opened.Bucket,
		log:       r.host.Logger.With("bucket", spec.Name), // the host's logger carries node
		clock:     r.clock,
		v:         newView(spec.TTL, spec.stallGap()),
		subs:      map[string][]*Subscription{},
		allSubs:   map[*Subscription]struct{}{},
		leases:    map[string]*Lease{},
		acquiring: map[string]struct{}{},
		renewed:   make(chan struct{}),
		writeSlot: make(chan struct{}, maxAcquireWrites),
		released:  map[string]struct{}{},
		suspects:  map[string]suspicion{},
		retry:     backoff.New(spec.RetryPeriod, spec.TTL/2),
		want:      sessionValue{Node: r.host.NodeID},
	}
	return b
}

// maxAcquireWrites bounds the acquisition writes one node has in flight in
// one bucket. Thousands of keys campaigning at once would otherwise queue
// the node's session renew behind them at the stream leader until it timed
// out, and a lost session drops every lease: the election would start over.
const maxAcquireWrites = 32

// Spec returns the bucket's resolved settings.
func (b *Bucket) Spec() BucketSpec { return b.spec }

// NodeID is the node this view belongs to.
func (b *Bucket) NodeID() string { return b.reg.host.NodeID }

// Registry is the registry that opened the bucket.
func (b *Bucket) Registry() *Registry { return b.reg }

// Logger is the bucket's logger (it carries node and bucket).
func (b *Bucket) Logger() *slog.Logger { return b.log }

// Clock is the node's clock.
func (b *Bucket) Clock() clock.Clock { return b.clock }

// RenewFailures counts this node's failed session renewals in the bucket.
func (b *Bucket) RenewFailures() uint64 { return b.renewFailures.Load() }

// Err returns an error wrapping ErrBucketGone once the bucket was deleted
// under its users; nil before. Users stop when it is set: their leases have
// ended and nothing will be acquired in it again.
func (b *Bucket) Err() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.gone
}

// Join adds a user. The first user starts the watcher and the session; the
// returned func removes the user, and the last one deletes the session and
// stops everything, waiting for it. Users must have released their leases.
func (b *Bucket) Join() func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users++
	if b.users == 1 {
		// The keeper starts the watcher after its first session attempt,
		// so that the first read usually follows the session (see reads).
		ctx, cancel := context.WithCancel(context.Background())
		b.stop = cancel
		b.kick = make(chan struct{}, 1)
		b.stopped.Add(1)
		go func() { defer b.stopped.Done(); b.keeper(ctx) }()
	}
	var once sync.Once
	return func() { once.Do(b.leave) }
}

// Observe adds a reader: the watcher runs (and the view stays current)
// until the returned func is called, but no session is created and
// nothing is written on the reader's behalf.
func (b *Bucket) Observe() func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.observers++
	if b.observers == 1 {
		b.startWatchLocked()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			b.observers--
			b.mu.Unlock()
			b.stopWatchIfUnused()
		})
	}
}

// startWatchLocked starts the watcher unless it runs.
func (b *Bucket) startWatchLocked() {
	if b.watchStop != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.watchStop = cancel
	b.rewatch = make(chan struct{}, 1)
	b.watching.Add(1)
	go func() { defer b.watching.Done(); b.watchLoop(ctx) }()
}

// stopWatchIfUnused stops the watcher once nobody uses the bucket.
func (b *Bucket) stopWatchIfUnused() {
	b.mu.Lock()
	stop := b.watchStop
	if b.users > 0 || b.observers > 0 || stop == nil {
		b.mu.Unlock()
		return
	}
	b.watchStop = nil
	b.mu.Unlock()
	stop()
	b.watching.Wait()
}

func (b *Bucket) leave() {
	b.mu.Lock()
	b.users--
	if b.users > 0 {
		b.mu.Unlock()
		return
	}
	stop := b.stop
	b.mu.Unlock()
	b.awaitSuccessors(successorWait)
	stop()
	b.stopped.Wait()
	b.closeSession()
	b.stopWatchIfUnused()
}

// successorWait bounds how long a node shutting down waits for the keys it
// released to be taken by others.
const successorWait = time.Second

// awaitSuccessors runs when the last user leaves (a drain, a resign, a
// Shutdown): it waits until every key this node released and nobody has
// taken yet has a new holder in its view, or timeout passes. Without it the
// server could stop right after, while a successor's acquiring write is in
// flight to it (if it led the bucket's stream), and the write would be lost
// for a whole request timeout. Keys nobody else campaigns for just cost the
// timeout. It looks again on each change of the view, at keys still
// untaken only: a poll of every released key each millisecond cost about
// a second of CPU over the key sets' shutdowns in one run of the keys
// bench (5,000 and 10,000 keys).
func (b *Bucket) awaitSuccessors(timeout time.Duration) {
	sub := b.SubscribeAll()
	defer b.Unsubscribe(sub)
	timer := clock.NewTimer(b.clock, timeout)
	defer timer.Stop()
	b.mu.Lock()
	pending := slices.Collect(maps.Keys(b.released))
	b.mu.Unlock()
	for {
		b.mu.Lock()
		if b.gone != nil || len(b.v.sessions) <= 1 && b.sess != nil {
			b.mu.Unlock()
			return // no other node in the bucket: nobody to wait for
		}
		pending = slices.DeleteFunc(pending, func(key string) bool {
			h, _ := b.v.holder(key)
			return h.Candidate != ""
		})
		b.mu.Unlock()
		if len(pending) == 0 {
			return
		}
		select {
		case <-sub.C():
		case <-timer.C:
			return
		}
	}
}

// Holder returns who holds key now in this node's view, and whether the
// view is complete. A record whose session is gone is free.
func (b *Bucket) Holder(key string) (Holder, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, _ := b.v.holder(key)
	return h, b.v.synced
}

// Holders returns the live holder of every held key in this node's view.
func (b *Bucket) Holders() map[string]Holder {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v.holders()
}

// Members returns the sorted, distinct nodes with a live session in the
// bucket that are not leaving, and whether the view is complete.
func (b *Bucket) Members() ([]string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.v.members(), b.v.synced
}

// watchLoop keeps one wildcard watcher running and applies what it delivers.
func (b *Bucket) watchLoop(ctx context.Context) {
	wait := backoff.New(b.spec.RetryPeriod, b.spec.TTL)
	for ctx.Err() == nil && b.Err() == nil {
		b.mu.Lock()
		b.reads++
		read := b.reads
		b.mu.Unlock()
		wctx, cancel := context.WithCancel(ctx)
		w, err := b.kv.Watch(wctx)
		if err != nil {
			cancel()
			b.mu.Lock()
			if !b.checkGoneLocked(err) {
				b.out.fail(b.log, b.clock.Now().Mono, "watch", err)
			}
			b.mu.Unlock()
			clock.Sleep(ctx, b.clock, wait.Next())
			continue
		}
		wait.Reset()
		b.mu.Lock()
		b.v.resync()
		b.mu.Unlock()
		b.consume(ctx, w, read)
		_ = w.Stop()
		cancel()
	}
}

// consume applies the updates of w, the read numbered read, until ctx
// ends, w closes, or a rewatch is requested.
func (b *Bucket) consume(ctx context.Context, w store.Watcher, read uint64) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.rewatch:
			b.log.Info("ronin: re-reading the bucket (watcher stuck, or the store has writes it never delivered)")
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			b.mu.Lock()
			if e == nil {
				b.syncedBy = read
				b.finishSyncLocked()
			} else {
				b.applyLocked(*e)
			}
			b.mu.Unlock()
		}
	}
}

// requestRewatchLocked makes the watch loop start a new watcher: a full
// re-read of the bucket.
func (b *Bucket) requestRewatchLocked() {
	select {
	case b.rewatch <- struct{}{}:
	default:
	}
}

// finishSyncLocked completes a (re)sync and tells everyone to look again,
// the keeper too if the view lacks the genesis record (its TTL of grace
// counts from now).
func (b *Bucket) finishSyncLocked() {
	removed, c := b.v.finishSync(b.clock.Now().Mono)
	for _, key := range removed {
		b.endLeaseLocked(key, ^uint64(0))
	}
	b.reactLocked(c)
	b.notifyAllLocked()
	b.genesisSeenLocked()
	if !b.v.genesis {
		b.kickLocked()
	}
}

// genesisSeenLocked ends a grace under way once the view shows the genesis
// record, so that a later loss of the record starts a new grace, from the
// sync that lacks it. (Left to the keeper's next round, a grace begun
// before a stale view showed the record could still be running, and due,
// when a re-read a moment later finds the record purged: the keeper would
// write it at once, with no TTL's wait after the purge. The simulator
// found it once a write came between a session's create and the genesis
// write in one keeper round.)
func (b *Bucket) genesisSeenLocked() {
	if b.v.genesis && b.grantAfter != 0 {
		b.grantAfter = 0
		b.notifyAllLocked() // acquisitions may start
	}
}

// applyLocked folds one store entry into the view and acts on the change.
func (b *Bucket) applyLocked(e store.Entry) {
	c := b.v.apply(e, b.clock.Now().Mono)
	if c.unreadable {
		b.log.Warn("ronin: key holds a value Ronin did not write; treating it as free", "key", e.Key, "rev", e.Rev)
	}
	if c.key != "" {
		b.unsettled = true
		if e.Op == store.Put {
			delete(b.released, c.key)
		}
		b.endLeaseLocked(c.key, c.rev)
		if e.Op == store.Put {
			b.adoptLocked(c.key)
		}
		b.notifyKeyLocked(c.key)
	}
	b.reactLocked(c)
	b.genesisSeenLocked()
}

// Accept registers f to take the leases that other nodes hand over to this
// node (HandOver): when the watcher delivers a record written over to this
// node's live session, a lease at that record's revision is made and
// passed to f, which keeps it (true) or refuses it (false: the record is
// then deleted by the keeper, freeing the key). f runs under the bucket's
// lock and must not block or call the bucket. nil stops accepting.
func (b *Bucket) Accept(f func(*Lease) bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.accept = f
}

// adoptLocked makes a lease of key if its record was handed over to this
// node's session and someone accepts it. The session must be valid now
// and the view complete, as for an acquisition: the handover write's
// revision is the new term's token, and the previous holder's handler
// returned before it was written.
func (b *Bucket) adoptLocked(key string) {
	e := b.v.records[key]
	s := b.sess
	if !e.present || !e.rec.Handoff || s == nil || e.rec.Session != s.id || b.leases[key] != nil ||
		!b.acquirableLocked(b.clock.Now()) {
		return
	}
	take := b.accept
	for _, w := range b.waiters[key] {
		if w.candidate == e.rec.Candidate {
			take = w.take
			break
		}
	}
	if take == nil {
		return // reconcile frees the record
	}
	l := newLease(b, key, e.rec.Candidate, e.rev, s)
	if !take(l) {
		return
	}
	b.leases[key] = l
	delete(b.released, key)
	b.waitingChangedLocked(key)
}

// HandOver ends l and writes its record over to node to's live session in
// one CAS at l's revision, so that to's watcher delivers it a lease at
// once (see Accept) without a second write. Call it only after the work
// done under l has stopped: the new holder starts as soon as the write
// lands. If to has no live session in this node's view, it releases l
// instead. A write whose outcome is unknown is followed by a delete at
// l's revision, which frees the key if the write did not land and fails
// harmlessly if it did.
func (b *Bucket) HandOver(ctx context.Context, l *Lease, to string) error {
	b.mu.Lock()
	target, ok := b.v.liveSession(to)
	if !ok || to == b.NodeID() {
		b.mu.Unlock()
		return b.Release(ctx, l)
	}
	return b.handOverLocked(ctx, l, record{Candidate: to, Node: to, Session: target, Handoff: true})
}

// handOverLocked ends l and writes rec over its record at l's revision
// (see HandOver); it unlocks the bucket.
func (b *Bucket) handOverLocked(ctx context.Context, l *Lease, rec record) error {
	b.endLeaseLocked(l.key, ^uint64(0))
	b.released[l.key] = struct{}{}
	b.mu.Unlock()
	rctx, cancel := context.WithTimeout(ctx, b.spec.RequestTimeout())
	_, err := b.kv.Update(rctx, l.key, encode(rec), l.rev)
	cancel()
	if err == nil || isCASConflict(err) {
		return nil // handed over, or the key was no longer ours to give
	}
	return b.deleteReleased(ctx, l)
}

// reactLocked acts on ended sessions and membership changes.
func (b *Bucket) reactLocked(c change) {
	for _, key := range c.freed {
		b.notifyKeyLocked(key)
	}
	for _, id := range c.dropped {
		if b.sess != nil && b.sess.id == id {
			b.log.Warn("ronin: this node's session is gone from the store (expired by another node, or purged)", "session", id)
			b.loseSessionLocked(b.sess)
		}
	}
	if c.membership {
		b.notifyAllLocked()
	}
}

// Acquirable reports whether TryAcquire can succeed now as far as this
// node can tell: the view is complete, shows the genesis record and has
// reached the session's create, the session is valid, and the bucket is
// not gone. The bucket signals every subscriber when this changes.
func (b *Bucket) Acquirable() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.acquirableLocked(b.clock.Now())
}

// SessionID returns this node's current session in the bucket, "" while
// it has none. Each session has a new ID.
func (b *Bucket) SessionID() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ownIDLocked()
}

func (b *Bucket) acquirableLocked(now clock.Instant) bool {
	return b.gone == nil && b.v.synced && b.v.genesis && b.sess != nil && b.sess.valid(now) && b.syncedBy > b.sess.readsBefore &&
		b.v.lastRev >= b.sess.createdRev
}

// TryAcquire makes one attempt to take key for candidate under this node's
// session: a CAS write expecting the revision at which the key was seen
// free. It returns ErrHeld if the key is held, ErrNoSession unless
// Acquirable, ErrLostRace if another write came first, and an error wrapping
// ErrBucketGone once the bucket was deleted.
func (b *Bucket) TryAcquire(ctx context.Context, key, candidate string) (*Lease, error) {
	b.mu.Lock()
	s := b.sess
	now := b.clock.Now()
	switch {
	case b.gone != nil:
		b.mu.Unlock()
		return nil, b.gone
	case !b.acquirableLocked(now):
		b.mu.Unlock()
		return nil, ErrNoSession
	}
	if _, busy := b.acquiring[key]; busy {
		b.mu.Unlock()
		return nil, ErrLostRace
	}
	h, casRev := b.v.holder(key)
	if h.Candidate != "" {
		b.mu.Unlock()
		return nil, ErrHeld
	}
	if sp, ok := b.suspects[key]; ok && sp.rev == casRev {
		// The same write already conflicted against this revision, and the
		// view has not moved since: it would conflict again.
		b.mu.Unlock()
		return nil, ErrLostRace
	}
	b.acquiring[key] = struct{}{}
	b.mu.Unlock()

	rev, err := b.acquireWrite(ctx, key, record{Candidate: candidate, Node: b.NodeID(), Session: s.id}, casRev)
	if err == nil && casRev == 0 {
		err = b.confirmCreate(ctx, s)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.acquiring, key)
	if err != nil {
		// The write may have landed (a lost ack, or it landed and then
		// the session ended or ctx did before the confirming renew): a
		// record of this node without a lease is for reconcile to free.
		b.unsettled = true
		b.kickLocked()
	}
	if errors.Is(err, ErrNoSession) {
		return nil, err
	}
	if err != nil {
		if isCASConflict(err) {
			b.suspectLocked(key, casRev)
			return nil, ErrLostRace
		}
		if b.checkGoneLocked(err) {
			return nil, b.gone
		}
		return nil, err
	}
	if b.sess != s || !s.valid(b.clock.Now()) {
		// Won the write but the session ended meanwhile: the record points
		// at a dead session, which frees it, or reconcile deletes it.
		b.kickLocked()
		return nil, ErrNoSession
	}
	if e := b.v.records[key]; e.rev > rev {
		return nil, ErrLostRace // already replaced in our view
	}
	l := newLease(b, key, candidate, rev, s)
	b.leases[key] = l
	b.waitingChangedLocked(key)
	return l, nil
}

// confirmCreate returns once a renew of s sent after now is acknowledged,
// or ErrNoSession when s ends first. A record created where the view showed
// none needs it: a purge erases records and leaves keys absent, so a
// create can succeed on a key whose holder is still running, if the purge
// came after this node's view last read it. A successful renew proves that
// s's record, and so the bucket, was not purged between s's previous
// renew and this one, and a purge before that would have broken s's CAS
// chain or, before s began, been read by the view (Bucket.reads). Writes
// on a revision need no such renew: a purge makes them conflict.
func (b *Bucket) confirmCreate(ctx context.Context, s *session) error {
	b.mu.Lock()
	need := b.renewSends
	b.confirmAfter = max(b.confirmAfter, need)
	b.confirming++
	b.kickLocked()
	defer func() {
		b.confirming--
		b.mu.Unlock()
	}()
	for {
		if b.sess != s || !s.valid(b.clock.Now()) {
			return ErrNoSession
		}
		if s.ackedSend > need {
			return nil
		}
		renewed := b.renewed
		b.mu.Unlock()
		select {
		case <-renewed:
		case <-s.lost:
		case <-ctx.Done():
			b.mu.Lock()
			return ctx.Err()
		}
		b.mu.Lock()
	}
}

// suspectLocked notes a CAS conflict on key against revision rev of the
// view; the keeper resyncs if the view has not moved past rev a
// RetryPeriod later.
func (b *Bucket) suspectLocked(key string, rev uint64) {
	if _, ok := b.suspects[key]; !ok {
		b.suspects[key] = suspicion{rev: rev, at: b.clock.Now().Mono}
	}
}

// acquireWrite makes the CAS write of an acquisition once a write slot is
// free, unless the view has moved on while it waited for the slot (the
// key was taken, or written again): that write could only conflict.
func (b *Bucket) acquireWrite(ctx context.Context, key string, rec record, casRev uint64) (uint64, error) {
	select {
	case b.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-b.writeSlot }()
	b.mu.Lock()
	h, rev := b.v.holder(key)
	b.mu.Unlock()
	switch {
	case h.Candidate != "":
		return 0, ErrHeld
	case rev != casRev:
		return 0, ErrLostRace
	}
	rctx, cancel := context.WithTimeout(ctx, b.spec.RequestTimeout())
	defer cancel()
	return b.kv.Update(rctx, key, encode(rec), casRev)
}

// Release ends the lease and deletes its record by CAS on its revision, so
// that the next candidate can take the key at once. A failed delete is
// retried by the keeper while the session lives; if the session dies the
// record is freed with it.
func (b *Bucket) Release(ctx context.Context, l *Lease) error {
	b.mu.Lock()
	b.endLeaseLocked(l.key, ^uint64(0))
	b.released[l.key] = struct{}{}
	b.mu.Unlock()
	return b.deleteReleased(ctx, l)
}

// deleteReleased deletes the record of the ended lease l by CAS at its
// revision; a failed delete is retried by the keeper (reconcile).
func (b *Bucket) deleteReleased(ctx context.Context, l *Lease) error {
	rctx, cancel := context.WithTimeout(ctx, b.spec.RequestTimeout())
	defer cancel()
	err := b.kv.Delete(rctx, l.key, l.rev)
	if err != nil && !isCASConflict(err) {
		b.mu.Lock()
		if !b.checkGoneLocked(err) {
			b.kickLocked()
		}
		b.mu.Unlock()
		return err
	}
	return nil
}

// endLeaseLocked ends the lease on key if the record moved past it (rev
// greater than the lease's); ^0 ends it unconditionally.
func (b *Bucket) endLeaseLocked(key string, rev uint64) {
	l := b.leases[key]
	if l == nil || rev <= l.rev {
		return
	}
	delete(b.leases, key)
	b.unsettled = true
	l.end()
	b.waitingChangedLocked(key)
	b.notifyKeyLocked(key)
}

// SetLeaving marks this node's session as leaving (or not): it keeps its
// leases but drops out of Members on every node. It takes effect with the
// next renew, which it triggers.
func (b *Bucket) SetLeaving(leaving bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.want.Leaving = leaving
	b.setWantLocked()
}

// SetPrepared publishes, in this node's session, whether it prepares the
// keys planned to it before their holders hand them over, and which keys
// it has prepared. It takes effect with the next renew, which it triggers
// when something changed.
func (b *Bucket) SetPrepared(prepares bool, keys []string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.want.Prepares, b.want.Prepared = prepares, strings.Join(slices.Sorted(slices.Values(keys)), ",")
	b.setWantLocked()
}

// setWantLocked moves the wanted session value to the live session.
func (b *Bucket) setWantLocked() {
	if b.sess != nil && b.sess.val != b.want {
		b.sess.val = b.want
		b.kickLocked()
	}
}

// Prepared reports whether node prepares the keys planned to it (a live,
// not leaving session of it says so), and if so whether it has prepared
// key.
func (b *Bucket) Prepared(node, key string) (prepares, prepared bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id, ok := b.v.liveSession(node)
	if !ok {
		return false, false
	}
	val := b.v.sessions[id].val
	return val.Prepares, val.Prepares && slices.Contains(strings.Split(val.Prepared, ","), key)
}

func (b *Bucket) kickLocked() {
	if b.kick == nil {
		return
	}
	select {
	case b.kick <- struct{}{}:
	default:
	}
}

// checkGone marks the bucket gone if err says it was deleted, and reports
// whether it did.
func (b *Bucket) checkGone(err error) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.checkGoneLocked(err)
}

// checkGoneLocked marks the bucket gone if err wraps store.ErrBucketGone:
// every lease ends now, the session is abandoned (its record went with the
// bucket), the registry forgets the bucket so that nothing here recreates
// it behind its users' backs, and users return the error.
func (b *Bucket) checkGoneLocked(err error) bool {
	if !errors.Is(err, store.ErrBucketGone) {
		return false
	}
	if b.gone == nil {
		b.gone = fmt.Errorf("%w (bucket %q)", err, b.spec.Name)
		b.log.Error("ronin: the bucket was deleted while in use; every leader in it steps down", "err", err)
		if b.sess != nil {
			b.loseSessionLocked(b.sess)
		}
		b.dead = nil
		b.reg.forget(b)
		b.notifyAllLocked()
	}
	return true
}

// isCASConflict reports whether err means another write came first.
func isCASConflict(err error) bool { return errors.Is(err, store.ErrConflict) }
