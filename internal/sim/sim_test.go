package sim

import (
	"flag"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nonchan7720/ronin/balancer"
)

var (
	scenarios = flag.Int("sim.scenarios", 100, "scenarios to run (make sim runs more)")
	firstSeed = flag.Int64("sim.seed", 1, "seed of the first scenario; scenario i uses seed+i")
	workers   = flag.Int("sim.parallel", 2, "scenarios run at once")
	verbose   = flag.Bool("sim.v", false, "print every scenario's fault schedule")
	focus     = flag.String("sim.focus", "", "make half of the faults of one kind: slow, partition, pause, suspend, crash, purge, delete, observer (a lagging observer and a holder cut off in bursts); rotate cycles through them seed by seed")
)

// rotation is the fault mixes -sim.focus=rotate cycles through, seed by
// seed: the plain mix twice as often as each focus.
var rotation = []string{"", "observer", "", "slow", "partition", "pause", "suspend", "crash", "purge", "delete"}

// TestSim runs -sim.scenarios seeded scenarios of the real protocol code in
// virtual time and fails on any violation, printing its seed, a replay
// command, the fault schedule and a trace of the interleaving. Its last
// line is "scenarios: N, violations: M".
func TestSim(t *testing.T) {
	var (
		next       atomic.Int64
		violations atomic.Int64
		ran        atomic.Int64
		wg         sync.WaitGroup
		mu         sync.Mutex
		reported   int
	)
	next.Store(*firstSeed)
	last := *firstSeed + int64(*scenarios)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1) - 1
				if seed >= last || t.Failed() && reported >= 3 {
					return
				}
				var res Result
				sc := FromSeed(seed)
				sc.Focus = *focus
				if *focus == "rotate" {
					sc.Focus = rotation[seed%int64(len(rotation))]
				}
				synctest.Test(t, func(*testing.T) { res = Run(sc) })
				ran.Add(1)
				if *verbose {
					t.Logf("seed %d: %+v\n%s", seed, res.Scenario, strings.Join(res.Faults, "\n"))
				}
				if len(res.Violations) == 0 {
					continue
				}
				violations.Add(int64(len(res.Violations)))
				mu.Lock()
				if reported < 3 {
					reported++
					t.Errorf("seed %d: %d violation(s); replay: go test ./internal/sim -run TestSim -sim.seed %d -sim.scenarios 1 -sim.parallel 1 -sim.focus=%q\nscenario: %+v\nviolations:\n  %s\nfaults:\n%s\ntrace (latest events):\n%s",
						seed, len(res.Violations), seed, *focus, res.Scenario, strings.Join(res.Violations, "\n  "), strings.Join(res.Faults, "\n"), res.Trace)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("scenarios: %d, violations: %d\n", ran.Load(), violations.Load())
}

// TestDrainGap: a member that stops gracefully hands each shard over in
// milliseconds (S4), because it leaves the membership before it releases:
// the others plan without it and its planned successors act at once.
func TestDrainGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		gaps, extra := DrainGaps(3, 12, time.Second)
		// The plan without n1 may also move a shard between the others
		// (capped rendezvous); nothing beyond that may move.
		before, after := balancer.Plan(12, []string{"n1", "n2", "n3"}), balancer.Plan(12, []string{"n2", "n3"})
		planned := 0
		for id := range before {
			if before[id] != "n1" && before[id] != after[id] {
				planned++
			}
		}
		if extra != planned {
			t.Errorf("the drain caused %d handler starts beyond one per drained shard; the plan moves %d other shards (a shard moved twice?)", extra, planned)
		}
		if len(gaps) == 0 {
			t.Fatal("the drained node owned no shard")
		}
		t.Logf("drain gaps (virtual time, store latency 200µs each way): max %v of %v", slices.Max(gaps), gaps)
		for _, g := range gaps {
			if g > 50*time.Millisecond {
				t.Errorf("drain gap %v, want <= 50ms (all: %v)", g, gaps)
				return
			}
		}
	})
}
