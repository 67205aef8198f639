package main

import (
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/check"
	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// sampleRun is a small hand-made run: n1 holds shard.0 until a kill9 of
// n1, n2 takes over; n2 holds key-0 throughout, and one overlap is planted
// on shard.1 so that a violation is drawn.
func sampleRun() (*runRecord, []event.Event) {
	const s = int64(time.Second)
	var evs []event.Event
	tick := func(key, node string, tok uint64, from, to int64) {
		for t := from; t <= to; t += s / 100 {
			evs = append(evs, event.Event{T: t, Node: node, Kind: event.Tick, Key: key, Rev: tok})
		}
	}
	tick("shard.0", "n1", 5, 0, 10*s)
	tick("shard.0", "n2", 9, 12*s, 30*s)
	tick("shard.1", "n2", 6, 0, 20*s)
	tick("shard.1", "n3", 11, 19*s, 30*s)
	for t := int64(0); t <= 30*s; t += s / 100 {
		evs = append(evs, event.Event{T: t, Node: "n2", Kind: event.Lead, Key: "key-0", Rev: 3})
	}
	evs = append(evs, event.Event{T: 1, Node: "n1", Kind: event.Diag, Detail: "a <diag> & more"})
	rec := &runRecord{
		Seed: 7, Duration: "30s", Nodes: []string{"n1", "n2", "n3"}, TTL: "2s", Shards: 2, Keys: 1,
		Replay: "go run ./integration/chaos -seed 7",
		Timeline: check.Timeline{
			Start: 0, End: 30 * s, TTL: 2 * time.Second, Allowance: 10 * time.Second, DownGap: 50 * time.Millisecond,
			Keys: []string{"shard.0", "shard.1", "key-0"},
			Faults: []check.Fault{{Name: "kill9#1", Kind: kindKill9, Targets: []string{"n1"}, Start: 10*s + 1,
				Healed: 14 * s, Recovered: 15 * s, End: 25 * s, Detail: "down 4s <&>"}},
			Excused: []check.Interval{{Start: 26 * s, End: 27 * s}},
		},
	}
	return rec, evs
}

func TestTimelineSVGIsWellFormed(t *testing.T) {
	rec, evs := sampleRun()
	res := check.Check(evs, rec.Timeline)
	if len(res.Violations) != 1 {
		t.Fatalf("want the planted overlap, got %+v", res.Violations)
	}
	svg := timelineSVG(rec, res, evs)
	d := xml.NewDecoder(strings.NewReader(svg))
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("timeline.svg is not well-formed XML: %v", err)
		}
	}
	for _, want := range []string{"shard.0", "key-0", "kill9 n1", `fill="red"`, "violations 1"} {
		if !strings.Contains(svg, want) {
			t.Errorf("svg lacks %q", want)
		}
	}
}

func TestReportNamesTheEssentials(t *testing.T) {
	rec, evs := sampleRun()
	res := check.Check(evs, rec.Timeline)
	md := report(rec, res, eventStats{Events: len(evs), Files: 3}, diagnostics(evs))
	for _, want := range []string{
		"| seed | 7 |", "## Violations: 1", "overlap", "| kill9 | 1 |", "go run ./integration/chaos -seed 7",
		"What this suite cannot reproduce", "Power loss", "a <diag> & more",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestCell(t *testing.T) {
	if got := cell("a | b\nc"); got != `a \| b c` {
		t.Fatalf("%q", got)
	}
}
