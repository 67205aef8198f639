package sim

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// traceSize is how many of the latest events a failure report shows.
const traceSize = 400

// trace keeps the latest events of a scenario in virtual time.
type trace struct {
	mu     sync.Mutex
	events []string
	next   int
	full   bool
}

func newTrace() *trace { return &trace{events: make([]string, traceSize)} }

func (t *trace) add(at time.Duration, node, msg string) {
	line := fmt.Sprintf("%10.4fs %-6s %s", at.Seconds(), node, msg)
	t.mu.Lock()
	defer t.mu.Unlock()
	t.events[t.next] = line
	t.next = (t.next + 1) % len(t.events)
	t.full = t.full || t.next == 0
}

// String returns the kept events, oldest first.
func (t *trace) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	var lines []string
	if t.full {
		lines = append(lines, t.events[t.next:]...)
	}
	lines = append(lines, t.events[:t.next]...)
	return strings.Join(lines, "\n")
}

// traceHandler feeds a node's Info and higher logs into the trace, so that
// a failure shows what the protocol itself said.
type traceHandler struct {
	w     *World
	node  string
	attrs []slog.Attr
}

func (h *traceHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *traceHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(r.Message, "ronin: "))
	for _, a := range h.attrs {
		if a.Key != "node" {
			fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.w.logf(h.node, "%s", b.String())
	return nil
}

func (h *traceHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &traceHandler{w: h.w, node: h.node, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *traceHandler) WithGroup(string) slog.Handler { return h }
