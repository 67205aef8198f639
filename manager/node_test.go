package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/internal/testkit"
)

// startErr starts m with a 10 s ctx and returns Start's error and duration.
func startErr(m *Manager) (error, time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	err := m.Start(ctx)
	return err, time.Since(began)
}

// awaitAnswer returns once nodeID's ping, sent through the server at url,
// is answered. A ping through another server than the node's own sees the
// node only once its subscription has crossed the route (Start's doc: what
// the checks cannot see), milliseconds after its Start returned.
func awaitAnswer(t *testing.T, url, nodeID string) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer nc.Close()
	for deadline := time.Now().Add(5 * time.Second); ; {
		_, err := nc.Request(nodePingSubject(nodeID), nil, time.Second)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer to %s's ping through %s: %v", nodeID, url, err)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkDuplicate checks that err reports a duplicate of nodeID within 2 s
// and that the failed Start left nothing running.
func checkDuplicate(t *testing.T, m *Manager, err error, took time.Duration, nodeID string) {
	t.Helper()
	if !errors.Is(err, ErrDuplicateNode) || !strings.Contains(err.Error(), strconv.Quote(nodeID)) {
		t.Fatalf("Start = %v (after %v), want ErrDuplicateNode naming %q", err, took, nodeID)
	}
	if took > 2*time.Second {
		t.Errorf("Start took %v to report the duplicate", took)
	}
	if m.Server() != nil || m.Conn() != nil {
		t.Error("failed Start left Server or Conn set")
	}
	t.Logf("Start failed after %v: %v", took.Round(time.Millisecond), err)
}

// TestDuplicateNodeIDInCluster starts a fourth node named like the first
// one of a running 3-node cluster, with its own ports and the same Peers.
func TestDuplicateNodeIDInCluster(t *testing.T) {
	base := baseline(t)
	ms := startCluster(t, 3)
	ports := testkit.FreePorts(t, 2)
	twin := newNode(t, Config{NodeID: "n1", ClientPort: ports[0], ClusterPort: ports[1], Peers: ms[0].cfg.Peers})
	err, took := startErr(twin)
	checkDuplicate(t, twin, err, took, "n1")

	putGet(t, ms[0], ms[2], "after-twin", 3)
	twin.Shutdown()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.Shutdown)
	}
	wg.Wait()
	checkNoLeaks(t, base)
}

// TestDuplicateNodeIDNotInPeers starts the twin with a Peers list that
// omits the first node's route address, so the check before the server
// starts cannot see it: the twin must still be refused while it starts.
func TestDuplicateNodeIDNotInPeers(t *testing.T) {
	ms := startCluster(t, 3)
	ports := testkit.FreePorts(t, 2)
	peers := strings.Join(strings.Split(ms[0].cfg.Peers, ",")[1:], ",")
	twin := newNode(t, Config{NodeID: "n1", ClientPort: ports[0], ClusterPort: ports[1], Peers: peers})
	err, took := startErr(twin)
	checkDuplicate(t, twin, err, took, "n1")
	twin.Shutdown()
	// The twin's server joined the cluster under the name n1 before it was
	// refused, and its shutdown made the other servers mark n1 offline for
	// placement until n1's next stats heartbeat (at most 10 s).
	waitPlacement(t, ms[1], "after-twin", 3)
	putGet(t, ms[1], ms[0], "after-twin2", 3)
}

// TestDuplicateNodeIDURLMode checks the ping: a URL-mode Manager with the
// NodeID of an embedded node, or of another URL-mode Manager, is refused;
// after the holder's Shutdown the NodeID is free again.
func TestDuplicateNodeIDURLMode(t *testing.T) {
	base := baseline(t)
	ms := startCluster(t, 3)

	twin := newNode(t, Config{NodeID: "n2", URL: ms[0].ClientURL()})
	err, took := startErr(twin)
	checkDuplicate(t, twin, err, took, "n2")
	if !strings.Contains(err.Error(), "embedded true") {
		t.Errorf("error %q does not say the holder is embedded", err)
	}

	first := startNode(t, Config{NodeID: "client.a", URL: ms[1].ClientURL()})
	awaitAnswer(t, ms[2].ClientURL(), "client.a")
	second := newNode(t, Config{NodeID: "client.a", URL: ms[2].ClientURL()})
	err, took = startErr(second)
	checkDuplicate(t, second, err, took, "client.a")
	other := startNode(t, Config{NodeID: "client_a", URL: ms[2].ClientURL()})
	other.Shutdown()

	first.Shutdown()
	third := newNode(t, Config{NodeID: "client.a", URL: ms[2].ClientURL()})
	if err, took := startErr(third); err != nil {
		t.Fatalf("Start after the holder's Shutdown = %v (after %v)", err, took)
	}
	third.Shutdown()
	twin.Shutdown()
	second.Shutdown()
	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.Shutdown)
	}
	wg.Wait()
	checkNoLeaks(t, base)
}

