// Package memstore implements store.Backend in memory, for the
// deterministic simulator: it uses only channels, sync.Mutex and package
// time, so it runs inside a testing/synctest bubble (virtual time), and every
// goroutine it starts exits when its watcher ends.
//
// A Store is one store process holding many buckets; Store.Backend returns a
// client handle, and several handles on one Store are several nodes talking
// to the same store. The semantics are those of package jsstore on
// JetStream (nats-server 2.15, nats.go 1.55), checked by the conformance
// table in package store's tests:
//
//   - One sequence per bucket incarnation, strictly increasing over all
//     keys. Only the last write of each key is kept (History 1).
//   - Create succeeds on a missing key or one whose last write is a delete
//     marker; ErrConflict otherwise.
//   - Update(key, v, rev) succeeds exactly when rev is the key's last
//     revision, a delete marker's included, or rev is 0 and the key has no
//     write at all (missing or purged): JetStream's expected-last-subject-
//     sequence check, under which a missing key's last revision is 0.
//   - Delete(key, rev) with rev != 0 is the same check. Delete(key, 0) is
//     unconditional: it writes a delete marker whatever the key holds, even
//     on a missing key, because nats.go sends no expectation for revision 0.
//   - Get of a missing, deleted or purged key is ErrNotFound.
//   - Watch delivers the last write of every key, delete markers included,
//     in revision order, then a nil entry, then every later write in
//     revision order; a write replaces an earlier write of its key that the
//     watcher has not delivered yet (History 1: a lagging consumer never
//     sees a replaced message), so a key written again during the initial
//     values moves behind the nil entry. Deliveries never block a writer:
//     each watcher has an unbounded queue and one goroutine.
//
// Operator faults: Purge removes every message of a bucket, tells watchers
// nothing and keeps the sequence; DeleteBucket removes a bucket. After
// DeleteBucket, as on JetStream:
//
//   - Writes and Check through every handle of it return ErrBucketGone.
//     Get and Watch do too (jsstore returns unmapped errors there; see the
//     conformance table).
//   - A running watcher goes silent until its consumer misses two
//     heartbeats (jsstore asks for one every second), WatchResetDelay after
//     the delete; then it delivers what it had queued and its channel
//     closes, whether or not the name was opened again meanwhile (jsstore
//     checks the stream's creation time before it would follow a new
//     incarnation).
//   - Opening the name again creates a new incarnation. Handles of the old
//     one then get ErrBucketGone from Check only: their Create, Update,
//     Delete, Get and Watch act on the new incarnation, because JetStream
//     routes a KV operation by subject and stream name, not by incarnation.
//
// A new incarnation's first revision is one above the highest revision that
// any earlier incarnation of the name issued (the first bucket of a name
// starts at 1). jsstore derives it from the wall clock instead, because a
// JetStream server forgets a deleted stream; this store process remembers,
// so it gives the guarantee store.Backend documents without depending on the
// clock, and revisions stay small and readable in simulator traces. Only
// their order is comparable between the two implementations.
package memstore

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nonchan7720/ronin/internal/store"
)

// WatchResetDelay is how long after DeleteBucket a running watcher of the
// deleted bucket notices the loss and closes: two heartbeat periods of
// jsstore's watch consumer.
const WatchResetDelay = 2 * time.Second

// Store is one in-memory store process with many buckets. Its methods are
// safe for concurrent use.
type Store struct {
	now func() time.Time

	mu sync.Mutex
	// buckets holds the current incarnation of every bucket name.
	buckets map[string]*incarnation
	// lastSeq is the highest revision issued for a name, over all of its
	// incarnations, deleted ones included.
	lastSeq map[string]uint64
}

// New returns an empty store. now stamps the Created time of writes and
// buckets; the simulator passes time.Now, which is virtual inside a
// synctest bubble.
func New(now func() time.Time) *Store {
	return &Store{now: now, buckets: map[string]*incarnation{}, lastSeq: map[string]uint64{}}
}

