package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/nonchan7720/ronin"
)

// runNode is single-node mode (-node): one node of a real cluster, as a
// Kubernetes pod runs it. It serves /healthz, /readyz and the status page
// from the start (readyz says why it is not ready while the cluster
// forms), joins the shard group and the election once its Manager has
// started, and on SIGTERM or SIGINT shuts the Manager down, which drains
// the group: every shard is handed over before the process exits.
func runNode(ctx context.Context, o options) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	mgr, err := ronin.NewManager(o.serverConfig(logger))
	if err != nil {
		return configError(err)
	}
	n := &single{id: o.node, mgr: mgr}
	w, err := startWeb(o, endpoints{targets: n.targets})
	if err != nil {
		return err
	}
	defer w.close()
	fmt.Printf("node %s: %d shards, TTL %v, peers %q\n", o.node, o.shards, o.ttl, o.peers)
	w.printURLs([]string{o.node})

	logger.Info("starting: waiting for a quorum of the cluster", "peers", o.peers)
	if err := mgr.Start(ctx); err != nil {
		mgr.Shutdown()
		if ctx.Err() != nil {
			logger.Info("stopped before the cluster formed")
			return nil
		}
		return err
	}
	runs, err := n.join(o, w, logger)
	if err != nil {
		mgr.Shutdown()
		return err
	}
	logger.Info("running; SIGTERM or SIGINT drains and stops")

	<-ctx.Done()
	n.setDraining()
	logger.Info("signal received: draining (handing every shard over)")
	t0 := time.Now()
	mgr.Shutdown() // resigns the candidate and drains the group, then stops the server
	runs.Wait()
	logger.Info("drained and stopped", "elapsed", time.Since(t0).Round(time.Millisecond))
	return nil
}

// single is the node of single-node mode, as the HTTP endpoints see it.
type single struct {
	id  string
	mgr *ronin.Manager

	mu       sync.Mutex
	group    *ronin.ShardGroup
	draining bool
}

func (n *single) targets() []target {
	n.mu.Lock()
	defer n.mu.Unlock()
	return []target{{id: n.id, mgr: n.mgr, group: n.group, stopping: n.draining}}
}

// setDraining hides the group from /readyz at once on a signal, before
// Shutdown has started to hand shards over.
func (n *single) setDraining() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.group = nil
	n.draining = true
}

// join registers the shard group and a candidate for the demo's election
// key, and runs both until the Manager shuts down.
func (n *single) join(o options, w *web, log *slog.Logger) (*sync.WaitGroup, error) {
	g, err := n.mgr.RegisterShards(ronin.ShardConfig{
		BucketName:    bucket,
		Shards:        o.shards,
		TTL:           o.ttl,
		MeterProvider: w.meterProvider(),
		Handler: func(ctx context.Context, shard int, rev uint64) error {
			log.Info("handler started", "shard", shard, "rev", rev)
			<-ctx.Done() // real work goes here, writing with rev as the token
			log.Info("handler stopped", "shard", shard, "rev", rev)
			return nil
		},
	})
	if err != nil {
		return nil, err
	}
	cand, err := n.mgr.NewCandidate(ronin.CandidateConfig{
		CandidateID:    n.id,
		BucketName:     leaderBucket,
		KeyName:        leaderKey,
		TTL:            o.ttl,
		MeterProvider:  w.meterProvider(),
		OnElected:      func() { log.Info("elected", "bucket", leaderBucket, "key", leaderKey) },
		OnSteppingDown: func() { log.Info("stepped down", "bucket", leaderBucket, "key", leaderKey) },
	})
	if err != nil {
		return nil, err
	}
	var runs sync.WaitGroup
	for what, run := range map[string]func(context.Context) error{"shard group": g.Run, "candidate": cand.Run} {
		runs.Go(func() {
			// Shutdown ends the Runs (they return ErrClosed); nothing else does.
			if err := run(context.Background()); err != nil && !errors.Is(err, ronin.ErrClosed) {
				log.Error(what+" stopped", "err", err)
			}
		})
	}
	n.mu.Lock()
	if !n.draining {
		n.group = g
	}
	n.mu.Unlock()
	return &runs, nil
}
