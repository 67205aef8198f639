package integration

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// TestCutOffNodeStepsDownReportsAndRejoins: a node that loses the store
// reports unhealthy within RenewDeadline, steps down, logs the cause once
// (not at every retry), keeps Run going, and rejoins by itself when the
// store answers again.
func TestCutOffNodeStepsDownReportsAndRejoins(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	logs := &testkit.Buffer{}
	p := ronintest.NewProxy(t, c.Manager(0).ClientURL()[len("nats://"):])
	far, err := ronin.NewManager(ronin.ServerConfig{NodeID: "far", URL: p.URL(), Logger: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, far.Start(ctx))
	t.Cleanup(far.Shutdown)

	const ttl = 2 * time.Second
	r := startCandidate(t, far, ronin.CandidateConfig{BucketName: "cut", KeyName: "k", CandidateID: "far-1", TTL: ttl})
	ronintest.Eventually(t, 10*time.Second, r.IsLeader, "far never elected")
	require.NoError(t, far.Healthy())

	p.Pause()
	cutAt := time.Now()
	ronintest.Eventually(t, ttl, func() bool { return far.Healthy() != nil }, "Healthy still nil after the store went away")
	reportedIn := time.Since(cutAt)
	err = far.Healthy()
	require.ErrorIs(t, err, ronin.ErrUnavailable)
	require.Contains(t, err.Error(), `bucket "cut"`)
	require.False(t, r.IsLeader(), "unhealthy node still leads")
	t.Logf("unhealthy after %v (RenewDeadline %v): %v", reportedIn.Round(time.Millisecond), ttl*2/3, err)
	require.Less(t, reportedIn, ttl*2/3+500*time.Millisecond, "reported later than RenewDeadline (+0.5 s of scheduling)")

	time.Sleep(6 * time.Second) // about 40 failing attempts at the old pace
	select {
	case <-r.exited:
		t.Fatalf("Run returned while cut off: %v", r.err)
	default:
	}
	warns := strings.Count(logs.String(), "level=WARN")
	t.Logf("warnings during a 6 s outage: %d", warns)
	require.LessOrEqual(t, warns, 3, "a cut-off node must log the cause once, then rate-limited")
	require.Equal(t, 1, strings.Count(logs.String(), "cannot reach the store"), "the outage's first report")

	p.Resume()
	ronintest.Eventually(t, 3*ttl, func() bool { return far.Healthy() == nil }, "Healthy never recovered")
	ronintest.Eventually(t, 3*ttl, r.IsLeader, "never re-elected after the store returned")
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "the store answers again") >= 1 }, time.Second, 10*time.Millisecond)
}

// TestObserveLeaderWithoutCampaigning: Leader and ObserveLeader read the
// bucket's settings from the store, follow the leader, and never write or
// appear as a member.
func TestObserveLeaderWithoutCampaigning(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	far, _ := startFarNode(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	_, err := far.Leader(ctx, "watched", "k")
	require.ErrorIs(t, err, ronin.ErrNoBucket)
	_, err = far.Leader(ctx, "watched", "_ronin.x")
	require.ErrorIs(t, err, ronin.ErrInvalidConfig)

	a := startCandidate(t, c.Manager(0), ronin.CandidateConfig{BucketName: "watched", KeyName: "k", CandidateID: "a", TTL: time.Second})
	rev := <-a.elected
	l, err := far.Leader(ctx, "watched", "k")
	require.NoError(t, err)
	require.Equal(t, ronin.Leader{CandidateID: "a", NodeID: "n1", Rev: rev}, l)

	ch, err := far.ObserveLeader(ctx, "watched", "k")
	require.NoError(t, err)
	require.Equal(t, l, <-ch)
	a.stop() // resigns
	require.Equal(t, ronin.Leader{}, <-ch, "a zero Leader once the key is free")
	b := startCandidate(t, c.Manager(0), ronin.CandidateConfig{BucketName: "watched", KeyName: "k", CandidateID: "b", TTL: time.Second})
	brev := <-b.elected
	require.Equal(t, ronin.Leader{CandidateID: "b", NodeID: "n1", Rev: brev}, <-ch)

	st := c.Manager(0).Status()
	require.Len(t, st.Buckets, 1)
	for _, m := range st.Buckets[0].Members {
		require.Equal(t, "n1", m.Node, "an observer must never be a member")
	}
	fs := far.Status()
	require.Len(t, fs.Buckets, 1)
	require.True(t, fs.Buckets[0].Complete)
	require.Equal(t, "b", fs.Buckets[0].Keys[0].Candidate)

	cancel()
	for range ch { // closes when ctx ends
	}
}

// TestShardGroupReadiness: Ready turns true once every planned shard runs
// here, WaitReady returns then, and draining clears it.
func TestShardGroupReadiness(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	log := ronintest.NewShardLog()
	mb := startGroup(t, c.Manager(0), ronin.ShardConfig{BucketName: "ready", Shards: 8, TTL: time.Second}, log)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, mb.group.WaitReady(ctx))
	require.True(t, mb.group.Ready())
	require.Len(t, mb.group.Owned(), 8, "ready before every planned shard ran")
	st := c.Manager(0).Status()
	require.True(t, st.Healthy, st.Problem)
	b := st.Buckets[0]
	require.Len(t, b.Shards, 8)
	require.Zero(t, b.Ownerless)
	require.NotNil(t, b.Group)
	require.True(t, b.Group.Ready)
	mb.stop()
	require.False(t, mb.group.Ready(), "ready after Run returned")
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	require.True(t, errors.Is(mb.group.WaitReady(short), context.DeadlineExceeded))
}

