package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
)

func parse(args ...string) (options, error) {
	fs := flag.NewFlagSet("shards-demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return parseFlags(fs, args)
}

func TestParseFlags(t *testing.T) {
	o, err := parse()
	require.NoError(t, err)
	assert.Equal(t, options{shards: 16, ttl: localTTL}, o, "the local demo's defaults")

	o, err = parse("-ttl=3s", "-shards=8", "-http=:0", "-metrics=127.0.0.1:0")
	require.NoError(t, err)
	assert.Equal(t, options{shards: 8, ttl: 3 * time.Second, httpAddr: ":0", metricsAddr: "127.0.0.1:0"}, o)

	// The Kubernetes manifests' arguments.
	o, err = parse("-node=ronin-0",
		"-peers=nats://ronin-0.ronin-headless:6222,nats://ronin-1.ronin-headless:6222,nats://ronin-2.ronin-headless:6222",
		"-host=0.0.0.0", "-client-host=127.0.0.1", "-data=/data", "-shards=16", "-ttl=5s", "-http=:8080", "-metrics=:9090")
	require.NoError(t, err)
	assert.Equal(t, "ronin-0", o.node)
	assert.Equal(t, 5*time.Second, o.ttl)
	cfg := o.serverConfig(nil)
	assert.Equal(t, "0.0.0.0", cfg.Host)
	assert.Equal(t, "127.0.0.1", cfg.ClientHost)
	assert.Equal(t, "/data", cfg.DataDir)
	assert.Contains(t, cfg.Peers, "ronin-2.ronin-headless:6222")

	o, err = parse("-node=n1")
	require.NoError(t, err)
	assert.Equal(t, defaultTTL, o.ttl, "single-node mode's default TTL")

	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-shards=0"}, "-shards"},
		{[]string{"-shards=70000"}, "-shards"},
		{[]string{"-ttl=100ms"}, "-ttl"},
		{[]string{"-http=8080"}, "-http"},
		{[]string{"-http="}, "-http"},
		{[]string{"-metrics=:99999"}, "-metrics"},
		{[]string{"-peers=nats://a:6222"}, "-peers needs -node"},
		{[]string{"-data=/x"}, "-data needs -node"},
		{[]string{"-node="}, "-node"},
		{[]string{"-node=a b"}, "-node"},
		{[]string{"-node=n1", "-peers=http://a:6222"}, "-peers"},
		{[]string{"-node=n1", "-peers=nats://a"}, "-peers"},
		{[]string{"-node=n1", "-host=a b"}, "-host"},
		{[]string{"-node=n1", "-client-host=a/b"}, "-client-host"},
		{[]string{"stray"}, "unexpected argument"},
	} {
		_, err := parse(c.args...)
		var ue usageError
		if assert.True(t, errors.As(err, &ue), "%v: want a usage error, got %v", c.args, err) {
			assert.Contains(t, ue.Error(), c.want, "%v", c.args)
		}
	}
	// What the flag package itself refuses (it prints those with the usage).
	_, err = parse("-shards=many")
	assert.ErrorContains(t, err, "-shards")
	_, err = parse("-lease=5s")
	assert.ErrorContains(t, err, "-lease")
}

// TestSingleNode runs single-node mode's parts on one embedded server with
// free ports: readiness, the status page, the metrics named in
// docs/metrics.md, and the drain on shutdown.
func TestSingleNode(t *testing.T) {
	o, err := parse("-node=solo", "-shards=4", "-ttl=1s", "-http=127.0.0.1:0", "-metrics=127.0.0.1:0")
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := o.serverConfig(logger)
	cfg.ClientPort = -1 // manager.RandomPort: a free port
	cfg.DataDir = t.TempDir()
	mgr, err := ronin.NewManager(cfg)
	require.NoError(t, err)
	n := &single{id: o.node, mgr: mgr}
	w, err := startWeb(o, endpoints{targets: n.targets})
	require.NoError(t, err)
	defer w.close()

	get := func(url string) (int, string) {
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get(w.statusURL + "healthz")
	assert.Equal(t, 200, code)
	code, body = get(w.statusURL + "readyz")
	assert.Equal(t, 503, code, "not started: %s", body)
	assert.Contains(t, body, "solo: unhealthy: ")

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, mgr.Start(ctx))
	runs, err := n.join(o, w, logger)
	require.NoError(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for code != 200 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		code, body = get(w.statusURL + "readyz")
	}
	require.Equal(t, 200, code, "ready: %s", body)
	code, body = get(w.statusURL + "node/solo/readyz")
	assert.Equal(t, 200, code, body)

	code, body = get(w.statusURL)
	assert.Equal(t, 200, code)
	assert.Equal(t, 4, strings.Count(body, `<tr class="shard" data-shard=`), "4 owned shard rows")
	assert.Contains(t, body, `data-key="coordinator" data-node="solo"`)
	code, _ = get(w.statusURL + "node/solo/")
	assert.Equal(t, 200, code)
	code, _ = get(w.statusURL + "node/other/")
	assert.Equal(t, 404, code)

	// Every metric docs/metrics.md lists is on /metrics, but histograms,
	// which show after their first observation.
	doc, err := os.ReadFile("../../docs/metrics.md")
	require.NoError(t, err)
	names := regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\| (\\w+)").FindAllStringSubmatch(string(doc), -1)
	require.Len(t, names, 10, "metrics in docs/metrics.md")
	_, scrape := get(w.metricsURL)
	for _, m := range names {
		if m[2] == "histogram" {
			continue
		}
		assert.Regexp(t, "(?m)^"+m[1]+`\{`, scrape, "%s (%s) is on /metrics", m[1], m[2])
	}
	assert.Contains(t, scrape, `shard_owned{bucket="demo",node="solo"`)
	assert.Contains(t, scrape, `election_leader_status{bucket="demo-leader",candidate_id="solo",key="coordinator"`)

	n.setDraining()
	code, body = get(w.statusURL + "readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "solo: shutting down")
	mgr.Shutdown()
	runs.Wait()
	code, body = get(w.statusURL + "readyz")
	assert.Equal(t, 503, code)
	assert.Contains(t, body, "solo: shutting down")
	code, _ = get(w.statusURL + "healthz")
	assert.Equal(t, 200, code, "live while the process serves")
}
