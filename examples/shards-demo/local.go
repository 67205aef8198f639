package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/metric"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/internal/loopback"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

var began = time.Now()

// runLocal is the default mode: a local 3-node cluster in this process,
// taken through a crash, a restart and a graceful stop by script. With
// -http or -metrics it keeps serving after the script until Ctrl-C.
func runLocal(ctx context.Context, o options) error {
	c, err := newCluster(3, o)
	if err != nil {
		return err
	}
	w, err := startWeb(o, endpoints{targets: c.targets})
	if err != nil {
		c.shutdown()
		return err
	}
	c.meters = w.meterProvider()
	w.printURLs(c.ids())

	err = c.script(ctx)
	if err == nil && len(w.servers) > 0 {
		say("script done; still serving the URLs above until Ctrl-C")
		<-ctx.Done()
	}
	say("shutting down")
	c.shutdown()
	w.close()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// script is the demo: each step changes the cluster, then watches the
// shard map until the expected state is reached.
func (c *cluster) script(ctx context.Context) error {
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	ttl := c.ttl

	say("starting n1, n2, n3")
	if err := c.startAll(ctx); err != nil {
		return err
	}
	if err := c.watch(ctx, 30*time.Second, c.settled(n1, n2, n3)); err != nil {
		return err
	}
	say("all %d shards running", c.shards)
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
	if err := c.start(ctx, n3); err != nil {
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
	nodes  []*node
	track  *tracker
	shards int
	ttl    time.Duration
	meters metric.MeterProvider // nil: the global one

	last    []string // owner of each shard at the last printed line
	lastRun int
}

// node is one Ronin node: its config (kept for a restart), its Manager and
// its part of the shard group and of the election.
type node struct {
	cfg ronin.ServerConfig

	mu    sync.Mutex // guards mgr, group and down, which the HTTP endpoints read
	mgr   *ronin.Manager
	group *ronin.ShardGroup
	down  string // why mgr is nil

	end  context.CancelFunc // ends Run of the group (which drains) and of the candidate
	done chan struct{}      // closed when both Runs returned
	dead sync.WaitGroup     // the remains of a killed Manager
}

func newCluster(n int, o options) (*cluster, error) {
	ports, err := loopback.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if o.verbose {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	c := &cluster{track: newTracker(), shards: o.shards, ttl: o.ttl}
	for i := range n {
		dir, err := os.MkdirTemp("", "ronin-demo-")
		if err != nil {
			return nil, err
		}
		c.nodes = append(c.nodes, &node{down: "not started yet", cfg: ronin.ServerConfig{
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

func (c *cluster) ids() []string {
	var ids []string
	for _, n := range c.nodes {
		ids = append(ids, n.cfg.NodeID)
	}
	return ids
}

// targets is what the HTTP endpoints show: every node as it is now.
func (c *cluster) targets() []target {
	var ts []target
	for _, n := range c.nodes {
		n.mu.Lock()
		ts = append(ts, target{id: n.cfg.NodeID, mgr: n.mgr, group: n.group, down: n.down})
		n.mu.Unlock()
	}
	return ts
}

// startAll starts every node concurrently, as separate processes would
// start: JetStream needs a quorum of them before any Start can return.
func (c *cluster) startAll(ctx context.Context) error {
	errs := make(chan error, len(c.nodes))
	for _, n := range c.nodes {
		go func() { errs <- c.start(ctx, n) }()
	}
	var first error
	for range c.nodes {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// start starts node n and joins the group and the election.
func (c *cluster) start(ctx context.Context, n *node) error {
	if err := n.startManager(ctx); err != nil {
		return err
	}
	return n.join(c)
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
	n.set(m, nil, "")
	return nil
}

// set records the node's state for the HTTP endpoints.
func (n *node) set(m *ronin.Manager, g *ronin.ShardGroup, down string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.mgr, n.group, n.down = m, g, down
}

// join registers the shard group and a candidate for the demo's election
// key on the node and runs both in the background until n.end is called.
func (n *node) join(c *cluster) error {
	id := n.cfg.NodeID
	g, err := n.mgr.RegisterShards(ronin.ShardConfig{
		BucketName:    bucket,
		Shards:        c.shards,
		TTL:           c.ttl,
		Handler:       c.track.handler(id),
		MeterProvider: c.meters,
	})
	if err != nil {
		return err
	}
	cand, err := n.mgr.NewCandidate(ronin.CandidateConfig{
		CandidateID:   id,
		BucketName:    leaderBucket,
		KeyName:       leaderKey,
		TTL:           c.ttl,
		MeterProvider: c.meters,
	})
	if err != nil {
		return err
	}
	ctx, end := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runs sync.WaitGroup
	for what, run := range map[string]func(context.Context) error{"group": g.Run, "candidate": cand.Run} {
		runs.Go(func() {
			if err := run(ctx); err != nil && !errors.Is(err, ronin.ErrClosed) {
				log.Printf("%s: %s run: %v", id, what, err)
			}
		})
	}
	go func() { runs.Wait(); close(done) }()
	n.set(n.mgr, g, "")
	n.end, n.done = end, done
	return nil
}

// kill stops the node as if its process died: connection closed, server
// shut down, nothing resigned. Then it cancels the Runs so that the dead
// node's goroutines end, and releases what is left of the Manager. It
// returns at once; the server takes a moment to stop.
func (n *node) kill() {
	if n.group == nil {
		return
	}
	m, end, done := n.mgr, n.end, n.done
	n.set(nil, nil, "killed (no resign)")
	n.dead.Go(func() {
		nodehook.Crash(m)
		end()
		<-done
		m.Shutdown()
	})
}

// drain ends the Runs; the group's returns once the node has handed all
// its shards over.
func (n *node) drain() {
	if n.group != nil {
		n.end()
		<-n.done
		n.set(n.mgr, nil, "")
	}
}

// stop drains the group, then shuts the Manager down.
func (n *node) stop() {
	n.drain()
	if m := n.mgr; m != nil {
		n.set(nil, nil, "stopped (drained)")
		m.Shutdown()
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

// owners returns each shard's owner ("" if none): the first live node's
// view of the cluster, with every node's own shards laid over it, which
// that node runs already while its write is on its way to the others'
// views. So the map never shows a shard free while its handler runs.
func (c *cluster) owners() []string {
	var out []string
	for _, n := range c.nodes {
		if n.group == nil {
			continue
		}
		if out == nil {
			for _, a := range n.group.Assignment() {
				out = append(out, a.Node)
			}
		}
		for id := range n.group.Owned() {
			out[id] = n.cfg.NodeID
		}
	}
	return out
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
			if k < c.shards/len(live) || k > (c.shards+len(live)-1)/len(live) {
				return false
			}
		}
		return c.track.running() == c.shards
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
