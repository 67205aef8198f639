package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/integration/ronintest"
)

// TestPartitionedNodeLosesItsShardsAndRejoins cuts one of three nodes off
// from the other two (its routes stall, as with a cut link): the majority
// takes its shards after about a TTL while no shard ever runs twice; after
// Heal the node takes its share back.
func TestPartitionedNodeLosesItsShardsAndRejoins(t *testing.T) {
	const shards, ttl = 12, 2 * time.Second
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := ronintest.Start(ctx, ronintest.Options{Nodes: 3, DataDir: t.TempDir(), RouteProxies: true})
	require.NoError(t, err)
	t.Cleanup(c.Shutdown)
	log := ronintest.NewShardLog()
	cfg := shardConfig("cut", shards, ttl)
	for i := range 3 {
		startGroup(t, c.Manager(i), cfg, log)
	}
	settled(t, log, shards, []string{"n1", "n2", "n3"}, 30*time.Second)

	// Cut a node that does not lead the bucket's stream, so the majority
	// keeps a stream leader and the takeover is the TTL's.
	victim := 2
	if c.StreamLeader("cut") == victim {
		victim = 1
	}
	name := c.Node(victim).Config.NodeID
	var rest []string
	for i := range 3 {
		if i != victim {
			rest = append(rest, c.Node(i).Config.NodeID)
		}
	}
	require.NoError(t, c.Partition(victim))
	cutAt := time.Now()
	settled(t, log, shards, rest, 10*ttl)
	t.Logf("%s cut off: its shards ran on %v again after %v", name, rest, time.Since(cutAt).Round(time.Millisecond))

	require.NoError(t, c.Heal())
	settled(t, log, shards, []string{"n1", "n2", "n3"}, 10*ttl)
	log.Check(t)
}
