//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/internal/testkit"
)

// ttl is the lease TTL of every test: short, to keep the package fast.
const ttl = 2 * time.Second

// roninBin is the ronin binary built once by TestMain.
var roninBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ronin-cli-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	roninBin = filepath.Join(dir, "ronin")
	args := []string{"build", "-o", roninBin}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ronin:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startNATS starts a JetStream server on a random loopback port for the
// test and returns its client URL.
func startNATS(t *testing.T) string {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoSigs: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	return s.ClientURL()
}

// proc is a running ronin process.
type proc struct {
	cmd    *exec.Cmd
	stderr *testkit.Buffer
	done   chan struct{} // closed when it exited
	code   int           // exit code, valid after done (-1: killed)
}

// startRonin starts the ronin binary with args and OUT=out in its
// environment. Cleanup SIGKILLs it if it still runs.
func startRonin(t *testing.T, out string, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(roninBin, args...), stderr: &testkit.Buffer{}, done: make(chan struct{})}
	// A -race binary sleeps 1 s at exit unless told otherwise.
	p.cmd.Env = append(os.Environ(), "OUT="+out, "GORACE=atexit_sleep_ms=0 "+os.Getenv("GORACE"))
	p.cmd.Stdout, p.cmd.Stderr = p.stderr, p.stderr
	p.cmd.WaitDelay = time.Second // a command outliving ronin holds its output open
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if strings.Contains(p.stderr.String(), "DATA RACE") {
			t.Error("data race in ronin")
		}
		if t.Failed() {
			t.Logf("ronin %v output:\n%s", args, p.stderr)
		}
	})
	return p
}

// wait waits at most d for p to exit and returns its exit code.
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(d):
		t.Fatalf("ronin did not exit within %v; output:\n%s", d, p.stderr)
		return 0
	}
}

// runArgs is the command line of `ronin run` for one instance.
func runArgs(url, bucket, id, script string) []string {
	return []string{"run", "--server", url, "--bucket", bucket, "--key", "k", "--id", id,
		"--ttl", ttl.String(), "--", "sh", "-c", script}
}

// line is one line the test commands write: "WORD ID TOKEN PID".
type line struct {
	word, id string
	token    uint64
	pid      int
}

// readLines parses the lines of file out (none if it does not exist).
func readLines(t *testing.T, out string) []line {
	t.Helper()
	data, err := os.ReadFile(out)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		t.Fatal(err)
	}
	var ls []line
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 4 {
			continue // a line being written
		}
		tok, err1 := strconv.ParseUint(f[2], 10, 64)
		pid, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			t.Fatalf("bad line %q", sc.Text())
		}
		ls = append(ls, line{f[0], f[1], tok, pid})
	}
	return ls
}

// waitLine polls out until a line satisfies ok, at most until deadline.
func waitLine(t *testing.T, out string, deadline time.Time, what string, ok func(line) bool) line {
	t.Helper()
	for {
		for _, l := range readLines(t, out) {
			if ok(l) {
				return l
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no line with %s by the deadline; lines: %v", what, readLines(t, out))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid is a process that has not exited (a zombie
// waiting for its new parent to reap it counts as exited).
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil // no /proc: best effort
	}
	// The state follows the command name in parentheses.
	s := string(data)
	state := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])[0]
	return state != "Z" && state != "X"
}

// slowStop is a command that logs its start, and on SIGTERM takes 300 ms
// (within the default grace, TTL/4) before it logs its end and exits, so
// that a successor started before it is gone shows in the log.
const slowStop = `trap 'sleep 0.3; echo "term $RONIN_ID $RONIN_TOKEN $$" >> "$OUT"; exit 0' TERM
echo "start $RONIN_ID $RONIN_TOKEN $$" >> "$OUT"
while :; do sleep 0.05; done`

