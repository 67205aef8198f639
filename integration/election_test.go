package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// TestSingleCandidateLifecycle checks the spec's example semantics on one
// node: elected, stable token, callbacks in order, resign before Run returns.
func TestSingleCandidateLifecycle(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	r := startCandidate(t, c.Manager(0), candidateConfig("worker-1", "election_bucket", "shard_01", time.Second))
	tok := <-r.elected
	require.True(t, r.IsLeader())
	require.NotZero(t, tok)
	time.Sleep(1500 * time.Millisecond) // several renewals
	require.True(t, r.IsLeader())
	require.Equal(t, tok, r.LeaderRev(), "token constant during a term")
	r.stop()
	require.False(t, r.IsLeader())
	require.Zero(t, r.LeaderRev())
	assert.Equal(t, []string{"elected", "leader:worker-1", "stepped"}, r.Events())
}

// TestGracefulHandover moves leadership by cancelling the leader's ctx, on
// one node (R1) and on a 3-node cluster (R3).
func TestGracefulHandover(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("nodes=%d", nodes), func(t *testing.T) {
			c := ronintest.NewCluster(t, nodes)
			h := ronintest.NewHistory()
			var rs []*running
			for i, id := range names("c", 3) {
				r := startCandidate(t, c.Manager(i%nodes), candidateConfig(id, "handover", "k", 2*time.Second))
				h.Add("k", id, r.Candidate)
				rs = append(rs, r)
			}
			var lastTok uint64
			for round := range 4 {
				leader := leaderOf(t, 5*time.Second, rs...)
				require.Greater(t, leader.LeaderRev(), lastTok)
				lastTok = leader.LeaderRev()
				start := time.Now()
				leader.stop()
				var rest []*running
				for _, r := range rs {
					if r != leader {
						rest = append(rest, r)
					}
				}
				next := leaderOf(t, 5*time.Second, rest...)
				// A graceful handover takes milliseconds, not a TTL.
				require.Less(t, time.Since(start), time.Second, "round %d", round)
				// Bring the old leader back as a follower.
				nr := startCandidate(t, c.Manager(round%nodes), candidateConfig(leader.id, "handover", "k", 2*time.Second))
				h.Add("k", leader.id+fmt.Sprint(round), nr.Candidate)
				rs = append(rest, nr)
				require.Eventually(t, func() bool { return next.IsLeader() }, time.Second, 10*time.Millisecond)
			}
			requireClean(t, h)
		})
	}
}

// TestLaterCandidateSeesLeader: a candidate that starts while another leads
// gets OnLeaderChange(thatID) promptly and does not lead.
func TestLaterCandidateSeesLeader(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	a := startCandidate(t, c.Manager(0), candidateConfig("a", "later", "k", time.Second))
	<-a.elected
	b := startCandidate(t, c.Manager(0), candidateConfig("b", "later", "k", time.Second))
	ronintest.Eventually(t, time.Second, func() bool {
		ev := b.Events()
		return len(ev) > 0 && ev[0] == "leader:a"
	}, "b sees a as leader: %v", b.Events())
	require.False(t, b.IsLeader())
	a.stop()
	<-b.elected
	ronintest.Eventually(t, time.Second, func() bool { return len(b.Events()) >= 4 }, "events: %v", b.Events())
	assert.Equal(t, []string{"leader:a", "leader:", "elected", "leader:b"}, b.Events())
}

// TestConcurrentCampaigns starts many candidates for one key at once over a
// 3-node cluster: exactly one leads at any instant.
func TestConcurrentCampaigns(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	h := ronintest.NewHistory()
	var rs []*running
	for i, id := range names("c", 9) {
		r := startCandidate(t, c.Manager(i%3), candidateConfig(id, "race", "k", time.Second))
		h.Add("k", id, r.Candidate)
		rs = append(rs, r)
	}
	leader := leaderOf(t, 5*time.Second, rs...)
	time.Sleep(500 * time.Millisecond)
	require.True(t, leader.IsLeader())
	for _, r := range rs {
		if r != leader {
			require.NotContains(t, r.Events(), "elected")
		}
	}
	requireClean(t, h)
}

