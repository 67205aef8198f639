package shard

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/balancer"
	"github.com/nonchan7720/ronin/internal/clock"
	"github.com/nonchan7720/ronin/internal/engine"
)

func testConfig(shards int) Config {
	return Config{Shards: shards, TTL: time.Second}.withDefaults()
}

func keysOf(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = Key(i)
	}
	return out
}

func TestPlannerDebouncesJoinsButNotLeaves(t *testing.T) {
	p := newPlanner(testConfig(8), "a")
	t0 := clock.Real().Now()
	wait := p.observe([]string{"a"}, t0)
	assert.Empty(t, p.adopted, "a new member waits for Debounce")
	assert.Equal(t, DefaultDebounce, wait)

	p.observe([]string{"a"}, t0.Add(DefaultDebounce))
	assert.Equal(t, []string{"a"}, p.adopted)

	p.observe([]string{"a", "b"}, t0.Add(DefaultDebounce+time.Millisecond))
	assert.Equal(t, []string{"a"}, p.adopted, "b joins: not yet")
	p.observe([]string{"a", "b"}, t0.Add(2*DefaultDebounce+time.Millisecond))
	assert.Equal(t, []string{"a", "b"}, p.adopted)

	p.observe([]string{"b"}, t0.Add(2*DefaultDebounce+2*time.Millisecond))
	assert.Equal(t, []string{"b"}, p.adopted, "a leaves: at once")
	assert.Equal(t, balancer.Plan(8, []string{"b"}), p.plan)
}

// A member that leaves and comes back within Remember (a restart) moves
// its own shards away and back, and no other shard; one that stays away
// for Remember is forgotten and the plan is made without it.
func TestPlannerRemembersAMemberThatLeft(t *testing.T) {
	const shards = 64
	all := []string{"a", "b", "c", "d"}
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(shards), "a")
	adoptAll(p, all, t0)
	full := p.plan
	require.Equal(t, balancer.Plan(shards, all), full)

	at := t0.Add(time.Second)
	wait := p.observe([]string{"a", "b", "c"}, at) // d leaves
	assert.Equal(t, []string{"a", "b", "c"}, p.adopted)
	assert.Equal(t, balancer.PlanAway(shards, []string{"a", "b", "c"}, []string{"d"}), p.plan)
	for id, target := range full {
		if target != "d" {
			assert.Equal(t, target, p.plan[id], "shard %d of %s stays", id, target)
		}
	}
	assert.LessOrEqual(t, wait, DefaultRemember)

	at = at.Add(10 * time.Second)
	p.observe(all, at) // d is back
	p.observe(all, at.Add(DefaultDebounce))
	assert.Equal(t, full, p.plan, "d's shards go back to it, nothing else moves")
	assert.Empty(t, p.away)

	at = at.Add(time.Second)
	p.observe([]string{"a", "b", "c"}, at) // d leaves for good
	p.observe([]string{"a", "b", "c"}, at.Add(DefaultRemember-time.Millisecond))
	assert.Contains(t, p.away, "d", "remembered for Remember")
	p.observe([]string{"a", "b", "c"}, at.Add(DefaultRemember))
	assert.Empty(t, p.away)
	assert.Equal(t, balancer.Plan(shards, []string{"a", "b", "c"}), p.plan, "forgotten: the plan of the members there")

	off := newPlanner(Config{Shards: shards, TTL: time.Second, Remember: -1}.withDefaults(), "a")
	adoptAll(off, all, t0)
	off.observe([]string{"a", "b", "c"}, t0.Add(time.Second))
	assert.Equal(t, balancer.Plan(shards, []string{"a", "b", "c"}), off.plan, "Remember < 0: nothing remembered")
}

func TestPlannerFlappingMemberIsNotAdopted(t *testing.T) {
	p := newPlanner(testConfig(8), "a")
	t0 := clock.Real().Now()
	for i := range 10 {
		at := t0.Add(time.Duration(i) * DefaultDebounce / 2)
		members := []string{"a"}
		if i%2 == 0 {
			members = append(members, "b")
		}
		p.observe(members, at)
	}
	assert.NotContains(t, p.adopted, "b")
}

