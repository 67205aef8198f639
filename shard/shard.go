// Package shard is the shard group: a bucket's fixed number of shards
// spread over the nodes that run the group. A Group keeps the membership,
// plans each shard's owner with the balancer, campaigns for the shards
// planned here, runs each won shard's Handler (through package worker) and
// hands shards over when the plan moves them. Assignment is the
// cluster-wide view; For maps an application key to its shard.
package shard

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/cespare/xxhash/v2"
)

// Handler runs one shard while this node owns it. ctx is cancelled when
// ownership ends for any reason, at the latest at the local lease deadline,
// and ctx.Err() reads the lease clock on every call: check it before each
// side effect and a paused process never acts after its deadline. rev is
// the fencing token of the ownership, constant until ctx ends: pass it to
// downstream writes so that a stale owner's writes can be refused.
//
// The handler should run until ctx ends. If it returns earlier (with or
// without an error) or panics, it is restarted with backoff, with the same
// rev, while this node still owns the shard; the node itself stays up.
type Handler func(ctx context.Context, shardID int, rev uint64) error

// keyPrefix starts the election key of every shard.
const keyPrefix = "shard."

// Key is the election key of shard id.
func Key(id int) string { return keyPrefix + strconv.Itoa(id) }

// ID returns the shard id of an election key, and whether key is one.
func ID(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, keyPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 || strconv.Itoa(id) != s {
		return 0, false
	}
	return id, true
}

// For returns the shard an application key belongs to among shards:
// xxhash64 of the key, modulo shards. Producers and consumers that agree on
// shards agree on the shard. shards must be positive.
func For(key []byte, shards int) int {
	return int(xxhash.Sum64(key) % uint64(shards))
}

// ForString is For for a string key.
func ForString(key string, shards int) int {
	return int(xxhash.Sum64String(key) % uint64(shards))
}

// Assignment is one shard's place in the cluster-wide view.
type Assignment struct {
	// Shard is the shard id.
	Shard int
	// Node owns the shard; "" when it has no live owner.
	Node string
	// Rev is the owner's fencing token; 0 without an owner.
	Rev uint64
	// Since is when the current owner took the shard (server time); for a
	// shard without an owner, the time of its record's last write.
	Since time.Time
}
