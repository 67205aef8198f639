package ronin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nonchan7720/ronin"
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
