// Package jsstore implements store.Backend on JetStream key-value buckets.
//
// A bucket is created with its stream's first sequence taken from the wall
// clock (microseconds since the Unix epoch), so that a bucket deleted and
// created again issues revisions above every revision of its earlier
// incarnations (as long as the earlier one wrote less than a million
// messages per second on average and the wall clock did not step back).
package jsstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/internal/backoff"
	"github.com/nonchan7720/ronin/internal/errs"
	"github.com/nonchan7720/ronin/internal/store"
)

// Backend opens buckets through a JetStream context.
type Backend struct {
	JS jetstream.JetStream
	// Description is written into buckets this backend creates.
	Description string
}

// Open opens or creates spec's bucket, retrying transient errors (JetStream
// warming up, no meta leader yet) until ctx ends. Errors that retrying
// cannot cure (a replicas mismatch) are returned at once.
func (b Backend) Open(ctx context.Context, spec store.Spec) (store.Opened, error) {
	return retryOpen(ctx, spec.Name, func(actx context.Context) (store.Opened, error) { return b.openOnce(actx, spec) },
		func(err error) error { return replicasErr(spec, err) })
}

// Lookup opens the existing bucket name, retrying transient errors until
// ctx ends; it fails at once with store.ErrNotFound if there is none.
func (b Backend) Lookup(ctx context.Context, name string) (store.Opened, error) {
	return retryOpen(ctx, name, func(actx context.Context) (store.Opened, error) {
		st, err := b.JS.Stream(actx, streamName(name))
		if err != nil {
			return store.Opened{}, err
		}
		return b.opened(actx, name, st.CachedInfo(), false)
	}, func(err error) error {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("bucket %q: %w", name, store.ErrNotFound)
		}
		return nil
	})
}

// Names lists the KV buckets whose stream metadata has key, sorted.
func (b Backend) Names(ctx context.Context, key string) ([]string, error) {
	var out []string
	streams := b.JS.ListStreams(ctx, jetstream.WithStreamListSubject("$KV.>"))
	for info := range streams.Info() {
		name, ok := strings.CutPrefix(info.Config.Name, "KV_")
		if _, marked := info.Config.Metadata[key]; ok && marked {
			out = append(out, name)
		}
	}
	if err := streams.Err(); err != nil {
		return nil, err
	}
	slices.Sort(out)
	return out, nil
}

func streamName(bucket string) string { return "KV_" + bucket }

// JetStream API error codes (nats-server's server/errors.json) that refuse
// a stream's replica count; nats.go names neither.
const (
	// errCodeReplicasNotSupported is JSStreamReplicasNotSupportedErr:
	// "replicas > 1 not supported in non-clustered mode", what a
	// standalone server answers to a stream with Replicas above 1.
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074
	// errCodeInsufficientResources is JSInsufficientResourcesErr:
	// "insufficient resources", what a cluster answers when the replicas
	// would exceed its max_ha_assets or reserved resources.
	errCodeInsufficientResources jetstream.ErrorCode = 10023
)

// replicasErr maps a JetStream error that refuses spec.Replicas for good to
// an error that wraps both errs.ErrInvalidConfig (naming Replicas and its
// value) and err, or returns nil. A cluster with fewer servers than
// replicas answers "no suitable peers for placement" (10005) instead, which
// is not mapped: a cluster whose servers are still starting answers it
// too; the election layer checks Replicas against the cluster's size.
func replicasErr(spec store.Spec, err error) error {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return nil
	}
	switch {
	case apiErr.ErrorCode == errCodeReplicasNotSupported:
		return fmt.Errorf("%w: Replicas %d: bucket %q: the NATS server is not clustered and keeps one replica only; use Replicas 1 there (%w)",
			errs.ErrInvalidConfig, spec.Replicas, spec.Name, err)
	case apiErr.ErrorCode == errCodeInsufficientResources && spec.Replicas > 1:
		return fmt.Errorf("%w: Replicas %d: bucket %q: the NATS servers lack the resources for %d replicas (max_ha_assets or reserved storage) (%w)",
			errs.ErrInvalidConfig, spec.Replicas, spec.Name, spec.Replicas, err)
	}
	return nil
}

