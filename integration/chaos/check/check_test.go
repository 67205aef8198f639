package check

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/event"
)

const ms1 = int64(time.Millisecond)

// run makes ticks of key by node with token every 10 ms over [from, to] ms.
func run(key, node string, token uint64, from, to int64) []event.Event {
	var out []event.Event
	for t := from; t <= to; t += 10 {
		out = append(out, event.Event{T: t * ms1, Node: node, Kind: event.Tick, Key: key, Rev: token})
	}
	return out
}

func hist(runs ...[]event.Event) []event.Event {
	var out []event.Event
	for _, r := range runs {
		out = append(out, r...)
	}
	return out
}

func timeline(endMs int64) Timeline {
	return Timeline{
		Start: 0, End: endMs * ms1,
		TTL: 2 * time.Second, Allowance: 3 * time.Second, DownGap: 50 * time.Millisecond,
		Keys: []string{"shard.0"},
	}
}

func kinds(vs []Violation) []string {
	var out []string
	for _, v := range vs {
		out = append(out, v.Kind)
	}
	return out
}

func TestCheckViolations(t *testing.T) {
	tests := []struct {
		name   string
		events []event.Event
		tl     Timeline
		want   []string // violation kinds, in order
	}{
		{
			name:   "clean handover",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 1010, 3000)),
			tl:     timeline(3000),
		},
		{
			name:   "crash: gap below TTL plus allowance",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 5000, 6000)),
			tl:     timeline(6000),
		},
		{
			name:   "two holders overlap",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 990, 3000)),
			tl:     timeline(3000),
			want:   []string{Overlap},
		},
		{
			name:   "overlap by one instant",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 1000, 3000)),
			tl:     timeline(3000),
			want:   []string{Overlap},
		},
		{
			name:   "new term inside a long earlier one",
			events: hist(run("shard.0", "n1", 5, 0, 3000), run("shard.0", "n2", 9, 1000, 1500), run("shard.0", "n3", 12, 3010, 4000)),
			tl:     timeline(4000),
			want:   []string{Overlap},
		},
		{
			name:   "token goes down",
			events: hist(run("shard.0", "n1", 9, 0, 1000), run("shard.0", "n2", 5, 1010, 3000)),
			tl:     timeline(3000),
			want:   []string{Rev},
		},
		{
			name: "token reused after a full restart",
			events: hist(run("shard.0", "n1", 9, 0, 1000),
				run("shard.0", "n2", 9, 4000, 5000)),
			tl:   timeline(5000),
			want: []string{Rev},
		},
		{
			name: "token below an older term, not the latest",
			events: hist(run("shard.0", "n1", 20, 0, 1000), run("shard.0", "n2", 25, 1010, 2000),
				run("shard.0", "n3", 21, 2010, 3000)),
			tl:   timeline(3000),
			want: []string{Rev},
		},
		{
			name: "stale holder resumes with its old token after a takeover",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 3000, 4000),
				run("shard.0", "n1", 5, 4200, 4300)),
			tl:   timeline(4300),
			want: []string{Overlap}, // n1's term spans 0..4300 and so covers n2's
		},
		{
			name:   "orphan: gap above TTL plus allowance",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 6100, 7000)),
			tl:     timeline(7000),
			want:   []string{Orphan},
		},
		{
			name:   "orphan at the end of the window",
			events: run("shard.0", "n1", 5, 0, 1000),
			tl:     timeline(7000),
			want:   []string{Orphan},
		},
		{
			name:   "key never held",
			events: run("shard.0", "n1", 5, 0, 7000),
			tl: func() Timeline {
				tl := timeline(7000)
				tl.Keys = append(tl.Keys, "key-0")
				return tl
			}(),
			want: []string{Orphan},
		},
		{
			name:   "gap excused by quorum loss",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 16000, 17000)),
			tl: func() Timeline {
				tl := timeline(17000)
				tl.Excused = []Interval{{900 * ms1, 12000 * ms1}}
				return tl
			}(),
		},
		{
			name:   "gap only partly excused",
			events: hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 16000, 17000)),
			tl: func() Timeline {
				tl := timeline(17000)
				tl.Excused = []Interval{{900 * ms1, 8000 * ms1}}
				return tl
			}(),
			want: []string{Orphan},
		},
		{
			name: "plain keys are checked like shards",
			events: hist(run("key-0", "n1", 5, 0, 1000), run("key-0", "n2", 4, 1010, 2000),
				run("shard.0", "n1", 1, 0, 2000)),
			tl:   timeline(2000),
			want: []string{Rev},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Check(tt.events, tt.tl)
			if got := kinds(r.Violations); !slices.Equal(got, tt.want) {
				t.Fatalf("violations %v, want %v: %+v", got, tt.want, r.Violations)
			}
		})
	}
}

