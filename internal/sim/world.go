// Package sim runs Ronin's real election and shard code against an
// in-memory store, with a link and a clock per node under a seeded fault
// schedule, in virtual time (testing/synctest). A World is one scenario:
// its nodes, its faults, and the checker that watches every instant of it.
package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nonchan7720/ronin/election"
	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store/memstore"
	"github.com/nonchan7720/ronin/shard"
)

// World is one simulated cluster. It must be created and run inside a
// synctest bubble.
type World struct {
	sc    Scenario
	rng   *rand.Rand
	store *memstore.Store
	start time.Time
	trace *trace
	runs  sync.WaitGroup // every goroutine a node started

	mu         sync.Mutex
	nodes      map[string]*node // the live incarnation of each node
	violations []string
	tokens     map[string]uint64 // highest token seen per key or shard
	handlers   map[int][]*handlerRec
	cands      map[string][]*candRec
	stalled    bool
}

// node is one incarnation of a simulated process.
type node struct {
	id     string
	clock  *nodeClock
	link   *link
	cancel context.CancelFunc
	dead   atomic.Bool

	mu      sync.Mutex
	resigns map[string]func()        // per key: ends its candidate's Run
	away    map[string]time.Duration // per key: how long it waits before it runs again
}

// stepOut makes n's candidate for key resign (its Run returns) and run
// again after away.
func (n *node) stepOut(key string, away time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if stop := n.resigns[key]; stop != nil {
		n.away[key] = away
		stop()
	}
}

type candRec struct {
	n *node
	c *election.Candidate
}

type handlerRec struct {
	n          *node
	shard      int
	rev        uint64
	ctx        context.Context
	started    time.Duration
	returned   bool
	returnedAt time.Duration
}

const (
	bucketKeys   = "keys"
	bucketShards = "shards"
)

// newWorld builds the scenario's nodes (not yet started).
func newWorld(sc Scenario) *World {
	w := &World{
		sc:       sc,
		rng:      rand.New(rand.NewPCG(uint64(sc.Seed), 0x5eed)),
		store:    memstore.New(time.Now),
		start:    time.Now(),
		trace:    newTrace(),
		nodes:    map[string]*node{},
		tokens:   map[string]uint64{},
		handlers: map[int][]*handlerRec{},
		cands:    map[string][]*candRec{},
	}
	return w
}

func (w *World) since() time.Duration { return time.Since(w.start) }

// logf records an event in the trace.
func (w *World) logf(node, format string, args ...any) {
	w.trace.add(w.since(), node, fmt.Sprintf(format, args...))
}

// violation records a broken invariant with the trace so far.
func (w *World) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.logf("CHECK", "VIOLATION: %s", msg)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, fmt.Sprintf("t=%v %s", w.since().Round(time.Microsecond), msg))
}

// startNode starts (or restarts, with the same id) a node process.
func (w *World) startNode(id string) {
	c := newNodeClock(1, 0)
	w.mu.Lock()
	if old := w.nodes[id]; old != nil {
		if !old.dead.Load() {
			w.mu.Unlock()
			return // one live process per NodeID (Start refuses a second)
		}
		c = old.clock // the machine's clock survives a process restart
	}
	n := &node{id: id, clock: c, resigns: map[string]func(){}, away: map[string]time.Duration{}}
	n.link = newLink(w, id, c)
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	w.nodes[id] = n
	w.mu.Unlock()
	w.logf(id, "process starts")

	log := slog.New(&traceHandler{w: w, node: id})
	reg := engine.NewRegistry(engine.Host{
		Store:           backend{l: n.link, inner: w.store.Backend()},
		Clock:           c,
		NodeID:          id,
		Logger:          log,
		DefaultReplicas: 3,
		ClusterSize:     3,
		Clustered:       true,
	})
	for k := range w.sc.Keys {
		key := fmt.Sprintf("k%d", k)
		w.goRun(func() { w.runCandidate(ctx, n, reg, log, key) })
	}
	if w.sc.Shards > 0 {
		w.goRun(func() { w.runGroup(ctx, n, reg, log) })
	}
	w.goRun(func() { // the process's end: resign everything, like Shutdown
		<-ctx.Done()
		reg.Close(10 * time.Second)
	})
}

