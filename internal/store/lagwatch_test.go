package store_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

// A watch's consumer reads the replica of the server that JetStream places
// it on: any peer of the stream, preferring peers caught up in the meta
// group, not in the stream. A restarted server's replica lags the stream
// while it catches up. A watch placed there must not report its initial
// values complete at that replica's tail (without the guard, a watch here
// did so within a few tries, about 19,000 revisions behind); it moves to
// another peer instead, and does not wait for the catch-up.
func TestWatchOnALaggingReplica(t *testing.T) {
	servers, opts := startClusterOptions(t, 3)
	e := &jsEnv{servers: servers, repl: 3, top: t, nodes: map[int]jetstream.JetStream{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var o store.Opened
	require.Eventually(t, func() bool {
		var err error
		o, err = e.backend(t, 0).Open(ctx, store.Spec{Name: "lag", Replicas: 3})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "open")
	info := func(c *assert.CollectT) *jetstream.StreamInfo {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		st, err := e.js(t, 100).Stream(actx, "KV_lag")
		if !assert.NoError(c, err) {
			return nil
		}
		return st.CachedInfo()
	}
	var si *jetstream.StreamInfo
	require.EventuallyWithT(t, func(c *assert.CollectT) { si = info(c) }, 30*time.Second, 100*time.Millisecond, "stream info")

	// Stop a server that leads neither the stream nor the meta group, so
	// that the others keep taking writes, and write while it is away.
	lagging := slices.IndexFunc(servers, func(s *server.Server) bool {
		return s.Name() != si.Cluster.Leader && !s.JetStreamIsLeader()
	})
	require.GreaterOrEqual(t, lagging, 0, "a server that leads nothing")
	servers[lagging].Shutdown()
	servers[lagging].WaitForShutdown()
	writer := e.js(t, 3+(lagging+1)%3) // a new connection to a server that is up
	// In batches below the client's limit of outstanding async publishes
	// (4,000), which stalls and fails a publish on a slow machine.
	const writes, batch = 20000, 1000
	for i := range writes {
		_, err := writer.PublishAsync(fmt.Sprintf("$KV.lag.k%d", i%500), []byte("v"))
		require.NoError(t, err)
		if (i+1)%batch > 0 {
			continue
		}
		select {
		case <-writer.PublishAsyncComplete():
		case <-ctx.Done():
			t.Fatal("the writes were not acknowledged")
		}
	}

	again := *opts[lagging]
	_, err := launchServer(t, &again)
	require.NoError(t, err)
	name := servers[lagging].Name()

	// Watch again and again while the restarted replica catches up.
	var behind, watches int
	for start := time.Now(); time.Since(start) < 3*time.Second || behind == 0 && time.Since(start) < 20*time.Second; watches++ {
		var floor uint64
		current := true
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			si := info(c)
			if si == nil {
				return
			}
			floor = si.State.LastSeq
			for _, r := range si.Cluster.Replicas {
				if r.Name == name && (!r.Current || r.Lag > 0) {
					current = false
				}
			}
		}, 30*time.Second, 10*time.Millisecond, "stream info")
		if !current {
			behind++
		}
		began := time.Now()
		w, err := o.Bucket.Watch(ctx)
		require.NoError(t, err)
		var last uint64
		for got := range w.Updates() {
			if got == nil {
				break
			}
			last = got.Rev
		}
		took := time.Since(began)
		require.NoError(t, w.Stop())
		require.GreaterOrEqual(t, last, floor, "watch %d (begun while %s's replica was current: %v) ended its initial values %d revisions short of the stream's last revision",
			watches, name, current, floor-min(floor, last))
		assert.Less(t, took, 3*time.Second, "watch %d took %v to read its initial values", watches, took)
	}
	require.Positive(t, behind, "no watch began while %s's replica was behind: the test showed nothing", name)
	t.Logf("%d watches, %d of them begun while %s's replica was behind", watches, behind, name)
}
