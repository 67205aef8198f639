package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nonchan7720/ronin/balancer"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// The start-up scenario: three nodes started together, each running a
// 64-shard group as soon as its Start returned. Goal: every shard starts
// once, on its owner in the plan of the full membership, no handler starts
// and stops during start-up, and all 64 run ≤ 1.5 s after the last Start
// returned in at least 9 runs of 10.

const (
	startupShards = 64
	startupBucket = "startup"
	startupGoal   = 1500 * time.Millisecond
	// startupQuiet is how long a start-up is watched after it settled, so
	// that late churn is counted.
	startupQuiet = 2 * time.Second
)

// startupRun is one measured start-up. Durations are from the moment the
// last Start returned unless noted.
type startupRun struct {
	took     time.Duration // → every shard runs exactly once, for good
	first    time.Duration // → first handler start (negative: before it)
	ready    time.Duration // → every group Ready and the log settled (polled every 5 ms)
	spread   time.Duration // first Start returned → last Start returned
	register time.Duration // longest RegisterShards of the run
	starts   int           // handler starts
	stops    int           // handlers that returned (churn)
	misFinal int           // shards whose first owner is not their final one
	misPlan  int           // shards whose first owner is not their owner in the plan of all nodes
	overlaps int
	late     bool          // a shard changed hands after every group was first seen Ready
	lived    sample        // how long each churned handler ran
	moved    int           // starts on another node than the shard's previous run
	same     int           // starts on the same node again (the lease ended and was taken again)
	bounces  int           // a → b → a with b's run under bounceLimit
	runs     time.Duration // first Run call → last Run call
}

// startup runs the scenario per TTL, fresh bucket then existing bucket.
func (b *bench) startup(ctx context.Context) {
	runs := b.plan.startupRuns
	tbl := newTable(fmt.Sprintf("Start-up: 3 nodes started together, each runs a %d-shard group as soon as its Start returned", startupShards),
		"Bucket", "TTL", "n", "T min", "T p50", "T p90", "T max", "T per run (sorted)", "T ≤ 1.5 s",
		"Starts (ideal)", "Churn stops", "First owner ≠ final", "First owner ≠ plan of all 3", "Overlaps", "Runs that moved shards after all Ready", "Goal", "Met")
	where := newTable("Start-up: where the time goes (p50 · max over the runs; from the last Start returned unless noted)",
		"Bucket", "TTL", "n", "Start returns spread (first → last)", "Longest RegisterShards", "Run calls spread (first → last)",
		"→ first handler start", "→ all 64 run once (T)", "→ every group Ready (first seen, polled)", "Churned handlers: count, lifetime",
		"Restarts: on another node · on the same node · bounces a → b → a")
	for _, ttl := range b.plan.startupTTLs {
		for _, existing := range []bool{false, true} {
			kind := "fresh (new cluster)"
			if existing {
				kind = "existing (cluster restart)"
			}
			var rs []startupRun
			for r := range runs {
				x, err := b.startupOnce(ctx, ttl, existing)
				if err != nil {
					progress("startup %s TTL %s run %d: %v", kind, ttl, r+1, err)
					tbl.add(kind, ttl.String(), fmt.Sprint(r+1), "FAILED: "+err.Error())
					break
				}
				rs = append(rs, x)
				progress("startup %s TTL %s run %d: T %s (first start %s, ready %s), %d starts, %d stops, %d ≠ final, %d ≠ plan, spread %s, register %s",
					kind, ttl, r+1, ms(x.took), ms(x.first), ms(x.ready), x.starts, x.stops, x.misFinal, x.misPlan, ms(x.spread), ms(x.register))
			}
			if len(rs) == 0 {
				continue
			}
			startupRows(tbl, where, kind, ttl, rs)
		}
	}
	tbl.note("T: the last Start returned → every shard has exactly one running handler, and keeps it for the %s the bench watches after every group is Ready (the handler log's own timestamps, not polling).", startupQuiet)
	tbl.note("Churn stops: handlers that returned during start-up. First owner ≠ final: shards whose first handler ran elsewhere than the final one. Plan of all 3: balancer.Plan(%d, [n1 n2 n3]).", startupShards)
	tbl.note("Fresh: a new cluster and bucket each run (a new bucket grants nothing for one TTL: the genesis rule, docs/safety.md). Existing: a new cluster runs the group until settled, all 3 Managers Shutdown gracefully (drain), then start again with the same NodeIDs, ports and DataDirs; only the restart is measured.")
	tbl.note("Runs that moved shards after all Ready: every group was Ready and every shard ran once (first seen, polled every 5 ms), yet a handler stopped or started later; T counts from the last change (the bench watches %s after Ready and waits again while shards move).", startupQuiet)
	where.note("Restarts: handler starts after a shard's first, on another node than its previous run, or on the same node (its lease ended and was taken again); bounces: a shard handed straight back (a → b → a, b's handler under %s).", ms(bounceLimit))
	tbl.note("Goal met: T ≤ 1.5 s in ≥ 90 %% of the runs, every shard started once (no churn, no misplaced first owner), no overlap.")
	b.rep.addTable(tbl)
	b.rep.addTable(where)
}

