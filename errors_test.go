package ronin_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/manager"
)

// One value per sentinel whichever layer returns it.
func TestSentinelsMatchAcrossLayers(t *testing.T) {
	_, err := ronin.NewManager(ronin.ServerConfig{})
	if !errors.Is(err, ronin.ErrInvalidConfig) {
		t.Fatalf("NewManager without NodeID: %v, want ErrInvalidConfig", err)
	}

	m, err := ronin.NewManager(ronin.ServerConfig{NodeID: "n1", ClientPort: -1, DataDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m.Shutdown()
	if err := m.Start(ctx); !errors.Is(err, ronin.ErrClosed) {
		t.Fatalf("Start after Shutdown: %v, want ErrClosed", err)
	}
	if _, err := m.NewCandidate(ronin.CandidateConfig{CandidateID: "c", BucketName: "b", KeyName: "k", TTL: time.Second}); !errors.Is(err, ronin.ErrClosed) {
		t.Fatalf("NewCandidate after Shutdown: %v, want ErrClosed", err)
	}
}

// Every layer returns the root's sentinel values themselves, so one
// errors.Is test works whichever layer an error came from.
func TestSentinelsAreOneValuePerLayer(t *testing.T) {
	for _, tc := range []struct {
		name        string
		root, layer error
	}{
		{"ErrInvalidConfig/manager", ronin.ErrInvalidConfig, manager.ErrInvalidConfig},
		{"ErrInvalidConfig/engine", ronin.ErrInvalidConfig, engine.ErrInvalidConfig},
		{"ErrClosed/manager", ronin.ErrClosed, manager.ErrClosed},
		{"ErrClosed/engine", ronin.ErrClosed, engine.ErrClosed},
		{"ErrNotStarted", ronin.ErrNotStarted, manager.ErrNotStarted},
		{"ErrDuplicateNode", ronin.ErrDuplicateNode, manager.ErrDuplicateNode},
		{"ErrBucketMismatch", ronin.ErrBucketMismatch, engine.ErrBucketMismatch},
		{"ErrAlreadyRunning", ronin.ErrAlreadyRunning, engine.ErrAlreadyRunning},
		{"ErrBucketGone/engine", ronin.ErrBucketGone, engine.ErrBucketGone},
		{"ErrBucketGone/store", ronin.ErrBucketGone, store.ErrBucketGone},
		{"ErrUnavailable", ronin.ErrUnavailable, engine.ErrUnavailable},
		{"ErrNoBucket", ronin.ErrNoBucket, engine.ErrNoBucket},
	} {
		if !errors.Is(fmt.Errorf("context: %w", tc.layer), tc.root) {
			t.Errorf("%s: the layer's value is not the root's", tc.name)
		}
	}
}
