package main

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/nonchan7720/ronin"
)

// electTimeout bounds the wait for every key to have a leader.
const electTimeout = 60 * time.Second

// idle measures the bench cluster with nothing running on it: the floor
// under every CPU and heap reading (three embedded servers in one process).
func (b *bench) idle(ctx context.Context) {
	st, err := measureSteady(ctx, nil, "", b.plan.window)
	if err != nil {
		b.rep.fail(secElection, "Idle cluster", err)
		return
	}
	b.cmp.setIdle(implRonin, st)
	b.rep.add(secElection, row{metric: "Idle cluster (reference for CPU and heap)", setting: "3 nodes, no candidates",
		n: "window " + b.plan.window.String(), result: fmt.Sprintf("CPU %.1f %% of a core · heap %.0f MiB", 100*st.cpu, st.heap)})
}

// keysAtScale runs k keys with one candidate per node each and measures the
// time until every key has a leader, then a quiet window.
func (b *bench) keysAtScale(ctx context.Context, ttl time.Duration, k int) {
	bucket := fmt.Sprintf("keys-%d-%s", k, ttlName(ttl))
	setting := fmt.Sprintf("TTL %s, %d keys × 3 candidates, bucket past its genesis", ttl, k)
	defer dropBucket(ctx, js(b.c, 0), bucket)
	ks, err := b.newKeySet(bucket, ttl, k)
	if err == nil {
		err = b.pastGenesis(ctx, bucket, ttl)
	}
	if err != nil {
		b.rep.fail(secElection, "Keys at scale, "+setting, err)
		return
	}
	defer ks.stop(ctx)
	took, electErr := ks.electAll(ctx)
	if electErr == nil {
		progress("keys %d TTL %s: all elected after %s; settling", k, ttl, ms(took))
	} else {
		progress("keys %d TTL %s: %v; measuring the window anyway", k, ttl, electErr)
	}
	zero, double := ks.leaderCounts()
	churn := fmt.Sprintf("%d elections, %d step-downs", ks.elections.Load(), ks.stepDowns.Load())
	if err := sleep(ctx, time.Second); err != nil {
		return
	}
	lost := ks.stepDowns.Load()
	st, err := measureSteady(ctx, js(b.c, 0), bucket, b.plan.window)
	if err != nil {
		b.rep.fail(secElection, "Keys at scale, "+setting, err)
		return
	}
	lost = ks.stepDowns.Load() - lost
	result := fmt.Sprintf("all elected in %s (%s) · then %s", ms(took), churn, st)
	if electErr != nil {
		result = fmt.Sprintf("NOT all elected: %v (%s) · window after it: %s", electErr, churn, st)
	} else {
		b.cmp.setKeys(implRonin, ttl, k, keysFig{took: took, st: st})
	}
	if lost > 0 {
		result += fmt.Sprintf(" · %d step-downs in the window", lost)
	}
	if double > 0 {
		result += fmt.Sprintf(" · E1: %d keys had two leaders at the check", double)
	}
	if zero > 0 && electErr == nil {
		result += fmt.Sprintf(" · %d keys had no leader at the check", zero)
	}
	limit, cpu := 1.5*sessionWrites(ttl), 0.05
	if k >= 10000 && ttl <= time.Second {
		cpu = 0.03 // issue #9: 10,000 keys at TTL 1 s, all 3 nodes together
	}
	goal := fmt.Sprintf("writes ≤ %.1f/s (1.5 × the 3 sessions' renews), CPU ≤ %.0f %% of a core", limit, 100*cpu)
	ok := electErr == nil && double == 0 && lost == 0 && st.writes <= limit && st.cpu <= cpu
	if k >= 10000 {
		goal, ok = "all elected < 1 s; "+goal, ok && took < time.Second
	}
	b.rep.add(secElection, row{metric: "Keys at scale: start → every key led at once; steady window", setting: setting,
		n: "window " + b.plan.window.String(), result: result, goal: goal, met: verdict(ok)})
}

// pastGenesis returns once bucket grants leadership: a new bucket grants
// none for one TTL (the genesis rule, docs/safety.md), a one-time cost per
// bucket that restarts over an existing bucket do not pay. One candidate
// on node 0 is elected for a key of its own and resigns.
func (b *bench) pastGenesis(ctx context.Context, bucket string, ttl time.Duration) error {
	c, err := b.c.Manager(0).NewCandidate(candidateConfig("genesis", bucket, "genesis", ttl))
	if err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(rctx) }()
	_, err = waitUntil(ctx, 3*ttl, 5*time.Millisecond, c.IsLeader)
	cancel()
	<-done
	return err
}

