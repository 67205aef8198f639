package election

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/nonchan7720/ronin/internal/clock"
	"github.com/nonchan7720/ronin/internal/engine"
)

// CandidateConfig configures a candidate for one key of one bucket.
type CandidateConfig struct {
	// CandidateID names this candidate in the record and in callbacks;
	// required. Unique per key among the candidates of one node.
	CandidateID string
	// BucketName is the election bucket; required. Letters, digits, '_', '-'.
	BucketName string
	// KeyName is the key to lead; required. Letters, digits and '-/_=.';
	// the prefix "_ronin." is reserved.
	KeyName string
	// TTL is how long a silent leader keeps the key before others may take
	// it over; required, at least MinTTL. Typical: 5s to 15s. All users of a
	// bucket must agree on it.
	TTL time.Duration
	// RenewDeadline: a leader that could not renew steps down this long after
	// it sent its last acknowledged renew. Default TTL*2/3; at most 0.9*TTL.
	RenewDeadline time.Duration
	// RetryPeriod is the renew interval. Default TTL/6; at most
	// RenewDeadline/2.
	RetryPeriod time.Duration
	// Replicas of the bucket's stream. 0 means 1 for a single node and 3
	// for a cluster. All users of a bucket must agree on it.
	Replicas int
	// OnElected runs when this candidate becomes leader.
	OnElected func()
	// OnSteppingDown runs when this candidate stops leading, for any reason:
	// resign, lost renew, deadline passed, key taken over. On a resign (Run
	// returning) it returns before the key is released, so the successor
	// never starts while it runs; otherwise leadership has already ended.
	OnSteppingDown func()
	// OnLeaderChange runs whenever the observed leader of the key changes,
	// with the leader's CandidateID (this candidate's own included), or ""
	// when the key has no leader. The leader seen at start is reported.
	OnLeaderChange func(id string)
	// MeterProvider for the candidate's metrics; nil means the global one.
	MeterProvider metric.MeterProvider
	// Logger; nil means the Manager's.
	Logger *slog.Logger
}

// bucketSpec is the bucket part of the config.
func (c CandidateConfig) bucketSpec() engine.BucketSpec {
	return engine.BucketSpec{
		Name:     c.BucketName,
		Timing:   engine.Timing{TTL: c.TTL, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod},
		Replicas: c.Replicas,
	}
}

func (c CandidateConfig) validate() error {
	if c.CandidateID == "" {
		return fmt.Errorf("%w: CandidateID %q: required", engine.ErrInvalidConfig, c.CandidateID)
	}
	return engine.ValidateKeyName("KeyName", c.KeyName)
}

// Candidate campaigns for one key. Callbacks run synchronously on the
// goroutine that called Run, one at a time and in order, without locks
// held: a slow callback delays the candidate's reaction to the store but
// cannot deadlock it, and IsLeader stays exact meanwhile because it reads
// the clock. A callback must not wait for Run to return.
type Candidate struct {
	cfg    CandidateConfig
	bucket *engine.Bucket
	log    *slog.Logger
	attrs  metric.MeasurementOption // of its metrics' series

	lease   atomic.Pointer[engine.Lease]
	told    *engine.Lease // the lease OnElected ran for (Run's goroutine only)
	changes atomic.Int64
	mu      sync.Mutex // serialises Run
}

// NewCandidate registers the bucket's settings (creating the bucket if
// needed) and returns a candidate. Bad input fails with ronin.ErrInvalidConfig; a
// bucket used with other settings fails with ronin.ErrBucketMismatch.
func NewCandidate(ctx context.Context, r *engine.Registry, cfg CandidateConfig) (*Candidate, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	b, err := r.Bucket(ctx, cfg.bucketSpec())
	if err != nil {
		return nil, err
	}
	log := b.Logger()
	if cfg.Logger != nil {
		log = cfg.Logger.With("bucket", cfg.BucketName, "node", b.NodeID())
	}
	return &Candidate{cfg: cfg, bucket: b, attrs: candidateAttrs(cfg),
		log: log.With("key", cfg.KeyName, "candidate", cfg.CandidateID)}, nil
}

// ID is the candidate's CandidateID.
func (c *Candidate) ID() string { return c.cfg.CandidateID }

// IsLeader reports whether this candidate leads now. It reads the clock on
// every call: it turns false the instant the lease deadline passes, even if
// no goroutine of the process has run since (a paused process never acts on
// stale leadership).
func (c *Candidate) IsLeader() bool {
	l := c.lease.Load()
	return l != nil && l.Valid()
}

// LeaderRev is the fencing token of the current term, 0 when not leading.
// It is constant during a term and greater for every new term of the key.
func (c *Candidate) LeaderRev() uint64 {
	if l := c.lease.Load(); l != nil && l.Valid() {
		return l.Rev()
	}
	return 0
}