func (w *World) goRun(f func()) {
	w.runs.Add(1)
	go func() { defer w.runs.Done(); f() }()
}

// retryOpen is how long a node waits before it opens a bucket again after
// an error (a deleted bucket, a store that does not answer).
const retryOpen = 200 * time.Millisecond

func (w *World) runCandidate(ctx context.Context, n *node, reg *engine.Registry, log *slog.Logger, key string) {
	for ctx.Err() == nil {
		var c *election.Candidate
		cfg := election.CandidateConfig{
			CandidateID: n.id, BucketName: bucketKeys, KeyName: key, TTL: w.sc.TTL, Logger: log,
		}
		cfg.OnElected = func() { w.elected(n, key, c) }
		c, err := election.NewCandidate(ctx, reg, cfg)
		if err == nil {
			w.mu.Lock()
			w.cands[key] = append(w.cands[key], &candRec{n: n, c: c})
			w.mu.Unlock()
			rctx, stop := context.WithCancel(ctx)
			n.mu.Lock()
			n.resigns[key] = stop
			n.mu.Unlock()
			err = c.Run(rctx)
			stop()
		}
		if err != nil && !errors.Is(err, engine.ErrClosed) {
			w.logf(n.id, "candidate %s: %v", key, err)
		}
		n.mu.Lock()
		away := n.away[key]
		delete(n.away, key)
		n.mu.Unlock()
		if away > 0 {
			w.logf(n.id, "candidate %s resigned", key)
		}
		sleepCtx(ctx, max(retryOpen, away))
	}
}

