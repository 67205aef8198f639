package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Timing of Start's readiness checks.
const (
	readyPoll         = 100 * time.Millisecond // ReadyForConnections slice
	jsBackoffMin      = 50 * time.Millisecond  // first JetStream probe retry
	jsBackoffMax      = time.Second            // cap of the doubling backoff
	jsProbeMin        = 250 * time.Millisecond // first AccountInfo probe bound
	jsProbeMax        = time.Second            // cap of the doubling probe bound
	metaPoll          = 25 * time.Millisecond  // embedded meta-group check
	maxDefaultReplica = 3
)

// Manager runs the embedded NATS server (unless [Config.URL] is set) and the
// one shared connection. Create it with [New], then call [Manager.Start]
// once and [Manager.Shutdown] when done. Its methods are safe for concurrent
// use.
type Manager struct {
	cfg         Config // defaults applied
	log         *slog.Logger
	clusterSize int
	done        chan struct{}
	stopOnce    sync.Once

	mu        sync.Mutex
	closed    bool
	startDone chan struct{} // non-nil once Start was called; closed when it returns
	srv       *server.Server
	nc        *nats.Conn
	js        jetstream.JetStream
	clientURL string
	replicas  int  // DefaultReplicas in URL mode, known after Start
	clustered bool // Clustered in URL mode, known after Start
	pingSub   *nats.Subscription
}

