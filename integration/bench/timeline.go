package main

import (
	"cmp"
	"slices"
	"time"

	"github.com/nonchan7720/ronin/integration/ronintest"
)

// Analyses of a shard log's handler runs (ronintest.ShardLog.Runs) over a
// window.

// endOr is when c returned, or at if it had not returned by then.
func endOr(c *ronintest.Run, at time.Time) time.Time {
	if c.Returned && c.End.Before(at) {
		return c.End
	}
	return at
}

// overlapsSoFar counts the pairs of runs of one shard that ran at once (a
// start while another run of the shard had not returned) over every run
// in l so far, as cover counts them for the startup and roll tables.
func overlapsSoFar(l *ronintest.ShardLog, shards int) int {
	runs := l.Runs()
	if len(runs) == 0 {
		return 0
	}
	return len(cover(runs, shards, runs[0].Start, time.Now()).overlaps)
}

// allOnceSince returns the time since which every shard in 0..shards-1
// has had exactly one running handler, as of at; ok is false if that does
// not hold at at.
func allOnceSince(runs []ronintest.Run, shards int, at time.Time) (since time.Time, ok bool) {
	type event struct {
		t     time.Time
		shard int
		delta int
	}
	var evs []event
	for _, c := range runs {
		if c.Start.After(at) {
			continue
		}
		evs = append(evs, event{c.Start, c.Shard, +1})
		if c.Returned && !c.End.After(at) {
			evs = append(evs, event{c.End, c.Shard, -1})
		}
	}
	// Returns before starts at the same instant: a handover is not an
	// overlap.
	slices.SortStableFunc(evs, func(a, b event) int {
		if c := a.t.Compare(b.t); c != 0 {
			return c
		}
		return cmp.Compare(a.delta, b.delta)
	})
	count := make([]int, shards)
	ones := 0
	for _, e := range evs {
		if e.shard < 0 || e.shard >= shards {
			continue
		}
		if count[e.shard] == 1 {
			ones--
		}
		count[e.shard] += e.delta
		if count[e.shard] == 1 {
			ones++
		}
		switch {
		case ones == shards && since.IsZero():
			since = e.t
		case ones != shards:
			since = time.Time{}
		}
	}
	return since, ones == shards
}

// gap is an interval in which a shard had no running handler; prev
// returned at its start (nil if the shard had none before), next started
// at its end (nil if none did before the window closed).
type gap struct {
	shard      int
	from, to   time.Time
	prev, next *ronintest.Run
}

func (g gap) length() time.Duration { return g.to.Sub(g.from) }

// overlap is two handler runs of one shard running at once.
type overlap struct {
	shard    int
	a, b     ronintest.Run
	from, to time.Time
}

// coverage is what the handler runs show over a window.
type coverage struct {
	from, to time.Time
	shards   int
	owned    time.Duration // shard-time with at least one running handler
	gaps     []gap         // every interval without a running handler
	starts   []int         // handler starts in (from, to] per shard
	overlaps []overlap
}

// share is owned shard-time over all shard-time in the window.
func (c coverage) share() float64 {
	all := time.Duration(c.shards) * c.to.Sub(c.from)
	if all <= 0 {
		return 0
	}
	return float64(c.owned) / float64(all)
}

// maxGap is the longest gap (zero gap if none).
func (c coverage) maxGap() gap {
	var out gap
	for _, g := range c.gaps {
		if g.length() > out.length() {
			out = g
		}
	}
	return out
}

// cover computes coverage of shards 0..shards-1 over [from, to].
func cover(runs []ronintest.Run, shards int, from, to time.Time) coverage {
	cv := coverage{from: from, to: to, shards: shards, starts: make([]int, shards)}
	per := make([][]*ronintest.Run, shards)
	for i := range runs {
		c := &runs[i]
		if c.Shard < 0 || c.Shard >= shards || c.Start.After(to) || !endOr(c, to).After(from) {
			continue
		}
		per[c.Shard] = append(per[c.Shard], c)
		if c.Start.After(from) {
			cv.starts[c.Shard]++
		}
	}
	for id, cs := range per {
		slices.SortFunc(cs, func(a, b *ronintest.Run) int { return a.Start.Compare(b.Start) })
		for i, a := range cs {
			for _, b := range cs[i+1:] {
				if end := endOr(a, to); b.Start.Before(end) {
					cv.overlaps = append(cv.overlaps, overlap{shard: id, a: *a, b: *b, from: b.Start, to: minTime(end, endOr(b, to))})
				}
			}
		}
		// Merge the runs into covered intervals; the gaps are between.
		at, last := from, (*ronintest.Run)(nil) // covered up to at, by last
		for _, c := range cs {
			start := maxTime(c.Start, from)
			if start.After(at) {
				cv.gaps = append(cv.gaps, gap{shard: id, from: at, to: start, prev: last, next: c})
			}
			if end := endOr(c, to); end.After(at) {
				cv.owned += end.Sub(maxTime(start, at))
				at, last = end, c
			}
		}
		if to.After(at) {
			cv.gaps = append(cv.gaps, gap{shard: id, from: at, to: to, prev: last})
		}
	}
	return cv
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// churn classifies the handler runs of each shard that started after
// since: moved counts starts on another node than the shard's previous
// run, same starts on the same node (its lease ended and was taken again),
// and bounces runs shorter than limit between two runs on one other node
// (a → b → a: handed straight back).
func churn(runs []ronintest.Run, shards int, since time.Time, limit time.Duration) (moved, same, bounces int) {
	per := make([][]ronintest.Run, shards)
	for _, c := range runs {
		if c.Shard >= 0 && c.Shard < shards {
			per[c.Shard] = append(per[c.Shard], c)
		}
	}
	for _, cs := range per {
		slices.SortFunc(cs, func(a, b ronintest.Run) int { return a.Start.Compare(b.Start) })
		for i := 1; i < len(cs); i++ {
			if !cs[i].Start.After(since) {
				continue
			}
			if cs[i].Node == cs[i-1].Node {
				same++
			} else {
				moved++
			}
			if b := cs[i-1]; i >= 2 && cs[i].Node == cs[i-2].Node && b.Node != cs[i].Node && b.Returned && b.End.Sub(b.Start) < limit {
				bounces++
			}
		}
	}
	return moved, same, bounces
}
