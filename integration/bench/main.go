// Command bench measures Ronin and prints one markdown table (stdout) with
// the machine it ran on; progress goes to stderr.
//
// Everything runs in this process on 127.0.0.1: three embedded nodes
// (random free ports, data dirs under one temp dir removed at the end, node
// logs discarded) started concurrently, buckets R3, SyncAlways on. The one
// cluster is reused for every measurement; a fourth node joins it for the
// Shutdown measurement, which therefore runs last. It measures:
//
//   - election (issue 2): graceful handover (leader's Run ctx cancelled ->
//     next OnElected), leader crash (a URL-mode Manager's connection closed
//     right after a renew of its session, the worst-case phase) at TTL 5 s
//     and 1 s, an idle-cluster reference, keys at scale (1 to 10,000 keys x
//     3 candidates: time until every key leads at once, then KV writes/s,
//     CPU s/s and heap over a quiet window) beside a naive per-key lease
//     renewed by CAS (its own bucket, no elections), Shutdown of
//     a node whose candidate leads (every other run with the bucket's stream
//     leader moved onto that node), and Start times;
//   - etcd baseline (issue 9): etcd's own election recipe
//     (client/v3/concurrency Session + Election) on three embedded etcd
//     members in this process (loopback, free ports, etcd's defaults: fsync
//     on, 100 ms heartbeat, 1 s election timeout; logs off), run before the
//     NATS cluster starts and closed before it: graceful handover (Resign ->
//     next Campaign returned, TTL 5 s), leader crash at TTL 2 s (etcd's
//     minimum; Ronin runs the same TTL beside it) and keys at scale at TTL
//     5 s with the keys case's key counts. A second table sets Ronin, the
//     naive lease and etcd side by side with Ronin/etcd;
//   - shards (issue 3): 64 shards through start, leave/rejoin cycles (with
//     the per-shard drain gap) and member crashes; 1,024 shards to full
//     ownership and a quiet window; the pure balancer's moves per join and
//     leave against the ideal;
//   - startup and roll, each on clusters of their own, run before the
//     bench's cluster starts: three nodes started together with a 64-shard
//     group, on a fresh bucket and on a cluster restart (time from the last
//     Start returned until every shard runs once, churn, misplaced first
//     owners; per -startup.ttl), and a rolling restart of 3 and 5 nodes
//     (owned shard-time, longest gap, moves per shard, overlaps, each
//     handover gap split by the bucket's stream). They print tables of their
//     own after the main one.
//
// Latencies are quoted as nearest-rank p50/p99/max over n runs; CPU is the
// whole process (all nodes) from getrusage, writes/s the bucket stream's
// LastSeq delta. Every wait is bounded.
//
// Usage:
//
//	cd integration/bench && go run . [-quick] [-only=etcd,handover,crash,...] [-keys=5000,10000] [-n=N] [-nodelog=file]
//	    [-startup.runs=N] [-startup.ttl=5s,1s] [-roll.runs=N] [-roll.nodes=3,5]
//
// The directory is a module of its own (go.mod here, the library through a
// replace) so that etcd stays out of the library's dependency graph.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin/integration/ronintest"
)

// topics that -only selects, in run order.
var topics = []string{"etcd", "startup", "roll", "start", "handover", "crash", "keys", "alt", "shards", "shards1024", "shutdown", "moves"}

// ownClusters are the topics that need no bench cluster.
var ownClusters = []string{"etcd", "startup", "roll", "moves"}

// plan is how much of each measurement to run.
type plan struct {
	mode                        string
	budget                      time.Duration // hard stop for the whole run
	window                      time.Duration // steady-state window
	handovers, crashRuns        int
	keys                        []int
	keyTTLs                     []time.Duration
	alt                         map[time.Duration][]int // naive lease: TTL -> key counts
	cycles, crashes             int                     // 64-shard leave/rejoin cycles and crashes
	shutdownRuns                int
	singleStarts, clusterStarts int
	moveTrials                  int
	startupRuns                 int             // start-ups per TTL and bucket kind
	startupTTLs                 []time.Duration // TTLs of the start-up scenario
	rollRuns                    int             // whole rolls per node count
	rollNodes                   []int           // node counts of the rolling restart
}

