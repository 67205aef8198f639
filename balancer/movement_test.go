package balancer

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var seedFlag = flag.Uint64("seed", 0, "seed of the randomized balancer tests (0 picks one)")

// moveBound is the most moves accepted for a single join or leave whose
// minimum is ideal. Capped rendezvous moves the minimum plus a few shards
// between the other members; over 300 random name sets per (S, N) that
// surplus had median about 0.5*sqrt(S) and maximum 1.25*sqrt(S) (1.75*sqrt(S)
// at S=16). It does not grow with S/N the way a reshuffle would.
func moveBound(shards, ideal int) int {
	return ideal + int(2*math.Sqrt(float64(shards)))
}

// without returns members minus the one at index k, in a new slice.
func without(members []string, k int) []string {
	return slices.Delete(slices.Clone(members), k, k+1)
}

func TestMovementJoinLeave(t *testing.T) {
	for _, s := range []int{64, 1024} {
		for n := 2; n <= 8; n++ {
			members := names(n)
			full := Plan(s, members)

			// Join: node-n joins node-1..node-(n-1).
			prev := Plan(s, members[:n-1])
			ideal := IdealMoves(s, n-1, n)
			moves := Moves(prev, full)
			checkMoves(t, s, ideal, moves, fmt.Sprintf("S=%d join %d->%d", s, n-1, n))
			joinRatio := float64(moves) / float64(ideal)

			// Leave: each member in turn leaves the full set.
			var sum, worst float64
			c := counts(full)
			for k, leaver := range members {
				after := Plan(s, without(members, k))
				ideal := c[leaver]
				moves := Moves(full, after)
				checkMoves(t, s, ideal, moves, fmt.Sprintf("S=%d leave of %s %d->%d", s, leaver, n, n-1))
				r := float64(moves) / float64(ideal)
				sum += r
				worst = max(worst, r)
			}
			t.Logf("S=%4d N=%d  join %.3f  leave mean %.3f max %.3f (moves/ideal)", s, n, joinRatio, sum/float64(n), worst)
		}
	}
}

func checkMoves(t *testing.T, shards, ideal, moves int, msg string) {
	t.Helper()
	if moves < ideal {
		t.Fatalf("%s: %d moves, fewer than the minimum %d: the ideal is wrong", msg, moves, ideal)
	}
	if bound := moveBound(shards, ideal); moves > bound {
		t.Fatalf("%s: %d moves, ideal %d, bound %d (ratio %.3f)", msg, moves, ideal, bound, float64(moves)/float64(ideal))
	}
}

func TestMovementRandomSequence(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (rerun with: go test ./balancer -run TestMovementRandomSequence -args -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	const steps, maxMembers = 200, 12
	for _, s := range []int{64, 1024} {
		members := names(3)
		var gone []string
		next := 4
		plan := Plan(s, members)
		var worst float64
		for step := range steps {
			var after []string
			var ideal int
			var what string
			n := len(members)
			if n == 1 || (n < maxMembers && rng.IntN(2) == 0) {
				name := fmt.Sprintf("node-%d", next)
				if len(gone) > 0 && rng.IntN(2) == 0 {
					// A departed member comes back under its old name.
					i := rng.IntN(len(gone))
					name = gone[i]
					gone = slices.Delete(gone, i, i+1)
				} else {
					next++
				}
				members = append(members, name)
				after = Plan(s, members)
				ideal = IdealMoves(s, n, n+1)
				what = "join of " + name
			} else {
				k := rng.IntN(n)
				ideal = counts(plan)[members[k]]
				what = "leave of " + members[k]
				gone = append(gone, members[k])
				members = without(members, k)
				after = Plan(s, members)
			}
			msg := fmt.Sprintf("seed %d S=%d step %d %s (%d->%d members)", seed, s, step, what, n, len(members))
			checkSpread(t, after, members, msg)
			moves := Moves(plan, after)
			checkMoves(t, s, ideal, moves, msg)
			if ideal > 0 {
				worst = max(worst, float64(moves)/float64(ideal))
			}
			plan = after
		}
		t.Logf("S=%d: worst moves/ideal over %d steps: %.3f", s, steps, worst)
	}
}
