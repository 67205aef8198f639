package balancer

import (
	"fmt"
	"testing"
)

// BenchmarkPlan times Plan for the sizes Ronin plans for: 1,024 shards (target
// under 2 ms) and 10,000 shards (target well under 50 ms), over 8 members.
func BenchmarkPlan(b *testing.B) {
	for _, c := range []struct{ shards, members int }{{1024, 8}, {10000, 8}} {
		b.Run(fmt.Sprintf("S=%d/N=%d", c.shards, c.members), func(b *testing.B) {
			ms := make([]string, c.members)
			for i := range ms {
				ms[i] = fmt.Sprintf("node-%d", i)
			}
			b.ReportAllocs()
			for b.Loop() {
				Plan(c.shards, ms)
			}
		})
	}
}
