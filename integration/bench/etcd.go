package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"google.golang.org/grpc/grpclog"

	"github.com/nonchan7720/ronin/integration/ronintest"
)

// The etcd baseline: etcd's own election recipe (client/v3/concurrency
// Session + Election) on three embedded etcd members in this process, on
// 127.0.0.1 with free ports, data under the bench's temp dir, etcd's
// defaults otherwise (fsync on, heartbeat 100 ms, election timeout 1 s).
// Each member has its own client (endpoint: that member only), as each
// Ronin node has its own connection. It runs before the NATS cluster
// starts and its cluster is closed before that, so the whole-process CPU
// and heap readings of the two never overlap.

const (
	etcdMembers      = 3
	etcdStartTimeout = time.Minute
	etcdOpTimeout    = 10 * time.Second
	// etcdCrashTTL is the crash case's session TTL: etcd's smallest with
	// its default timers (leases are raised to 1.5 election timeouts).
	etcdCrashTTL = 2 * time.Second
	// etcdTTL is the session TTL of the handover and keys cases, as Ronin's.
	etcdTTL = 5 * time.Second
)

// etcdCluster is three embedded etcd members and one client per member.
type etcdCluster struct {
	dir     string
	members []*embed.Etcd
	urls    []string // client URL per member
	clients []*clientv3.Client
}

// startEtcd starts the members concurrently and waits until each serves.
func startEtcd(ctx context.Context, root string) (*etcdCluster, error) {
	// gRPC's global logger would print connection errors at shutdown; the
	// NATS side does not use gRPC.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, io.Discard))
	dir, err := os.MkdirTemp(root, "etcd-")
	if err != nil {
		return nil, err
	}
	ec := &etcdCluster{dir: dir}
	ports, err := ronintest.FreePorts(2 * etcdMembers)
	if err != nil {
		ec.close()
		return nil, err
	}
	cfgs := make([]*embed.Config, etcdMembers)
	var initial []string
	for i := range cfgs {
		name := fmt.Sprintf("e%d", i+1)
		peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[etcdMembers+i])}
		client := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = name, filepath.Join(dir, name)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		cfg.InitialClusterToken, cfg.ClusterState = "ronin-bench", embed.ClusterStateFlagNew
		cfg.LogLevel = "error"
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfgs[i] = cfg
		initial = append(initial, name+"="+peer.String())
		ec.urls = append(ec.urls, client.String())
	}
	for _, cfg := range cfgs {
		cfg.InitialCluster = strings.Join(initial, ",")
	}
	type started struct {
		i   int
		e   *embed.Etcd
		err error
	}
	ch := make(chan started, etcdMembers)
	for i, cfg := range cfgs {
		go func() {
			e, err := embed.StartEtcd(cfg)
			ch <- started{i, e, err}
		}()
	}
	ec.members = make([]*embed.Etcd, etcdMembers)
	var errs []error
	for range cfgs {
		s := <-ch
		ec.members[s.i] = s.e
		errs = append(errs, s.err)
	}
	if err := errors.Join(errs...); err != nil {
		ec.close()
		return nil, fmt.Errorf("etcd: start: %w", err)
	}
	for i, e := range ec.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			ec.close()
			return nil, fmt.Errorf("etcd: member %d: %w", i+1, err)
		case <-time.After(etcdStartTimeout):
			ec.close()
			return nil, fmt.Errorf("etcd: member %d not ready after %v", i+1, etcdStartTimeout)
		case <-ctx.Done():
			ec.close()
			return nil, ctx.Err()
		}
	}
	for _, u := range ec.urls {
		c, err := ec.newClient(u)
		if err != nil {
			ec.close()
			return nil, err
		}
		ec.clients = append(ec.clients, c)
	}
	return ec, nil
}

// newClient is a client of one member.
func (ec *etcdCluster) newClient(u string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{u}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
}

// close stops the clients and members and removes the data.
func (ec *etcdCluster) close() {
	for _, c := range ec.clients {
		_ = c.Close()
	}
	var wg sync.WaitGroup
	for _, e := range ec.members {
		if e != nil {
			wg.Go(e.Close)
		}
	}
	wg.Wait()
	_ = os.RemoveAll(ec.dir)
}

