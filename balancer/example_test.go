package balancer_test

import (
	"fmt"

	"github.com/nonchan7720/ronin/balancer"
)

func ExamplePlan() {
	members := []string{"node-a", "node-b", "node-c"}
	plan := balancer.Plan(12, members)
	count := map[string]int{}
	for _, m := range plan {
		count[m]++
	}
	fmt.Println(count["node-a"], count["node-b"], count["node-c"])

	// node-d joins: it must receive floor(12/4) = 3 shards, and ideally
	// nothing else moves.
	after := balancer.Plan(12, append(members, "node-d"))
	fmt.Println("moved:", balancer.Moves(plan, after), "minimum:", balancer.IdealMoves(12, 3, 4))
	// Output:
	// 4 4 4
	// moved: 3 minimum: 3
}

func ExampleReleases() {
	owners := []string{"node-a", "node-a", "node-b", "node-a", ""}
	plan := []string{"node-b", "node-a", "node-b", "node-c", "node-a"}
	// node-a hands over at most one shard now: shard 0 (target node-b).
	// Shard 3 waits for a later round; shard 4 is unowned, so it is not a
	// release but an acquisition.
	fmt.Println(balancer.Releases("node-a", owners, plan, 1))
	fmt.Println(balancer.Releases("node-a", owners, plan, 0))
	// Output:
	// [0]
	// [0 3]
}