// TestFailoverOnKill: of two instances one runs the command; SIGKILL to it
// kills its command too, and the other takes over after the TTL with a
// greater token. Never do two commands run at once.
func TestFailoverOnKill(t *testing.T) {
	t.Parallel()
	url, out := startNATS(t), filepath.Join(t.TempDir(), "out")
	loop := `while :; do echo "tick $RONIN_ID $RONIN_TOKEN $$" >> "$OUT"; sleep 0.05; done`
	procs := map[string]*proc{
		"a": startRonin(t, out, runArgs(url, "failover", "a", loop)...),
		"b": startRonin(t, out, runArgs(url, "failover", "b", loop)...),
	}

	first := waitLine(t, out, time.Now().Add(3*ttl+5*time.Second), "a first leader", func(line) bool { return true })
	time.Sleep(time.Second) // both instances campaign meanwhile
	for _, l := range readLines(t, out) {
		if l.pid != first.pid || l.token != first.token {
			t.Fatalf("two commands ran: %v and %v", first, l)
		}
	}
	if first.token == 0 {
		t.Fatalf("RONIN_TOKEN 0 in %v", first)
	}
	other := map[string]string{"a": "b", "b": "a"}[first.id]

	leader := procs[first.id]
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	leader.wait(t, 5*time.Second)
	for alive(first.pid) {
		if time.Since(killed) > time.Second {
			t.Fatalf("the command (pid %d) outlived its SIGKILLed ronin by 1s", first.pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	oldLines := len(readLines(t, out))

	next := waitLine(t, out, killed.Add(ttl+2*time.Second), "the other instance", func(l line) bool { return l.id == other })
	t.Logf("takeover %v after the kill (TTL %v); tokens %d -> %d", time.Since(killed).Round(time.Millisecond), ttl, first.token, next.token)
	if next.token <= first.token {
		t.Fatalf("token did not grow: %d then %d", first.token, next.token)
	}
	time.Sleep(300 * time.Millisecond)
	ls := readLines(t, out)
	for i, l := range ls {
		want := first
		if i >= oldLines {
			want = next
		}
		if l.pid != want.pid || l.token != want.token {
			t.Fatalf("line %d is %v, want pid %d token %d (a command ran after its ronin died, or two at once)", i, l, want.pid, want.token)
		}
	}
	if procs[other].stderr.String() == "" {
		t.Fatal("no log from the new leader")
	}
}

// keyRecord returns the election record of key in bucket, nil if there is
// none (never written, or deleted by a release).
func keyRecord(t *testing.T, url, bucket, key string) jetstream.KeyValueEntry {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound), errors.Is(err, jetstream.ErrKeyDeleted):
		return nil
	case err != nil:
		t.Fatal(err)
	}
	return e
}

// TestChildExitCode: a command that exits by itself ends ronin with its exit
// code, and the key is free at once.
func TestChildExitCode(t *testing.T) {
	t.Parallel()
	url, out := startNATS(t), filepath.Join(t.TempDir(), "out")
	p := startRonin(t, out, runArgs(url, "exitcode", "a", `echo "ran $RONIN_ID $RONIN_TOKEN $$" >> "$OUT"; exit 7`)...)
	if code := p.wait(t, 3*ttl+5*time.Second); code != 7 {
		t.Fatalf("exit code %d, want 7; output:\n%s", code, p.stderr)
	}
	first := waitLine(t, out, time.Now(), "the first run", func(l line) bool { return l.id == "a" })
	if rec := keyRecord(t, url, "exitcode", "k"); rec != nil {
		t.Fatalf("the key still holds %q (revision %d) after ronin exited: not released", rec.Value(), rec.Revision())
	}

	started := time.Now()
	q := startRonin(t, out, runArgs(url, "exitcode", "b", `echo "ran $RONIN_ID $RONIN_TOKEN $$" >> "$OUT"; exec sleep 60`)...)
	next := waitLine(t, out, started.Add(ttl), "the second instance", func(l line) bool { return l.id == "b" })
	took := time.Since(started)
	t.Logf("second instance led %v after it started (TTL %v)", took.Round(time.Millisecond), ttl)
	if took > ttl/2 {
		t.Fatalf("second instance took %v to lead, not well under the TTL %v: the key was not released", took, ttl)
	}
	if next.token <= first.token {
		t.Fatalf("token did not grow: %d then %d", first.token, next.token)
	}
	if err := q.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := q.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM %d, want 0", code)
	}
}

