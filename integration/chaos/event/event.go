// Package event is the history format shared by the chaos node, the
// orchestrator and the checker: one JSON object per line, timestamped with
// CLOCK_MONOTONIC nanoseconds, which all processes on one Linux machine
// read from the same clock (unlike the wall clock, it never steps, and it
// keeps running while a process is stopped).
package event

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Kinds of events.
const (
	// Tick: a shard handler checked, after reading the clock, that its ctx
	// was live. Key is the shard key, Rev the handler's fencing token.
	Tick = "tick"
	// Lead: a plain candidate reported the same LeaderRev before and after
	// reading the clock. Key is the candidate key.
	Lead = "lead"
	// HandlerStart and HandlerEnd bracket one call of a shard handler.
	HandlerStart = "handler_start"
	HandlerEnd   = "handler_end"
	// Elected and Stepped are a candidate's OnElected and OnSteppingDown.
	Elected = "elected"
	Stepped = "stepped"
	// Start: the node process began; Ready: its Manager started and its
	// group and candidates are registered; Exit: graceful exit.
	Start = "start"
	Ready = "ready"
	Exit  = "exit"
	// Diag is a diagnostic of the suite about the library (Detail says
	// what), for example a panic caught in a status call.
	Diag = "diag"
)

// Event is one line of a history.
type Event struct {
	// T is CLOCK_MONOTONIC in nanoseconds.
	T int64 `json:"t"`
	// Node is the node id.
	Node string `json:"node"`
	// Kind is one of the kinds above.
	Kind string `json:"kind"`
	// Key is the election key: "shard.N" for shards, the key name for
	// plain candidates.
	Key string `json:"key,omitempty"`
	// Shard is the shard id for shard events.
	Shard *int `json:"shard,omitempty"`
	// Rev is the fencing token (lease revision).
	Rev uint64 `json:"token,omitempty"`
	// Pid is the node's process id (start and ready events).
	Pid int `json:"pid,omitempty"`
	// Detail is free text.
	Detail string `json:"detail,omitempty"`
}

// Mono returns CLOCK_MONOTONIC in nanoseconds.
func Mono() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err) // cannot happen on Linux
	}
	return ts.Nano()
}

// Writer appends events to a file. Events are buffered as whole lines and
// written with one write call every flush period and on Close, so a
// SIGKILL loses at most the last period's events and never leaves half a
// line behind (except in the unlikely case of a kill inside write(2)).
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	buf  []byte
	stop chan struct{}
	done chan struct{}
}

// Create opens path for appending and flushes every period. It first
// writes a newline if the file does not end with one, so that a line cut
// by an earlier crash stays on its own line.
func Create(path string, period time.Duration) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	w := &Writer{f: f, stop: make(chan struct{}), done: make(chan struct{})}
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if r, err := os.Open(path); err == nil {
			if _, err := r.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
				w.buf = append(w.buf, '\n')
			}
			_ = r.Close()
		}
	}
	go w.loop(period)
	return w, nil
}

// Emit appends e.
func (w *Writer) Emit(e Event) {
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	w.mu.Lock()
	w.buf = append(append(w.buf, line...), '\n')
	w.mu.Unlock()
}

// Flush writes the buffered events.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.f.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Close flushes and closes the file.
func (w *Writer) Close() error {
	close(w.stop)
	<-w.done
	err := w.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (w *Writer) loop(period time.Duration) {
	defer close(w.done)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			_ = w.Flush()
		}
	}
}

// Read parses a history. Lines that do not parse (a line cut by a SIGKILL
// inside write) are skipped and counted.
func Read(r io.Reader) (events []Event, bad int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e Event
		if json.Unmarshal(line, &e) != nil || e.Kind == "" {
			bad++
			continue
		}
		events = append(events, e)
	}
	return events, bad, sc.Err()
}