// adoptAll makes p adopt members at once.
// allOwnedBy returns the view and run states of node owning every key.
func allOwnedBy(node string, keys []string) (map[string]engine.Holder, map[int]runState) {
	holders := map[string]engine.Holder{}
	mine := map[int]runState{}
	for id, key := range keys {
		holders[key] = engine.Holder{Candidate: node, Node: node, Rev: uint64(id + 1)}
		mine[id] = stateOwned
	}
	return holders, mine
}

// longHeld marks the shards of mine as owned here for long: past the
// settle-back hold of a shard that just arrived.
func longHeld(p *planner, mine map[int]runState) {
	for id := range mine {
		p.arrived[id] = clock.Instant{Mono: -24 * time.Hour}
	}
}

func adoptAll(p *planner, members []string, now clock.Instant) {
	p.observe(members, now.Add(-p.cfg.Debounce))
	p.observe(members, now)
}

func TestPlannerDecide(t *testing.T) {
	const shards = 8
	members := []string{"a", "b"}
	plan := balancer.Plan(shards, members)
	var mineA, theirs []int
	for id, owner := range plan {
		if owner == "a" {
			mineA = append(mineA, id)
		} else {
			theirs = append(theirs, id)
		}
	}
	require.NotEmpty(t, mineA)
	require.NotEmpty(t, theirs)
	keys := keysOf(shards)
	t0 := clock.Real().Now()

	t.Run("free shards planned here are acquired at once", func(t *testing.T) {
		p := newPlanner(testConfig(shards), "a")
		adoptAll(p, members, t0)
		acquire, handoff, _ := p.decide(keys, nil, nil, t0)
		assert.ElementsMatch(t, mineA, acquire)
		assert.Empty(t, handoff)
	})

	t.Run("free shards planned elsewhere are rescued after the stagger", func(t *testing.T) {
		p := newPlanner(testConfig(shards), "a")
		adoptAll(p, members, t0)
		p.decide(keys, nil, nil, t0)
		early, _, _ := p.decide(keys, nil, nil, t0.Add(p.rescueDelay()-time.Millisecond))
		assert.ElementsMatch(t, mineA, early, "others' targets get TTL/2 first")
		late := t0.Add(p.rescueDelay() + p.cfg.Stagger) // rank <= 1 of 2
		acquire, _, _ := p.decide(keys, nil, nil, late)
		assert.ElementsMatch(t, plan2all(shards), acquire)
	})

	t.Run("held shards planned elsewhere are handed over, throttled", func(t *testing.T) {
		cfg := testConfig(shards)
		cfg.MaxMoves = 1
		p := newPlanner(cfg, "a")
		adoptAll(p, members, t0)
		holders := map[string]engine.Holder{}
		mine := map[int]runState{}
		for id := range shards {
			holders[keys[id]] = engine.Holder{Candidate: "a", Node: "a", Rev: uint64(id + 1)}
			mine[id] = stateOwned
		}
		longHeld(p, mine)
		acquire, handoff, _ := p.decide(keys, holders, mine, t0)
		assert.Empty(t, acquire)
		require.Len(t, handoff, 1)
		assert.Contains(t, theirs, handoff[0])

		mine[handoff[0]] = stateMoving
		_, handoff, _ = p.decide(keys, holders, mine, t0)
		assert.Empty(t, handoff, "one move in flight already")
	})

	t.Run("no handoff to a target that is not live", func(t *testing.T) {
		p := newPlanner(testConfig(shards), "a")
		adoptAll(p, members, t0)
		p.current = []string{"a"} // b vanished, not yet observed
		holders := map[string]engine.Holder{}
		mine := map[int]runState{}
		for _, id := range theirs {
			holders[keys[id]] = engine.Holder{Candidate: "a", Node: "a", Rev: 1}
			mine[id] = stateOwned
		}
		longHeld(p, mine)
		_, handoff, _ := p.decide(keys, holders, mine, t0)
		assert.Empty(t, handoff)
	})

	t.Run("a rescued shard is not handed back for a TTL", func(t *testing.T) {
		p := newPlanner(testConfig(shards), "a")
		adoptAll(p, members, t0)
		p.decide(keys, nil, nil, t0)
		late := t0.Add(time.Second)
		acquire, _, _ := p.decide(keys, nil, nil, late)
		require.NotEmpty(t, acquire)
		holders := map[string]engine.Holder{}
		mine := map[int]runState{}
		for _, id := range acquire {
			holders[keys[id]] = engine.Holder{Candidate: "a", Node: "a", Rev: 1}
			mine[id] = stateOwned
		}
		longHeld(p, mine)
		_, handoff, _ := p.decide(keys, holders, mine, late.Add(time.Millisecond))
		assert.Empty(t, handoff)
		_, handoff, _ = p.decide(keys, holders, mine, late.Add(p.cfg.TTL+time.Millisecond))
		assert.NotEmpty(t, handoff)
	})

	t.Run("a non-member neither acquires nor rescues", func(t *testing.T) {
		p := newPlanner(testConfig(shards), "c")
		adoptAll(p, members, t0)
		acquire, _, _ := p.decide(keys, nil, nil, t0.Add(time.Hour))
		assert.Empty(t, acquire)
	})
}