// New applies defaults to cfg, validates it (errors wrap [ErrInvalidConfig])
// and, when embedding, checks that ClientPort is free on ClientHost, and
// ClusterPort on Host if Peers is set, by binding and closing them; a port
// that is taken is reported with the field name and port. The check is
// advisory: another process may still take the port before Start. With
// Peers, New also resolves the Peers host names that may name this node
// (bounded by half a second; see [Manager.ClusterSize]). New starts
// nothing.
func New(cfg Config) (*Manager, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	m := &Manager{
		cfg:  cfg,
		log:  cfg.Logger.With("node", cfg.NodeID),
		done: make(chan struct{}),
	}
	if cfg.URL != "" {
		return m, nil
	}
	m.clusterSize = clusterSize(cfg, systemHostEnv())
	if err := checkPortFree(cfg.ClientHost, "ClientPort", cfg.ClientPort); err != nil {
		return nil, err
	}
	if cfg.Peers != "" {
		if err := checkPortFree(cfg.Host, "ClusterPort", cfg.ClusterPort); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func checkPortFree(host, field string, port int) error {
	if port == RandomPort {
		return nil
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return fmt.Errorf("ronin: %s %d on %s is not available: %w", field, port, host, err)
	}
	return l.Close()
}

// Start starts the embedded server and connects the shared connection, or in
// URL mode only connects. It returns once JetStream answers requests: with
// Peers that means a JetStream meta leader exists, which needs a quorum of
// the cluster, so the nodes of a new cluster must be started concurrently.
//
// The embedded server runs with NoSigs, JetStream (StoreDir DataDir,
// SyncAlways unless disabled), ServerName NodeID, and with Peers also a
// cluster listener on Host:ClusterPort and routes to Peers.
//
// Start refuses to run a second live node with the same NodeID: it fails
// with an error wrapping [ErrDuplicateNode] (naming the NodeID) after
// stopping what it started, when
//
//   - embedded with Peers, before its server starts: a Peers entry's route
//     listener reports NodeID as its server name (read from the INFO line
//     the listener sends on accept; unreadable with TLS on routes);
//   - embedded with Peers, while Start runs: the server refuses a route
//     from a server with its own name (nats-server's "duplicate name");
//   - in any mode, once JetStream answers: a request on
//     "_RONIN.node.<NodeID>.ping" is answered within 250 ms. Every started
//     Manager answers that subject on the shared connection until Shutdown;
//     nobody answering is reported by the server at once, so this costs one
//     round trip.
//
// A node restarted after its previous process died passes every check (a
// dead client whose connection the server still holds is waited for up to
// 250 ms and then ignored).
//
// What the checks cannot see or prevent:
//
//   - Two Managers with one NodeID that start at the same moment: in URL
//     mode each may ping before the other subscribes; embedded, each may
//     probe before the other's server listens (their servers then refuse
//     each other's route, which fails whichever Start is still running).
//   - An embedded twin whose route address is not in this node's Peers.
//     The ping cannot reach it: NATS forwards a message over one route hop
//     only, and the route between two servers with one name is refused. It
//     is caught only if its server dials this one (route gossip usually
//     makes it do so within milliseconds) while this Start runs; if not,
//     both run and the servers keep logging the refused route.
//   - Until the second check fires, such a twin's server is a member of the
//     cluster under the NodeID, and JetStream identifies peers by server
//     name: the twin speaks for the real node in Raft for that time (about
//     70 ms measured on loopback), and its shutdown makes the other servers
//     mark the NodeID offline for stream placement until the real node's
//     next stats heartbeat (at most 10 s). List every node in Peers.
//   - Twins in different NATS accounts (they share no buckets either).
//
// In URL mode the user needs permission to publish and subscribe
// "_RONIN.>"; Start fails when either is denied.
//
// At Start the Manager logs, once, a warning when a clustered embedded
// node's DataDir lies under os.TempDir(), and in URL mode a reminder that
// durability is the servers' sync_interval setting.
//
// If ctx ends first, or the server reports a fatal error, Start stops
// whatever it started and returns an error wrapping the cause (for example
// [context.DeadlineExceeded]). A Shutdown during Start interrupts it with
// an error wrapping [ErrClosed]. Start may be called once; later calls
// return an error, which wraps ErrClosed after Shutdown.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	switch {
	case m.closed:
		m.mu.Unlock()
		return fmt.Errorf("%w: Start after Shutdown", ErrClosed)
	case m.startDone != nil:
		m.mu.Unlock()
		return errors.New("ronin: manager: Start called more than once")
	}
	startDone := make(chan struct{})
	m.startDone = startDone
	m.mu.Unlock()
	defer close(startDone)

	// Shutdown interrupts Start through ctx.
	ctx, cancel := context.WithCancelCause(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-m.done:
			cancel(ErrClosed)
		case <-ctx.Done():
		}
	}()
	defer func() { cancel(nil); <-watched }()

	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ronin: manager %s: start: %w", m.cfg.NodeID, context.Cause(ctx))
	}
	began := time.Now()
	var (
		st  startup
		err error
	)
	if m.cfg.URL != "" {
		err = m.startRemote(ctx, &st)
	} else {
		err = m.startEmbedded(ctx, &st)
	}
	if err == nil {
		err = m.claimNodeID(ctx, &st)
	}
	if err == nil {
		err = st.fatal()
	}
	if err != nil {
		st.close()
		return fmt.Errorf("ronin: manager %s: start: %w", m.cfg.NodeID, err)
	}

	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		st.close()
		return fmt.Errorf("ronin: manager %s: start: %w", m.cfg.NodeID, ErrClosed)
	}
	m.srv, m.nc, m.js, m.clientURL, m.replicas = st.srv, st.nc, st.js, st.clientURL, st.replicas
	m.clustered, m.pingSub = st.clustered, st.pingSub
	m.mu.Unlock()

	m.logDurability()

	attrs := []any{
		"client_url", m.ClientURL(),
		"embedded", st.srv != nil,
		"default_replicas", m.DefaultReplicas(),
		"elapsed", time.Since(began).Round(time.Millisecond),
	}
	if st.srv != nil {
		attrs = append(attrs, "cluster_size", m.ClusterSize(), "sync_always", !m.cfg.DisableSyncAlways)
	}
	m.log.Info("manager started", attrs...)
	return nil
}

// startup collects what Start has started so far.
type startup struct {
	srv       *server.Server
	slog      *serverLogger
	nc        *nats.Conn
	js        jetstream.JetStream
	clientURL string
	replicas  int
	clustered bool
	pingSub   *nats.Subscription
}

// close stops what was started, waiting for the server.
func (st *startup) close() {
	if st.pingSub != nil {
		_ = st.pingSub.Unsubscribe()
	}
	if st.nc != nil {
		st.nc.Close()
	}
	if st.srv != nil {
		st.srv.Shutdown()
		st.srv.WaitForShutdown()
	}
}

