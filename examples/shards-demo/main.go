// Command shards-demo starts a local 3-node Ronin cluster in one process,
// runs a 16-shard group on it and prints the shard map whenever it changes,
// while it kills a node, restarts it, and stops another one gracefully.
//
//	go run ./examples/shards-demo      # add -v for the nodes' warnings
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin"
)

const (
	bucket = "demo"
	shards = 16
	ttl    = 2 * time.Second
)

var (
	verbose = flag.Bool("v", false, "log the nodes' warnings to stderr")
	began   = time.Now()
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	// Ctrl-C ends the script; the nodes are then shut down cleanly.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	c, err := newCluster(3)
	if err != nil {
		log.Fatal(err)
	}
	err = c.script(ctx)
	say("shutting down")
	c.shutdown()
	if err != nil && ctx.Err() == nil {
		log.Fatal(err)
	}
}

// script is the demo: each step changes the cluster, then watches the
// shard map until the expected state is reached.
func (c *cluster) script(ctx context.Context) error {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]

	say("starting n1, n2, n3")
	if err := c.startAll(ctx); err != nil {
		return err
	}
	if err := c.watch(ctx, 30*time.Second, c.settled(n1, n2, n3)); err != nil {
		return err
	}
	say("all %d shards running", shards)
	if err := pause(ctx, 3*time.Second); err != nil {
		return err
	}

	// A crash: the node's connection and server go away without resigning
	// anything, so its leases stay in the store until its session expires.
	say("killing n3 (no resign)...")
	c.track.resetGaps()
	n3.kill()
	if err := c.watch(ctx, 5*ttl, c.settled(n1, n2)); err != nil {
		return err
	}
	say("n3's shards moved; gaps without a handler: %s", c.track.gaps())
	if err := pause(ctx, 3*time.Second); err != nil {
		return err
	}

	say("restarting n3 (same ports and data dir)...")
	c.track.resetGaps()
	n3.dead.Wait() // the old server has let go of the ports and data dir
	if err := n3.start(ctx, c.track); err != nil {
		return err
	}
	say("n3 back")
	if err := c.watch(ctx, 5*ttl, c.settled(n1, n2, n3)); err != nil {
		return err
	}
	say("shards came back; handoff gaps: %s", c.track.gaps())
	if err := pause(ctx, 3*time.Second); err != nil {
		return err
	}

	// A graceful stop: cancelling Run's ctx drains the node, which leaves
	// the membership and hands its shards over one by one.
	say("stopping n2 gracefully (drain)...")
	c.track.resetGaps()
	t0 := time.Now()
	n2.drain()
	say("n2 drained in %v", time.Since(t0).Round(time.Millisecond))
	n2.stop()
	if err := c.watch(ctx, 5*ttl, c.settled(n1, n3)); err != nil {
		return err
	}
	say("handoff gaps: %s", c.track.gaps())
	return nil
}

// cluster is three nodes on 127.0.0.1 and what the demo observed.
type cluster struct {
	nodes []*node
	track *tracker

	last    []string // owner of each shard at the last printed line
	lastRun int
}

// node is one Ronin node: its config (kept for a restart), its Manager and
// its part of the shard group.
type node struct {
	cfg   ronin.ServerConfig
	mgr   *ronin.Manager
	group *ronin.ShardGroup
	end   context.CancelFunc // ends Run: the group drains
	done  chan struct{}      // closed when Run returned
	dead  sync.WaitGroup     // the remains of a killed Manager
}

func newCluster(n int) (*cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if *verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c := &cluster{track: newTracker()}
	for i := range n {
		dir, err := os.MkdirTemp("", "ronin-demo-")
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{cfg: ronin.ServerConfig{
			NodeID:      fmt.Sprintf("n%d", i+1),
			Host:        "127.0.0.1",
			ClientPort:  ports[i],
			ClusterPort: ports[n+i],
			Peers:       strings.Join(peers, ","),
			DataDir:     dir,
			Logger:      logger,
		}})
	}
	return c, nil
}

// startAll starts every node concurrently, as separate processes would
// start: JetStream needs a quorum of them before any Start can return.
func (c *cluster) startAll(ctx context.Context) error {
	errs := make(chan error, len(c.nodes))
	for _, n := range c.nodes {
		go func() { errs <- n.start(ctx, c.track) }()
	}
	var first error
	for range c.nodes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// start starts the node and joins the group.
func (n *node) start(ctx context.Context, t *tracker) error {
	if err := n.startManager(ctx); err != nil {
		return err
	}
	return n.join(t)
}

// startManager makes and starts the node's Manager.
func (n *node) startManager(ctx context.Context) error {
	m, err := ronin.NewManager(n.cfg)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := m.Start(sctx); err != nil {
		m.Shutdown()
		return err
	}
	n.mgr = m
	return nil
}

// join registers the shard group on the node and runs it in the
// background until n.end is called.
func (n *node) join(t *tracker) error {
	g, err := n.mgr.RegisterShards(ronin.ShardConfig{
		BucketName: bucket,
		Shards:     shards,
		TTL:        ttl,
		Handler:    t.handler(n.cfg.NodeID),
	})
	if err != nil {
		return err
	}
	ctx, end := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := g.Run(ctx); err != nil {
			log.Printf("%s: run: %v", n.cfg.NodeID, err)
		}
	}()
	n.group, n.end, n.done = g, end, done
	return nil
}