// raftIndex is the highest raft index over the members: every replicated
// entry (puts, deletes, lease grants and revokes) counts; lease renewals
// are not replicated in etcd and do not.
func (ec *etcdCluster) raftIndex(ctx context.Context) (uint64, error) {
	var top uint64
	for i, c := range ec.clients {
		rctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
		st, err := c.Status(rctx, ec.urls[i])
		cancel()
		if err != nil {
			return 0, err
		}
		top = max(top, st.RaftIndex)
	}
	return top, nil
}

// compact drops the history a case left, so later heap readings do not
// carry it (Ronin's cases delete their buckets likewise).
func (ec *etcdCluster) compact(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
	defer cancel()
	resp, err := ec.clients[0].Get(ctx, "compact-probe")
	if err == nil {
		_, err = ec.clients[0].Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical())
	}
	if err != nil {
		progress("warning: etcd compact: %v", err)
	}
}

// queued counts the keys under an election prefix: one per campaigning
// candidate.
func (ec *etcdCluster) queued(ctx context.Context, pfx string) int64 {
	ctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
	defer cancel()
	resp, err := ec.clients[0].Get(ctx, pfx+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return -1
	}
	return resp.Count
}

// etcdSettle is how long waitQueued lets the followers' watches settle.
// Campaign watches its predecessor's key from a revision already reached,
// so etcd puts the watch in its unsynced group, which it syncs every
// 100 ms (watchResyncPeriod); until then a delete reaches the watch only
// at that tick. Ronin's cases wait until the followers have seen the
// leader, then 20 ms; this waits out one resync period, then 50 ms, so
// both measure followers whose watches are live.
const etcdSettle = 150 * time.Millisecond

// waitQueued waits until n candidates have their keys under pfx, then
// etcdSettle so that their watches are live.
func (ec *etcdCluster) waitQueued(ctx context.Context, pfx string, n int64) error {
	if _, err := waitUntil(ctx, 15*time.Second, 2*time.Millisecond, func() bool { return ec.queued(ctx, pfx) == n }); err != nil {
		return fmt.Errorf("%d candidates queued on %s: %w", n, pfx, err)
	}
	return sleep(ctx, etcdSettle)
}

// etcdCand is one candidate: a session (its lease) and an election.
type etcdCand struct {
	id     string
	s      *concurrency.Session
	e      *concurrency.Election
	cancel context.CancelFunc
	done   chan struct{} // closed when the Campaign returned
}

func newEtcdCand(c *clientv3.Client, id, pfx string, ttl time.Duration) (*etcdCand, error) {
	s, err := concurrency.NewSession(c, concurrency.WithTTL(int(ttl.Seconds())))
	if err != nil {
		return nil, fmt.Errorf("etcd session %s: %w", id, err)
	}
	return &etcdCand{id: id, s: s, e: concurrency.NewElection(s, pfx), cancel: func() {}, done: closed()}, nil
}

func closed() chan struct{} { c := make(chan struct{}); close(c); return c }

// campaign runs Campaign; when it wins, an event goes to events (never
// blocking: the channel must have room).
func (c *etcdCand) campaign(events chan<- elected) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		if c.e.Campaign(ctx, c.id) != nil {
			return
		}
		select {
		case events <- elected{c.id, time.Now()}:
		default:
			progress("warning: dropped an etcd election event of %s", c.id)
		}
	}()
}

// stop cancels the Campaign, waits for it and closes the session (which
// revokes its lease) unless the session is gone.
func (c *etcdCand) stop(ctx context.Context) {
	c.cancel()
	if err := waitDone(ctx, c.done, time.Minute); err != nil {
		progress("warning: etcd candidate %s did not return: %v", c.id, err)
	}
	_ = c.s.Close()
}

// runEtcd runs every etcd case on a cluster of its own, closed at the end.
func (b *bench) runEtcd(ctx context.Context) {
	progress("starting the etcd cluster")
	t0 := time.Now()
	ec, err := startEtcd(ctx, b.root)
	if err != nil {
		b.rep.fail(secEtcd, "etcd cluster", err)
		return
	}
	defer ec.close()
	progress("etcd cluster up after %s", ms(time.Since(t0)))
	b.etcdIdle(ctx, ec)
	b.etcdHandover(ctx, ec)
	b.etcdCrash(ctx, ec)
	for _, k := range b.plan.keys {
		b.etcdKeys(ctx, ec, k)
	}
}

