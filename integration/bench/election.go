package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// handover measures graceful handover: the leader's Run ctx is cancelled,
// the time until another candidate's OnElected runs is recorded, and the
// old candidate is restarted as a follower (new candidate, same ID).
func (b *bench) handover(ctx context.Context) {
	const bucket, ttl = "handover", 5 * time.Second
	lat, release, err := b.handoverRuns(ctx, bucket, ttl)
	setting := fmt.Sprintf("TTL %s, 3 candidates (1 per node), one key", ttl)
	if err != nil {
		b.rep.fail(secElection, "Graceful handover", err)
	}
	if len(lat) > 0 {
		b.cmp.setHandover(implRonin, lat)
		b.rep.add(secElection, row{
			metric: "Graceful handover: leader's ctx cancelled → next OnElected", setting: setting, n: fmt.Sprint(len(lat)),
			result: fmt.Sprintf("%s; of which the old leader's release (ctx cancelled → OnSteppingDown): %s", lat.summary(), release.summary()),
			goal:   "p99 < 10 ms", met: verdict(lat.pct(99) < 10*time.Millisecond),
		})
	}
	dropBucket(ctx, js(b.c, 0), bucket)
}

// handoverRuns returns the handover latencies and, for each, the part
// until the old leader's release was acknowledged (its OnSteppingDown).
func (b *bench) handoverRuns(ctx context.Context, bucket string, ttl time.Duration) (lat, release sample, err error) {
	events := make(chan elected, 16)
	rs := map[string]*runner{}
	defer func() {
		for _, r := range rs {
			stopAll(ctx, r)
		}
	}()
	for i := range 3 {
		id := fmt.Sprintf("c%d", i+1)
		r, err := campaign(b.c.Manager(i), i, candidateConfig(id, bucket, "k", ttl), events)
		if err != nil {
			return nil, nil, err
		}
		rs[id] = r
	}
	first, err := recv(ctx, events, 30*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("first election: %w", err)
	}
	leader := first.id
	for i := range b.plan.handovers {
		if err := waitSeen(ctx, leader, rs["c1"], rs["c2"], rs["c3"]); err != nil {
			return lat, release, fmt.Errorf("run %d: followers see %s: %w", i, leader, err)
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil { // let the views settle
			return lat, release, err
		}
		old := rs[leader]
		t0 := time.Now()
		old.cancel()
		ev, err := recv(ctx, events, 10*time.Second)
		if err != nil {
			return lat, release, fmt.Errorf("run %d: next leader: %w", i, err)
		}
		if err := old.stop(ctx, 30*time.Second); err != nil {
			return lat, release, fmt.Errorf("run %d: old leader's Run: %w", i, err)
		}
		lat = append(lat, ev.at.Sub(t0))
		release = append(release, time.Unix(0, old.stepped.Load()).Sub(t0))
		r, err := campaign(b.c.Manager(old.node), old.node, candidateConfig(old.id, bucket, "k", ttl), events)
		if err != nil {
			return lat, release, err
		}
		rs[old.id], leader = r, ev.id
		if (i+1)%10 == 0 {
			progress("handover %d/%d: %s", i+1, b.plan.handovers, lat.summary())
		}
	}
	return lat, release, nil
}

// crash measures a leader crash: the leader runs on a client-only Manager
// (URL mode, connected to node 1) whose connection is closed, so it stops
// renewing without resigning; followers run on nodes 2 and 3.
func (b *bench) crash(ctx context.Context, ttl time.Duration) {
	bucket := "crash-" + ttlName(ttl)
	res, err := b.crashRuns(ctx, bucket, ttl)
	if err != nil {
		b.rep.fail(secElection, "Leader crash, TTL "+ttl.String(), err)
	}
	if len(res.took) > 0 {
		b.cmp.setCrash(implRonin, ttl, res.took)
		setting := fmt.Sprintf("TTL %s, leader on a URL-mode Manager, followers on nodes 2, 3; crash right after a renew of its session (worst-case phase)", ttl)
		minusTTL := res.took.shifted(ttl)
		note := fmt.Sprintf("; old leader stepped down ≥ %s before the new one was elected", ms(res.margin))
		x := row{metric: "Leader crash → next OnElected, minus TTL", setting: setting, n: fmt.Sprint(len(res.took)),
			result: minusTTL.summary() + note}
		if ttl == etcdCrashTTL {
			x.result += " · total in TTLs: " + ttls(res.took, ttl)
		}
		if ttl == 5*time.Second {
			x.goal, x.met = "p99 < 500 ms", verdict(minusTTL.pct(99) < 500*time.Millisecond)
		}
		b.rep.add(secElection, x)
		if ttl == time.Second {
			b.rep.add(secElection, row{
				metric: "Leader crash → next OnElected, total", setting: setting, n: fmt.Sprint(len(res.took)),
				result: res.took.summary(), goal: "p99 ≤ 1.1 s", met: verdict(res.took.pct(99) <= 1100*time.Millisecond),
			})
		}
	}
	dropBucket(ctx, js(b.c, 0), bucket)
}

// crashResult is the crash measurement: crash → elected, and the least
// time between the old leader's step-down and the new election (E1 margin).
type crashResult struct {
	took   sample
	margin time.Duration
}

func (b *bench) crashRuns(ctx context.Context, bucket string, ttl time.Duration) (crashResult, error) {
	res := crashResult{margin: time.Hour}
	for i := range b.plan.crashRuns {
		took, margin, err := b.crashOnce(ctx, bucket, ttl, i)
		if err != nil {
			return res, fmt.Errorf("run %d: %w", i, err)
		}
		res.took = append(res.took, took)
		res.margin = min(res.margin, margin)
		progress("crash TTL %s run %d: new leader after %s", ttl, i+1, ms(took))
	}
	return res, nil
}

func (b *bench) crashOnce(ctx context.Context, bucket string, ttl time.Duration, run int) (time.Duration, time.Duration, error) {
	victim, err := ronintest.StartManager(ctx, ronin.ServerConfig{
		NodeID: fmt.Sprintf("victim-%d", run), URL: b.c.Manager(0).ClientURL(), Logger: b.log,
	})
	if err != nil {
		return 0, 0, err
	}
	defer victim.Shutdown()
	key := fmt.Sprintf("k%d", run)
	events := make(chan elected, 8)
	lead, err := campaign(victim, -1, candidateConfig("victim", bucket, key, ttl), events)
	if err != nil {
		return 0, 0, err
	}
	defer stopAll(ctx, lead)
	if _, err := recv(ctx, events, 30*time.Second); err != nil {
		return 0, 0, fmt.Errorf("victim elected: %w", err)
	}
	var fs []*runner
	defer func() { stopAll(ctx, fs...) }()
	for i := 1; i < 3; i++ {
		f, err := campaign(b.c.Manager(i), i, candidateConfig(fmt.Sprintf("c%d", i+1), bucket, key, ttl), events)
		if err != nil {
			return 0, 0, err
		}
		fs = append(fs, f)
	}
	if err := waitSeen(ctx, "victim", fs...); err != nil {
		return 0, 0, err
	}
	if err := afterRenew(ctx, js(b.c, 1), bucket, victim.NodeID(), ttl); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	nodehook.Of(victim).Conn().Close()
	ev, err := recv(ctx, events, ttl+30*time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("next leader: %w", err)
	}
	stepped := time.Unix(0, lead.stepped.Load())
	if lead.stepped.Load() == 0 || lead.IsLeader() {
		return 0, 0, fmt.Errorf("E1: %s elected while the crashed leader had not stepped down", ev.id)
	}
	return ev.at.Sub(t0), ev.at.Sub(stepped), nil
}

func ttlName(ttl time.Duration) string { return fmt.Sprintf("%dms", ttl.Milliseconds()) }