// sessionWrites is the renew rate of one session per node: 3 nodes, one
// renew per RetryPeriod (TTL/6).
func sessionWrites(ttl time.Duration) float64 { return 3 * 6 / ttl.Seconds() }

// keySet is k keys with three candidates each, one per node.
type keySet struct {
	cands   [][3]*ronin.Candidate
	cancels [][3]context.CancelFunc
	done    [][3]chan struct{} // closed when the Run returned
	started bool
	// OnElected and OnSteppingDown callbacks so far: more elections than
	// keys, or step-downs before stop, mean leases were lost on the way.
	elections, stepDowns atomic.Int64
}

func (b *bench) newKeySet(bucket string, ttl time.Duration, k int) (*keySet, error) {
	ks := &keySet{cands: make([][3]*ronin.Candidate, k), cancels: make([][3]context.CancelFunc, k), done: make([][3]chan struct{}, k)}
	for key := range k {
		for node := range 3 {
			cfg := candidateConfig(fmt.Sprintf("c%d", node+1), bucket, fmt.Sprintf("k%d", key), ttl)
			cfg.OnElected = func() { ks.elections.Add(1) }
			cfg.OnSteppingDown = func() { ks.stepDowns.Add(1) }
			c, err := b.c.Manager(node).NewCandidate(cfg)
			if err != nil {
				return nil, err
			}
			ks.cands[key][node] = c
		}
	}
	return ks, nil
}

// electAll starts every Run and polls IsLeader until every key has a
// leader; it returns the time from the start of the Runs.
func (ks *keySet) electAll(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	ks.started = true
	for key := range ks.cands {
		for node, c := range ks.cands[key] {
			rctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			ks.cancels[key][node], ks.done[key][node] = cancel, done
			go func() { defer close(done); _ = c.Run(rctx) }()
		}
	}
	// Keys once led drop out of the poll, but a key counts only if a full
	// pass finds every key led at the same time (a lost session drops the
	// leases taken under it).
	pending := make([]int, len(ks.cands))
	for i := range pending {
		pending[i] = i
	}
	at, err := waitUntil(ctx, electTimeout, 10*time.Millisecond, func() bool {
		if pending = slices.DeleteFunc(pending, func(key int) bool { return ks.led(key) > 0 }); len(pending) > 0 {
			return false
		}
		for key := range ks.cands {
			if ks.led(key) == 0 {
				pending = append(pending, key)
			}
		}
		return len(pending) == 0
	})
	if err != nil {
		return 0, fmt.Errorf("%d of %d keys without a leader: %w", len(pending), len(ks.cands), err)
	}
	return at.Sub(t0), nil
}

// led counts the candidates of key that lead now.
func (ks *keySet) led(key int) int {
	n := 0
	for _, c := range ks.cands[key] {
		if c.IsLeader() {
			n++
		}
	}
	return n
}

// leaderCounts returns how many keys have no leader and how many have more
// than one, now.
func (ks *keySet) leaderCounts() (zero, double int) {
	for key := range ks.cands {
		switch n := ks.led(key); {
		case n == 0:
			zero++
		case n > 1:
			double++
		}
	}
	return zero, double
}

// stop ends every Run: followers first, so that no follower campaigns for
// the keys the leaders release, then the leaders.
func (ks *keySet) stop(ctx context.Context) {
	if !ks.started {
		return
	}
	var leaders, followers [][2]int
	for key := range ks.cands {
		for node, c := range ks.cands[key] {
			if c.IsLeader() {
				leaders = append(leaders, [2]int{key, node})
			} else {
				followers = append(followers, [2]int{key, node})
			}
		}
	}
	for _, group := range [][][2]int{followers, leaders} {
		for _, kn := range group {
			ks.cancels[kn[0]][kn[1]]()
		}
		deadline := time.Now().Add(2 * time.Minute)
		for _, kn := range group {
			if err := waitDone(ctx, ks.done[kn[0]][kn[1]], time.Until(deadline)); err != nil {
				progress("warning: candidates did not stop: %v", err)
				ks.cancelAll()
				return
			}
		}
	}
}

func (ks *keySet) cancelAll() {
	for key := range ks.cancels {
		for _, cancel := range ks.cancels[key] {
			cancel()
		}
	}
}