func (b Backend) openOnce(ctx context.Context, spec store.Spec) (store.Opened, error) {
	for {
		st, err := b.JS.Stream(ctx, streamName(spec.Name))
		if err == nil {
			return b.opened(ctx, spec.Name, st.CachedInfo(), false)
		}
		if !errors.Is(err, jetstream.ErrStreamNotFound) {
			return store.Opened{}, err
		}
		st, err = b.JS.CreateStream(ctx, b.streamConfig(spec))
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNameInUse || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			continue // created concurrently by another node: open it
		}
		if err != nil {
			return store.Opened{}, err
		}
		return b.opened(ctx, spec.Name, st.CachedInfo(), true)
	}
}

// errNoStreamLeader is an open attempt's error while the bucket's stream
// (being created, or recovering) has no leader to take writes yet.
var errNoStreamLeader = errors.New("the bucket's stream has no leader yet")

// opened opens the KV view of a bucket's stream, once it has a leader.
func (b Backend) opened(ctx context.Context, name string, info *jetstream.StreamInfo, created bool) (store.Opened, error) {
	if info.Cluster != nil && info.Cluster.Leader == "" {
		return store.Opened{}, fmt.Errorf("bucket %q: %w", name, errNoStreamLeader)
	}
	kv, err := b.JS.KeyValue(ctx, name)
	if err != nil {
		return store.Opened{}, err
	}
	o := store.Opened{
		Bucket:   newBucket(b.JS, kv, name, info.Created),
		Created:  created,
		Replicas: info.Config.Replicas,
		Metadata: info.Config.Metadata,
	}
	return o, nil
}

// streamConfig is the stream of a KV bucket as nats.go's CreateKeyValue
// makes it (History 1, file storage, no TTL), plus a first sequence from
// the wall clock.
func (b Backend) streamConfig(spec store.Spec) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              streamName(spec.Name),
		Description:       b.Description,
		Subjects:          []string{"$KV." + spec.Name + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		Storage:           jetstream.FileStorage,
		Replicas:          spec.Replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
		Metadata:          spec.Metadata,
		FirstSeq:          FirstSeq(time.Now()),
	}
}

// FirstSeq is the first revision of a bucket created at t: microseconds
// since the Unix epoch.
func FirstSeq(t time.Time) uint64 { return uint64(max(1, t.UnixMicro())) }

// bucket is one opened bucket incarnation: created is its stream's creation
// time, which tells it from a later incarnation of the same name.
type bucket struct {
	js      jetstream.JetStream
	kv      jetstream.KeyValue
	name    string
	created time.Time
}

func newBucket(js jetstream.JetStream, kv jetstream.KeyValue, name string, created time.Time) *bucket {
	return &bucket{js: js, kv: kv, name: name, created: created}
}

func (b *bucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := b.kv.Create(ctx, key, value)
	return rev, b.mapErr(ctx, err)
}

func (b *bucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	n, err := b.kv.Update(ctx, key, value, rev)
	return n, b.mapErr(ctx, err)
}

func (b *bucket) Delete(ctx context.Context, key string, rev uint64) error {
	return b.mapErr(ctx, b.kv.Delete(ctx, key, jetstream.LastRevision(rev)))
}

func (b *bucket) Get(ctx context.Context, key string) (store.Entry, error) {
	e, err := b.kv.Get(ctx, key)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			return store.Entry{}, fmt.Errorf("%w: %s", store.ErrNotFound, key)
		}
		return store.Entry{}, b.mapErr(ctx, err)
	}
	return entry(e), nil
}

// watchHeartbeat is how often the server confirms an idle watch. Two
// missed heartbeats make the client recreate the watch's consumer: the
// consumer is a single replica on one server, and when that server stops
// the watch would otherwise go silent without an error.
const watchHeartbeat = 500 * time.Millisecond

