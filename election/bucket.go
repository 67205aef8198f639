package election

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket is one node's view of one election bucket: a single wildcard
// watcher, the node's session, and the leases taken under it. It runs while
// it has users (see Join) and fans store changes out to subscribers.
type Bucket struct {
	reg   *Registry
	spec  BucketSpec
	kv    jetstream.KeyValue
	log   *slog.Logger
	clock clock

	renewFailures atomic.Uint64

	mu        sync.Mutex
	users     int
	stop      context.CancelFunc
	stopped   sync.WaitGroup
	kick      chan struct{}          // wakes the keeper
	rewatch   chan struct{}          // asks the watch loop to start over
	synced    bool                   // the watcher delivered its initial values
	gen       uint64                 // watch generation, to sweep stale entries
	records   map[string]recordEntry // user keys
	sessions  map[string]sessionEntry
	bySession map[string]map[string]struct{} // session id -> keys it holds
	obs       *observer
	lastRev   uint64 // highest revision the watcher delivered
	subs      map[string]map[*Subscription]struct{}
	allSubs   map[*Subscription]struct{}
	leases    map[string]*Lease
	acquiring map[string]struct{} // keys with a CAS write in flight
	writeSlot chan struct{}       // bounds acquisition writes in flight
	released  map[string]struct{} // keys released here and not yet taken
	sess      *session            // current session, nil when there is none
	dead      []*session          // own lost sessions still to delete
	ackedRev  uint64              // revision of the last acknowledged renew
	ackedAt   instant
	leaving   bool // new sessions start leaving (SetLeaving)
}

// recordEntry is the last state of an election record.
type recordEntry struct {
	rev     uint64
	present bool // false: deleted (rev is the delete marker's)
	rec     record
	gen     uint64
	at      time.Time // server time of the write
}