func (w *World) runGroup(ctx context.Context, n *node, reg *engine.Registry, log *slog.Logger) {
	for ctx.Err() == nil {
		g, err := shard.NewGroup(ctx, reg, shard.Config{
			BucketName: bucketShards, Shards: w.sc.Shards, TTL: w.sc.TTL, Logger: log,
			HandoffTimeout: w.sc.TTL,
			Handler: func(hctx context.Context, id int, rev uint64) error {
				return w.handle(hctx, n, id, rev)
			},
		})
		if err == nil {
			err = g.Run(ctx)
		}
		if err != nil && !errors.Is(err, engine.ErrClosed) {
			w.logf(n.id, "shard group: %v", err)
		}
		sleepCtx(ctx, retryOpen)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// crash kills a node's process at once: it sends and receives nothing
// more, and the checker ignores what it believes from now on.
func (w *World) crash(id string) {
	w.mu.Lock()
	n := w.nodes[id]
	if n.dead.Load() {
		w.mu.Unlock()
		return
	}
	n.dead.Store(true)
	w.mu.Unlock()
	n.link.set(func(f *faults) { f.dead = true })
	n.cancel()
	n.clock.resume()
	w.logf(id, "process killed")
}

// acting reports whether n's beliefs count now: its process is alive and
// running (a held process acts on nothing until it resumes, and then it
// reads its clock first).
func (w *World) acting(n *node) bool {
	return !n.dead.Load() && !n.clock.isHeld()
}

// elected runs on OnElected: the token must grow, and no other acting
// candidate of the key may lead at this instant.
func (w *World) elected(n *node, key string, c *election.Candidate) {
	rev := c.LeaderRev()
	w.logf(n.id, "elected %s rev=%d", key, rev)
	if rev == 0 {
		return
	}
	w.mu.Lock()
	prev := w.tokens["key/"+key]
	w.tokens["key/"+key] = max(prev, rev)
	w.mu.Unlock()
	if rev <= prev {
		w.violation("E2: %s elected %s with token %d, not above %d", n.id, key, rev, prev)
	}
	w.checkKey(key)
}

// checkKey: at most one acting candidate of key reports IsLeader.
func (w *World) checkKey(key string) {
	w.mu.Lock()
	recs := slices.Clone(w.cands[key])
	w.mu.Unlock()
	var leaders []string
	for _, r := range recs {
		if w.acting(r.n) && r.c.IsLeader() {
			leaders = append(leaders, fmt.Sprintf("%s(rev %d)", r.n.id, r.c.LeaderRev()))
		}
	}
	if len(leaders) > 1 {
		w.violation("E1: %s has %d leaders at once: %s", key, len(leaders), strings.Join(leaders, ", "))
	}
}

// handle is the shard handler: it checks that it starts alone, with a
// greater token, after every earlier handler of the shard returned, then
// runs until its ctx ends.
func (w *World) handle(ctx context.Context, n *node, shard int, rev uint64) error {
	w.logf(n.id, "handler start shard=%d rev=%d", shard, rev)
	rec := &handlerRec{n: n, shard: shard, rev: rev, ctx: ctx, started: w.since()}
	w.mu.Lock()
	others := slices.Clone(w.handlers[shard])
	w.handlers[shard] = append(w.handlers[shard], rec)
	prev := w.tokens[fmt.Sprint("shard/", shard)]
	w.tokens[fmt.Sprint("shard/", shard)] = max(prev, rev)
	w.mu.Unlock()
	if rev < prev {
		w.violation("E2: %s started shard %d with token %d, below %d", n.id, shard, rev, prev)
	}
	for _, o := range others {
		if o.n != n && w.acting(o.n) && !w.isReturned(o) && o.ctx.Err() == nil {
			w.violation("E1: shard %d starts on %s (rev %d) while %s (rev %d) runs with a live ctx", shard, n.id, rev, o.n.id, o.rev)
		}
	}
	<-ctx.Done()
	// Real handlers take a moment to clean up after their ctx ends; a
	// handoff that does not wait for them shows as an S4 violation.
	time.Sleep(time.Duration((rev*7919+uint64(shard))%20+1) * time.Millisecond)
	w.mu.Lock()
	rec.returned, rec.returnedAt = true, w.since()
	w.mu.Unlock()
	w.logf(n.id, "handler return shard=%d rev=%d", shard, rev)
	return nil
}

func (w *World) isReturned(r *handlerRec) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return r.returned
}

// released runs when node id deletes the record of shard at rev (a
// release, or a retried one): S4 wants the handler of that term to have
// returned first, so that the next owner never starts beside it.
func (w *World) released(id string, shard int, rev uint64) {
	w.mu.Lock()
	early := false
	for _, h := range w.handlers[shard] {
		early = early || h.n.id == id && h.rev == rev && !h.returned && !h.n.dead.Load()
	}
	w.mu.Unlock()
	if early {
		w.violation("S4: %s released shard %d (rev %d) before its handler returned", id, shard, rev)
	}
}

// checkShards: at most one acting handler of each shard has a live ctx.
func (w *World) checkShards() {
	w.mu.Lock()
	all := map[int][]*handlerRec{}
	for s, hs := range w.handlers {
		all[s] = slices.Clone(hs)
	}
	w.mu.Unlock()
	for s, hs := range all {
		var live []string
		for _, h := range hs {
			if w.acting(h.n) && !w.isReturned(h) && h.ctx.Err() == nil {
				live = append(live, fmt.Sprintf("%s(rev %d)", h.n.id, h.rev))
			}
		}
		if len(live) > 1 {
			w.violation("E1: shard %d has %d handlers with live contexts: %s", s, len(live), strings.Join(live, ", "))
		}
	}
}

// sample checks every key and shard each period until ctx ends.
func (w *World) sample(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for k := range w.sc.Keys {
			w.checkKey(fmt.Sprintf("k%d", k))
		}
		w.checkShards()
	}
}

// checkSettled: once every fault is healed and the cluster had time to
// settle, every key has exactly one leader and every shard exactly one
// running handler (S3: nothing stays ownerless while the store works).
func (w *World) checkSettled() {
	for k := range w.sc.Keys {
		key := fmt.Sprintf("k%d", k)
		w.mu.Lock()
		recs := slices.Clone(w.cands[key])
		w.mu.Unlock()
		leaders := 0
		for _, r := range recs {
			if w.acting(r.n) && r.c.IsLeader() {
				leaders++
			}
		}
		if leaders != 1 {
			w.violation("S3/E4: %s has %d leaders after the cluster settled", key, leaders)
		}
	}
	for s := range w.sc.Shards {
		w.mu.Lock()
		hs := slices.Clone(w.handlers[s])
		w.mu.Unlock()
		live := 0
		for _, h := range hs {
			if w.acting(h.n) && !w.isReturned(h) && h.ctx.Err() == nil {
				live++
			}
		}
		if live != 1 {
			w.violation("S3: shard %d has %d running handlers after the cluster settled", s, live)
		}
	}
}