// Watch delivers every key's last entry, then nil, then every later
// write. It reads the stream through an ordered consumer that resumes
// after the last delivered revision when it is recreated (its server
// went away, a heartbeat was missed), so the sequence has no gap and no
// repeat whichever server hosted it.
func (b *bucket) Watch(ctx context.Context) (store.Watcher, error) {
	st, err := b.stream(ctx)
	if err != nil {
		return nil, b.mapErr(ctx, err)
	}
	if err := b.same(st); err != nil {
		return nil, err
	}
	w := &watcher{b: b, ctx: ctx, out: make(chan *store.Entry, 256), done: make(chan struct{}), consumers: map[string]bool{}}
	// The initial values are in once a delivered entry at or after the
	// stream's last revision now has nothing pending after it. Nothing
	// pending alone is not enough: the consumer reads the replica of the
	// server it is placed on, any peer of the stream, and a restarted
	// server's replica lags the stream's tail while it catches up
	// (handle moves the watch off it). Nor is the last revision
	// alone: a key rewritten while the initial values are read loses its
	// older revision and reappears only after it, so a view declared
	// complete at the older one could lack a live session and think its
	// records free. With no entry at all, the marker comes first.
	state := st.CachedInfo().State
	w.initial, w.floor = state.Msgs > 0, state.LastSeq
	if !w.initial {
		w.out <- nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The consumer is created through the meta leader: overlap the
	// requests, or one sent to a leader that just died costs 5 s.
	octx, cancel := bounded(ctx)
	defer cancel()
	if w.cc, err = overlap(octx, w.consume, answered, jetstream.ConsumeContext.Stop); err != nil {
		return nil, b.mapErr(ctx, err)
	}
	return w, nil
}

// consume starts an ordered consumer at the first revision not delivered
// yet (the whole bucket at first) and feeds its entries to the watch.
func (w *watcher) consume(ctx context.Context) (jetstream.ConsumeContext, error) {
	// Not under deliver: a send blocked on a full Updates must not hold up
	// a move. Starting at a revision whose send is in flight is fine; the
	// new consumer's copy of it is skipped.
	next := w.next.Load()
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{"$KV." + w.b.name + ".>"},
		DeliverPolicy:  jetstream.DeliverAllPolicy, // History 1: one entry per key
	}
	if next > 0 {
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, next
	}
	cons, err := w.b.js.OrderedConsumer(ctx, streamName(w.b.name), cfg)
	if err != nil {
		return nil, err
	}
	return cons.Consume(w.handle, jetstream.PullHeartbeat(watchHeartbeat), jetstream.ConsumeErrHandler(w.onError))
}

// handle delivers one message unless an earlier or the same revision was
// delivered already. While a consumer is being replaced, the old and the
// new one both deliver in order from at most next on, so whichever comes
// first delivers each revision and nothing is lost or repeated.
func (w *watcher) handle(m jetstream.Msg) {
	prefix := "$KV." + w.b.name + "."
	md, err := m.Metadata()
	if err != nil || len(m.Subject()) <= len(prefix) {
		return
	}
	e := store.Entry{Key: m.Subject()[len(prefix):], Value: m.Data(), Rev: md.Sequence.Stream, Op: store.Put, Created: md.Timestamp}
	if op := m.Headers().Get("KV-Operation"); op == "DEL" || op == "PURGE" || m.Headers().Get(jetstream.MarkerReasonHeader) != "" {
		e.Op, e.Value = store.Delete, nil
	}
	if g := w.admit(md.Consumer); g != nil {
		select {
		case <-g:
		case <-w.done:
			return
		}
	}
	w.deliver.Lock()
	defer w.deliver.Unlock()
	if e.Rev < w.next.Load() || !w.send(&e) {
		return
	}
	w.next.Store(e.Rev + 1)
	switch {
	case !w.initial || md.NumPending > 0:
	case e.Rev < w.floor:
		go w.move() // its replica is behind the stream: try another
	default:
		w.initial = false
		w.send(nil) // the initial values are in
	}
}

// onError handles a consume error. An error that ends the consumer's
// deliveries moves the watch to a new consumer at once: a 409 "server
// shutdown" (the consumer's server is stopping), missed heartbeats (it
// died or cannot be reached), no responders (it is gone from the
// cluster's interest) or the consumer's deletion. The ordered consumer
// recreates itself after the last three too, but with one request at a
// time and 10 s timeouts: one lost with a dying meta leader, or sent to a
// consumer host that is stopping, leaves the watch silent for 10 s. Any
// error starts a check that the bucket still exists (verifyLocked), so
// that a deleted bucket ends the watch.
func (w *watcher) onError(_ jetstream.ConsumeContext, err error) {
	if stopsDeliveries(err) {
		go w.move()
	}
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	w.verifyLocked()
}

