package testkit

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Int64Point is one int64 gauge or sum point of a collection.
type Int64Point struct {
	Metric string
	Attrs  attribute.Set
	Value  int64
}

// Int64Points collects r once and returns its int64 gauge and sum points.
func Int64Points(t *testing.T, r *sdkmetric.ManualReader) []Int64Point {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("collect metrics: %v", err)
	}
	var out []Int64Point
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			var points []metricdata.DataPoint[int64]
			switch d := m.Data.(type) {
			case metricdata.Gauge[int64]:
				points = d.DataPoints
			case metricdata.Sum[int64]:
				points = d.DataPoints
			}
			for _, p := range points {
				out = append(out, Int64Point{Metric: m.Name, Attrs: p.Attributes, Value: p.Value})
			}
		}
	}
	return out
}
