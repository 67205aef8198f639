package balancer

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// names returns n member names "node-1".."node-n".
func names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i+1)
	}
	return out
}

// counts returns how many shards each member of plan owns.
func counts(plan []string) map[string]int {
	c := make(map[string]int)
	for _, m := range plan {
		c[m]++
	}
	return c
}

// checkSpread fails t unless plan assigns every shard to a member of members
// and each member owns floor(S/N) or ceil(S/N) shards (S1).
func checkSpread(t *testing.T, plan, members []string, msg string) {
	t.Helper()
	set := distinct(members)
	s, n := len(plan), len(set)
	lo, hi := s/n, (s+n-1)/n
	c := counts(plan)
	for i, m := range plan {
		if _, ok := slices.BinarySearch(set, m); !ok {
			t.Fatalf("%s: shard %d assigned to %q, not a member of %v", msg, i, m, set)
		}
	}
	for _, m := range set {
		if c[m] < lo || c[m] > hi {
			t.Fatalf("%s: member %q owns %d shards, want %d..%d (S=%d N=%d)", msg, m, c[m], lo, hi, s, n)
		}
	}
}

func TestScoreGolden(t *testing.T) {
	// Computed with an independent XXH64 implementation. Every node must
	// compute the same scores, across versions: a change here breaks
	// agreement between nodes during a rolling upgrade.
	tests := []struct {
		member string
		shard  int
		want   uint64
	}{
		{"node-1", 0, 0xc6b06f9ea6c48eaa},
		{"node-1", 1, 0x9c0e75216bb97f7e},
		{"node-2", 0, 0x6ed5e66368a50c8e},
		{"", 0, 0x5149774f0dcd2f3d},
		{"a", -1, 0xf7194ccfe123aa49},
		{"ronin-é", 1023, 0x8b05418f133e4bee},
		{"a-much-longer-member-name.example.internal:4222", 7, 0xb1a231bbb517d272},
	}
	for _, tt := range tests {
		if got := Score(tt.member, tt.shard); got != tt.want {
			t.Errorf("Score(%q, %d) = %#x, want %#x", tt.member, tt.shard, got, tt.want)
		}
		if got := Score(tt.member, tt.shard); got != tt.want {
			t.Errorf("Score(%q, %d) second call = %#x, want %#x", tt.member, tt.shard, got, tt.want)
		}
	}
}

func TestScoreSeparator(t *testing.T) {
	// The 0 separator keeps member names and shard ids from running into
	// each other; distinct inputs give distinct scores.
	if Score("a", 0) == Score("a\x00", 0) {
		t.Error(`Score("a", 0) == Score("a\x00", 0)`)
	}
	if Score("node-1", 0) == Score("node-1", 1<<32) {
		t.Error("shard ids differing only in high bits collide")
	}
}

func TestRank(t *testing.T) {
	members := names(8)
	for shard := range 64 {
		got := Rank(shard, members)
		if len(got) != len(members) {
			t.Fatalf("shard %d: Rank returned %d members, want %d", shard, len(got), len(members))
		}
		for i := 1; i < len(got); i++ {
			a, b := Score(got[i-1], shard), Score(got[i], shard)
			if a < b || (a == b && got[i-1] >= got[i]) {
				t.Fatalf("shard %d: Rank not in descending score order at %d: %v", shard, i, got)
			}
		}
		if !slices.Equal(Rank(shard, members), got) {
			t.Fatalf("shard %d: Rank not deterministic", shard)
		}
	}
}

func TestRankInputOrderAndDuplicates(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	members := names(8)
	orig := slices.Clone(members)
	for shard := range 32 {
		want := Rank(shard, members)
		in := append(slices.Clone(members), members[rng.IntN(8)], members[rng.IntN(8)], "")
		rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
		before := slices.Clone(in)
		if got := Rank(shard, in); !slices.Equal(got, want) {
			t.Fatalf("shard %d: Rank(%v) = %v, want %v", shard, in, got, want)
		}
		if !slices.Equal(in, before) {
			t.Fatalf("Rank modified its input: %v, was %v", in, before)
		}
	}
	if !slices.Equal(members, orig) {
		t.Fatalf("Rank modified its input: %v", members)
	}
}

