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
//     leave against the ideal.
//
// Latencies are quoted as nearest-rank p50/p99/max over n runs; CPU is the
// whole process (all nodes) from getrusage, writes/s the bucket stream's
// LastSeq delta. Every wait is bounded.
//
// Usage:
//
//	cd integration/bench && go run . [-quick] [-only=etcd,handover,crash,...] [-keys=5000,10000] [-n=N] [-nodelog=file]
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
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// topics that -only selects, in run order.
var topics = []string{"etcd", "start", "handover", "crash", "keys", "alt", "shards", "shards1024", "shutdown", "moves"}

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
}

func fullPlan() plan {
	return plan{
		mode: "full", budget: 30 * time.Minute, window: 10 * time.Second,
		handovers: 50, crashRuns: 10,
		keys: []int{1, 100, 1000, 10000}, keyTTLs: []time.Duration{5 * time.Second, time.Second},
		alt:    map[time.Duration][]int{5 * time.Second: {100, 1000, 10000}, time.Second: {100, 1000}},
		cycles: 3, crashes: 2, shutdownRuns: 10, singleStarts: 5, clusterStarts: 3, moveTrials: 20,
	}
}

func quickPlan() plan {
	return plan{
		mode: "quick (smoke run: fewer runs, no 10,000 keys, 5 s windows)", budget: 6 * time.Minute, window: 5 * time.Second,
		handovers: 20, crashRuns: 3,
		keys: []int{1, 100, 1000}, keyTTLs: []time.Duration{5 * time.Second, time.Second},
		alt:    map[time.Duration][]int{5 * time.Second: {100, 1000}, time.Second: {100}},
		cycles: 2, crashes: 1, shutdownRuns: 3, singleStarts: 2, clusterStarts: 1, moveTrials: 5,
	}
}

// bench is one run.
type bench struct {
	plan plan
	only map[string]bool // nil: everything
	root string          // temp dir holding every data dir
	log  *slog.Logger    // node logger
	c    *cluster        // the 3-node cluster
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
	flag.Parse()
	if err := run(*quick, *only, *nodeLog, *keys, *n); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(quick bool, only, nodeLog, keys string, n int) error {
	b := &bench{plan: fullPlan(), rep: newReport(), cmp: newComparison(), log: slog.New(slog.DiscardHandler)}
	if quick {
		b.plan = quickPlan()
	}
	if keys != "" {
		b.plan.keys = nil
		for _, f := range strings.Split(keys, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || k < 1 || k > 20000 {
				return fmt.Errorf("-keys: want counts from 1 to 20000, got %q", f)
			}
			b.plan.keys = append(b.plan.keys, k)
		}
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
	if slices.ContainsFunc(topics, func(t string) bool { return t != "moves" && t != "etcd" && b.want(t) }) {
		if err := b.cluster(ctx); err != nil {
			return err
		}
		defer b.c.shutdown()
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
	cfgs, err := clusterConfigs(b.root, "n", 3, b.log)
	if err != nil {
		return err
	}
	b.c, err = startCluster(ctx, cfgs)
	return err
}