// fatal returns the server's first fatal error, if any, or an error
// wrapping ErrDuplicateNode once the server has refused a route from a
// server with its own name.
func (st *startup) fatal() error {
	if st.slog == nil {
		return nil
	}
	if msg := st.slog.fatalMessage(); msg != "" {
		return fmt.Errorf("nats-server: %s", msg)
	}
	if msg := st.slog.duplicateMessage(); msg != "" {
		return fmt.Errorf("%w: NodeID %q is the server name of another live server routed to this one (nats-server: %s)",
			ErrDuplicateNode, st.srv.Name(), msg)
	}
	return nil
}

func (m *Manager) serverOptions() *server.Options {
	c := m.cfg
	opts := &server.Options{
		ServerName: c.NodeID,
		Host:       c.ClientHost,
		Port:       c.ClientPort,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   c.DataDir,
		SyncAlways: !c.DisableSyncAlways,
	}
	if c.Peers != "" {
		opts.Cluster.Name = c.ClusterName
		opts.Cluster.Host = c.Host
		opts.Cluster.Port = c.ClusterPort
		opts.Routes = server.RoutesFromStr(c.Peers)
	}
	if c.ServerOptions != nil {
		c.ServerOptions(opts)
	}
	return opts
}

func (m *Manager) startEmbedded(ctx context.Context, st *startup) error {
	if m.cfg.Peers != "" {
		if err := m.probeRoutePeers(ctx); err != nil {
			return err
		}
	}
	srv, err := server.NewServer(m.serverOptions())
	if err != nil {
		return fmt.Errorf("configuring NATS server: %w", err)
	}
	st.srv = srv
	st.slog = newServerLogger(m.log)
	srv.SetLoggerV2(st.slog, false, false, false)
	srv.Start()

	for !srv.ReadyForConnections(readyPoll) {
		if err := st.fatal(); err != nil {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for NATS server to accept connections: %w", context.Cause(ctx))
		}
	}
	if err := st.fatal(); err != nil {
		return err
	}
	st.clientURL = clientURL(srv)

	opts := append([]nats.Option{nats.InProcessServer(srv)}, m.connOptions()...)
	nc, err := nats.Connect(srv.ClientURL(), opts...)
	if err != nil {
		return fmt.Errorf("connecting to embedded NATS server: %w", err)
	}
	st.nc = nc
	return m.waitJetStream(ctx, st)
}

func (m *Manager) startRemote(ctx context.Context, st *startup) error {
	// RetryOnFailedConnect lets the JetStream wait below, bounded by ctx,
	// also cover a NATS deployment that is not reachable yet.
	opts := append([]nats.Option{nats.RetryOnFailedConnect(true)}, m.connOptions()...)
	nc, err := nats.Connect(m.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", redactList(m.cfg.URL), err)
	}
	st.nc = nc
	if err := m.waitJetStream(ctx, st); err != nil {
		return err
	}
	st.clientURL = nc.ConnectedUrlRedacted()
	st.replicas = 1
	if nc.ConnectedClusterName() != "" {
		st.replicas, st.clustered = maxDefaultReplica, true
	}
	return nil
}

// connOptions are the shared connection's options: the Manager's own, then
// Config.NATSOptions.
func (m *Manager) connOptions() []nats.Option {
	opts := []nats.Option{
		nats.Name(m.cfg.NodeID),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() || m.shuttingDown() {
				return // our own Close
			}
			m.log.Warn("NATS connection lost", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			m.log.Info("NATS connection restored", "url", nc.ConnectedUrlRedacted())
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				m.log.Warn("NATS async error", "subject", sub.Subject, "err", err)
				return
			}
			m.log.Warn("NATS async error", "err", err)
		}),
	}
	return append(opts, m.cfg.NATSOptions...)
}

