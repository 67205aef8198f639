package election

import (
	"context"
	"reflect"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterName is the instrumentation scope of the election layer.
const meterName = "github.com/nonchan7720/ronin/election"

// meters are the spec's four instruments plus the time left on the lease,
// for the running candidates that share one MeterProvider. One callback
// observes them all from their state at collection time, so metrics cost
// nothing between collections, and a running candidate costs a map entry
// rather than instruments and a registration of its own (15,000 candidates
// on one node spent 8 MB on those).
type meters struct {
	status    metric.Int64ObservableGauge
	term      metric.Int64ObservableGauge
	failures  metric.Int64ObservableCounter
	changes   metric.Int64ObservableCounter
	remaining metric.Float64ObservableGauge
	reg       metric.Registration

	mu      sync.Mutex
	running map[*Candidate]uint64 // the bucket's renew failures when the candidate started
}

// shared holds the meters of each MeterProvider that has running
// candidates; an entry goes when its last candidate stops.
var shared = struct {
	sync.Mutex
	byProvider map[metric.MeterProvider]*meters
}{byProvider: map[metric.MeterProvider]*meters{}}

// candidateAttrs are the attributes of a candidate's series.
func candidateAttrs(cfg CandidateConfig) metric.MeasurementOption {
	return metric.WithAttributeSet(attribute.NewSet(
		attribute.String("candidate_id", cfg.CandidateID),
		attribute.String("bucket", cfg.BucketName),
		attribute.String("key", cfg.KeyName),
	))
}

// startMetrics makes c's series appear in its MeterProvider's collections
// until the returned func runs.
func startMetrics(c *Candidate) func() {
	mp := c.cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	// A provider that cannot be a map key gets meters of its own.
	key := mp
	if !reflect.ValueOf(mp).Comparable() {
		key = nil
	}
	shared.Lock()
	defer shared.Unlock()
	m := shared.byProvider[key]
	if m == nil || key == nil {
		var err error
		if m, err = newMeters(mp); err != nil {
			c.log.Warn("ronin: cannot register metrics", "err", err)
			return func() {}
		}
		if key != nil {
			shared.byProvider[key] = m
		}
	}
	m.mu.Lock()
	m.running[c] = c.bucket.RenewFailures()
	m.mu.Unlock()
	return func() {
		shared.Lock()
		defer shared.Unlock()
		m.mu.Lock()
		delete(m.running, c)
		last := len(m.running) == 0
		m.mu.Unlock()
		if last {
			_ = m.reg.Unregister()
			if key != nil && shared.byProvider[key] == m {
				delete(shared.byProvider, key)
			}
		}
	}
}

// newMeters creates the instruments in mp and registers their callback.
func newMeters(mp metric.MeterProvider) (*meters, error) {
	meter := mp.Meter(meterName)
	m := &meters{running: map[*Candidate]uint64{}}
	var err error
	if m.status, err = meter.Int64ObservableGauge("election.leader_status",
		metric.WithDescription("1 if this candidate leads the key, else 0")); err != nil {
		return nil, err
	}
	if m.term, err = meter.Int64ObservableGauge("election.leader_term",
		metric.WithDescription("fencing token (KV revision) of the current term, 0 when not leading")); err != nil {
		return nil, err
	}
	if m.failures, err = meter.Int64ObservableCounter("election.renew_failures_total",
		metric.WithDescription("failed renewals of this node's session in the bucket while the candidate ran")); err != nil {
		return nil, err
	}
	if m.changes, err = meter.Int64ObservableCounter("election.leader_changes_total",
		metric.WithDescription("observed changes of the key's leader; the first observed leader counts")); err != nil {
		return nil, err
	}
	if m.remaining, err = meter.Float64ObservableGauge("election.lease_remaining",
		metric.WithUnit("s"), metric.WithDescription("time left on the lease by the local clock, 0 when not leading")); err != nil {
		return nil, err
	}
	if m.reg, err = meter.RegisterCallback(m.observe, m.status, m.term, m.failures, m.changes, m.remaining); err != nil {
		return nil, err
	}
	return m, nil
}

// observe reports every running candidate.
func (m *meters) observe(_ context.Context, o metric.Observer) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for c, base := range m.running {
		var status int64
		if c.IsLeader() {
			status = 1
		}
		var left float64
		if l := c.lease.Load(); l != nil {
			left = l.Remaining().Seconds()
		}
		o.ObserveInt64(m.status, status, c.attrs)
		o.ObserveInt64(m.term, int64(c.LeaderRev()), c.attrs)
		o.ObserveInt64(m.failures, int64(c.bucket.RenewFailures()-base), c.attrs)
		o.ObserveInt64(m.changes, c.changes.Load(), c.attrs)
		o.ObserveFloat64(m.remaining, left, c.attrs)
	}
	return nil
}
