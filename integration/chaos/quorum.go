package main

import (
	"cmp"
	"slices"

	"github.com/nonchan7720/ronin/integration/chaos/check"
	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// effectiveTimeline is rec's timeline with every window without a quorum
// of live nodes added to the excused ones. A node is up from its ready
// event to its next exit, except while it is stopped (SIGSTOP); the
// windows come from the histories and the exits, so a crash that the
// schedule did not plan is accounted for too.
func effectiveTimeline(rec *runRecord, events []event.Event) check.Timeline {
	tl := rec.Timeline
	tl.Excused = append(slices.Clone(tl.Excused), check.QuorumLost(upIntervals(rec, events), len(rec.Nodes)/2+1, tl.Start, tl.End)...)
	slices.SortFunc(tl.Excused, func(a, b check.Interval) int { return cmp.Compare(a.Start, b.Start) })
	return tl
}

func upIntervals(rec *runRecord, events []event.Event) map[string][]check.Interval {
	forever := rec.Timeline.End + 1
	exits := map[string][]int64{}
	for _, e := range rec.Exits {
		exits[e.Node] = append(exits[e.Node], e.At)
	}
	up := map[string][]check.Interval{}
	for _, e := range events {
		if e.Kind != event.Ready {
			continue
		}
		end := forever
		for _, x := range exits[e.Node] {
			if x > e.T && x < end {
				end = x
			}
		}
		up[e.Node] = append(up[e.Node], check.Interval{Start: e.T, End: end})
	}
	for _, f := range rec.Timeline.Faults {
		if f.Kind != kindStop {
			continue
		}
		until := f.Healed
		if until == 0 {
			until = f.End
		}
		for _, n := range f.Targets {
			up[n] = check.Subtract(up[n], []check.Interval{{Start: f.Start, End: until}})
		}
	}
	return up
}
