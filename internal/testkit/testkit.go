// Package testkit holds the helpers that Ronin's own tests share, for the
// packages that cannot use integration/ronintest (it imports them).
package testkit

import (
	"bytes"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"

	"github.com/nonchan7720/ronin/internal/loopback"
)

// Logger returns a logger for nodes under test: silent unless
// RONIN_TEST_LOG is set, then debug level to stderr.
func Logger() *slog.Logger {
	if os.Getenv("RONIN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// Buffer is a bytes.Buffer that concurrent writers (loggers, a child
// process's output) may share.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p.
func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// FreePorts returns n distinct free ports on 127.0.0.1 (loopback.FreePorts)
// and fails t if there are none.
func FreePorts(t testing.TB, n int) []int {
	t.Helper()
	ports, err := loopback.FreePorts(n)
	if err != nil {
		t.Fatal(err)
	}
	return ports
}
