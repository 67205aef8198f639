// Command node runs one Ronin node for the chaos suite: a Manager with an
// embedded NATS server, one shard group and one plain candidate per key. It
// appends what it does to an events file (see package event) and rewrites
// a status file every 250 ms for the orchestrator. SIGTERM or SIGINT stops
// it gracefully: shards drained, candidates resigned, Manager shut down,
// exit status 0.
//
// What "acting" means, for the checker: a shard handler reads the clock
// and then checks ctx.Err(); only if the ctx is live does it record a
// tick at that time. A candidate reads LeaderRev, the clock, and LeaderRev
// again; only if both reads give the same non-zero token does it record a
// lead at that time. Either way every recorded instant lies inside the term.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/chaos/event"
	"github.com/nonchan7720/ronin/shard"
)

// samplePeriod is how often handlers and candidate loops record ticks.
const samplePeriod = 10 * time.Millisecond

type options struct {
	id, host, peers, dataDir      string
	clientPort, clusterPort       int
	ttl                           time.Duration
	shards, keys                  int
	shardBucket, keyBucket        string
	eventsPath, statusPath, level string
	staleFor                      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.id, "id", "", "node id (required)")
	flag.StringVar(&o.host, "host", "127.0.0.1", "listen address (the node's namespace IP)")
	flag.IntVar(&o.clientPort, "client-port", 4222, "NATS client port")
	flag.IntVar(&o.clusterPort, "cluster-port", 6222, "NATS route port")
	flag.StringVar(&o.peers, "peers", "", "comma-separated route URLs of all nodes")
	flag.StringVar(&o.dataDir, "data", "", "JetStream data dir, reused on restart (required)")
	flag.DurationVar(&o.ttl, "ttl", 2*time.Second, "lease TTL of both buckets")
	flag.IntVar(&o.shards, "shards", 16, "shards of the shard group")
	flag.IntVar(&o.keys, "keys", 4, "plain candidate keys (key-0 ...)")
	flag.StringVar(&o.shardBucket, "shard-bucket", "chaos-shards", "bucket of the shard group")
	flag.StringVar(&o.keyBucket, "key-bucket", "chaos-keys", "bucket of the plain candidates")
	flag.StringVar(&o.eventsPath, "events", "", "events file, JSON lines, appended (required)")
	flag.StringVar(&o.statusPath, "status", "", "status file, rewritten every 250 ms (required)")
	flag.StringVar(&o.level, "log-level", "info", "log level: debug, info, warn, error")
	flag.DurationVar(&o.staleFor, "selftest-stale", 0,
		"self-test of the checker: keep recording ticks this long after a handler's ctx ended (a planted E1 bug)")
	flag.Parse()
	if o.id == "" || o.dataDir == "" || o.eventsPath == "" || o.statusPath == "" {
		fmt.Fprintln(os.Stderr, "node: -id, -data, -events and -status are required")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "node:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	ev, err := event.Create(o.eventsPath, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer ev.Close()
	pid := os.Getpid()
	ev.Emit(event.Event{T: event.Mono(), Node: o.id, Kind: event.Start, Pid: pid})

	var level slog.Level
	if err := level.UnmarshalText([]byte(o.level)); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	// The signal context ends the campaign; Shutdown follows.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	mgr, err := ronin.NewManager(ronin.ServerConfig{
		NodeID:      o.id,
		Host:        o.host,
		ClientPort:  o.clientPort,
		ClusterPort: o.clusterPort,
		Peers:       o.peers,
		DataDir:     o.dataDir,
		Logger:      log,
	})
	if err != nil {
		return err
	}
	startCtx, cancelStart := context.WithTimeout(ctx, 3*time.Minute)
	err = mgr.Start(startCtx)
	cancelStart()
	if err != nil {
		return err
	}
	defer mgr.Shutdown()

	st := newStatus(o, pid, ev)
	group, err := mgr.RegisterShards(ronin.ShardConfig{
		BucketName: o.shardBucket,
		Shards:     o.shards,
		TTL:        o.ttl,
		Handler:    shardHandler(ev, o.id, o.staleFor),
	})
	if err != nil {
		return fmt.Errorf("register shards: %w", err)
	}
	cands := make([]*ronin.Candidate, o.keys)
	for i := range cands {
		key := keyName(i)
		var c *ronin.Candidate
		c, err = mgr.NewCandidate(ronin.CandidateConfig{
			CandidateID: o.id,
			BucketName:  o.keyBucket,
			KeyName:     key,
			TTL:         o.ttl,
			OnElected: func() {
				ev.Emit(event.Event{T: event.Mono(), Node: o.id, Kind: event.Elected, Key: key, Rev: c.LeaderRev()})
			},
			OnSteppingDown: func() {
				ev.Emit(event.Event{T: event.Mono(), Node: o.id, Kind: event.Stepped, Key: key})
			},
		})
		if err != nil {
			return fmt.Errorf("candidate %s: %w", key, err)
		}
		cands[i] = c
	}
	ev.Emit(event.Event{T: event.Mono(), Node: o.id, Kind: event.Ready, Pid: pid})
	st.setReady(event.Mono())

	var wg sync.WaitGroup
	errs := make(chan error, len(cands)+1)
	wg.Go(func() {
		if err := group.Run(ctx); err != nil && !errors.Is(err, ronin.ErrClosed) {
			errs <- fmt.Errorf("shard group: %w", err)
		}
	})
	for i, c := range cands {
		key := keyName(i)
		wg.Go(func() {
			if err := c.Run(ctx); err != nil && !errors.Is(err, ronin.ErrClosed) {
				errs <- fmt.Errorf("candidate %s: %w", key, err)
			}
		})
		wg.Go(func() { sampleLeader(ctx, ev, o.id, key, c) })
	}
	statusCtx, stopStatus := context.WithCancel(context.Background())
	var sw sync.WaitGroup
	sw.Go(func() { st.loop(statusCtx, mgr, group, cands, []string{o.shardBucket, o.keyBucket}) })

	<-ctx.Done()
	log.Info("chaos node: stopping gracefully")
	wg.Wait() // drains the group, resigns the candidates
	stopStatus()
	sw.Wait()
	mgr.Shutdown()
	ev.Emit(event.Event{T: event.Mono(), Node: o.id, Kind: event.Exit, Pid: pid})
	close(errs)
	var all []string
	for err := range errs {
		all = append(all, err.Error())
	}
	if len(all) > 0 {
		return errors.New(strings.Join(all, "; "))
	}
	return nil
}