// etcdIdle is the floor under the etcd CPU and heap readings.
func (b *bench) etcdIdle(ctx context.Context, ec *etcdCluster) {
	st, err := measureSteadyWith(ctx, ec.raftIndex, b.plan.window)
	if err != nil {
		b.rep.fail(secEtcd, "Idle etcd cluster", err)
		return
	}
	b.cmp.setIdle("etcd", st)
	b.rep.add(secEtcd, row{metric: "Idle etcd cluster (reference for CPU and heap)", setting: "3 members, 3 clients, no sessions",
		n: "window " + b.plan.window.String(), result: fmt.Sprintf("CPU %.1f %% of a core · heap %.0f MiB", 100*st.cpu, st.heap)})
}

// etcdHandover mirrors handover: three candidates (one per member), the
// leader resigns, the time until another's Campaign returns is recorded,
// and the old leader campaigns again as a follower.
func (b *bench) etcdHandover(ctx context.Context, ec *etcdCluster) {
	lat, release, err := b.etcdHandoverRuns(ctx, ec, "/bench/handover")
	if err != nil {
		b.rep.fail(secEtcd, "etcd graceful handover", err)
	}
	if len(lat) > 0 {
		b.cmp.setHandover("etcd", lat)
		b.rep.add(secEtcd, row{
			metric:  "etcd graceful handover: leader's Resign called → next Campaign returned",
			setting: fmt.Sprintf("session TTL %s, 3 candidates (1 per member), one election; %s after the candidates queued (etcd syncs new watches every 100 ms)", etcdTTL, ms(etcdSettle)),
			n:       fmt.Sprint(len(lat)),
			result:  fmt.Sprintf("%s; of which Resign (delete of the leader key) returned: %s", lat.summary(), release.summary()),
		})
	}
	ec.compact(ctx)
}

func (b *bench) etcdHandoverRuns(ctx context.Context, ec *etcdCluster, pfx string) (lat, release sample, err error) {
	events := make(chan elected, 16)
	cs := map[string]*etcdCand{}
	defer func() {
		for _, c := range cs {
			c.stop(ctx)
		}
	}()
	for i := range etcdMembers {
		id := fmt.Sprintf("c%d", i+1)
		c, err := newEtcdCand(ec.clients[i], id, pfx, etcdTTL)
		if err != nil {
			return nil, nil, err
		}
		cs[id] = c
		c.campaign(events)
	}
	first, err := recv(ctx, events, 30*time.Second)
	if err != nil {
		return nil, nil, fmt.Errorf("first election: %w", err)
	}
	leader := first.id
	for i := range b.plan.handovers {
		if err := ec.waitQueued(ctx, pfx, etcdMembers); err != nil {
			return lat, release, fmt.Errorf("run %d: %w", i, err)
		}
		old := cs[leader]
		t0 := time.Now()
		rctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
		err := old.e.Resign(rctx)
		cancel()
		resigned := time.Since(t0)
		if err != nil {
			return lat, release, fmt.Errorf("run %d: resign: %w", i, err)
		}
		ev, err := recv(ctx, events, 10*time.Second)
		if err != nil {
			return lat, release, fmt.Errorf("run %d: next leader: %w", i, err)
		}
		lat, release = append(lat, ev.at.Sub(t0)), append(release, resigned)
		old.campaign(events)
		leader = ev.id
		if (i+1)%10 == 0 {
			progress("etcd handover %d/%d: %s", i+1, b.plan.handovers, lat.summary())
		}
	}
	return lat, release, nil
}

