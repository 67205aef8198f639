package ronintest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/internal/loopback"
	"github.com/nonchan7720/ronin/internal/nodehook"
	"github.com/nonchan7720/ronin/internal/testkit"
)

// Cluster is a set of Ronin nodes on loopback, each a Manager with its own
// embedded server and data dir. Node i keeps its ports and data dir across
// Kill or Stop and Restart, and across StopAll and StartAll. With
// Options.RouteProxies every route goes through a Proxy, so Partition can
// cut a node off from the others.
type Cluster struct {
	mu     sync.Mutex
	nodes  []*Node
	killed []*ronin.Manager // reaped by Shutdown
	// stopping counts Stops in progress, which Shutdown waits for.
	stopping sync.WaitGroup
	routes   map[[2]int]*Proxy
}

// Node is one member of a Cluster.
type Node struct {
	Config ronin.ServerConfig
	mgr    *ronin.Manager
}

// Options configures Start.
type Options struct {
	// Nodes is the number of nodes; 1 runs a single node without Peers.
	Nodes int
	// DataDir is the parent of the nodes' data dirs; required.
	DataDir string
	// Logger for the nodes; nil means Logger().
	Logger *slog.Logger
	// RouteProxies sends every route from node i to node j through its
	// own Proxy, for Partition and Heal.
	RouteProxies bool
	// RouteOnly makes the last RouteOnly nodes route-only servers
	// (ServerConfig.RouteOnly), named r1, r2, ...; the storing ones are
	// then named s1, s2, ..., and every node's Peers names the storing
	// servers only, as RouteOnly's documentation recommends.
	RouteOnly int
}

// Start starts opts.Nodes nodes concurrently (a JetStream cluster needs a
// quorum to come up) and returns once every one has started, or the first
// error; on error the nodes already started are shut down. It is New and
// StartAll.
func Start(ctx context.Context, opts Options) (*Cluster, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.StartAll(ctx, nil); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

// New lays out a cluster per opts (node configs, ports, route proxies)
// with no node running yet; StartAll starts it. Shutdown releases what it
// holds.
func New(opts Options) (*Cluster, error) {
	n := opts.Nodes
	if opts.Logger == nil {
		opts.Logger = Logger()
	}
	ports, err := FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{routes: map[[2]int]*Proxy{}}
	storing := n - opts.RouteOnly
	for i := range n {
		name := fmt.Sprintf("n%d", i+1)
		switch {
		case i >= storing:
			name = fmt.Sprintf("r%d", i-storing+1)
		case opts.RouteOnly > 0:
			name = fmt.Sprintf("s%d", i+1)
		}
		cfg := ronin.ServerConfig{
			NodeID:     name,
			Host:       "127.0.0.1",
			ClientPort: ports[i],
			DataDir:    fmt.Sprintf("%s/%s", opts.DataDir, name),
			Logger:     opts.Logger,
		}
		if i >= storing {
			cfg.RouteOnly, cfg.DataDir = true, ""
		}
		if n > 1 {
			cfg.ClusterPort = ports[n+i]
			var peers []string
			for j := range storing {
				url := fmt.Sprintf("nats://127.0.0.1:%d", ports[n+j])
				if opts.RouteProxies && j != i {
					p, err := StartProxy(fmt.Sprintf("127.0.0.1:%d", ports[n+j]))
					if err != nil {
						c.Shutdown()
						return nil, err
					}
					c.routes[[2]int{i, j}] = p
					url = p.URL()
				}
				peers = append(peers, url)
			}
			cfg.Peers = strings.Join(peers, ",")
			if opts.RouteProxies {
				// Servers gossip each other's route address; a server that
				// learns one before its proxied route is up dials it
				// directly, and that route would survive Partition. An
				// address nobody listens on makes such dials fail.
				cfg.ServerOptions = func(o *server.Options) { o.Cluster.Advertise = "127.0.0.1:1" }
			}
		}
		c.nodes = append(c.nodes, &Node{Config: cfg})
	}
	return c, nil
}

// StartAll starts every node that is down, concurrently, with its ports
// and data dir: a cluster's first start after New, or a whole-cluster
// restart after StopAll. If started is not nil it is called in node i's
// goroutine as soon as node i's Start returned, while other nodes may
// still be starting (to register a shard group on each node at once); its
// error counts as node i's. StartAll returns once every node and callback
// returned; on error it stops every node again (StopAll).
func (c *Cluster) StartAll(ctx context.Context, started func(i int) error) error {
	var down []int
	for i := range c.nodes {
		if c.Manager(i) == nil {
			down = append(down, i)
		}
	}
	errs := make(chan error, len(down))
	for _, i := range down {
		go func() {
			err := c.start(ctx, i)
			if err == nil && started != nil {
				err = started(i)
			}
			errs <- err
		}()
	}
	var all error
	for range down {
		all = errors.Join(all, <-errs)
	}
	if all != nil {
		c.StopAll()
		return fmt.Errorf("start cluster: %w", all)
	}
	return nil
}

// NewCluster starts n nodes for a test (see Start), fails t if they do not
// start within a minute, and shuts them down when t ends.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := Start(ctx, Options{Nodes: n, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

// start makes and starts node i's Manager.
func (c *Cluster) start(ctx context.Context, i int) error {
	n := c.nodes[i]
	m, err := StartManager(ctx, n.Config)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Config.NodeID, err)
	}
	c.mu.Lock()
	n.mgr = m
	c.mu.Unlock()
	return nil
}

