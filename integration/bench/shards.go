package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/balancer"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// settleTimeout bounds every wait for a shard group to settle.
const settleTimeout = time.Minute

// shardBench is a shard group on a cluster (the bench's, unless made with
// shardBenchOn).
type shardBench struct {
	b       *bench
	c       *ronintest.Cluster
	cfg     ronin.ShardConfig
	log     *ronintest.ShardLog
	groups  []*ronin.ShardGroup
	members []*member // nil while the node's group does not run
}

// newShardBench registers a group on every node of the bench's cluster.
func (b *bench) newShardBench(bucket string, shards int, ttl time.Duration) (*shardBench, error) {
	s := b.shardBenchOn(b.c, bucket, shards, ttl)
	for i := range s.members {
		if err := s.register(i); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// shardBenchOn is a shard group on c with nothing registered yet.
func (b *bench) shardBenchOn(c *ronintest.Cluster, bucket string, shards int, ttl time.Duration) *shardBench {
	n := c.Size()
	return &shardBench{b: b, c: c, log: ronintest.NewShardLog(), members: make([]*member, n), groups: make([]*ronin.ShardGroup, n),
		cfg: ronin.ShardConfig{BucketName: bucket, Shards: shards, TTL: ttl, Replicas: 3}}
}

// register registers node i's group on its current Manager.
func (s *shardBench) register(i int) error {
	cfg := s.cfg
	m := s.c.Manager(i)
	cfg.Handler = s.log.Handler(m.NodeID())
	g, err := m.RegisterShards(cfg)
	s.groups[i] = g
	return err
}

func (s *shardBench) start(i int) { s.members[i] = runMember(s.groups[i]) }

// leave cancels node i's Run ctx without waiting for it.
func (s *shardBench) leave(i int) *member {
	m := s.members[i]
	s.members[i] = nil
	m.cancel()
	return m
}

// nodes are the IDs of the nodes whose group runs.
func (s *shardBench) nodes() []string {
	var out []string
	for i, m := range s.members {
		if m != nil {
			out = append(out, s.c.Node(i).Config.NodeID)
		}
	}
	return out
}

// settle waits until the running groups own every shard, spread evenly,
// and returns the time it took from t0.
func (s *shardBench) settle(ctx context.Context, t0 time.Time, timeout time.Duration) (time.Duration, error) {
	nodes := s.nodes()
	at, err := waitUntil(ctx, timeout, 5*time.Millisecond, func() bool {
		_, ok := s.log.Settled(s.cfg.Shards, nodes)
		return ok
	})
	if err != nil {
		return 0, fmt.Errorf("%d shards over %v: %w", s.cfg.Shards, nodes, err)
	}
	return at.Sub(t0), nil
}

// close stops every running group concurrently and deletes the bucket.
func (s *shardBench) close(ctx context.Context) {
	var wg sync.WaitGroup
	for i, m := range s.members {
		if m != nil {
			s.members[i] = nil
			wg.Go(func() {
				if err := m.stop(ctx); err != nil {
					progress("warning: shard group did not stop: %v", err)
				}
			})
		}
	}
	wg.Wait()
	dropBucket(ctx, js(s.c, 0), s.cfg.BucketName)
}

// startAll starts the group on every node at once and waits until it owns
// every shard.
func (s *shardBench) startAll(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	for i := range s.members {
		s.start(i)
	}
	return s.settle(ctx, t0, 2*settleTimeout)
}

// lifecycle is what the 64-shard scenario measured.
type lifecycle struct {
	start                  time.Duration
	joins, leaves, crashes sample
	joinGaps, leaveGaps    sample
	joinMoves, leaveMoves  []int
	idealJoin, idealLeave  int
}

// shards64 runs 64 shards through start, leave/rejoin cycles and crashes.
func (b *bench) shards64(ctx context.Context) {
	const shards, ttl = 64, 5 * time.Second
	s, err := b.newShardBench("shards-64", shards, ttl)
	if err != nil {
		b.rep.fail(secShards, "64 shards", err)
		return
	}
	defer s.close(ctx)
	var lc lifecycle
	err = s.lifecycle(ctx, &lc)
	b.reportLifecycle(lc, ttl)
	if err != nil {
		b.rep.fail(secShards, "64 shards", err)
	}
	warnViolations("64 shards", s.log)
	if n := overlapsSoFar(s.log, shards); n > 0 {
		b.rep.add(secShards, row{metric: "E1: a shard handler started while another had not returned",
			setting: "64 shards", n: fmt.Sprint(n), result: "violations", goal: "0", met: verdict(false)})
	}
}

func (s *shardBench) lifecycle(ctx context.Context, lc *lifecycle) error {
	var err error
	if lc.start, err = s.startAll(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	progress("64 shards: all running after %s", ms(lc.start))
	lc.idealJoin, lc.idealLeave = balancer.IdealMoves(64, 2, 3), balancer.IdealMoves(64, 3, 2)
	for c := range s.b.plan.cycles {
		if err := s.leaveRejoin(ctx, 2, lc); err != nil {
			return fmt.Errorf("cycle %d: %w", c, err)
		}
		progress("64 shards cycle %d: leave %s, join %s", c+1, ms(lc.leaves[c]), ms(lc.joins[c]))
	}
	for c := range s.b.plan.crashes {
		if err := s.crashRestart(ctx, lc); err != nil {
			return fmt.Errorf("crash %d: %w", c, err)
		}
		progress("64 shards crash %d: settled %s after TTL", c+1, ms(lc.crashes[c]))
	}
	return nil
}

// leaveRejoin stops node i's group gracefully, then runs it again.
func (s *shardBench) leaveRejoin(ctx context.Context, i int, lc *lifecycle) error {
	node := s.c.Node(i).Config.NodeID
	before, _ := s.log.Owners(s.cfg.Shards)
	t0 := time.Now()
	m := s.leave(i)
	took, err := s.settle(ctx, t0, settleTimeout)
	if err != nil {
		return fmt.Errorf("leave: %w", err)
	}
	if err := waitDone(ctx, m.done, time.Minute); err != nil {
		return fmt.Errorf("leaving group's Run: %w", err)
	}
	lc.leaves = append(lc.leaves, took)
	after, _ := s.log.Owners(s.cfg.Shards)
	lc.leaveMoves = append(lc.leaveMoves, changed(before, after))
	for _, h := range s.log.Handovers(t0) {
		if h.From == node {
			lc.leaveGaps = append(lc.leaveGaps, h.Gap)
		}
	}

	t0 = time.Now()
	s.start(i)
	if took, err = s.settle(ctx, t0, settleTimeout); err != nil {
		return fmt.Errorf("join: %w", err)
	}
	lc.joins = append(lc.joins, took)
	final, _ := s.log.Owners(s.cfg.Shards)
	lc.joinMoves = append(lc.joinMoves, changed(after, final))
	for _, h := range s.log.Handovers(t0) {
		if h.To == node {
			lc.joinGaps = append(lc.joinGaps, h.Gap)
		}
	}
	return nil
}

// crashRestart crashes a node that leads neither the bucket's stream nor
// the meta group (those are separate scenarios: a Raft failover stalls the
// store 4-9 s), waits until the others own every shard, then restarts it.
func (s *shardBench) crashRestart(ctx context.Context, lc *lifecycle) error {
	victim := bystander(ctx, s.c, s.cfg.BucketName)
	if victim < 0 {
		return fmt.Errorf("no node that leads neither the stream nor the meta group")
	}
	other := (victim + 1) % 3
	if err := afterRenew(ctx, js(s.c, other), s.cfg.BucketName, s.c.Node(victim).Config.NodeID, s.cfg.TTL); err != nil {
		return err
	}
	dead := s.c.Manager(victim)
	// t0 is taken before Kill, which closes the connection first and then
	// waits for the server to finish shutting down: the interval counts
	// from the moment the node went silent, as it did when the crash did
	// not wait. The wait only delays the first poll, and the survivors
	// cannot settle before the TTL has passed anyway.
	t0 := time.Now()
	s.c.Kill(victim)
	m := s.members[victim]
	s.members[victim] = nil
	took, err := s.settle(ctx, t0, s.cfg.TTL+settleTimeout)
	if err != nil {
		return err
	}
	lc.crashes = append(lc.crashes, took-s.cfg.TTL)
	m.cancel()
	dead.Shutdown() // reap it now, not at the cluster's Shutdown (idempotent)
	if err := waitDone(ctx, m.done, time.Minute); err != nil {
		return fmt.Errorf("crashed group's Run: %w", err)
	}
	if err := s.c.Restart(ctx, victim); err != nil {
		return err
	}
	if err := s.register(victim); err != nil {
		return err
	}
	s.start(victim)
	_, err = s.settle(ctx, time.Now(), settleTimeout)
	return err
}

// changed counts shards whose owner differs.
func changed(before, after map[int]string) int {
	n := 0
	for id, node := range after {
		if before[id] != node {
			n++
		}
	}
	return n
}

func (b *bench) reportLifecycle(lc lifecycle, ttl time.Duration) {
	setting := fmt.Sprintf("64 shards, 3 nodes, TTL %s", ttl)
	add := func(metric string, n int, result, goal string, ok bool) {
		x := row{metric: metric, setting: setting, n: fmt.Sprint(n), result: result, goal: goal}
		if goal != "" {
			x.met = verdict(ok)
		}
		b.rep.add(secShards, x)
	}
	if lc.start > 0 {
		add("Start (groups on 3 nodes together) → every shard runs once, spread", 1, ms(lc.start), "", false)
	}
	if len(lc.joins) > 0 {
		add("Join (3rd node's group starts) → settled", len(lc.joins),
			fmt.Sprintf("%s; moved %v shards (ideal %d)", lc.joins.summary(), lc.joinMoves, lc.idealJoin),
			"< 2 s", lc.joins.pct(99) < 2*time.Second)
	}
	if len(lc.leaves) > 0 {
		add("Graceful leave (one group's Run ctx cancelled) → settled", len(lc.leaves),
			fmt.Sprintf("%s; moved %v shards (ideal %d)", lc.leaves.summary(), lc.leaveMoves, lc.idealLeave),
			"< 2 s", lc.leaves.pct(99) < 2*time.Second)
	}
	if len(lc.crashes) > 0 {
		add("Member crash (conn closed + server shut down) → settled, minus TTL", len(lc.crashes),
			lc.crashes.summary()+"; victim leads neither the bucket stream nor the meta group; crash right after a renew of its session (worst-case phase)",
			"< 1 s", lc.crashes.pct(99) < time.Second)
	}
	if len(lc.leaveGaps) > 0 {
		add("Drain gap per shard on graceful leave (new start − old return)", len(lc.leaveGaps),
			lc.leaveGaps.summary(), "p99 ≤ 5 ms", lc.leaveGaps.pct(99) <= 5*time.Millisecond)
	}
	if len(lc.joinGaps) > 0 {
		add("Handoff gap per shard on join (new start − old return)", len(lc.joinGaps), lc.joinGaps.summary(), "", false)
	}
}

// shards1024 measures 1,024 shards on 3 nodes: time to full ownership,
// then a quiet window.
func (b *bench) shards1024(ctx context.Context) {
	const shards, ttl = 1024, 5 * time.Second
	setting := fmt.Sprintf("%d shards, 3 nodes, TTL %s", shards, ttl)
	s, err := b.newShardBench("shards-1024", shards, ttl)
	if err != nil {
		b.rep.fail(secShards, setting, err)
		return
	}
	defer s.close(ctx)
	defer warnViolations("1024 shards", s.log)
	took, err := s.startAll(ctx)
	if err != nil {
		b.rep.fail(secShards, setting, err)
		return
	}
	progress("1024 shards: all running after %s; settling", ms(took))
	if err := sleep(ctx, time.Second); err != nil {
		return
	}
	st, err := measureSteady(ctx, js(b.c, 0), s.cfg.BucketName, b.plan.window)
	if err != nil {
		b.rep.fail(secShards, setting, err)
		return
	}
	limit := 1.5 * sessionWrites(ttl)
	b.rep.add(secShards, row{metric: "Start → every shard runs once, spread; steady window", setting: setting,
		n: "window " + b.plan.window.String(), result: fmt.Sprintf("all running in %s · then %s", ms(took), st),
		goal: fmt.Sprintf("writes ≤ %.1f/s (O(nodes)), CPU ≤ 5 %% of a core", limit), met: verdict(st.writes <= limit && st.cpu <= 0.05)})
}

// warnViolations prints what l's own checks found: a handler started
// while another of its shard still had a live ctx (E1), or a token that
// did not grow (E2). The tables count overlaps from the runs themselves.
func warnViolations(what string, l *ronintest.ShardLog) {
	v := l.Violations()
	for i, line := range v {
		if i == 5 {
			progress("warning: %s: shard log: … and %d more", what, len(v)-i)
			break
		}
		progress("warning: %s: shard log: %s", what, line)
	}
}

// member is one node's running group.
type member struct {
	g      *ronin.ShardGroup
	cancel context.CancelFunc
	done   chan struct{}
}

func runMember(g *ronin.ShardGroup) *member {
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{g: g, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(m.done); _ = g.Run(ctx) }()
	return m
}

func (m *member) stop(ctx context.Context) error {
	m.cancel()
	return waitDone(ctx, m.done, time.Minute)
}