// TestShardGroupDrainAndRejoin: Drain hands every shard over while Run
// keeps going (the node stays in the bucket, leaving), Rejoin takes the
// share back; no shard ever runs twice.
func TestShardGroupDrainAndRejoin(t *testing.T) {
	const shards = 8
	c := ronintest.NewCluster(t, 2)
	log := ronintest.NewShardLog()
	cfg := shardConfig("maint", shards, time.Second)
	a := startGroup(t, c.Manager(0), cfg, log)
	startGroup(t, c.Manager(1), cfg, log)
	settled(t, log, shards, []string{"n1", "n2"}, 15*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, a.group.Drain(ctx))
	require.Empty(t, a.group.Owned())
	require.True(t, a.group.Draining())
	require.False(t, a.group.Ready())
	settled(t, log, shards, []string{"n2"}, 5*time.Second)
	st := c.Manager(0).Status()
	leaving := false
	for _, m := range st.Buckets[0].Members {
		leaving = leaving || m.Node == "n1" && m.Leaving
	}
	require.True(t, leaving, "a drained node stays in the bucket, marked leaving: %+v", st.Buckets[0].Members)
	select {
	case <-a.exited:
		t.Fatal("Run returned on Drain")
	default:
	}

	a.group.Rejoin()
	settled(t, log, shards, []string{"n1", "n2"}, 10*time.Second)
	require.NoError(t, a.group.WaitReady(ctx))
	require.False(t, a.group.Draining())
	log.Check(t)
}

// TestShardPrepareRunsBeforeTheOwnerLetsGo: a joining node prepares each
// shard coming to it while the old owner still runs it; the handover then
// costs one write, not the preparation.
func TestShardPrepareRunsBeforeTheOwnerLetsGo(t *testing.T) {
	const shards = 4
	const prepareTime = 300 * time.Millisecond
	c := ronintest.NewCluster(t, 2)
	log := ronintest.NewShardLog()
	var mu sync.Mutex
	prepared := map[int]bool{} // shard -> the old owner still ran it when Prepare returned
	cfg := shardConfig("prep", shards, time.Second)
	cfg.Prepare = func(ctx context.Context, id int) error {
		time.Sleep(prepareTime) // warm-up
		oldStillRuns := slices.Equal(log.Running()[id], []string{"n1"})
		mu.Lock()
		prepared[id] = oldStillRuns
		mu.Unlock()
		return nil
	}
	startGroup(t, c.Manager(0), cfg, log)
	settled(t, log, shards, []string{"n1"}, 15*time.Second)
	joinAt := time.Now()
	startGroup(t, c.Manager(1), cfg, log)
	owners := settled(t, log, shards, []string{"n1", "n2"}, 15*time.Second)

	gaps := log.Gaps(joinAt)
	mu.Lock()
	defer mu.Unlock()
	moved := 0
	for id, node := range owners {
		if node != "n2" {
			continue
		}
		moved++
		require.Contains(t, prepared, id, "shard %d reached n2 without Prepare", id)
		require.True(t, prepared[id], "shard %d: n1 let go before n2's Prepare returned", id)
	}
	require.Equal(t, shards/2, moved)
	require.Len(t, gaps, moved)
	for _, g := range gaps {
		require.Less(t, g, prepareTime, "the gap includes the preparation: %v", gaps)
	}
	t.Logf("handover gaps with a %v Prepare: %v", prepareTime, gaps)
	log.Check(t)
}