// waitJetStream probes JetStream with AccountInfo until it answers or ctx
// ends. After a probe that got an error reply it backs off from jsBackoffMin
// doubling to jsBackoffMax.
//
// While a new cluster elects its first meta leader (usually under a second,
// but a split vote costs a Raft election timeout of 4-9 s) the servers drop
// the request instead of answering it. So each probe is bounded, from
// jsProbeMin doubling after each timeout to jsProbeMax, and a timed-out probe
// is retried without further backoff. An embedded server also reports
// locally whether its meta group is current: until it is, probes are spaced
// jsProbeMax apart, and once it is the next probe goes out within metaPoll.
func (m *Manager) waitJetStream(ctx context.Context, st *startup) error {
	js, err := jetstream.New(st.nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	var (
		backoff, probe = jsBackoffMin, jsProbeMin
		notBefore      time.Time // earliest next probe
		lastErr        error
	)
	for attempt := 1; ; attempt++ {
		for {
			now := time.Now()
			if !now.Before(notBefore) && (st.srv == nil || st.srv.JetStreamIsCurrent() ||
				!now.Before(notBefore.Add(jsProbeMax))) {
				break
			}
			if err := st.fatal(); err != nil {
				return err
			}
			select {
			case <-ctx.Done():
				return m.jetStreamTimeout(ctx, st, lastErr)
			case <-time.After(metaPoll):
			}
		}

		pctx, cancel := context.WithTimeout(ctx, probe)
		_, err := js.AccountInfo(pctx)
		cancel()
		if err == nil {
			st.js = js
			return nil
		}
		if ferr := st.fatal(); ferr != nil {
			return ferr
		}
		if ctx.Err() != nil {
			return m.jetStreamTimeout(ctx, st, err)
		}
		m.log.Debug("JetStream not ready", "attempt", attempt, "err", err)
		lastErr = err
		if errors.Is(err, context.DeadlineExceeded) {
			probe, notBefore = min(2*probe, jsProbeMax), time.Now()
		} else {
			notBefore = time.Now().Add(backoff)
			backoff = min(2*backoff, jsBackoffMax)
		}
	}
}

func (m *Manager) jetStreamTimeout(ctx context.Context, st *startup, last error) error {
	if last == nil {
		last = errors.New("no JetStream meta leader yet")
	}
	if cerr := st.nc.LastError(); cerr != nil {
		last = fmt.Errorf("%w; connection: %w", last, cerr)
	}
	return fmt.Errorf("waiting for JetStream: %w (last error: %v)", context.Cause(ctx), last)
}

// clientURL returns the URL clients use to reach srv; an unspecified listen
// host (0.0.0.0, ::) is replaced by loopback.
func clientURL(srv *server.Server) string {
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		return srv.ClientURL()
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		lo := "127.0.0.1"
		if ip.To4() == nil {
			lo = "::1"
		}
		u.Host = net.JoinHostPort(lo, u.Port())
	}
	return u.String()
}

func (m *Manager) shuttingDown() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Shutdown closes [Manager.Done], interrupts a Start in progress, closes the
// shared connection, shuts the embedded server down (its Raft leaders step
// down first) and waits until it has stopped. It is idempotent, safe before
// Start and from several goroutines; every call returns after the shutdown
// has completed.
func (m *Manager) Shutdown() {
	m.stopOnce.Do(func() {
		m.mu.Lock()
		m.closed = true
		close(m.done)
		startDone := m.startDone
		m.mu.Unlock()
		if startDone != nil {
			<-startDone
		}

		m.mu.Lock()
		st := startup{srv: m.srv, nc: m.nc, pingSub: m.pingSub}
		m.mu.Unlock()
		if st.srv == nil && st.nc == nil {
			return
		}
		began := time.Now()
		st.close()
		m.log.Info("manager shut down", "elapsed", time.Since(began).Round(time.Millisecond))
	})
}

// Conn returns the shared connection, or nil before a successful Start.
// After Shutdown it is closed. Do not close it yourself.
func (m *Manager) Conn() *nats.Conn {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nc
}

// JetStream returns the JetStream context on the shared connection, or nil
// before a successful Start.
func (m *Manager) JetStream() jetstream.JetStream {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.js
}

// NodeID returns Config.NodeID.
func (m *Manager) NodeID() string { return m.cfg.NodeID }

// Logger returns the configured logger with the attribute node=NodeID.
func (m *Manager) Logger() *slog.Logger { return m.log }

// Server returns the embedded server: nil in URL mode and before a
// successful Start. After Shutdown it is the stopped server. Tests use it to
// stop a node abruptly.
func (m *Manager) Server() *server.Server {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.srv
}