// StartManager makes a Manager of cfg and starts it, waiting at most a
// minute or until ctx ends; if Start fails it shuts the Manager down and
// returns the error. For a node outside a Cluster (URL mode, a node that
// joins later).
func StartManager(ctx context.Context, cfg ronin.ServerConfig) (*ronin.Manager, error) {
	m, err := ronin.NewManager(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Shutdown()
		return nil, err
	}
	return m, nil
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.nodes) }

// Node returns node i.
func (c *Cluster) Node(i int) *Node { return c.nodes[i] }

// Manager returns node i's current Manager, nil while it is down.
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
	if m != nil {
		c.killed = append(c.killed, m)
	}
	c.mu.Unlock()
	if m == nil {
		return
	}
	nodehook.Crash(m)
}

// Stop shuts node i down gracefully (resigning first). Shutdown waits
// for a Stop still in progress (one started in a goroutine).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	m := c.nodes[i].mgr
	c.nodes[i].mgr = nil
	if m != nil {
		c.stopping.Add(1)
	}
	c.mu.Unlock()
	if m != nil {
		m.Shutdown()
		c.stopping.Done()
	}
}

// Restart starts node i again with its old ports and data dir.
func (c *Cluster) Restart(ctx context.Context, i int) error { return c.start(ctx, i) }

// Partition cuts node i off from every other node: the routes between them
// stop forwarding (connections stay open, as with a cut link) until Heal.
// It needs Options.RouteProxies.
func (c *Cluster) Partition(i int) error { return c.setRoutes(i, true) }

// Heal forwards every route again.
func (c *Cluster) Heal() error { return c.setRoutes(-1, false) }

func (c *Cluster) setRoutes(i int, paused bool) error {
	if len(c.routes) == 0 && len(c.nodes) > 1 {
		return errors.New("ronintest: the cluster was started without RouteProxies")
	}
	for pair, p := range c.routes {
		if i < 0 || pair[0] == i || pair[1] == i {
			if paused {
				p.Pause()
			} else {
				p.Resume()
			}
		}
	}
	return nil
}

// StopAll shuts every running node down gracefully, concurrently; StartAll
// brings them back with the same identities.
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for i := range c.nodes {
		wg.Go(func() { c.Stop(i) })
	}
	wg.Wait()
}

// Shutdown stops every running node gracefully, reaps killed ones and
// closes the route proxies.
func (c *Cluster) Shutdown() {
	c.StopAll()
	c.stopping.Wait()
	c.mu.Lock()
	killed := c.killed
	c.killed = nil
	c.mu.Unlock()
	for _, m := range killed {
		m.Shutdown()
	}
	for _, p := range c.routes {
		p.Close()
	}
}

// StreamLeader returns the index of the node that leads bucket's stream,
// or -1 if none does (single node: 0).
func (c *Cluster) StreamLeader(bucket string) int {
	for i := range c.nodes {
		info, err := c.streamInfo(context.Background(), i, bucket)
		if err != nil {
			continue
		}
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

// StreamInfo returns bucket's stream info as the first running node that
// answers within 2 s sees it, or the last node's error.
func (c *Cluster) StreamInfo(ctx context.Context, bucket string) (*jetstream.StreamInfo, error) {
	err := errors.New("ronintest: no node runs")
	for i := range c.nodes {
		var info *jetstream.StreamInfo
		if info, err = c.streamInfo(ctx, i, bucket); err == nil {
			return info, nil
		}
	}
	return nil, err
}

// streamInfo asks node i for bucket's stream info, at most 2 s.
func (c *Cluster) streamInfo(ctx context.Context, i int, bucket string) (*jetstream.StreamInfo, error) {
	m := c.Manager(i)
	if m == nil {
		return nil, fmt.Errorf("ronintest: node %s is down", c.nodes[i].Config.NodeID)
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := nodehook.Of(m).JetStream().Stream(ctx, "KV_"+bucket)
	if err != nil {
		return nil, err
	}
	return st.CachedInfo(), nil
}

// MetaLeader returns the index of the node that leads the JetStream meta
// group, or -1 if no running node does.
func (c *Cluster) MetaLeader() int {
	for i := range c.nodes {
		if m := c.Manager(i); m != nil {
			if s := nodehook.Of(m).Server(); s != nil && s.JetStreamIsLeader() {
				return i
			}
		}
	}
	return -1
}

// FreePorts returns n distinct free TCP ports on 127.0.0.1.
func FreePorts(n int) ([]int, error) { return loopback.FreePorts(n) }

// Logger returns a logger for nodes: silent unless RONIN_TEST_LOG is set.
func Logger() *slog.Logger { return testkit.Logger() }

// Eventually polls cond every 10 ms until it holds or timeout passes, and
// fails t then.
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
