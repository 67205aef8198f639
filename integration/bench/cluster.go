package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// routeURL is the route URL of an embedded node.
func routeURL(cfg ronin.ServerConfig) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", cfg.ClusterPort)
}

// newCluster lays out a cluster of n nodes named n1..nN, with its data
// dirs in a new dir under root, and no node running yet (StartAll starts
// it). dir is that data dir, for removal.
func (b *bench) newCluster(n int) (c *ronintest.Cluster, dir string, err error) {
	if dir, err = os.MkdirTemp(b.root, "cluster-"); err != nil {
		return nil, "", err
	}
	c, err = ronintest.New(ronintest.Options{Nodes: n, DataDir: dir, Logger: b.log})
	return c, dir, err
}

// js is node i's JetStream context.
func js(c *ronintest.Cluster, i int) jetstream.JetStream {
	return nodehook.Of(c.Manager(i)).JetStream()
}

// leaders returns the nodes that lead bucket's stream and the JetStream
// meta group ("" when unknown).
func leaders(ctx context.Context, c *ronintest.Cluster, bucket string) (stream, meta string) {
	if info, err := c.StreamInfo(ctx, bucket); err == nil && info.Cluster != nil {
		stream = info.Cluster.Leader
	}
	if i := c.MetaLeader(); i >= 0 {
		meta = c.Node(i).Config.NodeID
	}
	return stream, meta
}

// bystander returns a running node that leads neither bucket's stream nor
// the meta group, preferring the highest index; -1 if none.
func bystander(ctx context.Context, c *ronintest.Cluster, bucket string) int {
	stream, meta := leaders(ctx, c, bucket)
	for i := c.Size() - 1; i >= 0; i-- {
		if c.Manager(i) != nil && !slices.Contains([]string{stream, meta}, c.Node(i).Config.NodeID) {
			return i
		}
	}
	return -1
}

// dropBucket deletes a bucket the bench no longer needs, so idle streams
// do not add to later CPU readings.
func dropBucket(ctx context.Context, js jetstream.JetStream, bucket string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		progress("warning: delete bucket %s: %v", bucket, err)
	}
}

// afterRenew returns right after a watcher on js sees node's session in
// bucket renewed. A crash then has the worst-case phase: observers count a
// full TTL from that renew, so crash → takeover − TTL is the pure slack.
func afterRenew(ctx context.Context, js jetstream.JetStream, bucket, node string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, engine.SessionPrefix+node+".*", jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("session watcher closed")
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("no renew of %s's session: %w", node, ctx.Err())
		}
	}
}
