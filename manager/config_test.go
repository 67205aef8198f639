package manager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nonchan7720/ronin/internal/testkit"
)

func TestValidateRejectsBadFields(t *testing.T) {
	base := Config{NodeID: "n1"}
	tests := []struct {
		name  string
		edit  func(*Config)
		field string
		value string
	}{
		{"NodeID empty", func(c *Config) { c.NodeID = "" }, "NodeID", `""`},
		{"NodeID space", func(c *Config) { c.NodeID = "node 1" }, "NodeID", `"node 1"`},
		{"NodeID slash", func(c *Config) { c.NodeID = "a/b" }, "NodeID", `"a/b"`},
		{"Host url", func(c *Config) { c.Host = "nats://x" }, "Host", `"nats://x"`},
		{"Host brackets", func(c *Config) { c.Host = "[::1]" }, "Host", `"[::1]"`},
		{"Host space", func(c *Config) { c.Host = "my host" }, "Host", `"my host"`},
		{"ClientHost url", func(c *Config) { c.ClientHost = "nats://x" }, "ClientHost", `"nats://x"`},
		{"ClientHost brackets", func(c *Config) { c.ClientHost = "[::1]" }, "ClientHost", `"[::1]"`},
		{"ClientPort high", func(c *Config) { c.ClientPort = 70000 }, "ClientPort", "70000"},
		{"ClientPort negative", func(c *Config) { c.ClientPort = -2 }, "ClientPort", "-2"},
		{"ClusterPort high", func(c *Config) { c.ClusterPort = 65536 }, "ClusterPort", "65536"},
		{"ClusterPort equals ClientPort", func(c *Config) {
			c.ClientPort, c.ClusterPort, c.Peers = 5000, 5000, "nats://127.0.0.1:5000"
		}, "ClusterPort", "5000"},
		{"ClusterName space", func(c *Config) { c.ClusterName = "my cluster" }, "ClusterName", `"my cluster"`},
		{"DataDir spaces", func(c *Config) { c.DataDir = " /tmp/x" }, "DataDir", `" /tmp/x"`},
		{"Peers no scheme", func(c *Config) { c.Peers = "nats//x" }, "Peers", `"nats//x"`},
		{"Peers bad scheme", func(c *Config) { c.Peers = "http://h:6222" }, "Peers", `"http://h:6222"`},
		{"Peers no port", func(c *Config) { c.Peers = "nats://h" }, "Peers", `"nats://h"`},
		{"Peers port zero", func(c *Config) { c.Peers = "nats://h:0" }, "Peers", `"nats://h:0"`},
		{"Peers port high", func(c *Config) { c.Peers = "nats://h:99999" }, "Peers", `"nats://h:99999"`},
		{"Peers port text", func(c *Config) { c.Peers = "nats://h:abc" }, "Peers", `"nats://h:abc"`},
		{"Peers no host", func(c *Config) { c.Peers = "nats://:6222" }, "Peers", `"nats://:6222"`},
		{"Peers path", func(c *Config) { c.Peers = "nats://h:6222/x" }, "Peers", `"nats://h:6222/x"`},
		{"Peers empty entry", func(c *Config) { c.Peers = "nats://a:6222,,nats://b:6222" }, "Peers", `"nats://a:6222,,nats://b:6222": entry 2 "": empty entry`},
		{"Peers trailing comma", func(c *Config) { c.Peers = "nats://a:6222," }, "Peers", `entry 2 "": empty entry`},
		{"Peers second bad", func(c *Config) { c.Peers = "nats://a:6222, nats://b" }, "Peers", `entry 2 "nats://b": missing port`},
		{"URL bad scheme", func(c *Config) { c.URL = "http://h:4222" }, "URL", `"http://h:4222"`},
		{"URL empty entry", func(c *Config) { c.URL = "nats://a:4222,,nats://b:4222" }, "URL", `entry 2 "": empty entry`},
		{"URL port", func(c *Config) { c.URL = "nats://h:0" }, "URL", `"nats://h:0"`},
		{"RouteOnly without Peers", func(c *Config) { c.RouteOnly = true }, "Peers", `"": required with RouteOnly`},
		{"RouteOnly with URL", func(c *Config) {
			c.RouteOnly, c.URL = true, "nats://u:pw@h:4222"
		}, "RouteOnly", `true: meaningless with URL "nats://u:xxxxx@h:4222"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.edit(&c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate() = nil, want error")
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %q does not wrap ErrInvalidConfig", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "ronin: invalid config: ") {
				t.Errorf("error %q lacks the prefix", msg)
			}
			if !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.value) {
				t.Errorf("error %q does not name field %s and value %s", msg, tt.field, tt.value)
			}
			if _, nerr := New(c); !errors.Is(nerr, ErrInvalidConfig) {
				t.Errorf("New() error = %v, want ErrInvalidConfig", nerr)
			}
		})
	}
}

func TestValidateReportsEveryField(t *testing.T) {
	err := Config{NodeID: "a b", ClientPort: -5, Peers: "x"}.Validate()
	for _, want := range []string{"NodeID", "ClientPort", "Peers"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestValidateRedactsPasswords(t *testing.T) {
	for _, c := range []Config{
		{NodeID: "n", Peers: "nats://u:s3cret@h"},
		{NodeID: "n", URL: "http://u:s3cret@h:4222"},
	} {
		err := c.Validate()
		if err == nil || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("Validate() = %v, want an error without the password", err)
		}
	}
}

func TestValidateAccepts(t *testing.T) {
	for _, c := range []Config{
		{NodeID: "n-1_a.b"},
		{NodeID: "n", ClientPort: RandomPort, ClusterPort: RandomPort},
		{NodeID: "n", ClientPort: 1, ClusterPort: 65535},
		{NodeID: "n", Host: "::1"},
		{NodeID: "n", Host: "0.0.0.0"},
		{NodeID: "n", Host: "node-1.example.com"},
		{NodeID: "n", Peers: " nats://a:6222 , nats-route://b:6222,tls://[::1]:6222"},
		{NodeID: "n", Peers: "nats://u:p@a:6222"},
		{NodeID: "n", URL: "nats://a:4222, tls://b, ws://c:80, wss://d"},
		{NodeID: "n", RouteOnly: true, Peers: "nats://a:6222"},
		// Embedded-only fields are ignored in URL mode.
		{NodeID: "n", URL: "nats://a:4222", ClientPort: 70000, Peers: "bad", Host: "a b"},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", c, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	if DefaultHost != "127.0.0.1" || DefaultClientPort != 4222 || DefaultClusterPort != 6222 ||
		DefaultClusterName != "ronin" || RandomPort != -1 {
		t.Fatal("documented default constants changed")
	}
	c := Config{NodeID: "n1"}.withDefaults()
	if c.Host != DefaultHost || c.ClientPort != DefaultClientPort || c.ClusterPort != DefaultClusterPort ||
		c.ClusterName != DefaultClusterName || c.Logger != slog.Default() || c.DisableSyncAlways {
		t.Errorf("withDefaults() = %+v", c)
	}
	if c.ClientHost != c.Host {
		t.Errorf("ClientHost = %q, want Host %q", c.ClientHost, c.Host)
	}
	if got := (Config{NodeID: "n1", Host: "10.0.0.1"}).withDefaults().ClientHost; got != "10.0.0.1" {
		t.Errorf("ClientHost = %q, want Host 10.0.0.1", got)
	}
	if want := filepath.Join(os.TempDir(), "ronin", "n1"); c.DataDir != want {
		t.Errorf("DataDir = %q, want %q", c.DataDir, want)
	}
	if got := (Config{NodeID: "n1", RouteOnly: true, Peers: "nats://a:1"}).withDefaults().DataDir; got != "" {
		t.Errorf("RouteOnly: DataDir = %q, want none", got)
	}
	kept := Config{NodeID: "n1", Host: "::1", ClientPort: 1, ClusterPort: 2, ClusterName: "c", DataDir: "/d"}
	if got := kept.withDefaults(); got.Host != "::1" || got.ClientPort != 1 || got.ClusterPort != 2 ||
		got.ClusterName != "c" || got.DataDir != "/d" {
		t.Errorf("withDefaults() overrode set fields: %+v", got)
	}

	m, err := New(Config{NodeID: "n1", ClientPort: RandomPort, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Shutdown()
	if m.NodeID() != "n1" || m.ClusterSize() != 1 || m.DefaultReplicas() != 1 || m.Logger() == nil {
		t.Errorf("NodeID %q ClusterSize %d DefaultReplicas %d", m.NodeID(), m.ClusterSize(), m.DefaultReplicas())
	}
	if m.Conn() != nil || m.JetStream() != nil || m.Server() != nil || m.ClientURL() != "" {
		t.Error("accessors return values before Start")
	}
}

// fakeHostEnv is a machine "testhost" with the interface addresses
// 127.0.0.1 and 10.1.1.1 whose resolver knows only the names in addrs.
func fakeHostEnv(addrs map[string][]string) hostEnv {
	return hostEnv{
		hostname: "testhost",
		lookup: func(_ context.Context, host string) ([]string, error) {
			if a, ok := addrs[host]; ok {
				return a, nil
			}
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		},
		ifaces: func() ([]net.Addr, error) {
			return []net.Addr{
				&net.IPNet{IP: net.ParseIP("127.0.0.1"), Mask: net.CIDRMask(8, 32)},
				&net.IPNet{IP: net.ParseIP("10.1.1.1"), Mask: net.CIDRMask(8, 32)},
			}, nil
		},
	}
}

func TestClusterSize(t *testing.T) {
	names := map[string][]string{
		"localhost":         {"127.0.0.1"},
		"me.example":        {"10.1.1.1"},
		"ronin-0.elsewhere": {"10.2.2.2"},
	}
	sts := "nats://ronin-0.ronin:6222,nats://ronin-1.ronin:6222,nats://ronin-2.ronin:6222"
	tests := []struct {
		name string
		cfg  Config
		want int
	}{
		{"no peers", Config{}, 1},
		{"self listed", Config{ClusterPort: 6222, Peers: "nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224"}, 3},
		{"self not listed", Config{ClusterPort: 6222, Peers: "nats://127.0.0.1:6223,nats://127.0.0.1:6224"}, 3},
		{"duplicates", Config{ClusterPort: 6222, Peers: "nats://127.0.0.1:6223, nats-route://127.0.0.1:6223,tls://127.0.0.1:6224"}, 3},
		{"one peer", Config{ClusterPort: 6222, Peers: "nats://10.0.0.2:6222"}, 2},
		{"unspecified host, loopback self", Config{Host: "0.0.0.0", ClusterPort: 6222, Peers: "nats://127.0.0.1:6222,nats://10.9.9.9:6222"}, 2},
		{"random cluster port", Config{ClusterPort: RandomPort, Peers: "nats://127.0.0.1:6223,nats://127.0.0.1:6224"}, 3},
		{"five", Config{ClusterPort: 1, Peers: "nats://a:1,nats://b:1,nats://c:1,nats://d:1,nats://e:1"}, 6},
		// Spellings of this node that need resolving.
		{"self as localhost", Config{ClusterPort: 6222, Peers: "nats://localhost:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224"}, 3},
		{"Host localhost, self as 127.0.0.1", Config{Host: "localhost", ClusterPort: 6222, Peers: "nats://127.0.0.1:6222,nats://localhost:6223,nats://localhost:6224"}, 3},
		{"self in two spellings", Config{ClusterPort: 6222, Peers: "nats://localhost:6222,nats://127.0.0.1:6222,nats://127.0.0.1:6223"}, 2},
		{"localhost on another port", Config{ClusterPort: 6222, Peers: "nats://localhost:6223,nats://127.0.0.1:6224"}, 3},
		{"resolves to own interface", Config{Host: "0.0.0.0", ClusterPort: 6222, Peers: "nats://me.example:6222,nats://10.9.9.9:6222"}, 2},
		{"resolves to own interface, other Host", Config{Host: "127.0.0.1", ClusterPort: 6222, Peers: "nats://me.example:6222,nats://10.9.9.9:6222"}, 3},
		{"StatefulSet, NodeID", Config{NodeID: "ronin-0", Host: "0.0.0.0", ClusterPort: 6222, Peers: sts}, 3},
		{"StatefulSet, other pod", Config{NodeID: "ronin-1", Host: "0.0.0.0", ClusterPort: 6222, Peers: sts}, 3},
		{"StatefulSet, no match", Config{NodeID: "x", Host: "0.0.0.0", ClusterPort: 6222, Peers: sts}, 4},
		{"StatefulSet, other port", Config{NodeID: "ronin-0", Host: "0.0.0.0", ClusterPort: 7222, Peers: sts}, 4},
		{"host name", Config{ClusterPort: 6222, Peers: "nats://testhost.svc:6222,nats://other:6222"}, 2},
		{"host name exact", Config{ClusterPort: 6222, Peers: "nats://TESTHOST:6222,nats://other:6222"}, 2},
		{"NodeID name resolving elsewhere", Config{NodeID: "ronin-0", ClusterPort: 6222, Peers: "nats://ronin-0.elsewhere:6222,nats://other:6222"}, 3},
		// A route-only node does not count itself.
		{"route-only, self listed", Config{RouteOnly: true, ClusterPort: 6222, Peers: "nats://127.0.0.1:6222,nats://127.0.0.1:6223,nats://127.0.0.1:6224"}, 2},
		{"route-only, self not listed", Config{RouteOnly: true, ClusterPort: 6222, Peers: "nats://127.0.0.1:6223,nats://127.0.0.1:6224,nats://127.0.0.1:6225"}, 3},
		{"route-only, random cluster port", Config{RouteOnly: true, ClusterPort: RandomPort, Peers: "nats://127.0.0.1:6223,nats://127.0.0.1:6224"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.cfg
			if c.NodeID == "" {
				c.NodeID = "n"
			}
			c = c.withDefaults()
			env := fakeHostEnv(names)
			if got := clusterSize(c, env); got != tt.want {
				t.Errorf("clusterSize = %d, want %d", got, tt.want)
			}
			m := &Manager{cfg: c, clusterSize: clusterSize(c, env)}
			if want := min(3, tt.want); m.DefaultReplicas() != want {
				t.Errorf("DefaultReplicas = %d, want %d", m.DefaultReplicas(), want)
			}
		})
	}
}

// TestClusterSizeResolvesLocalhost checks New with the machine's own
// resolver; only the name localhost is looked up.
func TestClusterSizeResolvesLocalhost(t *testing.T) {
	ports := testkit.FreePorts(t, 4)
	for _, tt := range []struct{ host, self, other string }{
		{"127.0.0.1", "localhost", "127.0.0.1"},
		{"localhost", "127.0.0.1", "localhost"},
	} {
		peers := fmt.Sprintf("nats://%s:%d,nats://%s:%d,nats://%s:%d",
			tt.self, ports[1], tt.other, ports[2], tt.other, ports[3])
		m, err := New(Config{NodeID: "n1", Host: tt.host, ClientPort: ports[0], ClusterPort: ports[1],
			Peers: peers, DataDir: t.TempDir(), Logger: testkit.Logger()})
		if err != nil {
			t.Fatal(err)
		}
		if m.ClusterSize() != 3 || m.DefaultReplicas() != 3 {
			t.Errorf("Host %s, Peers %s: ClusterSize %d DefaultReplicas %d, want 3 3",
				tt.host, peers, m.ClusterSize(), m.DefaultReplicas())
		}
		m.Shutdown()
	}
}

func TestUnderTempDir(t *testing.T) {
	tmp := os.TempDir()
	for _, tt := range []struct {
		dir  string
		want bool
	}{
		{tmp, true},
		{filepath.Join(tmp, "ronin", "n1"), true},
		{tmp + "/x/../y", true},
		{tmp + "x", false},
		{filepath.Join(tmp, "..", "var-lib-ronin"), false},
		{"/nonexistent/ronin", false},
	} {
		if _, got := underTempDir(tt.dir); got != tt.want {
			t.Errorf("underTempDir(%q) = %t, want %t", tt.dir, got, tt.want)
		}
	}
}
