package election

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store/memstore"
)

func testRegistry(h Host) *Registry {
	h.Store = memstore.New(time.Now).Backend()
	h.NodeID = "n1"
	h.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return NewRegistry(h)
}

// One replica in a cluster would keep every fencing token on one disk.
func TestReplicasOneRefusedInCluster(t *testing.T) {
	spec := BucketSpec{Name: "b", Timing: Timing{TTL: time.Second}, Replicas: 1}

	_, err := testRegistry(Host{Clustered: true, ClusterSize: 3}).Bucket(context.Background(), spec)
	require.ErrorIs(t, err, ErrInvalidConfig)
	require.ErrorContains(t, err, "Replicas 1 in a cluster")
	require.ErrorContains(t, err, "AllowSingleReplica")

	_, err = testRegistry(Host{Clustered: true, ClusterSize: 3, AllowSingleReplica: true}).Bucket(context.Background(), spec)
	require.NoError(t, err, "opted in")
	_, err = testRegistry(Host{ClusterSize: 1}).Bucket(context.Background(), spec)
	require.NoError(t, err, "single node")
}

// A lease's end runs OnEnd callbacks on the goroutine that ends it, so a
// handler ctx cancelled from one is done, with everything derived from
// it, before end returns.
func TestLeaseEndCancelsSynchronously(t *testing.T) {
	l := newLease(nil, "k", "c", 7, nil)
	ctx, cancel := context.WithCancel(context.Background())
	l.OnEnd(cancel)
	derived, stop := context.WithTimeout(ctx, time.Hour)
	defer stop()
	l.end()
	require.Error(t, derived.Err(), "derived ctx cancelled in the same step")

	late, cancelLate := context.WithCancel(context.Background())
	l.OnEnd(cancelLate)
	require.Error(t, late.Err(), "OnEnd after the end runs at once")
}
