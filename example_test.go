package ronin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/nonchan7720/ronin"
)

// startNode starts a single-node Manager on a random port in a temp dir.
func startNode(id string) (*ronin.Manager, func()) {
	dir, _ := os.MkdirTemp("", "ronin-example-")
	mgr, err := ronin.NewManager(ronin.ServerConfig{
		NodeID:     id,
		ClientPort: -1, // a random free port
		DataDir:    dir,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	if err := mgr.Start(context.Background()); err != nil {
		panic(err)
	}
	return mgr, func() { mgr.Shutdown(); os.RemoveAll(dir) }
}

// A candidate leads a key until its ctx ends, then resigns.
func ExampleManager_NewCandidate() {
	mgr, stop := startNode("node-1")
	defer stop()

	elected := make(chan struct{})
	cand, err := mgr.NewCandidate(ronin.CandidateConfig{
		CandidateID: "worker-1",
		BucketName:  "example",
		KeyName:     "job",
		TTL:         5 * time.Second,
		OnElected:   func() { close(elected) },
		OnSteppingDown: func() {
			fmt.Println("stepped down")
		},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- cand.Run(ctx) }()

	<-elected
	fmt.Println("leader:", cand.IsLeader(), "token > 0:", cand.LeaderRev() > 0)
	cancel()
	fmt.Println("run:", <-done)
	fmt.Println("leader:", cand.IsLeader())
	// Output:
	// leader: true token > 0: true
	// stepped down
	// run: <nil>
	// leader: false
}

// A shard group runs a handler for every shard the node owns; with one
// node, that is every shard.
func ExampleManager_RegisterShards() {
	mgr, stop := startNode("node-1")
	defer stop()

	started := make(chan int, 4)
	group, err := mgr.RegisterShards(ronin.ShardConfig{
		BucketName: "orders",
		Shards:     4,
		Handler: func(ctx context.Context, shardID int, rev uint64) error {
			started <- shardID
			<-ctx.Done() // work until ownership ends; pass rev to writes
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- group.Run(ctx) }()

	for range 4 {
		<-started
	}
	fmt.Println("owned:", len(group.Owned()))
	fmt.Println("order-42 belongs to shard", ronin.ShardFor("order-42", 4))
	cancel() // drain: every handler's ctx ends, shards are released
	fmt.Println("run:", <-done)
	// Output:
	// owned: 4
	// order-42 belongs to shard 2
	// run: <nil>
}
