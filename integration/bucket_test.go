package integration

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// TestBucketDeletedUnderLeader is the review's E1/E2 break on real
// JetStream: a bucket deleted while in use. Its leader steps down and Run
// reports why; nothing recreates the bucket silently; a candidate that
// opens it again explicitly leads only after the old leader's deadline,
// with a token above the old one.
func TestBucketDeletedUnderLeader(t *testing.T) {
	c := ronintest.NewCluster(t, 3)
	ttl := 2 * time.Second
	old := startCandidate(t, c.Manager(0), candidateConfig("old", "doomed", "k", ttl))
	leaderOf(t, ttl+10*time.Second, old)
	oldTok := old.LeaderRev()

	js, err := jetstream.New(nodehook.Of(c.Manager(1)).Conn())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, js.DeleteKeyValue(ctx, "doomed"))
	deleted := time.Now()

	select {
	case <-old.exited:
	case <-time.After(ttl):
		t.Fatal("Run did not return after its bucket was deleted")
	}
	require.ErrorIs(t, old.err, ronin.ErrBucketGone)
	require.False(t, old.IsLeader())
	_, err = js.KeyValue(ctx, "doomed")
	require.ErrorIs(t, err, jetstream.ErrBucketNotFound, "nothing recreated the bucket")

	h := ronintest.NewHistory()
	watchAll(h, "k", old)
	late := startCandidate(t, c.Manager(2), candidateConfig("late", "doomed", "k", ttl))
	watchAll(h, "k", late)
	leaderOf(t, ttl+10*time.Second, late)
	require.Greater(t, late.LeaderRev(), oldTok, "tokens of the new incarnation start above the old ones")
	require.GreaterOrEqual(t, time.Since(deleted), ttl, "the new incarnation granted nothing for a TTL")
	requireClean(t, h)
}
