package shard

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, id := range []int{0, 1, 63, 1023, 99999} {
		got, ok := ID(Key(id))
		assert.True(t, ok)
		assert.Equal(t, id, got)
	}
	for _, bad := range []string{"shard.", "shard.-1", "shard.01", "shard.x", "other.1", "shard.1.2"} {
		_, ok := ID(bad)
		assert.False(t, ok, bad)
	}
}

func TestForSpreadsAndAgrees(t *testing.T) {
	const shards = 16
	counts := make([]int, shards)
	for i := range 16000 {
		k := fmt.Sprintf("order-%d", i)
		s := For([]byte(k), shards)
		assert.Equal(t, s, ForString(k, shards))
		counts[s]++
	}
	for s, n := range counts {
		assert.InDelta(t, 1000, n, 150, "shard %d", s)
	}
}