func plan2all(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

func TestPlannerReportsOwnerlessOnce(t *testing.T) {
	p := newPlanner(testConfig(2), "c")
	t0 := clock.Real().Now()
	p.decide(keysOf(2), nil, nil, t0)
	assert.Empty(t, p.ownerless(t0.Add(500*time.Millisecond), time.Second))
	assert.Equal(t, []int{0, 1}, p.ownerless(t0.Add(2*time.Second), time.Second))
	assert.Empty(t, p.ownerless(t0.Add(3*time.Second), time.Second), "reported once")
}

func TestPlannerSettlesAColdStart(t *testing.T) {
	keys := keysOf(8)
	t0 := clock.Real().Now()
	settle := time.Second
	p := newPlanner(testConfig(8), "a")
	p.settle(t0.Add(settle), t0.Add(settle), 0)
	p.observe([]string{"a"}, t0)
	p.observe([]string{"a", "b"}, t0.Add(900*time.Millisecond)) // b appears late in the window
	acquire, _, wait := p.decide(keys, nil, nil, t0.Add(500*time.Millisecond))
	assert.Empty(t, acquire, "nothing acquired in the window while no shard is held")
	assert.Equal(t, 500*time.Millisecond, wait, "look again when the window ends")

	end := t0.Add(settle)
	p.observe([]string{"a", "b"}, end)
	assert.Equal(t, []string{"a", "b"}, p.adopted, "members seen in the window are adopted at its end, debounce or not")
	acquire, _, _ = p.decide(keys, nil, nil, end)
	for _, id := range acquire {
		assert.Equal(t, "a", p.plan[id], "after the window only shards planned here are taken")
	}
	assert.NotEmpty(t, acquire)
	assert.Less(t, len(acquire), 8, "the first plan already includes b")
}

// Three servers, the third node's group starting 1.2 s after the first:
// the window stretches until it is seen (at most 3·Settle), so the first
// plan has all three and no shard starts on a node only to move.
func TestPlannerSettleWaitsForTheClusterSize(t *testing.T) {
	keys := keysOf(9)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(9), "a")
	p.settle(t0.Add(time.Second), t0.Add(3*time.Second), 3)
	p.observe([]string{"a", "b"}, t0)
	at := t0.Add(time.Second)
	p.observe([]string{"a", "b"}, at)
	acquire, _, wait := p.decide(keys, nil, nil, at)
	assert.Empty(t, acquire, "two of three servers' nodes: still settling")
	assert.Equal(t, settleStep, wait)

	at = at.Add(250 * time.Millisecond)
	p.observe([]string{"a", "b", "c"}, at) // c arrives
	at = at.Add(settleStep)
	p.observe([]string{"a", "b", "c"}, at)
	assert.Equal(t, []string{"a", "b", "c"}, p.adopted, "all three in the first plan")
	acquire, _, _ = p.decide(keys, nil, nil, at)
	assert.Len(t, acquire, 3)

	lone := newPlanner(testConfig(9), "a")
	lone.settle(t0.Add(time.Second), t0.Add(3*time.Second), 3)
	for at := t0; at.Mono <= t0.Add(3*time.Second).Mono; at = at.Add(settleStep) {
		lone.observe([]string{"a", "b"}, at)
	}
	acquire, _, _ = lone.decide(keys, nil, nil, t0.Add(3*time.Second))
	assert.NotEmpty(t, acquire, "a group on fewer nodes than the cluster starts after 3·Settle")
}

