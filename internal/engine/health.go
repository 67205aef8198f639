package engine

import (
	"fmt"

	"github.com/nonchan7720/ronin/internal/errs"
)

// ErrUnavailable means this node cannot write to the store now; Health's
// message names the cause. One value for all layers.
var ErrUnavailable = errs.ErrUnavailable

// Health returns nil while this node can act in the bucket: it has a live
// session (its last acknowledged renew is younger than RenewDeadline) and
// a complete view. Otherwise it returns an error wrapping ErrUnavailable,
// or ErrBucketGone, that names the cause. Within RenewDeadline of losing
// the store it reports the loss, since that is when the session's deadline
// passes. A bucket nobody here campaigns in (observed only) is healthy
// while its view is complete.
func (b *Bucket) Health() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gone != nil {
		return b.gone
	}
	cause := "not established yet"
	if b.out.active {
		cause = fmt.Sprintf("%s: %v", b.out.op, b.out.cause)
	}
	switch {
	case b.users == 0 && b.observers == 0:
		return nil
	case !b.v.synced:
		return fmt.Errorf("%w: bucket %q: view incomplete (%s)", ErrUnavailable, b.spec.Name, cause)
	case b.users == 0:
		return nil
	case b.sess == nil || !b.sess.valid(b.clock.Now()):
		return fmt.Errorf("%w: bucket %q: no live session (%s)", ErrUnavailable, b.spec.Name, cause)
	}
	return nil
}

// Health returns the first unhealthy bucket's error (see Bucket.Health),
// nil when every bucket this node uses is healthy.
func (r *Registry) Health() error {
	for _, b := range r.Buckets() {
		if err := b.Health(); err != nil {
			return err
		}
	}
	return nil
}
