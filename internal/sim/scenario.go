package sim

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"
)

// Scenario is one seeded run: the cluster's shape and its fault schedule
// both follow from Seed.
type Scenario struct {
	Seed   int64
	Nodes  int
	Keys   int           // plain election keys, one candidate per node each
	Shards int           // shards of one group on every node (0: none)
	TTL    time.Duration // of both buckets
	// Faults is how long faults are injected; Settle how long the healed
	// cluster then has before the liveness check.
	Faults, Settle time.Duration
	// Focus, if set, makes half of the faults of one kind (see focusKinds).
	Focus string
}

// focusKinds maps a focus to a draw of schedule's fault table.
var focusKinds = map[string]int{
	"slow": 14, "partition": 51, "pause": 75, "suspend": 81, "crash": 85, "purge": 98, "delete": 99,
	"observer": 100,
}

// FromSeed draws a scenario.
func FromSeed(seed int64) Scenario {
	r := rand.New(rand.NewPCG(uint64(seed), 0xc0ffee))
	sc := Scenario{Seed: seed, Nodes: 2 + r.IntN(3), TTL: time.Second, Faults: 8 * time.Second, Settle: 6 * time.Second}
	switch r.IntN(3) {
	case 0:
		sc.Keys = 1 + r.IntN(2)
	case 1:
		sc.Shards = 2 + r.IntN(6)
	default:
		sc.Keys, sc.Shards = 1, 2+r.IntN(4)
	}
	return sc
}

// Result is what a scenario found.
type Result struct {
	Scenario   Scenario
	Violations []string
	Faults     []string // the schedule, as applied
	Trace      string   // the latest events, when there are violations
}

// fault is one scheduled action.
type fault struct {
	at   time.Duration
	desc string
	do   func(w *World)
}

