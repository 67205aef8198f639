package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// naive measures, for comparison, the per-key lease protocol most NATS
// election libraries use: each leader renews its own key with a CAS Update
// every RetryPeriod (TTL/6). No elections: k keys are created, then one
// renewing loop per key runs on the node that "leads" it (key i on node
// i mod 3), on its own R3 bucket.
func (b *bench) naive(ctx context.Context, ttl time.Duration, k int) {
	bucket := fmt.Sprintf("naive-%d-%s", k, ttlName(ttl))
	setting := fmt.Sprintf("TTL %s, %d keys, CAS renew every %s", ttl, k, (ttl / 6).Round(time.Millisecond))
	metric := "Alternative: naive per-key lease, steady window"
	defer dropBucket(ctx, js(b.c, 0), bucket)
	res, err := b.naiveRun(ctx, bucket, ttl, k)
	if err != nil {
		b.rep.fail(secElection, metric+", "+setting, err)
		return
	}
	b.cmp.setKeys(implNaive, ttl, k, keysFig{st: res.st})
	need := float64(k) * 6 / ttl.Seconds()
	b.rep.add(secElection, row{metric: metric, setting: setting, n: "window " + b.plan.window.String(),
		result: fmt.Sprintf("%s (protocol needs %.0f/s) · renew errors %d · leases lapsed (no renew for RenewDeadline %s) %d",
			res.st, need, res.errors, renewDeadline(ttl).Round(time.Millisecond), res.lapsed)})
}

// renewDeadline is the client-go style default, TTL*2/3.
func renewDeadline(ttl time.Duration) time.Duration { return ttl * 2 / 3 }

type naiveResult struct {
	st             steady
	errors, lapsed int64
}

func (b *bench) naiveRun(ctx context.Context, bucket string, ttl time.Duration, k int) (naiveResult, error) {
	kvs, err := b.naiveBucket(ctx, bucket)
	if err != nil {
		return naiveResult{}, err
	}
	revs, err := createKeys(ctx, kvs, k)
	if err != nil {
		return naiveResult{}, err
	}
	progress("naive %d keys TTL %s: keys created; renewing", k, ttl)
	var stats naiveStats
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	leases := make([]*naiveLease, k)
	for i := range k {
		leases[i] = &naiveLease{kv: kvs[i%3], key: naiveKey(i), rev: revs[i], period: ttl / 6, stats: &stats}
		wg.Go(func() { leases[i].run(rctx) })
	}
	defer func() { cancel(); wg.Wait() }()
	if err := sleep(ctx, ttl/6+time.Second); err != nil { // every loop has renewed once
		return naiveResult{}, err
	}
	stats.errors.Store(0)
	stats.lapsed.Store(0)
	st, err := measureSteady(ctx, js(b.c, 0), bucket, b.plan.window)
	if err != nil {
		return naiveResult{}, err
	}
	lapsed := stats.lapsed.Load()
	for _, l := range leases { // still waiting for a renew at the end
		if time.Since(time.Unix(0, l.lastOK.Load())) > renewDeadline(ttl) {
			lapsed++
		}
	}
	return naiveResult{st: st, errors: stats.errors.Load(), lapsed: lapsed}, nil
}

// naiveBucket creates the bucket and opens it on every node.
func (b *bench) naiveBucket(ctx context.Context, bucket string) ([]jetstream.KeyValue, error) {
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := js(b.c, 0).CreateKeyValue(rctx, jetstream.KeyValueConfig{
		Bucket: bucket, History: 1, Replicas: 3, Storage: jetstream.FileStorage,
	}); err != nil {
		return nil, err
	}
	kvs := make([]jetstream.KeyValue, 3)
	for i := range kvs {
		kv, err := js(b.c, i).KeyValue(rctx, bucket)
		if err != nil {
			return nil, err
		}
		kvs[i] = kv
	}
	return kvs, nil
}

func naiveKey(i int) string { return fmt.Sprintf("k%d", i) }

// createKeys creates k keys with 64 concurrent writers and returns their
// revisions.
func createKeys(ctx context.Context, kvs []jetstream.KeyValue, k int) ([]uint64, error) {
	revs := make([]uint64, k)
	errs := make([]error, k)
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < k; i = int(next.Add(1) - 1) {
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				revs[i], errs[i] = kvs[i%3].Create(rctx, naiveKey(i), []byte("leader"))
				cancel()
			}
		})
	}
	wg.Wait()
	return revs, errors.Join(errs...)
}

type naiveStats struct {
	errors, lapsed atomic.Int64
}

// naiveLease renews one key by CAS every period.
type naiveLease struct {
	kv     jetstream.KeyValue
	key    string
	rev    uint64
	period time.Duration
	stats  *naiveStats
	lastOK atomic.Int64 // UnixNano of the last acknowledged renew
}

func (l *naiveLease) run(ctx context.Context) {
	l.lastOK.Store(time.Now().UnixNano())
	if sleep(ctx, rand.N(l.period)) != nil { // spread the loops over the period
		return
	}
	tick := time.NewTicker(l.period)
	defer tick.Stop()
	for {
		l.renew(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (l *naiveLease) renew(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, l.period)
	defer cancel()
	rev, err := l.kv.Update(rctx, l.key, []byte("leader"), l.rev)
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		l.stats.errors.Add(1)
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) { // a renew whose ack was lost landed
			if e, gerr := l.kv.Get(rctx, l.key); gerr == nil {
				l.rev = e.Revision()
			}
		}
		return
	}
	now := time.Now()
	if now.Sub(time.Unix(0, l.lastOK.Load())) > 4*l.period { // RenewDeadline = TTL*2/3 = 4 periods
		l.stats.lapsed.Add(1)
	}
	l.rev = rev
	l.lastOK.Store(now.UnixNano())
}
