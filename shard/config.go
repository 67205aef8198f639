package shard

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/nonchan7720/ronin/internal/engine"
)

// Defaults of Config.
const (
	// DefaultTTL is the lease TTL when Config.TTL is 0.
	DefaultTTL = 5 * time.Second
	// MaxShards is the largest shard count accepted.
	MaxShards = 1 << 16
	// DefaultHandoffTimeout bounds how long a handoff waits for a handler
	// to return after its ctx was cancelled.
	DefaultHandoffTimeout = 10 * time.Second
	// DefaultMaxMoves is how many shards a node hands over at once.
	DefaultMaxMoves = 4
	// DefaultDebounce is how long a new member must stay before shards are
	// moved to it.
	DefaultDebounce = 300 * time.Millisecond
	// DefaultStagger separates the takeover attempts of successive
	// rendezvous ranks for a shard whose target does not take it.
	DefaultStagger = 100 * time.Millisecond
	// DefaultPrepareTimeout bounds Config.Prepare.
	DefaultPrepareTimeout = 10 * time.Second
	// DefaultSettle is the cold-start window: how long a group that finds
	// no shard held waits for the nodes started with it to appear.
	DefaultSettle = time.Second
	// DefaultRemember is how long the plan remembers a member that left.
	DefaultRemember = time.Minute
)

// Config configures a shard group: a bucket whose Shards shards are spread
// over the nodes that run the group.
type Config struct {
	// BucketName is the group's election bucket; required. Letters,
	// digits, '_' and '-'. It may not be shared with plain candidates.
	BucketName string
	// Shards is the fixed number of shards; required, 1..MaxShards. All
	// nodes must agree; it is stored with the bucket and cannot change.
	Shards int
	// TTL of the leases; 0 means DefaultTTL (5s), at least engine.MinTTL.
	// A crashed owner's shards move after about TTL.
	TTL time.Duration
	// Replicas of the bucket's stream; 0 means 1 for a single node, 3 for
	// a cluster.
	Replicas int
	// Handler runs each shard this node owns; required.
	Handler Handler
	// HandoffTimeout bounds the wait for a handler to return once its ctx
	// is cancelled before its shard is released anyway; 0 means
	// DefaultHandoffTimeout (10s).
	HandoffTimeout time.Duration
	// MaxMoves is how many shards this node hands over at once when the
	// plan moves them away; 0 means DefaultMaxMoves (4).
	MaxMoves int
	// Debounce is how long a joining member must be seen before shards are
	// moved to it; 0 means DefaultDebounce (300ms). Leaving members are
	// dropped at once.
	Debounce time.Duration
	// Remember is how long the plan remembers a member that left (drained,
	// stopped, cut off, crashed): meanwhile only its shards are spread over
	// the others, and when it is back (a restart, a healed partition) they
	// return to it and no other shard moves. After Remember without it the
	// plan is made afresh without it, which may move a few shards between
	// the others. 0 means DefaultRemember (1m); a negative value disables
	// it (the plan always covers just the members there now).
	Remember time.Duration
	// Stagger is the delay between rendezvous ranks when a free shard's
	// target does not take it: the first other member takes it after TTL/2,
	// the next after TTL/2+Stagger, and so on; 0 means DefaultStagger
	// (100ms).
	Stagger time.Duration
	// Prepare, if set, runs on the node a shard moves to before the node
	// that owns it lets go: warm caches, open connections, load state,
	// while the old owner still serves. The owner hands the shard over
	// once Prepare returned (with or without an error) or PrepareTimeout
	// passed since the move was planned, so the gap between the old
	// handler's return and the new one's start stays a single write. ctx
	// ends when the shard is no longer coming (the plan changed, the group
	// stops) or at PrepareTimeout. It runs while this node's session
	// advertises it; a node without Prepare is handed shards at once.
	Prepare func(ctx context.Context, shardID int) error
	// PrepareTimeout bounds Prepare; 0 means DefaultPrepareTimeout (10s).
	PrepareTimeout time.Duration
	// Settle is the cold-start window: when Run starts and no shard of the
	// group has a live owner (the whole group starts), nothing is acquired
	// for Settle, so that every node started together is in the first
	// plan and no shard starts on one node only to move to another; members
	// seen in the window are adopted at its end without waiting out
	// Debounce. The window ends as soon as the group has as many members
	// as the cluster has storing servers (ServerConfig.Peers); while it has
	// fewer, the window stretches, up to 3·Settle, so that a node started a
	// little after the others is in the first plan too. A group that runs
	// on fewer nodes than the cluster has therefore waits 3·Settle on a
	// cold start, and members beyond the storing servers' count (route-only
	// servers, URL mode clients) are not waited for. With no count (URL
	// mode) the window is Settle. It does not delay a node that joins a
	// running group. A window opens again, for Settle, when this node's
	// session in the bucket was lost and a new one begins: in it the node
	// takes (or rescues) only the shards it would own with every member
	// back, so that after a store outage that ended every session the
	// first node back does not take every shard to hand most of them
	// back. 0 means DefaultSettle (1s); a negative value disables both.
	Settle time.Duration
	// MeterProvider for the group's metrics; nil means the global one.
	MeterProvider metric.MeterProvider
	// Logger; nil means the Manager's. Records carry bucket and shard;
	// the Manager's logger also carries node.
	Logger *slog.Logger
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.HandoffTimeout == 0 {
		c.HandoffTimeout = DefaultHandoffTimeout
	}
	if c.MaxMoves == 0 {
		c.MaxMoves = DefaultMaxMoves
	}
	if c.Debounce == 0 {
		c.Debounce = DefaultDebounce
	}
	if c.Stagger == 0 {
		c.Stagger = DefaultStagger
	}
	if c.PrepareTimeout == 0 {
		c.PrepareTimeout = DefaultPrepareTimeout
	}
	switch {
	case c.Settle == 0:
		c.Settle = DefaultSettle
	case c.Settle < 0:
		c.Settle = 0
	}
	switch {
	case c.Remember == 0:
		c.Remember = DefaultRemember
	case c.Remember < 0:
		c.Remember = 0
	}
	return c
}