// schedule draws the scenario's faults: each starts at a random time in
// the fault window and most heal after a random duration, so that several
// overlap.
func (w *World) schedule() []fault {
	r, sc := w.rng, w.sc
	ttl := sc.TTL
	var out []fault
	add := func(at, dur time.Duration, desc string, start, heal func(w *World)) {
		out = append(out, fault{at: at, desc: desc, do: start})
		if heal != nil {
			out = append(out, fault{at: min(at+dur, sc.Faults), desc: "heal " + desc, do: heal})
		}
	}
	frac := func(lo, hi float64) time.Duration {
		return time.Duration((lo + r.Float64()*(hi-lo)) * float64(ttl))
	}
	onLink := func(id string, f func(*faults)) func(w *World) {
		return func(w *World) { w.node(id).link.set(f) }
	}
	// A node suspended while its wall clock is stepped back can hold a
	// lease past its deadline: the contract excludes it (doc.go, "What is
	// not guaranteed"). So a node gets suspends or backward wall steps in
	// one scenario, not both: the later one is drawn as a pause, or as a
	// forward step.
	suspended, steppedBack := map[string]bool{}, map[string]bool{}
	n := 4 + r.IntN(8)
	for range n {
		at := time.Duration(r.Int64N(int64(sc.Faults)))
		id := fmt.Sprintf("n%d", 1+r.IntN(sc.Nodes))
		dur := frac(0.2, 2.5)
		k := r.IntN(100)
		if f, ok := focusKinds[sc.Focus]; ok && r.IntN(2) == 0 {
			k = f
		}
		switch {
		case k < 14:
			d := frac(0.2, 1.5)
			add(at, dur, fmt.Sprintf("watcher lag %v on %s", d, id), onLink(id, func(f *faults) { f.lag = d }), onLink(id, func(f *faults) { f.lag = 0 }))
		case k < 28:
			d := time.Duration(30+r.IntN(200)) * time.Millisecond
			add(at, dur, fmt.Sprintf("slow watcher (%v per entry) on %s", d, id), onLink(id, func(f *faults) { f.slow = d }), onLink(id, func(f *faults) { f.slow = 0 }))
		case k < 34:
			add(at, dur, "watcher frozen on "+id, onLink(id, func(f *faults) { f.frozen = true }), onLink(id, func(f *faults) { f.frozen = false }))
		case k < 39:
			add(at, 0, "watcher restart on "+id, func(w *World) { w.node(id).link.restartWatchers() }, nil)
		case k < 46:
			add(at, frac(0.1, 1), "acks lost on "+id, onLink(id, func(f *faults) { f.dropAcks = true }), onLink(id, func(f *faults) { f.dropAcks = false }))
		case k < 51:
			add(at, frac(0.1, 1), "writes time out on "+id, onLink(id, func(f *faults) { f.timeouts = true }), onLink(id, func(f *faults) { f.timeouts = false }))
		case k < 63:
			add(at, dur, "partition of "+id, onLink(id, func(f *faults) { f.cut = true }), onLink(id, func(f *faults) { f.cut = false }))
		case k < 68:
			add(at, frac(0.3, 1.5), "store stall", func(w *World) { w.stall(true) }, func(w *World) { w.stall(false) })
		case k < 75:
			d := time.Duration(1+r.IntN(60)) * time.Millisecond
			add(at, dur, fmt.Sprintf("latency %v on %s", d, id), onLink(id, func(f *faults) { f.latency = d }), onLink(id, func(f *faults) { f.latency = 0 }))
		case k < 81:
			add(at, dur, "pause of "+id, func(w *World) { w.node(id).clock.hold(false) }, func(w *World) { w.node(id).clock.resume() })
		case k < 85 && steppedBack[id]:
			add(at, dur, "pause of "+id, func(w *World) { w.node(id).clock.hold(false) }, func(w *World) { w.node(id).clock.resume() })
		case k < 85:
			suspended[id] = true
			add(at, dur, "suspend of "+id, func(w *World) { w.node(id).clock.hold(true) }, func(w *World) { w.node(id).clock.resume() })
		case k < 91:
			add(at, dur, "crash of "+id, func(w *World) { w.crash(id) }, func(w *World) { w.startNode(id) })
		case k < 95:
			rate := 1 + (r.Float64()*2-1)*0.05
			add(at, dur, fmt.Sprintf("clock rate %.3f on %s", rate, id), func(w *World) { w.node(id).clock.setRate(rate) }, func(w *World) { w.node(id).clock.setRate(1) })
		case k < 98:
			d := time.Duration(r.IntN(20000)-10000) * time.Millisecond
			if d < 0 && suspended[id] {
				d = -d
			}
			steppedBack[id] = steppedBack[id] || d < 0
			add(at, 0, fmt.Sprintf("wall clock step %v on %s", d, id), func(w *World) { w.node(id).clock.step(d) }, nil)
		case k < 99:
			b := w.anyBucket()
			add(at, 0, "purge of bucket "+b, func(w *World) { w.store.Purge(b) }, nil)
		case k == 100:
			// The review's hole 1: an observer whose watcher falls behind
			// while events keep coming and whose kills are slow in flight,
			// and a holder cut off in short bursts.
			holder := fmt.Sprintf("n%d", 1+(r.IntN(sc.Nodes-1)+int(id[1]-'0'))%sc.Nodes)
			slow := time.Duration(80+r.IntN(120)) * time.Millisecond
			lat := time.Duration(10+r.IntN(50)) * time.Millisecond
			add(at, 3*ttl, fmt.Sprintf("lagging observer %s (%v per entry, latency %v)", id, slow, lat),
				onLink(id, func(f *faults) { f.slow, f.latency = slow, lat }), onLink(id, func(f *faults) { f.slow, f.latency = 0, 0 }))
			for i := range 3 {
				cut := at + time.Duration(i)*ttl + frac(0, 0.5)
				add(cut, frac(0.3, 0.6), "partition of "+holder, onLink(holder, func(f *faults) { f.cut = true }), onLink(holder, func(f *faults) { f.cut = false }))
			}
		default:
			b := w.anyBucket()
			add(at, 0, "delete of bucket "+b, func(w *World) { w.store.DeleteBucket(b) }, nil)
		}
	}
	// Candidates that resign and campaign again: a graceful handover of a
	// key. Drawn from their own stream, so that the faults above stay what
	// they were for every seed.
	rr := rand.New(rand.NewPCG(uint64(sc.Seed), 0x7e51))
	for range rr.IntN(4) * min(sc.Keys, 1) {
		at := time.Duration(rr.Int64N(int64(sc.Faults)))
		id, key := fmt.Sprintf("n%d", 1+rr.IntN(sc.Nodes)), fmt.Sprintf("k%d", rr.IntN(sc.Keys))
		away := time.Duration(rr.Float64() * float64(ttl))
		add(at, 0, fmt.Sprintf("candidate %s on %s resigns for %v", key, id, away), func(w *World) { w.node(id).stepOut(key, away) }, nil)
	}
	slices.SortStableFunc(out, func(a, b fault) int { return int(a.at - b.at) })
	return out
}

