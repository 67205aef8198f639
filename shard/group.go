package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"
	"time"

	"github.com/nonchan7720/ronin/internal/clock"
	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/worker"
)

// Group runs this node's part of a shard group: it campaigns for the shards
// the balancer's plan gives this node, runs the handler of each shard it
// wins, and hands shards over when the plan moves them away.
type Group struct {
	cfg     Config
	bucket  *engine.Bucket
	clock   clock.Clock
	node    string
	log     *slog.Logger
	metrics *groupMetrics
	keys    []string
	runLock sync.Mutex

	mu       sync.Mutex
	running  map[int]*held // shards whose lease this node holds
	wake     chan struct{} // handler exits, finished moves and acquisitions
	ready    chan struct{} // closed while ready; replaced when not
	isReady  bool
	draining bool // Run hands everything over before it returns
	parked   bool // Drain: in the group, owning nothing, until Rejoin

	prep      map[int]*preparing // shards coming here, being or done preparing (Config.Prepare)
	published string             // prepared keys last put in the session
	accepting atomic.Bool        // shards handed over to this node are taken
	adoptMu   sync.Mutex         // guards adopted; never held with mu
	adopted   []*engine.Lease    // handed over, not yet started
}

// NewGroup registers the group's bucket (creating it if needed) and returns the
// group. Bad input fails with engine.ErrInvalidConfig, a bucket used with
// other settings (Shards, TTL, Replicas) with engine.ErrBucketMismatch.
func NewGroup(ctx context.Context, reg *engine.Registry, cfg Config) (*Group, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b, err := reg.Bucket(ctx, cfg.bucketSpec())
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default().With("node", b.NodeID())
	}
	g := &Group{
		cfg:     cfg,
		bucket:  b,
		clock:   b.Clock(),
		node:    b.NodeID(),
		log:     log.With("bucket", cfg.BucketName),
		running: map[int]*held{},
		wake:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
		prep:    map[int]*preparing{},
	}
	for id := range cfg.Shards {
		g.keys = append(g.keys, Key(id))
	}
	if g.metrics, err = newGroupMetrics(g); err != nil {
		return nil, err
	}
	return g, nil
}

// Owned returns the shards this node leads now, with their tokens.
func (g *Group) Owned() map[int]uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[int]uint64, len(g.running))
	for id, r := range g.running {
		if r.lease != nil && r.lease.Valid() { // nil while acquiring
			out[id] = r.lease.Rev()
		}
	}
	return out
}

// Ready reports whether this node takes its full part in the group: Run
// is running, the node's view is complete, the plan includes the node, and
// every shard the plan gives it runs here. It is false while draining.
func (g *Group) Ready() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.isReady
}

// WaitReady waits until Ready is true or ctx ends.
func (g *Group) WaitReady(ctx context.Context) error {
	g.mu.Lock()
	ready := g.ready
	g.mu.Unlock()
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Draining reports whether this node is handing its shards over or holds
// none on purpose: Run is returning, or Drain was called and Rejoin not.
func (g *Group) Draining() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.draining || g.parked
}

