//go:build unix

package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/internal/status"
)

// TestStatus: `ronin status` reads the picture of every Ronin bucket from
// any NATS connection, as text and as JSON, and joins nothing.
func TestStatus(t *testing.T) {
	t.Parallel()
	url := startNATS(t)
	mgr, err := ronin.NewManager(ronin.ServerConfig{NodeID: "app-1", URL: url, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := mgr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer mgr.Shutdown()
	c, err := mgr.NewCandidate(ronin.CandidateConfig{CandidateID: "a", BucketName: "elect", KeyName: "k", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	g, err := mgr.RegisterShards(ronin.ShardConfig{BucketName: "grp", Shards: 4, TTL: time.Second,
		Handler: func(ctx context.Context, _ int, _ uint64) error { <-ctx.Done(); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { _ = c.Run(runCtx); done <- struct{}{} }()
	go func() { _ = g.Run(runCtx); done <- struct{}{} }()
	defer func() { stop(); <-done; <-done }()
	if err := g.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	for !c.IsLeader() {
		time.Sleep(10 * time.Millisecond)
	}

	out, err := exec.Command(roninBin, "status", "--server", url, "--json").Output()
	if err != nil {
		t.Fatalf("ronin status --json: %v", err)
	}
	var n status.Node
	if err := json.Unmarshal(out, &n); err != nil {
		t.Fatalf("%v in:\n%s", err, out)
	}
	if len(n.Buckets) != 2 || n.Buckets[0].Name != "elect" || n.Buckets[1].Name != "grp" {
		t.Fatalf("buckets %+v, want elect and grp", n.Buckets)
	}
	elect, grp := n.Buckets[0], n.Buckets[1]
	if len(elect.Keys) != 1 || elect.Keys[0].Candidate != "a" || elect.Keys[0].Node != "app-1" || elect.Keys[0].Rev != c.LeaderRev() {
		t.Fatalf("elect keys %+v, want k led by a on app-1 at rev %d", elect.Keys, c.LeaderRev())
	}
	if len(grp.Shards) != 4 || grp.Ownerless != 0 {
		t.Fatalf("grp shards %+v, ownerless %d", grp.Shards, grp.Ownerless)
	}
	for _, b := range n.Buckets {
		if len(b.Members) != 1 || b.Members[0].Node != "app-1" || !b.Complete {
			t.Fatalf("bucket %s: members %+v complete %v: the reader must not be a member", b.Name, b.Members, b.Complete)
		}
	}

	text, err := exec.Command(roninBin, "status", "--server", url, "--bucket", "grp").Output()
	t.Logf("ronin status --bucket grp:\n%s", text)
	if err != nil {
		t.Fatalf("ronin status: %v", err)
	}
	for _, want := range []string{"bucket grp", "app-1", "SHARD", "(0 ownerless)"} {
		if !strings.Contains(string(text), want) {
			t.Fatalf("text output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(string(text), "bucket elect") {
		t.Fatalf("--bucket grp printed elect:\n%s", text)
	}

	missing := exec.Command(roninBin, "status", "--server", url, "--bucket", "nosuch")
	msg, _ := missing.CombinedOutput()
	if missing.ProcessState.ExitCode() != exitError || !strings.Contains(string(msg), "no such bucket") {
		t.Fatalf("missing bucket: exit %d, output %q", missing.ProcessState.ExitCode(), msg)
	}
}
