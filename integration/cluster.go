package integration

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nonchan7720/ronin"
)

// Cluster is a set of Ronin nodes on loopback, each a Manager with its own
// embedded server and data dir. Node i keeps its ports and data dir across
// Kill and Restart.
type Cluster struct {
	t     testing.TB
	mu    sync.Mutex
	nodes []*Node
}

// Node is one member of a Cluster.
type Node struct {
	Config ronin.ServerConfig
	mgr    *ronin.Manager
}

// Manager is the node's current Manager (nil while killed).
func (n *Node) Manager() *ronin.Manager { return n.mgr }

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return ports
}

// TestLogger returns a logger for nodes: silent unless RONIN_TEST_LOG is set.
func TestLogger() *slog.Logger {
	if os.Getenv("RONIN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// NewCluster starts n nodes concurrently (a JetStream cluster needs a
// quorum to come up) and registers their shutdown with t.Cleanup. One node
// runs without Peers (single-node mode).
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ports := FreePorts(t, 2*n)
	var peers []string
	for i := range n {
		peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", ports[n+i]))
	}
	c := &Cluster{t: t}
	for i := range n {
		cfg := ronin.ServerConfig{
			NodeID:     fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			ClientPort: ports[i],
			DataDir:    t.TempDir(),
			Logger:     TestLogger(),
		}
		if n > 1 {
			cfg.ClusterPort = ports[n+i]
			cfg.Peers = strings.Join(peers, ",")
		}
		c.nodes = append(c.nodes, &Node{Config: cfg})
	}
	t.Cleanup(c.Shutdown)
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- c.start(i) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("start cluster: %v", err)
		}
	}
	return c
}

// start makes and starts node i's Manager.
func (c *Cluster) start(i int) error {
	n := c.nodes[i]
	m, err := ronin.NewManager(n.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		return fmt.Errorf("node %s: %w", n.Config.NodeID, err)
	}
	c.mu.Lock()
	n.mgr = m
	c.mu.Unlock()
	return nil
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// Node returns node i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Manager returns node i's current Manager.
func (c *Cluster) Manager(i int) *ronin.Manager {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].mgr
}

// Kill stops node i without resigning anything: its connection closes and
// its server shuts down, as if the process died. Its candidates' Run keep
// going until their ctx ends, unable to reach the store.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	m := c.nodes[i].mgr
	c.nodes[i].mgr = nil
	c.mu.Unlock()
	if m == nil {
		return
	}
	m.Node().Conn().Close()
	if s := m.Server(); s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
	c.t.Cleanup(m.Shutdown) // reap the rest (registry) at the end
}

// Stop shuts node i down gracefully (resigning first).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	m := c.nodes[i].mgr
	c.nodes[i].mgr = nil
	c.mu.Unlock()
	if m != nil {
		m.Shutdown()
	}
}

// Restart starts node i again with its old ports and data dir.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	if err := c.start(i); err != nil {
		c.t.Fatalf("restart: %v", err)
	}
}

// Shutdown stops every running node gracefully.
func (c *Cluster) Shutdown() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Add(1)
		go func() { defer wg.Done(); c.Stop(i) }()
	}
	wg.Wait()
}

// StreamLeader returns the index of the node that leads bucket's stream,
// or -1 if none does (single node: 0).
func (c *Cluster) StreamLeader(bucket string) int {
	for i := range c.nodes {
		m := c.Manager(i)
		if m == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := m.Node().JetStream().Stream(ctx, "KV_"+bucket)
		cancel()
		if err != nil {
			continue
		}
		info := st.CachedInfo()
		if info.Cluster == nil || info.Cluster.Leader == "" {
			if len(c.nodes) == 1 {
				return 0
			}
			continue
		}
		for j, n := range c.nodes {
			if n.Config.NodeID == info.Cluster.Leader {
				return j
			}
		}
	}
	return -1
}

// Eventually polls cond every 10 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: "+format, append([]any{timeout}, args...)...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
