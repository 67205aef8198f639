package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/integration/ronintest"
)

// The rolling-restart scenario: N nodes run a 64-shard group; each node in
// turn drains (its group's Run ctx cancelled, Run returned), shuts down,
// starts again with the same NodeID, ports and DataDir, rejoins and
// settles, then the next. Goals over the whole roll: ≥ 99.9 % of
// shard-time with a running handler, no gap over 50 ms, ≤ 2 moves per
// shard, 0 overlaps.

const (
	rollShards = 64
	rollBucket = "roll"
	rollTTL    = 5 * time.Second
	rollShare  = 0.999
	rollGap    = 50 * time.Millisecond
	rollMoves  = 2
)

// rollStep is one node's restart.
type rollStep struct {
	node         string
	at           time.Time     // when its drain began
	stream, meta string        // leaders of the bucket's stream and of the meta group before the step
	drain        time.Duration // Run ctx cancelled → Run returned
	shut         time.Duration // Manager.Shutdown
	start        time.Duration // NewManager + Start
	rejoin       time.Duration // RegisterShards + Run → every group Ready, every shard runs once, spread
}

// handover is one gap between two handler runs of a shard during the
// roll, split by the bucket's stream when the trace has the writes (see
// splitBy).
type handover struct {
	shard                           int
	from, to                        string
	gap                             time.Duration
	kind                            string // "drain": off the restarting node; "rejoin": back to it
	path                            string // pathHandoff, pathRelease or pathUnknown
	write, delivery, acquire, start time.Duration
	leaderOnIt                      bool // the bucket's stream leader was on the restarting node
}

// rollRun is one whole roll.
type rollRun struct {
	total     time.Duration
	cv        coverage
	steps     []rollStep
	handovers []handover
	extra     []string // shards that moved more than rollMoves times: their runs
	bounces   int      // runs of under bounceLimit between two runs on one node (a → b → a)
}

// bounceLimit is how short a run between two runs of a shard on one other
// node must be to count as a bounce (a handover straight back).
const bounceLimit = 100 * time.Millisecond

// roll runs the scenario per node count.
func (b *bench) roll(ctx context.Context) {
	tbl := newTable(fmt.Sprintf("Rolling restart: %d shards, TTL %s; each node in turn drains, shuts down, restarts (same NodeID, ports, DataDir), rejoins and settles", rollShards, rollTTL),
		"N", "Rolls", "Owned shard-time (median · worst)", "Unowned shard-time (median · worst)", "Max gap (median · worst)", "Moves per shard, max (median · worst)",
		"Moves per shard, mean (median · worst)", "Bounces a → b → a, b < 100 ms (all rolls)", "Overlaps (all rolls)", "Roll time (median · worst)", "Goals", "Met")
	steps := newTable("Rolling restart: one node's step (p50 · max over every step of every roll)",
		"N", "Steps", "Drain (Run ctx cancelled → Run returned)", "Manager.Shutdown", "NewManager + Start",
		"Rejoin (Run → every group Ready, settled)", "Bucket stream leader on the restarting node", "Meta leader on the restarting node")
	gaps := newTable("Rolling restart: handover gaps split by the bucket's stream (p50 · p90 · max)",
		"N", "Handover", "Path (from the trace)", "n", "Gap (handler returned → next start)", "Write (returned → first write stored)",
		"Delivery (stored → bench's watcher saw it)", "Acquire (seen → acquiring put stored)",
		"Start (handoff: seen → handler started; release: put stored → handler started)")
	for _, n := range b.plan.rollNodes {
		var rs []rollRun
		for r := range b.plan.rollRuns {
			x, err := b.rollOnce(ctx, n)
			if err != nil {
				progress("roll N=%d run %d: %v", n, r+1, err)
				tbl.add(fmt.Sprint(n), fmt.Sprint(r+1), "FAILED: "+err.Error())
				break
			}
			rs = append(rs, x)
			g := x.cv.maxGap()
			mx, mean := movesPerShard(x.cv)
			progress("roll N=%d run %d: owned %.4f %%, max gap %s (shard %d), moves max %d mean %.2f, overlaps %d, took %s",
				n, r+1, 100*x.cv.share(), ms(g.length()), g.shard, mx, mean, len(x.cv.overlaps), ms(x.total))
		}
		if len(rs) > 0 {
			rollRows(tbl, steps, gaps, n, rs)
		}
	}
	tbl.note("Owned shard-time: Σ over shards of the time with ≥ 1 running handler ÷ (%d × roll time). Roll time: first Run ctx cancelled → every group Ready again after the last node's restart. Max gap: longest time any shard had no running handler. Moves per shard: handler starts during the roll. Bounces: a shard handed straight back (a → b → a with b's handler running under %s). Overlaps: two handlers of a shard running at once (from the handler log).", rollShards, ms(bounceLimit))
	tbl.note("Unowned shard-time: Σ over shards of the time without a running handler, in shard-seconds; unlike the share it does not shrink as the roll gets longer (a real restart takes longer than these in-process ones).")
	tbl.note("Goals: ≥ %.1f %% owned, no gap over %s, ≤ %d moves per shard, 0 overlaps; met when the worst roll meets every one.", 100*rollShare, ms(rollGap), rollMoves)
	gaps.note("The four parts add up to the gap. Delivery is to the bench's watcher, so for a handoff the Start part is the new owner's own delivery, step and handler start minus the bench's delivery; it can be negative when the new owner saw the write first.")
	gaps.note("Times are this process's clock (handler log) and the stream's store timestamps (set by the stream leader before replication); the watcher is the bench's own KV watcher on a node that is not restarting, a stand-in for the acquirer's watcher.")
	b.rep.addTable(tbl)
	b.rep.addTable(steps)
	b.rep.addTable(gaps)
}