func fullPlan() plan {
	return plan{
		mode: "full", budget: 45 * time.Minute, window: 10 * time.Second,
		handovers: 50, crashRuns: 10,
		keys: []int{1, 100, 1000, 10000}, keyTTLs: []time.Duration{5 * time.Second, time.Second},
		alt:    map[time.Duration][]int{5 * time.Second: {100, 1000, 10000}, time.Second: {100, 1000}},
		cycles: 3, crashes: 2, shutdownRuns: 10, singleStarts: 5, clusterStarts: 3, moveTrials: 20,
		startupRuns: 10, startupTTLs: []time.Duration{5 * time.Second}, rollRuns: 3, rollNodes: []int{3, 5},
	}
}

func quickPlan() plan {
	return plan{
		mode: "quick (smoke run: fewer runs, no 10,000 keys, 5 s windows)", budget: 9 * time.Minute, window: 5 * time.Second,
		handovers: 20, crashRuns: 3,
		keys: []int{1, 100, 1000}, keyTTLs: []time.Duration{5 * time.Second, time.Second},
		alt:    map[time.Duration][]int{5 * time.Second: {100, 1000}, time.Second: {100}},
		cycles: 2, crashes: 1, shutdownRuns: 3, singleStarts: 2, clusterStarts: 1, moveTrials: 5,
		startupRuns: 3, startupTTLs: []time.Duration{5 * time.Second}, rollRuns: 1, rollNodes: []int{3, 5},
	}
}

// bench is one run.
type bench struct {
	plan plan
	only map[string]bool    // nil: everything
	root string             // temp dir holding every data dir
	log  *slog.Logger       // node logger
	c    *ronintest.Cluster // the 3-node cluster
	rep  *report
	cmp  *comparison // figures for the side-by-side table
}

var began = time.Now()

// progress prints a line to stderr with the time since start.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

func main() {
	quick := flag.Bool("quick", false, "fast smoke run (< 3 min): fewer runs and keys, shorter windows")
	only := flag.String("only", "", "comma-separated subset of: "+strings.Join(topics, ","))
	nodeLog := flag.String("nodelog", "", "write node logs (debug level) to this file instead of discarding them; for diagnosis only, it slows the nodes down")
	keys := flag.String("keys", "", "comma-separated key counts for the keys cases of Ronin and etcd (e.g. 5000,10000); default: the plan's")
	n := flag.Int("n", 0, "runs of the handover and crash cases (Ronin and etcd); 0: the plan's")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file; for diagnosis")
	flag.StringVar(&steadyProfile, "steadyprofile", "", "write a CPU profile of each steady window to this path plus its number (e.g. /tmp/steady → /tmp/steady.1); for diagnosis, not with -cpuprofile (one CPU profile at a time)")
	var sc scenarioFlags
	flag.IntVar(&sc.startupRuns, "startup.runs", 0, "start-ups per TTL and bucket kind in the startup case; 0: the plan's (10, quick 3)")
	flag.StringVar(&sc.startupTTLs, "startup.ttl", "", "comma-separated lease TTLs of the startup case (e.g. 5s,1s); default: 5s")
	flag.IntVar(&sc.rollRuns, "roll.runs", 0, "whole rolling restarts per node count in the roll case; 0: the plan's (3, quick 1)")
	flag.StringVar(&sc.rollNodes, "roll.nodes", "", "comma-separated node counts of the roll case (3 to 9); default: 3,5")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: -cpuprofile:", err)
			os.Exit(2)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	if err := run(*quick, *only, *nodeLog, *keys, *n, sc); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		pprof.StopCPUProfile() // os.Exit skips the deferred stop
		os.Exit(1)
	}
}

// scenarioFlags are the flags of the startup and roll cases.
type scenarioFlags struct {
	startupRuns, rollRuns  int
	startupTTLs, rollNodes string
}

// apply sets the flags that were given on p.
func (sc scenarioFlags) apply(p *plan) error {
	if sc.startupRuns < 0 || sc.startupRuns > 1000 || sc.rollRuns < 0 || sc.rollRuns > 100 {
		return fmt.Errorf("-startup.runs: want 0 to 1000, -roll.runs 0 to 100; got %d, %d", sc.startupRuns, sc.rollRuns)
	}
	if sc.startupRuns > 0 {
		p.startupRuns = sc.startupRuns
	}
	if sc.rollRuns > 0 {
		p.rollRuns = sc.rollRuns
	}
	if sc.startupTTLs != "" {
		p.startupTTLs = nil
		for _, f := range strings.Split(sc.startupTTLs, ",") {
			d, err := time.ParseDuration(strings.TrimSpace(f))
			if err != nil || d < time.Second || d > time.Minute {
				return fmt.Errorf("-startup.ttl: want durations from 1s to 1m, got %q", f)
			}
			p.startupTTLs = append(p.startupTTLs, d)
		}
	}
	if sc.rollNodes != "" {
		ns, err := intList("roll.nodes", sc.rollNodes, 3, 9)
		if err != nil {
			return err
		}
		p.rollNodes = ns
	}
	return nil
}

