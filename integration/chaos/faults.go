package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/check"
	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// Bounds of the waits around faults.
const (
	readyTimeout   = 3 * time.Minute  // nodes started and every key held
	recoverTimeout = 90 * time.Second // after a heal
	termTimeout    = 60 * time.Second // graceful exit
	statusFresh    = 2 * time.Second  // a status older than this is stale
	pollPeriod     = 50 * time.Millisecond
)

// cluster is the running suite: nodes, network and what happened.
type cluster struct {
	cfg     config
	net     *network
	procs   []*proc
	netem   bool
	origin  int64 // CLOCK_MONOTONIC at the start, for log lines
	faults  []check.Fault
	excused []check.Interval
	skipped []string // faults not injected, with the reason
	spread  []string // shards per node after each recovery
}

func (c *cluster) logf(format string, args ...any) {
	fmt.Printf("[%7.1fs] %s\n", float64(event.Mono()-c.origin)/1e9, fmt.Sprintf(format, args...))
}

func (c *cluster) ids(idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.procs[i].id)
	}
	return out
}

func (c *cluster) byID(id string) *proc {
	for _, p := range c.procs {
		if p.id == id {
			return p
		}
	}
	return nil
}

// startAll starts every node at once (a new JetStream cluster needs a
// quorum to come up).
func (c *cluster) startAll(procs []*proc) error {
	var errs []error
	for _, p := range procs {
		errs = append(errs, p.start())
	}
	return errors.Join(errs...)
}

// statuses returns the fresh statuses of running nodes.
func (c *cluster) statuses() map[string]nodeStatus {
	now := event.Mono()
	out := map[string]nodeStatus{}
	for _, p := range c.procs {
		if st, ok := p.readStatus(); ok && now-st.Updated < statusFresh.Nanoseconds() {
			out[p.id] = st
		}
	}
	return out
}

// healthy reports whether every node is ready and every shard and key is
// held by some node, and explains what is missing otherwise.
func (c *cluster) healthy() (bool, string) {
	sts := c.statuses()
	var missing []string
	for _, p := range c.procs {
		if st, ok := sts[p.id]; !ok || !st.Ready {
			missing = append(missing, p.id+" not ready")
		}
	}
	shards := map[int]bool{}
	keys := map[string]bool{}
	for _, st := range sts {
		for s := range st.Owned {
			shards[s] = true
		}
		for k := range st.Leading {
			keys[k] = true
		}
	}
	if n := c.cfg.shards - len(shards); n > 0 {
		missing = append(missing, fmt.Sprintf("%d shards unowned", n))
	}
	if n := c.cfg.keys - len(keys); n > 0 {
		missing = append(missing, fmt.Sprintf("%d keys unled", n))
	}
	return len(missing) == 0, strings.Join(missing, ", ")
}

