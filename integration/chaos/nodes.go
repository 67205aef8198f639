package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// Ports of every node, each in its own namespace.
const (
	clientPort  = 4222
	clusterPort = 6222
)

// nodeStatus mirrors the node binary's status file.
type nodeStatus struct {
	Node          string              `json:"node"`
	Pid           int                 `json:"pid"`
	Ready         bool                `json:"ready"`
	ReadyAt       int64               `json:"ready_at"`
	Updated       int64               `json:"updated"`
	Owned         map[int]uint64      `json:"owned"`
	Leading       map[string]uint64   `json:"leading"`
	Members       []string            `json:"members"`
	StreamLeaders map[string]string   `json:"stream_leaders"`
	StreamPeers   map[string][]string `json:"stream_peers"`
}

// nodeExit is an exit of a node process.
type nodeExit struct {
	Node     string `json:"node"`
	At       int64  `json:"at"`
	Status   string `json:"status"`
	Expected bool   `json:"expected"`
}

// proc is one node: its files and its current process.
type proc struct {
	id, bin                          string
	net                              netNode
	args                             []string
	dataDir, events, status, logPath string

	mu       sync.Mutex
	cmd      *exec.Cmd
	pid      int
	expected bool          // the next exit is ours (kill, term)
	exited   chan struct{} // closed when the current process exited
	onExit   func(nodeExit)
}

// buildNode compiles the node binary into dir/bin/node.
func buildNode(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "bin", "node")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./node")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build node: %w\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the chaos suite's go.mod.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside the chaos module (run from integration/chaos)")
	}
	return filepath.Dir(gomod), nil
}

// newProcs prepares the nodes' files and arguments.
func newProcs(cfg config, bin string, nw *network, onExit func(nodeExit)) ([]*proc, error) {
	var peers []string
	for _, nd := range nw.nodes {
		peers = append(peers, fmt.Sprintf("nats://%s:%d", nd.IP, clusterPort))
	}
	var out []*proc
	for _, nd := range nw.nodes {
		p := &proc{
			id: nd.ID, bin: bin, net: nd,
			dataDir: filepath.Join(cfg.out, "data", nd.ID),
			events:  filepath.Join(cfg.out, "events", nd.ID+".jsonl"),
			status:  filepath.Join(cfg.out, "status", nd.ID+".json"),
			logPath: filepath.Join(cfg.out, "logs", nd.ID+".log"),
			onExit:  onExit,
		}
		for _, d := range []string{p.dataDir, filepath.Dir(p.events), filepath.Dir(p.status), filepath.Dir(p.logPath)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return nil, err
			}
		}
		p.args = []string{
			"-id", nd.ID, "-host", nd.IP,
			"-client-port", strconv.Itoa(clientPort), "-cluster-port", strconv.Itoa(clusterPort),
			"-peers", strings.Join(peers, ","), "-data", p.dataDir,
			"-ttl", cfg.ttl.String(), "-shards", strconv.Itoa(cfg.shards), "-keys", strconv.Itoa(cfg.keys),
			"-shard-bucket", shardBucket, "-key-bucket", keyBucket,
			"-events", p.events, "-status", p.status,
			"-selftest-stale", cfg.stale.String(),
		}
		out = append(out, p)
	}
	return out, nil
}

// start launches the node inside its namespace. ip netns exec execs the
// node, so the child's pid is the node's.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		return fmt.Errorf("%s already running", p.id)
	}
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_ = os.Remove(p.status) // a stale status must not look ready
	args := append([]string{"netns", "exec", p.net.NS, p.bin}, p.args...)
	cmd := exec.Command("ip", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The node dies with the orchestrator, even if that is SIGKILLed, and
	// has its own process group: a Ctrl-C reaches the orchestrator only,
	// which then stops the nodes in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("start %s: %w", p.id, err)
	}
	p.cmd, p.pid, p.expected = cmd, cmd.Process.Pid, false
	p.exited = make(chan struct{})
	exited := p.exited
	go func() {
		err := cmd.Wait()
		_ = logf.Close()
		p.mu.Lock()
		e := nodeExit{Node: p.id, At: event.Mono(), Status: exitString(err), Expected: p.expected}
		p.cmd, p.pid = nil, 0
		p.mu.Unlock()
		p.onExit(e)
		close(exited)
	}()
	return nil
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// running reports whether the node's process is alive and its pid.
func (p *proc) running() (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid, p.cmd != nil
}

// signal sends sig to the node; expectExit marks the resulting exit as ours.
func (p *proc) signal(sig syscall.Signal, expectExit bool) (<-chan struct{}, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return nil, fmt.Errorf("%s is not running", p.id)
	}
	if expectExit {
		p.expected = true
	}
	return p.exited, syscall.Kill(p.pid, sig)
}

// kill SIGKILLs the node and waits for it to be gone.
func (p *proc) kill() error {
	done, err := p.signal(syscall.SIGKILL, true)
	if err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("%s did not die after SIGKILL", p.id)
	}
}

// term SIGTERMs the node and waits up to timeout for a graceful exit, then
// SIGKILLs it. It reports whether the exit was graceful.
func (p *proc) term(timeout time.Duration) (bool, error) {
	done, err := p.signal(syscall.SIGTERM, true)
	if err != nil {
		return false, err
	}
	// A stopped process cannot handle SIGTERM.
	p.mu.Lock()
	if p.pid != 0 {
		_ = syscall.Kill(p.pid, syscall.SIGCONT)
	}
	p.mu.Unlock()
	select {
	case <-done:
		return true, nil
	case <-time.After(timeout):
		return false, p.kill()
	}
}

// readStatus reads the node's status if it belongs to its current process.
func (p *proc) readStatus() (nodeStatus, bool) {
	pid, ok := p.running()
	if !ok {
		return nodeStatus{}, false
	}
	b, err := os.ReadFile(p.status)
	if err != nil {
		return nodeStatus{}, false
	}
	var st nodeStatus
	if json.Unmarshal(b, &st) != nil || st.Pid != pid {
		return nodeStatus{}, false
	}
	return st, true
}
