package shard

import (
	"maps"
	"slices"
	"time"

	"github.com/nonchan7720/ronin/balancer"
	"github.com/nonchan7720/ronin/internal/clock"
	"github.com/nonchan7720/ronin/internal/engine"
)

// runState is what this node is doing with a shard.
type runState int

const (
	stateOwned runState = iota + 1
	stateAcquiring
	stateMoving
)

// idle is how long to wait when nothing is scheduled.
const idle = time.Second

// planner turns the bucket's view into actions for one node. It is pure:
// no I/O, no goroutines; callers pass the time.
//
// Membership: a member that disappears (session gone or leaving) is dropped
// from the plan at once, but remembered as away for Remember: only its
// shards are spread over the others, and they go back to it, nobody
// else's moving, when it is adopted again (balancer.PlanAway). So a
// restart or a short cut-off moves each of its shards away and back and
// no other shard. A new member is adopted only after it has been seen for
// Debounce, so a burst of joins moves shards once.
//
// Actions: a free shard is taken by its planned target at once; any other
// member takes it after TTL/2 + rank*Stagger, counted from when the
// shard was seen free or the plan last changed, whichever is later, rank
// being its rendezvous rank among the live members, so that no shard waits on a
// target that does not act (S3). A held shard planned for another live
// member is handed over, at most MaxMoves at a time.
type planner struct {
	cfg       Config
	self      string
	adopted   []string                 // members the plan uses, sorted
	current   []string                 // live members now, sorted
	firstSeen map[string]clock.Instant // members seen but not yet adopted
	away      map[string]clock.Instant // members dropped from the plan less than Remember ago, and since when
	plan      []string
	full      []string              // the plan with every away member back (Plan over adopted and away)
	planAt    clock.Instant         // when plan last changed
	freeSince map[int]clock.Instant // when this node first saw a shard free
	reported  map[int]bool          // shards reported ownerless
	rescued   map[int]clock.Instant // shards taken by fallback: their target did not act
	arrived   map[int]clock.Instant // when each shard owned here was first seen owned
	session   string                // this node's session when last seen (newSession)
	rejoining bool                  // the settle window is newSession's
	settleEnd clock.Instant         // cold start: no acquisitions before it (settle)
	settleCap clock.Instant         // the latest settleEnd while members are missing
	expected  int                   // members a cold start waits for (the cluster's servers), 0: none
	// prepared reports whether target has prepared shard id, or does not
	// prepare (Config.Prepare); nil means every target is ready.
	prepared func(target string, id int) bool
}

func newPlanner(cfg Config, self string) *planner {
	return &planner{
		cfg:       cfg,
		self:      self,
		firstSeen: map[string]clock.Instant{},
		away:      map[string]clock.Instant{},
		plan:      balancer.Plan(cfg.Shards, nil),
		full:      balancer.Plan(cfg.Shards, nil),
		freeSince: map[int]clock.Instant{},
		reported:  map[int]bool{},
		rescued:   map[int]clock.Instant{},
		arrived:   map[int]clock.Instant{},
	}
}

// settle starts the cold-start window: until end, while no shard of the
// group has a live holder, nothing is acquired, so that nodes started
// together all appear before the first plan is acted on; members seen
// before end are adopted at end without waiting out Debounce. While fewer
// than expected members are seen, the window stretches, at most to
// latest: a node started a little after the others is still in the first
// plan. Once expected members are seen the window ends at once.
func (p *planner) settle(end, latest clock.Instant, expected int) {
	p.settleEnd, p.settleCap, p.expected = end, latest, expected
}

// newSession tells the planner this node's current session ("" while it
// has none). A session that replaces a lost one opens the settle window
// again, for Settle at most: if the store was out for every node (the
// bucket's stream lost its leader for longer than the TTL, or a split),
// every session ended and every shard is free, and the first node back
// would otherwise take the shards of members not back yet, only to hand
// them back a moment later. While the window is open, this node takes
// only the shards it would own with every away member back (see decide).
// It lasts Settle: members whose sessions ended with this node's may
// still look live in its view, so their count says nothing. A node whose session
// alone ended finds the others' shards held and loses nothing by it.
func (p *planner) newSession(id string, now clock.Instant, expected int) {
	if id == "" || id == p.session {
		return
	}
	if p.session != "" {
		p.settle(now.Add(p.cfg.Settle), now.Add(p.cfg.Settle), expected)
		p.rejoining = true
	}
	p.session = id
}

// rejoin reports whether newSession's settle window is open now.
func (p *planner) rejoin(now clock.Instant) bool {
	p.rejoining = p.rejoining && p.settling(now)
	return p.rejoining
}

// settleStep is how often a stretched cold-start window looks again (a
// new member also wakes the group), and settleStretch times Settle the
// latest it ends.
const (
	settleStep    = 100 * time.Millisecond
	settleStretch = 3
)

