package election

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterName is the instrumentation scope of the election layer.
const meterName = "github.com/nonchan7720/ronin/election"

// candidateMetrics are the spec's four instruments plus the time left on
// the lease. All are observed from the candidate's state at collection time,
// so they cost nothing between collections and exist from Run's start.
type candidateMetrics struct {
	meter     metric.Meter
	status    metric.Int64ObservableGauge
	term      metric.Int64ObservableGauge
	failures  metric.Int64ObservableCounter
	changes   metric.Int64ObservableCounter
	remaining metric.Float64ObservableGauge
	attrs     metric.MeasurementOption
	c         *Candidate
}

func newCandidateMetrics(c *Candidate) (*candidateMetrics, error) {
	mp := c.cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := &candidateMetrics{meter: mp.Meter(meterName), c: c}
	m.attrs = metric.WithAttributeSet(attribute.NewSet(
		attribute.String("candidate_id", c.cfg.CandidateID),
		attribute.String("bucket", c.cfg.BucketName),
		attribute.String("key", c.cfg.KeyName),
	))
	var err error
	if m.status, err = m.meter.Int64ObservableGauge("election.leader_status",
		metric.WithDescription("1 if this candidate leads the key, else 0")); err != nil {
		return nil, err
	}
	if m.term, err = m.meter.Int64ObservableGauge("election.leader_term",
		metric.WithDescription("fencing token (KV revision) of the current term, 0 when not leading")); err != nil {
		return nil, err
	}
	if m.failures, err = m.meter.Int64ObservableCounter("election.renew_failures_total",
		metric.WithDescription("failed renewals of this node's session in the bucket while the candidate ran")); err != nil {
		return nil, err
	}
	if m.changes, err = m.meter.Int64ObservableCounter("election.leader_changes_total",
		metric.WithDescription("observed changes of the key's leader; the first observed leader counts")); err != nil {
		return nil, err
	}
	if m.remaining, err = m.meter.Float64ObservableGauge("election.lease_remaining",
		metric.WithUnit("s"), metric.WithDescription("time left on the lease by the local clock, 0 when not leading")); err != nil {
		return nil, err
	}
	return m, nil
}

// start registers the callback; the returned func unregisters it.
func (m *candidateMetrics) start() func() {
	base := m.c.bucket.RenewFailures()
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		c := m.c
		var status int64
		if c.IsLeader() {
			status = 1
		}
		var left float64
		if l := c.lease.Load(); l != nil {
			left = l.Remaining().Seconds()
		}
		o.ObserveInt64(m.status, status, m.attrs)
		o.ObserveInt64(m.term, int64(c.LeaderRev()), m.attrs)
		o.ObserveInt64(m.failures, int64(c.bucket.RenewFailures()-base), m.attrs)
		o.ObserveInt64(m.changes, c.changes.Load(), m.attrs)
		o.ObserveFloat64(m.remaining, left, m.attrs)
		return nil
	}, m.status, m.term, m.failures, m.changes, m.remaining)
	if err != nil {
		m.c.log.Warn("ronin: cannot register metrics", "err", err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
