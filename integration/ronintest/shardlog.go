package ronintest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nonchan7720/ronin"
)

// ShardLog records every handler run of shard groups under test and
// checks, at each start, that no other handler of the shard still has a
// live ctx (E1 for handlers) and that tokens grow (E2): the shard-overlap
// checker.
type ShardLog struct {
	mu         sync.Mutex
	live       map[int][]*Run // shard -> calls whose ctx is live
	calls      []*Run
	lastRev    map[int]uint64
	violations []string
}

// Run is one handler run in a ShardLog.
type Run struct {
	Shard    int
	Node     string
	Rev      uint64
	Ctx      context.Context
	Start    time.Time
	End      time.Time // when it returned; zero while it runs
	Returned bool
}

// NewShardLog returns an empty log.
func NewShardLog() *ShardLog {
	return &ShardLog{live: map[int][]*Run{}, lastRev: map[int]uint64{}}
}

// Handler returns a ShardHandler for node that records into the log and
// runs until its ctx ends.
func (l *ShardLog) Handler(node string) ronin.ShardHandler {
	return func(ctx context.Context, id int, rev uint64) error {
		c := &Run{Shard: id, Node: node, Rev: rev, Ctx: ctx, Start: time.Now()}
		l.mu.Lock()
		for _, other := range l.live[id] {
			if other.Ctx.Err() == nil {
				l.violations = append(l.violations, fmt.Sprintf("shard %d: %s (rev %d) started while %s (rev %d) still runs", id, node, rev, other.Node, other.Rev))
			}
		}
		if rev < l.lastRev[id] || (rev == l.lastRev[id] && !l.restartOf(id, node, rev)) {
			l.violations = append(l.violations, fmt.Sprintf("shard %d: token %d after %d", id, rev, l.lastRev[id]))
		}
		l.lastRev[id] = rev
		l.live[id] = append(l.live[id], c)
		l.calls = append(l.calls, c)
		l.mu.Unlock()
		<-ctx.Done()
		l.mu.Lock()
		c.End, c.Returned = time.Now(), true
		calls := l.live[id]
		for i, x := range calls {
			if x == c {
				l.live[id] = append(calls[:i], calls[i+1:]...)
				break
			}
		}
		l.mu.Unlock()
		return nil
	}
}

// restartOf reports whether a call with this token on this node was seen
// (a handler restart keeps its token).
func (l *ShardLog) restartOf(id int, node string, rev uint64) bool {
	for _, c := range l.calls {
		if c.Shard == id && c.Node == node && c.Rev == rev {
			return true
		}
	}
	return false
}

// Running returns, per shard, the nodes whose handler runs now.
func (l *ShardLog) Running() map[int][]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int][]string{}
	for id, calls := range l.live {
		for _, c := range calls {
			out[id] = append(out[id], c.Node)
		}
	}
	return out
}

// Violations returns what the log found wrong, one line each.
func (l *ShardLog) Violations() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.violations...)
}

// Check fails t if the log found anything wrong.
func (l *ShardLog) Check(t testing.TB) {
	t.Helper()
	if v := l.Violations(); len(v) > 0 {
		t.Fatalf("shard log: %d violations:\n%s", len(v), strings.Join(v, "\n"))
	}
}

// Handover is a shard moving from one node's handler to another node's.
type Handover struct {
	Shard    int
	From, To string
	Gap      time.Duration // the new handler's start − the old one's return
}

// Handovers returns, in start order, every handover in the log whose new
// handler started after since: a run on another node than the shard's
// previous run, which had returned.
func (l *ShardLog) Handovers(since time.Time) []Handover {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []Handover
	last := map[int]*Run{}
	for _, c := range l.calls {
		if prev := last[c.Shard]; prev != nil && prev.Returned && c.Start.After(since) && prev.Node != c.Node {
			out = append(out, Handover{Shard: c.Shard, From: prev.Node, To: c.Node, Gap: c.Start.Sub(prev.End)})
		}
		last[c.Shard] = c
	}
	return out
}

// Gaps returns, for every handover in the log after since, the time from
// the old handler's return to the next handler's start on the shard.
func (l *ShardLog) Gaps(since time.Time) []time.Duration {
	var out []time.Duration
	for _, h := range l.Handovers(since) {
		out = append(out, h.Gap)
	}
	return out
}

// Owners returns the node of each shard 0..shards-1; ok is false unless
// every one of them has exactly one running handler.
func (l *ShardLog) Owners(shards int) (owners map[int]string, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	owners = make(map[int]string, shards)
	for id := range shards {
		if len(l.live[id]) != 1 {
			return nil, false
		}
		owners[id] = l.live[id][0].Node
	}
	return owners, true
}

// Settled reports whether every shard 0..shards-1 has exactly one running
// handler and each of nodes, and no other node, runs floor or ceil of
// shards/len(nodes) of them (S1); if so it returns each shard's node.
func (l *ShardLog) Settled(shards int, nodes []string) (owners map[int]string, ok bool) {
	owners, ok = l.Owners(shards)
	if !ok || len(nodes) == 0 {
		return nil, false
	}
	counts := map[string]int{}
	for _, n := range owners {
		counts[n]++
	}
	lo, hi := shards/len(nodes), (shards+len(nodes)-1)/len(nodes)
	for _, n := range nodes {
		if counts[n] < lo || counts[n] > hi {
			return nil, false
		}
	}
	if len(counts) != len(nodes) {
		return nil, false
	}
	return owners, true
}

// Runs returns a copy of every run so far, in start order.
func (l *ShardLog) Runs() []Run {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Run, len(l.calls))
	for i, c := range l.calls {
		out[i] = *c
	}
	return out
}

// LiveSince returns, per shard with exactly one running handler, when that
// handler started.
func (l *ShardLog) LiveSince() map[int]time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[int]time.Time{}
	for id, calls := range l.live {
		if len(calls) == 1 {
			out[id] = calls[0].Start
		}
	}
	return out
}
