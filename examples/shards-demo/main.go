// Command shards-demo runs a 16-shard Ronin group. By default it starts a
// local 3-node cluster in one process and prints the shard map whenever it
// changes, while it kills a node, restarts it, and stops another one
// gracefully. With -node it runs one node of a real cluster instead (as in
// deploy/kubernetes) until SIGTERM or SIGINT, then drains.
//
//	go run ./examples/shards-demo                          # the local demo; -v for the nodes' warnings
//	go run ./examples/shards-demo -http :8080 -metrics :9090  # ... with the status page and /metrics
//	shards-demo -node ronin-0 -peers nats://ronin-0.ronin-headless:6222,... \
//	    -host 0.0.0.0 -client-host 127.0.0.1 -data /data -http :8080 -metrics :9090
//
// Flags:
//
//	-http ADDR         serve the status page (/, /node/<id>/, ?format=json),
//	                   /healthz (200 while the process serves) and /readyz
//	                   (200 when the node is healthy and its shard group ready,
//	                   else 503 with the reason)
//	-metrics ADDR      serve Prometheus /metrics (OpenTelemetry's Prometheus exporter)
//	-shards N          shards of the group (default 16)
//	-ttl D             lease TTL (default 5s; the local demo uses 2s unless -ttl is set)
//	-v                 log the nodes' warnings to stderr (local demo)
//
// Single-node mode (one node of a real cluster):
//
//	-node ID           this node's ID; selects single-node mode
//	-peers URLs        comma-separated route URLs of the cluster (ServerConfig.Peers)
//	-host H            listen host of the route port (ServerConfig.Host)
//	-client-host H     listen host of the NATS client port (ServerConfig.ClientHost)
//	-data DIR          JetStream data directory (ServerConfig.DataDir)
//
// A bad flag value is reported with the flag's name, and the exit status
// is 2.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/election"
	"github.com/nonchan7720/ronin/shard"
)

const (
	// bucket is the shard group's bucket; leaderBucket holds one election
	// key that every node campaigns for (the demo's "coordinator").
	bucket       = "demo"
	leaderBucket = "demo-leader"
	leaderKey    = "coordinator"

	defaultShards = 16
	defaultTTL    = 5 * time.Second
	// localTTL is the local demo's TTL unless -ttl is set: short, so that
	// a killed node's shards move quickly.
	localTTL = 2 * time.Second
)

// options are the parsed and checked flags.
type options struct {
	verbose     bool
	httpAddr    string
	metricsAddr string

	node, peers, host, clientHost, data string

	shards int
	ttl    time.Duration
}

// usageError is a bad flag value: main prints it and exits 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func badFlag(name, value, format string, args ...any) error {
	return usageError{fmt.Sprintf("invalid value %q for flag -%s: %s", value, name, fmt.Sprintf(format, args...))}
}