func TestRankEmpty(t *testing.T) {
	if got := Rank(0, nil); len(got) != 0 {
		t.Errorf("Rank(0, nil) = %v, want empty", got)
	}
	if got := Rank(0, []string{"", ""}); len(got) != 0 {
		t.Errorf(`Rank(0, {"", ""}) = %v, want empty`, got)
	}
}

func TestPlanEdges(t *testing.T) {
	for _, s := range []int{0, -1} {
		if got := Plan(s, names(3)); got != nil {
			t.Errorf("Plan(%d, 3 members) = %v, want nil", s, got)
		}
	}
	for _, members := range [][]string{nil, {}, {""}} {
		got := Plan(5, members)
		if !slices.Equal(got, make([]string, 5)) {
			t.Errorf("Plan(5, %q) = %q, want 5 empty strings", members, got)
		}
	}
	got := Plan(4, []string{"solo", "", "solo"})
	if want := []string{"solo", "solo", "solo", "solo"}; !slices.Equal(got, want) {
		t.Errorf("Plan(4, solo) = %q, want %q", got, want)
	}
}

func TestPlanSpread(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range []int{1, 7, 16, 64, 1024, 10000} {
		for _, n := range []int{1, 2, 3, 4, 5, 6, 7, 8, 12, 40} {
			members := names(n)
			plan := Plan(s, members)
			msg := fmt.Sprintf("S=%d N=%d", s, n)
			if len(plan) != s {
				t.Fatalf("%s: len(plan) = %d", msg, len(plan))
			}
			checkSpread(t, plan, members, msg)

			// Order and duplicates in the input do not matter.
			in := append(slices.Clone(members), members[rng.IntN(n)], "")
			rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
			before := slices.Clone(in)
			if got := Plan(s, in); !slices.Equal(got, plan) {
				t.Fatalf("%s: plan differs for shuffled input %v: %d shards", msg, in, Moves(plan, got))
			}
			if !slices.Equal(in, before) {
				t.Fatalf("%s: Plan modified its input", msg)
			}
		}
	}
}

func TestPlanDeterministic(t *testing.T) {
	// A fixed plan, to catch any change of the algorithm that would make
	// nodes of different versions disagree.
	got := Plan(8, []string{"node-3", "node-1", "node-2"})
	want := Plan(8, names(3))
	if !slices.Equal(got, want) {
		t.Fatalf("Plan differs by input order: %q vs %q", got, want)
	}
	// Golden values from an independent Python implementation of Score and
	// of the capped walk.
	golden := []string{"node-1", "node-3", "node-2", "node-3", "node-1", "node-2", "node-3", "node-1"}
	if !slices.Equal(got, golden) {
		t.Fatalf("Plan(8, node-1..3) = %q, want %q", got, golden)
	}
	big := Plan(100, names(5))
	sum := sha256.Sum256([]byte(strings.Join(big, ",")))
	if got, want := hex.EncodeToString(sum[:]), "a083fd593f551dc8b8f5d3fd78b870fa0d8c2ec9616fc0cf5aa4fd994bd62062"; got != want {
		t.Fatalf("Plan(100, node-1..5) digest = %s, want %s; plan starts %q", got, want, big[:10])
	}
}

func TestMoves(t *testing.T) {
	tests := []struct {
		name          string
		before, after []string
		want          int
	}{
		{"both empty", nil, nil, 0},
		{"same", []string{"a", "b"}, []string{"a", "b"}, 0},
		{"one differs", []string{"a", "b", "c"}, []string{"a", "x", "c"}, 1},
		{"to none", []string{"a", "b"}, []string{"", ""}, 2},
		{"longer after", []string{"a"}, []string{"a", "b", "c"}, 2},
		{"longer before", []string{"a", "b"}, []string{"b"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Moves(tt.before, tt.after); got != tt.want {
				t.Errorf("Moves(%q, %q) = %d, want %d", tt.before, tt.after, got, tt.want)
			}
		})
	}
}

