package election

import "github.com/nonchan7720/ronin/internal/engine"

// Sentinel errors of the election layer. Errors returned by this package
// wrap one of them, so callers can test with errors.Is; each is one value
// across every layer of Ronin.
var (
	// ErrInvalidConfig wraps every configuration error; the message names
	// the offending field and its value.
	ErrInvalidConfig = engine.ErrInvalidConfig
	// ErrBucketMismatch means a bucket is already used with other settings
	// (TTL, Replicas, shard count) in this process or in the cluster.
	ErrBucketMismatch = engine.ErrBucketMismatch
	// ErrClosed means the Manager is shutting down.
	ErrClosed = engine.ErrClosed
	// ErrBucketGone means the bucket was deleted (or deleted and created
	// anew) while in use: every leader in it stepped down, and Run returns
	// it. Nothing recreates the bucket behind its users' backs.
	ErrBucketGone = engine.ErrBucketGone
	// ErrAlreadyRunning means Run was called on a candidate that is running.
	ErrAlreadyRunning = engine.ErrAlreadyRunning
	// ErrUnavailable means this node cannot write to the store now.
	ErrUnavailable = engine.ErrUnavailable
	// ErrNoBucket means a bucket to observe does not exist.
	ErrNoBucket = engine.ErrNoBucket
)

// Timing limits and defaults of a candidate's lease.
const (
	// MinTTL is the shortest TTL accepted.
	MinTTL = engine.MinTTL
	// MaxRequestTimeout caps the timeout of a single store request.
	MaxRequestTimeout = engine.MaxRequestTimeout
	// DefaultRenewDeadlineRatio is RenewDeadline/TTL when RenewDeadline is 0.
	DefaultRenewDeadlineRatio = engine.DefaultRenewDeadlineRatio
	// DefaultRetryPeriodRatio is RetryPeriod/TTL when RetryPeriod is 0.
	DefaultRetryPeriodRatio = engine.DefaultRetryPeriodRatio
)

// ValidateBucketName reports whether name is a valid bucket name; the
// error names field and the value.
func ValidateBucketName(field, name string) error { return engine.ValidateBucketName(field, name) }

// ValidateKeyName reports whether key is a valid election key that does
// not use Ronin's reserved prefix; the error names field and the value.
func ValidateKeyName(field, key string) error { return engine.ValidateKeyName(field, key) }