// sessionEntry is the last state of a live session.
type sessionEntry struct {
	rev uint64
	val sessionValue
	gen uint64
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

func newBucket(r *Registry, spec BucketSpec, kv jetstream.KeyValue) *Bucket {
	return &Bucket{
		reg:       r,
		spec:      spec,
		kv:        kv,
		log:       r.host.Logger.With("bucket", spec.Name), // the host's logger carries node
		clock:     newClock(),
		records:   map[string]recordEntry{},
		sessions:  map[string]sessionEntry{},
		bySession: map[string]map[string]struct{}{},
		obs:       newObserver(spec.TTL, spec.stallGap()),
		subs:      map[string]map[*Subscription]struct{}{},
		allSubs:   map[*Subscription]struct{}{},
		leases:    map[string]*Lease{},
		acquiring: map[string]struct{}{},
		writeSlot: make(chan struct{}, maxAcquireWrites),
		released:  map[string]struct{}{},
	}
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

// RenewFailures counts this node's failed session renewals in the bucket.
func (b *Bucket) RenewFailures() uint64 { return b.renewFailures.Load() }

// Join adds a user. The first user starts the watcher and the session; the
// returned func removes the user, and the last one deletes the session and
// stops everything, waiting for it. Users must have released their leases.
func (b *Bucket) Join() func() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.users++
	if b.users == 1 {
		ctx, cancel := context.WithCancel(context.Background())
		b.stop = cancel
		b.kick = make(chan struct{}, 1)
		b.rewatch = make(chan struct{}, 1)
		b.stopped.Add(2)
		go func() { defer b.stopped.Done(); b.watchLoop(ctx) }()
		go func() { defer b.stopped.Done(); b.keeper(ctx) }()
	}
	var once sync.Once
	return func() { once.Do(b.leave) }
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
// timeout.
func (b *Bucket) awaitSuccessors(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b.mu.Lock()
		if len(b.sessions) <= 1 && b.sess != nil {
			b.mu.Unlock()
			return // no other node in the bucket: nobody to wait for
		}
		pending := 0
		for key := range b.released {
			if h, _ := b.holderLocked(key); h.Candidate == "" {
				pending++
			}
		}
		b.mu.Unlock()
		if pending == 0 {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Subscription delivers a signal on C whenever what it watches may have
// changed. Signals coalesce: C has room for one.
type Subscription struct {
	C   chan struct{}
	key string
	all bool
}

// Subscribe returns a subscription to changes of key, of the node's session
// and of the bucket's view as a whole (resync).
func (b *Bucket) Subscribe(key string) *Subscription {
	s := &Subscription{C: make(chan struct{}, 1), key: key}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.subs[key] == nil {
		b.subs[key] = map[*Subscription]struct{}{}
	}
	b.subs[key][s] = struct{}{}
	return s
}

// SubscribeAll returns a subscription to every change in the bucket,
// membership included.
func (b *Bucket) SubscribeAll() *Subscription {
	s := &Subscription{C: make(chan struct{}, 1), all: true}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.allSubs[s] = struct{}{}
	return s
}

// Unsubscribe ends s.
func (b *Bucket) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.all {
		delete(b.allSubs, s)
		return
	}
	delete(b.subs[s.key], s)
	if len(b.subs[s.key]) == 0 {
		delete(b.subs, s.key)
	}
}

func (s *Subscription) signal() {
	select {
	case s.C <- struct{}{}:
	default:
	}
}

// notifyKeyLocked signals the subscribers of key and of everything.
func (b *Bucket) notifyKeyLocked(key string) {
	for s := range b.subs[key] {
		s.signal()
	}
	for s := range b.allSubs {
		s.signal()
	}
}

// notifyAllLocked signals every subscriber.
func (b *Bucket) notifyAllLocked() {
	for _, set := range b.subs {
		for s := range set {
			s.signal()
		}
	}
	for s := range b.allSubs {
		s.signal()
	}
}

// Holder returns who holds key now in this node's view, and whether the
// view is complete. A record whose session is gone is free.
func (b *Bucket) Holder(key string) (Holder, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	h, _ := b.holderLocked(key)
	return h, b.synced
}

// holderLocked returns the holder of key and the revision a CAS write must
// expect to take it.
func (b *Bucket) holderLocked(key string) (Holder, uint64) {
	e := b.records[key]
	if !e.present {
		return Holder{Since: e.at, Released: e.rev != 0}, e.rev
	}
	if _, live := b.sessions[e.rec.Session]; !live {
		return Holder{Since: e.at}, e.rev
	}
	return Holder{Candidate: e.rec.Candidate, Node: e.rec.Node, Rev: e.rev, Since: e.at}, e.rev
}

// Holders returns the live holder of every held key in this node's view.
func (b *Bucket) Holders() map[string]Holder {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make(map[string]Holder, len(b.records))
	for key := range b.records {
		if h, _ := b.holderLocked(key); h.Candidate != "" {
			out[key] = h
		}
	}
	return out
}

// Members returns the sorted, distinct nodes with a live session in the
// bucket that are not leaving, and whether the view is complete.
func (b *Bucket) Members() ([]string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, s := range b.sessions {
		if !s.val.Leaving {
			out = append(out, s.val.Node)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), b.synced
}

// watchLoop keeps one wildcard watcher running and applies what it delivers.
func (b *Bucket) watchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(ctx)
		w, err := b.kv.WatchAll(wctx)
		if err != nil {
			cancel()
			b.log.Warn("ronin: watch failed", "err", err)
			sleepCtx(ctx, b.spec.RetryPeriod)
			continue
		}
		b.mu.Lock()
		b.synced = false
		b.gen++
		b.mu.Unlock()
		b.consume(ctx, w)
		_ = w.Stop()
		cancel()
	}
}

// consume applies the updates of w until ctx ends, w closes, or a rewatch
// is requested.
func (b *Bucket) consume(ctx context.Context, w jetstream.KeyWatcher) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.rewatch:
			b.log.Warn("ronin: watcher lags behind this node's own writes; restarting it")
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			b.mu.Lock()
			if e == nil {
				b.syncedLocked()
			} else {
				b.applyLocked(e)
			}
			b.mu.Unlock()
		}
	}
}

// syncedLocked completes a (re)sync: entries of older generations were
// deleted while nobody watched, and everyone looks again. Countdowns of
// sessions whose revision did not change keep running.
func (b *Bucket) syncedLocked() {
	for key, e := range b.records {
		if e.gen != b.gen {
			b.unindexLocked(key, e)
			delete(b.records, key)
			b.endLeaseLocked(key, ^uint64(0))
		}
	}
	for id, s := range b.sessions {
		if s.gen != b.gen {
			b.dropSessionLocked(id)
		}
	}
	b.synced = true
	b.obs.event(b.clock.now().mono)
	b.notifyAllLocked()
}

// applyLocked folds one store entry into the view.
func (b *Bucket) applyLocked(e jetstream.KeyValueEntry) {
	now := b.clock.now()
	b.obs.event(now.mono)
	rev := e.Revision()
	b.lastRev = max(b.lastRev, rev)
	put := e.Operation() == jetstream.KeyValuePut
	if id, ok := sessionID(e.Key()); ok {
		b.applySessionLocked(id, rev, put, e.Value(), now)
		return
	}
	key := e.Key()
	old := b.records[key]
	b.unindexLocked(key, old)
	ne := recordEntry{rev: rev, present: put, gen: b.gen, at: e.Created()}
	if put {
		delete(b.released, key)
		if err := json.Unmarshal(e.Value(), &ne.rec); err != nil {
			b.log.Warn("ronin: key holds a value Ronin did not write; treating it as free", "key", key, "rev", rev)
		}
		if b.bySession[ne.rec.Session] == nil {
			b.bySession[ne.rec.Session] = map[string]struct{}{}
		}
		b.bySession[ne.rec.Session][key] = struct{}{}
	}
	b.records[key] = ne
	b.endLeaseLocked(key, rev)
	b.notifyKeyLocked(key)
}