// validate checks the fields that the bucket spec does not.
func (c Config) validate() error {
	switch {
	case c.Shards < 1 || c.Shards > MaxShards:
		return fmt.Errorf("%w: Shards %d: must be between 1 and %d", engine.ErrInvalidConfig, c.Shards, MaxShards)
	case c.Handler == nil:
		return fmt.Errorf("%w: Handler nil: required", engine.ErrInvalidConfig)
	case c.HandoffTimeout < 0:
		return fmt.Errorf("%w: HandoffTimeout %v: must not be negative", engine.ErrInvalidConfig, c.HandoffTimeout)
	case c.MaxMoves < 0:
		return fmt.Errorf("%w: MaxMoves %d: must not be negative", engine.ErrInvalidConfig, c.MaxMoves)
	case c.Debounce < 0:
		return fmt.Errorf("%w: Debounce %v: must not be negative", engine.ErrInvalidConfig, c.Debounce)
	case c.PrepareTimeout < 0:
		return fmt.Errorf("%w: PrepareTimeout %v: must not be negative", engine.ErrInvalidConfig, c.PrepareTimeout)
	case c.Stagger < 0:
		return fmt.Errorf("%w: Stagger %v: must not be negative", engine.ErrInvalidConfig, c.Stagger)
	}
	return nil
}

// labelShards stores the shard count in the bucket's metadata.
const labelShards = "shards"

// Count returns the shard count stored with a shard group's bucket, and
// whether spec is one.
func Count(spec engine.BucketSpec) (int, bool) {
	n, err := strconv.Atoi(spec.Labels[labelShards])
	return n, err == nil && n > 0
}

// bucketSpec is the bucket part of the config.
func (c Config) bucketSpec() engine.BucketSpec {
	return engine.BucketSpec{
		Name:     c.BucketName,
		Timing:   engine.Timing{TTL: c.TTL},
		Replicas: c.Replicas,
		Labels:   map[string]string{labelShards: fmt.Sprint(c.Shards)},
	}
}