// settling reports whether now is in the settle window: before its end,
// or before its latest end while fewer members than expected are seen.
func (p *planner) settling(now clock.Instant) bool {
	return now.Mono < p.settleEnd.Mono || p.stretching(now)
}

// stretching reports whether the window is stretched past its end now,
// waiting for members.
func (p *planner) stretching(now clock.Instant) bool {
	return now.Mono < p.settleCap.Mono && len(p.current) < p.expected
}

// settleWait is how long to wait before looking again while settling.
func (p *planner) settleWait(now clock.Instant) time.Duration {
	if now.Mono < p.settleEnd.Mono {
		return p.settleEnd.Sub(now)
	}
	return settleStep
}

// observe folds the live member set in and returns when to look again for
// a member still being debounced.
func (p *planner) observe(members []string, now clock.Instant) time.Duration {
	switch {
	case !p.settling(now):
	case p.expected > 0 && len(members) >= p.expected && !p.rejoin(now):
		// Every storing server's node is seen: the first plan has them
		// all, so the window ends now. (Not after newSession: members
		// whose sessions ended with this node's may still look live.)
		p.settleEnd, p.settleCap = now, now
	case p.stretching(now) && now.Mono > p.settleEnd.Mono:
		p.settleEnd = now // the window lasted until now: members first seen now are in it
	}
	p.current = members
	adopted := slices.DeleteFunc(slices.Clone(p.adopted), func(m string) bool { return !slices.Contains(members, m) })
	wait := idle
	for m := range p.firstSeen {
		if !slices.Contains(members, m) {
			delete(p.firstSeen, m)
		}
	}
	for _, m := range members {
		if slices.Contains(adopted, m) {
			continue
		}
		first, ok := p.firstSeen[m]
		if !ok {
			first = now
			p.firstSeen[m] = now
		}
		// After newSession, members are adopted at once: decide takes only
		// this node's shards of the full plan meanwhile, so nothing a
		// debounce would batch can move.
		settled := !p.settling(now) && first.Mono <= p.settleEnd.Mono || p.rejoin(now)
		if left := p.cfg.Debounce - now.Sub(first); left > 0 && !settled {
			wait = min(wait, left)
			continue
		}
		delete(p.firstSeen, m)
		adopted = append(adopted, m)
	}
	slices.Sort(adopted)
	awayChanged, awayWait := p.remember(adopted, now)
	wait = min(wait, awayWait)
	if awayChanged || !slices.Equal(adopted, p.adopted) {
		p.adopted = adopted
		away := slices.Collect(maps.Keys(p.away))
		p.plan = balancer.PlanAway(p.cfg.Shards, adopted, away)
		p.full = balancer.Plan(p.cfg.Shards, append(slices.Clone(adopted), away...))
		p.planAt = now
	}
	return wait
}

// remember updates the away members for the new adopted set: a member the
// plan dropped is away from now, one adopted again is back, and one away
// for Remember is forgotten. It reports whether the set changed and when
// the next member is due to be forgotten.
func (p *planner) remember(adopted []string, now clock.Instant) (changed bool, wait time.Duration) {
	wait = idle
	if p.cfg.Remember <= 0 {
		return false, wait
	}
	for _, m := range p.adopted {
		if !slices.Contains(adopted, m) {
			p.away[m], changed = now, true
		}
	}
	for m, since := range p.away {
		left := p.cfg.Remember - now.Sub(since)
		if slices.Contains(adopted, m) || left <= 0 {
			delete(p.away, m)
			changed = true
			continue
		}
		wait = min(wait, left)
	}
	return changed, wait
}

