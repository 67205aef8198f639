package main

import (
	"cmp"
	"fmt"
	"html"
	"slices"
	"strings"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/check"
	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// Layout of timeline.svg.
const (
	svgWidth  = 1800 // at least; wider with many faults
	svgFaultW = 60   // plot width per fault, so that labels do not collide
	svgLeft   = 90
	svgRight  = 20
	svgRowH   = 18
	svgLanes  = 4 // label lanes for fault names
	svgLaneH  = 14
	svgHeader = 56
)

// nodeColors colour the owners; faults are shaded in neutral tones so that
// they never look like a node.
var nodeColors = []string{"#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"}

// segment is a stretch of consecutive samples of one key by one node with
// one token, without a gap longer than the down gap.
type segment struct {
	node        string
	token       uint64
	first, last int64
	newTerm     bool
}

// timelineSVG draws one row per shard and key, coloured by the node whose
// ticks cover it, with the fault windows shaded and labelled and the
// violations marked.
func timelineSVG(rec *runRecord, res check.Result, events []event.Event) string {
	tl := rec.Timeline
	segs, lo, hi := segments(events, tl.DownGap.Nanoseconds())
	lo, hi = min(lo, tl.Start), max(hi, tl.End)
	if hi <= lo {
		hi = lo + 1
	}
	width := max(svgWidth, svgLeft+svgRight+svgFaultW*len(tl.Faults))
	plotW := float64(width - svgLeft - svgRight)
	x := func(t int64) float64 { return svgLeft + plotW*float64(t-lo)/float64(hi-lo) }
	keys := tl.Keys
	top := svgHeader + svgLanes*svgLaneH + 6 // the faults strip
	rowsTop := top + svgRowH + 6
	rowY := func(i int) int {
		y := rowsTop + i*svgRowH
		if i >= rec.Shards { // a gap between shards and plain keys
			y += 8
		}
		return y
	}
	rowsEnd := rowY(len(keys)-1) + svgRowH
	height := rowsEnd + 50

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w(`<?xml version="1.0" encoding="UTF-8"?>`)
	w(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`, width, height, width, height)
	w(`<defs><pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><line x1="0" y1="0" x2="0" y2="6" stroke="#888" stroke-width="2"/></pattern></defs>`)
	w(`<rect width="100%%" height="100%%" fill="white"/>`)
	w(`<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`, svgLeft, esc(fmt.Sprintf(
		"Ronin chaos: seed %d, %d nodes, TTL %s, %d faults, violations %d", rec.Seed, len(rec.Nodes), rec.TTL, len(tl.Faults), len(res.Violations))))

	// Legend: nodes, then the fault shading.
	lx := svgLeft
	for i, n := range rec.Nodes {
		w(`<rect x="%d" y="32" width="14" height="10" fill="%s"/><text x="%d" y="41">%s</text>`, lx, nodeColors[i%len(nodeColors)], lx+18, esc(n))
		lx += 60
	}
	w(`<rect x="%d" y="32" width="14" height="10" fill="#e0a800"/><text x="%d" y="41">fault active</text>`, lx, lx+18)
	lx += 100
	w(`<rect x="%d" y="32" width="14" height="10" fill="#f5dc8a"/><text x="%d" y="41">healed, recovering</text>`, lx, lx+18)
	lx += 140
	w(`<rect x="%d" y="32" width="14" height="10" fill="url(#hatch)"/><text x="%d" y="41">no quorum (excused)</text>`, lx, lx+18)
	lx += 150
	w(`<line x1="%d" y1="31" x2="%d" y2="43" stroke="white" stroke-width="2"/><rect x="%d" y="32" width="2" height="10" fill="black"/><text x="%d" y="41">new term (token)</text>`, lx, lx, lx, lx+8)
	lx += 130
	w(`<circle cx="%d" cy="37" r="5" fill="red"/><text x="%d" y="41">violation</text>`, lx+5, lx+14)

	// The faults strip above the rows, the same bands faintly behind
	// the rows (visible in their gaps), and the labels.
	w(`<text x="%d" y="%d" text-anchor="end" font-weight="bold">faults</text>`, svgLeft-6, top+svgRowH-5)
	for i, f := range tl.Faults {
		healed, recovered := f.Healed, f.Recovered
		if healed == 0 {
			healed = f.End
		}
		if recovered == 0 {
			recovered = f.End
		}
		tip := esc(fmt.Sprintf("%s on %s: %s", f.Name, strings.Join(f.Targets, ","), f.Detail))
		w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e0a800"><title>%s</title></rect>`, x(f.Start), top+2, max(1, x(healed)-x(f.Start)), svgRowH-4, tip)
		w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#e0a800" fill-opacity="0.35"/>`, x(f.Start), rowsTop, max(1, x(healed)-x(f.Start)), rowsEnd-rowsTop)
		if recovered > healed {
			w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#f5dc8a"><title>%s (recovering)</title></rect>`, x(healed), top+2, x(recovered)-x(healed), svgRowH-4, tip)
			w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="#f5dc8a" fill-opacity="0.35"/>`, x(healed), rowsTop, x(recovered)-x(healed), rowsEnd-rowsTop)
		}
		ly := svgHeader + (i%svgLanes)*svgLaneH + 10
		w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#b8860b" stroke-width="1"/>`, x(f.Start), ly+2, x(f.Start), top)
		lx, anchor := x(f.Start)+2, "start"
		if lx > float64(width-160) { // near the right edge: label to the left
			lx, anchor = x(f.Start)-2, "end"
		}
		w(`<text x="%.1f" y="%d" fill="#7a5a00" text-anchor="%s">%s<title>%s</title></text>`, lx, ly, anchor, esc(f.Kind+" "+strings.Join(f.Targets, ",")), tip)
	}

	// Rows.
	color := map[string]string{}
	for i, n := range rec.Nodes {
		color[n] = nodeColors[i%len(nodeColors)]
	}
	for i, k := range keys {
		y := rowY(i)
		w(`<text x="%d" y="%d" text-anchor="end">%s</text>`, svgLeft-6, y+svgRowH-5, esc(k))
		w(`<rect x="%d" y="%d" width="%.0f" height="%d" fill="none" stroke="#ddd"/>`, svgLeft, y+1, plotW, svgRowH-2)
		for _, s := range segs[k] {
			c := color[s.node]
			if c == "" {
				c = "#000"
			}
			w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"><title>%s</title></rect>`,
				x(s.first), y+2, max(0.5, x(s.last)-x(s.first)), svgRowH-4, c,
				esc(fmt.Sprintf("%s %s token %d, %s..%s", k, s.node, s.token, rel(s.first, tl.Start), rel(s.last, tl.Start))))
			if s.newTerm {
				w(`<rect x="%.1f" y="%d" width="1.5" height="%d" fill="black"/>`, x(s.first), y+2, svgRowH-4)
			}
		}
	}
	// On top of the rows: fault starts (solid) and heals (dashed), and
	// the windows without a quorum, letting hovers through.
	for _, f := range tl.Faults {
		w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#b8860b" stroke-width="1" pointer-events="none"/>`, x(f.Start), top, x(f.Start), rowsEnd)
		if f.Healed != 0 {
			w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#b8860b" stroke-width="1" stroke-dasharray="3,3" pointer-events="none"/>`, x(f.Healed), top, x(f.Healed), rowsEnd)
		}
	}
	for _, e := range tl.Excused {
		w(`<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="url(#hatch)" fill-opacity="0.5" pointer-events="none"/>`, x(e.Start), rowsTop, max(1, x(e.End)-x(e.Start)), rowsEnd-rowsTop)
	}

	for _, v := range res.Violations {
		if i := slices.Index(keys, v.Key); i >= 0 {
			w(`<circle cx="%.1f" cy="%d" r="5" fill="red" stroke="white"><title>%s</title></circle>`, x(v.At), rowY(i)+svgRowH/2, esc(v.Kind+": "+v.Detail))
		}
	}

	// Time axis, in seconds since every key was first held.
	step := axisStep(time.Duration(hi - lo))
	w(`<line x1="%d" y1="%d" x2="%.0f" y2="%d" stroke="black"/>`, svgLeft, rowsEnd+4, svgLeft+plotW, rowsEnd+4)
	first := tl.Start - (tl.Start-lo)/step.Nanoseconds()*step.Nanoseconds()
	for t := first; t <= hi; t += step.Nanoseconds() {
		w(`<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="black"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`,
			x(t), rowsEnd+4, x(t), rowsEnd+9, x(t), rowsEnd+22, esc(fmt.Sprintf("%.0fs", float64(t-tl.Start)/1e9)))
	}
	w(`<text x="%d" y="%d" fill="#555">time since every shard and key was first held; hover a bar for owner and token</text>`, svgLeft, rowsEnd+40)
	w(`</svg>`)
	return b.String()
}

