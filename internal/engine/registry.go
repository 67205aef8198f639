package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/nonchan7720/ronin/internal/clock"
	"github.com/nonchan7720/ronin/internal/store"
)

// Host is what the election layer needs from the node it runs on.
type Host struct {
	// Store opens the node's buckets (JetStream in production).
	Store store.Backend
	// Clock is the node's clock; nil means the real one.
	Clock clock.Clock
	// NodeID names this node in records and sessions.
	NodeID string
	// Logger receives the layer's structured logs.
	Logger *slog.Logger
	// DefaultReplicas is used when a bucket spec leaves Replicas at 0.
	DefaultReplicas int
	// ClusterSize is the number of servers, 0 when unknown. A bucket with
	// more replicas than servers is refused.
	ClusterSize int
	// Clustered reports that the store is a cluster of servers: a bucket
	// with one replica would keep every fencing token on one disk, so it is
	// refused unless AllowSingleReplica is set.
	Clustered bool
	// AllowSingleReplica accepts Replicas 1 in a cluster knowingly.
	AllowSingleReplica bool
}

// BucketSpec is the settings of one bucket. Every user of a bucket, in this
// process and in the cluster, must agree on TTL, Replicas and Labels; in this
// process also on RenewDeadline and RetryPeriod, since one session per node
// serves all of the bucket's keys.
type BucketSpec struct {
	// Name of the bucket: letters, digits, '_' and '-'.
	Name string
	// Timing of the leases in the bucket.
	Timing
	// Replicas of the bucket's stream; 0 means Host.DefaultReplicas.
	Replicas int
	// Labels are further settings all users must agree on (the shard
	// count, for example). Stored in the bucket's metadata.
	Labels map[string]string
}

// metadata keys written into the bucket's stream.
const (
	metaProtocol = ProtocolMetadataKey
	metaTTL      = "ronin.ttl"
	metaLabel    = "ronin.label."
	protocolV1   = "1"
)

// ProtocolMetadataKey is the stream metadata key that marks a bucket
// Ronin created (its value is the protocol version).
const ProtocolMetadataKey = "ronin.protocol"

// Registry owns the buckets of one node: it opens each once, checks that
// all users agree on its settings, and shuts them down in order.
type Registry struct {
	host    Host
	clock   clock.Clock
	opening singleflight.Group
	mu      sync.Mutex
	buckets map[string]*Bucket // opened to campaign in
	watched map[string]*Bucket // opened only to observe
	closing chan struct{}
	runs    sync.WaitGroup
}

// NewRegistry returns a registry for host.
func NewRegistry(h Host) *Registry {
	return &Registry{host: h, clock: clock.OrReal(h.Clock), buckets: map[string]*Bucket{}, watched: map[string]*Bucket{}, closing: make(chan struct{})}
}

// Closing is closed when Close starts: running candidates and groups resign.
func (r *Registry) Closing() <-chan struct{} { return r.closing }

// ClusterSize is the number of servers that store the buckets, 0 when
// unknown (Host.ClusterSize).
func (r *Registry) ClusterSize() int { return r.host.ClusterSize }

// Enter registers a running user (a candidate's or a shard group's Run).
// Close waits for the returned func to be called; after Close started,
// Enter fails with ErrClosed.
func (r *Registry) Enter() (func(), error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed() {
		return nil, ErrClosed
	}
	r.runs.Add(1)
	return r.runs.Done, nil
}

// closed reports whether Close has started.
func (r *Registry) closed() bool {
	select {
	case <-r.closing:
		return true
	default:
		return false
	}
}