func startupRows(tbl, where *table, kind string, ttl time.Duration, rs []startupRun) {
	var took, first, ready, spread, register, runSpread, lived sample
	starts, stops, misFinal, misPlan, overlaps, within, late := 0, 0, 0, 0, 0, 0, 0
	moved, same, bounces := 0, 0, 0
	for _, x := range rs {
		took, first, ready = append(took, x.took), append(first, x.first), append(ready, x.ready)
		spread, register = append(spread, x.spread), append(register, x.register)
		runSpread, lived = append(runSpread, x.runs), append(lived, x.lived...)
		moved, same, bounces = moved+x.moved, same+x.same, bounces+x.bounces
		if x.late {
			late++
		}
		starts, stops, misFinal, misPlan, overlaps = starts+x.starts, stops+x.stops, misFinal+x.misFinal, misPlan+x.misPlan, overlaps+x.overlaps
		if x.took <= startupGoal {
			within++
		}
	}
	n := len(rs)
	var all []string
	for _, d := range slices.Sorted(slices.Values(took)) {
		all = append(all, ms(d))
	}
	need := int(math.Ceil(0.9 * float64(n)))
	ok := within >= need && stops == 0 && misPlan == 0 && misFinal == 0 && overlaps == 0 && starts == n*startupShards && late == 0
	tbl.add(kind, ttl.String(), fmt.Sprint(n), ms(took.pct(0)), ms(took.pct(50)), ms(took.pct(90)), ms(took.max()),
		strings.Join(all, ", "), fmt.Sprintf("%d of %d", within, n),
		fmt.Sprintf("%d (%d)", starts, n*startupShards), fmt.Sprint(stops), fmt.Sprint(misFinal), fmt.Sprint(misPlan), fmt.Sprint(overlaps), fmt.Sprintf("%d of %d", late, n),
		"T ≤ 1.5 s in ≥ 9 of 10; 0 churn, 0 misplaced, 0 overlaps", verdict(ok))
	pm := func(s sample) string { return ms(s.pct(50)) + " · " + ms(s.max()) }
	lv := "none"
	if len(lived) > 0 {
		lv = fmt.Sprintf("%d: ", len(lived)) + lived.summary()
	}
	where.add(kind, ttl.String(), fmt.Sprint(n), pm(spread), pm(register), pm(runSpread), pm(first), pm(took), pm(ready), lv,
		fmt.Sprintf("%d · %d · %d", moved, same, bounces))
}