// Backend returns a client handle on the store. Handles are cheap; several
// handles on one Store behave as several nodes using the same store.
func (s *Store) Backend() store.Backend { return backend{s: s} }

// Purge removes every message of bucket, as a JetStream stream purge does:
// every key becomes missing (not deleted: Update at revision 0 and Create
// succeed on it), watchers are told nothing, and the sequence does not
// restart. It does nothing if the bucket does not exist.
func (s *Store) Purge(bucket string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc := s.buckets[bucket]; inc != nil {
		clear(inc.keys)
	}
}

// DeleteBucket deletes bucket, as JetStream's DeleteKeyValue does; see the
// package documentation for what handles and watchers then see. It does
// nothing if the bucket does not exist.
func (s *Store) DeleteBucket(bucket string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inc := s.buckets[bucket]
	if inc == nil {
		return
	}
	delete(s.buckets, bucket)
	at := s.now()
	for w := range inc.watchers {
		w.lost(at)
	}
	clear(inc.watchers)
}

// incarnation is one life of a bucket, from its creation to its deletion.
type incarnation struct {
	name     string
	replicas int
	metadata map[string]string
	created  time.Time
	// keys holds the last write of every key; it is emptied by a purge.
	keys     map[string]*store.Entry
	watchers map[*watcher]struct{}
}

type backend struct{ s *Store }

// Open opens spec's bucket, creating it with spec's settings if it does not
// exist. An existing bucket is opened whatever its settings; Opened reports
// them, as jsstore does.
func (b backend) Open(ctx context.Context, spec store.Spec) (store.Opened, error) {
	if err := ctx.Err(); err != nil {
		return store.Opened{}, fmt.Errorf("ronin: open bucket %q: %w", spec.Name, err)
	}
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc := s.buckets[spec.Name]; inc != nil {
		return inc.opened(s, false), nil
	}
	inc := &incarnation{
		name: spec.Name,
		// JetStream stores Replicas 0 as 1.
		replicas: max(1, spec.Replicas),
		metadata: maps.Clone(spec.Metadata),
		created:  s.now(),
		keys:     map[string]*store.Entry{},
		watchers: map[*watcher]struct{}{},
	}
	s.buckets[spec.Name] = inc
	return inc.opened(s, true), nil
}

// Lookup opens the existing bucket name; ErrNotFound if there is none.
func (b backend) Lookup(ctx context.Context, name string) (store.Opened, error) {
	if err := ctx.Err(); err != nil {
		return store.Opened{}, fmt.Errorf("ronin: open bucket %q: %w", name, err)
	}
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if inc := s.buckets[name]; inc != nil {
		return inc.opened(s, false), nil
	}
	return store.Opened{}, fmt.Errorf("bucket %q: %w", name, store.ErrNotFound)
}

// opened is what Open returns for inc: a new handle, and the settings as
// stored for the caller to compare with its own. The store's lock must be
// held.
func (inc *incarnation) opened(s *Store, created bool) store.Opened {
	return store.Opened{
		Bucket:   &bucket{s: s, name: inc.name, inc: inc},
		Created:  created,
		Replicas: inc.replicas,
		Metadata: maps.Clone(inc.metadata),
	}
}

// bucket is a handle on the incarnation it opened. Operations other than
// Check act on the name's current incarnation, like JetStream's.
type bucket struct {
	s    *Store
	name string
	inc  *incarnation
}

// current returns the name's current incarnation, or ErrBucketGone. The
// store's lock must be held.
func (b *bucket) current() (*incarnation, error) {
	inc := b.s.buckets[b.name]
	if inc == nil {
		return nil, fmt.Errorf("%w: bucket %q no longer exists", store.ErrBucketGone, b.name)
	}
	return inc, nil
}

// lastRev is the revision of key's last write, 0 if it has none.
func lastRev(inc *incarnation, key string) uint64 {
	if e := inc.keys[key]; e != nil {
		return e.Rev
	}
	return 0
}

