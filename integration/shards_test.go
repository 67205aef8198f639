package integration

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// member is one node's group under test.
type member struct {
	group  *ronin.ShardGroup
	node   string
	cancel context.CancelFunc
	exited chan struct{}
	err    error
}

func startGroup(t *testing.T, m *ronin.Manager, cfg ronin.ShardConfig, log *ronintest.ShardLog) *member {
	t.Helper()
	cfg.Handler = log.Handler(m.NodeID())
	g, err := m.RegisterShards(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	mb := &member{group: g, node: m.NodeID(), cancel: cancel, exited: make(chan struct{})}
	go func() { mb.err = g.Run(ctx); close(mb.exited) }()
	t.Cleanup(mb.stop)
	return mb
}

func (mb *member) stop() {
	mb.cancel()
	<-mb.exited
}

// settled waits until every shard has exactly one running handler, on the
// expected nodes, spread floor/ceil over them (S1).
func settled(t *testing.T, log *ronintest.ShardLog, shards int, nodes []string, timeout time.Duration) map[int]string {
	t.Helper()
	var owners map[int]string
	ronintest.Eventually(t, timeout, func() bool {
		var ok bool
		owners, ok = log.Settled(shards, nodes)
		return ok
	}, "%d shards spread over %v: running %v", shards, nodes, log.Running())
	return owners
}

func movedCount(before, after map[int]string) int {
	n := 0
	for id, node := range after {
		if before[id] != node {
			n++
		}
	}
	return n
}

func shardConfig(bucket string, shards int, ttl time.Duration) ronin.ShardConfig {
	return ronin.ShardConfig{BucketName: bucket, Shards: shards, TTL: ttl}
}

// TestShardsLifecycle runs a 3-node cluster through join, graceful leave
// and crash, checking spread, movement, one handler per shard and tokens.
func TestShardsLifecycle(t *testing.T) {
	const shards = 32
	c := ronintest.NewCluster(t, 3)
	log := ronintest.NewShardLog()
	cfg := shardConfig("lifecycle", shards, time.Second)
	groups := []*member{startGroup(t, c.Manager(0), cfg, log), startGroup(t, c.Manager(1), cfg, log)}
	pollOwned(t, groups[0].group) // Owned and Assignment are safe while shards move
	before := settled(t, log, shards, []string{"n1", "n2"}, 10*time.Second)

	// Join: about S/N shards move to the newcomer, the rest stay.
	groups = append(groups, startGroup(t, c.Manager(2), cfg, log))
	afterJoin := settled(t, log, shards, []string{"n1", "n2", "n3"}, 10*time.Second)
	moves := movedCount(before, afterJoin)
	t.Logf("join moved %d shards (ideal %d)", moves, shards/3)
	assert.LessOrEqual(t, moves, shards/3+6)

	// Graceful leave: the leaver's shards move with millisecond gaps.
	leaveAt := time.Now()
	groups[0].stop()
	require.NoError(t, groups[0].err)
	afterLeave := settled(t, log, shards, []string{"n2", "n3"}, 10*time.Second)
	moves = movedCount(afterJoin, afterLeave)
	t.Logf("leave moved %d shards (ideal %d)", moves, countOn(afterJoin, "n1"))
	assert.LessOrEqual(t, moves, countOn(afterJoin, "n1")+6)
	for _, g := range log.Gaps(leaveAt) {
		assert.Less(t, g, 500*time.Millisecond, "drain gap")
	}

	// Crash of a member: its shards move after the TTL.
	c.Kill(2)
	settled(t, log, shards, []string{"n2"}, 10*time.Second)
	log.Check(t)
}

// pollOwned calls Owned and Assignment in a loop until the test ends, as
// a status endpoint would.
func pollOwned(t *testing.T, g *ronin.ShardGroup) {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			_ = g.Owned()
			_ = g.Assignment()
			time.Sleep(100 * time.Microsecond)
		}
	}()
	t.Cleanup(func() { close(stop); <-done })
}

func countOn(owners map[int]string, node string) int {
	n := 0
	for _, o := range owners {
		if o == node {
			n++
		}
	}
	return n
}