// movesPerShard is the most and the mean handler starts per shard.
func movesPerShard(cv coverage) (int, float64) {
	sum := 0
	for _, n := range cv.starts {
		sum += n
	}
	return slices.Max(cv.starts), float64(sum) / float64(len(cv.starts))
}

func rollRows(tbl, steps, gaps *table, n int, rs []rollRun) {
	var share, mean []float64
	var maxGap, total, unowned sample
	var moves []int
	var overlaps []overlap
	var all []rollStep
	bounces := 0
	var hs []handover
	for _, x := range rs {
		share = append(share, x.cv.share())
		maxGap, total = append(maxGap, x.cv.maxGap().length()), append(total, x.total)
		unowned = append(unowned, time.Duration(rollShards)*x.cv.to.Sub(x.cv.from)-x.cv.owned)
		mx, mn := movesPerShard(x.cv)
		moves, mean = append(moves, mx), append(mean, mn)
		overlaps, bounces = append(overlaps, x.cv.overlaps...), bounces+x.bounces
		all = append(all, x.steps...)
		hs = append(hs, x.handovers...)
	}
	ok := slices.Min(share) >= rollShare && maxGap.max() <= rollGap && slices.Max(moves) <= rollMoves && len(overlaps) == 0
	tbl.add(fmt.Sprint(n), fmt.Sprint(len(rs)),
		fmt.Sprintf("%.4f %% · %.4f %%", 100*median(share), 100*slices.Min(share)),
		fmt.Sprintf("%.2f s · %.2f s", unowned.pct(50).Seconds(), unowned.max().Seconds()),
		ms(maxGap.pct(50))+" · "+ms(maxGap.max()),
		fmt.Sprintf("%d · %d", medianInt(moves), slices.Max(moves)),
		fmt.Sprintf("%.2f · %.2f", median(mean), slices.Max(mean)), fmt.Sprint(bounces),
		fmt.Sprint(len(overlaps)), ms(total.pct(50))+" · "+ms(total.max()),
		fmt.Sprintf("≥ %.1f %%, gap ≤ %s, ≤ %d moves, 0 overlaps", 100*rollShare, ms(rollGap), rollMoves), verdict(ok))
	for _, o := range overlaps {
		tbl.note("Overlap N=%d: shard %d ran on %s (from %s) and %s (from %s) at once for %s",
			n, o.shard, o.a.Node, o.a.Start.Format("15:04:05.000"), o.b.Node, o.b.Start.Format("15:04:05.000"), ms(o.to.Sub(o.from)))
	}
	for i, x := range rs {
		g := x.cv.maxGap()
		if g.prev != nil && g.next != nil {
			tbl.note("N=%d roll %d: max gap %s on shard %d, %s → %s at %+.3f s", n, i+1, ms(g.length()), g.shard, g.prev.Node, g.next.Node, g.from.Sub(x.cv.from).Seconds())
		}
		var starts []string
		for _, st := range x.steps {
			starts = append(starts, fmt.Sprintf("%s %+.3f s", st.node, st.at.Sub(x.cv.from).Seconds()))
		}
		tbl.note("N=%d roll %d: steps began (drain) at %s; %d shards moved more than %d times", n, i+1, strings.Join(starts, ", "), len(x.extra), rollMoves)
		for j, e := range x.extra {
			if j == 5 {
				tbl.note("N=%d roll %d: … and %d more", n, i+1, len(x.extra)-j)
				break
			}
			tbl.note("N=%d roll %d: %s", n, i+1, e)
		}
	}

	var drain, shut, start, rejoin sample
	stream, meta := 0, 0
	for _, st := range all {
		drain, shut, start, rejoin = append(drain, st.drain), append(shut, st.shut), append(start, st.start), append(rejoin, st.rejoin)
		if st.stream == st.node {
			stream++
		}
		if st.meta == st.node {
			meta++
		}
	}
	pm := func(s sample) string { return ms(s.pct(50)) + " · " + ms(s.max()) }
	steps.add(fmt.Sprint(n), fmt.Sprint(len(all)), pm(drain), pm(shut), pm(start), pm(rejoin),
		fmt.Sprintf("%d of %d steps", stream, len(all)), fmt.Sprintf("%d of %d steps", meta, len(all)))

	p3 := func(s sample) string {
		if len(s) == 0 {
			return "—"
		}
		return ms(s.pct(50)) + " · " + ms(s.pct(90)) + " · " + ms(s.max())
	}
	for _, kind := range []string{"drain", "rejoin", "other"} {
		for _, onLeader := range []bool{false, true} {
			for _, path := range []string{pathHandoff, pathRelease, pathUnknown} {
				var gap, write, del, acq, st sample
				for _, h := range hs {
					if h.kind != kind || h.leaderOnIt != onLeader || h.path != path {
						continue
					}
					gap = append(gap, h.gap)
					write, del, acq, st = append(write, h.write), append(del, h.delivery), append(acq, h.acquire), append(st, h.start)
				}
				if len(gap) == 0 {
					continue
				}
				label := map[string]string{"drain": "drain: off the restarting node", "rejoin": "rejoin: back to the restarted node", "other": "other"}[kind]
				if onLeader {
					label += "; the step began with the bucket's stream leader on it"
				}
				if path == pathUnknown {
					gaps.add(fmt.Sprint(n), label, path, fmt.Sprint(len(gap)), p3(gap))
					continue
				}
				if path == pathHandoff {
					acq = nil
				}
				gaps.add(fmt.Sprint(n), label, path, fmt.Sprint(len(gap)), p3(gap), p3(write), p3(del), p3(acq), p3(st))
			}
		}
	}
}