// waitHealthy polls until healthy or timeout; it returns the time it
// became healthy (0 if it did not). A node that is not running here
// crashed (every fault restarts its nodes before it waits): it is
// restarted, and its exit stays recorded as unexpected.
func (c *cluster) waitHealthy(ctx context.Context, timeout time.Duration) (int64, error) {
	deadline := time.Now().Add(timeout)
	why := ""
	for time.Now().Before(deadline) {
		for _, p := range c.procs {
			if _, ok := p.running(); !ok {
				c.logf("%s is not running: restarting it", p.id)
				if err := p.start(); err != nil {
					return 0, err
				}
			}
		}
		var ok bool
		if ok, why = c.healthy(); ok {
			return event.Mono(), nil
		}
		if err := sleep(ctx, pollPeriod); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("not recovered after %s: %s", timeout, why)
}

// recordSpread notes how many shards each node owns (S1: quiet cluster).
func (c *cluster) recordSpread(name string) {
	sts := c.statuses()
	var parts []string
	counts := []int{}
	for _, p := range c.procs {
		n := len(sts[p.id].Owned)
		counts = append(counts, n)
		parts = append(parts, fmt.Sprintf("%s=%d", p.id, n))
	}
	lo, hi := slices.Min(counts), slices.Max(counts)
	mark := ""
	if hi-lo > 1 {
		mark = " (unbalanced)"
	}
	c.spread = append(c.spread, fmt.Sprintf("after %s: %s%s", name, strings.Join(parts, " "), mark))
}

// streamLeader is the node that leads bucket's stream by most fresh
// statuses.
func (c *cluster) streamLeader(bucket string) string {
	votes := map[string]int{}
	for _, st := range c.statuses() {
		if l := st.StreamLeaders[bucket]; l != "" {
			votes[l]++
		}
	}
	best := ""
	for _, l := range slices.Sorted(maps.Keys(votes)) {
		if best == "" || votes[l] > votes[best] {
			best = l
		}
	}
	return best
}

// streamsWithoutQuorum lists the buckets whose stream replicas, as the
// nodes report them, have no majority among side.
func (c *cluster) streamsWithoutQuorum(side []string) []string {
	peers := map[string][]string{}
	for _, st := range c.statuses() {
		for b, ps := range st.StreamPeers {
			if len(ps) > len(peers[b]) {
				peers[b] = ps
			}
		}
	}
	var out []string
	for _, b := range slices.Sorted(maps.Keys(peers)) {
		in := 0
		for _, p := range peers[b] {
			if slices.Contains(side, p) {
				in++
			}
		}
		if in < len(peers[b])/2+1 {
			out = append(out, b)
		}
	}
	return out
}

// inject runs one planned fault: injects it, holds it, undoes it, waits
// for recovery and then for the quiet period. It returns an error only if
// the suite itself failed (a node could not be restarted, ctx ended).
func (c *cluster) inject(ctx context.Context, n int, pf plannedFault) error {
	name := fmt.Sprintf("%s#%d", pf.Kind, n)
	f := check.Fault{Name: name, Kind: pf.Kind}
	target := c.procs[pf.Target]
	hold := func() error { return sleep(ctx, pf.Hold) }
	var err error
	switch pf.Kind {
	case kindKill9, kindKillLeader:
		if pf.Kind == kindKillLeader {
			leader := c.streamLeader(shardBucket)
			if target = c.byID(leader); target == nil {
				c.skip(name, "stream leader of KV_"+shardBucket+" unknown")
				return nil
			}
		}
		f.Targets, f.Detail = []string{target.id}, fmt.Sprintf("down %s", pf.Hold)
		f.Start = event.Mono()
		c.logf("%s: SIGKILL %s, restart in %s", name, target.id, pf.Hold)
		if err = target.kill(); err == nil {
			if err = hold(); err == nil {
				err = target.start()
				f.Healed = event.Mono()
			}
		}
	case kindGraceful:
		f.Targets, f.Detail = []string{target.id}, fmt.Sprintf("down %s after drain", pf.Hold)
		f.Start = event.Mono()
		c.logf("%s: SIGTERM %s (drain), restart %s after it exits", name, target.id, pf.Hold)
		var clean bool
		if clean, err = target.term(termTimeout); err == nil {
			if !clean {
				f.Detail += "; did not exit in time, killed"
			}
			if err = hold(); err == nil {
				err = target.start()
				f.Healed = event.Mono()
			}
		}
	case kindStop:
		f.Targets, f.Detail = []string{target.id}, fmt.Sprintf("stopped %s", pf.Hold)
		f.Start = event.Mono()
		c.logf("%s: SIGSTOP %s for %s", name, target.id, pf.Hold)
		if _, err = target.signal(syscall.SIGSTOP, false); err == nil {
			err = hold()
			if _, cerr := target.signal(syscall.SIGCONT, false); err == nil {
				err = cerr
			}
			f.Healed = event.Mono()
		}
	case kindIsolate, kindSplit:
		minority := []int{pf.Target}
		if pf.Kind == kindSplit {
			minority = pf.Minority
		}
		a := c.ids(minority)
		var b []string
		for _, p := range c.procs {
			if !slices.Contains(a, p.id) {
				b = append(b, p.id)
			}
		}
		f.Targets = a
		f.Detail = fmt.Sprintf("{%s} cut from {%s} for %s", strings.Join(a, ","), strings.Join(b, ","), pf.Hold)
		lost := c.streamsWithoutQuorum(b)
		f.Start = event.Mono()
		c.logf("%s: %s", name, f.Detail)
		if err = c.net.cut(a, b); err == nil {
			err = hold()
		}
		if herr := c.net.heal(a, b); err == nil {
			err = herr
		}
		f.Healed = event.Mono()
		if len(lost) > 0 {
			// The majority of nodes lacks a majority of these streams'
			// replicas: no quorum for them until the heal.
			c.excused = append(c.excused, check.Interval{Start: f.Start, End: f.Healed})
			f.Detail += "; no stream quorum on the majority side for " + strings.Join(lost, ",")
		}
	case kindNetem:
		if !c.netem {
			c.skip(name, "unsupported: tc netem unavailable")
			return nil
		}
		f.Targets = []string{target.id}
		f.Detail = fmt.Sprintf("delay %s±%s loss %.0f%% for %s", pf.Delay, pf.Jitter, pf.LossPct, pf.Hold)
		f.Start = event.Mono()
		c.logf("%s: netem on %s: %s", name, target.id, f.Detail)
		if err = c.net.netem(target.id, pf.Delay, pf.Jitter, pf.LossPct); err == nil {
			err = hold()
			if cerr := c.net.clearNetem(target.id); err == nil {
				err = cerr
			}
			f.Healed = event.Mono()
		}
	case kindKillAll:
		f.Targets = c.ids(allIndexes(len(c.procs)))
		f.Detail = fmt.Sprintf("all down %s", pf.Hold)
		f.Start = event.Mono()
		c.logf("%s: SIGKILL every node, restart all in %s", name, pf.Hold)
		for _, p := range c.procs {
			err = errors.Join(err, p.kill())
		}
		if err == nil {
			if err = hold(); err == nil {
				err = c.startAll(c.procs)
				f.Healed = event.Mono()
			}
		}
	default:
		return fmt.Errorf("unknown fault kind %q", pf.Kind)
	}
	if err != nil {
		c.faults = append(c.faults, closeFault(f))
		return fmt.Errorf("%s: %w", name, err)
	}
	c.logf("%s: healed; waiting for recovery", name)
	rec, rerr := c.waitHealthy(ctx, recoverTimeout)
	if rerr != nil && ctx.Err() != nil {
		c.faults = append(c.faults, closeFault(f))
		return ctx.Err()
	}
	if rerr != nil {
		c.logf("%s: %v", name, rerr)
		f.Detail += "; " + rerr.Error()
	} else {
		f.Recovered = rec
		c.logf("%s: recovered %.1fs after heal", name, float64(rec-f.Healed)/1e9)
	}
	if f.Recovered != 0 {
		err = c.settle(ctx, name, &f)
	} else {
		err = sleep(ctx, c.cfg.quiet)
	}
	c.recordSpread(name)
	c.faults = append(c.faults, closeFault(f))
	return err
}

// relapseAfter is how long the cluster must stay unhealthy during the
// quiet period to count as a relapse; a shard between two owners in a
// rebalance is unowned for milliseconds, a store outage for seconds.
const relapseAfter = time.Second

// errNotRecovered ends a quiet period whose relapse did not recover.
var errNotRecovered = errors.New("not recovered after a relapse")

// settle waits until the cluster has stayed healthy for the quiet period.
// A heal can be followed by a relapse: a node that was cut off kept
// campaigning, and its higher Raft term makes a stream's leader step down
// once it is back (nats-server has no pre-vote), so the store is out for
// up to another election after every key was held again. The next fault
// waits for that to pass, so that no fault is injected into another's
// recovery; the relapse is this fault's, and f.Recovered moves to its end.
func (c *cluster) settle(ctx context.Context, name string, f *check.Fault) error {
	err := quietFor(ctx, c.cfg.quiet, pollPeriod, c.healthy, func(why string) error {
		c.logf("%s: relapsed %.1fs after heal (%s); waiting for recovery", name, float64(event.Mono()-f.Healed)/1e9, why)
		rec, err := c.waitHealthy(ctx, recoverTimeout)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.logf("%s: %v", name, err)
			f.Detail += "; after a relapse: " + err.Error()
			f.Recovered = 0
			return errNotRecovered
		}
		f.Recovered = rec
		c.logf("%s: recovered %.1fs after heal", name, float64(rec-f.Healed)/1e9)
		return nil
	})
	if errors.Is(err, errNotRecovered) {
		return sleep(ctx, c.cfg.quiet)
	}
	return err
}

// quietFor polls healthy every poll until it has reported health for
// quiet without a break of relapseAfter or more. At each such break it
// calls relapsed, which returns once the cluster is healthy again, and
// starts the quiet period over; an error from relapsed ends the wait.
func quietFor(ctx context.Context, quiet, poll time.Duration, healthy func() (bool, string), relapsed func(why string) error) error {
	healthySince := time.Now()
	var unhealthySince time.Time
	for time.Since(healthySince) < quiet {
		if err := sleep(ctx, poll); err != nil {
			return err
		}
		ok, why := healthy()
		switch {
		case ok:
			unhealthySince = time.Time{}
		case unhealthySince.IsZero():
			unhealthySince = time.Now()
		case time.Since(unhealthySince) >= relapseAfter:
			if err := relapsed(why); err != nil {
				return err
			}
			healthySince, unhealthySince = time.Now(), time.Time{}
		}
	}
	return nil
}

func (c *cluster) skip(name, why string) {
	c.logf("%s: skipped: %s", name, why)
	c.skipped = append(c.skipped, name+": "+why)
}

func closeFault(f check.Fault) check.Fault {
	f.End = event.Mono()
	return f
}

func allIndexes(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
