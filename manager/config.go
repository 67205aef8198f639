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
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Defaults applied by [New] to zero-valued [Config] fields.
const (
	// DefaultHost is the listen host of the embedded server: loopback only.
	DefaultHost = "127.0.0.1"
	// DefaultClientPort is the NATS client port of the embedded server.
	DefaultClientPort = 4222
	// DefaultClusterPort is the route port of the embedded server.
	DefaultClusterPort = 6222
	// DefaultClusterName is the NATS cluster name used when Peers is set.
	DefaultClusterName = "ronin"
)

// RandomPort asks the embedded server to listen on a free port chosen by
// the operating system (ClientPort, ClusterPort).
const RandomPort = -1

// Config configures a [Manager]. The zero value of every field except NodeID
// means "use the default".
//
// When URL is set the Manager embeds no server, and the embedded-only fields
// Host, ClientHost, ClientPort, ClusterPort, Peers, ClusterName, DataDir,
// ServerOptions and DisableSyncAlways are ignored (neither defaulted nor
// validated), and RouteOnly is refused.
type Config struct {
	// NodeID identifies this node; required. It is also the NATS server name
	// and the client connection name, so it must be unique in the cluster:
	// [Manager.Start] refuses to start while another live node uses it
	// ([ErrDuplicateNode]; see Start for how, and for what it cannot see).
	// A node restarted after a crash reuses its NodeID and DataDir.
	// Letters, digits, '-', '_' and '.' only. Example: "node-1".
	NodeID string

	// Host is the listen host for the cluster (route) port, and for the
	// client port unless ClientHost is set. Default DefaultHost
	// ("127.0.0.1"): nothing outside this machine can connect. Set a
	// routable address for a real cluster. An IP address or host name,
	// without brackets or port. The client and route ports have no TLS or
	// authentication unless ServerOptions configures them.
	Host string

	// ClientHost is the listen host for the client port. Default Host.
	// Set it to "127.0.0.1" when Host is routable so that the routes reach
	// the other machines while the client port, which has no
	// authentication unless ServerOptions configures it, stays on this
	// machine. Same syntax as Host.
	ClientHost string

	// ClientPort is the NATS client port. Default DefaultClientPort (4222);
	// RandomPort (-1) lets the OS pick a free port (see [Manager.ClientURL]).
	ClientPort int

	// ClusterPort is the route port, used only when Peers is set. Default
	// DefaultClusterPort (6222); RandomPort (-1) lets the OS pick one, which
	// only works if no other node has to dial this one.
	ClusterPort int

	// DataDir is the JetStream store directory. Default
	// filepath.Join(os.TempDir(), "ronin", NodeID), which suits tests only:
	// fencing tokens survive a restart only if DataDir does, so set a
	// persistent directory in production. Start logs a warning when a
	// clustered node's DataDir lies under os.TempDir(). Unused, and not
	// defaulted, with RouteOnly.
	DataDir string

	// Peers is a comma-separated list of route URLs, e.g.
	// "nats://10.0.0.1:6222,nats://10.0.0.2:6222,nats://10.0.0.3:6222".
	// Schemes nats, nats-route or tls; host and port are required. The list
	// may include this node itself, under any spelling that
	// [Manager.ClusterSize] recognises (e.g. its Host:ClusterPort, or in a
	// Kubernetes StatefulSet its pod DNS name). Empty means a single-node
	// server without routes.
	Peers string

	// ClusterName is the NATS cluster name, used when Peers is set. Default
	// DefaultClusterName ("ronin"). All nodes of a cluster must agree.
	ClusterName string

	// URL, if set, makes the Manager connect to this existing NATS
	// deployment instead of embedding a server. Comma-separated URLs are
	// allowed; schemes nats, tls, ws or wss. JetStream must be enabled there.
	//
	// Durability is then the servers' own setting, which DisableSyncAlways
	// does not change: nats-server's default (sync_interval 2 min) can lose
	// acknowledged writes on a correlated power loss and so reissue fencing
	// tokens (contract E2). Set "jetstream { sync_interval: always }" in
	// every server's configuration. Start logs a reminder.
	//
	// The connection's user needs permission to publish and subscribe
	// "$JS.API.>", "$KV.<bucket>.>" for each bucket, "_INBOX.>" and
	// "_RONIN.>" (the duplicate-NodeID check, see [Manager.Start]),
	// with allow_responses: without it the check's reply is dropped and a
	// second node with the same NodeID is not refused. docs/production.md
	// has the tested permission set.
	URL string

	// NATSOptions are extra options for the shared connection (credentials,
	// TLS, handlers, ...). They are applied after the Manager's own options
	// and so override them.
	NATSOptions []nats.Option

	// ServerOptions, if set, is called last on the embedded server's options,
	// e.g. to configure TLS or authentication for the client and route
	// listeners. What it changes is not validated by the Manager.
	ServerOptions func(*server.Options)

	// DisableSyncAlways turns off JetStream's SyncAlways (fsync on every
	// write) of the embedded server. Default false: SyncAlways on. Turning
	// it off makes writes several times faster but a correlated power loss
	// can then lose acknowledged writes and so reissue fencing tokens. In
	// URL mode it is ignored: the servers' sync_interval decides (see URL);
	// with RouteOnly too, as nothing is stored.
	DisableSyncAlways bool

	// AllowSingleReplica accepts buckets with Replicas 1 in a cluster
	// ([Manager.Clustered]), which the election layer otherwise refuses.
	// Set it only knowingly: one server's disk is then the only copy of
	// every fencing token of such a bucket, and losing that disk (or that
	// DataDir) reissues tokens (contract E2). Default false.
	AllowSingleReplica bool

	// RouteOnly makes the embedded server join the cluster's routes without
	// JetStream: it stores nothing, needs no DataDir (DataDir and
	// DisableSyncAlways are then ignored), and votes in no Raft group; its
	// candidates and shard groups work through the storing servers, to
	// which the routes carry the JetStream API, the key-value writes (CAS)
	// and the watches. Use it for every node beyond the 3 or 5 that store,
	// so that 20 pods do not make a 20-member JetStream meta group.
	//
	// RouteOnly needs Peers and is meaningless with URL; [Config.Validate]
	// refuses both. Let Peers name every storing server and no route-only
	// one, on every node (route gossip connects the rest):
	//
	//   - a storing server expects as many JetStream peers as its Peers has
	//     entries, so route-only entries make a new cluster wait until the
	//     servers have corrected that count (5 to 12 s measured on
	//     loopback, instead of usually under 1 s);
	//   - [Manager.ClusterSize] counts the storing servers named by Peers
	//     (route-only ones are recognised and left out, see there).
	//
	// A route-only node's Start returns once the storing servers' JetStream
	// answers through its routes. Its duplicate-NodeID check is the same
	// as a storing node's (see [Manager.Start]); a twin that is not in
	// this node's Peers, as another route-only node usually is not, is
	// caught only through the route that gossip makes the two servers open.
	// Default false: the server stores.
	RouteOnly bool

	// Logger receives the Manager's and the embedded server's logs.
	// Default slog.Default().
	Logger *slog.Logger
}