// startupOnce runs one start-up on a new cluster, after a first life of
// it if existing.
func (b *bench) startupOnce(ctx context.Context, ttl time.Duration, existing bool) (startupRun, error) {
	var x startupRun
	c, dir, err := b.newCluster(3)
	if err != nil {
		return x, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	defer c.Shutdown()
	if existing {
		first := b.shardBenchOn(c, startupBucket, startupShards, ttl)
		if _, err := first.launch(ctx); err != nil {
			return x, fmt.Errorf("first life: %w", err)
		}
		if _, err := first.waitSettled(ctx, 2*settleTimeout); err != nil {
			first.halt(ctx)
			return x, fmt.Errorf("first life: %w", err)
		}
		first.halt(ctx)
		warnViolations("startup, first life", first.log)
	}
	s := b.shardBenchOn(c, startupBucket, startupShards, ttl)
	defer s.halt(ctx)
	l, err := s.launch(ctx)
	if err != nil {
		return x, err
	}
	last := l.last
	x.spread, x.register, x.runs = l.spread, l.register, l.runs
	// Settled: every group Ready, every shard runs once, and so for
	// startupQuiet; if the shards changed hands after all were Ready, wait
	// again (a few times).
	var at, since, ready time.Time
	var runs []ronintest.Run
	for attempt := 0; ; attempt++ {
		readyAt, err := s.waitSettled(ctx, 2*settleTimeout)
		if err != nil {
			return x, err
		}
		if attempt == 0 {
			ready = readyAt
		}
		if err := sleep(ctx, startupQuiet); err != nil {
			return x, err
		}
		at = time.Now()
		runs = slices.DeleteFunc(s.log.Runs(), func(c ronintest.Run) bool { return c.Start.After(at) })
		var ok bool
		if since, ok = allOnceSince(runs, startupShards, at); ok {
			break
		}
		progress("startup: shards still change hands %s after every group was Ready", startupQuiet)
		if attempt == 4 {
			return x, fmt.Errorf("shards still change hands after every group was Ready, %d times", attempt+1)
		}
	}
	x.ready, x.took = ready.Sub(last), since.Sub(last)
	// The shards changed hands after all were Ready if the final state
	// began later (the 5 ms poll sees at most that much after it began).
	x.late = since.After(ready)
	x.moved, x.same, x.bounces = churn(runs, startupShards, time.Time{}, bounceLimit)
	x.starts = len(runs)
	plan := balancer.Plan(startupShards, s.allNodes())
	final, _ := s.log.Owners(startupShards)
	firstOwner := map[int]string{}
	for i, c := range runs {
		if i == 0 {
			x.first = c.Start.Sub(last)
		}
		if c.Returned && !c.End.After(at) {
			x.stops++
			x.lived = append(x.lived, c.End.Sub(c.Start))
		}
		if _, seen := firstOwner[c.Shard]; !seen {
			firstOwner[c.Shard] = c.Node
		}
	}
	for id := range startupShards {
		if firstOwner[id] != final[id] {
			x.misFinal++
		}
		if firstOwner[id] != plan[id] {
			x.misPlan++
		}
	}
	x.overlaps = len(cover(runs, startupShards, runs[0].Start, at).overlaps)
	warnViolations("startup", s.log)
	return x, nil
}

// launched is when launch's nodes started and ran their groups.
type launched struct {
	last     time.Time     // the last Start returned
	spread   time.Duration // first Start returned → last
	register time.Duration // longest RegisterShards
	runs     time.Duration // first Run call → last
}

// launch starts every node of s's cluster at once; each registers its
// group and runs it as soon as its own Start returned.
func (s *shardBench) launch(ctx context.Context) (launched, error) {
	var l launched
	n := s.c.Size()
	started, ran := make([]time.Time, n), make([]time.Time, n)
	err := s.c.StartAll(ctx, func(i int) error {
		started[i] = time.Now()
		if err := s.register(i); err != nil {
			return err
		}
		ran[i] = time.Now()
		s.start(i)
		return nil
	})
	if err != nil {
		s.halt(ctx)
		return l, err
	}
	for i := range n {
		l.register = max(l.register, ran[i].Sub(started[i]))
	}
	l.last = slices.MaxFunc(started, time.Time.Compare)
	l.spread = l.last.Sub(slices.MinFunc(started, time.Time.Compare))
	l.runs = slices.MaxFunc(ran, time.Time.Compare).Sub(slices.MinFunc(ran, time.Time.Compare))
	return l, nil
}

// allNodes are the IDs of every node of s's cluster.
func (s *shardBench) allNodes() []string {
	var out []string
	for i := range s.c.Size() {
		out = append(out, s.c.Node(i).Config.NodeID)
	}
	return out
}

// waitSettled waits until every running group is Ready and every shard
// runs exactly once, spread evenly over them; it returns when that was seen.
func (s *shardBench) waitSettled(ctx context.Context, timeout time.Duration) (time.Time, error) {
	nodes := s.nodes()
	at, err := waitUntil(ctx, timeout, 5*time.Millisecond, func() bool {
		for i, m := range s.members {
			if m != nil && !s.groups[i].Ready() {
				return false
			}
		}
		_, ok := s.log.Settled(s.cfg.Shards, nodes)
		return ok
	})
	if err != nil {
		return at, fmt.Errorf("%d shards over %v, every group Ready: %w", s.cfg.Shards, nodes, err)
	}
	return at, nil
}

// halt shuts every node of s's cluster down gracefully (Manager.Shutdown
// drains the groups) and waits for the groups' Run to return; StartAll
// starts the nodes again.
func (s *shardBench) halt(ctx context.Context) {
	s.c.StopAll()
	for i, m := range s.members {
		if m != nil {
			s.members[i] = nil
			if err := m.stop(ctx); err != nil {
				progress("warning: shard group did not stop: %v", err)
			}
		}
	}
}
