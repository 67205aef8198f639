package main

import (
	"context"
	"log"
	"time"

	"github.com/nonchan7720/ronin"
)

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// 1) Manager 起動（embedded NATS server + shared connection）
	mgr, err := ronin.NewManager(ronin.ServerConfig{
		NodeID: "node-1", // required
		// Host, ClientPort, ClusterPort, DataDir は省略するとデフォルトが入ります。
		// Peers: "nats://node-2:6222,nats://node-3:6222", // 複数ノードでクラスタ構成
	})
	if err != nil {
		log.Fatalf("new manager: %v", err)
	}
	if err := mgr.Start(ctx); err != nil {
		log.Fatalf("start manager: %v", err)
	}
	defer mgr.Shutdown()

	// 2) 特定の bucket/key に対する Candidate 作成
	cand, err := mgr.NewCandidate(ronin.CandidateConfig{
		CandidateID: "worker-1", // required
		BucketName:  "election_bucket",
		KeyName:     "shard_01",
		TTL:         5 * time.Second,
		OnElected: func() {
			log.Println("became leader")
		},
		OnSteppingDown: func() {
			log.Println("lost leadership")
		},
		OnLeaderChange: func(id string) {
			log.Printf("leader changed: %s", id)
		},
	})
	if err != nil {
		log.Fatalf("new candidate: %v", err)
	}

	go func() {
		if err := cand.Run(ctx); err != nil {
			log.Printf("candidate stopped: %v", err)
		}
	}()

	// Application loop
	for {
		select {
		case <-time.After(1 * time.Second):
			if cand.IsLeader() {
				// Use cand.LeaderRev() as a fencing token if needed.
				log.Println("do leader work")
			}
		case <-ctx.Done():
			return
		}
	}
}
