package shard

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// A handler whose lease ends while it is starting (here: its record is
// deleted from under it at once) must be reaped, not left behind as owned:
// the node acquires the shard again and runs a new handler.
func TestLeaseLostAsHandlerStartsIsReaped(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := memstore.New(time.Now)
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		reg := engine.NewRegistry(engine.Host{Store: ms.Backend(), NodeID: "n1", Logger: log, DefaultReplicas: 1})
		var other store.Opened
		var calls atomic.Int32
		g, err := NewGroup(context.Background(), reg, Config{BucketName: "b", Shards: 1, TTL: time.Second, Logger: log,
			Handler: func(ctx context.Context, id int, rev uint64) error {
				if calls.Add(1) == 1 {
					// Taken away before the handler has done anything.
					require.NoError(t, other.Bucket.Delete(context.Background(), Key(id), rev))
				}
				<-ctx.Done()
				return nil
			}})
		require.NoError(t, err)
		other, err = ms.Backend().Open(context.Background(), store.Spec{Name: "b", Replicas: 1})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- g.Run(ctx) }()
		time.Sleep(5 * time.Second)
		require.GreaterOrEqual(t, calls.Load(), int32(2), "the shard was never acquired again")
		require.Len(t, g.Owned(), 1)
		cancel()
		require.NoError(t, <-done)
	})
}

// cutOff is one node's link to a shared store: while cut, its writes hang
// unanswered (a stream without a leader, as that node sees it).
func cutOff(st store.Backend, cut *atomic.Bool) store.Backend {
	return testkit.Interposed{Backend: st, Before: func(ctx context.Context, _, _ string) error {
		if !cut.Load() {
			return nil
		}
		<-ctx.Done()
		return ctx.Err()
	}}
}

// An outage longer than the TTL ends every node's session; the nodes come
// back apart (and each creates its new session up to TTL/2 later: the
// retry backs off while cut off), within Settle. The first one back finds
// every shard free: it must not take them all only to hand most of them
// back. Each shard goes back to the node that owned it, and none moves.
// 200 ms apart, the others' countdowns, restarted by the first node's new
// session, cover it. 1 s apart (the last back two TTLs after the first),
// the rejoin window does: for Settle, each node back takes only its own
// shards, and rescues none.
func TestStoreOutageMovesNoShard(t *testing.T) {
	for _, apart := range []time.Duration{200 * time.Millisecond, time.Second} {
		t.Run(apart.String(), func(t *testing.T) { storeOutageMovesNoShard(t, apart) })
	}
}

func storeOutageMovesNoShard(t *testing.T, apart time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		ms := memstore.New(time.Now)
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		const shards = 12
		var mu sync.Mutex
		owner := map[int]string{} // the node that last started each shard
		moves := 0
		ctx, cancel := context.WithCancel(context.Background())
		var cuts []*atomic.Bool
		var regs []*engine.Registry
		for _, node := range []string{"n1", "n2", "n3"} {
			cut := &atomic.Bool{}
			cuts = append(cuts, cut)
			reg := engine.NewRegistry(engine.Host{Store: cutOff(ms.Backend(), cut), NodeID: node, Logger: log, DefaultReplicas: 3, ClusterSize: 3, Clustered: true})
			regs = append(regs, reg)
			g, err := NewGroup(ctx, reg, Config{BucketName: "b", Shards: shards, TTL: time.Second, Settle: 3 * time.Second, Logger: log,
				Handler: func(hctx context.Context, id int, _ uint64) error {
					mu.Lock()
					if prev := owner[id]; prev != "" && prev != node {
						moves++
					}
					owner[id] = node
					mu.Unlock()
					<-hctx.Done()
					return nil
				}})
			require.NoError(t, err)
			go func() { _ = g.Run(ctx) }()
		}
		time.Sleep(10 * time.Second) // a new bucket: genesis, then the plan
		mu.Lock()
		require.Len(t, owner, shards)
		before := fmt.Sprint(owner)
		moves = 0
		mu.Unlock()

		for _, cut := range cuts {
			cut.Store(true)
		}
		time.Sleep(3 * time.Second) // every session ends
		for _, cut := range cuts {
			cut.Store(false)
			time.Sleep(apart)
		}
		time.Sleep(10 * time.Second)

		mu.Lock()
		after, moved := fmt.Sprint(owner), moves
		mu.Unlock()
		cancel()
		for _, reg := range regs {
			reg.Close(time.Second)
		}
		require.Equal(t, before, after, "owners after the outage")
		require.Zero(t, moved, "shards moved and came back")
	})
}

// A draining node marks its session leaving and waits until its own view
// shows that before it hands its shards over, so that the others plan
// without it by then. The mark shows within one write and its delivery:
// the drain must not wait out the TTL it allows for it.
func TestDrainWaitsForItsLeavingMarkNotTheTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		ms := memstore.New(time.Now)
		log := slog.New(slog.NewTextHandler(io.Discard, nil))
		const ttl = 5 * time.Second
		var runs []chan error
		var cancels []context.CancelFunc
		var groups []*Group
		for _, node := range []string{"n1", "n2"} {
			reg := engine.NewRegistry(engine.Host{Store: ms.Backend(), NodeID: node, Logger: log, DefaultReplicas: 1})
			g, err := NewGroup(context.Background(), reg, Config{BucketName: "b", Shards: 4, TTL: ttl, Logger: log,
				Handler: func(ctx context.Context, _ int, _ uint64) error { <-ctx.Done(); return nil }})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- g.Run(ctx) }()
			runs, cancels, groups = append(runs, done), append(cancels, cancel), append(groups, g)
			t.Cleanup(func() { reg.Close(time.Second) })
			t.Cleanup(cancel) // first, on a failure: Run drains and returns
		}
		time.Sleep(3 * ttl) // genesis, then the plan
		require.NotEmpty(t, groups[0].Owned(), "n1 owns its share")
		start := time.Now()
		cancels[0]()
		require.NoError(t, <-runs[0])
		assert.Less(t, time.Since(start), ttl/2, "n1's drain took")
		for len(groups[1].Owned()) < 4 {
			require.Less(t, time.Since(start), ttl, "n2 never ran every shard")
			time.Sleep(time.Millisecond)
		}
		cancels[1]()
		require.NoError(t, <-runs[1])
	})
}