// TestLeaderCrash: the leader's node loses its connection for good (the
// candidate stops renewing without resigning). Another candidate takes
// over after the TTL, never while the old one still reports leadership.
func TestLeaderCrash(t *testing.T) {
	for _, kill := range []string{"connection", "server"} {
		t.Run(kill, func(t *testing.T) {
			c := ronintest.NewCluster(t, 3)
			h := ronintest.NewHistory()
			ttl := time.Second
			a := startCandidate(t, c.Manager(0), candidateConfig("a", "crash", "k", ttl))
			<-a.elected
			b := startCandidate(t, c.Manager(1), candidateConfig("b", "crash", "k", ttl))
			d := startCandidate(t, c.Manager(2), candidateConfig("d", "crash", "k", ttl))
			watchAll(h, "k", a, b, d)
			old := a.LeaderRev()
			// Killing the server that leads the bucket's stream stalls every
			// write for JetStream's Raft election (4-9 s, fixed timers).
			bound := ttl + 3*time.Second
			if kill == "server" && c.StreamLeader("crash") == 0 {
				bound = ttl + 10*time.Second
			}
			start := time.Now()
			if kill == "connection" {
				nodehook.Of(c.Manager(0)).Conn().Close()
			} else {
				c.Kill(0)
			}
			next := leaderOf(t, bound+time.Second, b, d)
			took := time.Since(start)
			require.Greater(t, next.LeaderRev(), old)
			require.False(t, a.IsLeader())
			require.Contains(t, a.Events(), "stepped")
			// Not before the old lease could have run out, and not much after.
			require.Greater(t, took, ttl/2, "took over before the lease ran out")
			require.Less(t, took, bound)
			requireClean(t, h)
		})
	}
}

// TestPausedLeader freezes the leader's link to the store (a node reached
// through a proxy that stops forwarding): it must stop reporting leadership
// by its own clock before anyone else is elected, and stay a follower after
// the link returns.
func TestPausedLeader(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	far, p := startFarNode(t, c)

	h := ronintest.NewHistory()
	ttl := time.Second
	a := startCandidate(t, far, candidateConfig("a", "pause", "k", ttl))
	<-a.elected
	b := startCandidate(t, c.Manager(1), candidateConfig("b", "pause", "k", ttl))
	d := startCandidate(t, c.Manager(2), candidateConfig("d", "pause", "k", ttl))
	watchAll(h, "k", a, b, d)
	old := a.LeaderRev()

	p.Pause()
	next := leaderOf(t, 10*time.Second, b, d)
	require.Greater(t, next.LeaderRev(), old)
	require.False(t, a.IsLeader())
	p.Resume()
	time.Sleep(2 * ttl)
	require.False(t, a.IsLeader(), "the paused leader must not come back as leader")
	require.True(t, next.IsLeader())
	requireClean(t, h)
}

// TestStreamLeaderOutage shuts down the node that leads the bucket's
// stream, where no candidate runs: with a TTL well above the Raft failover
// time, the leader keeps its key and its token.
func TestStreamLeaderOutage(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	ttl := 15 * time.Second
	// Create the bucket from node 0, then find its stream leader.
	probe, err := c.Manager(0).NewCandidate(candidateConfig("probe", "outage", "k", ttl))
	require.NoError(t, err)
	_ = probe
	victim := -1
	ronintest.Eventually(t, 10*time.Second, func() bool { victim = c.StreamLeader("outage"); return victim >= 0 }, "stream leader")
	h := ronintest.NewHistory()
	var rs []*running
	for i := range 3 {
		if i == victim {
			continue
		}
		rs = append(rs, startCandidate(t, c.Manager(i), candidateConfig(fmt.Sprintf("c%d", i), "outage", "k", ttl)))
	}
	watchAll(h, "k", rs...)
	leader := leaderOf(t, ttl+10*time.Second, rs...) // a new bucket grants nothing for a TTL
	tok := leader.LeaderRev()
	c.Kill(victim)
	// Watch across the outage and well beyond a renew deadline.
	deadline := time.Now().Add(ttl)
	for time.Now().Before(deadline) {
		require.True(t, leader.IsLeader(), "leader lost its key during a stream-leader failover")
		require.Equal(t, tok, leader.LeaderRev())
		time.Sleep(50 * time.Millisecond)
	}
	requireClean(t, h)
}

// TestShutdownWithRunningLeader shuts a Manager down while its candidate
// still runs (the order the spec warns about): leadership moves promptly.
func TestShutdownWithRunningLeader(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	h := ronintest.NewHistory()
	a := startCandidate(t, c.Manager(0), candidateConfig("a", "shutdown", "k", 5*time.Second))
	<-a.elected
	b := startCandidate(t, c.Manager(1), candidateConfig("b", "shutdown", "k", 5*time.Second))
	watchAll(h, "k", a, b)
	// Known gap (issue note): when the stopping server leads the bucket's
	// stream, the release can be lost with it, and the successor waits for
	// the session to expire and for the stream's next leader (a Raft
	// election: up to 9 s under load). Elsewhere the handover takes
	// milliseconds.
	bound := time.Second
	if c.StreamLeader("shutdown") == 0 {
		bound = 5*time.Second + 9*time.Second
	}
	start := time.Now()
	go c.Stop(0)
	<-b.elected
	took := time.Since(start)
	t.Logf("next leader %v after Shutdown (stream led by the stopping node: %v)", took, bound > time.Second)
	require.Less(t, took, bound, "next leader after Shutdown")
	<-a.exited
	require.ErrorIs(t, a.err, ronin.ErrClosed)
	requireClean(t, h)
}

