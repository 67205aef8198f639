package engine

import (
	"errors"

	"github.com/nonchan7720/ronin/internal/errs"
	"github.com/nonchan7720/ronin/internal/store"
)

// Sentinel errors of the election layer. Errors returned by this package wrap
// one of them, so callers can test with errors.Is.
var (
	// ErrInvalidConfig wraps every configuration error; the message names the
	// offending field and its value. One value for all layers.
	ErrInvalidConfig = errs.ErrInvalidConfig
	// ErrBucketMismatch means a bucket is already used with other settings
	// (TTL, Replicas, shard count) in this process or in the cluster.
	ErrBucketMismatch = errs.ErrBucketMismatch
	// ErrLostRace means another candidate wrote the key first. Both NATS CAS
	// conflicts (ErrKeyExists and ErrKeyRevisionMismatch) map to it.
	ErrLostRace = errors.New("ronin: lost the race for the key")
	// ErrHeld means the key is held by a live session; campaigning is pointless.
	ErrHeld = errors.New("ronin: key is held")
	// ErrNoSession means this node has no valid session in the bucket right
	// now (store unreachable, session expired); leadership cannot be taken.
	ErrNoSession = errors.New("ronin: no valid session")
	// ErrClosed means the registry (and so the Manager) is shutting down.
	// One value for all layers.
	ErrClosed = errs.ErrClosed
	// ErrBucketGone means the bucket was deleted (or deleted and created
	// anew) while in use: every leader in it stepped down, and Run returns
	// it. Nothing recreates the bucket behind its users' backs; a new
	// NewCandidate or RegisterShards opens (or creates) it again.
	ErrBucketGone = store.ErrBucketGone
	// ErrNoBucket means a bucket to observe does not exist.
	ErrNoBucket = errs.ErrNoBucket
	// ErrAlreadyRunning means Run was called on a candidate that is running.
	ErrAlreadyRunning = errs.ErrAlreadyRunning
)