// TestSIGTERMHandover: SIGTERM to ronin reaches the command, ronin exits 0,
// and a waiting instance takes over well under the TTL.
func TestSIGTERMHandover(t *testing.T) {
	t.Parallel()
	url, out := startNATS(t), filepath.Join(t.TempDir(), "out")
	a := startRonin(t, out, runArgs(url, "handover", "a", slowStop)...)
	first := waitLine(t, out, time.Now().Add(3*ttl+5*time.Second), "a's start", func(l line) bool { return l.word == "start" })
	b := startRonin(t, out, runArgs(url, "handover", "b", slowStop)...)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.stderr.String(), "leader=a"); {
		if time.Now().After(deadline) {
			t.Fatalf("b never saw a lead; output:\n%s", b.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}

	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if code := a.wait(t, 5*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM %d, want 0", code)
	}
	next := waitLine(t, out, sent.Add(ttl), "b's start", func(l line) bool { return l.word == "start" && l.id == "b" })
	took := time.Since(sent)
	t.Logf("b started its command %v after the SIGTERM to a (TTL %v)", took.Round(time.Millisecond), ttl)
	if took > ttl/2 {
		t.Fatalf("handover took %v, not well under the TTL %v", took, ttl)
	}
	ls := readLines(t, out)
	want := []string{"start a", "term a", "start b"}
	if len(ls) != 3 {
		t.Fatalf("lines %v, want %v", ls, want)
	}
	for i, l := range ls {
		if l.word+" "+l.id != want[i] {
			t.Fatalf("lines %v, want %v", ls, want)
		}
	}
	if ls[1].pid != first.pid || next.token <= first.token {
		t.Fatalf("lines %v: wrong pid or token order", ls)
	}
}

// proxy forwards TCP connections from a loopback port to a target; while
// frozen it forwards nothing, without closing anything: a partition.
type proxy struct {
	ln     net.Listener
	target string
	gate   sync.RWMutex // held for writing while frozen
}

// startProxy starts a proxy to target (host:port) for the test.
func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	var (
		mu    sync.Mutex
		conns []net.Conn
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			conns = append(conns, c, s)
			mu.Unlock()
			go p.pipe(c, s)
			go p.pipe(s, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return p
}

// pipe copies src to dst, holding each chunk while the proxy is frozen.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.gate.RLock()
			_, werr := dst.Write(buf[:n])
			p.gate.RUnlock()
			if werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// url is the proxy's NATS URL.
func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

// TestPartitionedLeader: a leader cut off from NATS stops its command by
// its own clock, before the other instance's lease starts and its command
// runs; when the partition heals it does not start the command again.
func TestPartitionedLeader(t *testing.T) {
	t.Parallel()
	url, out := startNATS(t), filepath.Join(t.TempDir(), "out")
	px := startProxy(t, strings.TrimPrefix(url, "nats://"))
	a := startRonin(t, out, runArgs(px.url(), "partition", "a", slowStop)...)
	waitLine(t, out, time.Now().Add(3*ttl+5*time.Second), "a's start", func(l line) bool { return l.word == "start" })
	b := startRonin(t, out, runArgs(url, "partition", "b", slowStop)...)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(b.stderr.String(), "leader=a"); {
		if time.Now().After(deadline) {
			t.Fatalf("b never saw a lead; output:\n%s", b.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}

	px.gate.Lock()
	cut := time.Now()
	term := waitLine(t, out, cut.Add(ttl+time.Second), "a's term", func(l line) bool { return l.word == "term" })
	t.Logf("a's command ended %v after the cut (300 ms after its SIGTERM)", time.Since(cut).Round(time.Millisecond))
	next := waitLine(t, out, cut.Add(ttl+2*time.Second), "b's start", func(l line) bool { return l.word == "start" && l.id == "b" })
	t.Logf("b started its command %v after the cut (TTL %v)", time.Since(cut).Round(time.Millisecond), ttl)
	px.gate.Unlock()

	time.Sleep(time.Second) // a reconnects and must stay a follower
	ls := readLines(t, out)
	want := []string{"start a", "term a", "start b"}
	if len(ls) != 3 {
		t.Fatalf("lines %v, want %v", ls, want)
	}
	for i, l := range ls {
		if l.word+" "+l.id != want[i] {
			t.Fatalf("lines %v, want %v: two commands ran at once", ls, want)
		}
	}
	if next.token <= term.token {
		t.Fatalf("token did not grow: %d then %d", term.token, next.token)
	}
	select {
	case <-a.done:
		t.Fatalf("a exited (%d) after losing its lease; it should campaign on", a.code)
	default:
	}
}

// TestBadInput: a bad command line exits 2 and names the flag and value.
func TestBadInput(t *testing.T) {
	t.Parallel()
	const srv = "nats://127.0.0.1:1"
	for _, tc := range []struct {
		args []string
		want []string // in the output
	}{
		{nil, []string{"Usage: ronin"}},
		{[]string{"frob"}, []string{`"frob"`}},
		{[]string{"run", "--bucket", "b", "--key", "k", "--", "true"}, []string{"--server"}},
		{[]string{"run", "--server", srv, "--key", "k", "--", "true"}, []string{`--bucket ""`, "required"}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--", "true"}, []string{`--key ""`}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--"}, []string{"no command", "--"}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k"}, []string{"no command"}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--ttl", "soon", "--", "true"}, []string{"-ttl", `"soon"`}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--ttl", "100ms", "--", "true"}, []string{"--ttl 100ms", "500ms"}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--grace", "-1s", "--", "true"}, []string{"--grace -1s"}},
		{[]string{"run", "--server", srv, "--bucket", "a b", "--key", "k", "--", "true"}, []string{`--bucket "a b"`}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "_ronin.x", "--", "true"}, []string{`--key "_ronin.x"`}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--id", "a b", "--", "true"}, []string{`--id "a b"`}},
		{[]string{"run", "--server", "http://127.0.0.1:1", "--bucket", "b", "--key", "k", "--", "true"}, []string{"--server", "http://127.0.0.1:1"}},
		{[]string{"run", "--server", srv, "--tlscert", "/dev/null", "--bucket", "b", "--key", "k", "--", "true"}, []string{"--tlskey"}},
		{[]string{"run", "--server", srv, "--creds", "/nonexistent.creds", "--bucket", "b", "--key", "k", "--", "true"}, []string{"--creds", "/nonexistent.creds"}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--", "/nonexistent/cmd"}, []string{`"/nonexistent/cmd"`}},
		{[]string{"run", "--server", srv, "--bucket", "b", "--key", "k", "--nope", "--", "true"}, []string{"-nope"}},
	} {
		cmd := exec.Command(roninBin, tc.args...)
		outb, err := cmd.CombinedOutput()
		code := 0
		if ee := (*exec.ExitError)(nil); errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != exitUsage {
			t.Errorf("ronin %q: exit code %d, want %d; output:\n%s", tc.args, code, exitUsage, outb)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(outb), w) {
				t.Errorf("ronin %q: output lacks %q:\n%s", tc.args, w, outb)
			}
		}
	}
}