func TestCheckLeadEventsAndIgnoredKinds(t *testing.T) {
	ev := []event.Event{
		{T: 0, Node: "n1", Kind: event.Lead, Key: "key-0", Rev: 3},
		{T: 10 * ms1, Node: "n2", Kind: event.Lead, Key: "key-0", Rev: 4},
		{T: 5 * ms1, Node: "n2", Kind: event.Elected, Key: "key-0", Rev: 4}, // not a sample
		{T: 20 * ms1, Node: "n1", Kind: event.Lead, Key: "key-0", Rev: 3},
	}
	tl := timeline(20)
	tl.Keys = []string{"key-0"}
	r := Check(ev, tl)
	if got := kinds(r.Violations); !slices.Equal(got, []string{Overlap}) {
		t.Fatalf("violations %v: %+v", got, r.Violations)
	}
}

func TestAvailabilityFailoverAndMoves(t *testing.T) {
	// n1 holds shard.0 until 1000 ms, is killed at 1000 ms; n2 takes over
	// at 3500 ms. shard.1 stays with n2 throughout.
	ev := hist(run("shard.0", "n1", 5, 0, 1000), run("shard.0", "n2", 9, 3500, 10000),
		run("shard.1", "n2", 6, 0, 10000))
	tl := timeline(10000)
	tl.Keys = []string{"shard.0", "shard.1"}
	tl.Faults = []Fault{{Name: "kill9#1", Kind: "kill9", Targets: []string{"n1"}, Start: 1005 * ms1, End: 10000 * ms1}}
	r := Check(ev, tl)
	if len(r.Violations) != 0 {
		t.Fatalf("violations: %+v", r.Violations)
	}
	// shard.0 is down 1000..3500 of 10000: 75 %; shard.1 100 %.
	if got, want := r.Availability.Shards, (0.75+1)/2; abs(got-want) > 1e-9 {
		t.Fatalf("availability %v, want %v", got, want)
	}
	if r.Moves != 1 || r.ShardMoves != 1 || r.QuietMoves != 0 {
		t.Fatalf("moves %d shard %d quiet %d", r.Moves, r.ShardMoves, r.QuietMoves)
	}
	fs := r.Faults[0]
	if fs.ShardMoves != 1 || fs.IdealShardMoves != 2 {
		t.Fatalf("shard moves %d, ideal %d: want 1 (away; not back yet), 2 (away and back)", fs.ShardMoves, fs.IdealShardMoves)
	}
	if len(fs.Failovers) != 1 || fs.Failovers[0].Key != "shard.0" || fs.Failovers[0].To != "n2" {
		t.Fatalf("failovers %+v", fs.Failovers)
	}
	if got := fs.Failovers[0].Failover; got != 2495*time.Millisecond {
		t.Fatalf("failover %v", got)
	}
	if got := fs.Failovers[0].Gap; got != 2500*time.Millisecond {
		t.Fatalf("gap %v", got)
	}
	k := r.Kinds[0]
	if k.Kind != "kill9" || k.Count != 1 || k.ShardFailover.N != 1 || k.ShardFailover.P99 != 2495*time.Millisecond || k.Moves != 1 {
		t.Fatalf("kind stats %+v", k)
	}
	// Window 1005..10000: shard.0 down 1005..3500.
	want := (1 - float64(3500-1005)/float64(10000-1005) + 1) / 2
	if abs(k.Availability.Shards-want) > 1e-9 {
		t.Fatalf("window availability %v, want %v", k.Availability.Shards, want)
	}
}

func TestUnrecovered(t *testing.T) {
	ev := hist(run("shard.0", "n1", 5, 0, 1000))
	tl := timeline(1500)
	tl.Faults = []Fault{{Name: "stop#1", Kind: "stop", Targets: []string{"n1"}, Start: 1001 * ms1, End: 1500 * ms1}}
	r := Check(ev, tl)
	if got := r.Faults[0].Unrecovered; !slices.Equal(got, []string{"shard.0"}) {
		t.Fatalf("unrecovered %v", got)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	p := Percentile(ds)
	if p.N != 100 || p.P50 != 50*time.Millisecond || p.P99 != 99*time.Millisecond || p.Max != 100*time.Millisecond {
		t.Fatalf("%+v", p)
	}
	if (Percentile(nil) != Percentiles{}) {
		t.Fatal("empty")
	}
}

func TestViolationDetailsUseRunTime(t *testing.T) {
	ev := hist(run("shard.0", "n1", 5, 1000, 2000), run("shard.0", "n2", 9, 1990, 3000))
	tl := timeline(3000)
	tl.Start = 1000 * ms1
	r := Check(ev, tl)
	if len(r.Violations) != 1 || !strings.Contains(r.Violations[0].Detail, "t=0.990s") {
		t.Fatalf("%+v", r.Violations)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}
