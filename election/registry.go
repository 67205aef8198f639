package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Host is what the election layer needs from the node it runs on.
type Host struct {
	// JetStream is the shared JetStream context of the Manager.
	JetStream jetstream.JetStream
	// NodeID names this node in records and sessions.
	NodeID string
	// Logger receives the layer's structured logs.
	Logger *slog.Logger
	// DefaultReplicas is used when a bucket spec leaves Replicas at 0.
	DefaultReplicas int
	// ClusterSize is the number of servers, 0 when unknown. A bucket with
	// more replicas than servers is refused.
	ClusterSize int
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
	metaProtocol = "ronin.protocol"
	metaTTL      = "ronin.ttl"
	metaLabel    = "ronin.label."
	protocolV1   = "1"
)

// Registry owns the buckets of one node: it opens each once, checks that
// all users agree on its settings, and shuts them down in order.
type Registry struct {
	host    Host
	mu      sync.Mutex
	buckets map[string]*Bucket
	closing chan struct{}
	runs    sync.WaitGroup
}

// NewRegistry returns a registry for host.
func NewRegistry(h Host) *Registry {
	return &Registry{host: h, buckets: map[string]*Bucket{}, closing: make(chan struct{})}
}

// Closing is closed when Close starts: running candidates and groups resign.
func (r *Registry) Closing() <-chan struct{} { return r.closing }

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
	select {
	case <-done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Bucket returns the bucket named by spec, opening (creating if needed) its
// store on first use. It fails with ErrInvalidConfig for bad settings and
// ErrBucketMismatch when the bucket is in use with other settings.
func (r *Registry) Bucket(ctx context.Context, spec BucketSpec) (*Bucket, error) {
	spec, err := r.resolve(spec)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed() {
		return nil, ErrClosed
	}
	if b, ok := r.buckets[spec.Name]; ok {
		if err := sameSpec(b.spec, spec); err != nil {
			return nil, err
		}
		return b, nil
	}
	kv, err := openKV(ctx, r.host.JetStream, spec)
	if err != nil {
		return nil, err
	}
	b := newBucket(r, spec, kv)
	r.buckets[spec.Name] = b
	return b, nil
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

// openKV opens the bucket's store, creating it if it does not exist, and
// checks that an existing one was made with the same settings. Transient
// errors while JetStream warms up are retried until ctx ends.
func openKV(ctx context.Context, js jetstream.JetStream, spec BucketSpec) (jetstream.KeyValue, error) {
	want := bucketMetadata(spec)
	backoff := 50 * time.Millisecond
	for {
		// Each attempt gets its own short timeout: while a restarted cluster
		// recovers, the JetStream API may not answer at all.
		actx, cancel := context.WithTimeout(ctx, openAttemptTimeout)
		kv, err := openKVOnce(actx, js, spec, want)
		cancel()
		if err == nil || errors.Is(err, ErrBucketMismatch) {
			return kv, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ronin: open bucket %q: %w (last error: %v)", spec.Name, ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, time.Second)
	}
}

// openAttemptTimeout bounds one attempt of openKV.
const openAttemptTimeout = 2 * time.Second

// openKVOnce makes one attempt to open or create the bucket.
func openKVOnce(ctx context.Context, js jetstream.JetStream, spec BucketSpec, want map[string]string) (jetstream.KeyValue, error) {
	for {
		kv, err := js.KeyValue(ctx, spec.Name)
		if err == nil {
			if err := checkExisting(ctx, js, spec, want); err != nil {
				return nil, err
			}
			return kv, nil
		}
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      spec.Name,
				Description: "Ronin election bucket",
				History:     1,
				Replicas:    spec.Replicas,
				Storage:     jetstream.FileStorage,
				Metadata:    want,
			})
			if err == nil {
				return kv, nil
			}
		}
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamNameInUse {
			continue // created concurrently by another node: open it
		}
		return nil, err
	}
}

// checkExisting compares an existing bucket's stream with spec.
func checkExisting(ctx context.Context, js jetstream.JetStream, spec BucketSpec, want map[string]string) error {
	st, err := js.Stream(ctx, "KV_"+spec.Name)
	if err != nil {
		return fmt.Errorf("ronin: open bucket %q: %w", spec.Name, err)
	}
	cfg := st.CachedInfo().Config
	if cfg.Metadata[metaProtocol] == "" {
		return fmt.Errorf("%w: bucket %q exists but was not created by Ronin", ErrBucketMismatch, spec.Name)
	}
	if cfg.Replicas != spec.Replicas {
		return fmt.Errorf("%w: bucket %q exists with Replicas %d, not %d", ErrBucketMismatch, spec.Name, cfg.Replicas, spec.Replicas)
	}
	for k, v := range cfg.Metadata {
		if k == metaProtocol || k == metaTTL || len(k) > len(metaLabel) && k[:len(metaLabel)] == metaLabel {
			if want[k] != v {
				return fmt.Errorf("%w: bucket %q exists with %s %s, not %s", ErrBucketMismatch, spec.Name, metaName(k), v, orNone(want[k]))
			}
		}
	}
	for k, v := range want {
		if _, ok := cfg.Metadata[k]; !ok {
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
	case len(k) > len(metaLabel):
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
