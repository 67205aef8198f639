package election

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store/memstore"
)

// On a resign, OnSteppingDown returns before the key is released, so work
// it stops never overlaps the successor's term.
func TestResignStepsDownBeforeRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := engine.NewRegistry(engine.Host{
			Store:  memstore.New(time.Now).Backend(),
			NodeID: "n1",
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		})
		defer reg.Close(time.Second)
		var mu sync.Mutex
		var steppedDown, elected time.Time
		a, err := NewCandidate(t.Context(), reg, CandidateConfig{CandidateID: "a", BucketName: "b", KeyName: "k", TTL: time.Second, Replicas: 1,
			OnSteppingDown: func() {
				time.Sleep(300 * time.Millisecond) // the user's work winding down
				mu.Lock()
				steppedDown = time.Now()
				mu.Unlock()
			}})
		require.NoError(t, err)
		b, err := NewCandidate(t.Context(), reg, CandidateConfig{CandidateID: "b", BucketName: "b", KeyName: "k", TTL: time.Second, Replicas: 1,
			OnElected: func() {
				mu.Lock()
				elected = time.Now()
				mu.Unlock()
			}})
		require.NoError(t, err)

		actx, stopA := context.WithCancel(t.Context())
		aDone := make(chan error, 1)
		go func() { aDone <- a.Run(actx) }()
		for !a.IsLeader() { // the bucket is new: one TTL until genesis
			time.Sleep(10 * time.Millisecond)
		}
		bctx, stopB := context.WithCancel(t.Context())
		bDone := make(chan error, 1)
		go func() { bDone <- b.Run(bctx) }()
		time.Sleep(100 * time.Millisecond)
		stopA()
		require.NoError(t, <-aDone)
		for !b.IsLeader() {
			time.Sleep(time.Millisecond)
		}
		stopB()
		require.NoError(t, <-bDone)
		mu.Lock()
		defer mu.Unlock()
		require.False(t, steppedDown.IsZero())
		require.False(t, elected.Before(steppedDown), "b elected %v before a's OnSteppingDown returned", steppedDown.Sub(elected))
	})
}