// segments splits each key's samples into stretches by (node, token) and
// gaps, and returns the overall time range of the samples.
func segments(events []event.Event, gap int64) (map[string][]segment, int64, int64) {
	by := map[string][]event.Event{}
	var lo, hi int64
	for _, e := range events {
		if e.Kind != event.Tick && e.Kind != event.Lead {
			continue
		}
		by[e.Key] = append(by[e.Key], e)
		if lo == 0 || e.T < lo {
			lo = e.T
		}
		hi = max(hi, e.T)
	}
	out := map[string][]segment{}
	for k, es := range by {
		slices.SortFunc(es, func(a, b event.Event) int { return cmp.Compare(a.T, b.T) })
		var segs []segment
		for _, e := range es {
			if n := len(segs); n > 0 {
				s := &segs[n-1]
				if s.node == e.Node && s.token == e.Rev && e.T-s.last <= gap {
					s.last = e.T
					continue
				}
			}
			newTerm := len(segs) == 0 || segs[len(segs)-1].token != e.Rev
			segs = append(segs, segment{node: e.Node, token: e.Rev, first: e.T, last: e.T, newTerm: newTerm})
		}
		out[k] = segs
	}
	return out, lo, hi
}

// axisStep picks a tick spacing giving at most about 20 ticks.
func axisStep(span time.Duration) time.Duration {
	for _, s := range []time.Duration{time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second,
		30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute} {
		if span/s <= 20 {
			return s
		}
	}
	return 30 * time.Minute
}

func esc(s string) string { return html.EscapeString(s) }
