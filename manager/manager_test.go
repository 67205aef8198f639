package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/nonchan7720/ronin/internal/testkit"
)

// TestMain fails the run if goroutines outlive the tests, covering tests
// that do not check for leaks themselves.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func routeURL(port int) string { return "nats://127.0.0.1:" + strconv.Itoa(port) }

// newNode returns a Manager on a random client port with its own DataDir,
// shut down when the test ends.
func newNode(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.NodeID == "" {
		cfg.NodeID = "n1"
	}
	if cfg.ClientPort == 0 {
		cfg.ClientPort = RandomPort
	}
	if cfg.DataDir == "" && cfg.URL == "" {
		cfg.DataDir = t.TempDir()
	}
	if cfg.Logger == nil {
		cfg.Logger = testkit.Logger()
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Shutdown)
	return m
}

func startNode(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m := newNode(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return m
}

// startCluster starts n nodes routed to each other, concurrently, since
// each Start waits for a JetStream quorum.
func startCluster(t *testing.T, n int) []*Manager {
	t.Helper()
	ports := testkit.FreePorts(t, 2*n)
	var peers []string
	for i := range n {
		peers = append(peers, routeURL(ports[n+i]))
	}
	ms := make([]*Manager, n)
	for i := range n {
		ms[i] = newNode(t, Config{
			NodeID:      fmt.Sprintf("n%d", i+1),
			ClientPort:  ports[i],
			ClusterPort: ports[n+i],
			Peers:       strings.Join(peers, ","),
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.Start(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
	}
	return ms
}

// checkNoLeaks waits up to 5 s for the goroutine count to fall back to the
// baseline, then fails with a dump of all goroutines.
func checkNoLeaks(t *testing.T, baseline int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= baseline {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%d goroutines, baseline %d:\n%s", n, baseline, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// baseline returns the goroutine count before a test starts anything.
func baseline(t *testing.T) int {
	t.Helper()
	runtime.GC()
	return runtime.NumGoroutine()
}

func putGet(t *testing.T, put, get *Manager, bucket string, replicas int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := put.JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, Replicas: replicas})
	if err != nil {
		t.Fatalf("CreateKeyValue: %v", err)
	}
	// A stream created a moment ago may not have subscribed its leader
	// yet: the put then finds no responders and was not stored.
	var rev uint64
	eventually(t, 5*time.Second, func() error {
		rev, err = kv.Put(ctx, "k", []byte("v"))
		return err
	})
	// Another node may not see the new stream's direct-get responders for
	// a few milliseconds ("no responders"), so read until it does.
	var e jetstream.KeyValueEntry
	eventually(t, 5*time.Second, func() error {
		kv2, err := get.JetStream().KeyValue(ctx, bucket)
		if err != nil {
			return err
		}
		e, err = kv2.Get(ctx, "k")
		return err
	})
	if string(e.Value()) != "v" || e.Revision() != rev {
		t.Fatalf("Get = %q rev %d, want %q rev %d", e.Value(), e.Revision(), "v", rev)
	}
}

// eventually retries f every 20 ms until it returns nil or timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port

	_, err = New(Config{NodeID: "n1", ClientPort: port, DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "ClientPort") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("New() = %v, want an error naming ClientPort %d", err, port)
	}

	_, err = New(Config{NodeID: "n1", ClientPort: RandomPort, ClusterPort: port, Peers: routeURL(port), DataDir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "ClusterPort") || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Errorf("New() = %v, want an error naming ClusterPort %d", err, port)
	}

	// Without Peers the cluster port is not used, so not checked.
	m, err := New(Config{NodeID: "n1", ClientPort: RandomPort, ClusterPort: port, DataDir: t.TempDir()})
	if err != nil {
		t.Errorf("New() without Peers = %v", err)
	} else {
		m.Shutdown()
	}
}

func TestSingleNode(t *testing.T) {
	base := baseline(t)
	m := startNode(t, Config{})

	if m.Conn() == nil || !m.Conn().IsConnected() || m.Server() == nil || m.JetStream() == nil {
		t.Fatal("Start left Conn, Server or JetStream unset")
	}
	if got := m.Server().Name(); got != "n1" {
		t.Errorf("server name = %q, want n1", got)
	}
	if !m.Server().JetStreamConfig().SyncAlways {
		t.Error("SyncAlways is off by default")
	}
	if m.ClusterSize() != 1 || m.DefaultReplicas() != 1 {
		t.Errorf("ClusterSize %d DefaultReplicas %d, want 1 1", m.ClusterSize(), m.DefaultReplicas())
	}
	putGet(t, m, m, "single", 1)

	// ClientURL carries the real port and accepts plain TCP clients.
	if strings.HasSuffix(m.ClientURL(), ":-1") || strings.HasSuffix(m.ClientURL(), ":0") {
		t.Errorf("ClientURL = %q", m.ClientURL())
	}
	nc, err := nats.Connect(m.ClientURL())
	if err != nil {
		t.Fatalf("connect to ClientURL %q: %v", m.ClientURL(), err)
	}
	nc.Close()

	if err := m.Start(context.Background()); err == nil {
		t.Error("second Start succeeded")
	}

	m.Shutdown()
	select {
	case <-m.Done():
	default:
		t.Error("Done not closed after Shutdown")
	}
	if !m.Conn().IsClosed() || m.Server().Running() {
		t.Error("connection or server still up after Shutdown")
	}
	if err := m.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown = %v, want ErrClosed", err)
	}
	checkNoLeaks(t, base)
}

func TestDisableSyncAlways(t *testing.T) {
	m := startNode(t, Config{DisableSyncAlways: true})
	if m.Server().JetStreamConfig().SyncAlways {
		t.Error("SyncAlways on with DisableSyncAlways")
	}
	putGet(t, m, m, "nosync", 1)
}

func TestServerOptionsAndNATSOptions(t *testing.T) {
	m := startNode(t, Config{
		ServerOptions: func(o *server.Options) { o.MaxPayload = 512 * 1024 },
		NATSOptions:   []nats.Option{nats.Name("custom")},
	})
	if got := m.Conn().MaxPayload(); got != 512*1024 {
		t.Errorf("MaxPayload = %d, want the hook's 512 KiB", got)
	}
	if got := m.Conn().Opts.Name; got != "custom" {
		t.Errorf("connection name = %q, want NATSOptions to override it", got)
	}
}

func TestCluster(t *testing.T) {
	base := baseline(t)
	ms := startCluster(t, 3)
	for _, m := range ms {
		if m.ClusterSize() != 3 || m.DefaultReplicas() != 3 {
			t.Errorf("%s: ClusterSize %d DefaultReplicas %d, want 3 3", m.NodeID(), m.ClusterSize(), m.DefaultReplicas())
		}
		if !m.Server().JetStreamConfig().SyncAlways {
			t.Errorf("%s: SyncAlways off", m.NodeID())
		}
	}
	putGet(t, ms[0], ms[2], "cluster", 3)

	var wg sync.WaitGroup
	for _, m := range ms {
		wg.Go(m.Shutdown)
	}
	wg.Wait()
	checkNoLeaks(t, base)
}

func TestStartHonoursContext(t *testing.T) {
	base := baseline(t)
	ports := testkit.FreePorts(t, 4)
	m := newNode(t, Config{
		ClientPort:  ports[0],
		ClusterPort: ports[1],
		// Two peers that never answer: no JetStream quorum.
		Peers: strings.Join([]string{routeURL(ports[1]), routeURL(ports[2]), routeURL(ports[3])}, ","),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	err := m.Start(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Start = %v, want DeadlineExceeded", err)
	}
	if d := time.Since(began); d > 5*time.Second {
		t.Errorf("Start returned after %v with a 2s ctx", d)
	}
	if m.Server() != nil || m.Conn() != nil {
		t.Error("failed Start left Server or Conn set")
	}
	for _, p := range ports[:2] {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Errorf("port %d still taken after failed Start: %v", p, err)
			continue
		}
		l.Close()
	}
	checkNoLeaks(t, base)
	m.Shutdown()
}

func TestShutdownInterruptsStart(t *testing.T) {
	base := baseline(t)
	ports := testkit.FreePorts(t, 2)
	m := newNode(t, Config{ClusterPort: ports[0], Peers: routeURL(ports[0]) + "," + routeURL(ports[1])})
	errc := make(chan error, 1)
	go func() { errc <- m.Start(context.Background()) }()
	time.Sleep(300 * time.Millisecond)
	m.Shutdown()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrClosed) {
			t.Errorf("Start = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Start not interrupted by Shutdown")
	}
	checkNoLeaks(t, base)
}

func TestStartFailsOnServerFatal(t *testing.T) {
	// Take the client port between New and Start: the server's listener
	// fails with a Fatalf, which must neither exit nor hang Start.
	ports := testkit.FreePorts(t, 1)
	m := newNode(t, Config{ClientPort: ports[0]})
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(ports[0]))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	began := time.Now()
	err = m.Start(ctx)
	if err == nil || !strings.Contains(err.Error(), "nats-server") {
		t.Fatalf("Start = %v, want the server's fatal error", err)
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("Start took %v to report a fatal error", d)
	}
}

func TestURLMode(t *testing.T) {
	base := baseline(t)
	first := startNode(t, Config{})
	second := startNode(t, Config{NodeID: "client", URL: first.ClientURL()})

	if second.Server() != nil {
		t.Error("Server() != nil in URL mode")
	}
	if second.ClusterSize() != 0 || second.DefaultReplicas() != 1 {
		t.Errorf("URL mode: ClusterSize %d DefaultReplicas %d, want 0 1", second.ClusterSize(), second.DefaultReplicas())
	}
	if second.ClientURL() != first.ClientURL() {
		t.Errorf("ClientURL = %q, want %q", second.ClientURL(), first.ClientURL())
	}
	putGet(t, second, first, "urlmode", 1)

	second.Shutdown()
	if first.Conn().IsClosed() {
		t.Error("URL-mode Shutdown closed the first node")
	}
	first.Shutdown()
	checkNoLeaks(t, base)
}

func TestURLModeClusterReplicas(t *testing.T) {
	ms := startCluster(t, 3)
	c := startNode(t, Config{NodeID: "client", URL: ms[0].ClientURL() + "," + ms[1].ClientURL()})
	if c.DefaultReplicas() != 3 {
		t.Errorf("DefaultReplicas = %d, want 3 against a cluster", c.DefaultReplicas())
	}
}

func TestURLModeUnreachable(t *testing.T) {
	base := baseline(t)
	ports := testkit.FreePorts(t, 1)
	m := newNode(t, Config{URL: routeURL(ports[0])})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.Start(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Start = %v, want DeadlineExceeded", err)
	}
	m.Shutdown()
	checkNoLeaks(t, base)
}

func TestShutdownBeforeStart(t *testing.T) {
	m := newNode(t, Config{})
	m.Shutdown()
	m.Shutdown()
	select {
	case <-m.Done():
	default:
		t.Error("Done not closed")
	}
	if err := m.Start(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Start after Shutdown = %v, want ErrClosed", err)
	}
}

func TestConcurrentShutdown(t *testing.T) {
	m := startNode(t, Config{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			m.Shutdown()
			if m.Server().Running() {
				t.Error("Shutdown returned while the server runs")
			}
		})
	}
	wg.Wait()
}

func TestServerLogger(t *testing.T) {
	var buf bytes.Buffer
	l := newServerLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Noticef("notice %d", 1)
	l.Warnf("warn %d", 2)
	l.Errorf("error %d", 3)
	l.Fatalf("fatal %d", 4)
	l.Fatalf("fatal %d", 5)
	l.Debugf("debug %d", 6)
	l.Tracef("trace %d", 7)
	for _, want := range []string{
		`level=DEBUG msg="notice 1"`, `level=WARN msg="warn 2"`, `level=ERROR msg="error 3"`,
		`level=ERROR msg="fatal 4"`, `level=DEBUG msg="debug 6"`, `level=DEBUG msg="trace 7"`,
		"component=nats-server",
	} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, buf.String())
		}
	}
	if got := l.fatalMessage(); got != "fatal 4" {
		t.Errorf("fatalMessage = %q, want the first one", got)
	}
}
