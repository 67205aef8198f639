package testkit

import (
	"context"

	"github.com/nonchan7720/ronin/internal/store"
)

// Interposed is a store whose buckets run Before ahead of every write
// (op "create", "update" or "delete") and BeforeWatch, if set, ahead of
// every Watch: a non-nil error is returned instead of sending the request,
// as for one that failed unsent or hung until ctx ended.
type Interposed struct {
	store.Backend
	Before      func(ctx context.Context, op, key string) error
	BeforeWatch func(ctx context.Context) error
}

// Open opens the bucket of the wrapped store with Before and BeforeWatch
// in front of its requests.
func (i Interposed) Open(ctx context.Context, spec store.Spec) (store.Opened, error) {
	o, err := i.Backend.Open(ctx, spec)
	o.Bucket = interposedBucket{o.Bucket, i.Before, i.BeforeWatch}
	return o, err
}

type interposedBucket struct {
	store.Bucket
	before      func(ctx context.Context, op, key string) error
	beforeWatch func(ctx context.Context) error
}

func (b interposedBucket) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	if err := b.before(ctx, "create", key); err != nil {
		return 0, err
	}
	return b.Bucket.Create(ctx, key, value)
}

func (b interposedBucket) Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error) {
	if err := b.before(ctx, "update", key); err != nil {
		return 0, err
	}
	return b.Bucket.Update(ctx, key, value, rev)
}

func (b interposedBucket) Delete(ctx context.Context, key string, rev uint64) error {
	if err := b.before(ctx, "delete", key); err != nil {
		return err
	}
	return b.Bucket.Delete(ctx, key, rev)
}

func (b interposedBucket) Watch(ctx context.Context) (store.Watcher, error) {
	if b.beforeWatch != nil {
		if err := b.beforeWatch(ctx); err != nil {
			return nil, err
		}
	}
	return b.Bucket.Watch(ctx)
}