// kill stops the node as if its process died: connection closed, server
// shut down, nothing resigned. Then it cancels the group's Run so that the
// dead node's goroutines end, and releases what is left of the Manager.
// It returns at once; the server takes a moment to stop.
func (n *node) kill() {
	if n.group == nil {
		return
	}
	m, end, done := n.mgr, n.end, n.done
	n.mgr, n.group = nil, nil
	n.dead.Go(func() {
		m.Node().Conn().Close()
		m.Server().Shutdown()
		m.Server().WaitForShutdown()
		end()
		<-done
		m.Shutdown()
	})
}

// drain ends the group's Run, which returns once the node has handed all
// its shards over.
func (n *node) drain() {
	if n.group != nil {
		n.end()
		<-n.done
		n.group = nil
	}
}

// stop drains the group, then shuts the Manager down.
func (n *node) stop() {
	n.drain()
	if n.mgr != nil {
		n.mgr.Shutdown()
		n.mgr = nil
	}
}

// shutdown stops every running node: first all groups (drain), then the
// Managers, each concurrently.
func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		wg.Go(n.drain)
	}
	wg.Wait()
	for _, n := range c.nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
	for _, n := range c.nodes {
		n.dead.Wait()
		os.RemoveAll(n.cfg.DataDir)
	}
}

// watch prints the shard map whenever it changes, until done reports true
// or timeout passes.
func (c *cluster) watch(ctx context.Context, timeout time.Duration, done func(owners []string) bool) error {
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		owners := c.owners()
		c.print(owners)
		if owners != nil && done(owners) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("shard map did not settle within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// owners returns each shard's owner ("" if none) as a live node sees it.
func (c *cluster) owners() []string {
	for _, n := range c.nodes {
		if n.group == nil {
			continue
		}
		var out []string
		for _, a := range n.group.Assignment() {
			out = append(out, a.Node)
		}
		return out
	}
	return nil
}

// settled returns a condition: every shard runs on one of live, spread
// evenly (floor or ceil of shards/len(live) each).
func (c *cluster) settled(live ...*node) func([]string) bool {
	return func(owners []string) bool {
		count := map[string]int{}
		for _, o := range owners {
			count[o]++
		}
		for _, n := range live {
			k := count[n.cfg.NodeID]
			if k < shards/len(live) || k > (shards+len(live)-1)/len(live) {
				return false
			}
		}
		return c.track.running() == shards
	}
}

// print writes one line for the map if it or the number of running
// handlers changed since the last line:
//
//	t=3.2s  n1:[0 3 7 9 12] n2:[1 4 5 10 14 15] n3:[2 6 8 11 13]  moves=+5  running=16
func (c *cluster) print(owners []string) {
	running := c.track.running()
	if owners == nil || slices.Equal(owners, c.last) && running == c.lastRun {
		return
	}
	moves := 0
	for id, o := range owners {
		if o != "" && (c.last == nil || c.last[id] != o) {
			moves++
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "t=%.1fs ", time.Since(began).Seconds())
	for _, n := range append(c.nodes, &node{}) { // the last one: no owner
		var ids []int
		for id, o := range owners {
			if o == n.cfg.NodeID {
				ids = append(ids, id)
			}
		}
		switch {
		case n.cfg.NodeID != "":
			fmt.Fprintf(&b, " %s:%v", n.cfg.NodeID, ids)
		case len(ids) > 0:
			fmt.Fprintf(&b, " free:%v", ids)
		}
	}
	fmt.Fprintf(&b, "  moves=+%d  running=%d", moves, running)
	fmt.Println(b.String())
	c.last, c.lastRun = owners, running
}

// tracker counts the running handlers and measures, per shard, the gap
// between one handler returning and the next one starting.
type tracker struct {
	mu      sync.Mutex
	live    int
	stopped map[int]time.Time // shard -> when its last handler returned
	gapList []time.Duration
}

func newTracker() *tracker { return &tracker{stopped: map[int]time.Time{}} }

// handler is the shard handler of node: it just runs until its ctx ends,
// which is when the shard moves away or the node loses it.
func (t *tracker) handler(node string) ronin.ShardHandler {
	return func(ctx context.Context, shard int, rev uint64) error {
		t.mu.Lock()
		t.live++
		if at, ok := t.stopped[shard]; ok {
			t.gapList = append(t.gapList, time.Since(at))
			delete(t.stopped, shard)
		}
		t.mu.Unlock()

		<-ctx.Done() // real work goes here, writing with rev as the token

		t.mu.Lock()
		t.live--
		t.stopped[shard] = time.Now()
		t.mu.Unlock()
		return nil
	}
}

func (t *tracker) running() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.live
}

func (t *tracker) resetGaps() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.gapList = nil
	clear(t.stopped)
}

// gaps summarizes the gaps measured since resetGaps.
func (t *tracker) gaps() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.gapList) == 0 {
		return "none"
	}
	g := slices.Sorted(slices.Values(t.gapList))
	ms := func(d time.Duration) string { return d.Round(100 * time.Microsecond).String() }
	return fmt.Sprintf("%d shards, min %s, median %s, max %s", len(g), ms(g[0]), ms(g[len(g)/2]), ms(g[len(g)-1]))
}

// freePorts returns n distinct free TCP ports on 127.0.0.1.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func say(format string, args ...any) {
	fmt.Printf("t=%.1fs  -- %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
}

func pause(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
