package election

import (
	"errors"

	"github.com/nonchan7720/ronin/manager"
)

// Sentinel errors of the election layer. Errors returned by this package wrap
// one of them, so callers can test with errors.Is.
var (
	// ErrInvalidConfig wraps every configuration error; the message names the
	// offending field and its value.
	// It is the Manager's sentinel, so one errors.Is test covers all layers.
	ErrInvalidConfig = manager.ErrInvalidConfig
	// ErrBucketMismatch means a bucket is already used with other settings
	// (TTL, Replicas, shard count) in this process or in the cluster.
	ErrBucketMismatch = errors.New("ronin: bucket settings mismatch")
	// ErrLostRace means another candidate wrote the key first. Both NATS CAS
	// conflicts (ErrKeyExists and ErrKeyRevisionMismatch) map to it.
	ErrLostRace = errors.New("ronin: lost the race for the key")
	// ErrHeld means the key is held by a live session; campaigning is pointless.
	ErrHeld = errors.New("ronin: key is held")
	// ErrNoSession means this node has no valid session in the bucket right
	// now (store unreachable, session expired); leadership cannot be taken.
	ErrNoSession = errors.New("ronin: no valid session")
	// ErrClosed means the registry (and so the Manager) is shutting down.
	ErrClosed = errors.New("ronin: manager shut down")
	// ErrAlreadyRunning means Run was called on a candidate that is running.
	ErrAlreadyRunning = errors.New("ronin: candidate already running")
)
