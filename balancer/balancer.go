package balancer

import (
	"cmp"
	"encoding/binary"
	"math/bits"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Score is the rendezvous (HRW) weight of member for shard: the xxhash64 of
// the member's bytes, one 0x00 separator byte, and the shard id as 8
// little-endian bytes (two's complement for negative ids).
func Score(member string, shard int) uint64 {
	var h hasher
	h.reset(member)
	return h.score(shard)
}

// hasher computes Score for one member and many shards without allocating
// per call: buf holds member, 0x00 and room for the 8 shard bytes.
type hasher struct {
	buf []byte
	n   int // offset of the shard bytes in buf
}

func (h *hasher) reset(member string) {
	h.buf = append(h.buf[:0], member...)
	h.buf = append(h.buf, 0)
	h.n = len(h.buf)
	h.buf = append(h.buf, 0, 0, 0, 0, 0, 0, 0, 0)
}

func (h *hasher) score(shard int) uint64 {
	binary.LittleEndian.PutUint64(h.buf[h.n:], uint64(shard))
	return xxhash.Sum64(h.buf)
}

// distinct returns the distinct non-empty names in members, sorted. The input
// is not modified.
func distinct(members []string) []string {
	out := make([]string, 0, len(members))
	for _, m := range members {
		if m != "" {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Rank returns the distinct members ordered by descending Score for shard,
// ties broken by ascending member name. Empty names are dropped (the empty
// string means "no owner"). The result does not depend on the order of
// members, and members is not modified.
func Rank(shard int, members []string) []string {
	ms := distinct(members)
	scores := make(map[string]uint64, len(ms))
	var h hasher
	for _, m := range ms {
		h.reset(m)
		scores[m] = h.score(shard)
	}
	slices.SortStableFunc(ms, func(a, b string) int {
		// ms is sorted by name, so a stable sort keeps ties in name order.
		return cmp.Compare(scores[b], scores[a])
	})
	return ms
}

// Plan returns the target owner of every shard 0..shards-1: plan[i] is the
// member that should own shard i. members is treated as a set: duplicates and
// empty names are ignored and its order does not matter; it is not modified.
//
// Every member is the target of floor(shards/N) or ceil(shards/N) shards,
// where N is the number of distinct members (S1). Plans for member sets that
// differ by one member differ in close to the minimum number of shards (S2;
// see the package documentation for the measured ratios).
//
// With no members Plan returns shards empty strings; with shards <= 0 it
// returns nil. It costs O(S*N) time and about 40*S*N bytes of scratch memory
// (3 MB for 10,000 shards and 8 members): compute it when the member set
// changes, not per event.
func Plan(shards int, members []string) []string {
	if shards <= 0 {
		return nil
	}
	plan := make([]string, shards)
	fill(plan, distinct(members))
	return plan
}

// PlanAway is Plan for members while the members in away are gone for a
// while (restarting, cut off) and expected back: every member keeps the
// shards that Plan over members and away together gives it, and only the
// away members' shards are spread over members, by the same capped walk.
// When an away member comes back, Plan over all of them gives its shards
// back to it and nobody else's move. Names in both lists count as members.
//
// Every member is still the target of floor(shards/N) or ceil(shards/N)
// shards, N being the number of distinct members (S1): with K > N names in
// the full plan, each member keeps at most ceil(S/K) <= ceil(S/N) shards,
// and the members at floor(S/K)+1 number S mod K, no more than the
// S mod N extra slots when floor(S/K) = floor(S/N). With no away members
// it is Plan.
func PlanAway(shards int, members, away []string) []string {
	ms := distinct(members)
	away = slices.DeleteFunc(distinct(away), func(m string) bool { _, found := slices.BinarySearch(ms, m); return found })
	if len(away) == 0 || len(ms) == 0 {
		return Plan(shards, ms)
	}
	plan := Plan(shards, append(slices.Clone(ms), away...))
	for i, target := range plan {
		if _, found := slices.BinarySearch(ms, target); !found {
			plan[i] = ""
		}
	}
	fill(plan, ms)
	return plan
}

// pair is one (shard, member) candidate of the capped rendezvous walk.
type pair struct {
	key    uint64 // ^Score, so ascending key is descending score
	shard  int32
	member int32 // index into the sorted distinct member list
}

// fill assigns every empty entry of plan to a member of ms (sorted,
// distinct) by the capped rendezvous walk, counting the entries already
// assigned, so that every member ends with floor(S/N) or ceil(S/N) shards;
// the entries already assigned must leave room for that (at most
// S mod N members above floor(S/N), none above ceil(S/N)).
func fill(plan []string, ms []string) {
	n, shards := len(ms), len(plan)
	if n == 0 {
		return
	}
	base, extra := shards/n, shards%n
	counts := make([]int, n)
	left := 0
	for _, target := range plan {
		if target == "" {
			left++
			continue
		}
		j, _ := slices.BinarySearch(ms, target)
		counts[j]++
	}
	for _, c := range counts {
		if c > base {
			extra-- // a member already holding one of the shards%N extra slots
		}
	}
	if left == 0 {
		return
	}
	if n == 1 {
		for i := range plan {
			plan[i] = ms[0]
		}
		return
	}
	hs := make([]hasher, n)
	for j, m := range ms {
		hs[j].reset(m)
	}
	// int32 shard ids suffice: more than 1<<31 shards would not fit in
	// memory as pairs anyway.
	pairs := make([]pair, 0, left*n)
	for s, target := range plan {
		if target != "" {
			continue
		}
		for j := range hs {
			pairs = append(pairs, pair{key: ^hs[j].score(s), shard: int32(s), member: int32(j)})
		}
	}
	walk(pairs, func(p pair) bool {
		if plan[p.shard] != "" {
			return true
		}
		switch c := counts[p.member]; {
		case c < base:
		case c == base && extra > 0:
			extra-- // this member takes one of the shards%N extra slots
		default:
			return true // member is full
		}
		plan[p.shard] = ms[p.member]
		counts[p.member]++
		left--
		return left > 0
	})
}

// walk calls visit for the pairs in ascending (key, shard, member) order,
// that is by descending score with ties by shard then member, until visit
// returns false.
//
// Keys are hash outputs, so they are spread uniformly: one counting pass
// scatters the pairs into about len(pairs)/2 buckets by their top bits, and
// each bucket (a couple of pairs on average) is sorted only when the walk
// reaches it. That is O(len(pairs)) expected, and buckets after the last
// assignment are never sorted.
func walk(pairs []pair, visit func(pair) bool) {
	if len(pairs) == 0 {
		return
	}
	b := max(bits.Len(uint(len(pairs)))-1, 1)
	shift := 64 - b
	start := make([]int32, 1<<b+1)
	for i := range pairs {
		start[pairs[i].key>>shift+1]++
	}
	for i := 1; i < len(start); i++ {
		start[i] += start[i-1]
	}
	sorted := make([]pair, len(pairs))
	next := slices.Clone(start[:len(start)-1])
	for _, p := range pairs {
		d := p.key >> shift
		sorted[next[d]] = p
		next[d]++
	}
	for i := range len(start) - 1 {
		bucket := sorted[start[i]:start[i+1]]
		if len(bucket) > 1 {
			slices.SortFunc(bucket, comparePairs)
		}
		for _, p := range bucket {
			if !visit(p) {
				return
			}
		}
	}
}

func comparePairs(a, b pair) int {
	if c := cmp.Compare(a.key, b.key); c != 0 {
		return c
	}
	if c := cmp.Compare(a.shard, b.shard); c != 0 {
		return c
	}
	return cmp.Compare(a.member, b.member)
}

// Moves counts the shards whose target differs between two plans. Plans are
// expected to have equal length; if they do not, every shard present in only
// one of them counts as moved.
func Moves(before, after []string) int {
	n := min(len(before), len(after))
	moved := max(len(before), len(after)) - n
	for i := range n {
		if before[i] != after[i] {
			moved++
		}
	}
	return moved
}

// IdealMoves is the least number of shards that must move when the member
// count goes from before to after by one member joining (after == before+1)
// or one leaving (after == before-1), with shards shards in both balanced
// plans:
//
//   - join: floor(shards/after), the fewest shards the newcomer can own, and
//     every one of them moves to it;
//   - leave: floor(shards/before), the fewest shards the leaver can have
//     owned, and every one of them moves away (the leaver's actual count,
//     floor or ceil, is the exact minimum for a given plan).
//
// It returns 0 when shards <= 0, either count is negative, or the counts do
// not differ by exactly one. A join to one member or a leave of the last one
// gives shards.
func IdealMoves(shards, before, after int) int {
	if shards <= 0 || before < 0 || after < 0 {
		return 0
	}
	switch after - before {
	case 1:
		return shards / after
	case -1:
		return shards / before
	}
	return 0
}
