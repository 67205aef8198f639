package main

import (
	"fmt"
	"math/rand/v2"
	"slices"

	"github.com/nonchan7720/ronin/balancer"
)

// balancerMoves counts, with the pure balancer, the shards a join or a
// leave moves against the ideal, over random member-name sets.
func (b *bench) balancerMoves() {
	rng := rand.New(rand.NewPCG(7, 11)) // fixed seed: the same names every run
	for _, shards := range []int{64, 1024} {
		for n := 2; n <= 8; n++ {
			var join, leave ratios
			for range b.plan.moveTrials {
				names := memberNames(rng, n)
				full := balancer.Plan(shards, names)
				// Join: the last member joins the others.
				join.add(balancer.Moves(balancer.Plan(shards, names[:n-1]), full), balancer.IdealMoves(shards, n-1, n))
				// Leave: a random member leaves.
				rest := without(names, rng.IntN(n))
				leave.add(balancer.Moves(full, balancer.Plan(shards, rest)), balancer.IdealMoves(shards, n, n-1))
			}
			b.rep.add(secShards, row{
				metric:  "Moves per join / leave ÷ ideal (balancer.Plan, pure)",
				setting: fmt.Sprintf("S=%d, N=%d (join %d→%d, leave %d→%d)", shards, n, n-1, n, n, n-1),
				n:       fmt.Sprint(b.plan.moveTrials),
				result:  fmt.Sprintf("join mean %.2f, max %.2f · leave mean %.2f, max %.2f", join.mean(), join.max, leave.mean(), leave.max),
			})
		}
	}
}

// ratios accumulates moves/ideal.
type ratios struct {
	sum, max float64
	n        int
}

func (r *ratios) add(moves, ideal int) {
	x := float64(moves) / float64(ideal)
	r.sum += x
	r.max = max(r.max, x)
	r.n++
}

func (r *ratios) mean() float64 { return r.sum / float64(r.n) }

// memberNames returns n distinct random node names.
func memberNames(rng *rand.Rand, n int) []string {
	seen := map[string]bool{}
	var out []string
	for len(out) < n {
		name := fmt.Sprintf("node-%08x", rng.Uint32())
		if !seen[name] {
			seen[name] = true
			out = append(out, name)
		}
	}
	return out
}

func without(s []string, i int) []string {
	return append(slices.Clone(s[:i]), s[i+1:]...)
}
