package main

import (
	"math/rand/v2"
	"slices"
	"time"
)

// Fault kinds.
const (
	kindKill9      = "kill9"              // SIGKILL one node, restart it after a pause
	kindStop       = "stop"               // SIGSTOP one node for longer than the TTL, then SIGCONT
	kindIsolate    = "isolate"            // cut one node from all others, then heal
	kindSplit      = "split"              // majority/minority partition, then heal
	kindNetem      = "netem"              // delay and loss on one node's link
	kindKillLeader = "kill-stream-leader" // SIGKILL the shard bucket's stream leader, restart later
	kindKillAll    = "kill-all"           // SIGKILL every node, restart all with their data
	kindGraceful   = "graceful"           // SIGTERM one node (drain), restart it after a pause
)

// allKinds is every fault kind, in the order the plan shuffles.
var allKinds = []string{kindKill9, kindStop, kindIsolate, kindSplit, kindNetem, kindKillLeader, kindKillAll, kindGraceful}

// plannedFault is one entry of the schedule: what to do, to whom, for how
// long. Everything random about a fault is drawn here, from the seed.
type plannedFault struct {
	Kind string
	// Target is the node index for single-node faults (unused by
	// kill-stream-leader, which picks the leader at run time, and by
	// kill-all).
	Target int
	// Minority are the node indexes cut off by a split.
	Minority []int
	// Hold is how long the fault lasts before it is undone (down time of
	// a killed node, stop length, partition length, netem length).
	Hold time.Duration
	// Netem parameters.
	Delay, Jitter time.Duration
	LossPct       float64
}

// plan draws n faults for a cluster of nodes nodes with lease TTL ttl from
// seed. Faults come in rounds, each a shuffle of every kind, so a short run
// still sees every kind. The plan depends only on its arguments: the same
// seed replays the same faults in the same order.
func plan(seed uint64, nodes int, ttl time.Duration, n int) []plannedFault {
	r := rand.New(rand.NewPCG(seed, seed^0x5ca1ab1e))
	between := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(r.Int64N(int64(hi-lo)+1))
	}
	var out []plannedFault
	for len(out) < n {
		kinds := slices.Clone(allKinds)
		r.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		for _, k := range kinds {
			if len(out) == n {
				break
			}
			f := plannedFault{Kind: k, Target: r.IntN(nodes)}
			switch k {
			case kindKill9, kindKillLeader:
				f.Hold = between(ttl+time.Second, ttl+4*time.Second)
			case kindStop:
				f.Hold = between(ttl+time.Second, 2*ttl+3*time.Second)
			case kindIsolate:
				f.Hold = between(2*ttl+2*time.Second, 2*ttl+8*time.Second)
			case kindSplit:
				f.Hold = between(2*ttl+2*time.Second, 2*ttl+8*time.Second)
				perm := r.Perm(nodes)
				f.Minority = perm[:(nodes-1)/2]
				slices.Sort(f.Minority)
			case kindNetem:
				f.Hold = between(8*time.Second, 15*time.Second)
				f.Delay = between(20*time.Millisecond, 200*time.Millisecond).Round(time.Millisecond)
				f.Jitter = f.Delay / 4
				f.LossPct = float64(1 + r.IntN(10)) // 1..10 %
			case kindKillAll:
				f.Hold = between(time.Second, 4*time.Second)
			case kindGraceful:
				f.Hold = between(time.Second, 3*time.Second)
			}
			f.Hold = f.Hold.Round(time.Millisecond)
			out = append(out, f)
		}
	}
	return out
}
