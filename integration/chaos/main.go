// Command chaos is Ronin's multi-process fault suite. It runs each node as
// its own process in its own network namespace (joined by a bridge in a hub
// namespace that the suite creates and removes), injects faults on a
// schedule drawn from a printed seed, checks every node's history against
// the contract (package check) and writes report.md and timeline.svg.
//
//	cd integration/chaos && go run . -duration 10m -out out/chaos -seed 1 -nodes 3
//
// It needs Linux, root and iproute2; without them it prints
// "chaos: skipped: <reason>" and exits 0. The last line on stdout is
// "violations: N"; the exit status is 1 if N > 0 and 2 if the suite itself
// failed.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/check"
	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// Buckets the nodes use.
const (
	shardBucket = "chaos-shards"
	keyBucket   = "chaos-keys"
)

// config is the command line.
type config struct {
	duration  time.Duration
	out       string
	seed      uint64
	seedSet   bool
	nodes     int
	ttl       time.Duration
	shards    int
	keys      int
	quiet     time.Duration
	allowance time.Duration
	downGap   time.Duration
	recheck   string
	maxFaults int
	stale     time.Duration
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	os.Exit(mainExit(cfg))
}

func parseFlags() (config, error) {
	var c config
	flag.DurationVar(&c.duration, "duration", 10*time.Minute, "how long to inject faults")
	flag.StringVar(&c.out, "out", "out/chaos", "output folder: report.md, timeline.svg, events, logs")
	flag.Uint64Var(&c.seed, "seed", 0, "seed of the fault schedule (default: from the clock, printed)")
	flag.IntVar(&c.nodes, "nodes", 3, "nodes in the cluster (3 or more)")
	flag.DurationVar(&c.ttl, "ttl", 2*time.Second, "lease TTL")
	flag.IntVar(&c.shards, "shards", 16, "shards of the shard group")
	flag.IntVar(&c.keys, "keys", 4, "plain candidate keys")
	flag.DurationVar(&c.quiet, "quiet", 0, "quiet period after each recovery (default 2*TTL+5s)")
	flag.DurationVar(&c.allowance, "allowance", 0,
		"how much longer than TTL a key may stay without a holder while a quorum is up (default: the Raft election, at most 9 s after a stream leader dies, plus TTL/2 for the nodes' session retries, plus 1 s)")
	flag.DurationVar(&c.downGap, "down-gap", 50*time.Millisecond, "a gap between ticks longer than this counts as down time")
	flag.StringVar(&c.recheck, "recheck", "", "re-run the checker and rewrite the report of an earlier run in this folder; nothing is started")
	flag.IntVar(&c.maxFaults, "max-faults", 1000, "upper bound on the number of faults")
	flag.DurationVar(&c.stale, "selftest-stale", 0,
		"self-test: plant a bug in the nodes (handlers keep ticking this long after their ctx ended); the run must then report overlaps")
	flag.Parse()
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "seed" {
			c.seedSet = true
		}
	})
	if !c.seedSet {
		c.seed = uint64(time.Now().UnixNano()) % 1_000_000
	}
	if c.quiet == 0 {
		c.quiet = 2*c.ttl + 5*time.Second
	}
	if c.allowance == 0 {
		c.allowance = defaultAllowance(c.ttl)
	}
	switch {
	case c.nodes < 3:
		return c, fmt.Errorf("-nodes %d: need at least 3", c.nodes)
	case c.nodes > 9:
		return c, fmt.Errorf("-nodes %d: at most 9", c.nodes)
	case c.shards < 1 || c.keys < 0:
		return c, fmt.Errorf("-shards must be positive and -keys not negative")
	case c.duration <= 0 || c.ttl <= 0:
		return c, fmt.Errorf("-duration and -ttl must be positive")
	}
	return c, nil
}

// maxElection is the longest a bucket's stream takes to elect a new
// leader after its leader dies: nats-server's Raft election timeout is 4-9 s
// from the last append it received.
const maxElection = 9 * time.Second

// defaultAllowance is how much longer than a TTL a key may go without a
// holder while a quorum is up. A stream leader's death stops writes for the
// election; every node loses its session in that outage and retries it at
// most TTL/2 apart; the first new session gives the others a TTL from then
// (observer.restart) before a dead holder's keys are taken; 1 s covers the
// rest (the vote, the acquiring write, the handler's start).
func defaultAllowance(ttl time.Duration) time.Duration { return maxElection + ttl/2 + time.Second }

// replayCommand is the command that repeats this run's schedule.
func (c config) replayCommand() string {
	cmd := fmt.Sprintf("cd integration/chaos && go run . -duration %s -out %s -seed %d -nodes %d -ttl %s -shards %d -keys %d",
		c.duration, c.out, c.seed, c.nodes, c.ttl, c.shards, c.keys)
	if c.stale > 0 {
		cmd += " -selftest-stale " + c.stale.String()
	}
	return cmd
}