// stopsDeliveries reports a consume error after which the consumer
// delivers nothing more.
func stopsDeliveries(err error) bool {
	for _, end := range []error{jetstream.ErrServerShutdown, jetstream.ErrNoHeartbeat, nats.ErrNoResponders, jetstream.ErrConsumerDeleted} {
		if errors.Is(err, end) {
			return true
		}
	}
	return false
}

// move replaces the consumer with one on a server that is up, starting
// after the last delivered revision, until one is created or the watch
// stops. One move runs at a time.
func (w *watcher) move() {
	if !w.moving.CompareAndSwap(false, true) {
		return
	}
	defer w.moving.Store(false)
	wait := backoff.New(watchHeartbeat/10, 2*watchHeartbeat)
	for !w.moveOnce() {
		select {
		case <-w.done:
			return
		case <-time.After(wait.Next()):
		}
	}
}

// moveOnce tries one move; it reports whether the watch is done moving
// (moved, or stopped). The consumer is created through the meta leader,
// which may have just died, or been elected and be busy: the requests
// overlap as in Watch (one sent to a consumer host that is stopping is
// never answered either), and Stop does not wait for them.
func (w *watcher) moveOnce() bool {
	ctx, cancel := bounded(w.ctx)
	defer cancel()
	cc, err := overlap(ctx, w.consume, answered, jetstream.ConsumeContext.Stop)
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case w.stopped:
		if err == nil {
			cc.Stop()
		}
		return true
	case err != nil:
		return false
	}
	w.cc.Stop()
	w.cc = cc
	return true
}

// Check reports store.ErrBucketGone if the bucket was deleted, or
// deleted and created again, since it was opened.
func (b *bucket) Check(ctx context.Context) error {
	st, err := b.stream(ctx)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("%w: bucket %q no longer exists", store.ErrBucketGone, b.name)
	case err != nil:
		return err
	}
	return b.same(st)
}

// same reports store.ErrBucketGone unless st is this bucket's incarnation.
func (b *bucket) same(st jetstream.Stream) error {
	if created := st.CachedInfo().Created; !created.Equal(b.created) {
		return fmt.Errorf("%w: bucket %q was deleted and created again (created %v, was %v)", store.ErrBucketGone, b.name, created, b.created)
	}
	return nil
}

// stream looks the bucket's stream up. The stream leader answers, so the
// requests overlap: one sent to a leader that just died is never answered.
func (b *bucket) stream(ctx context.Context) (jetstream.Stream, error) {
	ctx, cancel := bounded(ctx)
	defer cancel()
	return overlap(ctx, func(c context.Context) (jetstream.Stream, error) { return b.js.Stream(c, streamName(b.name)) }, answered, nil)
}

// mapErr maps JetStream's errors to the store's. A write to a stream that
// no longer exists gets no response at all; Check tells that apart from a
// stream leader election.
func (b *bucket) mapErr(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch), isWrongLastSeq(err):
		return fmt.Errorf("%w: %w", store.ErrConflict, err)
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrStreamNotFound), errors.Is(err, jetstream.ErrBucketNotFound),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrStreamNotFound):
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), attemptMax)
		defer cancel()
		if cerr := b.Check(cctx); errors.Is(cerr, store.ErrBucketGone) {
			return cerr
		}
	}
	return err
}

// isWrongLastSeq reports a CAS conflict that nats.go leaves unmapped (its
// Create retries over a delete marker without wrapping code 10164).
func isWrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func entry(e jetstream.KeyValueEntry) store.Entry {
	op := store.Put
	if e.Operation() != jetstream.KeyValuePut {
		op = store.Delete
	}
	return store.Entry{Key: e.Key(), Value: e.Value(), Rev: e.Revision(), Op: op, Created: e.Created()}
}