// intList parses a comma-separated list of ints from lo to hi.
func intList(flagName, s string, lo, hi int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < lo || k > hi {
			return nil, fmt.Errorf("-%s: want numbers from %d to %d, got %q", flagName, lo, hi, f)
		}
		out = append(out, k)
	}
	return out, nil
}

func run(quick bool, only, nodeLog, keys string, n int, sc scenarioFlags) error {
	b := &bench{plan: fullPlan(), rep: newReport(), cmp: newComparison(), log: slog.New(slog.DiscardHandler)}
	if quick {
		b.plan = quickPlan()
	}
	if keys != "" {
		var err error
		if b.plan.keys, err = intList("keys", keys, 1, 20000); err != nil {
			return err
		}
	}
	if err := sc.apply(&b.plan); err != nil {
		return err
	}
	if n < 0 || n > 1000 {
		return fmt.Errorf("-n: want 0 to 1000, got %d", n)
	}
	if n > 0 {
		b.plan.handovers, b.plan.crashRuns = n, n
	}
	if only != "" {
		b.only = map[string]bool{}
		for _, t := range strings.Split(only, ",") {
			if !slices.Contains(topics, t) {
				return fmt.Errorf("-only: unknown topic %q (have %s)", t, strings.Join(topics, ","))
			}
			b.only[t] = true
		}
	}
	if nodeLog != "" {
		f, err := os.Create(nodeLog)
		if err != nil {
			return err
		}
		defer f.Close()
		b.log = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	root, err := os.MkdirTemp("", "ronin-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	b.root = root

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, b.plan.budget)
	defer cancel()
	err = b.runAll(ctx)
	logs := "discarded"
	if nodeLog != "" {
		logs = "written at debug level to " + nodeLog + " (this slows the nodes down)"
	}
	printHeader(os.Stdout, describeMachine(), b.plan.mode, logs, time.Since(began))
	b.rep.print(os.Stdout)
	b.cmp.print(os.Stdout)
	return err
}

func (b *bench) want(topic string) bool { return b.only == nil || b.only[topic] }

// runAll runs the selected measurements in order on one cluster.
func (b *bench) runAll(ctx context.Context) error {
	if b.want("etcd") {
		b.runEtcd(ctx) // first, and closed before the NATS cluster starts
	}
	if b.want("startup") {
		b.startup(ctx) // clusters of its own, before the bench's starts
	}
	if b.want("roll") {
		b.roll(ctx)
	}
	if slices.ContainsFunc(topics, func(t string) bool { return !slices.Contains(ownClusters, t) && b.want(t) }) {
		if err := b.cluster(ctx); err != nil {
			return err
		}
		defer b.c.Shutdown()
	}
	if b.want("handover") {
		b.handover(ctx)
	}
	if b.want("crash") {
		b.crash(ctx, 5*time.Second)
		b.crash(ctx, time.Second)
		if b.want("etcd") {
			b.crash(ctx, etcdCrashTTL) // the etcd crash case's partner
		}
	}
	if b.want("keys") {
		b.idle(ctx)
	}
	for _, ttl := range b.plan.keyTTLs {
		for _, k := range b.plan.keys {
			if b.want("keys") {
				b.keysAtScale(ctx, ttl, k)
			}
			if b.want("alt") && slices.Contains(b.plan.alt[ttl], k) {
				b.naive(ctx, ttl, k)
			}
		}
	}
	if b.want("shards") {
		b.shards64(ctx)
	}
	if b.want("shards1024") {
		b.shards1024(ctx)
	}
	if b.want("shutdown") {
		b.shutdownHandover(ctx) // last: node 4 stays a JetStream peer
	}
	if b.want("moves") {
		b.balancerMoves()
	}
	return ctx.Err()
}

// cluster starts the bench's cluster, measuring Start if selected.
func (b *bench) cluster(ctx context.Context) error {
	progress("starting the cluster")
	if b.want("start") {
		return b.startTimes(ctx)
	}
	c, _, err := b.newCluster(3)
	if err != nil {
		return err
	}
	if err := c.StartAll(ctx, nil); err != nil {
		c.Shutdown()
		return err
	}
	b.c = c
	return nil
}
