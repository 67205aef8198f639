package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// startTimeout bounds one Manager.Start.
const startTimeout = 2 * time.Minute

// routeURL is the route URL of an embedded node.
func routeURL(cfg ronin.ServerConfig) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", cfg.ClusterPort)
}

// clusterConfigs returns n node configs named prefix1..prefixN, each with
// its own free ports and a data dir under root, all routed to each other.
func clusterConfigs(root, prefix string, n int, log *slog.Logger) ([]ronin.ServerConfig, error) {
	ports, err := ronintest.FreePorts(2 * n)
	if err != nil {
		return nil, err
	}
	cfgs := make([]ronin.ServerConfig, n)
	var peers []string
	for i := range n {
		id := fmt.Sprintf("%s%d", prefix, i+1)
		dir, err := os.MkdirTemp(root, id+"-")
		if err != nil {
			return nil, err
		}
		cfgs[i] = ronin.ServerConfig{
			NodeID: id, Host: "127.0.0.1", ClientPort: ports[i], ClusterPort: ports[n+i],
			DataDir: dir, Logger: log,
		}
		peers = append(peers, routeURL(cfgs[i]))
	}
	for i := range cfgs {
		cfgs[i].Peers = strings.Join(peers, ",")
	}
	return cfgs, nil
}

// singleConfig is a node config without peers on a free port.
func singleConfig(root, id string, log *slog.Logger) (ronin.ServerConfig, error) {
	ports, err := ronintest.FreePorts(1)
	if err != nil {
		return ronin.ServerConfig{}, err
	}
	dir, err := os.MkdirTemp(root, id+"-")
	if err != nil {
		return ronin.ServerConfig{}, err
	}
	return ronin.ServerConfig{NodeID: id, Host: "127.0.0.1", ClientPort: ports[0], DataDir: dir, Logger: log}, nil
}

// startManager makes and starts a Manager, bounded by startTimeout.
func startManager(ctx context.Context, cfg ronin.ServerConfig) (*ronin.Manager, error) {
	m, err := ronin.NewManager(cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		m.Shutdown()
		return nil, fmt.Errorf("start %s: %w", cfg.NodeID, err)
	}
	return m, nil
}

// cluster is a set of embedded nodes; node i keeps its config (ports, data
// dir) across crash and restart.
type cluster struct {
	mu   sync.Mutex
	cfgs []ronin.ServerConfig
	mgrs []*ronin.Manager
}

// newCluster is a cluster of cfgs with no node running yet.
func newCluster(cfgs []ronin.ServerConfig) *cluster {
	return &cluster{cfgs: cfgs, mgrs: make([]*ronin.Manager, len(cfgs))}
}

// startCluster starts every node concurrently (JetStream needs a quorum).
func startCluster(ctx context.Context, cfgs []ronin.ServerConfig) (*cluster, error) {
	c := newCluster(cfgs)
	if err := c.startAll(ctx, nil); err != nil {
		return nil, err
	}
	return c, nil
}

// startAll starts every node concurrently and, if then is not nil, calls
// then(i) in node i's goroutine as soon as node i's Start returned. On
// error every node that started is shut down.
func (c *cluster) startAll(ctx context.Context, then func(i int) error) error {
	errs := make(chan error, len(c.cfgs))
	for i := range c.cfgs {
		go func() {
			err := c.restart(ctx, i)
			if err == nil && then != nil {
				err = then(i)
			}
			errs <- err
		}()
	}
	var all []error
	for range c.cfgs {
		all = append(all, <-errs)
	}
	if err := errors.Join(all...); err != nil {
		c.shutdown()
		return err
	}
	return nil
}

// restart starts node i with its config.
func (c *cluster) restart(ctx context.Context, i int) error {
	m, err := startManager(ctx, c.cfgs[i])
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.mgrs[i] = m
	c.mu.Unlock()
	return nil
}

// mgr is node i's Manager (nil while crashed).
func (c *cluster) mgr(i int) *ronin.Manager {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mgrs[i]
}

func (c *cluster) js(i int) jetstream.JetStream { return nodehook.Of(c.mgr(i)).JetStream() }

// crash stops node i without resigning anything: its connection closes
// and its server shuts down. It returns the dead Manager for reaping.
func (c *cluster) crash(i int) *ronin.Manager {
	c.mu.Lock()
	m := c.mgrs[i]
	c.mgrs[i] = nil
	c.mu.Unlock()
	nodehook.Crash(m)
	return m
}

// shutdown stops every running node gracefully, concurrently.
func (c *cluster) shutdown() {
	var wg sync.WaitGroup
	for i := range c.cfgs {
		if m := c.mgr(i); m != nil {
			wg.Go(m.Shutdown)
		}
	}
	wg.Wait()
}

// peers is the route URL list of the cluster.
func (c *cluster) peers() []string {
	var out []string
	for _, cfg := range c.cfgs {
		out = append(out, routeURL(cfg))
	}
	return out
}

// streamInfo fetches a bucket's stream info from the first live node.
func (c *cluster) streamInfo(ctx context.Context, bucket string) (*jetstream.StreamInfo, error) {
	var last error = errors.New("no live node")
	for i := range c.cfgs {
		if c.mgr(i) == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := c.js(i).Stream(rctx, "KV_"+bucket)
		if err == nil {
			var info *jetstream.StreamInfo
			info, err = st.Info(rctx)
			if err == nil {
				cancel()
				return info, nil
			}
		}
		cancel()
		last = err
	}
	return nil, last
}

// leaders returns the nodes that lead bucket's stream and the JetStream
// meta group ("" when unknown).
func (c *cluster) leaders(ctx context.Context, bucket string) (stream, meta string) {
	if info, err := c.streamInfo(ctx, bucket); err == nil && info.Cluster != nil {
		stream = info.Cluster.Leader
	}
	for i := range c.cfgs {
		if m := c.mgr(i); m != nil && nodehook.Of(m).Server().JetStreamIsLeader() {
			meta = m.NodeID()
		}
	}
	return stream, meta
}

// bystander returns a live node that leads neither bucket's stream nor the
// meta group, preferring the highest index; -1 if none.
func (c *cluster) bystander(ctx context.Context, bucket string) int {
	stream, meta := c.leaders(ctx, bucket)
	for i := len(c.cfgs) - 1; i >= 0; i-- {
		if m := c.mgr(i); m != nil && !slices.Contains([]string{stream, meta}, m.NodeID()) {
			return i
		}
	}
	return -1
}

// dropBucket deletes a bucket the bench no longer needs, so idle streams
// do not add to later CPU readings.
func dropBucket(ctx context.Context, js jetstream.JetStream, bucket string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := js.DeleteKeyValue(ctx, bucket); err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		progress("warning: delete bucket %s: %v", bucket, err)
	}
}

// afterRenew returns right after a watcher on js sees node's session in
// bucket renewed. A crash then has the worst-case phase: observers count a
// full TTL from that renew, so crash → takeover − TTL is the pure slack.
func afterRenew(ctx context.Context, js jetstream.JetStream, bucket, node string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return err
	}
	w, err := kv.Watch(ctx, engine.SessionPrefix+node+".*", jetstream.UpdatesOnly())
	if err != nil {
		return err
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("session watcher closed")
			}
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("no renew of %s's session: %w", node, ctx.Err())
		}
	}
}