func (w *World) anyBucket() string {
	switch {
	case w.sc.Keys == 0:
		return bucketShards
	case w.sc.Shards == 0:
		return bucketKeys
	case w.rng.IntN(2) == 0:
		return bucketShards
	}
	return bucketKeys
}

func (w *World) node(id string) *node {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.nodes[id]
}

func (w *World) stall(on bool) {
	w.mu.Lock()
	w.stalled = on
	nodes := make([]*node, 0, len(w.nodes))
	for _, n := range w.nodes {
		nodes = append(nodes, n)
	}
	w.mu.Unlock()
	for _, n := range nodes {
		n.link.set(func(f *faults) { f.stalled = on })
	}
}

// healAll ends every fault: processes resume, links heal, dead nodes
// restart.
func (w *World) healAll() {
	w.stall(false)
	for i := range w.sc.Nodes {
		id := fmt.Sprintf("n%d", i+1)
		n := w.node(id)
		n.clock.setRate(1)
		n.clock.resume()
		if n.dead.Load() {
			w.startNode(id)
			continue
		}
		n.link.set(func(f *faults) {
			restart := f.restartCh
			*f = faults{restartCh: restart}
		})
	}
}

// Run runs the scenario to its end and returns what the checker found. It
// must be called inside a synctest bubble; every goroutine it starts has
// ended when it returns.
func Run(sc Scenario) Result {
	w := newWorld(sc)
	for i := range sc.Nodes {
		w.startNode(fmt.Sprintf("n%d", i+1))
	}
	sctx, stopSampling := context.WithCancel(context.Background())
	w.goRun(func() { w.sample(sctx, sc.TTL/50) })

	res := Result{Scenario: sc}
	began := time.Now()
	for _, f := range w.schedule() {
		time.Sleep(time.Until(began.Add(f.at)))
		w.logf("FAULT", "%s", f.desc)
		res.Faults = append(res.Faults, fmt.Sprintf("%8.3fs %s", f.at.Seconds(), f.desc))
		f.do(w)
	}
	time.Sleep(time.Until(began.Add(sc.Faults)))
	w.logf("FAULT", "heal everything")
	w.healAll()
	time.Sleep(sc.Settle)
	w.checkSettled()

	stopSampling()
	w.mu.Lock()
	for _, n := range w.nodes {
		n.cancel()
	}
	w.mu.Unlock()
	w.runs.Wait()

	w.mu.Lock()
	res.Violations = slices.Clone(w.violations)
	w.mu.Unlock()
	if len(res.Violations) > 0 {
		res.Trace = w.trace.String()
	}
	return res
}

// DrainGaps starts nodes running one group of shards, lets them settle,
// stops the first node gracefully, and returns, for every shard it owned,
// the time from its handler's return to the next handler's start on
// another node (S4: milliseconds, not a TTL), and how many handler starts
// the drain caused beyond one per drained shard (0: nothing moved twice,
// no other shard moved). It must be called inside a synctest bubble.
func DrainGaps(nodes, shards int, ttl time.Duration) (gaps []time.Duration, extraMoves int) {
	w := newWorld(Scenario{Nodes: nodes, Shards: shards, TTL: ttl})
	for i := range nodes {
		w.startNode(fmt.Sprintf("n%d", i+1))
	}
	time.Sleep(3 * ttl)
	drainAt := w.since()
	w.node("n1").cancel() // a graceful stop: Run drains
	time.Sleep(2 * ttl)
	w.mu.Lock()
	drained := 0
	for _, hs := range w.handlers {
		for _, h := range hs {
			switch {
			case h.n.id == "n1" && h.started < drainAt && h.returned:
				drained++
			case h.started >= drainAt:
				extraMoves++
			}
		}
	}
	extraMoves -= drained
	for _, hs := range w.handlers {
		for i, h := range hs {
			if h.n.id != "n1" || !h.returned {
				continue
			}
			for _, next := range hs[i+1:] {
				if next.n.id != "n1" && next.started >= h.returnedAt {
					gaps = append(gaps, next.started-h.returnedAt)
					break
				}
			}
		}
	}
	w.mu.Unlock()
	for _, n := range w.nodes {
		n.cancel()
	}
	w.runs.Wait()
	return gaps, extraMoves
}
