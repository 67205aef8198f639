package store_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

// A watch of a bucket deleted and created again at once must end without
// delivering anything of the new incarnation: its ordered consumer is
// recreated under the same stream name after a consume error, and the
// new stream's entries would read as later writes of the old bucket. The
// recreation races the watch's check, so the test tries several times.
func TestWatchDoesNotFollowANewIncarnation(t *testing.T) {
	servers := startCluster(t, 3)
	e := &jsEnv{servers: servers, repl: 3, top: t, nodes: map[int]jetstream.JetStream{}}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	spec := store.Spec{Name: "inc", Replicas: 3}
	for try := range 6 {
		var o store.Opened
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			var err error
			o, err = e.backend(t, 0).Open(ctx, spec)
			assert.NoError(c, err, "try %d: open", try)
		}, 30*time.Second, 50*time.Millisecond)
		err := unrouted(ctx, func() error { _, err := o.Bucket.Create(ctx, "a", []byte("v1")); return err })
		require.NoError(t, err)
		w, err := o.Bucket.Watch(ctx)
		require.NoError(t, err)
		require.Equal(t, "a", (<-w.Updates()).Key)
		require.Nil(t, <-w.Updates(), "the initial values are in")

		e.deleteBucket(t, spec.Name)
		again, err := e.backend(t, 1).Open(ctx, spec)
		require.NoError(t, err)
		err = unrouted(ctx, func() error { _, err := again.Bucket.Create(ctx, "b", []byte("v1")); return err })
		require.NoError(t, err)
		timeout := time.After(10 * time.Second)
		for open := true; open; {
			select {
			case en, ok := <-w.Updates():
				if open = ok; ok {
					t.Fatalf("try %d: the old bucket's watch delivered %q (rev %d) of its next incarnation", try, en.Key, en.Rev)
				}
			case <-timeout:
				t.Fatalf("try %d: the old bucket's watch did not end", try)
			}
		}
		e.deleteBucket(t, spec.Name)
	}
}