// etcdCrash mirrors crash: the leader's session is on a client of its own
// (to member 1) that is closed right after a lease renewal it made, so the
// lease is neither renewed nor revoked; followers are on members 2 and 3.
func (b *bench) etcdCrash(ctx context.Context, ec *etcdCluster) {
	var took sample
	var err error
	for run := range b.plan.crashRuns {
		var d time.Duration
		if d, err = b.etcdCrashOnce(ctx, ec, run); err != nil {
			err = fmt.Errorf("run %d: %w", run, err)
			break
		}
		took = append(took, d)
		progress("etcd crash TTL %s run %d: new leader after %s", etcdCrashTTL, run+1, ms(d))
	}
	if err != nil {
		b.rep.fail(secEtcd, "etcd leader crash", err)
	}
	if len(took) > 0 {
		b.cmp.setCrash("etcd", etcdCrashTTL, took)
		b.rep.add(secEtcd, row{
			metric:  "etcd leader crash → next Campaign returned",
			setting: fmt.Sprintf("session TTL %s, leader on its own client to member 1, closed (no revoke) right after a renewal (KeepAliveOnce); followers on members 2, 3", etcdCrashTTL),
			n:       fmt.Sprint(len(took)),
			result:  fmt.Sprintf("%s · in TTLs: %s · minus TTL: %s", took.summary(), ttls(took, etcdCrashTTL), took.shifted(etcdCrashTTL).summary()),
		})
	}
	ec.compact(ctx)
}

func (b *bench) etcdCrashOnce(ctx context.Context, ec *etcdCluster, run int) (time.Duration, error) {
	pfx := fmt.Sprintf("/bench/crash/k%d", run)
	vc, err := ec.newClient(ec.urls[0])
	if err != nil {
		return 0, err
	}
	defer vc.Close() // again after the crash: a no-op
	events := make(chan elected, 8)
	victim, err := newEtcdCand(vc, "victim", pfx, etcdCrashTTL)
	if err != nil {
		return 0, err
	}
	victim.campaign(events)
	if ev, err := recv(ctx, events, 30*time.Second); err != nil || ev.id != "victim" {
		return 0, fmt.Errorf("victim elected: %v %v", ev.id, err)
	}
	var fs []*etcdCand
	defer func() {
		for _, f := range fs {
			f.stop(ctx)
		}
	}()
	for i := 1; i < etcdMembers; i++ {
		f, err := newEtcdCand(ec.clients[i], fmt.Sprintf("c%d", i+1), pfx, etcdCrashTTL)
		if err != nil {
			return 0, err
		}
		fs = append(fs, f)
		f.campaign(events)
	}
	if err := ec.waitQueued(ctx, pfx, etcdMembers); err != nil {
		return 0, err
	}
	kctx, cancel := context.WithTimeout(ctx, etcdOpTimeout)
	_, err = vc.KeepAliveOnce(kctx, victim.s.Lease())
	cancel()
	if err != nil {
		return 0, fmt.Errorf("renew: %w", err)
	}
	t0 := time.Now()
	_ = vc.Close()
	ev, err := recv(ctx, events, etcdCrashTTL+30*time.Second)
	if err != nil {
		return 0, fmt.Errorf("next leader: %w", err)
	}
	return ev.at.Sub(t0), nil
}

// etcdKeys mirrors keysAtScale: k elections, each with three candidates,
// one per member; the candidates of a member share one session, as a
// Ronin node's share its session. It measures the time until every key has
// a leader, then a quiet window.
func (b *bench) etcdKeys(ctx context.Context, ec *etcdCluster, k int) {
	setting := fmt.Sprintf("session TTL %s (one per member client), %d keys × 3 candidates", etcdTTL, k)
	ks, err := newEtcdKeySet(ec, k)
	if err != nil {
		b.rep.fail(secEtcd, "etcd keys at scale, "+setting, err)
		return
	}
	defer func() { ks.stop(ctx); ec.compact(ctx) }()
	took, electErr := ks.electAll(ctx)
	if electErr == nil {
		progress("etcd keys %d: all elected after %s; settling", k, ms(took))
	} else {
		progress("etcd keys %d: %v; measuring the window anyway", k, electErr)
	}
	elections := ks.elections.Load()
	if err := sleep(ctx, time.Second); err != nil {
		return
	}
	st, err := measureSteadyWith(ctx, ec.raftIndex, b.plan.window)
	if err != nil {
		b.rep.fail(secEtcd, "etcd keys at scale, "+setting, err)
		return
	}
	result := fmt.Sprintf("all elected in %s (%d elections) · then %s (writes: raft entries)", ms(took), elections, st)
	fig := keysFig{took: took, st: st}
	if electErr != nil {
		result = fmt.Sprintf("NOT all elected: %v (%d elections) · window after it: %s", electErr, elections, st)
		fig.failed = "not all elected"
	}
	if lost := ks.sessionsLost(); lost != "" {
		result += " · sessions lost (lease expired: keep-alives did not get through), at " + lost +
			" after the start; every key under a lost session is deleted, and the next candidate's Campaign returns"
		fig.failed += "; sessions lost"
	}
	b.cmp.setKeys(implEtcd, etcdTTL, k, fig)
	b.rep.add(secEtcd, row{metric: "etcd keys at scale: start → every key led; steady window", setting: setting,
		n: "window " + b.plan.window.String(), result: result})
}

