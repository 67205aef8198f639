package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// TestURLModePermissions runs URL-mode nodes as users with exactly the
// permission sets docs/production.md gives, the short one and the tighter
// per-bucket one: election, handover, a shard group and the
// duplicate-NodeID check all work with them.
func TestURLModePermissions(t *testing.T) {
	buckets := []string{"orders", "tiles"}
	short := []string{"$JS.API.>", "_RONIN.>"}
	tight := []string{"$JS.API.INFO", "_RONIN.>"}
	for _, b := range buckets {
		short = append(short, "$KV."+b+".>")
		tight = append(tight,
			"$JS.API.STREAM.INFO.KV_"+b,
			"$JS.API.STREAM.CREATE.KV_"+b,
			"$JS.API.CONSUMER.CREATE.KV_"+b,
			"$JS.API.CONSUMER.CREATE.KV_"+b+".>",
			"$JS.API.CONSUMER.DELETE.KV_"+b+".>",
			"$JS.API.CONSUMER.MSG.NEXT.KV_"+b+".>",
			"$JS.API.DIRECT.GET.KV_"+b+".>",
			"$KV."+b+".>")
	}
	user := func(name string, publish []string) *server.User {
		return &server.User{Username: name, Password: "pw", Permissions: &server.Permissions{
			Publish:   &server.SubjectPermission{Allow: publish},
			Subscribe: &server.SubjectPermission{Allow: []string{"_INBOX.>", "_RONIN.>"}},
			Response:  &server.ResponsePermission{},
		}}
	}
	ports, err := ronintest.FreePorts(1)
	require.NoError(t, err)
	startManager(t, ronin.ServerConfig{
		NodeID: "host", Host: "127.0.0.1", ClientPort: ports[0], DataDir: t.TempDir(), Logger: ronintest.Logger(),
		ServerOptions: func(o *server.Options) {
			o.Users = []*server.User{{Username: "admin", Password: "pw"}, user("short", short), user("tight", tight)}
		},
		NATSOptions: []nats.Option{nats.UserInfo("admin", "pw")},
	})

	for _, name := range []string{"short", "tight"} {
		t.Run(name, func(t *testing.T) {
			url := fmt.Sprintf("nats://%s:pw@127.0.0.1:%d", name, ports[0])
			a := startManager(t, ronin.ServerConfig{NodeID: name + "-a", URL: url, Logger: ronintest.Logger()})
			b := startManager(t, ronin.ServerConfig{NodeID: name + "-b", URL: url, Logger: ronintest.Logger()})

			ra := startCandidate(t, a, candidateConfig("a", "orders", name, 2*time.Second))
			select {
			case <-ra.elected:
			case <-time.After(10 * time.Second):
				t.Fatal("nobody elected")
			}
			rb := startCandidate(t, b, candidateConfig("b", "orders", name, 2*time.Second))
			ra.cancel() // resign: b takes over at once
			select {
			case <-rb.elected:
			case <-time.After(time.Second):
				t.Fatal("no handover within 1 s")
			}

			log := ronintest.NewShardLog()
			for _, m := range []*ronin.Manager{a, b} {
				g, err := m.RegisterShards(ronin.ShardConfig{BucketName: "tiles", Shards: 4, TTL: 2 * time.Second, Handler: log.Handler(m.NodeID())})
				require.NoError(t, err)
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); _ = g.Run(ctx) }()
				t.Cleanup(func() { cancel(); <-done })
			}
			ronintest.Eventually(t, 20*time.Second, func() bool {
				_, ok := log.Settled(4, []string{name + "-a", name + "-b"})
				return ok
			}, "4 shards spread over both nodes: %v", log.Running())
			log.Check(t)

			twin, err := ronin.NewManager(ronin.ServerConfig{NodeID: name + "-a", URL: url, Logger: ronintest.Logger()})
			require.NoError(t, err)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			require.ErrorIs(t, twin.Start(ctx), ronin.ErrDuplicateNode, "the duplicate check answers")
			twin.Shutdown()
		})
	}
}

// startManager starts a Manager of cfg for the test and shuts it down at
// the end.
func startManager(t *testing.T, cfg ronin.ServerConfig) *ronin.Manager {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := ronintest.StartManager(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(m.Shutdown)
	return m
}