// write appends one write to inc and hands it to inc's watchers. The
// store's lock must be held.
func (s *Store) write(inc *incarnation, key string, value []byte, op store.Op) uint64 {
	rev := s.lastSeq[inc.name] + 1
	s.lastSeq[inc.name] = rev
	e := &store.Entry{Key: key, Value: slices.Clone(value), Rev: rev, Op: op, Created: s.now()}
	inc.keys[key] = e
	for w := range inc.watchers {
		w.replace(e)
	}
	return rev
}

// onCurrent runs f on the name's current incarnation under the store's
// lock, unless ctx has ended or the bucket is gone.
func (b *bucket) onCurrent(ctx context.Context, f func(inc *incarnation) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.s.mu.Lock()
	defer b.s.mu.Unlock()
	inc, err := b.current()
	if err != nil {
		return err
	}
	return f(inc)
}

// Create writes key if it is missing or its last write is a delete marker.
func (b *bucket) Create(ctx context.Context, key string, value []byte) (rev uint64, err error) {
	err = b.onCurrent(ctx, func(inc *incarnation) error {
		if e := inc.keys[key]; e != nil && e.Op == store.Put {
			return fmt.Errorf("%w: key %q exists at revision %d", store.ErrConflict, key, e.Rev)
		}
		rev = b.s.write(inc, key, value, store.Put)
		return nil
	})
	return rev, err
}

// Update writes key if its last revision is rev (0: it has no write).
func (b *bucket) Update(ctx context.Context, key string, value []byte, rev uint64) (next uint64, err error) {
	err = b.onCurrent(ctx, func(inc *incarnation) error {
		if last := lastRev(inc, key); last != rev {
			return fmt.Errorf("%w: key %q is at revision %d, not %d", store.ErrConflict, key, last, rev)
		}
		next = b.s.write(inc, key, value, store.Put)
		return nil
	})
	return next, err
}

// Delete writes a delete marker for key if its last revision is rev; with
// rev 0, unconditionally (as nats.go does).
func (b *bucket) Delete(ctx context.Context, key string, rev uint64) error {
	return b.onCurrent(ctx, func(inc *incarnation) error {
		if last := lastRev(inc, key); rev != 0 && last != rev {
			return fmt.Errorf("%w: key %q is at revision %d, not %d", store.ErrConflict, key, last, rev)
		}
		b.s.write(inc, key, nil, store.Delete)
		return nil
	})
}

// Get reads key's last write.
func (b *bucket) Get(ctx context.Context, key string) (out store.Entry, err error) {
	err = b.onCurrent(ctx, func(inc *incarnation) error {
		e := inc.keys[key]
		if e == nil || e.Op != store.Put {
			return fmt.Errorf("%w: %s", store.ErrNotFound, key)
		}
		out = clone(e)
		return nil
	})
	return out, err
}

// Check reports whether the handle's incarnation is still the current one.
func (b *bucket) Check(ctx context.Context) error {
	return b.onCurrent(ctx, b.same)
}

// same reports store.ErrBucketGone unless inc is the handle's incarnation.
func (b *bucket) same(inc *incarnation) error {
	if inc != b.inc {
		return fmt.Errorf("%w: bucket %q was deleted and created again (created %v, was %v)", store.ErrBucketGone, b.name, inc.created, b.inc.created)
	}
	return nil
}

// Watch starts a watcher on the handle's incarnation, which must still be
// the current one.
func (b *bucket) Watch(ctx context.Context) (store.Watcher, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := b.s
	s.mu.Lock()
	defer s.mu.Unlock()
	inc, err := b.current()
	if err == nil {
		err = b.same(inc)
	}
	if err != nil {
		return nil, err
	}
	w := &watcher{
		s:     s,
		inc:   inc,
		start: s.now(),
		kick:  make(chan struct{}, 1),
		stop:  make(chan struct{}),
		out:   make(chan *store.Entry),
	}
	for _, e := range slices.SortedFunc(maps.Values(inc.keys), func(a, b *store.Entry) int { return cmp.Compare(a.Rev, b.Rev) }) {
		w.push(e)
	}
	w.queue = append(w.queue, nil)
	inc.watchers[w] = struct{}{}
	go w.run(ctx, inc.name)
	return w, nil
}

