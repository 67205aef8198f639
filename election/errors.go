package election

import "github.com/nonchan7720/ronin/internal/engine"

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