func (b *Bucket) applySessionLocked(id string, rev uint64, put bool, value []byte, now instant) {
	if !put {
		b.dropSessionLocked(id)
		if b.sess != nil && b.sess.id == id {
			b.log.Warn("ronin: this node's session was deleted by another node", "session", id, "rev", rev)
			b.loseSessionLocked(b.sess)
		}
		return
	}
	var v sessionValue
	if err := json.Unmarshal(value, &v); err != nil {
		b.log.Warn("ronin: unreadable session record", "session", id, "rev", rev)
	}
	old, existed := b.sessions[id]
	b.sessions[id] = sessionEntry{rev: rev, val: v, gen: b.gen}
	b.obs.seen(id, rev, now.mono)
	if !existed || old.val != v {
		b.notifyAllLocked() // membership changed
	}
}

// dropSessionLocked forgets a deleted session: the keys it held are free.
func (b *Bucket) dropSessionLocked(id string) {
	if _, ok := b.sessions[id]; !ok {
		return
	}
	delete(b.sessions, id)
	b.obs.gone(id)
	for key := range b.bySession[id] {
		b.notifyKeyLocked(key)
	}
	b.notifyAllLocked()
}

func (b *Bucket) unindexLocked(key string, e recordEntry) {
	if !e.present {
		return
	}
	if set := b.bySession[e.rec.Session]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(b.bySession, e.rec.Session)
		}
	}
}

// TryAcquire makes one attempt to take key for candidate under this node's
// session: a CAS write expecting the revision at which the key was seen
// free. It returns ErrHeld if the key is held, ErrNoSession without a valid
// session or a complete view, and ErrLostRace if another write came first.
func (b *Bucket) TryAcquire(ctx context.Context, key, candidate string) (*Lease, error) {
	b.mu.Lock()
	s := b.sess
	switch {
	case !b.synced || s == nil || !s.valid(b.clock.now()):
		b.mu.Unlock()
		return nil, ErrNoSession
	}
	if _, busy := b.acquiring[key]; busy {
		b.mu.Unlock()
		return nil, ErrLostRace
	}
	h, casRev := b.holderLocked(key)
	if h.Candidate != "" {
		b.mu.Unlock()
		return nil, ErrHeld
	}
	b.acquiring[key] = struct{}{}
	b.mu.Unlock()

	rev, err := b.acquireWrite(ctx, key, record{Candidate: candidate, Node: b.NodeID(), Session: s.id}, casRev)

	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.acquiring, key)
	if err != nil {
		if isCASConflict(err) {
			return nil, ErrLostRace
		}
		return nil, err
	}
	if b.sess != s || !s.valid(b.clock.now()) {
		// Won the write but the session ended meanwhile: the record points
		// at a dead session, which frees it, or reconcile deletes it.
		b.kickLocked()
		return nil, ErrNoSession
	}
	if e := b.records[key]; e.rev > rev {
		return nil, ErrLostRace // already replaced in our view
	}
	l := &Lease{b: b, key: key, candidate: candidate, rev: rev, sess: s, done: make(chan struct{})}
	b.leases[key] = l
	return l, nil
}

// acquireWrite makes the CAS write of an acquisition once a write slot is
// free.
func (b *Bucket) acquireWrite(ctx context.Context, key string, rec record, casRev uint64) (uint64, error) {
	select {
	case b.writeSlot <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	defer func() { <-b.writeSlot }()
	rctx, cancel := context.WithTimeout(ctx, b.spec.requestTimeout())
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
	rctx, cancel := context.WithTimeout(ctx, b.spec.requestTimeout())
	defer cancel()
	err := b.kv.Delete(rctx, l.key, jetstream.LastRevision(l.rev))
	if err != nil && !isCASConflict(err) {
		b.mu.Lock()
		b.kickLocked()
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
	l.end()
	b.notifyKeyLocked(key)
}

// SetLeaving marks this node's session as leaving (or not): it keeps its
// leases but drops out of Members on every node. It takes effect with the
// next renew, which it triggers.
func (b *Bucket) SetLeaving(leaving bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sess != nil {
		b.sess.val.Leaving = leaving
	}
	b.leaving = leaving
	b.kickLocked()
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

// isCASConflict reports whether err means another write came first. NATS
// reports it as ErrKeyExists (create) or ErrKeyRevisionMismatch (update and
// delete; on replicated streams also code 10164 while another write to the
// key is in flight, which nats.go maps to the same errors).
func isCASConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
