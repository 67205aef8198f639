package sim

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nonchan7720/ronin/internal/store"
)

// errAckLost is what a node sees when its write was applied but the
// acknowledgement never came back (JetStream: a request timeout).
var errAckLost = errors.New("sim: request timed out (the write was applied; its ack was lost)")

// faults is the state of one node's link to the store, set by the fault
// schedule. Zero value: a healthy link.
type faults struct {
	latency   time.Duration // each way, for requests
	lag       time.Duration // watcher delivery delay
	slow      time.Duration // least time between two watcher deliveries (a slow consumer)
	frozen    bool          // watcher delivers nothing
	cut       bool          // partitioned: requests are not delivered
	dead      bool          // the process crashed: nothing in or out
	dropAcks  bool          // writes apply, acks are lost
	timeouts  bool          // writes do not apply and time out
	stalled   bool          // the store stalls (stream leader election)
	restartCh chan struct{} // closed to make the node's watchers fail
}

// baseLatency is the least time a request takes each way: no store
// answers in zero time, and a loop of writes must let time pass.
const baseLatency = 200 * time.Microsecond

// link is one node's connection to the shared in-memory store: every
// request and every watcher delivery of the node passes through it and
// its faults, and through the node's clock (a held node sends nothing and
// processes nothing).
type link struct {
	w     *World
	node  string
	clock *nodeClock

	mu sync.Mutex
	f  faults
}

func newLink(w *World, node string, c *nodeClock) *link {
	return &link{w: w, node: node, clock: c, f: faults{restartCh: make(chan struct{})}}
}

func (l *link) get() faults {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f
}

func (l *link) set(change func(*faults)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	change(&l.f)
}

// restartWatchers makes every watcher of the node fail now.
func (l *link) restartWatchers() {
	l.mu.Lock()
	defer l.mu.Unlock()
	close(l.f.restartCh)
	l.f.restartCh = make(chan struct{})
}

// backend opens buckets over the link.
type backend struct {
	l     *link
	inner store.Backend
}

func (b backend) Open(ctx context.Context, spec store.Spec) (store.Opened, error) {
	if err := b.l.send(ctx); err != nil {
		return store.Opened{}, err
	}
	o, err := b.inner.Open(ctx, spec)
	if err != nil {
		return o, err
	}
	o.Bucket = &linkBucket{l: b.l, inner: o.Bucket}
	return o, nil
}

func (b backend) Lookup(ctx context.Context, name string) (store.Opened, error) {
	if err := b.l.send(ctx); err != nil {
		return store.Opened{}, err
	}
	o, err := b.inner.Lookup(ctx, name)
	if err != nil {
		return o, err
	}
	o.Bucket = &linkBucket{l: b.l, inner: o.Bucket}
	return o, nil
}