// Three servers whose nodes all appear 200 ms into a 1 s window: the
// first plan is complete, so the window ends then and not at 1 s.
func TestPlannerSettleEndsOnceTheClusterIsSeen(t *testing.T) {
	keys := keysOf(9)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(9), "a")
	p.settle(t0.Add(time.Second), t0.Add(3*time.Second), 3)
	p.observe([]string{"a", "b"}, t0)
	acquire, _, _ := p.decide(keys, nil, nil, t0)
	assert.Empty(t, acquire, "two of three servers' nodes: settling")

	at := t0.Add(200 * time.Millisecond)
	p.observe([]string{"a", "b", "c"}, at)
	assert.Equal(t, []string{"a", "b", "c"}, p.adopted, "all three adopted at once, without Debounce")
	acquire, _, _ = p.decide(keys, nil, nil, at)
	assert.Len(t, acquire, 3, "the window ended when the third node appeared")
	for _, id := range acquire {
		assert.Equal(t, "a", p.plan[id])
	}
}

// A group on fewer nodes than the cluster has: the window stretches to
// 3·Settle, and a member first seen just before that end is in the first
// plan without waiting out Debounce.
func TestPlannerStretchedSettleAdoptsLateMembers(t *testing.T) {
	keys := keysOf(9)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(9), "a")
	p.settle(t0.Add(time.Second), t0.Add(3*time.Second), 4)
	at := t0
	for ; at.Mono < t0.Add(2900*time.Millisecond).Mono; at = at.Add(settleStep) {
		p.observe([]string{"a", "b"}, at)
	}
	p.observe([]string{"a", "b", "c"}, at) // c appears 100 ms before the window's last end
	end := t0.Add(3 * time.Second)
	p.observe([]string{"a", "b", "c"}, end)
	assert.Equal(t, []string{"a", "b", "c"}, p.adopted, "c is in the first plan")
	acquire, _, _ := p.decide(keys, nil, nil, end)
	assert.Len(t, acquire, 3)
}

func TestPlannerSettleDoesNotDelayAJoinToARunningGroup(t *testing.T) {
	keys := keysOf(8)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(8), "a")
	p.settle(t0.Add(time.Second), t0.Add(time.Second), 0)
	p.observe([]string{"a", "b"}, t0)
	p.observe([]string{"a", "b"}, t0.Add(DefaultDebounce))
	holders := map[string]engine.Holder{}
	for id, key := range keys {
		if p.plan[id] == "b" {
			holders[key] = engine.Holder{Candidate: "b", Node: "b"}
		}
	}
	acquire, _, _ := p.decide(keys, holders, nil, t0.Add(DefaultDebounce))
	assert.NotEmpty(t, acquire, "a group with held shards is running: no settle")
	for _, id := range acquire {
		assert.Equal(t, "a", p.plan[id])
	}
}

func TestPlannerWaitsForTheTargetToPrepare(t *testing.T) {
	const shards = 8
	keys := keysOf(shards)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(shards), "a")
	adoptAll(p, []string{"a", "b"}, t0)
	holders, mine := allOwnedBy("a", keys)
	longHeld(p, mine)
	ready := map[int]bool{}
	p.prepared = func(target string, id int) bool { return target == "b" && ready[id] }

	_, handoff, wait := p.decide(keys, holders, mine, t0)
	assert.Empty(t, handoff, "no handoff before the target prepared")
	assert.Equal(t, min(idle, p.cfg.PrepareTimeout-t0.Sub(p.planAt)), wait, "look again by the time the prepare times out")

	for id := range shards {
		if p.plan[id] == "b" {
			ready[id] = true
			break
		}
	}
	_, handoff, _ = p.decide(keys, holders, mine, t0)
	require.Len(t, handoff, 1, "only the prepared shard moves")
	assert.True(t, ready[handoff[0]])

	_, handoff, _ = p.decide(keys, holders, mine, p.planAt.Add(p.cfg.PrepareTimeout))
	assert.Len(t, handoff, min(p.cfg.MaxMoves, shards/2), "after PrepareTimeout the handoffs go ahead anyway")
}

