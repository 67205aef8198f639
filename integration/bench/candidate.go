package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nonchan7720/ronin"
)

// elected is one OnElected callback: who and when.
type elected struct {
	id string
	at time.Time
}

// runner is a candidate whose Run goroutine the bench owns.
type runner struct {
	*ronin.Candidate
	id      string
	node    int
	cancel  context.CancelFunc
	done    chan struct{} // closed when Run returned
	seen    atomic.Pointer[string]
	stepped atomic.Int64 // UnixNano of the last OnSteppingDown
}

// campaign makes a candidate for cfg on m and runs it. OnElected events go
// to events (never blocking the candidate: the channel must have room).
func campaign(m *ronin.Manager, node int, cfg ronin.CandidateConfig, events chan<- elected) (*runner, error) {
	r, err := prepare(m, node, cfg, events)
	if err != nil {
		return nil, err
	}
	r.run()
	return r, nil
}

// prepare makes the candidate (and so the bucket) without running it.
func prepare(m *ronin.Manager, node int, cfg ronin.CandidateConfig, events chan<- elected) (*runner, error) {
	r := &runner{id: cfg.CandidateID, node: node, done: make(chan struct{})}
	cfg.OnElected = func() {
		select {
		case events <- elected{cfg.CandidateID, time.Now()}:
		default:
			progress("warning: dropped an OnElected event of %s", cfg.CandidateID)
		}
	}
	cfg.OnLeaderChange = func(id string) { r.seen.Store(&id) }
	cfg.OnSteppingDown = func() { r.stepped.Store(time.Now().UnixNano()) }
	c, err := m.NewCandidate(cfg)
	if err != nil {
		return nil, err
	}
	r.Candidate = c
	r.cancel = func() {}
	return r, nil
}

// run starts Run.
func (r *runner) run() {
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { defer close(r.done); _ = r.Run(ctx) }()
}

// sees reports whether r has observed id as the key's leader.
func (r *runner) sees(id string) bool {
	p := r.seen.Load()
	return p != nil && *p == id
}

// stop cancels Run and waits for it, at most timeout.
func (r *runner) stop(ctx context.Context, timeout time.Duration) error {
	r.cancel()
	return waitDone(ctx, r.done, timeout)
}

// stopAll stops runners concurrently.
func stopAll(ctx context.Context, rs ...*runner) {
	for _, r := range rs {
		r.cancel()
	}
	for _, r := range rs {
		if err := r.stop(ctx, time.Minute); err != nil {
			progress("warning: candidate %s did not return: %v", r.id, err)
		}
	}
}

// waitSeen waits until every runner has observed id as leader.
func waitSeen(ctx context.Context, id string, rs ...*runner) error {
	_, err := waitUntil(ctx, 15*time.Second, time.Millisecond, func() bool {
		for _, r := range rs {
			if !r.sees(id) {
				return false
			}
		}
		return true
	})
	return err
}

func candidateConfig(id, bucket, key string, ttl time.Duration) ronin.CandidateConfig {
	return ronin.CandidateConfig{CandidateID: id, BucketName: bucket, KeyName: key, TTL: ttl, Replicas: 3}
}