func TestIdealMoves(t *testing.T) {
	tests := []struct {
		shards, before, after, want int
	}{
		{64, 7, 8, 8},
		{64, 8, 7, 8},
		{1024, 2, 3, 341},
		{1024, 3, 2, 341},
		{10, 0, 1, 10}, // first member takes everything
		{10, 1, 0, 10}, // last member leaves
		{3, 4, 5, 0},   // newcomer may get nothing
		{3, 5, 4, 0},   // leaver may have owned nothing
		{64, 3, 3, 0},  // not a single join or leave
		{64, 3, 5, 0},  // two joins
		{0, 1, 2, 0},   // no shards
		{-4, 1, 2, 0},  // invalid shards
		{64, -1, 0, 0}, // invalid count
	}
	for _, tt := range tests {
		if got := IdealMoves(tt.shards, tt.before, tt.after); got != tt.want {
			t.Errorf("IdealMoves(%d, %d, %d) = %d, want %d", tt.shards, tt.before, tt.after, got, tt.want)
		}
	}
}

func TestWalkOrder(t *testing.T) {
	// walk must visit pairs exactly in (key, shard, member) order, including
	// equal keys and crowded buckets, and stop when visit returns false.
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 2, 3, 100, 5000} {
		for _, keyBits := range []uint{64, 3} { // 3: many equal keys, one bucket
			pairs := make([]pair, n)
			for i := range pairs {
				pairs[i] = pair{key: rng.Uint64() >> (64 - keyBits), shard: int32(rng.IntN(50)), member: int32(rng.IntN(4))}
			}
			want := slices.Clone(pairs)
			slices.SortFunc(want, comparePairs)
			var got []pair
			walk(pairs, func(p pair) bool { got = append(got, p); return true })
			if !slices.Equal(got, want) {
				t.Fatalf("n=%d keyBits=%d: walk order differs from a full sort", n, keyBits)
			}
			got = got[:0]
			walk(pairs, func(p pair) bool { got = append(got, p); return len(got) < n/2 })
			if wantN := max(n/2, 1); len(got) != wantN {
				t.Fatalf("n=%d: walk visited %d pairs after stop, want %d", n, len(got), wantN)
			}
		}
	}
}

// PlanAway keeps every member's shards of the plan that includes the away
// members, spreads only the away members' shards (S1 over the members),
// and gives exactly those back when the away members return.
func TestPlanAway(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, s := range []int{1, 2, 5, 7, 16, 64, 1024} {
		for _, n := range []int{1, 2, 3, 4, 5, 8} {
			for _, gone := range []int{1, 2} {
				for range 20 {
					all := make([]string, n+gone)
					for i := range all {
						all[i] = fmt.Sprintf("n%x", rng.Uint64())
					}
					members, away := all[:n], all[n:]
					msg := fmt.Sprintf("S=%d N=%d away=%d %v", s, n, gone, all)
					full := Plan(s, all)
					got := PlanAway(s, members, away)
					checkSpread(t, got, members, msg)
					for i, target := range full {
						if slices.Contains(members, target) && got[i] != target {
							t.Fatalf("%s: shard %d left member %s", msg, i, target)
						}
					}
					moved := 0
					for i, target := range full {
						if slices.Contains(away, target) {
							moved++
						} else if got[i] != target {
							t.Fatalf("%s: shard %d moved between members", msg, i)
						}
					}
					if back := Moves(got, full); back != moved {
						t.Fatalf("%s: the away members' return moves %d shards, want their %d", msg, back, moved)
					}
				}
			}
		}
	}
	if got, want := PlanAway(64, names(3), nil), Plan(64, names(3)); !slices.Equal(got, want) {
		t.Error("PlanAway without away members differs from Plan")
	}
	if got, want := PlanAway(64, names(3), names(2)), Plan(64, names(3)); !slices.Equal(got, want) {
		t.Error("PlanAway with away names that are members differs from Plan")
	}
}
