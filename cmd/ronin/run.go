//go:build unix

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/election"
)

// runUsage heads the help of `ronin run`; the flags follow.
const runUsage = `Usage: ronin run --server URL --bucket BUCKET --key KEY [flags] -- COMMAND [ARG...]

Campaigns for KEY in BUCKET and runs COMMAND while this process leads it,
with RONIN_TOKEN (the fencing token), RONIN_BUCKET, RONIN_KEY and RONIN_ID
added to its environment. When COMMAND exits by itself, ronin resigns and
exits with its exit code. See 'go doc github.com/nonchan7720/ronin/cmd/ronin'.

Flags (-flag and --flag are the same):
`

// runConfig is what the command line of `ronin run` asks for.
type runConfig struct {
	conn     connFlags
	natsOpts []nats.Option
	bucket   string
	key      string
	id       string
	ttl      time.Duration
	grace    time.Duration
	replicas int
	argv     []string // the command and its arguments
}

// parseRun parses and checks the arguments of `ronin run`. Errors name the
// flag and its value; flag.ErrHelp means help was asked for and printed.
func parseRun(args []string, stdout io.Writer) (runConfig, error) {
	var cfg runConfig
	fs := flag.NewFlagSet("ronin run", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are printed by the caller
	cfg.conn.register(fs)
	fs.StringVar(&cfg.bucket, "bucket", "", "`NAME` of the election bucket (required)")
	fs.StringVar(&cfg.key, "key", "", "`NAME` of the key to lead (required)")
	fs.StringVar(&cfg.id, "id", "", "node and candidate `ID`: letters, digits, '-', '_', '.' (default HOSTNAME-PID)")
	fs.DurationVar(&cfg.ttl, "ttl", 5*time.Second, "lease TTL: a dead leader is replaced after it; all users of the bucket must agree")
	fs.DurationVar(&cfg.grace, "grace", 0, "time the command gets to exit after SIGTERM before SIGKILL (default TTL/4)")
	fs.IntVar(&cfg.replicas, "replicas", 0, "bucket replicas (default 1, or 3 on a NATS cluster); all users of the bucket must agree")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, runUsage)
			fs.PrintDefaults()
		}
		return cfg, err
	}
	graceSet := false
	fs.Visit(func(f *flag.Flag) { graceSet = graceSet || f.Name == "grace" })

	var err error
	if cfg.natsOpts, err = cfg.conn.options(); err != nil {
		return cfg, err
	}
	if cfg.id == "" {
		cfg.id = defaultID()
	}
	cfg.argv = fs.Args()
	switch {
	case cfg.bucket == "":
		return cfg, errors.New(`--bucket "": required`)
	case cfg.key == "":
		return cfg, errors.New(`--key "": required`)
	case !validID(cfg.id):
		return cfg, fmt.Errorf("--id %q: only letters, digits, '-', '_' and '.' are allowed", cfg.id)
	case cfg.ttl < election.MinTTL:
		return cfg, fmt.Errorf("--ttl %v: must be at least %v", cfg.ttl, election.MinTTL)
	case cfg.grace < 0:
		return cfg, fmt.Errorf("--grace %v: must not be negative", cfg.grace)
	case cfg.replicas < 0:
		return cfg, fmt.Errorf("--replicas %d: must not be negative", cfg.replicas)
	case len(cfg.argv) == 0:
		return cfg, errors.New(`no command: give it after "--", e.g. ronin run --server URL --bucket B --key K -- ./worker`)
	}
	if err := election.ValidateBucketName("--bucket", cfg.bucket); err != nil {
		return cfg, configError(err)
	}
	if err := election.ValidateKeyName("--key", cfg.key); err != nil {
		return cfg, configError(err)
	}
	if _, err := exec.LookPath(cfg.argv[0]); err != nil {
		return cfg, fmt.Errorf("command %q: %v", cfg.argv[0], errors.Unwrap(err))
	}
	if !graceSet {
		cfg.grace = cfg.ttl / 4
	}
	return cfg, nil
}

// configError strips the library's ErrInvalidConfig prefix from err, whose
// message then starts with the field (here, the flag) and its value.
func configError(err error) error {
	return errors.New(strings.TrimPrefix(err.Error(), ronin.ErrInvalidConfig.Error()+": "))
}

// defaultID is HOSTNAME-PID with every character a NodeID may not hold
// replaced by '-'.
func defaultID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "ronin"
	}
	return strings.Map(func(r rune) rune {
		if validID(string(r)) {
			return r
		}
		return '-'
	}, fmt.Sprintf("%s-%d", host, os.Getpid()))
}

// validID reports whether s is a non-empty NodeID: letters, digits, '-',
// '_' and '.'.
func validID(s string) bool {
	return s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") == ""
}

// renewMargin is TTL minus the library's default RenewDeadline: the time
// between this process's lease deadline, when the command is told to stop,
// and the earliest moment another node may take the key over.
func renewMargin(ttl time.Duration) time.Duration {
	return ttl - time.Duration(float64(ttl)*election.DefaultRenewDeadlineRatio)
}