// parseFlags parses and checks args. Errors from the flag package itself
// (an unknown flag, a value that does not parse) are reported by fs, with
// the usage, and returned as they are.
func parseFlags(fs *flag.FlagSet, args []string) (options, error) {
	var o options
	fs.BoolVar(&o.verbose, "v", false, "log the nodes' warnings to stderr (local demo)")
	fs.StringVar(&o.httpAddr, "http", "", "serve the status page, /healthz and /readyz on `ADDR`, e.g. :8080")
	fs.StringVar(&o.metricsAddr, "metrics", "", "serve Prometheus /metrics on `ADDR`, e.g. :9090")
	fs.StringVar(&o.node, "node", "", "run one node of a real cluster with this `ID` (single-node mode) instead of the local demo")
	fs.StringVar(&o.peers, "peers", "", "comma-separated route `URLs` of the cluster, e.g. nats://ronin-0.ronin-headless:6222,... (with -node)")
	fs.StringVar(&o.host, "host", "", "listen `host` of the route port, e.g. 0.0.0.0 (with -node; default 127.0.0.1)")
	fs.StringVar(&o.clientHost, "client-host", "", "listen `host` of the NATS client port (with -node; default -host)")
	fs.StringVar(&o.data, "data", "", "JetStream data `dir`ectory; keep it across restarts (with -node; default $TMPDIR/ronin/<ID>)")
	fs.IntVar(&o.shards, "shards", defaultShards, "`number` of shards of the group")
	fs.DurationVar(&o.ttl, "ttl", defaultTTL, "lease `TTL`; the local demo uses "+localTTL.String()+" unless -ttl is set")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, usageError{fmt.Sprintf("unexpected argument %q: the demo takes flags only", fs.Arg(0))}
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	if o.shards < 1 || o.shards > shard.MaxShards {
		return o, badFlag("shards", fmt.Sprint(o.shards), "must be between 1 and %d", shard.MaxShards)
	}
	if o.ttl < election.MinTTL {
		return o, badFlag("ttl", o.ttl.String(), "must be at least %v", election.MinTTL)
	}
	for _, f := range []struct{ name, addr string }{{"http", o.httpAddr}, {"metrics", o.metricsAddr}} {
		name, addr := f.name, f.addr
		if addr == "" && set[name] {
			return o, badFlag(name, addr, "want [host]:port, e.g. :8080")
		}
		if addr != "" {
			if err := checkListenAddr(addr); err != nil {
				return o, badFlag(name, addr, "%v", err)
			}
		}
	}
	if o.node == "" {
		if set["node"] {
			return o, badFlag("node", "", "want this node's ID, e.g. ronin-0")
		}
		for _, name := range []string{"peers", "host", "client-host", "data"} {
			if set[name] {
				return o, usageError{fmt.Sprintf("flag -%s needs -node: it configures the one node of single-node mode", name)}
			}
		}
		if !set["ttl"] {
			o.ttl = localTTL
		}
		return o, nil
	}
	if err := o.serverConfig(nil).Validate(); err != nil {
		return o, configError(err)
	}
	return o, nil
}

// checkListenAddr accepts [host]:port with a port number (0 picks one).
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("want [host]:port, e.g. :8080 (%v)", err)
	}
	if n, err := net.LookupPort("tcp", port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is no TCP port number", port)
	}
	return nil
}

// serverConfig is the single-node mode's ServerConfig.
func (o options) serverConfig(logger *slog.Logger) ronin.ServerConfig {
	return ronin.ServerConfig{
		NodeID:     o.node,
		Peers:      o.peers,
		Host:       o.host,
		ClientHost: o.clientHost,
		DataDir:    o.data,
		Logger:     logger,
	}
}

// flagOfField names the flag behind each ServerConfig field that a flag sets.
var flagOfField = map[string]string{
	"NodeID": "node", "Peers": "peers", "Host": "host", "ClientHost": "client-host", "DataDir": "data",
}

// configError turns ServerConfig.Validate's errors ("ronin: invalid config:
// Peers "x": ...", joined) into errors that name the flags.
func configError(err error) error {
	var lines []string
	for _, line := range strings.Split(err.Error(), "\n") {
		rest := strings.TrimPrefix(line, ronin.ErrInvalidConfig.Error()+": ")
		field, _, _ := strings.Cut(rest, " ")
		if name, ok := flagOfField[field]; ok {
			lines = append(lines, fmt.Sprintf("invalid value for flag -%s: %s", name, rest))
		} else {
			lines = append(lines, line)
		}
	}
	return usageError{strings.Join(lines, "\n")}
}

func main() {
	log.SetFlags(0)
	fs := flag.NewFlagSet("shards-demo", flag.ContinueOnError)
	o, err := parseFlags(fs, os.Args[1:])
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "shards-demo: %v\n(run shards-demo -h for the flags)\n", err)
		}
		os.Exit(2) // the flag package has printed its own errors with the usage
	}
	// SIGINT (Ctrl-C) or SIGTERM (Kubernetes) ends the run; the nodes are
	// then shut down cleanly.
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()

	if o.node != "" {
		err = runNode(ctx, o)
	} else {
		err = runLocal(ctx, o)
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(os.Stderr, "shards-demo: %v\n", err)
		os.Exit(2)
	case err != nil:
		log.Fatal(err)
	}
}