// TestFullRestartRevsGrow stops every node at once without resigning and
// restarts them from their data dirs: new tokens exceed every old one (E2).
func TestFullRestartRevsGrow(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	var max uint64
	var rs []*running
	for i := range 3 {
		r := startCandidate(t, c.Manager(i), candidateConfig("c"+fmt.Sprint(i), "restart", fmt.Sprintf("k%d", i), time.Second))
		rs = append(rs, r)
	}
	for _, r := range rs {
		max = maxU(max, <-r.elected)
	}
	for i := range 3 {
		c.Kill(i)
	}
	for _, r := range rs {
		r.stop()
	}
	errs := make(chan error, 3)
	for i := range 3 {
		go func() { errs <- c.Restart(context.Background(), i) }()
	}
	for range 3 {
		require.NoError(t, <-errs)
	}
	for i := range 3 {
		r := startCandidate(t, c.Manager(i), candidateConfig("c"+fmt.Sprint(i), "restart", fmt.Sprintf("k%d", i), time.Second))
		tok := <-r.elected
		require.Greater(t, tok, max, "token after a full restart must exceed every earlier one")
	}
}

// startFarNode starts a Manager "far" without a server of its own, reaching
// node 0 of c through a proxy that the test can pause.
func startFarNode(t *testing.T, c *ronintest.Cluster) (*ronin.Manager, *ronintest.Proxy) {
	t.Helper()
	p := ronintest.NewProxy(t, c.Manager(0).ClientURL()[len("nats://"):])
	far, err := ronin.NewManager(ronin.ServerConfig{NodeID: "far", URL: p.URL(), Logger: ronintest.Logger()})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, far.Start(ctx))
	t.Cleanup(far.Shutdown)
	return far, p
}

func maxU(a, b uint64) uint64 {
	if a > b {
		return a
	}
	return b
}

// TestBadCandidateConfig: every bad field is refused with its name and value.
func TestBadCandidateConfig(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	m := c.Manager(0)
	ok := candidateConfig("a", "valid", "k", time.Second)
	tests := []struct {
		name   string
		mutate func(*ronin.CandidateConfig)
		want   string
	}{
		{"empty candidate", func(c *ronin.CandidateConfig) { c.CandidateID = "" }, `CandidateID ""`},
		{"zero ttl", func(c *ronin.CandidateConfig) { c.TTL = 0 }, "TTL 0s"},
		{"tiny ttl", func(c *ronin.CandidateConfig) { c.TTL = 10 * time.Millisecond }, "TTL 10ms"},
		{"bad bucket", func(c *ronin.CandidateConfig) { c.BucketName = "a.b" }, `BucketName "a.b"`},
		{"empty bucket", func(c *ronin.CandidateConfig) { c.BucketName = "" }, `BucketName ""`},
		{"bad key", func(c *ronin.CandidateConfig) { c.KeyName = "a b" }, `KeyName "a b"`},
		{"empty key", func(c *ronin.CandidateConfig) { c.KeyName = "" }, `KeyName ""`},
		{"reserved key", func(c *ronin.CandidateConfig) { c.KeyName = "_ronin.session.x" }, "reserved"},
		{"renew deadline", func(c *ronin.CandidateConfig) { c.RenewDeadline = c.TTL }, "RenewDeadline 1s"},
		{"replicas above servers", func(c *ronin.CandidateConfig) { c.Replicas = 3 }, "Replicas 3"},
		{"negative replicas", func(c *ronin.CandidateConfig) { c.Replicas = -1 }, "Replicas -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.mutate(&cfg)
			_, err := m.NewCandidate(cfg)
			require.ErrorIs(t, err, ronin.ErrInvalidConfig)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

// TestBucketSettingsMustAgree: TTL and Replicas of a bucket must match,
// in-process and against a bucket that exists in the cluster.
func TestBucketSettingsMustAgree(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	_, err := c.Manager(0).NewCandidate(candidateConfig("a", "shared", "k", 2*time.Second))
	require.NoError(t, err)

	_, err = c.Manager(0).NewCandidate(candidateConfig("b", "shared", "k2", 3*time.Second))
	require.ErrorIs(t, err, ronin.ErrBucketMismatch)
	require.ErrorContains(t, err, "TTL 2s")

	_, err = c.Manager(1).NewCandidate(candidateConfig("b", "shared", "k", 3*time.Second))
	require.ErrorIs(t, err, ronin.ErrBucketMismatch, "other node, existing bucket")
	require.ErrorContains(t, err, "TTL 2s")

	cfg := candidateConfig("b", "shared", "k", 2*time.Second)
	cfg.Replicas = 2
	_, err = c.Manager(2).NewCandidate(cfg)
	require.ErrorIs(t, err, ronin.ErrBucketMismatch)
	require.ErrorContains(t, err, "Replicas 3")

	_, err = c.Manager(2).NewCandidate(candidateConfig("b", "shared", "k", 2*time.Second))
	require.NoError(t, err)
}