// rollOnce runs one whole roll on a new cluster of n nodes.
func (b *bench) rollOnce(ctx context.Context, n int) (rollRun, error) {
	var x rollRun
	c, dir, err := b.newCluster(n)
	if err != nil {
		return x, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	defer c.Shutdown()
	s := b.shardBenchOn(c, rollBucket, rollShards, rollTTL)
	defer s.halt(ctx)
	if _, err := s.launch(ctx); err != nil {
		return x, err
	}
	if _, err := s.waitSettled(ctx, 2*settleTimeout); err != nil {
		return x, fmt.Errorf("initial settle: %w", err)
	}
	tr := &kvTrace{bucket: rollBucket}
	defer tr.halt()
	if err := tr.follow(ctx, c, n-1); err != nil {
		return x, fmt.Errorf("trace: %w", err)
	}
	type window struct {
		from, to time.Time
		node     string
		onLeader bool
	}
	var wins []window
	t0 := time.Now()
	end := t0
	for i := range n {
		st := rollStep{node: c.Node(i).Config.NodeID}
		st.stream, st.meta = leaders(ctx, c, rollBucket)
		if tr.node == i {
			if err := tr.follow(ctx, c, (i+1)%n); err != nil {
				return x, fmt.Errorf("trace: %w", err)
			}
		}
		ts := time.Now()
		from := ts
		st.at = ts
		if err := waitDone(ctx, s.leave(i).done, time.Minute); err != nil {
			return x, fmt.Errorf("%s drain: %w", st.node, err)
		}
		st.drain = time.Since(ts)
		ts = time.Now()
		c.Stop(i)
		st.shut = time.Since(ts)
		ts = time.Now()
		if err := c.Restart(ctx, i); err != nil {
			return x, err
		}
		st.start = time.Since(ts)
		ts = time.Now()
		if err := s.register(i); err != nil {
			return x, fmt.Errorf("%s register: %w", st.node, err)
		}
		s.start(i)
		at, err := s.waitSettled(ctx, settleTimeout)
		if err != nil {
			return x, fmt.Errorf("%s rejoin: %w", st.node, err)
		}
		st.rejoin, end = at.Sub(ts), at
		x.steps = append(x.steps, st)
		wins = append(wins, window{from, at, st.node, st.stream == st.node})
		progress("roll N=%d %s: drain %s, shutdown %s, start %s, rejoin %s (stream leader %s, meta leader %s)",
			n, st.node, ms(st.drain), ms(st.shut), ms(st.start), ms(st.rejoin), st.stream, st.meta)
	}
	x.total = end.Sub(t0)
	warnViolations(fmt.Sprintf("roll N=%d", n), s.log)
	tr.halt()
	runs := s.log.Runs()
	x.cv = cover(runs, rollShards, t0, end)
	_, _, x.bounces = churn(runs, rollShards, t0, bounceLimit)
	for id, k := range x.cv.starts {
		if k <= rollMoves {
			continue
		}
		var seq []string
		for _, r := range runs {
			if r.Shard == id && endOr(&r, end).After(t0) {
				seq = append(seq, fmt.Sprintf("%s from %+.3f s", r.Node, r.Start.Sub(t0).Seconds()))
			}
		}
		x.extra = append(x.extra, fmt.Sprintf("shard %d: %s", id, strings.Join(seq, " → ")))
	}
	events := tr.byKey()
	unsplit := 0
	for _, g := range x.cv.gaps {
		if g.prev == nil || g.next == nil || !g.prev.Returned {
			continue
		}
		h := handover{shard: g.shard, from: g.prev.Node, to: g.next.Node, gap: g.length(), kind: "other"}
		for _, w := range wins {
			if !g.from.Before(w.from) && !g.from.After(w.to) {
				h.leaderOnIt = w.onLeader
				switch w.node {
				case h.from:
					h.kind = "drain"
				case h.to:
					h.kind = "rejoin"
				}
			}
		}
		evs := events["shard."+strconv.Itoa(g.shard)]
		h.splitBy(evs, g.prev.End, g.next.Start)
		x.handovers = append(x.handovers, h)
		if h.path == pathUnknown {
			if unsplit++; unsplit > 3 {
				continue
			}
			var near []string
			for _, e := range evs {
				if e.stored.After(g.prev.End.Add(-20*time.Millisecond)) && e.stored.Before(g.next.Start.Add(20*time.Millisecond)) {
					near = append(near, fmt.Sprintf("%s node %q handoff %v stored %+.1f ms",
						strings.TrimPrefix(e.op.String(), "KeyValue"), e.node, e.handoff, float64(e.stored.Sub(g.prev.End))/1e6))
				}
			}
			if len(near) > 6 {
				near = append(near[:6], fmt.Sprintf("… %d more", len(near)-6))
			}
			progress("roll N=%d: handover of shard %d %s → %s (gap %s) not split by the trace; writes ±20 ms around it (from the return): %s",
				n, g.shard, h.from, h.to, ms(h.gap), strings.Join(near, "; "))
		}
	}
	if unsplit > 3 {
		progress("roll N=%d: … %d handovers in all not split by the trace", n, unsplit)
	}
	return x, nil
}

// splitTolerance allows for the store's timestamps being taken a little
// before this process's (the same clock, different goroutines).
const splitTolerance = 2 * time.Millisecond

// Handover paths, as the trace shows them.
const (
	pathHandoff = "one write (handoff put naming the new node)"
	pathRelease = "release (delete), then the new node's acquiring put"
	pathUnknown = "not in the trace"
)

// splitBy splits h by the trace of its shard's key, between the old
// handler's return and the new one's start: either one handoff write (a
// put naming the new node, which adopts it) or a delete followed by the
// new node's acquiring put. The parts add up to the gap: write (returned
// → first write stored), delivery (stored → the bench's watcher saw it),
// acquire (seen → acquiring put stored; 0 for a handoff) and start (the
// last step → handler started).
func (h *handover) splitBy(evs []kvEvent, returned, started time.Time) {
	h.path = pathUnknown
	var first, acq *kvEvent
	for i := range evs {
		e := &evs[i]
		if e.stored.Before(returned.Add(-splitTolerance)) || e.stored.After(started.Add(splitTolerance)) {
			continue
		}
		if first == nil {
			if e.op == jetstream.KeyValuePut && !e.handoff {
				continue // an acquiring put before any release: not this handover's
			}
			first = e
			if e.op == jetstream.KeyValuePut {
				break // a handoff: one write
			}
			continue
		}
		if e.op == jetstream.KeyValuePut && e.node == h.to {
			acq = e
			break
		}
	}
	switch {
	case first == nil:
		return
	case first.op == jetstream.KeyValuePut:
		if first.node != h.to {
			return
		}
		h.path = pathHandoff
		h.write, h.delivery, h.start = first.stored.Sub(returned), first.seen.Sub(first.stored), started.Sub(first.seen)
	case acq != nil:
		h.path = pathRelease
		h.write, h.delivery = first.stored.Sub(returned), first.seen.Sub(first.stored)
		h.acquire, h.start = acq.stored.Sub(first.seen), started.Sub(acq.stored)
	}
}

// kvEvent is one write to a shard key, as the bench's watcher saw it.
type kvEvent struct {
	key          string
	op           jetstream.KeyValueOp
	node         string // the node a put names
	handoff      bool   // a put the previous holder wrote over to node
	rev          uint64
	stored, seen time.Time // the stream's timestamp; when the watcher got it
}

// kvTrace records every write to the shard keys of a bucket with a KV
// watcher on one node; follow moves it to another node, resuming after the
// last revision seen.
type kvTrace struct {
	bucket string
	node   int // the node it watches from
	mu     sync.Mutex
	events []kvEvent
	stop   context.CancelFunc
	done   chan struct{}
}

func (t *kvTrace) follow(ctx context.Context, c *ronintest.Cluster, i int) error {
	t.halt()
	opt := jetstream.UpdatesOnly()
	t.mu.Lock()
	if n := len(t.events); n > 0 {
		opt = jetstream.ResumeFromRevision(t.events[n-1].rev + 1)
	}
	t.mu.Unlock()
	wctx, cancel := context.WithCancel(ctx)
	rctx, rcancel := context.WithTimeout(wctx, 5*time.Second)
	defer rcancel()
	kv, err := js(c, i).KeyValue(rctx, t.bucket)
	if err != nil {
		cancel()
		return err
	}
	w, err := kv.Watch(wctx, "shard.>", opt)
	if err != nil {
		cancel()
		return err
	}
	t.node, t.stop, t.done = i, cancel, make(chan struct{})
	go func(done chan struct{}) {
		defer close(done)
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					t.record(e)
				}
			case <-wctx.Done():
				return
			}
		}
	}(t.done)
	return nil
}