type watcher struct {
	b       *bucket
	ctx     context.Context // the Watch call's
	out     chan *store.Entry
	done    chan struct{}
	mu      sync.Mutex // guards cc and stopped
	cc      jetstream.ConsumeContext
	stopped bool
	moving  atomic.Bool // a move is under way
	// deliver serialises deliveries across consumers; next is the first
	// revision not delivered yet (written under deliver).
	deliver sync.Mutex
	next    atomic.Uint64
	initial bool // the initial values are still being read (under deliver)
	// floor is the stream's last revision when the watch began: the
	// initial values end at or after it.
	floor uint64
	// sending is held for reading by every send; Stop takes it to close
	// Updates, after which outClosed makes later sends return at once.
	sending   sync.RWMutex
	outClosed bool
	// checkMu guards the bucket checks (verifyLocked): one runs at a time
	// (checking), recheck asks it to check again, and gate, while set,
	// holds deliveries back until a check says the bucket is the same;
	// consumers holds the consumers whose deliveries started a check.
	checkMu           sync.Mutex
	checking, recheck bool
	gate              chan struct{}
	consumers         map[string]bool
}

// admit returns the gate that a delivery from consumer waits for, nil if
// none. A consumer's first delivery holds deliveries until a check begun
// after it says the bucket is the same: the ordered consumer recreates
// itself after an error without a word, and it may then read a new
// incarnation of the bucket's name, whose revisions would read as later
// writes of this one. A check begun once the consumer existed tells which
// stream it reads: a bucket, once deleted, never comes back.
func (w *watcher) admit(consumer string) chan struct{} {
	w.checkMu.Lock()
	defer w.checkMu.Unlock()
	if !w.consumers[consumer] {
		w.consumers[consumer] = true
		if w.gate == nil {
			w.gate = make(chan struct{})
		}
		w.verifyLocked()
	}
	return w.gate
}

// verifyLocked makes check run until a check begun now is conclusive: if
// the bucket is gone the watch ends, as a KV watcher does; if it is the
// same, the gate opens. checkMu is held.
func (w *watcher) verifyLocked() {
	w.recheck = true
	if w.checking {
		return
	}
	w.checking = true
	go w.check()
}

// check checks the bucket until a check that began after the latest
// consume error is conclusive: the same bucket opens the gate, a gone one
// ends the watch. The consumer may be recreated on a new incarnation of
// the name meanwhile, and then no further error would come.
func (w *watcher) check() {
	done := func() {
		w.checkMu.Lock()
		w.checking = false
		w.checkMu.Unlock()
	}
	for {
		w.checkMu.Lock()
		w.recheck = false
		w.checkMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), attemptMax)
		err := w.b.Check(ctx)
		cancel()
		switch {
		case errors.Is(err, store.ErrBucketGone):
			_ = w.Stop()
			done()
			return
		case err == nil:
			w.checkMu.Lock()
			if !w.recheck {
				if w.gate != nil {
					close(w.gate)
					w.gate = nil
				}
				w.checking = false
				w.checkMu.Unlock()
				return
			}
			w.checkMu.Unlock()
			continue // another error came meanwhile
		}
		select {
		case <-w.done:
			done()
			return
		case <-time.After(watchHeartbeat / 2):
		}
	}
}

// send delivers e (nil: the initial values are in) unless the watch ended.
// It holds sending for reading, so that Stop closes Updates only once no
// send is in flight: a consumer recreated after a missed heartbeat can
// still call back from its old subscription after the ConsumeContext says
// it is closed.
func (w *watcher) send(e *store.Entry) bool {
	w.sending.RLock()
	defer w.sending.RUnlock()
	if w.outClosed {
		return false
	}
	select {
	case w.out <- e:
		return true
	case <-w.ctx.Done():
	case <-w.done:
	}
	return false
}

func (w *watcher) Updates() <-chan *store.Entry { return w.out }

// Stop ends the watch; Updates closes once no callback can send any more.
func (w *watcher) Stop() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped || w.cc == nil {
		return nil
	}
	w.stopped = true
	close(w.done) // releases every send blocked on a full Updates
	w.cc.Stop()
	go func() {
		w.sending.Lock()
		defer w.sending.Unlock()
		w.outClosed = true
		close(w.out)
	}()
	return nil
}