// mainExit runs the suite and returns the exit status.
func mainExit(cfg config) int {
	if cfg.recheck != "" {
		n, err := recheck(cfg.recheck)
		if err != nil {
			fmt.Fprintln(os.Stderr, "chaos:", err)
			return 2
		}
		fmt.Printf("violations: %d\n", n)
		return boolExit(n > 0, 1)
	}
	if why := preflight(); why != "" {
		fmt.Printf("chaos: skipped: %s\n", why)
		return 0
	}
	unlock, err := lockRun()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: error:", err)
		return 2
	}
	defer unlock()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	rec, suiteErr := runSuite(ctx, cfg)
	if rec == nil {
		fmt.Fprintln(os.Stderr, "chaos: error:", suiteErr)
		return 2
	}
	if suiteErr != nil {
		rec.SuiteErrors = append(rec.SuiteErrors, suiteErr.Error())
	}
	n, err := finish(cfg.out, rec)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: error:", err)
		return 2
	}
	for _, e := range rec.SuiteErrors {
		fmt.Fprintln(os.Stderr, "chaos: suite error:", e)
	}
	fmt.Printf("violations: %d\n", n)
	switch {
	case len(rec.SuiteErrors) > 0:
		return 2
	case n > 0:
		return 1
	}
	return 0
}

func boolExit(b bool, code int) int {
	if b {
		return code
	}
	return 0
}

// lockPath serialises runs on one machine: a second run would remove the
// first one's namespaces as leftovers.
const lockPath = "/run/ronin-chaos.lock"

// lockRun takes the machine-wide lock of the suite.
func lockRun() (func(), error) {
	f, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("another chaos run holds %s: %w", lockPath, err)
	}
	return func() { _ = f.Close() }, nil
}

// preflight returns why the suite cannot run here, or "".
func preflight() string {
	if runtime.GOOS != "linux" {
		return "needs Linux (network namespaces), this is " + runtime.GOOS
	}
	if os.Geteuid() != 0 {
		return "needs root (ip netns); run as root or with sudo"
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "needs iproute2's ip command (integration/chaos/setup.sh installs it)"
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "needs the go command to build the node binary"
	}
	probe := nsPrefix + "probe"
	_ = ip("netns", "del", probe)
	if err := ip("netns", "add", probe); err != nil {
		return "cannot create network namespaces here: " + lastLine(err.Error())
	}
	if err := ip("netns", "del", probe); err != nil {
		return "cannot delete network namespaces here: " + lastLine(err.Error())
	}
	return ""
}

// runRecord is everything the report needs besides the events; it is
// saved as run.json so that -recheck can redo the analysis.
type runRecord struct {
	Seed        uint64         `json:"seed"`
	Duration    string         `json:"duration"`
	Nodes       []string       `json:"nodes"`
	TTL         string         `json:"ttl"`
	Shards      int            `json:"shards"`
	Keys        int            `json:"keys"`
	Quiet       string         `json:"quiet"`
	Replay      string         `json:"replay"`
	Unsupported []string       `json:"unsupported"`
	Skipped     []string       `json:"skipped"`
	Spread      []string       `json:"spread"`
	Exits       []nodeExit     `json:"exits"`
	SuiteErrors []string       `json:"suite_errors"`
	Timeline    check.Timeline `json:"timeline"`
	// Origin is CLOCK_MONOTONIC when the suite started (for the picture).
	Origin int64 `json:"origin"`
}

