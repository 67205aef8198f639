package store_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

// A watch's consumer is a single replica on one server. When that server
// shuts down, it answers pending pulls with a 409 "server shutdown", and
// the watch moves to a new consumer at once instead of after two missed
// heartbeats: during a rolling restart every other node's view stays
// current. The server does not always get the 409 out before its routes
// close (about one stop in five here); the heartbeats cover those. So the
// test stops up to five consumer hosts and needs one fast move.
func TestWatchMovesOffAStoppingServer(t *testing.T) {
	var took []time.Duration
	for range 5 {
		d := stopConsumerHost(t)
		took = append(took, d)
		if d < 200*time.Millisecond {
			t.Logf("delivered %v after the write's ack; earlier tries %v", d, took[:len(took)-1])
			return
		}
	}
	t.Fatalf("no watch moved at once when its consumer's server stopped: delivery after the write's ack took %v", took)
}

// stopConsumerHost starts three servers, watches an R3 bucket from one,
// shuts down the server that hosts the watch's consumer (one that leads
// neither the stream nor the meta group), writes a key, and returns how
// long after the write's ack the watch delivered it.
func stopConsumerHost(t *testing.T) time.Duration {
	servers := startCluster(t, 3)
	e := &jsEnv{servers: servers, repl: 3, top: t, nodes: map[int]jetstream.JetStream{}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	index := func(name string) int {
		return slices.IndexFunc(servers, func(s *server.Server) bool { return s.Name() == name })
	}
	require.Eventually(t, func() bool {
		_, err := e.backend(t, 0).Open(ctx, store.Spec{Name: "moves", Replicas: 3})
		return err == nil
	}, 30*time.Second, 100*time.Millisecond, "open")
	// A request to a cluster this young is now and then never answered:
	// ask again every 2 s.
	var st jetstream.Stream
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		st, err = e.js(t, 100).Stream(actx, "KV_moves")
		assert.NoError(c, err)
	}, 30*time.Second, 100*time.Millisecond, "stream info")
	streamLeader := index(st.CachedInfo().Cluster.Leader)
	metaLeader := slices.IndexFunc(servers, (*server.Server).JetStreamIsLeader)

	// Write and watch from the stream leader's server; keep the watch
	// whose consumer lives on a server that leads neither the stream nor
	// the meta group, so that stopping it costs only the consumer.
	o, err := e.backend(t, streamLeader).Open(ctx, store.Spec{Name: "moves", Replicas: 3})
	require.NoError(t, err)
	var w store.Watcher
	host := -1
	for try := 0; host < 0 || host == streamLeader || host == metaLeader; try++ {
		require.Less(t, try, 40, "no consumer placed on a bystander")
		if w != nil {
			require.NoError(t, w.Stop())
		}
		before := consumerHosts(ctx, st)
		w, err = o.Bucket.Watch(ctx)
		require.NoError(t, err)
		require.Nil(t, <-w.Updates(), "empty bucket: the marker first")
		host = -1
		for name, on := range consumerHosts(ctx, st) {
			if _, old := before[name]; !old {
				host = index(on)
			}
		}
	}
	defer w.Stop()

	// The server answers pending pulls first thing in Shutdown, then
	// waits 50 ms for the answers to get out: write once they have.
	go servers[host].Shutdown()
	time.Sleep(60 * time.Millisecond)
	_, err = o.Bucket.Create(ctx, "k", []byte("v"))
	require.NoError(t, err)
	acked := time.Now()
	select {
	case got := <-w.Updates():
		require.Equal(t, "k", got.Key)
		return time.Since(acked)
	case <-time.After(10 * time.Second):
		t.Fatal("the watch went silent")
		return 0
	}
}

// consumerHosts maps each consumer of the stream to its server.
func consumerHosts(ctx context.Context, st jetstream.Stream) map[string]string {
	out := map[string]string{}
	for info := range st.ListConsumers(ctx).Info() {
		out[info.Name] = info.Cluster.Leader
	}
	return out
}