// runMain is `ronin run`: it returns the process's exit code.
func runMain(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseRun(args, stdout)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case err != nil:
		fmt.Fprintf(stderr, "ronin run: %v\nRun 'ronin run -h' for usage.\n", err)
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("id", cfg.id)
	if m := renewMargin(cfg.ttl); cfg.grace >= m {
		log.Warn("ronin run: --grace is not shorter than TTL minus the renew deadline: after a lost lease the command may still run when another node takes over; only RONIN_TOKEN protects downstream then",
			"grace", cfg.grace, "margin", m)
	}

	mgr, err := ronin.NewManager(ronin.ServerConfig{
		NodeID: cfg.id, URL: cfg.conn.server, NATSOptions: cfg.natsOpts, Logger: log,
	})
	if err != nil {
		fmt.Fprintf(stderr, "ronin run: --server: %v\nRun 'ronin run -h' for usage.\n", configError(err))
		return exitUsage
	}
	// Signals stay caught until runMain returns: a second one does not
	// cut the command's grace short. SIGHUP (a closed terminal) would
	// otherwise kill ronin without stopping the command first.
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	log.Info("ronin run: connecting to NATS; retrying until it answers")
	if err := mgr.Start(sigCtx); err != nil {
		if sigCtx.Err() != nil {
			return exitOK
		}
		log.Error("ronin run: cannot start", "err", err)
		return exitError
	}
	defer mgr.Shutdown()

	s := &supervisor{cfg: cfg, log: log, exited: make(chan int, 1)}
	cand, err := mgr.NewCandidate(ronin.CandidateConfig{
		CandidateID:    cfg.id,
		BucketName:     cfg.bucket,
		KeyName:        cfg.key,
		TTL:            cfg.ttl,
		Replicas:       cfg.replicas,
		OnElected:      s.elected,
		OnSteppingDown: s.steppedDown,
		OnLeaderChange: func(id string) { log.Info("ronin run: leader changed", "leader", id) },
	})
	if errors.Is(err, ronin.ErrInvalidConfig) { // e.g. --replicas above the servers
		fmt.Fprintf(stderr, "ronin run: %v\n", configError(err))
		return exitUsage
	} else if err != nil {
		log.Error("ronin run: cannot campaign", "bucket", cfg.bucket, "key", cfg.key, "err", err)
		return exitError
	}
	s.cand = cand // before Run: the callbacks run on Run's goroutine

	runCtx, resign := context.WithCancel(context.Background())
	defer resign()
	runErr := make(chan error, 1)
	go func() { runErr <- cand.Run(runCtx) }()

	code := exitOK
	select {
	case <-sigCtx.Done():
		log.Info("ronin run: signal received; stopping")
	case code = <-s.exited:
		log.Info("ronin run: command exited; resigning", "code", code)
	case err := <-runErr: // the bucket was deleted
		s.close()
		log.Error("ronin run: campaign ended", "err", err)
		return exitError
	}
	// The command stops before the key is given up (handed over or
	// released), so that it never overlaps its successor's term.
	s.close()
	resign()
	if err := <-runErr; err != nil {
		log.Error("ronin run: resign", "err", err)
	}
	return code
}

// supervisor runs the command while the candidate leads.
type supervisor struct {
	cfg    runConfig
	cand   *ronin.Candidate
	log    *slog.Logger
	exited chan int // the exit code of a command that exited by itself

	mu     sync.Mutex
	child  *child // the command of the current term, nil if none
	closed bool   // ronin is exiting: start no more commands
}

// elected is OnElected: it starts the command for the new term, unless the
// lease is already over (LeaderRev 0).
func (s *supervisor) elected() {
	token := s.cand.LeaderRev()
	s.mu.Lock()
	defer s.mu.Unlock()
	if old := s.child; old != nil {
		old.stop(s.cfg.grace) // the last term's: gone already, as steppedDown waited
	}
	if s.closed || token == 0 {
		return
	}
	env := append(os.Environ(),
		"RONIN_TOKEN="+strconv.FormatUint(token, 10),
		"RONIN_BUCKET="+s.cfg.bucket,
		"RONIN_KEY="+s.cfg.key,
		"RONIN_ID="+s.cfg.id)
	c, err := startChild(s.cfg.argv, env)
	if err != nil {
		s.log.Error("ronin run: cannot start the command", "err", err)
		s.report(exitError)
		return
	}
	s.log.Info("ronin run: command started", "pid", c.pid(), "token", token)
	s.child = c
	go s.watch(c)
}

// steppedDown is OnSteppingDown: it stops the command and returns once it
// is gone, so the candidate campaigns again only then.
func (s *supervisor) steppedDown() {
	s.mu.Lock()
	c := s.child
	s.mu.Unlock()
	if c != nil {
		s.log.Info("ronin run: leadership lost; stopping the command", "pid", c.pid())
		c.stop(s.cfg.grace)
	}
}

// close stops the command, if any, and lets no new one start.
func (s *supervisor) close() {
	s.mu.Lock()
	s.closed = true
	c := s.child
	s.mu.Unlock()
	if c != nil {
		c.stop(s.cfg.grace)
	}
}

// watch waits for c to exit and reports an exit of its own. Meanwhile it
// checks IsLeader, which reads the clock, every few milliseconds: the
// command is stopped as soon as the lease is invalid, even when the lease's
// timer fires late (after a machine suspend) or OnSteppingDown is delayed.
func (s *supervisor) watch(c *child) {
	tick := time.NewTicker(min(s.cfg.ttl/20, 100*time.Millisecond))
	defer tick.Stop()
	for stopping := false; ; {
		select {
		case <-c.done:
			s.mu.Lock()
			if s.child == c {
				s.child = nil
			}
			s.mu.Unlock()
			if c.stopping.Load() {
				s.log.Info("ronin run: command stopped", "pid", c.pid(), "code", c.code)
			} else {
				s.report(c.code)
			}
			return
		case <-tick.C:
			if !stopping && !s.cand.IsLeader() {
				stopping = true
				s.log.Info("ronin run: lease ended; stopping the command", "pid", c.pid())
				go c.stop(s.cfg.grace)
			}
		}
	}
}

// report hands the exit code of a command that ended by itself to runMain.
func (s *supervisor) report(code int) {
	select {
	case s.exited <- code:
	default:
	}
}