// Drain hands every shard this node owns over to the other members (at
// most MaxMoves at a time, each after its handler returned) and keeps the
// node in the group owning nothing, until Rejoin: maintenance without
// exiting. It returns once the node owns nothing, or with ctx's error. A
// node that is the group's only member keeps its shards (there is nobody
// to take them) and Drain waits for ctx. The state outlives Run: a group
// drained while not running starts its next Run drained.
func (g *Group) Drain(ctx context.Context) error {
	g.mu.Lock()
	g.parked = true
	g.accepting.Store(false)
	g.setReadyLocked(false)
	g.bucket.SetLeaving(true)
	g.mu.Unlock()
	g.signal()
	for {
		if len(g.Owned()) == 0 {
			return nil
		}
		if !clock.Sleep(ctx, g.clock, 10*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// Rejoin ends a Drain: the node is a member again and the plan gives it
// its share.
func (g *Group) Rejoin() {
	g.mu.Lock()
	g.parked = false
	g.accepting.Store(true)
	g.bucket.SetLeaving(false)
	g.mu.Unlock()
	g.signal()
}

// setReadyLocked records readiness and wakes WaitReady callers.
func (g *Group) setReadyLocked(ready bool) {
	switch {
	case ready && !g.isReady:
		close(g.ready)
	case !ready && g.isReady:
		g.ready = make(chan struct{})
	}
	g.isReady = ready
}

// Assignment returns the cluster-wide view of the group as this node sees
// it: every shard's owner, token and since when.
func (g *Group) Assignment() []Assignment {
	records := g.bucket.Snapshot().Records
	out := make([]Assignment, g.cfg.Shards)
	for id, key := range g.keys {
		h := records[key]
		out[id] = Assignment{Shard: id, Node: h.Node, Rev: h.Rev, Since: h.Since}
	}
	return out
}

// Members returns the nodes that run the group now and are not leaving.
func (g *Group) Members() []string {
	m, _ := g.bucket.Members()
	return m
}

// Run takes part in the group until ctx ends or the Manager shuts down,
// then drains: the node leaves the membership, and hands its shards over
// one by one (handler ctx cancelled, handler returned, shard released, the
// new owner starts) before Run returns. It returns nil when ctx ends and
// engine.ErrClosed when the Manager shuts down. Run may be called again
// after it returned, to rejoin; not twice at once (ErrAlreadyRunning). If
// the group's bucket is deleted under it, every handler is stopped and Run
// returns an error wrapping engine.ErrBucketGone.
// Like Candidate.Run, it waits (at most 1 s) for successors of the shards it
// released before it returns.
func (g *Group) Run(ctx context.Context) error {
	if !g.runLock.TryLock() {
		return engine.ErrAlreadyRunning
	}
	defer g.runLock.Unlock()
	exit, err := g.bucket.Registry().Enter()
	if err != nil {
		return err
	}
	defer exit()
	leave := g.bucket.Join()
	defer leave()
	g.mu.Lock()
	g.bucket.SetLeaving(g.parked)
	g.accepting.Store(!g.parked)
	g.mu.Unlock()
	g.bucket.Accept(g.adopt)
	defer g.bucket.Accept(nil)
	sub := g.bucket.SubscribeAll()
	defer g.bucket.Unsubscribe(sub)
	stopMetrics := g.metrics.start()
	defer stopMetrics()

	p := newPlanner(g.cfg, g.node)
	now := g.clock.Now()
	p.settle(now.Add(g.cfg.Settle), now.Add(settleStretch*g.cfg.Settle), g.bucket.Registry().ClusterSize())
	p.prepared = func(target string, id int) bool {
		prepares, prepared := g.bucket.Prepared(target, g.keys[id])
		return !prepares || prepared
	}
	g.bucket.SetPrepared(g.cfg.Prepare != nil, nil)
	timer := clock.NewTimer(g.clock, 0)
	defer timer.Stop()
	var work sync.WaitGroup
	defer work.Wait()
	for {
		if err := g.bucket.Err(); err != nil {
			g.drain(&work, p) // the leases have ended: this only stops handlers
			return err
		}
		wait := g.step(ctx, p, &work)
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			g.drain(&work, p)
			return nil
		case <-g.bucket.Registry().Closing():
			g.drain(&work, p)
			return engine.ErrClosed
		case <-sub.C():
		case <-g.wake:
		case <-timer.C:
		}
	}
}

// step looks at the view once: adopts membership, then acquires free
// shards planned here (or orphaned long enough) and hands over held shards
// planned elsewhere. It returns how long to wait before looking again if
// nothing happens.
func (g *Group) step(ctx context.Context, p *planner, work *sync.WaitGroup) time.Duration {
	members, synced := g.bucket.Members()
	if !synced {
		g.mu.Lock()
		g.setReadyLocked(false)
		g.mu.Unlock()
		return time.Second
	}
	g.startAdopted(ctx)
	now := g.clock.Now()
	p.newSession(g.bucket.SessionID(), now, g.bucket.Registry().ClusterSize())
	wait := p.observe(members, now)
	holders := g.bucket.Holders()
	acquirable := g.bucket.Acquirable()
	// Snapshot, decision and marking under one lock: a run that reap
	// removes is either in the snapshot and marked, or in neither.
	g.mu.Lock()
	acquire, handoff, retry := p.decide(g.keys, holders, g.snapshotLocked(), now)
	if !acquirable {
		acquire = nil // the bucket signals when this node may acquire again
		p.pause(now)
	}
	for _, id := range acquire {
		g.running[id] = &held{shard: id, acquiring: true}
	}
	moves := make([]*held, 0, len(handoff))
	for _, id := range handoff {
		r := g.running[id]
		r.moving, r.target = true, p.plan[id]
		moves = append(moves, r)
	}
	g.setReadyLocked(p.settled(g.snapshotLocked()))
	if g.cfg.Prepare != nil {
		g.preparesLocked(ctx, p.incoming(g.keys, holders), work)
	}
	g.mu.Unlock()
	wait = min(wait, retry)
	for _, id := range p.ownerless(now, g.bucket.Spec().TTL) {
		g.log.Warn("ronin: shard has had no owner for longer than the TTL", "shard", id, "ttl", g.bucket.Spec().TTL)
	}
	for _, id := range acquire {
		work.Add(1)
		go func() { defer work.Done(); g.acquire(ctx, id) }()
	}
	for _, r := range moves {
		work.Add(1)
		go func() { defer work.Done(); g.handOver(r); g.signal() }()
	}
	return wait
}

// snapshotLocked returns what this node is doing with each shard it
// touches.
func (g *Group) snapshotLocked() map[int]runState {
	out := make(map[int]runState, len(g.running))
	for id, r := range g.running {
		switch {
		case r.acquiring:
			out[id] = stateAcquiring
		case r.moving:
			out[id] = stateMoving
		default:
			out[id] = stateOwned
		}
	}
	return out
}

// acquire tries to take shard id and starts its handler on success.
func (g *Group) acquire(ctx context.Context, id int) {
	was, _ := g.bucket.Holder(g.keys[id]) // when and how the shard became free
	l, err := g.bucket.TryAcquire(ctx, g.keys[id], g.node)
	if err != nil {
		g.mu.Lock()
		if r := g.running[id]; r != nil && r.acquiring {
			delete(g.running, id) // our placeholder; not a shard handed over meanwhile
		}
		g.mu.Unlock()
		// A lost race, a held key or a lost session changes the view, which
		// signals the group; retrying before that would spin. Other errors
		// are retried at the next look (at most a second away).
		if !errors.Is(err, engine.ErrHeld) && !errors.Is(err, engine.ErrLostRace) && !errors.Is(err, engine.ErrNoSession) {
			g.log.Debug("ronin: shard acquire failed", "shard", id, "err", err)
		}
		return
	}
	defer g.signal()
	g.log.Info("ronin: shard acquired", "shard", id, "rev", l.Rev())
	if was.Released && !was.Since.IsZero() {
		g.metrics.gap.Record(context.Background(), time.Since(was.Since).Seconds(), g.metrics.attrs)
	}
	g.start(ctx, id, l)
}

// handOver stops r's handler (bounded by HandoffTimeout), then releases
// its shard so that the new target takes it at once.
func (g *Group) handOver(r *held) {
	r.run.Stop(g.cfg.HandoffTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), g.bucket.Spec().TTL)
	defer cancel()
	release := g.bucket.Release
	if r.target != "" && r.target != g.node {
		release = func(ctx context.Context, l *engine.Lease) error { return g.bucket.HandOver(ctx, l, r.target) }
	}
	if err := release(ctx, r.lease); err != nil {
		g.log.Warn("ronin: shard release failed; it frees when this node's session ends", "shard", r.shard, "err", err)
	}
	g.metrics.handoffs.Add(context.Background(), 1, g.metrics.attrs)
	g.mu.Lock()
	delete(g.running, r.shard)
	g.mu.Unlock()
	g.log.Info("ronin: shard handed over", "shard", r.shard, "rev", r.lease.Rev())
}

// drain leaves the membership, waits until the node's view shows it (so
// other nodes plan without it), then hands every shard over to its target
// in the plan without this node, MaxMoves at a time, each after its
// handler returned.
func (g *Group) drain(work *sync.WaitGroup, p *planner) {
	g.accepting.Store(false)
	g.mu.Lock()
	for id, pr := range g.prep {
		pr.cancel()
		delete(g.prep, id)
	}
	g.published = ""
	g.setReadyLocked(false)
	g.draining = true
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.draining = false
		g.mu.Unlock()
	}()
	g.bucket.SetLeaving(true)
	deadline := g.clock.Now().Add(g.bucket.Spec().TTL)
	for g.clock.Now().Mono < deadline.Mono && g.bucket.Err() == nil {
		if members, _ := g.bucket.Members(); !slices.Contains(members, g.node) {
			break
		}
		clock.Sleep(context.Background(), g.clock, time.Millisecond)
	}
	work.Wait()                         // acquisitions and moves in flight
	for _, l := range g.takeAdopted() { // handed over, never started
		ctx, cancel := context.WithTimeout(context.Background(), g.bucket.Spec().TTL)
		_ = g.bucket.Release(ctx, l)
		cancel()
	}
	members, _ := g.bucket.Members()
	p.observe(slices.DeleteFunc(members, func(m string) bool { return m == g.node }), g.clock.Now())
	g.mu.Lock()
	var runs []*held
	for _, r := range g.running {
		r.moving, r.target = true, p.plan[r.shard]
		runs = append(runs, r)
	}
	g.mu.Unlock()
	slices.SortFunc(runs, func(a, b *held) int { return a.shard - b.shard })
	var moves errgroup.Group
	moves.SetLimit(g.cfg.MaxMoves)
	for _, r := range runs {
		moves.Go(func() error { g.handOver(r); return nil })
	}
	_ = moves.Wait()
}

