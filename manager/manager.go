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

	"github.com/nonchan7720/ronin/internal/backoff"
)

// Timing of Start's readiness checks.
const (
	readyPoll         = 100 * time.Millisecond // ReadyForConnections slice
	jsBackoffMin      = 50 * time.Millisecond  // first JetStream probe retry
	jsBackoffMax      = time.Second            // cap of the doubling backoff
	jsRouteBackoffMax = 250 * time.Millisecond // its cap on a route-only server
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
	cfg      Config // defaults applied
	log      *slog.Logger
	done     chan struct{}
	stopOnce sync.Once
	peers    map[string]struct{} // distinct Peers entries (host:port)
	selfPeer map[string]bool     // the entries New took for this node

	mu          sync.Mutex
	clusterSize int // estimate by New, count of storing servers after Start
	closed      bool
	startDone   chan struct{} // non-nil once Start was called; closed when it returns
	srv         *server.Server
	nc          *nats.Conn
	js          jetstream.JetStream
	clientURL   string
	replicas    int  // DefaultReplicas in URL mode, known after Start
	clustered   bool // Clustered in URL mode, known after Start
	pingSub     *nats.Subscription
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
	m.clusterSize = 1 // with Peers an estimate, which Start refines
	if cfg.Peers != "" {
		m.peers, m.selfPeer = selfPeers(cfg, systemHostEnv())
		m.clusterSize = estimate(cfg, m.peers, m.selfPeer)
	}
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
// cluster listener on Host:ClusterPort and routes to Peers. With RouteOnly
// it runs without JetStream, and Start returns once the storing servers'
// JetStream answers through its routes.
//
// In URL mode Start fails at once, without waiting for ctx, when retrying
// cannot help; the error wraps the cause, so errors.Is and errors.As see
// it:
//
//   - the server refused the credentials: wraps nats.ErrAuthorization (or
//     nats.ErrAuthExpired, ErrAuthRevoked, ErrAccountAuthExpired);
//   - TLS failed: wraps nats.ErrTLS and the crypto/tls error, which wraps
//     the crypto/x509 one (x509.UnknownAuthorityError for an unknown CA,
//     x509.HostnameError, ...); or nats.ErrSecureConnWanted when the
//     client wants TLS and the server offers none;
//   - the connected server is standalone (no cluster name) and has
//     JetStream disabled: wraps jetstream.ErrJetStreamNotEnabled (the
//     nats.go/jetstream value, not the legacy nats.ErrJetStreamNotEnabled);
//     or JetStream is disabled for the connection's account: wraps
//     jetstream.ErrJetStreamNotEnabledForAccount.
//
// A server that cannot be reached yet, or a clustered server without
// JetStream (whose routes may yet reach servers with it), is retried until
// ctx ends; the error then wraps both ctx's cause and the last error.
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
//     "_RONIN.node.<NodeID>.ping" is answered within 250 ms, or, if a
//     subscriber exists but did not answer in that time (a busy or paused
//     process), to a second request within 1 s. Every started Manager
//     answers that subject on the shared connection until Shutdown; nobody
//     answering is reported by the server at once, so this costs one round
//     trip.
//
// A node restarted after its previous process died passes every check (a
// dead client whose connection the server still holds is waited for up to
// 1.25 s and then ignored).
//
// What the checks cannot see or prevent:
//
//   - Two Managers with one NodeID that start at the same moment: in URL
//     mode each may ping before the other subscribes, or before the other's
//     subscription has reached, through a route, the server this one is
//     connected to (milliseconds after the other's Start returned, more in
//     a cluster that is just forming); embedded, each may
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
		st  = startup{interrupt: cancel}
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
	if err == nil && st.srv != nil && m.cfg.Peers != "" {
		st.clusterSize = m.countStoring(ctx)
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
	if st.clusterSize > 0 {
		m.clusterSize = st.clusterSize
	}
	m.mu.Unlock()

	m.logDurability()

	attrs := []any{
		"client_url", m.ClientURL(),
		"embedded", st.srv != nil,
		"default_replicas", m.DefaultReplicas(),
		"elapsed", time.Since(began).Round(time.Millisecond),
	}
	if st.srv != nil {
		attrs = append(attrs, "cluster_size", m.ClusterSize(), "route_only", m.cfg.RouteOnly)
		if !m.cfg.RouteOnly {
			attrs = append(attrs, "sync_always", !m.cfg.DisableSyncAlways)
		}
	}
	m.log.Info("manager started", attrs...)
	return nil
}

// startup collects what Start has started so far.
type startup struct {
	srv         *server.Server
	slog        *serverLogger
	nc          *nats.Conn
	js          jetstream.JetStream
	clientURL   string
	replicas    int
	clustered   bool
	pingSub     *nats.Subscription
	clusterSize int // storing servers counted at Start; 0 if not counted

	// URL mode: interrupt ends Start's ctx, with the first connection
	// error that retrying cannot cure (connErr) as its cause.
	interrupt context.CancelCauseFunc
	url       string // Config.URL, passwords redacted
	connMu    sync.Mutex
	connErr   error
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
// server with its own name; in URL mode, the connection's first error that
// retrying cannot cure (see connFatal).
func (st *startup) fatal() error {
	if st.slog == nil {
		return st.connFatal()
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
	}
	if !c.RouteOnly {
		opts.JetStream = true
		opts.StoreDir = c.DataDir
		opts.SyncAlways = !c.DisableSyncAlways
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
	st.url = redactList(m.cfg.URL)
	// RetryOnFailedConnect lets the JetStream wait below, bounded by ctx,
	// also cover a NATS deployment that is not reachable yet. Errors that
	// retrying cannot cure end the wait at once (watchConn).
	opts := append([]nats.Option{nats.RetryOnFailedConnect(true)}, m.connOptions()...)
	opts = append(opts, st.watchConn)
	nc, err := nats.Connect(m.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", st.url, err)
	}
	st.nc = nc
	if err := st.connFatal(); err != nil {
		return err
	}
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
// is retried without further backoff. An embedded storing server also
// reports locally whether its meta group is current: until it is, probes
// are spaced jsProbeMax apart, and once it is the next probe goes out within
// metaPoll. A route-only server has no meta group (JetStreamIsCurrent stays
// false), so it is probed like a remote deployment: only the API round trip
// tells, and until its routes carry the storing servers' interest the
// probe's "no responders" (ErrJetStreamNotEnabled) is retried like any
// error reply.
//
// In URL mode a standalone server (no cluster name) that has JetStream
// disabled cannot come to answer, so that fails at once (see notEnabled).
func (m *Manager) waitJetStream(ctx context.Context, st *startup) error {
	js, err := jetstream.New(st.nc)
	if err != nil {
		return fmt.Errorf("creating JetStream context: %w", err)
	}
	var (
		probe     = jsProbeMin
		notBefore time.Time // earliest next probe
		lastErr   error
		localMeta = st.srv != nil && st.srv.JetStreamEnabled() // a meta group to watch
		wait      = backoff.New(jsBackoffMin, jsBackoffMax)
	)
	if st.srv != nil && !localMeta {
		// Its routes carry the storing servers' interest within moments
		// of their connection: ask again soon after "no responders".
		wait = backoff.New(jsBackoffMin, jsRouteBackoffMax)
	}
	for attempt := 1; ; attempt++ {
		for {
			now := time.Now()
			if !now.Before(notBefore) && (!localMeta || st.srv.JetStreamIsCurrent() ||
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
		if ferr := st.notEnabled(err); ferr != nil {
			return ferr
		}
		m.log.Debug("JetStream not ready", "attempt", attempt, "err", err)
		lastErr = err
		if errors.Is(err, context.DeadlineExceeded) {
			probe, notBefore = min(2*probe, jsProbeMax), time.Now()
		} else {
			notBefore = time.Now().Add(wait.Next())
		}
	}
}

func (m *Manager) jetStreamTimeout(ctx context.Context, st *startup, last error) error {
	if err := st.fatal(); err != nil {
		return err // what ended ctx (URL mode: an incurable connection error)
	}
	if last == nil {
		last = errors.New("no JetStream meta leader yet")
	}
	if cerr := st.nc.LastError(); cerr != nil {
		last = fmt.Errorf("%w; connection: %w", last, cerr)
	}
	return fmt.Errorf("waiting for JetStream: %w (last error: %w)", context.Cause(ctx), last)
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

// ClusterSize returns the number of servers that store (run JetStream) in
// this node's cluster, which the election layer checks Replicas against:
// 1 without Peers; 0 in URL mode, where it is unknown. Route-only servers
// ([Config.RouteOnly]) never count, whatever Peers lists.
//
// With Peers, New makes an estimate from Peers alone (below), and Start,
// once JetStream answers, counts the storing servers by reading the INFO
// line that each Peers entry's route listener sends (as the duplicate
// check does; retried for up to 2 s on a busy machine, but not after a
// refused connection): an entry whose server reports JetStream off
// is route-only and does not count; entries that name one server count
// once, and one with this node's NodeID is this node; an entry that cannot
// be read (server down, TLS on routes) counts as a storing server unless
// the estimate took it for this node. This node counts unless it is
// route-only. Start logs the count when it differs from the estimate. The
// value does not change after Start. So list every storing server in
// Peers: one that is not listed is not counted. (The size of the JetStream
// meta group is not used: in a new cluster with route-only servers,
// nats-server may start the meta group with fewer members than there are
// storing servers and grow it later; 2 of 3 was seen at Start.)
//
// The estimate is the number of distinct servers named by Peers, counting
// this node once whether it is listed or not (a route-only node not at
// all), and every other entry as a storing server. Only an entry on
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
// An entry wrongly taken for this node makes the estimate one too small;
// one not recognised makes it one too large.
func (m *Manager) ClusterSize() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.clusterSize
}

// Clustered reports whether this node is part of a NATS cluster, where
// buckets should be replicated: embedded, whether Peers is set (always
// with RouteOnly); in URL mode, whether the server the shared connection
// reached at Start reports a cluster name (false before Start).
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
	if !m.Clustered() || m.cfg.RouteOnly {
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
// 1 without Peers, min(3, ClusterSize) with Peers (at least 1). In URL mode
// it is 3 if the connected server reports a cluster name and 1 otherwise;
// before Start it is 1 there.
func (m *Manager) DefaultReplicas() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cfg.URL != "" {
		return max(m.replicas, 1)
	}
	return max(1, min(maxDefaultReplica, m.clusterSize))
}

// Done returns a channel that is closed when Shutdown begins.
func (m *Manager) Done() <-chan struct{} { return m.done }