// TestRestartSameNodeID restarts a node of a running cluster, and a single
// node, with the same NodeID, ports and DataDir.
func TestRestartSameNodeID(t *testing.T) {
	ms := startCluster(t, 3)
	putGet(t, ms[0], ms[1], "restart", 3)
	cfg := ms[0].cfg
	ms[0].Shutdown()
	again := newNode(t, cfg)
	err, took := startErr(again)
	if err != nil {
		t.Fatalf("restarted cluster node: Start = %v (after %v)", err, took)
	}
	t.Logf("cluster node restarted in %v", took.Round(time.Millisecond))
	// The old server's shutdown marked n1 offline for placement until the
	// new one's first stats heartbeat.
	waitPlacement(t, again, "restart1", 3)
	putGet(t, again, ms[2], "restart2", 3)

	single := startNode(t, Config{NodeID: "solo"})
	scfg := single.cfg
	single.Shutdown()
	if err, took := startErr(newNode(t, scfg)); err != nil {
		t.Fatalf("restarted single node: Start = %v (after %v)", err, took)
	}
}

// waitPlacement creates an R-replica bucket on m, retrying for up to 15 s
// while the servers still think a restarted or refused node is offline.
func waitPlacement(t *testing.T, m *Manager, bucket string, replicas int) {
	t.Helper()
	began := time.Now()
	eventually(t, 15*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := m.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Replicas: replicas})
		return err
	})
	t.Logf("R%d bucket placed after %v", replicas, time.Since(began).Round(time.Millisecond))
}

func TestNodePingSubject(t *testing.T) {
	for id, want := range map[string]string{
		"n1":     "_RONIN.node.n1.ping",
		"a.b":    "_RONIN.node.a%2Eb.ping",
		".a..b.": "_RONIN.node.%2Ea%2E%2Eb%2E.ping",
	} {
		if got := nodePingSubject(id); got != want {
			t.Errorf("nodePingSubject(%q) = %q, want %q", id, got, want)
		}
	}
}

// TestRouteServerName reads the name from a fake route listener and skips
// listeners that send something else or nothing.
func TestRouteServerName(t *testing.T) {
	serve := func(greeting string) string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(greeting))
				go func() { c.Read(make([]byte, 1)); c.Close() }()
			}
		}()
		return l.Addr().String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if name, err := routeServerName(ctx, serve(`INFO {"server_id":"X","server_name":"n7"}`+"\r\n")); err != nil || name != "n7" {
		t.Errorf("routeServerName = %q, %v; want n7", name, err)
	}
	if _, err := routeServerName(ctx, serve("HTTP/1.1 400 Bad Request\r\n")); err == nil {
		t.Error("routeServerName accepted a non-INFO line")
	}
	began := time.Now()
	if _, err := routeServerName(ctx, serve("")); err == nil {
		t.Error("routeServerName returned no error for a silent listener")
	}
	if d := time.Since(began); d > time.Second {
		t.Errorf("silent listener took %v", d)
	}
}