// Run campaigns for the key until ctx ends or the Manager shuts down, then
// resigns: if leading it hands the key at once to a candidate that waits
// for it on another node (one write, which that node's watcher delivers),
// or releases it when it knows of none, so that the next candidate takes
// over in milliseconds; OnSteppingDown has run before that write, and
// before Run returns. It returns nil when ctx ends, ronin.ErrClosed when the Manager shuts
// down, an error wrapping ronin.ErrBucketGone when the bucket is deleted under it
// (leadership ends at once; nothing here recreates the bucket), and
// ronin.ErrAlreadyRunning if the candidate is already running. Run may be called
// again after it returned. If it was this node's last user of
// the bucket, Run first waits (at most 1 s, and only while other nodes are
// in the bucket) until the key it released has a new holder, so that a
// server stopped right after does not swallow the successor's write.
func (c *Candidate) Run(ctx context.Context) error {
	if !c.mu.TryLock() {
		return engine.ErrAlreadyRunning
	}
	defer c.mu.Unlock()
	exit, err := c.bucket.Registry().Enter()
	if err != nil {
		return err
	}
	defer exit()
	leave := c.bucket.Join()
	defer leave()
	sub := c.bucket.Subscribe(c.cfg.KeyName)
	defer c.bucket.Unsubscribe(sub)
	// While not leading, other nodes may hand the key straight to this
	// candidate when their holder resigns (one write instead of two).
	stopWaiting := c.bucket.Wait(c.cfg.KeyName, c.cfg.CandidateID, c.take)
	defer func() {
		stopWaiting() // no lease is handed to it from here on
		c.resign()
	}()
	stopMetrics := startMetrics(c)
	defer stopMetrics()

	var observed string
	known := false
	var retry *clock.ChanTimer // made by the first failed campaign: most never fail
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		if l := c.lease.Load(); l != nil && !l.Valid() {
			c.stepDown()
		}
		if err := c.bucket.Err(); err != nil {
			c.stepDown()
			return err
		}
		h, synced := c.bucket.Holder(c.cfg.KeyName)
		if synced && (!known || h.Candidate != observed) {
			if h.Candidate != "" || known {
				c.leaderChanged(h.Candidate)
			}
			observed, known = h.Candidate, true
		}
		var retryC <-chan struct{}
		if c.lease.Load() == nil && synced && h.Candidate == "" {
			if after, again := c.campaign(ctx); again && retry == nil {
				retry = clock.NewTimer(c.bucket.Clock(), after)
			} else if again {
				retry.Reset(after)
			}
		}
		if retry != nil {
			retryC = retry.C
		}
		var leaseDone <-chan struct{}
		if l := c.lease.Load(); l != nil {
			c.tell(l)
			leaseDone = l.Done()
		}
		select {
		case <-ctx.Done():
			return nil // resigns (above)
		case <-c.bucket.Registry().Closing():
			return engine.ErrClosed
		case <-sub.C():
		case <-leaseDone:
		case <-retryC:
		}
	}
}

// campaign makes one attempt to take the key. After a failure other than a
// lost race it asks for another attempt after the returned wait.
func (c *Candidate) campaign(ctx context.Context) (time.Duration, bool) {
	l, err := c.bucket.TryAcquire(ctx, c.cfg.KeyName, c.cfg.CandidateID)
	switch {
	case err == nil:
		c.lease.Store(l)
	case errors.Is(err, engine.ErrHeld), errors.Is(err, engine.ErrLostRace):
		// The watcher will show the winner.
	case errors.Is(err, engine.ErrNoSession), errors.Is(err, engine.ErrBucketGone):
		// The bucket signals every subscriber when the session starts, the
		// view is complete again, or the bucket is gone.
	default:
		c.log.Debug("ronin: campaign failed", "err", err)
		return c.bucket.Spec().RetryPeriod / 4, true
	}
	return 0, false
}

// take receives a lease that a resigning holder handed to this candidate
// (Bucket.Wait); it runs with the bucket locked, so Run tells the user.
func (c *Candidate) take(l *engine.Lease) bool {
	return c.lease.CompareAndSwap(nil, l)
}

// tell runs OnElected once for l, the current lease, won or handed over.
func (c *Candidate) tell(l *engine.Lease) {
	if c.told == l {
		return
	}
	c.told = l
	c.log.Info("ronin: elected", "rev", l.Rev())
	if c.cfg.OnElected != nil {
		c.cfg.OnElected()
	}
}

// stepDown forgets the current lease and tells the user, if it was told
// of it.
func (c *Candidate) stepDown() {
	l := c.lease.Swap(nil)
	if l == nil || c.told != l {
		return
	}
	c.told = nil
	c.log.Info("ronin: stepped down", "rev", l.Rev())
	if c.cfg.OnSteppingDown != nil {
		c.cfg.OnSteppingDown()
	}
}

// resign gives the key up if leading: to a candidate waiting on another
// node if one is known, else by releasing it. OnSteppingDown runs (and
// returns) before the write, so that work it stops never overlaps the
// successor's term.
func (c *Candidate) resign() {
	l := c.lease.Load()
	if l == nil {
		return
	}
	c.stepDown()
	ctx, cancel := context.WithTimeout(context.Background(), c.bucket.Spec().RequestTimeout())
	defer cancel()
	if err := c.bucket.Resign(ctx, l); err != nil {
		c.log.Warn("ronin: release failed; the key frees when this node's session ends", "err", err)
	}
}

func (c *Candidate) leaderChanged(id string) {
	if id != "" {
		c.changes.Add(1)
	}
	if c.cfg.OnLeaderChange != nil {
		c.cfg.OnLeaderChange(id)
	}
}
