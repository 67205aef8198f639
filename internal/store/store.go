// Package store is the key-value store that Ronin's election protocol runs
// on: the handful of operations of a JetStream KV bucket that it uses, with
// revisions passed explicitly and the engine's errors mapped to this
// package's sentinels at the boundary. Package jsstore implements it on
// JetStream; the simulator implements it in memory, and a conformance table
// checks that both give the same results for the same operations.
package store

import (
	"context"
	"errors"
	"time"

	"github.com/nonchan7720/ronin/internal/errs"
)

// Sentinel errors. Implementations wrap them; callers test with errors.Is.
var (
	// ErrConflict means a compare-and-set write lost: the key's last
	// revision was not the one expected (or, for Create, the key exists).
	// JetStream reports this as ErrKeyExists, ErrKeyRevisionMismatch, or
	// code 10164 while another write to the key is in flight.
	ErrConflict = errors.New("ronin: store: revision conflict")
	// ErrNotFound means the key does not exist (never written, deleted or
	// purged).
	ErrNotFound = errors.New("ronin: store: key not found")
	// ErrBucketGone means the bucket was deleted, or deleted and created
	// anew, since it was opened. Its revisions no longer mean what they
	// meant: nothing learnt from it may be acted on.
	ErrBucketGone = errs.ErrBucketGone
)

// Op is the kind of a write.
type Op int

const (
	// Put stores a value.
	Put Op = iota + 1
	// Delete marks the key deleted (a KV delete or purge marker).
	Delete
)

// Entry is one write as a watcher delivers it, or one read.
type Entry struct {
	Key   string
	Value []byte
	// Rev is the write's revision: the bucket's sequence number, strictly
	// increasing over all keys of one bucket incarnation.
	Rev uint64
	Op  Op
	// Created is the store's wall-clock time of the write.
	Created time.Time
}

// Bucket is one opened bucket.
type Bucket interface {
	// Create writes key only if it does not exist (or its last write is a
	// delete); ErrConflict otherwise. It returns the new revision.
	Create(ctx context.Context, key string, value []byte) (uint64, error)
	// Update writes key only if its last revision is rev; ErrConflict
	// otherwise. Rev 0 means "the key has no write" (never written, or
	// purged): like Create, except over a delete marker.
	Update(ctx context.Context, key string, value []byte, rev uint64) (uint64, error)
	// Delete writes a delete marker for key only if its last revision is
	// rev; ErrConflict otherwise. Rev 0 is unconditional (JetStream sends
	// no expected revision then): Ronin never passes it.
	Delete(ctx context.Context, key string, rev uint64) error
	// Get reads key's last write; ErrNotFound if there is none or it is a
	// delete. The read may be served by a lagging replica.
	Get(ctx context.Context, key string) (Entry, error)
	// Watch delivers the last write of every key (delete markers included),
	// then a nil entry, then every later write in revision order, until
	// ctx ends, Stop is called, or the watcher fails (the channel closes).
	// The watch may be served by a lagging replica: what comes before the
	// nil entry is the bucket as of some revision, perhaps older than
	// writes acknowledged before Watch was called. (jsstore waits for the
	// revision that the stream reported when Watch began, and moves off a
	// replica short of it; but that report may come from a member without
	// a leader, so a caller must not rely on it for safety.)
	// Every delivery is of the handle's incarnation: Watch reports
	// ErrBucketGone if the bucket was deleted since it was opened, and a
	// watch ends when it finds that out later.
	Watch(ctx context.Context) (Watcher, error)
	// Check returns ErrBucketGone if the bucket was deleted or replaced by
	// a new incarnation since it was opened; another error if it cannot
	// tell now. It is the only call that tells a new incarnation from the
	// old one: the other calls of an old handle act on whatever bucket
	// has the name now, as JetStream routes by name.
	Check(ctx context.Context) error
}

// Watcher is a running watch.
type Watcher interface {
	// Updates delivers entries; a nil entry marks the end of the initial
	// values. It closes when the watcher stops or fails.
	Updates() <-chan *Entry
	// Stop ends the watch.
	Stop() error
}

// Spec is what opening a bucket needs.
type Spec struct {
	// Name of the bucket.
	Name string
	// Replicas of the bucket's stream.
	Replicas int
	// Metadata written into a bucket this call creates.
	Metadata map[string]string
}

// Opened is an opened bucket and what opening it learnt.
type Opened struct {
	Bucket Bucket
	// Created reports whether this call created the bucket.
	Created bool
	// Replicas and Metadata are the bucket's settings as stored, for the
	// caller to compare with what it wants.
	Replicas int
	Metadata map[string]string
}

// Backend opens buckets.
type Backend interface {
	// Open opens the bucket named by spec, creating it if it does not
	// exist. A new bucket's first revision is above every revision the
	// store can have issued before for a bucket of that name.
	Open(ctx context.Context, spec Spec) (Opened, error)
	// Lookup opens the existing bucket name without creating it; it fails
	// with ErrNotFound if there is none.
	Lookup(ctx context.Context, name string) (Opened, error)
}
