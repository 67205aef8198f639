package shard

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// meterName is the instrumentation scope of the shard layer.
const meterName = "github.com/nonchan7720/ronin/shard"

// groupMetrics are a group's instruments, with attributes bucket and node.
type groupMetrics struct {
	meter     metric.Meter
	attrs     metric.MeasurementOption
	owned     metric.Int64ObservableGauge
	ownerless metric.Int64ObservableGauge
	handoffs  metric.Int64Counter
	restarts  metric.Int64Counter
	gap       metric.Float64Histogram
	g         *Group
}

func newGroupMetrics(g *Group) (*groupMetrics, error) {
	mp := g.cfg.MeterProvider
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	m := &groupMetrics{meter: mp.Meter(meterName), g: g}
	m.attrs = metric.WithAttributeSet(attribute.NewSet(
		attribute.String("bucket", g.cfg.BucketName),
		attribute.String("node", g.node),
	))
	var err error
	if m.owned, err = m.meter.Int64ObservableGauge("shard.owned",
		metric.WithDescription("shards this node owns")); err != nil {
		return nil, err
	}
	if m.ownerless, err = m.meter.Int64ObservableGauge("shard.ownerless",
		metric.WithDescription("shards without a live owner in this node's view")); err != nil {
		return nil, err
	}
	if m.handoffs, err = m.meter.Int64Counter("shard.handoffs_total",
		metric.WithDescription("shards this node handed over (moves and drain)")); err != nil {
		return nil, err
	}
	if m.restarts, err = m.meter.Int64Counter("shard.handler_restarts_total",
		metric.WithDescription("handler restarts after an error, a panic or an early return")); err != nil {
		return nil, err
	}
	if m.gap, err = m.meter.Float64Histogram("shard.handoff_gap",
		metric.WithUnit("s"),
		metric.WithDescription("time from a shard's release (server time) to its handler start here"),
		metric.WithExplicitBucketBoundaries(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)); err != nil {
		return nil, err
	}
	return m, nil
}

// start registers the observable callback and makes the counters' series
// visible; the returned func unregisters.
func (m *groupMetrics) start() func() {
	ctx := context.Background()
	m.handoffs.Add(ctx, 0, m.attrs)
	m.restarts.Add(ctx, 0, m.attrs)
	reg, err := m.meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		o.ObserveInt64(m.owned, int64(len(m.g.Owned())), m.attrs)
		held := m.g.bucket.Holders()
		free := 0
		for _, key := range m.g.keys {
			if _, ok := held[key]; !ok {
				free++
			}
		}
		o.ObserveInt64(m.ownerless, int64(free), m.attrs)
		return nil
	}, m.owned, m.ownerless)
	if err != nil {
		m.g.log.Warn("ronin: cannot register metrics", "err", err)
		return func() {}
	}
	return func() { _ = reg.Unregister() }
}