// Close makes every running user resign and waits for them, up to timeout.
// It reports whether all of them returned in time. (A bucket's last user,
// on its way out, waits a moment for successors: see awaitSuccessors.)
func (r *Registry) Close(timeout time.Duration) bool {
	r.mu.Lock()
	if !r.closed() {
		close(r.closing)
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.runs.Wait(); close(done) }()
	t := clock.NewTimer(r.clock, timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// Bucket returns the bucket named by spec, opening (creating if needed) its
// store on first use. It fails with ErrInvalidConfig for bad settings and
// ErrBucketMismatch when the bucket is in use with other settings. A
// bucket that was deleted while in use is forgotten (see Bucket.Err), so
// that only such an explicit call opens (or creates) it again.
func (r *Registry) Bucket(ctx context.Context, spec BucketSpec) (*Bucket, error) {
	spec, err := r.resolve(spec)
	if err != nil {
		return nil, err
	}
	// One open per name at a time, without holding the registry's lock
	// across the store's I/O (an open may wait for JetStream for seconds).
	v, err, _ := r.opening.Do(spec.Name, func() (any, error) {
		if b, err := r.lookup(spec.Name); b != nil || err != nil {
			return b, err
		}
		opened, err := r.host.Store.Open(ctx, store.Spec{Name: spec.Name, Replicas: spec.Replicas, Metadata: bucketMetadata(spec)})
		if err != nil {
			return nil, err
		}
		if err := checkExisting(spec, opened); err != nil {
			return nil, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.closed() {
			return nil, ErrClosed
		}
		b := newBucket(r, spec, opened)
		r.buckets[spec.Name] = b
		return b, nil
	})
	if err != nil {
		return nil, err
	}
	b := v.(*Bucket)
	if err := sameSpec(b.spec, spec); err != nil {
		return nil, err
	}
	return b, nil
}

// lookup returns the open bucket named name, nil if there is none, or
// ErrClosed once Close started.
func (r *Registry) lookup(name string) (*Bucket, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed() {
		return nil, ErrClosed
	}
	return r.buckets[name], nil
}

// forget drops b, deleted under its users, so that a later Bucket call
// opens the name afresh.
func (r *Registry) forget(b *Bucket) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.buckets[b.spec.Name] == b {
		delete(r.buckets, b.spec.Name)
	}
	if r.watched[b.spec.Name] == b {
		delete(r.watched, b.spec.Name)
	}
}

// Buckets returns the buckets this node campaigns in or observes, sorted
// by name; a bucket it does both in once.
func (r *Registry) Buckets() []*Bucket {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Bucket, 0, len(r.buckets)+len(r.watched))
	for _, b := range r.buckets {
		out = append(out, b)
	}
	for name, b := range r.watched {
		if r.buckets[name] == nil {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *Bucket) int { return strings.Compare(a.spec.Name, b.spec.Name) })
	return out
}

// Observe returns the existing bucket name for reading, and the func that
// ends the reading: its watcher runs meanwhile, but nothing is written and
// no session is created. Its settings are the ones stored with it. It
// fails with an error wrapping ErrNoBucket when there is no such bucket,
// and ErrBucketMismatch when Ronin did not create it.
func (r *Registry) Observe(ctx context.Context, name string) (*Bucket, func(), error) {
	if err := ValidateBucketName("bucket", name); err != nil {
		return nil, nil, err
	}
	v, err, _ := r.opening.Do("observe/"+name, func() (any, error) {
		r.mu.Lock()
		b := cmp.Or(r.buckets[name], r.watched[name])
		closed := r.closed()
		r.mu.Unlock()
		switch {
		case closed:
			return nil, ErrClosed
		case b != nil:
			return b, nil
		}
		opened, err := r.host.Store.Lookup(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("%w: %q", ErrNoBucket, name)
		}
		if err != nil {
			return nil, err
		}
		spec, err := storedSpec(name, opened)
		if err != nil {
			return nil, err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		b = newBucket(r, spec, opened)
		r.watched[name] = b
		return b, nil
	})
	if err != nil {
		return nil, nil, err
	}
	b := v.(*Bucket)
	return b, b.Observe(), nil
}

// storedSpec reads a bucket's settings from what opening it returned.
func storedSpec(name string, o store.Opened) (BucketSpec, error) {
	if o.Metadata[metaProtocol] == "" {
		return BucketSpec{}, fmt.Errorf("%w: bucket %q exists but was not created by Ronin", ErrBucketMismatch, name)
	}
	ttl, err := time.ParseDuration(o.Metadata[metaTTL])
	if err != nil {
		return BucketSpec{}, fmt.Errorf("%w: bucket %q: stored TTL %q: %v", ErrBucketMismatch, name, o.Metadata[metaTTL], err)
	}
	spec := BucketSpec{Name: name, Timing: Timing{TTL: ttl}.withDefaults(), Replicas: o.Replicas}
	for k, v := range o.Metadata {
		if label, ok := strings.CutPrefix(k, metaLabel); ok {
			if spec.Labels == nil {
				spec.Labels = map[string]string{}
			}
			spec.Labels[label] = v
		}
	}
	return spec, nil
}

// resolve fills defaults and validates a spec.
func (r *Registry) resolve(spec BucketSpec) (BucketSpec, error) {
	if err := ValidateBucketName("BucketName", spec.Name); err != nil {
		return spec, err
	}
	spec.Timing = spec.Timing.withDefaults()
	if err := spec.Timing.validate(); err != nil {
		return spec, err
	}
	if spec.Replicas == 0 {
		spec.Replicas = r.host.DefaultReplicas
	}
	switch {
	case spec.Replicas < 1 || spec.Replicas > 5:
		return spec, fmt.Errorf("%w: Replicas %d: must be between 1 and 5", ErrInvalidConfig, spec.Replicas)
	case r.host.ClusterSize > 0 && spec.Replicas > r.host.ClusterSize:
		return spec, fmt.Errorf("%w: Replicas %d: more than the %d server(s) of this cluster", ErrInvalidConfig, spec.Replicas, r.host.ClusterSize)
	case spec.Replicas == 1 && r.host.Clustered && !r.host.AllowSingleReplica:
		return spec, fmt.Errorf("%w: Replicas %d in a cluster: one server's disk would hold the only copy of every fencing token (set ServerConfig.AllowSingleReplica to accept that)", ErrInvalidConfig, spec.Replicas)
	}
	return spec, nil
}

// sameSpec reports, naming field and both values, how two specs of one
// bucket disagree.
func sameSpec(have, want BucketSpec) error {
	mismatch := func(field string, a, b any) error {
		return fmt.Errorf("%w: bucket %q is used with %s %v here, not %v", ErrBucketMismatch, have.Name, field, a, b)
	}
	switch {
	case have.TTL != want.TTL:
		return mismatch("TTL", have.TTL, want.TTL)
	case have.Replicas != want.Replicas:
		return mismatch("Replicas", have.Replicas, want.Replicas)
	case have.RenewDeadline != want.RenewDeadline:
		return mismatch("RenewDeadline", have.RenewDeadline, want.RenewDeadline)
	case have.RetryPeriod != want.RetryPeriod:
		return mismatch("RetryPeriod", have.RetryPeriod, want.RetryPeriod)
	case !maps.Equal(have.Labels, want.Labels):
		return mismatch("labels", have.Labels, want.Labels)
	}
	return nil
}

// bucketMetadata is what a spec stores in its stream's metadata.
func bucketMetadata(spec BucketSpec) map[string]string {
	md := map[string]string{metaProtocol: protocolV1, metaTTL: spec.TTL.String()}
	for k, v := range spec.Labels {
		md[metaLabel+k] = v
	}
	return md
}

// checkExisting compares an opened bucket's stored settings with spec.
func checkExisting(spec BucketSpec, o store.Opened) error {
	if o.Created {
		return nil
	}
	if o.Metadata[metaProtocol] == "" {
		return fmt.Errorf("%w: bucket %q exists but was not created by Ronin", ErrBucketMismatch, spec.Name)
	}
	if o.Replicas != spec.Replicas {
		return fmt.Errorf("%w: bucket %q exists with Replicas %d, not %d", ErrBucketMismatch, spec.Name, o.Replicas, spec.Replicas)
	}
	want := bucketMetadata(spec)
	for k, v := range o.Metadata {
		if k == metaProtocol || k == metaTTL || strings.HasPrefix(k, metaLabel) {
			if want[k] != v {
				return fmt.Errorf("%w: bucket %q exists with %s %s, not %s", ErrBucketMismatch, spec.Name, metaName(k), v, orNone(want[k]))
			}
		}
	}
	for k, v := range want {
		if _, ok := o.Metadata[k]; !ok {
			return fmt.Errorf("%w: bucket %q exists without %s, not %s", ErrBucketMismatch, spec.Name, metaName(k), v)
		}
	}
	return nil
}

// metaName is the user-facing name of a metadata key.
func metaName(k string) string {
	switch {
	case k == metaTTL:
		return "TTL"
	case k == metaProtocol:
		return "protocol version"
	case strings.HasPrefix(k, metaLabel):
		return k[len(metaLabel):]
	}
	return k
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return strconv.Quote(s)
}
