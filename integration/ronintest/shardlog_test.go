package ronintest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// handlerRun runs a log's handler for node on shard id with token rev
// until cancel; done closes when it returned.
func handlerRun(t *testing.T, l *ShardLog, node string, id int, rev uint64) (cancel context.CancelFunc, done chan struct{}) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan struct{})
	go func() { defer close(done); _ = l.Handler(node)(ctx, id, rev) }()
	Eventually(t, time.Second, func() bool {
		for _, on := range l.Running()[id] {
			if on == node {
				return true
			}
		}
		return false
	}, "%s runs shard %d", node, id)
	t.Cleanup(func() { cancel(); <-done })
	return cancel, done
}

func TestShardLogOwnersSettledHandovers(t *testing.T) {
	l := NewShardLog()
	stop0, done0 := handlerRun(t, l, "a", 0, 1)
	handlerRun(t, l, "a", 1, 2)

	owners, ok := l.Owners(2)
	require.True(t, ok)
	assert.Equal(t, map[int]string{0: "a", 1: "a"}, owners)
	_, ok = l.Owners(3) // shard 2 has no handler
	assert.False(t, ok)
	assert.True(t, settled(l, 2, []string{"a"}))
	assert.False(t, settled(l, 2, []string{"a", "b"}), "b runs nothing")

	since := time.Now()
	stop0()
	<-done0
	handlerRun(t, l, "b", 0, 3)
	assert.True(t, settled(l, 2, []string{"a", "b"}))
	assert.False(t, settled(l, 2, []string{"b"}), "a runs a shard too")

	hs := l.Handovers(since)
	require.Len(t, hs, 1)
	assert.Equal(t, 0, hs[0].Shard)
	assert.Equal(t, "a", hs[0].From)
	assert.Equal(t, "b", hs[0].To)
	assert.GreaterOrEqual(t, hs[0].Gap, time.Duration(0))
	assert.Equal(t, []time.Duration{hs[0].Gap}, l.Gaps(since))
	assert.Empty(t, l.Handovers(time.Now()))
	assert.Empty(t, l.Violations())
}

func TestShardLogOwnersWithTwoHandlers(t *testing.T) {
	l := NewShardLog()
	handlerRun(t, l, "a", 0, 1)
	handlerRun(t, l, "b", 0, 2) // a's ctx is still live: a violation
	_, ok := l.Owners(1)
	assert.False(t, ok)
	assert.False(t, settled(l, 1, []string{"a", "b"}))
	assert.Len(t, l.Violations(), 1)
}

func settled(l *ShardLog, shards int, nodes []string) bool {
	_, ok := l.Settled(shards, nodes)
	return ok
}
