package integration

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// series is one metric point: name plus the attributes that matter here.
type series struct {
	name, candidate, node string
}

// collect reads every int64 gauge/sum point from r.
func collect(t *testing.T, r *sdkmetric.ManualReader) map[series]int64 {
	t.Helper()
	out := map[series]int64{}
	for _, p := range testkit.Int64Points(t, r) {
		c, _ := p.Attrs.Value("candidate_id")
		n, _ := p.Attrs.Value("node")
		out[series{p.Metric, c.AsString(), n.AsString()}] = p.Value
	}
	return out
}

// TestCandidateMetrics reads the spec's four metrics through an SDK
// ManualReader: present from the start, with the right values and
// attributes, following a handover.
func TestCandidateMetrics(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })

	cfg := func(id string) ronin.CandidateConfig {
		cc := candidateConfig(id, "metrics", "k", time.Second)
		cc.MeterProvider = mp
		return cc
	}
	a := startCandidate(t, c.Manager(0), cfg("a"))
	tok := <-a.elected
	b := startCandidate(t, c.Manager(0), cfg("b"))
	ronintest.Eventually(t, 2*time.Second, func() bool {
		return collect(t, reader)[series{"election.leader_changes_total", "b", ""}] == 1
	}, "b saw the leader")

	got := collect(t, reader)
	assert.Equal(t, int64(1), got[series{"election.leader_status", "a", ""}])
	assert.Equal(t, int64(tok), got[series{"election.leader_term", "a", ""}])
	assert.Equal(t, int64(0), got[series{"election.leader_status", "b", ""}])
	assert.Equal(t, int64(0), got[series{"election.leader_term", "b", ""}])
	assert.Equal(t, int64(1), got[series{"election.leader_changes_total", "a", ""}])
	for _, id := range []string{"a", "b"} {
		_, ok := got[series{"election.renew_failures_total", id, ""}]
		assert.True(t, ok, "renew_failures_total exists for %s from the start", id)
	}

	a.stop()
	<-b.elected
	ronintest.Eventually(t, 2*time.Second, func() bool {
		got := collect(t, reader)
		return got[series{"election.leader_status", "b", ""}] == 1 &&
			got[series{"election.leader_changes_total", "b", ""}] == 2
	}, "b leads: %v", collect(t, reader))
	got = collect(t, reader)
	assert.Equal(t, int64(b.LeaderRev()), got[series{"election.leader_term", "b", ""}])
	_, stillThere := got[series{"election.leader_status", "a", ""}]
	assert.False(t, stillThere, "a stopped: its series are gone")
}

// TestShardMetrics: owned and ownerless gauges and the handoff counter.
func TestShardMetrics(t *testing.T) {
	c := ronintest.NewCluster(t, 1)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	log := ronintest.NewShardLog()
	cfg := shardConfig("shardmetrics", 8, time.Second)
	cfg.MeterProvider = mp
	g := startGroup(t, c.Manager(0), cfg, log)
	settled(t, log, 8, []string{"n1"}, 10*time.Second)
	ronintest.Eventually(t, 2*time.Second, func() bool {
		got := collect(t, reader)
		return got[series{"shard.owned", "", "n1"}] == 8 && got[series{"shard.ownerless", "", "n1"}] == 0
	}, "owned 8: %v", collect(t, reader))
	got := collect(t, reader)
	assert.Equal(t, int64(0), got[series{"shard.handoffs_total", "", "n1"}])
	assert.Equal(t, int64(0), got[series{"shard.handler_restarts_total", "", "n1"}])
	g.stop()
	got = collect(t, reader)
	assert.Equal(t, int64(8), got[series{"shard.handoffs_total", "", "n1"}], "drain hands every shard over")
}
