//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/internal/status"
)

// statusUsage heads the help of `ronin status`; the flags follow.
const statusUsage = `Usage: ronin status --server URL [--bucket B[,B...]] [--json] [flags]

Prints every Ronin bucket (or the named ones) as the store shows it:
members and the age of their last renew, each key's leader and fencing
token, each shard's owner, ownerless shards marked. It only reads: it
creates no session and writes nothing. --json prints what the status
page's ?format=json does.

Flags (-flag and --flag are the same):
`

// statusMain runs `ronin status` and returns the exit code.
func statusMain(args []string, stdout, stderr io.Writer) int {
	var conn connFlags
	var buckets string
	var asJSON bool
	var timeout time.Duration
	fs := flag.NewFlagSet("ronin status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	conn.register(fs)
	fs.StringVar(&buckets, "bucket", "", "only these `buckets`, comma-separated (default: every Ronin bucket)")
	fs.BoolVar(&asJSON, "json", false, "print JSON")
	fs.DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fmt.Fprint(stdout, statusUsage)
			fs.PrintDefaults()
			return exitOK
		}
		fmt.Fprintf(stderr, "ronin status: %v\n", err)
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "ronin status: unexpected argument %q\n", fs.Arg(0))
		return exitUsage
	}
	if timeout <= 0 {
		fmt.Fprintf(stderr, "ronin status: --timeout %v: must be positive\n", timeout)
		return exitUsage
	}
	opts, err := conn.options()
	if err != nil {
		fmt.Fprintf(stderr, "ronin status: %v\n", err)
		return exitUsage
	}
	var names []string
	if buckets != "" {
		names = strings.Split(buckets, ",")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	n, err := readStatus(ctx, conn.server, opts, names)
	if err != nil {
		fmt.Fprintf(stderr, "ronin status: %v\n", err)
		return exitError
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		_ = enc.Encode(n)
		return exitOK
	}
	printStatus(stdout, n)
	return exitOK
}

// readStatus connects and reads the picture of the named buckets.
func readStatus(ctx context.Context, server string, opts []nats.Option, names []string) (status.Node, error) {
	nc, err := nats.Connect(server, append(opts, nats.Name("ronin status"))...)
	if err != nil {
		return status.Node{}, fmt.Errorf("connect to %s: %w", server, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return status.Node{}, err
	}
	return status.Read(ctx, js, names)
}

// printStatus writes n as text tables.
func printStatus(w io.Writer, n status.Node) {
	if len(n.Buckets) == 0 {
		fmt.Fprintln(w, "no Ronin buckets")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	defer tw.Flush()
	for i, b := range n.Buckets {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		fmt.Fprintf(tw, "bucket %s\tttl %s\treplicas %d\t%s\n", b.Name, time.Duration(b.TTLSeconds*float64(time.Second)), b.Replicas, bucketState(b))
		fmt.Fprintln(tw, "  MEMBER\tSESSION\tRENEWED\tSTATE")
		for _, m := range b.Members {
			state := "member"
			if m.Leaving {
				state = "leaving"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s\n", m.Node, m.Session, seconds(m.RenewedAgoSeconds), state)
		}
		if b.Shards != nil {
			fmt.Fprintf(tw, "  SHARD\tOWNER\tREV\tSINCE\t(%d ownerless)\n", b.Ownerless)
			for _, s := range b.Shards {
				owner := s.Node
				if s.Ownerless {
					owner = "NO OWNER"
				}
				fmt.Fprintf(tw, "  %d\t%s\t%s\t%s\n", s.Shard, owner, rev(s.Rev), age(n.Time, s.Since))
			}
			continue
		}
		fmt.Fprintln(tw, "  KEY\tLEADER\tNODE\tREV\tSINCE")
		for _, k := range b.Keys {
			leader := k.Candidate
			if leader == "" {
				leader = "-"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", k.Key, leader, k.Node, rev(k.Rev), age(n.Time, k.Since))
		}
	}
}

// bucketState says whether the picture can be trusted.
func bucketState(b status.Bucket) string {
	switch {
	case !b.Complete:
		return "VIEW INCOMPLETE"
	case !b.Genesis:
		return "no genesis record yet: nothing is granted for a TTL"
	}
	return "ok"
}

func rev(r uint64) string {
	if r == 0 {
		return "-"
	}
	return fmt.Sprint(r)
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(100 * time.Millisecond).String()
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return now.Sub(t).Round(100*time.Millisecond).String() + " ago"
}
