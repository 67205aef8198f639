package integration

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// running is a candidate whose Run goroutine the test owns.
type running struct {
	*ronin.Candidate
	id     string
	cancel context.CancelFunc
	exited chan struct{} // closed when Run returned
	err    error         // Run's result, set before exited closes

	mu      sync.Mutex
	events  []string // "elected", "stepped", "leader:<id>"
	elected chan uint64
}

// startCandidate makes a candidate on m and runs it until the test ends or
// stop is called.
func startCandidate(t *testing.T, m *ronin.Manager, cfg ronin.CandidateConfig) *running {
	t.Helper()
	r := &running{id: cfg.CandidateID, exited: make(chan struct{}), elected: make(chan uint64, 100)}
	cfg.OnElected = func() {
		r.record("elected")
		r.elected <- r.LeaderRev()
	}
	cfg.OnSteppingDown = func() { r.record("stepped") }
	cfg.OnLeaderChange = func(id string) { r.record("leader:" + id) }
	c, err := m.NewCandidate(cfg)
	require.NoError(t, err)
	r.Candidate = c
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.err = c.Run(ctx); close(r.exited) }()
	t.Cleanup(r.stop)
	return r
}

func (r *running) record(e string) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

// Events returns a copy of the callbacks seen so far.
func (r *running) Events() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.events...)
}

// stop cancels Run and waits for it to return.
func (r *running) stop() {
	r.cancel()
	select {
	case <-r.exited:
	case <-time.After(30 * time.Second):
		panic("candidate " + r.id + " did not return")
	}
}

func candidateConfig(id, bucket, key string, ttl time.Duration) ronin.CandidateConfig {
	return ronin.CandidateConfig{CandidateID: id, BucketName: bucket, KeyName: key, TTL: ttl}
}

// leaderOf waits until exactly one of rs leads and returns it.
func leaderOf(t *testing.T, timeout time.Duration, rs ...*running) *running {
	t.Helper()
	var leader *running
	ronintest.Eventually(t, timeout, func() bool {
		leader = nil
		n := 0
		for _, r := range rs {
			if r.IsLeader() {
				leader, n = r, n+1
			}
		}
		return n == 1
	}, "one leader among %d candidates", len(rs))
	return leader
}

// watchAll adds candidates to a history under key.
func watchAll(h *ronintest.History, key string, rs ...*running) {
	for _, r := range rs {
		h.Add(key, r.id, r.Candidate)
	}
}

func requireClean(t *testing.T, h *ronintest.History) []ronintest.Term {
	t.Helper()
	violations, terms := h.Stop()
	require.Empty(t, violations, "history violations")
	return terms
}

func names(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i+1)
	}
	return out
}

// TestSteppingDownReturnsBeforeTheSuccessorIsElected: on a resign,
// OnSteppingDown runs before the key is released, so work it stops never
// overlaps the successor's term.
func TestSteppingDownReturnsBeforeTheSuccessorIsElected(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	var mu sync.Mutex
	var steppedDownAt, electedAt time.Time
	cfg := candidateConfig("a", "order", "k", time.Second)
	cfg.OnSteppingDown = func() {
		time.Sleep(300 * time.Millisecond) // the user's work winding down
		mu.Lock()
		steppedDownAt = time.Now()
		mu.Unlock()
	}
	a, err := c.Manager(0).NewCandidate(cfg)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	require.Eventually(t, a.IsLeader, 10*time.Second, 10*time.Millisecond)

	bcfg := candidateConfig("b", "order", "k", time.Second)
	bcfg.OnElected = func() {
		mu.Lock()
		electedAt = time.Now()
		mu.Unlock()
	}
	b, err := c.Manager(0).NewCandidate(bcfg)
	require.NoError(t, err)
	bctx, bcancel := context.WithCancel(context.Background())
	bdone := make(chan error, 1)
	go func() { bdone <- b.Run(bctx) }()
	defer func() { bcancel(); <-bdone }()
	cancel()
	require.NoError(t, <-done)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return !electedAt.IsZero() }, 5*time.Second, 10*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.True(t, electedAt.After(steppedDownAt), "successor elected %v before OnSteppingDown returned", steppedDownAt.Sub(electedAt))
}
