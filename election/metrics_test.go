package election

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/nonchan7720/ronin/internal/store/memstore"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// uncomparable is a MeterProvider that cannot be a map key.
type uncomparable struct {
	metric.MeterProvider
	_ []int
}

// wrapped is of a comparable type, but holds a value that is not.
type wrapped struct{ metric.MeterProvider }

// leaderStatus returns election.leader_status by candidate ID.
func leaderStatus(t *testing.T, r *sdkmetric.ManualReader) map[string]int64 {
	out := map[string]int64{}
	for _, p := range testkit.Int64Points(t, r) {
		if p.Metric == "election.leader_status" {
			id, _ := p.Attrs.Value("candidate_id")
			out[id.AsString()] = p.Value
		}
	}
	return out
}

// Running candidates of one MeterProvider share one set of instruments and
// one callback, which goes with the last of them; a provider that cannot be
// a map key works too, with meters of its own.
func TestCandidatesShareTheirProvidersMeters(t *testing.T) {
	for _, tc := range []struct {
		name   string
		shared bool
		wrap   func(metric.MeterProvider) metric.MeterProvider
	}{
		{"comparable", true, func(mp metric.MeterProvider) metric.MeterProvider { return mp }},
		{"uncomparable", false, func(mp metric.MeterProvider) metric.MeterProvider { return uncomparable{MeterProvider: mp} }},
		{"uncomparable inside", false, func(mp metric.MeterProvider) metric.MeterProvider {
			return wrapped{uncomparable{MeterProvider: mp}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				reg := newTestRegistry(t, memstore.New(time.Now), "n1")
				reader := sdkmetric.NewManualReader()
				sdk := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
				mp := tc.wrap(sdk)
				var stops []func()
				for _, id := range []string{"a", "b"} {
					c, err := NewCandidate(t.Context(), reg, CandidateConfig{CandidateID: id, BucketName: "b", KeyName: "k",
						TTL: time.Second, Replicas: 1, MeterProvider: mp})
					require.NoError(t, err)
					stops = append(stops, run(t, c))
				}
				synctest.Wait()
				assert.Len(t, leaderStatus(t, reader), 2, "both candidates are observed")
				shared.Lock()
				if tc.shared {
					m := shared.byProvider[mp]
					require.NotNil(t, m, "one entry for the provider")
					assert.Len(t, m.running, 2, "both candidates in it")
				} else {
					assert.Empty(t, shared.byProvider, "nothing kept for a provider that cannot be a key")
				}
				shared.Unlock()
				for _, stop := range stops {
					stop()
				}
				assert.Empty(t, leaderStatus(t, reader), "no series after the candidates stopped")
				shared.Lock()
				defer shared.Unlock()
				assert.Empty(t, shared.byProvider, "the last candidate took its provider's entry with it")
			})
		})
	}
}
