package integration

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/balancer"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// newMixedCluster starts storing nodes s1..sN and route-only nodes
// r1..rM concurrently, and returns the cluster, the nodes' names in index
// order and how long the start took.
func newMixedCluster(t *testing.T, storing, routeOnly int) (*ronintest.Cluster, []string, time.Duration) {
	t.Helper()
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := ronintest.Start(ctx, ronintest.Options{Nodes: storing + routeOnly, RouteOnly: routeOnly, DataDir: t.TempDir()})
	if err != nil {
		t.Fatalf("start mixed cluster: %v", err)
	}
	t.Cleanup(c.Shutdown)
	var names []string
	for i := range c.Size() {
		names = append(names, c.Node(i).Config.NodeID)
	}
	return c, names, time.Since(began)
}

func without(names []string, drop string) []string {
	return slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == drop })
}

// TestRouteOnlyShards runs one 64-shard group over 3 storing and 4
// route-only nodes: the shards spread over all 7 (9 or 10 each); a
// route-only node's crash moves its shards and, of the others, at most the
// few that the floor/ceil plan for 6 members moves; losing a storing node
// (not the bucket's stream leader) leaves every shard with an owner and
// the shards whose owner survives running all along.
func TestRouteOnlyShards(t *testing.T) {
	const (
		storing, routeOnly = 3, 4
		shards             = 64
		ttl                = 2 * time.Second
		bucket             = "routeonly"
	)
	began := time.Now()
	c, names, took := newMixedCluster(t, storing, routeOnly)
	t.Logf("%d storing + %d route-only nodes started in %v", storing, routeOnly, took.Round(time.Millisecond))
	for i := range c.Size() {
		m := c.Manager(i)
		require.Equal(t, storing, nodehook.Of(m).ClusterSize(), "%s: ClusterSize counts the storing servers", names[i])
		require.Equal(t, 3, nodehook.Of(m).DefaultReplicas(), names[i])
		require.True(t, nodehook.Of(m).Clustered(), names[i])
		require.Equal(t, i < storing, nodehook.Of(m).Server().JetStreamEnabled(), "%s: JetStream enabled", names[i])
	}

	log := ronintest.NewShardLog()
	cfg := shardConfig(bucket, shards, ttl)
	for i := range c.Size() {
		startGroup(t, c.Manager(i), cfg, log)
	}
	spreadAt := time.Now()
	before := settled(t, log, shards, names, 45*time.Second)
	t.Logf("spread over 7 nodes in %v: %v", time.Since(spreadAt).Round(time.Millisecond), counts(before))

	// Crash of a route-only node: its shards move, the rest stays but for
	// the few that the plan for 6 members moves.
	const victim = storing + 1 // r2
	crashAt := time.Now()
	c.Kill(victim)
	rest := without(names, names[victim])
	afterCrash := settled(t, log, shards, rest, 30*time.Second)
	own, others := 0, 0
	for id, owner := range before {
		switch {
		case owner == names[victim]:
			own++
			require.NotEqual(t, names[victim], afterCrash[id])
		case afterCrash[id] != owner:
			others++
		}
	}
	planned := plannedOthers(shards, names, rest, names[victim])
	t.Logf("route-only crash: settled in %v; moved its %d shards and %d others (the plan for 6 members moves %d others): %v",
		time.Since(crashAt).Round(time.Millisecond), own, others, planned, counts(afterCrash))
	require.LessOrEqual(t, others, planned+2, "a route-only crash reshuffled other shards")

	// Loss of a storing node that does not lead the bucket's stream: every
	// shard keeps an owner, and those whose owner survives keep running.
	leader := c.StreamLeader(bucket)
	require.GreaterOrEqual(t, leader, 0, "no stream leader")
	lost := 0
	if lost == leader {
		lost = 1
	}
	running := log.LiveSince()
	lossAt := time.Now()
	c.Kill(lost)
	rest = without(rest, names[lost])
	afterLoss := settled(t, log, shards, rest, 30*time.Second)
	t.Logf("storing node %s lost (stream leader %s): settled in %v: %v",
		names[lost], names[leader], time.Since(lossAt).Round(time.Millisecond), counts(afterLoss))
	now := log.LiveSince()
	for id, owner := range afterCrash {
		if owner == names[lost] || afterLoss[id] != owner {
			continue
		}
		require.Equal(t, running[id], now[id], "shard %d on %s was restarted although its owner survived", id, owner)
	}
	dumpViolations(t, log, began, map[string]time.Time{"spread": spreadAt, "crash": crashAt, "loss": lossAt})
	log.Check(t)
}

// dumpViolations logs, for every shard with a violation, its handler
// calls with times relative to began, and the test's phases.
func dumpViolations(t *testing.T, l *ronintest.ShardLog, began time.Time, phases map[string]time.Time) {
	violations := l.Violations()
	if len(violations) == 0 {
		return
	}
	for name, at := range phases {
		t.Logf("phase %s at %v", name, at.Sub(began).Round(time.Millisecond))
	}
	bad := map[int]bool{}
	for _, v := range violations {
		var id int
		if _, err := fmt.Sscanf(v, "shard %d:", &id); err == nil {
			bad[id] = true
		}
	}
	for _, r := range l.Runs() {
		if bad[r.Shard] {
			end := "running"
			if r.Returned {
				end = r.End.Sub(began).Round(time.Millisecond).String()
			}
			t.Logf("shard %d on %s rev %d: start %v, returned %s, ctx err %v",
				r.Shard, r.Node, r.Rev, r.Start.Sub(began).Round(time.Millisecond), end, r.Ctx.Err())
		}
	}
}

// counts returns the number of shards per owner.
func counts(owners map[int]string) map[string]int {
	out := map[string]int{}
	for _, o := range owners {
		out[o]++
	}
	return out
}

// plannedOthers is how many shards that the balancer's plan for members
// gives to another member than victim it gives to another owner once
// victim has left (rest) and is remembered as away: none, by PlanAway's
// contract, unless the planner stopped remembering it.
func plannedOthers(shards int, members, rest []string, victim string) int {
	before, after := balancer.Plan(shards, members), balancer.PlanAway(shards, rest, []string{victim})
	n := 0
	for id, owner := range before {
		if owner != victim && after[id] != owner {
			n++
		}
	}
	return n
}
