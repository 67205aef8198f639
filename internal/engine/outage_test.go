package engine

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestOutageLogsOnceThenRateLimitedThenRecovery(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var o outage
	cause := errors.New("nats: no responders available for request")
	for ms := time.Duration(0); ms < 65*time.Second; ms += 170 * time.Millisecond { // ~6 failures a second
		o.fail(log, ms, "renew session", cause)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 { // at 0 s, 30 s and 60 s
		t.Fatalf("logged %d lines for 65 s of failures, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "no responders") || !strings.Contains(lines[1], "failures=") {
		t.Fatalf("lines do not name the cause and the count:\n%s", buf.String())
	}
	buf.Reset()
	o.ok(log, 66*time.Second)
	o.ok(log, 67*time.Second)
	if n := strings.Count(buf.String(), "answers again"); n != 1 {
		t.Fatalf("recovery logged %d times, want once:\n%s", n, buf.String())
	}
	if o.active || o.cause != nil {
		t.Fatal("outage still active after ok")
	}
}
