package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nonchan7720/ronin"
)

// tracker counts the running handlers and measures, per shard, the gap
// between one handler returning and the next one starting.
type tracker struct {
	mu      sync.Mutex
	live    int
	stopped map[int]time.Time // shard -> when its last handler returned
	gapList []time.Duration
}

func newTracker() *tracker { return &tracker{stopped: map[int]time.Time{}} }

// handler is the shard handler of node: it just runs until its ctx ends,
// which is when the shard moves away or the node loses it.
func (t *tracker) handler(node string) ronin.ShardHandler {
	return func(ctx context.Context, shard int, rev uint64) error {
		t.mu.Lock()
		t.live++
		if at, ok := t.stopped[shard]; ok {
			t.gapList = append(t.gapList, time.Since(at))
			delete(t.stopped, shard)
		}
		t.mu.Unlock()

		<-ctx.Done() // real work goes here, writing with rev as the token

		t.mu.Lock()
		t.live--
		t.stopped[shard] = time.Now()
		t.mu.Unlock()
		return nil
	}
}

func (t *tracker) running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live
}

func (t *tracker) resetGaps() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gapList = nil
	clear(t.stopped)
}

// gaps summarizes the gaps measured since resetGaps.
func (t *tracker) gaps() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.gapList) == 0 {
		return "none"
	}
	g := slices.Sorted(slices.Values(t.gapList))
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("%d shards, min %s, median %s, max %s", len(g), ms(g[0]), ms(g[len(g)/2]), ms(g[len(g)-1]))
}

func say(format string, args ...any) {
	fmt.Printf("t=%.1fs  -- %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