func TestClientHost(t *testing.T) {
	ports := testkit.FreePorts(t, 1)
	m := startNode(t, Config{Host: "127.0.0.1", ClientHost: "127.0.0.2", ClientPort: ports[0]})
	if want := "nats://127.0.0.2:" + strconv.Itoa(ports[0]); m.ClientURL() != want {
		t.Errorf("ClientURL = %q, want %q", m.ClientURL(), want)
	}
	c, err := net.Dial("tcp", "127.0.0.2:"+strconv.Itoa(ports[0]))
	if err != nil {
		t.Fatalf("client port not on ClientHost: %v", err)
	}
	c.Close()
	if c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(ports[0])); err == nil {
		c.Close()
		t.Error("client port also listens on Host 127.0.0.1")
	}

	cm, err := New(Config{NodeID: "n", Host: "127.0.0.2", ClientHost: "127.0.0.1", ClusterPort: 6222,
		Peers: "nats://127.0.0.2:6222", DataDir: t.TempDir(), ClientPort: RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Shutdown()
	opts := cm.serverOptions()
	if opts.Host != "127.0.0.1" || opts.Cluster.Host != "127.0.0.2" {
		t.Errorf("server options: client host %q, cluster host %q; want 127.0.0.1, 127.0.0.2", opts.Host, opts.Cluster.Host)
	}
}

func TestNewClientPortInUseOnClientHost(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	_, err = New(Config{NodeID: "n1", ClientHost: "127.0.0.2", ClientPort: port, DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "ClientPort") || !strings.Contains(err.Error(), "127.0.0.2") {
		t.Errorf("New() = %v, want an error naming ClientPort on 127.0.0.2", err)
	}
}

func TestClusteredAndAllowSingleReplica(t *testing.T) {
	single := startNode(t, Config{AllowSingleReplica: true})
	if single.Clustered() || !single.AllowSingleReplica() {
		t.Errorf("single node: Clustered %t AllowSingleReplica %t, want false true", single.Clustered(), single.AllowSingleReplica())
	}
	url := newNode(t, Config{NodeID: "c1", URL: single.ClientURL()})
	if url.Clustered() {
		t.Error("URL mode: Clustered before Start")
	}
	if err, _ := startErr(url); err != nil {
		t.Fatal(err)
	}
	if url.Clustered() || url.AllowSingleReplica() {
		t.Errorf("URL mode, single server: Clustered %t AllowSingleReplica %t, want false false", url.Clustered(), url.AllowSingleReplica())
	}

	ms := startCluster(t, 3)
	if !ms[0].Clustered() {
		t.Error("cluster node: Clustered false")
	}
	cu := startNode(t, Config{NodeID: "c2", URL: ms[1].ClientURL()})
	if !cu.Clustered() {
		t.Error("URL mode, cluster: Clustered false")
	}
}

func TestLogDurability(t *testing.T) {
	logged := func(cfg Config) string {
		var buf bytes.Buffer
		m := &Manager{cfg: cfg, log: slog.New(slog.NewTextHandler(&buf, nil))}
		m.logDurability()
		return buf.String()
	}
	tmpDir := t.TempDir()
	if out := logged(Config{Peers: "nats://a:1", DataDir: tmpDir}); !strings.Contains(out, "level=WARN") ||
		!strings.Contains(out, fmt.Sprintf("data_dir=%s", tmpDir)) {
		t.Errorf("clustered, DataDir in TempDir: log %q, want a warning naming the DataDir", out)
	}
	if out := logged(Config{DataDir: tmpDir}); out != "" {
		t.Errorf("single node: log %q, want none", out)
	}
	if out := logged(Config{Peers: "nats://a:1", DataDir: "/nonexistent/ronin"}); out != "" {
		t.Errorf("clustered, persistent DataDir: log %q, want none", out)
	}
	if out := logged(Config{URL: "nats://u:secret@h:4222"}); !strings.Contains(out, "sync_interval: always") ||
		strings.Contains(out, "secret") {
		t.Errorf("URL mode: log %q, want the sync_interval reminder without the password", out)
	}
}

// TestURLModePermissionDenied checks that a user without permission on
// _RONIN.> is told so by Start instead of running unchecked.
func TestURLModePermissionDenied(t *testing.T) {
	js := []string{"$JS.>", "_INBOX.>", "$KV.>"}
	host := startNode(t, Config{
		ServerOptions: func(o *server.Options) {
			o.Users = []*server.User{
				{Username: "admin", Password: "a"},
				{Username: "limited", Password: "l", Permissions: &server.Permissions{
					Publish:   &server.SubjectPermission{Allow: js},
					Subscribe: &server.SubjectPermission{Allow: js},
				}},
				{Username: "ronin", Password: "r", Permissions: &server.Permissions{
					Publish:   &server.SubjectPermission{Allow: append(js, "_RONIN.>")},
					Subscribe: &server.SubjectPermission{Allow: append(js, "_RONIN.>")},
				}},
			}
		},
		NATSOptions: []nats.Option{nats.UserInfo("admin", "a")},
	})
	port := strings.TrimPrefix(host.ClientURL(), "nats://127.0.0.1:")

	denied := newNode(t, Config{NodeID: "c1", URL: "nats://limited:l@127.0.0.1:" + port})
	err, took := startErr(denied)
	t.Logf("denied: Start = %v (after %v)", err, took)
	if err == nil || !strings.Contains(err.Error(), "_RONIN.>") || !strings.Contains(err.Error(), "permission") {
		t.Errorf("Start = %v (after %v), want a permission error naming _RONIN.>", err, took)
	}
	allowed := newNode(t, Config{NodeID: "c2", URL: "nats://ronin:r@127.0.0.1:" + port})
	if err, took := startErr(allowed); err != nil {
		t.Errorf("Start with permission on _RONIN.> = %v (after %v)", err, took)
	}
	twin := newNode(t, Config{NodeID: "c2", URL: "nats://ronin:r@127.0.0.1:" + port})
	err, took = startErr(twin)
	checkDuplicate(t, twin, err, took, "c2")
}

func TestServerLoggerDuplicateName(t *testing.T) {
	l := newServerLogger(testkit.Logger())
	l.Errorf("some other error %d", 1)
	if l.duplicateMessage() != "" {
		t.Fatal("duplicateMessage set by an unrelated error")
	}
	l.Errorf("%s - rid:5 - Remote server has a duplicate name: %q", "127.0.0.1:1", "n1")
	if got := l.duplicateMessage(); !strings.Contains(got, `duplicate name: "n1"`) {
		t.Errorf("duplicateMessage = %q", got)
	}
}
