// Package check judges the histories of a chaos run against Ronin's
// contract and measures availability, failover times and shard moves. It
// is pure: it takes events and the orchestrator's fault timeline and
// returns a Result, with no I/O.
//
// A term is the set of ticks (shards) or leads (plain keys) that one node
// recorded with one token for one key; it spans [first, last]. The node
// records an instant only after checking that it was entitled at that
// instant (see package event), so the checks are:
//
//   - overlap: two terms of one key overlap in time (two holders at once,
//     contract E1);
//   - token: a term whose token is not above every earlier term's token of
//     the key, including the reuse of a token after a full restart (E2);
//   - orphan: a key without ticks from anyone for longer than TTL plus the
//     allowance while a quorum of nodes is up (S3, E4); the orchestrator
//     passes the windows without a quorum as excused.
package check

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// Interval is a span of CLOCK_MONOTONIC nanoseconds, [Start, End].
type Interval struct {
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// Fault is one injected fault as the orchestrator recorded it.
type Fault struct {
	// Name is unique in the run, e.g. "kill9#3".
	Name string `json:"name"`
	// Kind is the fault type, e.g. "kill9".
	Kind string `json:"kind"`
	// Targets are the nodes hit: killed, stopped, cut off (for a split,
	// the minority).
	Targets []string `json:"targets"`
	// Start is when the fault was injected.
	Start int64 `json:"start"`
	// Healed is when it was undone (restart, SIGCONT, routes removed);
	// 0 if never.
	Healed int64 `json:"healed,omitempty"`
	// Recovered is when every node was ready again and every key held;
	// 0 if that never happened in time.
	Recovered int64 `json:"recovered,omitempty"`
	// End closes the window attributed to this fault (after the quiet
	// period that follows recovery).
	End int64 `json:"end"`
	// Detail describes parameters (pause length, partition sides).
	Detail string `json:"detail,omitempty"`
}

// Timeline is the orchestrator's account of a run.
type Timeline struct {
	// Start and End bound the checked window: from the moment every key
	// was first held to the moment the nodes were told to stop.
	Start int64 `json:"start"`
	End   int64 `json:"end"`
	// TTL of the leases.
	TTL time.Duration `json:"ttl"`
	// Allowance is how much longer than TTL a key may go without a holder
	// while a quorum is up before it counts as an orphan.
	Allowance time.Duration `json:"allowance"`
	// DownGap: a gap between ticks longer than this counts as down time.
	DownGap time.Duration `json:"down_gap"`
	// Keys are all keys that must be held: "shard.N" and plain keys.
	Keys []string `json:"keys"`
	// Faults in order of injection.
	Faults []Fault `json:"faults"`
	// Excused are windows without a quorum of live nodes.
	Excused []Interval `json:"excused"`
}

// Violation kinds.
const (
	Overlap = "overlap"
	Rev     = "token"
	Orphan  = "orphan"
)

// Violation is one breach of the contract.
type Violation struct {
	Kind   string `json:"kind"`
	Key    string `json:"key"`
	At     int64  `json:"at"`
	Detail string `json:"detail"`
}

// Term is one node's tenure of one key with one token.
type Term struct {
	Key   string `json:"key"`
	Node  string `json:"node"`
	Rev   uint64 `json:"token"`
	First int64  `json:"first"`
	Last  int64  `json:"last"`
	Ticks int    `json:"ticks"`
}

// IsShard reports whether key is a shard key.
func IsShard(key string) bool { return strings.HasPrefix(key, "shard.") }

// Result is the checker's verdict and measurements.
type Result struct {
	Violations []Violation
	// Terms per key, ordered by First.
	Terms map[string][]Term
	// Down are the gaps of each key longer than DownGap inside the
	// checked window.
	Down map[string][]Interval
	// Availability of shards and of plain keys over the checked window.
	Availability Avail
	// PerKey availability over the checked window.
	PerKey map[string]float64
	// Faults: one entry per fault, in order.
	Faults []FaultStats
	// Kinds aggregates Faults per fault kind, ordered by kind.
	Kinds []KindStats
	// Moves is the number of times a key went to another node inside the
	// checked window; QuietMoves of those happened outside fault windows.
	Moves, ShardMoves, QuietMoves int
	// Longest is the longest stretch outside quorum loss in which a key
	// (LongestKey) had no holder: the margin the orphan limit has left.
	Longest    Interval
	LongestKey string
}

// Avail is the share of time covered, for shards and for plain keys.
type Avail struct {
	Shards float64 `json:"shards"`
	Keys   float64 `json:"keys"`
}

// Failover is how one key came back after a fault.
type Failover struct {
	Key      string
	From, To string
	// Failover is from the injection to the first tick of a new term.
	Failover time.Duration
	// Gap is from the old term's last tick to the new term's first tick.
	Gap time.Duration
}

// FaultStats are the measurements of one fault window.
type FaultStats struct {
	Fault        Fault
	Availability Avail
	Failovers    []Failover
	// Unrecovered lists affected keys without a new term before End.
	Unrecovered []string
	// Moves counts keys going to another node inside the window;
	// ShardMoves those of shards. IdealShardMoves is the least a shard
	// manager can do: each shard that failed over to another node moves
	// away and back once.
	Moves, ShardMoves, IdealShardMoves int
}

// Percentiles summarise durations (nearest rank).
type Percentiles struct {
	N             int
	P50, P99, Max time.Duration
}

// KindStats aggregates the fault windows of one kind.
type KindStats struct {
	Kind         string
	Count        int
	Availability Avail
	// Failover and Gap of affected shards and of affected plain keys.
	ShardFailover, KeyFailover, ShardGap, KeyGap Percentiles
	Unrecovered                                  int
	Moves, ShardMoves, IdealShardMoves           int
}

// sample is one recorded instant of one key.
type sample struct {
	t     int64
	node  string
	token uint64
}

// Check judges events against tl.
func Check(events []event.Event, tl Timeline) Result {
	samples := map[string][]sample{}
	for _, e := range events {
		if e.Kind == event.Tick || e.Kind == event.Lead {
			samples[e.Key] = append(samples[e.Key], sample{t: e.T, node: e.Node, token: e.Rev})
		}
	}
	for _, s := range samples {
		slices.SortFunc(s, func(a, b sample) int { return cmp.Compare(a.t, b.t) })
	}
	keys := slices.Clone(tl.Keys)
	for k := range samples {
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)

	r := Result{Terms: map[string][]Term{}, Down: map[string][]Interval{}, PerKey: map[string]float64{}}
	for _, k := range keys {
		r.Terms[k] = terms(k, samples[k])
		r.Violations = append(r.Violations, termViolations(r.Terms[k], tl.Start)...)
		r.Down[k] = downtime(samples[k], tl.Start, tl.End, tl.DownGap.Nanoseconds())
		vs, longest := orphans(k, r.Down[k], tl)
		r.Violations = append(r.Violations, vs...)
		if longest.End-longest.Start > r.Longest.End-r.Longest.Start {
			r.Longest, r.LongestKey = longest, k
		}
		r.PerKey[k] = availability(r.Down[k], tl.Start, tl.End)
	}
	slices.SortStableFunc(r.Violations, func(a, b Violation) int { return cmp.Compare(a.At, b.At) })
	r.Availability = r.avail(keys, tl.Start, tl.End)
	r.moves(keys, tl)
	for _, f := range tl.Faults {
		r.Faults = append(r.Faults, r.faultStats(keys, samples, f))
	}
	r.Kinds = kindStats(r.Faults)
	return r
}

// terms groups samples by (node, token), ordered by first instant.
func terms(key string, samples []sample) []Term {
	type id struct {
		node  string
		token uint64
	}
	idx := map[id]int{}
	var out []Term
	for _, s := range samples {
		k := id{s.node, s.token}
		i, ok := idx[k]
		if !ok {
			idx[k] = len(out)
			out = append(out, Term{Key: key, Node: s.node, Rev: s.token, First: s.t, Last: s.t})
			i = len(out) - 1
		}
		out[i].Last = max(out[i].Last, s.t)
		out[i].Ticks++
	}
	slices.SortStableFunc(out, func(a, b Term) int {
		return cmp.Or(cmp.Compare(a.First, b.First), cmp.Compare(a.Rev, b.Rev))
	})
	return out
}

// termViolations checks terms (ordered by First) of one key: no overlap
// with any earlier term, and a token above every earlier term's. Times in
// messages are seconds since origin.
func termViolations(ts []Term, origin int64) []Violation {
	var out []Violation
	var reach, top Term // the earlier term reaching furthest, the one with the largest token
	for i, t := range ts {
		if i > 0 {
			out = append(out, against(t, reach, top, origin)...)
		}
		if i == 0 || t.Last > reach.Last {
			reach = t
		}
		if i == 0 || t.Rev > top.Rev {
			top = t
		}
	}
	return out
}

// against checks t against the earlier terms summarised by reach and top.
func against(t, reach, top Term, origin int64) []Violation {
	var out []Violation
	if reach.Last >= t.First {
		out = append(out, Violation{Kind: Overlap, Key: t.Key, At: t.First, Detail: fmt.Sprintf(
			"%s token %d [%s] overlaps %s token %d [%s] by %s",
			t.Node, t.Rev, span(t, origin), reach.Node, reach.Rev, span(reach, origin), ms(reach.Last-t.First))})
	}
	if t.Rev <= top.Rev {
		what := "not above"
		if t.Rev == top.Rev {
			what = "reuses"
		}
		out = append(out, Violation{Kind: Rev, Key: t.Key, At: t.First, Detail: fmt.Sprintf(
			"%s token %d (from %s) %s earlier term's token %d (%s, %s)",
			t.Node, t.Rev, at(t.First, origin), what, top.Rev, top.Node, span(top, origin))})
	}
	return out
}

// downtime lists the gaps longer than gap between consecutive samples,
// and at the window's edges, clipped to [start, end].
func downtime(samples []sample, start, end, gap int64) []Interval {
	if end <= start {
		return nil
	}
	var out []Interval
	prev := start
	for _, s := range samples {
		if s.t < start {
			continue
		}
		if s.t > end {
			break
		}
		if s.t-prev > gap {
			out = append(out, Interval{prev, s.t})
		}
		prev = s.t
	}
	if end-prev > gap {
		out = append(out, Interval{prev, end})
	}
	return out
}

// orphans reports down intervals whose longest stretch outside the
// excused windows exceeds TTL plus the allowance, and the longest such
// stretch of the key.
func orphans(key string, down []Interval, tl Timeline) ([]Violation, Interval) {
	limit := (tl.TTL + tl.Allowance).Nanoseconds()
	var out []Violation
	var top Interval
	for _, d := range down {
		longest := unexcused(d, tl.Excused)
		if longest.End-longest.Start > top.End-top.Start {
			top = longest
		}
		if longest.End-longest.Start > limit {
			out = append(out, Violation{Kind: Orphan, Key: key, At: longest.Start, Detail: fmt.Sprintf(
				"no holder for %s (from %s to %s, outside quorum loss), limit TTL %s + allowance %s",
				ms(longest.End-longest.Start), at(longest.Start, tl.Start), at(longest.End, tl.Start), tl.TTL, tl.Allowance)})
		}
	}
	return out, top
}

// unexcused is the longest part of d outside every excused interval.
func unexcused(d Interval, excused []Interval) Interval {
	ex := slices.Clone(excused)
	slices.SortFunc(ex, func(a, b Interval) int { return cmp.Compare(a.Start, b.Start) })
	var best Interval
	cur := d.Start
	for _, e := range ex {
		if e.End <= cur || e.Start >= d.End {
			continue
		}
		if e.Start > cur && e.Start-cur > best.End-best.Start {
			best = Interval{cur, e.Start}
		}
		cur = max(cur, e.End)
	}
	if d.End > cur && d.End-cur > best.End-best.Start {
		best = Interval{cur, d.End}
	}
	return best
}

// availability is the share of [start, end] not covered by down.
func availability(down []Interval, start, end int64) float64 {
	if end <= start {
		return 0
	}
	var lost int64
	for _, d := range down {
		lost += max(0, min(d.End, end)-max(d.Start, start))
	}
	return 1 - float64(lost)/float64(end-start)
}

// avail averages availability over shards and plain keys in [start, end].
func (r *Result) avail(keys []string, start, end int64) Avail {
	var sh, ke []float64
	for _, k := range keys {
		a := availability(r.Down[k], start, end)
		if IsShard(k) {
			sh = append(sh, a)
		} else {
			ke = append(ke, a)
		}
	}
	return Avail{Shards: mean(sh), Keys: mean(ke)}
}

// moves counts the changes of node between consecutive terms inside the
// checked window.
func (r *Result) moves(keys []string, tl Timeline) {
	for _, k := range keys {
		ts := r.Terms[k]
		for i := 1; i < len(ts); i++ {
			if ts[i].Node == ts[i-1].Node || ts[i].First < tl.Start || ts[i].First > tl.End {
				continue
			}
			r.Moves++
			if IsShard(k) {
				r.ShardMoves++
			}
			if !slices.ContainsFunc(tl.Faults, func(f Fault) bool { return f.Start <= ts[i].First && ts[i].First < f.End }) {
				r.QuietMoves++
			}
		}
	}
}

// faultStats measures one fault window. A key is affected if its last
// sample before the injection came from a target (every key, for a fault
// whose targets are all nodes); its failover ends at the first sample of
// another term.
func (r *Result) faultStats(keys []string, samples map[string][]sample, f Fault) FaultStats {
	fs := FaultStats{Fault: f, Availability: r.avail(keys, f.Start, f.End)}
	for _, k := range keys {
		s := samples[k]
		i, _ := slices.BinarySearchFunc(s, f.Start, func(x sample, t int64) int { return cmp.Compare(x.t, t) })
		if i == 0 || !slices.Contains(f.Targets, s[i-1].node) {
			continue
		}
		old := s[i-1]
		lastOld := old.t
		found := false
		for _, x := range s[i:] {
			if x.t >= f.End {
				break
			}
			if x.node == old.node && x.token == old.token {
				lastOld = x.t
				continue
			}
			fs.Failovers = append(fs.Failovers, Failover{Key: k, From: old.node, To: x.node,
				Failover: time.Duration(x.t - f.Start), Gap: time.Duration(max(0, x.t-lastOld))})
			if IsShard(k) && x.node != old.node {
				fs.IdealShardMoves += 2
			}
			found = true
			break
		}
		if !found {
			fs.Unrecovered = append(fs.Unrecovered, k)
		}
	}
	for _, k := range keys {
		ts := r.Terms[k]
		for i := 1; i < len(ts); i++ {
			if ts[i].Node != ts[i-1].Node && f.Start <= ts[i].First && ts[i].First < f.End {
				fs.Moves++
				if IsShard(k) {
					fs.ShardMoves++
				}
			}
		}
	}
	return fs
}

func kindStats(faults []FaultStats) []KindStats {
	by := map[string]*KindStats{}
	type acc struct {
		sf, kf, sg, kg []time.Duration
		span           int64
		sh, ke         float64
	}
	accs := map[string]*acc{}
	for _, f := range faults {
		ks, ok := by[f.Fault.Kind]
		if !ok {
			ks = &KindStats{Kind: f.Fault.Kind}
			by[f.Fault.Kind] = ks
			accs[f.Fault.Kind] = &acc{}
		}
		a := accs[f.Fault.Kind]
		ks.Count++
		ks.Unrecovered += len(f.Unrecovered)
		ks.Moves += f.Moves
		ks.ShardMoves += f.ShardMoves
		ks.IdealShardMoves += f.IdealShardMoves
		w := f.Fault.End - f.Fault.Start
		a.span += w
		a.sh += f.Availability.Shards * float64(w)
		a.ke += f.Availability.Keys * float64(w)
		for _, fo := range f.Failovers {
			if IsShard(fo.Key) {
				a.sf, a.sg = append(a.sf, fo.Failover), append(a.sg, fo.Gap)
			} else {
				a.kf, a.kg = append(a.kf, fo.Failover), append(a.kg, fo.Gap)
			}
		}
	}
	var out []KindStats
	for k, ks := range by {
		a := accs[k]
		if a.span > 0 {
			ks.Availability = Avail{Shards: a.sh / float64(a.span), Keys: a.ke / float64(a.span)}
		}
		ks.ShardFailover, ks.KeyFailover = Percentile(a.sf), Percentile(a.kf)
		ks.ShardGap, ks.KeyGap = Percentile(a.sg), Percentile(a.kg)
		out = append(out, *ks)
	}
	slices.SortFunc(out, func(a, b KindStats) int { return cmp.Compare(a.Kind, b.Kind) })
	return out
}

// Percentile summarises ds by nearest rank.
func Percentile(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(s))+0.999999) - 1
		return s[min(max(i, 0), len(s)-1)]
	}
	return Percentiles{N: len(s), P50: rank(0.50), P99: rank(0.99), Max: s[len(s)-1]}
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

func ms(ns int64) string { return time.Duration(ns).Round(10 * time.Microsecond).String() }

// at formats ns as seconds since origin.
func at(ns, origin int64) string { return fmt.Sprintf("t=%.3fs", float64(ns-origin)/1e9) }

func span(t Term, origin int64) string {
	return fmt.Sprintf("%s..%s", at(t.First, origin), at(t.Last, origin))
}