// withDefaults returns c with defaults applied to zero-valued fields.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.URL != "" {
		return c
	}
	if c.Host == "" {
		c.Host = DefaultHost
	}
	if c.ClientHost == "" {
		c.ClientHost = c.Host
	}
	if c.ClientPort == 0 {
		c.ClientPort = DefaultClientPort
	}
	if c.ClusterPort == 0 {
		c.ClusterPort = DefaultClusterPort
	}
	if c.ClusterName == "" {
		c.ClusterName = DefaultClusterName
	}
	if c.DataDir == "" && c.NodeID != "" && !c.RouteOnly {
		c.DataDir = filepath.Join(os.TempDir(), "ronin", c.NodeID)
	}
	return c
}

// Validate reports every invalid field of c, after defaults are applied to
// zero-valued fields. Each error wraps [ErrInvalidConfig] and names the field
// and its value; several are joined with [errors.Join]. Passwords in URLs are
// redacted from messages.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	bad := func(field string, value any, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: %s %s: %s",
			ErrInvalidConfig, field, quote(value), fmt.Sprintf(format, args...)))
	}

	switch {
	case c.NodeID == "":
		bad("NodeID", c.NodeID, "required")
	case !validName(c.NodeID):
		bad("NodeID", c.NodeID, "only letters, digits, '-', '_' and '.' are allowed")
	}

	if c.URL != "" {
		if err := checkURLList(c.URL, urlSchemes, false); err != nil {
			bad("URL", redactList(c.URL), "%v", err)
		}
		if c.RouteOnly {
			bad("RouteOnly", c.RouteOnly, "meaningless with URL %s: a Manager in URL mode embeds no server",
				quote(redactList(c.URL)))
		}
		return errors.Join(errs...)
	}
	if c.RouteOnly && c.Peers == "" {
		bad("Peers", c.Peers, "required with RouteOnly: a route-only server reaches JetStream only through its routes to the storing servers")
	}

	if err := checkHost(c.Host); err != nil {
		bad("Host", c.Host, "%v", err)
	}
	if c.ClientHost != c.Host { // else reported as Host
		if err := checkHost(c.ClientHost); err != nil {
			bad("ClientHost", c.ClientHost, "%v", err)
		}
	}
	if !validPort(c.ClientPort) {
		bad("ClientPort", c.ClientPort, "must be 1..65535, or %d for a random port (0 means %d)",
			RandomPort, DefaultClientPort)
	}
	if !validPort(c.ClusterPort) {
		bad("ClusterPort", c.ClusterPort, "must be 1..65535, or %d for a random port (0 means %d)",
			RandomPort, DefaultClusterPort)
	}
	if c.ClientPort == c.ClusterPort && c.ClientPort != RandomPort && c.Peers != "" {
		bad("ClusterPort", c.ClusterPort, "must differ from ClientPort %d", c.ClientPort)
	}
	if !validName(c.ClusterName) {
		bad("ClusterName", c.ClusterName, "only letters, digits, '-', '_' and '.' are allowed")
	}
	if strings.TrimSpace(c.DataDir) != c.DataDir {
		bad("DataDir", c.DataDir, "must not start or end with white space")
	}
	if c.Peers != "" {
		if err := checkURLList(c.Peers, peerSchemes, true); err != nil {
			bad("Peers", redactList(c.Peers), "%v", err)
		}
	}
	return errors.Join(errs...)
}

