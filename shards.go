package ronin

import (
	"context"
	"fmt"

	"github.com/nonchan7720/ronin/shard"
)

// ShardHandler runs one shard while this node owns it; see shard.Handler.
type ShardHandler = shard.Handler

// ShardConfig configures a shard group; see shard.Config for every field
// and its default.
type ShardConfig = shard.Config

// ShardAssignment is one shard's owner in the cluster-wide view.
type ShardAssignment = shard.Assignment

// ShardFor returns the shard an application key belongs to among shards
// (xxhash64 modulo shards), so producers know where a record belongs.
func ShardFor(key string, shards int) int { return shard.ForString(key, shards) }

// RegisterShards registers a shard group for cfg.BucketName, creating the
// bucket if needed: Shards, TTL and Replicas must agree with every other
// user of the bucket (ErrBucketMismatch), and one node runs at most one
// group per bucket. Call Run on the result to take part.
func (m *Manager) RegisterShards(cfg ShardConfig) (*ShardGroup, error) {
	reg, err := m.registry()
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.groups[cfg.BucketName] != nil {
		return nil, fmt.Errorf("%w: a shard group for bucket %q is already registered on this node", ErrBucketMismatch, cfg.BucketName)
	}
	ctx, cancel := m.registerContext()
	defer cancel()
	if cfg.Logger == nil {
		cfg.Logger = m.node.Logger()
	} else {
		cfg.Logger = cfg.Logger.With("node", m.node.NodeID())
	}
	g, err := shard.NewGroup(ctx, reg, cfg)
	if err != nil {
		return nil, err
	}
	sg := &ShardGroup{g: g}
	m.groups[cfg.BucketName] = sg
	return sg, nil
}

// ShardGroup is this node's part of a shard group: Run takes part, the
// other methods read what the node does and sees.
type ShardGroup struct{ g *shard.Group }

// Run takes part in the group until ctx ends or the Manager shuts down,
// then drains: the node leaves the membership and hands its shards over
// one by one (handler ctx cancelled, handler returned, shard released, the
// new owner starts) before Run returns. It returns nil when ctx ends,
// ErrClosed when the Manager shuts down, an error wrapping ErrBucketGone
// when the bucket is deleted under it (every handler stopped), and
// ErrAlreadyRunning when it is running already. It may be called again
// after it returned, to rejoin.
func (g *ShardGroup) Run(ctx context.Context) error { return g.g.Run(ctx) }

// Owned returns the shards this node owns now, with their fencing tokens.
func (g *ShardGroup) Owned() map[int]uint64 { return g.g.Owned() }

// Assignment returns every shard's owner, token and since when, as this
// node sees the cluster (its own shards included at once).
func (g *ShardGroup) Assignment() []ShardAssignment { return g.g.Assignment() }

// Members returns the nodes that run the group now and are not leaving.
func (g *ShardGroup) Members() []string { return g.g.Members() }

// Ready reports whether this node takes its full part: Run is running, its
// view is complete, the plan includes it and every shard planned here
// runs here. It is false while draining. Use it for readiness probes.
func (g *ShardGroup) Ready() bool { return g.g.Ready() }

// WaitReady waits until Ready is true or ctx ends.
func (g *ShardGroup) WaitReady(ctx context.Context) error { return g.g.WaitReady(ctx) }

// Draining reports whether this node is handing its shards over or holds
// none on purpose (Run returning, or Drain without Rejoin).
func (g *ShardGroup) Draining() bool { return g.g.Draining() }

// Drain hands every shard this node owns over to the other members, each
// after its handler returned, and keeps the node in the group owning
// nothing until Rejoin: maintenance without exiting. It returns once the
// node owns nothing, or with ctx's error (a lone member keeps its shards).
func (g *ShardGroup) Drain(ctx context.Context) error { return g.g.Drain(ctx) }

// Rejoin ends a Drain: the node takes its share again.
func (g *ShardGroup) Rejoin() { g.g.Rejoin() }