// TestShardsStreamLeaderCrash kills the node that leads the group's
// stream: the shards of the surviving nodes keep running, the victim's move.
func TestShardsStreamLeaderCrash(t *testing.T) {
	const shards = 16
	c := ronintest.NewCluster(t, 3)
	log := ronintest.NewShardLog()
	cfg := shardConfig("streamcrash", shards, 2*time.Second)
	for i := range 3 {
		startGroup(t, c.Manager(i), cfg, log)
	}
	settled(t, log, shards, []string{"n1", "n2", "n3"}, 10*time.Second)
	victim := c.StreamLeader("streamcrash")
	require.GreaterOrEqual(t, victim, 0)
	c.Kill(victim)
	var rest []string
	for i := range 3 {
		if i != victim {
			rest = append(rest, fmt.Sprintf("n%d", i+1))
		}
	}
	settled(t, log, shards, rest, 15*time.Second)
	log.Check(t)
}

// TestShardHandlerFaults: a handler that panics or fails is restarted with
// the same token while the node owns the shard; the node stays up.
func TestShardHandlerFaults(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	var mu sync.Mutex
	calls := map[int][]uint64{}
	cfg := shardConfig("faults", 2, time.Second)
	cfg.Handler = func(ctx context.Context, id int, rev uint64) error {
		mu.Lock()
		calls[id] = append(calls[id], rev)
		n := len(calls[id])
		mu.Unlock()
		if n < 3 {
			if id == 0 {
				panic("boom")
			}
			return errors.New("failed")
		}
		<-ctx.Done()
		return nil
	}
	g, err := c.Manager(0).RegisterShards(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	ronintest.Eventually(t, 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(calls[0]) >= 3 && len(calls[1]) >= 3
	}, "handlers restarted")
	mu.Lock()
	for id, revs := range calls {
		for _, r := range revs {
			assert.Equal(t, revs[0], r, "shard %d keeps its token across restarts", id)
		}
	}
	mu.Unlock()
	require.Len(t, g.Owned(), 2)
	cancel()
	require.NoError(t, <-done)
}

// TestShardConfigErrors: bad input and disagreeing settings are refused.
func TestShardConfigErrors(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	h := func(context.Context, int, uint64) error { return nil }
	tests := []struct {
		name string
		cfg  ronin.ShardConfig
		want string
	}{
		{"no shards", ronin.ShardConfig{BucketName: "s", Handler: h}, "Shards 0"},
		{"too many shards", ronin.ShardConfig{BucketName: "s", Shards: 1 << 20, Handler: h}, "Shards 1048576"},
		{"no handler", ronin.ShardConfig{BucketName: "s", Shards: 4}, "Handler"},
		{"bad bucket", ronin.ShardConfig{BucketName: "a b", Shards: 4, Handler: h}, `BucketName "a b"`},
		{"tiny ttl", ronin.ShardConfig{BucketName: "s", Shards: 4, TTL: time.Millisecond, Handler: h}, "TTL 1ms"},
		{"negative moves", ronin.ShardConfig{BucketName: "s", Shards: 4, MaxMoves: -1, Handler: h}, "MaxMoves -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Manager(0).RegisterShards(tt.cfg)
			require.ErrorIs(t, err, ronin.ErrInvalidConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := c.Manager(0).RegisterShards(ronin.ShardConfig{BucketName: "agree", Shards: 8, Handler: h})
	require.NoError(t, err)
	_, err = c.Manager(1).RegisterShards(ronin.ShardConfig{BucketName: "agree", Shards: 16, Handler: h})
	require.ErrorIs(t, err, ronin.ErrBucketMismatch)
	require.ErrorContains(t, err, "shards 8")
	_, err = c.Manager(0).RegisterShards(ronin.ShardConfig{BucketName: "agree", Shards: 8, Handler: h})
	require.ErrorIs(t, err, ronin.ErrBucketMismatch, "second group for one bucket on one node")
	_, err = c.Manager(1).NewCandidate(candidateConfig("x", "agree", "k", 5*time.Second))
	require.ErrorIs(t, err, ronin.ErrBucketMismatch, "plain candidate on a shard bucket")
}

// TestShardsPausedOwner freezes one member's link to the store: its
// handlers' contexts end at its own lease deadline, before the other
// members start theirs (checked at every handler start), and it rejoins
// with fresh tokens once the link returns.
func TestShardsPausedOwner(t *testing.T) {
	const shards = 12
	c := ronintest.NewCluster(t, 3)
	far, p := startFarNode(t, c)

	log := ronintest.NewShardLog()
	cfg := shardConfig("paused", shards, time.Second)
	startGroup(t, far, cfg, log)
	startGroup(t, c.Manager(1), cfg, log)
	settled(t, log, shards, []string{"far", "n2"}, 10*time.Second)

	p.Pause()
	settled(t, log, shards, []string{"n2"}, 10*time.Second)
	p.Resume()
	settled(t, log, shards, []string{"far", "n2"}, 15*time.Second)
	log.Check(t)
}