// runSuite sets up, runs the schedule and tears down. It returns nil only
// if nothing ran that could be checked.
func runSuite(ctx context.Context, cfg config) (*runRecord, error) {
	fmt.Printf("chaos: seed %d, %d nodes, TTL %s, %d shards, %d keys, duration %s\n",
		cfg.seed, cfg.nodes, cfg.ttl, cfg.shards, cfg.keys, cfg.duration)
	fmt.Printf("chaos: replay with: %s\n", cfg.replayCommand())
	if err := removeSuiteNamespaces(); err != nil {
		return nil, fmt.Errorf("removing leftovers of an earlier run: %w", err)
	}
	if err := prepareOut(cfg.out); err != nil {
		return nil, err
	}
	bin, err := buildNode(ctx, cfg.out)
	if err != nil {
		return nil, err
	}
	var ids []string
	for i := range cfg.nodes {
		ids = append(ids, fmt.Sprintf("n%d", i+1))
	}
	nw := newNetwork(ids)
	c := &cluster{cfg: cfg, net: nw, origin: event.Mono()}
	defer func() {
		// Every exit path: nodes killed, namespaces (and so links) gone.
		for _, p := range c.procs {
			if _, ok := p.running(); ok {
				_ = p.kill()
			}
		}
		if err := removeSuiteNamespaces(); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: cleanup:", err)
		}
	}()
	if err := nw.setup(); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	rec := &runRecord{
		Seed: cfg.seed, Duration: cfg.duration.String(), Nodes: ids, TTL: cfg.ttl.String(),
		Shards: cfg.shards, Keys: cfg.keys, Quiet: cfg.quiet.String(), Replay: cfg.replayCommand(),
		Origin: c.origin,
	}
	var why string
	if c.netem, why = nw.netemSupported(); !c.netem {
		rec.Unsupported = append(rec.Unsupported, kindNetem+": "+why)
		c.logf("netem unsupported: %s", why)
	}
	var exitsMu sync.Mutex
	onExit := func(e nodeExit) {
		exitsMu.Lock()
		rec.Exits = append(rec.Exits, e)
		exitsMu.Unlock()
		if !e.Expected {
			c.logf("%s exited unexpectedly: %s (see logs/%s.log)", e.Node, e.Status, e.Node)
		}
	}
	if c.procs, err = newProcs(cfg, bin, nw, onExit); err != nil {
		return nil, err
	}
	err = c.run(ctx, rec)
	rec.Skipped, rec.Spread = c.skipped, c.spread
	exitsMu.Lock()
	for _, e := range rec.Exits {
		if !e.Expected {
			rec.SuiteErrors = append(rec.SuiteErrors, fmt.Sprintf("%s exited unexpectedly: %s", e.Node, e.Status))
		}
	}
	exitsMu.Unlock()
	if rec.Timeline.Start == 0 {
		return nil, errors.Join(errors.New("the cluster never became healthy"), err)
	}
	return rec, err
}

// run starts the nodes, injects the schedule and stops the nodes.
func (c *cluster) run(ctx context.Context, rec *runRecord) error {
	tl := &rec.Timeline
	tl.TTL, tl.Allowance, tl.DownGap = c.cfg.ttl, c.cfg.allowance, c.cfg.downGap
	for i := range c.cfg.shards {
		tl.Keys = append(tl.Keys, fmt.Sprintf("shard.%d", i))
	}
	for i := range c.cfg.keys {
		tl.Keys = append(tl.Keys, fmt.Sprintf("key-%d", i))
	}
	c.logf("starting %d nodes", len(c.procs))
	if err := c.startAll(c.procs); err != nil {
		return err
	}
	start, err := c.waitHealthy(ctx, readyTimeout)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	tl.Start = start
	c.logf("every shard and key is held; quiet %s before the first fault", c.cfg.quiet)
	if err := sleep(ctx, c.cfg.quiet); err == nil {
		c.recordSpread("start")
		err = c.schedule(ctx)
	}
	tl.End = event.Mono()
	tl.Faults, tl.Excused = c.faults, c.excused
	c.logf("stopping every node gracefully")
	c.stopAll()
	return err
}

// schedule injects planned faults until the duration is used up.
func (c *cluster) schedule(ctx context.Context) error {
	began := time.Now()
	for i, pf := range plan(c.cfg.seed, c.cfg.nodes, c.cfg.ttl, c.cfg.maxFaults) {
		// A fault needs its hold, a recovery and the quiet period.
		need := pf.Hold + c.cfg.quiet + 5*time.Second
		if time.Since(began)+need > c.cfg.duration {
			c.logf("duration reached after %d faults", i)
			return nil
		}
		if c.anyDown() {
			// A node crashed during the quiet period: bring it back first.
			if _, err := c.waitHealthy(ctx, recoverTimeout); err != nil {
				return err
			}
		}
		if err := c.inject(ctx, i+1, pf); err != nil {
			return err
		}
	}
	return nil
}

// anyDown reports whether some node's process is not running.
func (c *cluster) anyDown() bool {
	for _, p := range c.procs {
		if _, ok := p.running(); !ok {
			return true
		}
	}
	return false
}

// stopAll SIGTERMs every running node at once and waits for them.
func (c *cluster) stopAll() {
	var wg sync.WaitGroup
	for _, p := range c.procs {
		if _, ok := p.running(); ok {
			wg.Go(func() {
				if clean, err := p.term(termTimeout); err != nil || !clean {
					c.logf("%s did not exit gracefully (killed): %v", p.id, err)
				}
			})
		}
	}
	wg.Wait()
}

// prepareOut empties the suite's own subfolders of out (never anything
// else there): a fresh run must not append to an old history or reuse old
// data dirs.
func prepareOut(out string) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"bin", "data", "events", "status", "logs"} {
		if err := os.RemoveAll(filepath.Join(out, d)); err != nil {
			return err
		}
	}
	for _, f := range []string{"report.md", "timeline.svg", "run.json", "violations.json"} {
		_ = os.Remove(filepath.Join(out, f))
	}
	return nil
}