// send waits until a request can leave the node and reach the store:
// the node runs, the link is up, the store is not stalled, and the
// request latency has passed. Blocked requests fail when ctx ends.
func (l *link) send(ctx context.Context) error {
	<-l.clock.running() // a held process sends nothing (and sees no ctx)
	for {
		f := l.get()
		if f.dead || f.cut || f.stalled || f.timeouts {
			t := time.NewTimer(10 * time.Millisecond)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
			continue
		}
		{
			t := time.NewTimer(baseLatency + f.latency)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		return nil
	}
}

// receive delivers a response: after the latency, once the node runs. A
// response to a dead node is never processed (the caller is gone; the
// error keeps its goroutine from acting). The ack of a write (ctx is the
// write's) may be lost; reads have none to lose.
func (l *link) receive(ctx context.Context, write bool, err error) error {
	f := l.get()
	time.Sleep(baseLatency + f.latency)
	<-l.clock.running()
	if l.get().dead {
		return errors.New("sim: process is dead")
	}
	if err == nil && f.dropAcks && write {
		<-ctx.Done()
		return errAckLost
	}
	return err
}

type linkBucket struct {
	l     *link
	inner store.Bucket
}

func (b *linkBucket) write(ctx context.Context, op func() error) error {
	if err := b.l.send(ctx); err != nil {
		return err
	}
	return b.l.receive(ctx, true, op())
}

func (b *linkBucket) Create(ctx context.Context, key string, value []byte) (rev uint64, err error) {
	err = b.write(ctx, func() (e error) { rev, e = b.inner.Create(ctx, key, value); return e })
	return rev, err
}

func (b *linkBucket) Update(ctx context.Context, key string, value []byte, last uint64) (rev uint64, err error) {
	if id, ok := shardOf(key); ok && handoff(value) {
		b.l.w.released(b.l.node, id, last) // a handover ends the term at last, like a release
	}
	err = b.write(ctx, func() (e error) { rev, e = b.inner.Update(ctx, key, value, last); return e })
	return rev, err
}

func (b *linkBucket) Delete(ctx context.Context, key string, rev uint64) error {
	if id, ok := shardOf(key); ok {
		b.l.w.released(b.l.node, id, rev)
	}
	return b.write(ctx, func() error { return b.inner.Delete(ctx, key, rev) })
}

// handoff reports whether an election record was written over to another
// node's session by its previous holder.
func handoff(value []byte) bool {
	var rec struct {
		Handoff bool `json:"handoff"`
	}
	return json.Unmarshal(value, &rec) == nil && rec.Handoff
}

// shardOf returns the shard whose record key is, and whether it is one.
func shardOf(key string) (int, bool) {
	id, err := strconv.Atoi(strings.TrimPrefix(key, "shard."))
	return id, err == nil && strings.HasPrefix(key, "shard.")
}

func (b *linkBucket) Get(ctx context.Context, key string) (e store.Entry, err error) {
	if err := b.l.send(ctx); err != nil {
		return e, err
	}
	e, err = b.inner.Get(ctx, key)
	if rerr := b.l.receive(ctx, false, nil); rerr != nil {
		return store.Entry{}, rerr
	}
	return e, err
}

func (b *linkBucket) Check(ctx context.Context) error {
	if err := b.l.send(ctx); err != nil {
		return err
	}
	err := b.inner.Check(ctx)
	if rerr := b.l.receive(ctx, false, nil); rerr != nil {
		return rerr
	}
	return err
}

// Watch starts a watcher whose deliveries pass through the link: each
// entry is delivered lag after the store sent it, in order, while the
// node runs and its watcher is not frozen; a watcher restart fault closes
// it.
func (b *linkBucket) Watch(ctx context.Context) (store.Watcher, error) {
	if err := b.l.send(ctx); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	inner, err := b.inner.Watch(wctx)
	if err != nil {
		cancel()
		return nil, err
	}
	lw := &linkWatcher{out: make(chan *store.Entry), cancel: cancel, inner: inner}
	type timed struct {
		e  *store.Entry
		at time.Time
	}
	queue := make(chan timed, 1<<16)
	restart := b.l.get().restartCh
	go func() { // stamp arrivals at the store side
		defer close(queue)
		for {
			select {
			case <-wctx.Done():
				return
			case e, ok := <-inner.Updates():
				if !ok {
					return
				}
				queue <- timed{e, time.Now()}
			}
		}
	}()
	go func() { // deliver to the node through its lag, freezes and pauses
		defer close(lw.out)
		defer cancel()
		var last time.Time
		for item := range queue {
			for {
				f := b.l.get()
				wait := max(time.Until(item.at.Add(f.lag)), time.Until(last.Add(f.slow)))
				if !f.frozen && !f.dead && !f.cut && wait <= 0 {
					break
				}
				t := time.NewTimer(max(wait, 5*time.Millisecond))
				select {
				case <-wctx.Done():
					t.Stop()
					return
				case <-restart:
					t.Stop()
					return
				case <-t.C:
				}
			}
			select {
			case <-b.l.clock.running():
			case <-wctx.Done():
				return
			}
			select {
			case lw.out <- item.e:
				last = time.Now()
			case <-wctx.Done():
				return
			case <-restart:
				return
			}
		}
	}()
	return lw, nil
}

type linkWatcher struct {
	out    chan *store.Entry
	cancel context.CancelFunc
	inner  store.Watcher
}

func (w *linkWatcher) Updates() <-chan *store.Entry { return w.out }

func (w *linkWatcher) Stop() error {
	w.cancel()
	return w.inner.Stop()
}