// reap forgets a shard whose lease ended without a handoff (lost).
func (g *Group) reap(r *held) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if cur := g.running[r.shard]; cur == r && !r.moving {
		delete(g.running, r.shard)
	}
}

// preparing is Config.Prepare running (or done) for a shard planned here
// that another node still owns.
type preparing struct {
	cancel context.CancelFunc
	done   bool
}

// preparesLocked starts Prepare for the shards newly coming here, cancels
// it for the ones no longer coming, and publishes the prepared ones in the
// session so that their owners hand them over.
func (g *Group) preparesLocked(ctx context.Context, incoming []int, work *sync.WaitGroup) {
	coming := map[int]bool{}
	for _, id := range incoming {
		coming[id] = true
		if g.prep[id] != nil {
			continue
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), g.cfg.PrepareTimeout)
		pr := &preparing{cancel: cancel}
		g.prep[id] = pr
		work.Add(1)
		go func() {
			defer work.Done()
			defer cancel()
			if err := g.callPrepare(pctx, id); err != nil {
				g.log.Warn("ronin: shard prepare failed; the handoff goes ahead", "shard", id, "err", err)
			}
			g.mu.Lock()
			pr.done = true
			g.mu.Unlock()
			g.signal()
		}()
	}
	var keys []string
	for id, pr := range g.prep {
		switch {
		case !coming[id]:
			pr.cancel()
			delete(g.prep, id)
		case pr.done:
			keys = append(keys, g.keys[id])
		}
	}
	slices.Sort(keys)
	if joined := strings.Join(keys, ","); joined != g.published {
		g.published = joined
		g.bucket.SetPrepared(true, keys)
	}
}