func (t *kvTrace) record(e jetstream.KeyValueEntry) {
	ev := kvEvent{key: e.Key(), op: e.Operation(), rev: e.Revision(), stored: e.Created(), seen: time.Now()}
	if ev.op == jetstream.KeyValuePut {
		var rec struct {
			Node    string `json:"node"`
			Handoff bool   `json:"handoff"`
		}
		if json.Unmarshal(e.Value(), &rec) == nil {
			ev.node, ev.handoff = rec.Node, rec.Handoff
		}
	}
	t.mu.Lock()
	t.events = append(t.events, ev)
	t.mu.Unlock()
}

// halt stops the watcher, if one runs.
func (t *kvTrace) halt() {
	if t.stop == nil {
		return
	}
	t.stop()
	<-t.done
	t.stop = nil
}

// byKey returns the events per key, in revision order.
func (t *kvTrace) byKey() map[string][]kvEvent {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := map[string][]kvEvent{}
	for _, e := range t.events {
		out[e.key] = append(out[e.key], e)
	}
	for _, evs := range out {
		slices.SortFunc(evs, func(a, b kvEvent) int { return cmp.Compare(a.rev, b.rev) })
	}
	return out
}

// median is the median of xs (the mean of the middle two for an even count).
func median(xs []float64) float64 {
	s := slices.Sorted(slices.Values(xs))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func medianInt(xs []int) int {
	s := slices.Sorted(slices.Values(xs))
	return s[(len(s)-1)/2]
}
