package ronintest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/nodehook"
)

// TestStartAllRestartsTheCluster starts a cluster laid out by New with a
// per-node callback, finds its leaders, stops every node and starts them
// again with the same identities and data.
func TestStartAllRestartsTheCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := New(Options{Nodes: 3, DataDir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(c.Shutdown)
	for i := range c.Size() {
		assert.Nil(t, c.Manager(i), "New starts nothing")
	}

	// A failing callback fails StartAll and leaves every node down.
	boom := errors.New("boom")
	err = c.StartAll(ctx, func(i int) error {
		if i == 1 {
			return boom
		}
		return nil
	})
	require.ErrorIs(t, err, boom)
	for i := range c.Size() {
		assert.Nil(t, c.Manager(i), "node %d after a failed StartAll", i)
	}

	// The callback runs once per node, in its goroutine, once its Start
	// returned.
	var mu sync.Mutex
	seen := map[int]string{}
	require.NoError(t, c.StartAll(ctx, func(i int) error {
		m := c.Manager(i)
		if m == nil {
			return errors.New("callback before the node runs")
		}
		mu.Lock()
		defer mu.Unlock()
		seen[i] = m.NodeID()
		return nil
	}))
	assert.Equal(t, map[int]string{0: "n1", 1: "n2", 2: "n3"}, seen)

	Eventually(t, 30*time.Second, func() bool { return c.MetaLeader() >= 0 }, "a meta leader")
	js := nodehook.Of(c.Manager(0)).JetStream()
	_, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "probe", Replicas: 3, Storage: jetstream.FileStorage})
	require.NoError(t, err)
	var info *jetstream.StreamInfo
	Eventually(t, 30*time.Second, func() bool {
		info, err = c.StreamInfo(ctx, "probe")
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	}, "probe's stream has a leader")
	assert.Equal(t, "KV_probe", info.Config.Name)
	if i := c.StreamLeader("probe"); assert.GreaterOrEqual(t, i, 0) {
		assert.Equal(t, c.Node(i).Config.NodeID, info.Cluster.Leader)
	}

	// A whole-cluster restart keeps ports and data dirs: the bucket is
	// still there.
	urls := make([]string, c.Size())
	for i := range c.Size() {
		urls[i] = c.Manager(i).ClientURL()
	}
	c.StopAll()
	for i := range c.Size() {
		assert.Nil(t, c.Manager(i), "node %d after StopAll", i)
	}
	assert.Equal(t, -1, c.MetaLeader())
	_, err = c.StreamInfo(ctx, "probe")
	require.Error(t, err, "no node runs")
	require.NoError(t, c.StartAll(ctx, nil))
	for i := range c.Size() {
		assert.Equal(t, urls[i], c.Manager(i).ClientURL())
	}
	Eventually(t, 30*time.Second, func() bool {
		info, err := c.StreamInfo(ctx, "probe")
		return err == nil && info.Cluster != nil && info.Cluster.Leader != ""
	}, "probe's stream is back with a leader")
}