// etcdKeySet is k elections with one candidate per member each.
type etcdKeySet struct {
	pfx       string
	k         int
	sessions  []*concurrency.Session
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	led       []atomic.Bool
	nled      atomic.Int64
	elections atomic.Int64 // Campaigns won so far (more than k: leases were lost)
	stopping  atomic.Bool
	t0        time.Time
	lostAt    []atomic.Int64 // per session: UnixNano when its keep-alive ended, before stop
}

func newEtcdKeySet(ec *etcdCluster, k int) (*etcdKeySet, error) {
	ks := &etcdKeySet{pfx: fmt.Sprintf("/bench/keys-%d/", k), k: k, led: make([]atomic.Bool, k), cancel: func() {},
		lostAt: make([]atomic.Int64, len(ec.clients))}
	for _, c := range ec.clients {
		s, err := concurrency.NewSession(c, concurrency.WithTTL(int(etcdTTL.Seconds())))
		if err != nil {
			ks.stop(context.Background())
			return nil, err
		}
		ks.sessions = append(ks.sessions, s)
	}
	return ks, nil
}

// electAll starts every Campaign and polls until every key has a leader;
// it returns the time from the start of the Campaigns.
func (ks *etcdKeySet) electAll(ctx context.Context) (time.Duration, error) {
	t0 := time.Now()
	ks.t0 = t0
	cctx, cancel := context.WithCancel(context.Background())
	ks.cancel = cancel
	for i, s := range ks.sessions {
		ks.wg.Go(func() {
			select {
			case <-s.Done():
				if !ks.stopping.Load() {
					ks.lostAt[i].Store(time.Now().UnixNano())
				}
			case <-cctx.Done():
			}
		})
	}
	for key := range ks.k {
		for node, s := range ks.sessions {
			e := concurrency.NewElection(s, fmt.Sprintf("%sk%d", ks.pfx, key))
			ks.wg.Go(func() {
				if e.Campaign(cctx, fmt.Sprintf("c%d", node+1)) != nil || ks.stopping.Load() {
					return
				}
				ks.elections.Add(1)
				if !ks.led[key].Swap(true) {
					ks.nled.Add(1)
				}
			})
		}
	}
	_, err := waitUntil(ctx, electTimeout, 10*time.Millisecond, func() bool { return ks.nled.Load() == int64(ks.k) })
	if err != nil {
		return 0, fmt.Errorf("%d of %d keys without a leader: %w", int64(ks.k)-ks.nled.Load(), ks.k, err)
	}
	return time.Since(t0), nil
}

// sessionsLost lists when sessions' keep-alives ended, since the start;
// "" when none did.
func (ks *etcdKeySet) sessionsLost() string {
	var at []string
	for i := range ks.lostAt {
		if ns := ks.lostAt[i].Load(); ns != 0 {
			at = append(at, ms(time.Unix(0, ns).Sub(ks.t0)))
		}
	}
	return strings.Join(at, ", ")
}

// stop revokes the sessions (deleting every key under them at once), then
// ends the Campaigns still waiting and waits for them, bounded.
func (ks *etcdKeySet) stop(ctx context.Context) {
	ks.stopping.Store(true)
	for _, s := range ks.sessions {
		_ = s.Close()
	}
	ks.cancel()
	done := make(chan struct{})
	go func() { ks.wg.Wait(); close(done) }()
	if err := waitDone(ctx, done, 2*time.Minute); err != nil {
		progress("warning: etcd campaigns did not return: %v", err)
	}
}

// ttls renders p50 and max of s in units of ttl.
func ttls(s sample, ttl time.Duration) string {
	return fmt.Sprintf("p50 %.3f × TTL · max %.3f × TTL", s.pct(50).Seconds()/ttl.Seconds(), s.max().Seconds()/ttl.Seconds())
}
