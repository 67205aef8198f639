package manager

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
)

// serverLogger adapts nats-server's Logger interface to *slog.Logger.
//
// The server is chatty at notice level, so notices go to Debug; warnings to
// Warn; errors and fatals to Error. Fatalf never exits the process (the
// server's own logger would call os.Exit): the first fatal message is kept
// so that Start can fail with it. So is the first error saying that a
// remote server has this server's name (another live node with the same
// NodeID routed to this one).
type serverLogger struct {
	log *slog.Logger

	mu        sync.Mutex
	fatal     string
	duplicate string
}

// duplicateNameLog is how nats-server starts the error it logs when it
// refuses a route from a server with its own name.
const duplicateNameLog = "Remote server has a duplicate name"

func newServerLogger(l *slog.Logger) *serverLogger {
	return &serverLogger{log: l.With("component", "nats-server")}
}

func (l *serverLogger) emit(level slog.Level, format string, v []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	l.log.Log(ctx, level, fmt.Sprintf(format, v...))
}

// Noticef logs at Debug.
func (l *serverLogger) Noticef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }

// Warnf logs at Warn.
func (l *serverLogger) Warnf(format string, v ...any) { l.emit(slog.LevelWarn, format, v) }

// Errorf logs at Error and remembers the first duplicate-name error.
func (l *serverLogger) Errorf(format string, v ...any) {
	if strings.Contains(format, duplicateNameLog) {
		msg := fmt.Sprintf(format, v...)
		l.mu.Lock()
		if l.duplicate == "" {
			l.duplicate = msg
		}
		l.mu.Unlock()
	}
	l.emit(slog.LevelError, format, v)
}

// Fatalf logs at Error, remembers the first fatal message and returns.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}

// Debugf logs at Debug; the server calls it only when its debug flag is on.
func (l *serverLogger) Debugf(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }

// Tracef logs at Debug; the server calls it only when its trace flag is on.
func (l *serverLogger) Tracef(format string, v ...any) { l.emit(slog.LevelDebug, format, v) }

// duplicateMessage returns the first duplicate-name error, or "".
func (l *serverLogger) duplicateMessage() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.duplicate
}

// fatalMessage returns the first message passed to Fatalf, or "".
func (l *serverLogger) fatalMessage() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}
