package check

import (
	"cmp"
	"slices"
)

// QuorumLost returns the parts of [start, end] in which fewer than need
// nodes were up, given each node's up intervals.
func QuorumLost(up map[string][]Interval, need int, start, end int64) []Interval {
	type edge struct {
		t     int64
		delta int
	}
	var edges []edge
	for _, ivs := range up {
		for _, iv := range ivs {
			if iv.End > iv.Start {
				edges = append(edges, edge{iv.Start, +1}, edge{iv.End, -1})
			}
		}
	}
	// At equal times, ends before starts: a restart does not bridge a gap.
	slices.SortFunc(edges, func(a, b edge) int { return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.delta, b.delta)) })
	var out []Interval
	n := 0
	lostSince := start
	lost := true // before the first edge nobody is up
	for _, e := range edges {
		n += e.delta
		switch {
		case lost && n >= need:
			if e.t > lostSince {
				out = append(out, Interval{lostSince, e.t})
			}
			lost = false
		case !lost && n < need:
			lostSince, lost = e.t, true
		}
	}
	if lost && end > lostSince {
		out = append(out, Interval{lostSince, end})
	}
	// Clip to [start, end].
	var clipped []Interval
	for _, iv := range out {
		s, e := max(iv.Start, start), min(iv.End, end)
		if e > s {
			clipped = append(clipped, Interval{s, e})
		}
	}
	return clipped
}

// Subtract removes the parts of ivs covered by cut.
func Subtract(ivs []Interval, cut []Interval) []Interval {
	out := slices.Clone(ivs)
	for _, c := range cut {
		var next []Interval
		for _, iv := range out {
			if c.End <= iv.Start || c.Start >= iv.End {
				next = append(next, iv)
				continue
			}
			if c.Start > iv.Start {
				next = append(next, Interval{iv.Start, c.Start})
			}
			if c.End < iv.End {
				next = append(next, Interval{c.End, iv.End})
			}
		}
		out = next
	}
	return out
}
