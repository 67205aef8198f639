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
