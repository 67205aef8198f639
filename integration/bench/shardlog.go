package main

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/nonchan7720/ronin"
)

// hcall is one handler run.
type hcall struct {
	shard      int
	node       string
	start, end time.Time
	returned   bool
}

// shardLog records every handler run of a group.
type shardLog struct {
	mu       sync.Mutex
	live     map[int][]*hcall // shard -> runs that have not returned
	calls    []*hcall         // in start order
	overlaps int              // starts while another run of the shard had not returned
}

func newShardLog() *shardLog { return &shardLog{live: map[int][]*hcall{}} }

// handler records start and return and runs until its ctx ends.
func (l *shardLog) handler(node string) ronin.ShardHandler {
	return func(ctx context.Context, id int, _ uint64) error {
		c := &hcall{shard: id, node: node, start: time.Now()}
		l.mu.Lock()
		if len(l.live[id]) > 0 {
			l.overlaps++
		}
		l.live[id] = append(l.live[id], c)
		l.calls = append(l.calls, c)
		l.mu.Unlock()
		<-ctx.Done()
		l.mu.Lock()
		c.end, c.returned = time.Now(), true
		l.live[id] = slices.DeleteFunc(l.live[id], func(x *hcall) bool { return x == c })
		l.mu.Unlock()
		return nil
	}
}

// owners returns each shard's single running handler's node; ok is false
// if some shard has none or several.
func (l *shardLog) owners(shards int) (map[int]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]string, shards)
	for id := range shards {
		if len(l.live[id]) != 1 {
			return nil, false
		}
		out[id] = l.live[id][0].node
	}
	return out, true
}

// settled reports whether every shard has exactly one running handler and
// nodes own floor/ceil of them each (S1).
func (l *shardLog) settled(shards int, nodes []string) bool {
	owners, ok := l.owners(shards)
	if !ok {
		return false
	}
	counts := map[string]int{}
	for _, n := range owners {
		counts[n]++
	}
	lo, hi := shards/len(nodes), (shards+len(nodes)-1)/len(nodes)
	for _, n := range nodes {
		if counts[n] < lo || counts[n] > hi {
			return false
		}
	}
	return len(counts) == len(nodes)
}

// move is one shard changing node: gap is new start − old return.
type move struct {
	from, to string
	gap      time.Duration
}

// movesSince returns the moves whose new handler started after since.
func (l *shardLog) movesSince(since time.Time) []move {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []move
	last := map[int]*hcall{}
	for _, c := range l.calls {
		if p := last[c.shard]; p != nil && p.node != c.node && p.returned && c.start.After(since) {
			out = append(out, move{p.node, c.node, c.start.Sub(p.end)})
		}
		last[c.shard] = c
	}
	return out
}

// runs returns a copy of every handler run so far, in start order; a run
// that has not returned has returned false and a zero end.
func (l *shardLog) runs() []hcall {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]hcall, len(l.calls))
	for i, c := range l.calls {
		out[i] = *c
	}
	return out
}

func (l *shardLog) overlapCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.overlaps
}

// member is one node's running group.
type member struct {
	g      *ronin.ShardGroup
	cancel context.CancelFunc
	done   chan struct{}
}

func runMember(g *ronin.ShardGroup) *member {
	ctx, cancel := context.WithCancel(context.Background())
	m := &member{g: g, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(m.done); _ = g.Run(ctx) }()
	return m
}

func (m *member) stop(ctx context.Context) error {
	m.cancel()
	return waitDone(ctx, m.done, time.Minute)
}