// A shard that just arrived is not handed on until 2·Debounce have passed:
// the sender adopted a member this node may not have adopted yet, and
// handing it straight back would start a ping-pong.
func TestPlannerKeepsAShardThatJustArrived(t *testing.T) {
	const shards = 8
	keys := keysOf(shards)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(shards), "a")
	adoptAll(p, []string{"a", "b"}, t0)
	holders, mine := allOwnedBy("a", keys)
	_, handoff, wait := p.decide(keys, holders, mine, t0)
	assert.Empty(t, handoff, "handed on at once")
	assert.Equal(t, 2*p.cfg.Debounce, wait)
	_, handoff, _ = p.decide(keys, holders, mine, t0.Add(2*p.cfg.Debounce))
	assert.NotEmpty(t, handoff, "moved on once the plans had time to agree")
}

// While this node cannot acquire (before the genesis record), the fallback
// delays do not run out: when it can, each free shard goes to its target,
// not to every member at once.
func TestPlannerPausedFallbackDoesNotRace(t *testing.T) {
	const shards = 8
	keys := keysOf(shards)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(shards), "a")
	adoptAll(p, []string{"a", "b"}, t0)
	p.decide(keys, nil, nil, t0)
	late := t0.Add(p.cfg.TTL) // past every rescue delay
	p.pause(late)             // the bucket was not acquirable until now
	acquire, _, _ := p.decide(keys, nil, nil, late)
	for _, id := range acquire {
		assert.Equal(t, "a", p.plan[id], "shard %d taken from its target b", id)
	}
	assert.NotEmpty(t, acquire)
}

// A store outage that ended every session: the first node back with a new
// session takes only the shards it would own with every member back, for
// Settle, though an away member's old record still looks held (so the
// cold-start rule does not apply) and the plan gives it the away members'
// shards; after Settle, it takes those too.
func TestPlannerWaitsForTheOthersAfterItsSessionWasLost(t *testing.T) {
	keys := keysOf(9)
	t0 := clock.Real().Now()
	p := newPlanner(testConfig(9), "a")
	p.newSession("a.1", t0, 3)
	p.observe([]string{"a", "b", "c"}, t0)
	p.observe([]string{"a", "b", "c"}, t0.Add(time.Second)) // adopted after Debounce
	require.Equal(t, []string{"a", "b", "c"}, p.adopted)
	var own []int
	stale := map[string]engine.Holder{}
	for id, target := range p.plan {
		switch target {
		case "a":
			own = append(own, id)
		case "b":
			stale[keys[id]] = engine.Holder{Candidate: "b", Node: "b"}
		}
	}

	lost := t0.Add(time.Minute) // every session ended
	p.observe(nil, lost)
	back := lost.Add(time.Second)
	p.newSession("a.2", back, 3)
	p.observe([]string{"a", "b"}, back) // b's old session still looks live
	acquire, _, _ := p.decide(keys, nil, nil, back)
	assert.ElementsMatch(t, own, acquire, "its own shards at once, though no shard is held")
	p.observe([]string{"a"}, back.Add(100*time.Millisecond))
	acquire, _, _ = p.decide(keys, stale, nil, back.Add(100*time.Millisecond))
	assert.ElementsMatch(t, own, acquire, "its own shards, and only those")

	mine := map[int]runState{}
	for _, id := range own {
		mine[id] = stateOwned
	}
	after := back.Add(p.cfg.Settle)
	p.observe([]string{"a"}, after)
	acquire, _, _ = p.decide(keys, stale, mine, after)
	assert.Len(t, acquire, 3, "c's shards, once Settle is over (b's look held)")
}