// callPrepare runs Config.Prepare once, turning a panic into an error.
func (g *Group) callPrepare(ctx context.Context, id int) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("ronin: shard prepare panicked: %v", r)
		}
	}()
	return g.cfg.Prepare(ctx, id)
}

// held is one shard this node holds (or is acquiring) and its handler.
type held struct {
	shard     int
	acquiring bool   // placeholder while the CAS write is in flight
	moving    bool   // a handoff is under way
	target    string // where a handoff writes the shard over to ("" releases)
	lease     *engine.Lease
	run       *worker.Run
}

// adopt takes a shard another node handed over to this one (see
// engine.Bucket.Accept); the next step starts its handler. It runs under
// the bucket's lock, so it only queues.
func (g *Group) adopt(l *engine.Lease) bool {
	if _, ok := ID(l.Key()); !ok || !g.accepting.Load() {
		return false
	}
	g.adoptMu.Lock()
	g.adopted = append(g.adopted, l)
	g.adoptMu.Unlock()
	g.signal()
	return true
}

// takeAdopted returns the queued handed-over leases.
func (g *Group) takeAdopted() []*engine.Lease {
	g.adoptMu.Lock()
	defer g.adoptMu.Unlock()
	out := g.adopted
	g.adopted = nil
	return out
}

// startAdopted starts the handler of every shard handed over to this node
// since the last step.
func (g *Group) startAdopted(ctx context.Context) {
	for _, l := range g.takeAdopted() {
		id, _ := ID(l.Key())
		if !l.Valid() {
			continue // ended before it started: nothing ran
		}
		g.log.Info("ronin: shard handed over to this node", "shard", id, "rev", l.Rev())
		if h, _ := g.bucket.Holder(l.Key()); h.Rev == l.Rev() && !h.Since.IsZero() {
			g.metrics.gap.Record(context.Background(), time.Since(h.Since).Seconds(), g.metrics.attrs)
		}
		g.start(ctx, id, l)
	}
}

// start registers shard id as owned under lease l and runs its handler.
// The run is registered before the handler starts, so a handler that
// returns at once is reaped, never left behind as owned.
func (g *Group) start(parent context.Context, id int, l *engine.Lease) {
	r := &held{shard: id, lease: l}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running[id] = r
	r.run = worker.Start(parent, worker.Job{
		Shard:     id,
		Lease:     l,
		Call:      g.cfg.Handler,
		Clock:     g.clock,
		Log:       g.log,
		OnRestart: func() { g.metrics.restarts.Add(context.Background(), 1, g.metrics.attrs) },
		OnExit:    func() { g.reap(r); g.signal() },
	})
}

func (g *Group) signal() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}
