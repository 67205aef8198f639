//go:build unix

package main

import (
	"fmt"
	"io"
	"os"
)

// Exit codes of ronin itself (a command run by `ronin run` passes its own
// through; see the package documentation).
const (
	exitOK    = 0 // success, or stopped by SIGINT/SIGTERM
	exitError = 1 // ronin failed: connection, bucket, or the command could not start
	exitUsage = 2 // bad command line
)

// usage lists the subcommands.
const usage = `Usage: ronin <command> [flags]

Commands:
  run     run a command while this process leads a key
  status  print the buckets' members, leaders and shard owners

Run 'ronin <command> -h' for the flags of a command.
`

func main() {
	os.Exit(dispatch(os.Args[1:], os.Stdout, os.Stderr))
}

// dispatch runs the subcommand named by args[0] and returns the process's
// exit code. A new subcommand is one more case.
func dispatch(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return runMain(args[1:], stdout, stderr)
	case "status":
		return statusMain(args[1:], stdout, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		fmt.Fprintf(stderr, "ronin: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
}
