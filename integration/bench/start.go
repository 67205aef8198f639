package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/integration/ronintest"
)

// startTimes measures Start: single nodes, then 3-node clusters started
// concurrently until an R3 bucket can be created. The last cluster is kept
// as the bench's cluster.
func (b *bench) startTimes(ctx context.Context) error {
	var single sample
	for range b.plan.singleStarts {
		d, err := b.startSingle(ctx)
		if err != nil {
			b.rep.fail(secElection, "Start, single node", err)
			break
		}
		single = append(single, d)
	}
	if len(single) > 0 {
		b.rep.add(secElection, row{metric: "Start, single node: NewManager+Start → returned", setting: "no Peers, R1",
			n: fmt.Sprint(len(single)), result: single.summary()})
	}
	var ready, usable sample
	for i := range b.plan.clusterStarts {
		c, r, u, err := b.startMeasured(ctx)
		if err != nil {
			return err
		}
		ready, usable = append(ready, r), append(usable, u)
		progress("cluster start %d: all Start returned after %s, R3 bucket after %s", i+1, ms(r), ms(u))
		if i < b.plan.clusterStarts-1 {
			c.Shutdown()
		} else {
			b.c = c
		}
	}
	setting := "3 nodes started concurrently, one process"
	b.rep.add(secElection, row{metric: "Start, cluster: all three Start returned", setting: setting,
		n: fmt.Sprint(len(ready)), result: ready.summary()})
	b.rep.add(secElection, row{metric: "Start, cluster: R3 bucket created", setting: setting,
		n: fmt.Sprint(len(usable)), result: usable.summary()})
	return nil
}

func (b *bench) startSingle(ctx context.Context) (time.Duration, error) {
	c, dir, err := b.newCluster(1)
	if err != nil {
		return 0, err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	defer c.Shutdown()
	t0 := time.Now()
	if err := c.StartAll(ctx, nil); err != nil {
		return 0, err
	}
	return time.Since(t0), nil
}

// startMeasured starts a fresh 3-node cluster and returns it with the time
// until every Start returned and until an R3 bucket could be created.
func (b *bench) startMeasured(ctx context.Context) (*ronintest.Cluster, time.Duration, time.Duration, error) {
	c, _, err := b.newCluster(3)
	if err != nil {
		return nil, 0, 0, err
	}
	t0 := time.Now()
	if err := c.StartAll(ctx, nil); err != nil {
		c.Shutdown()
		return nil, 0, 0, err
	}
	ready := time.Since(t0)
	cfg := jetstream.KeyValueConfig{Bucket: "probe", Replicas: 3, Storage: jetstream.FileStorage}
	if _, err := waitUntil(ctx, time.Minute, 50*time.Millisecond, func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js(c, 0).CreateKeyValue(rctx, cfg)
		return err == nil
	}); err != nil {
		c.Shutdown()
		return nil, 0, 0, fmt.Errorf("create R3 bucket: %w", err)
	}
	usable := time.Since(t0)
	dropBucket(ctx, js(c, 0), cfg.Bucket)
	return c, ready, usable, nil
}