// watcher is one running watch. Writers queue entries under the store's
// lock; the watcher's goroutine hands them to the reader.
type watcher struct {
	s     *Store
	start time.Time
	kick  chan struct{} // capacity 1: the queue or the state changed
	stop  chan struct{} // closed by Stop
	out   chan *store.Entry

	// Guarded by s.mu.
	inc     *incarnation // nil while detached from a deleted bucket
	queue   []*store.Entry
	resetAt time.Time // when a detached watcher looks for the bucket again
	closing bool      // deliver the queue, then close
	stopped bool      // Stop was called
}

// replace queues e in place of an earlier write of its key that the
// watcher has not delivered yet: a replaced message is gone from a History
// 1 stream, so a consumer that had not read it never sees it. The store's
// lock must be held.
func (w *watcher) replace(e *store.Entry) {
	w.queue = slices.DeleteFunc(w.queue, func(q *store.Entry) bool { return q != nil && q.Key == e.Key })
	w.push(e)
}

// push queues e. The store's lock must be held.
func (w *watcher) push(e *store.Entry) {
	w.queue = append(w.queue, e)
	w.poke()
}

func (w *watcher) poke() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// lost detaches w from its deleted incarnation: it goes silent until its
// heartbeat check notices. The store's lock must be held.
func (w *watcher) lost(at time.Time) {
	w.inc = nil
	w.resetAt = at.Add(WatchResetDelay)
	w.poke()
}

// reset is the missed heartbeats' check: the bucket is gone, so the
// watcher closes. The store's lock must be held.
func (w *watcher) reset() {
	w.resetAt = time.Time{}
	w.closing = true
}

// run delivers the queue until ctx ends, Stop is called, or the watcher
// closes after its bucket was deleted.
func (w *watcher) run(ctx context.Context, name string) {
	defer close(w.out)
	defer func() {
		w.s.mu.Lock()
		if w.inc != nil {
			delete(w.inc.watchers, w)
		}
		w.s.mu.Unlock()
	}()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		w.s.mu.Lock()
		if !w.resetAt.IsZero() && !w.s.now().Before(w.resetAt) {
			w.reset()
		}
		var (
			next    *store.Entry
			have    = len(w.queue) > 0
			closing = w.closing
			wait    time.Duration
			waiting = !w.resetAt.IsZero()
		)
		if have {
			next = w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
		}
		if waiting {
			wait = w.resetAt.Sub(w.s.now())
		}
		w.s.mu.Unlock()

		if have {
			var e *store.Entry
			if next != nil {
				c := clone(next)
				e = &c
			}
			select {
			case w.out <- e:
				continue
			case <-ctx.Done():
				return
			case <-w.stop:
				return
			}
		}
		if closing {
			return
		}
		var fire <-chan time.Time
		if waiting {
			if timer == nil {
				timer = time.NewTimer(wait)
			} else {
				timer.Reset(wait)
			}
			fire = timer.C
		}
		select {
		case <-w.kick:
		case <-fire:
		case <-ctx.Done():
			return
		case <-w.stop:
			return
		}
	}
}

// Updates delivers the watch's entries; a nil entry ends the initial values.
func (w *watcher) Updates() <-chan *store.Entry { return w.out }

// Stop ends the watch; the channel closes soon after.
func (w *watcher) Stop() error {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	if !w.stopped {
		w.stopped = true
		close(w.stop)
	}
	return nil
}

func clone(e *store.Entry) store.Entry {
	c := *e
	c.Value = slices.Clone(e.Value)
	return c
}