// ClientURL returns where NATS clients can connect: for the embedded server
// its real client URL on ClientHost (after a random port was picked; an
// unspecified ClientHost reads as loopback), in URL mode the server the shared connection is
// connected to, with any password redacted. "" before a successful Start.
func (m *Manager) ClientURL() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv == nil && m.nc != nil {
		return m.nc.ConnectedUrlRedacted()
	}
	return m.clientURL
}

// ClusterSize returns the number of distinct servers named by Peers, counting
// this node once whether it is listed or not; 1 without Peers; 0 in URL
// mode, where it is unknown. It is computed by New. Only an entry on
// ClusterPort can be this node; it is when its host
//
//  1. is Host as written, or the same IP address, or Host is unspecified
//     (0.0.0.0, ::) and it is "localhost" or a loopback or interface
//     address;
//  2. else resolves (IP address, or DNS name looked up within 500 ms) to an
//     address the route listener listens on: Host's addresses, or all
//     loopback and interface addresses for an unspecified Host. A name
//     that resolves to other addresses only is another server;
//  3. else is a name that does not resolve and is the machine's host name,
//     or whose first label is the first label of the machine's host name or
//     is NodeID. So a Kubernetes StatefulSet pod "ronin-0" recognises
//     "nats://ronin-0.ronin:6222" before its DNS record is published.
//
// An entry wrongly taken for this node makes ClusterSize one too small; one
// not recognised makes it one too large.
func (m *Manager) ClusterSize() int { return m.clusterSize }

// Clustered reports whether this node is part of a NATS cluster, where
// buckets should be replicated: embedded, whether Peers is set; in URL
// mode, whether the server the shared connection reached at Start reports
// a cluster name (false before Start).
func (m *Manager) Clustered() bool {
	if m.cfg.URL == "" {
		return m.cfg.Peers != ""
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clustered
}

// AllowSingleReplica returns [Config.AllowSingleReplica]: whether buckets
// with Replicas 1 are accepted knowingly although the node is
// [Manager.Clustered].
func (m *Manager) AllowSingleReplica() bool { return m.cfg.AllowSingleReplica }

// logDurability logs, once per Start, what limits the durability of fencing
// tokens: in URL mode the servers' sync_interval, embedded and clustered a
// DataDir under the temporary directory.
func (m *Manager) logDurability() {
	if m.cfg.URL != "" {
		m.log.Info("URL mode: durability of fencing tokens is the NATS servers' setting; "+
			"set jetstream { sync_interval: always } on every server, since the default (2m) "+
			"can lose acknowledged writes on a correlated power loss and so reissue tokens",
			"url", redactList(m.cfg.URL))
		return
	}
	if !m.Clustered() {
		return
	}
	if tmp, ok := underTempDir(m.cfg.DataDir); ok {
		m.log.Warn("DataDir is under the temporary directory: fencing tokens do not survive the loss of that directory; set a persistent DataDir",
			"data_dir", m.cfg.DataDir, "temp_dir", tmp)
	}
}

// underTempDir reports whether dir is os.TempDir() or lies under it,
// comparing cleaned absolute paths, and returns the temporary directory.
func underTempDir(dir string) (string, bool) {
	tmp, err := filepath.Abs(os.TempDir())
	if err != nil {
		return "", false
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return tmp, false
	}
	rel, err := filepath.Rel(tmp, abs)
	if err != nil {
		return tmp, false
	}
	return tmp, rel == "." || rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

// DefaultReplicas returns the replica count to use for buckets by default:
// 1 without Peers, min(3, ClusterSize) with Peers. In URL mode it is 3 if the
// connected server reports a cluster name and 1 otherwise; before Start it
// is 1 there.
func (m *Manager) DefaultReplicas() int {
	if m.cfg.URL != "" {
		m.mu.Lock()
		defer m.mu.Unlock()
		return max(m.replicas, 1)
	}
	return min(maxDefaultReplica, m.clusterSize)
}

// Done returns a channel that is closed when Shutdown begins.
func (m *Manager) Done() <-chan struct{} { return m.done }