var (
	peerSchemes = []string{"nats", "nats-route", "tls"}
	urlSchemes  = []string{"nats", "tls", "ws", "wss"}
)

func quote(v any) string {
	if s, ok := v.(string); ok {
		return strconv.Quote(s)
	}
	return fmt.Sprint(v)
}

// validName reports whether s is a non-empty name made of letters, digits,
// '-', '_' and '.'.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9',
			r == '-', r == '_', r == '.':
		default:
			return false
		}
	}
	return true
}

func validPort(p int) bool { return p == RandomPort || (p >= 1 && p <= 65535) }

// checkHost accepts an IP address or a DNS host name.
func checkHost(h string) error {
	if net.ParseIP(h) != nil {
		return nil
	}
	if strings.HasPrefix(h, "[") {
		return errors.New("write an IPv6 address without brackets")
	}
	if len(h) > 253 {
		return errors.New("host name longer than 253 characters")
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return errors.New("not an IP address or host name")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return errors.New("not an IP address or host name")
			}
		}
	}
	return nil
}

// checkURLList checks every entry of a comma-separated URL list. Errors
// name the entry when the list has more than one.
func checkURLList(list string, schemes []string, needPort bool) error {
	entries := strings.Split(list, ",")
	var msgs []string
	for i, e := range entries {
		_, err := checkURL(e, schemes, needPort)
		switch {
		case err == nil:
		case len(entries) == 1:
			return err
		default:
			msgs = append(msgs, fmt.Sprintf("entry %d %q: %v", i+1, redact(strings.TrimSpace(e)), err))
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// checkURL parses one list entry (surrounding spaces ignored) and checks its
// scheme, host and port.
func checkURL(entry string, schemes []string, needPort bool) (*url.URL, error) {
	entry = strings.TrimSpace(entry)
	if entry == "" {
		return nil, errors.New("empty entry")
	}
	u, err := url.Parse(entry)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	ok := false
	for _, s := range schemes {
		if u.Scheme == s {
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("scheme must be one of %s", strings.Join(schemes, ", "))
	}
	if u.Hostname() == "" {
		return nil, errors.New("missing host")
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("unexpected path, query or fragment")
	}
	port := u.Port()
	if port == "" {
		if needPort {
			return nil, errors.New("missing port")
		}
		return u, nil
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, errors.New("port must be 1..65535")
	}
	return u, nil
}

// redact hides a password in a URL entry for use in messages.
func redact(entry string) string {
	if u, err := url.Parse(entry); err == nil && u.User != nil {
		return u.Redacted()
	}
	return entry
}

func redactList(list string) string {
	parts := strings.Split(list, ",")
	for i, p := range parts {
		parts[i] = redact(strings.TrimSpace(p))
	}
	return strings.Join(parts, ",")
}

// peerSet returns the distinct host:port pairs named by Peers.
// Config must be valid.
func peerSet(peers string) map[string]struct{} {
	set := make(map[string]struct{})
	if peers == "" {
		return set
	}
	for _, p := range strings.Split(peers, ",") {
		u, err := checkURL(p, peerSchemes, true)
		if err != nil {
			continue
		}
		set[net.JoinHostPort(strings.ToLower(u.Hostname()), u.Port())] = struct{}{}
	}
	return set
}

// hostEnv is what clusterSize needs to know about this machine: its host
// name and a resolver. New passes the real ones; tests pass fakes.
type hostEnv struct {
	hostname string                                                   // os.Hostname(); "" if unknown
	lookup   func(ctx context.Context, host string) ([]string, error) // nil: resolve nothing
	ifaces   func() ([]net.Addr, error)                               // net.InterfaceAddrs
}

// systemHostEnv returns the real machine's host name, resolver and
// interface addresses.
func systemHostEnv() hostEnv {
	h, _ := os.Hostname()
	return hostEnv{hostname: h, lookup: net.DefaultResolver.LookupHost, ifaces: net.InterfaceAddrs}
}

// selfLookupTimeout bounds all the DNS look-ups of one clusterSize call.
const selfLookupTimeout = 500 * time.Millisecond

// clusterSize counts the servers named by Peers plus this node, which is
// counted once whether or not Peers lists it, under any spelling. Only an
// entry whose port is ClusterPort can be this node; such an entry is this
// node when (first rule that decides):
//
//  1. its host is Host as written (case-insensitive), or the same IP
//     address, or Host is unspecified (0.0.0.0, ::) and the entry's host is
//     "localhost", a loopback address or an address of a local interface;
//  2. its host (an IP address, or a name resolved within
//     selfLookupTimeout) has an address the route listener listens on:
//     Host's address, Host's resolved addresses if Host is a name, or any
//     loopback or interface address if Host is unspecified. A name that
//     resolves only to other addresses is not this node;
//  3. its host is a name that does not resolve (a Kubernetes headless
//     service publishes a pod's name only once the pod is ready), and it is
//     the machine's host name, or its first label is the first label of the
//     machine's host name or is NodeID: "ronin-0.ronin" on the machine
//     "ronin-0", or for NodeID "ronin-0".
//
// With ClusterPort RandomPort no entry is this node.
//
// A RouteOnly node stores nothing, so it does not count itself: its
// estimate is the number of entries that are not this node.
func clusterSize(c Config, env hostEnv) int {
	if c.Peers == "" {
		return 1
	}
	set, self := selfPeers(c, env)
	return estimate(c, set, self)
}

// estimate is clusterSize from the result of selfPeers.
func estimate(c Config, set map[string]struct{}, self map[string]bool) int {
	n := len(set) - len(self)
	if !c.RouteOnly {
		n++
	}
	return n
}

// selfPeers returns the distinct host:port entries of Peers and, among
// them, those that are this node by the rules of clusterSize.
func selfPeers(c Config, env hostEnv) (set map[string]struct{}, self map[string]bool) {
	set = peerSet(c.Peers)
	self = make(map[string]bool)
	if c.ClusterPort == RandomPort {
		return set, self
	}
	port := strconv.Itoa(c.ClusterPort)
	var undecided []string
	for hp := range set {
		h, p, _ := net.SplitHostPort(hp)
		switch {
		case p != port:
		case isSelfHost(c.Host, h):
			self[hp] = true
		default:
			undecided = append(undecided, h)
		}
	}
	if len(undecided) > 0 {
		resolved := resolveAll(env, append(undecided, c.Host))
		listen := listenAddrs(c.Host, resolved[c.Host], env)
		for _, h := range undecided {
			hp := net.JoinHostPort(h, port)
			if addrs, ok := resolved[h]; ok {
				if slices.ContainsFunc(addrs, func(a string) bool { _, ok := listen[a]; return ok }) {
					self[hp] = true
				}
			} else if isSelfName(c, env.hostname, h) {
				self[hp] = true
			}
		}
	}
	return set, self
}

// resolveAll returns the addresses of each host, in canonical string form,
// looking names up concurrently within selfLookupTimeout. An IP address
// resolves to itself; a name that fails to resolve is absent.
func resolveAll(env hostEnv, hosts []string) map[string][]string {
	out := make(map[string][]string, len(hosts))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	ctx, cancel := context.WithTimeout(context.Background(), selfLookupTimeout)
	defer cancel()
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			mu.Lock()
			out[h] = []string{ip.String()}
			mu.Unlock()
			continue
		}
		if env.lookup == nil {
			continue
		}
		wg.Go(func() {
			addrs, err := env.lookup(ctx, h)
			if err != nil || len(addrs) == 0 {
				return
			}
			var canon []string
			for _, a := range addrs {
				if ip := net.ParseIP(a); ip != nil {
					canon = append(canon, ip.String())
				}
			}
			mu.Lock()
			out[h] = canon
			mu.Unlock()
		})
	}
	wg.Wait()
	return out
}

// listenAddrs returns the addresses a listener on host listens on: host's
// own address or addresses, or for an unspecified host the loopback and
// interface addresses.
func listenAddrs(host string, resolved []string, env hostEnv) map[string]struct{} {
	set := make(map[string]struct{})
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsUnspecified() {
		for _, a := range resolved {
			set[a] = struct{}{}
		}
		return set
	}
	set["127.0.0.1"], set["::1"] = struct{}{}, struct{}{}
	if env.ifaces == nil {
		return set
	}
	if addrs, err := env.ifaces(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				set[ipn.IP.String()] = struct{}{}
			}
		}
	}
	return set
}

// isSelfName reports whether the host name h names this machine or node:
// the machine's host name, or a name whose first label is the first label of
// the machine's host name or is NodeID.
func isSelfName(c Config, hostname, h string) bool {
	first := func(s string) string {
		label, _, _ := strings.Cut(s, ".")
		return label
	}
	if hostname != "" && (strings.EqualFold(h, hostname) || strings.EqualFold(first(h), first(hostname))) {
		return true
	}
	return strings.EqualFold(first(h), c.NodeID)
}

func isSelfHost(self, h string) bool {
	if strings.EqualFold(self, h) {
		return true
	}
	sip, hip := net.ParseIP(self), net.ParseIP(h)
	if sip != nil && hip != nil && sip.Equal(hip) {
		return true
	}
	if sip == nil || !sip.IsUnspecified() {
		return false
	}
	if strings.EqualFold(h, "localhost") || hip != nil && hip.IsLoopback() {
		return true
	}
	if hip == nil {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.Equal(hip) {
			return true
		}
	}
	return false
}