// decide returns the shards to acquire and to hand over now, and when to
// look again for a free shard whose fallback delay has not run out.
// holders holds the keys with a live holder; mine what this node does.
func (p *planner) decide(keys []string, holders map[string]engine.Holder, mine map[int]runState, now clock.Instant) (acquire, handoff []int, wait time.Duration) {
	wait = idle
	moving := 0
	for _, st := range mine {
		if st == stateMoving {
			moving++
		}
	}
	member := slices.Contains(p.current, p.self)
	rejoining := p.rejoin(now)
	if p.settling(now) && len(holders) == 0 && !rejoining {
		// A cold start (no shard held anywhere): act on the plan only
		// once the nodes started together have had time to appear.
		return nil, nil, p.settleWait(now)
	}
	for id := range p.arrived {
		if mine[id] != stateOwned && mine[id] != stateMoving {
			delete(p.arrived, id)
		}
	}
	for id, key := range keys {
		h, held := holders[key]
		if held {
			delete(p.freeSince, id)
			delete(p.reported, id)
		}
		if st, ok := mine[id]; ok {
			delete(p.freeSince, id) // ours, even if a stale view says free
			if _, seen := p.arrived[id]; !seen && st == stateOwned {
				p.arrived[id] = now
			}
			if left := p.settleBack(id, now); st == stateOwned && left > 0 {
				wait = min(wait, left) // just arrived: let the sender's plan and ours agree
				continue
			}
			if st == stateOwned && held && h.Node == p.self && p.movesAway(id, now) && moving < p.cfg.MaxMoves {
				// The target prepares first (Config.Prepare), for at most
				// PrepareTimeout since the plan moved the shard.
				if left := p.cfg.PrepareTimeout - now.Sub(p.planAt); p.prepared != nil && !p.prepared(p.plan[id], id) && left > 0 {
					wait = min(wait, left)
					continue
				}
				handoff = append(handoff, id)
				moving++
			}
			continue
		}
		if held {
			continue
		}
		since, ok := p.freeSince[id]
		if !ok {
			since = now
			p.freeSince[id] = now
		}
		if rejoining && p.full[id] != p.self {
			// Another member's with every away member back: it may be back
			// any moment (newSession). Not rescued either until the window
			// ends.
			wait = min(wait, p.settleWait(now))
			continue
		}
		if p.plan[id] == p.self {
			acquire = append(acquire, id)
			continue
		}
		if !member {
			continue
		}
		// A target gets the full delay from when the plan named it, so a
		// plan change (a burst of joins at start) causes no rescues.
		// Cheap bound first: no rank waits less than rescueDelay.
		elapsed := now.Sub(later(since, p.planAt))
		if base := p.rescueDelay(); elapsed < base {
			wait = min(wait, base-elapsed)
			continue
		}
		rank := slices.Index(balancer.Rank(id, p.current), p.self)
		delay := p.rescueDelay() + time.Duration(rank)*p.cfg.Stagger
		if elapsed >= delay {
			acquire = append(acquire, id)
			p.rescued[id] = now
		} else {
			wait = min(wait, delay-elapsed)
		}
	}
	return acquire, handoff, wait
}

// settled reports whether this node is in the plan and runs every shard
// the plan gives it.
func (p *planner) settled(mine map[int]runState) bool {
	if !slices.Contains(p.adopted, p.self) {
		return false
	}
	for id, target := range p.plan {
		if target == p.self && mine[id] != stateOwned {
			return false
		}
	}
	return true
}

// incoming returns the shards the plan gives this node that another live
// member holds: the ones to prepare.
func (p *planner) incoming(keys []string, holders map[string]engine.Holder) []int {
	var out []int
	for id, key := range keys {
		if h, held := holders[key]; held && h.Node != p.self && p.plan[id] == p.self {
			out = append(out, id)
		}
	}
	return out
}

// rescueDelay is how long a free shard is left to its planned target before
// the first-ranked other member takes it. Half a TTL: long enough for a
// busy target (a thousand shards to acquire at start) to act, short enough
// that a target that does not act leaves the shard ownerless for less than
// the TTL.
func (p *planner) rescueDelay() time.Duration { return p.cfg.TTL / 2 }

func later(a, b clock.Instant) clock.Instant {
	if a.Mono > b.Mono {
		return a
	}
	return b
}

// settleBack is how long a shard that just arrived here is kept before the
// plan may move it on: 2·Debounce. Nodes adopt a new member up to a
// Debounce apart; in between their plans disagree, and a shard handed over
// by one would be handed straight back by the other, again and again.
func (p *planner) settleBack(id int, now clock.Instant) time.Duration {
	at, ok := p.arrived[id]
	if !ok {
		return 0
	}
	return 2*p.cfg.Debounce - now.Sub(at)
}

// pause restarts the wait of every free shard at now: while this node
// cannot acquire (no genesis record yet, no session), the fallback delays
// must not run out, or every member would take every shard at once when it
// can acquire again instead of leaving each to its planned target.
func (p *planner) pause(now clock.Instant) {
	for id := range p.freeSince {
		p.freeSince[id] = now
	}
}

// movesAway reports whether the plan gives shard id to another live member.
// A shard this node rescued because its target did not take it stays here
// for a TTL, so that a target that does not act causes no ping-pong.
func (p *planner) movesAway(id int, now clock.Instant) bool {
	if at, ok := p.rescued[id]; ok {
		if now.Sub(at) < p.cfg.TTL {
			return false
		}
		delete(p.rescued, id)
	}
	target := p.plan[id]
	return target != "" && target != p.self && slices.Contains(p.current, target)
}

// ownerless returns the shards free for longer than ttl in this node's
// view that were not reported before.
func (p *planner) ownerless(now clock.Instant, ttl time.Duration) []int {
	var out []int
	for id, since := range p.freeSince {
		if !p.reported[id] && now.Sub(since) > ttl {
			p.reported[id] = true
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}
