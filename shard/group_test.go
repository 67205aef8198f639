package shard

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
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
