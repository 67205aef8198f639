// Package errs holds the sentinel errors that every layer of Ronin wraps,
// so that one errors.Is test works whichever layer returned the error. The
// root package ronin re-exports each of them.
package errs

import "errors"

var (
	// ErrInvalidConfig is wrapped by every error that rejects a
	// configuration field; the message names the field and the value.
	ErrInvalidConfig = errors.New("ronin: invalid config")
	// ErrClosed means the Manager is shut down (or shutting down).
	ErrClosed = errors.New("ronin: manager shut down")
	// ErrUnavailable means this node cannot write to the store now
	// (disconnected, no quorum, no session); the message names the cause.
	ErrUnavailable = errors.New("ronin: store unavailable")
	// ErrNoBucket means a bucket that must exist (to observe it) does not.
	ErrNoBucket = errors.New("ronin: no such bucket")
	// ErrBucketMismatch means a bucket is already used with other settings
	// (TTL, Replicas, shard count) in this process or in the cluster.
	ErrBucketMismatch = errors.New("ronin: bucket settings mismatch")
	// ErrBucketGone means the bucket was deleted, or deleted and created
	// anew, while in use.
	ErrBucketGone = errors.New("ronin: bucket was deleted while in use")
	// ErrAlreadyRunning means Run was called on a candidate or shard group
	// that is running.
	ErrAlreadyRunning = errors.New("ronin: candidate already running")
	// ErrNotStarted means the Manager was used before a successful Start.
	ErrNotStarted = errors.New("ronin: manager not started")
	// ErrDuplicateNode means Start found another live node with the same
	// NodeID.
	ErrDuplicateNode = errors.New("ronin: duplicate node")
)