// shardHandler records a tick every samplePeriod while its ctx is live:
// the clock is read first, then ctx.Err(), which checks the lease
// deadline on every call, so each tick happened while the node owned the
// shard. A positive staleFor plants a bug for the self-test: ticks go on
// that long after the ctx ended.
func shardHandler(ev *event.Writer, node string, staleFor time.Duration) ronin.ShardHandler {
	return func(ctx context.Context, id int, rev uint64) error {
		key := shard.Key(id)
		ev.Emit(event.Event{T: event.Mono(), Node: node, Kind: event.HandlerStart, Key: key, Shard: &id, Rev: rev})
		defer func() {
			ev.Emit(event.Event{T: event.Mono(), Node: node, Kind: event.HandlerEnd, Key: key, Shard: &id, Rev: rev})
		}()
		tick := time.NewTicker(samplePeriod)
		defer tick.Stop()
		for {
			t := event.Mono()
			if err := ctx.Err(); err != nil {
				staleTicks(ev, node, key, id, rev, staleFor)
				return nil
			}
			ev.Emit(event.Event{T: t, Node: node, Kind: event.Tick, Key: key, Shard: &id, Rev: rev})
			select {
			case <-ctx.Done():
			case <-tick.C:
			}
		}
	}
}

// staleTicks records ticks for d after the ctx ended: the planted bug of
// the self-test (-selftest-stale). It does nothing when d is 0.
func staleTicks(ev *event.Writer, node, key string, id int, rev uint64, d time.Duration) {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(samplePeriod) {
		ev.Emit(event.Event{T: event.Mono(), Node: node, Kind: event.Tick, Key: key, Shard: &id, Rev: rev, Detail: "selftest-stale"})
	}
}

// sampleLeader records a lead every samplePeriod while c leads: LeaderRev
// before and after reading the clock must agree (a term never pauses and
// never reuses a token, and LeaderRev is 0 once the deadline passed).
func sampleLeader(ctx context.Context, ev *event.Writer, node, key string, c *ronin.Candidate) {
	tick := time.NewTicker(samplePeriod)
	defer tick.Stop()
	for {
		before := c.LeaderRev()
		t := event.Mono()
		if rev := c.LeaderRev(); rev != 0 && rev == before {
			ev.Emit(event.Event{T: t, Node: node, Kind: event.Lead, Key: key, Rev: rev})
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
