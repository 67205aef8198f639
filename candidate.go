package ronin

import (
	"context"

	"github.com/nonchan7720/ronin/election"
)

// Candidate campaigns for one key of one bucket with Kubernetes-Lease
// semantics. Make one with Manager.NewCandidate.
type Candidate struct{ c *election.Candidate }

// Run campaigns until ctx ends or the Manager shuts down, then resigns: a
// leader hands the key at once to a candidate waiting on another node (one
// write), or releases it if it knows of none, so the next candidate takes
// over in milliseconds; OnSteppingDown has run before that write. It returns
// nil when ctx ends, ErrClosed when the Manager shuts down, an error
// wrapping ErrBucketGone when the bucket is deleted under it, and
// ErrAlreadyRunning when it is running already. It may be called again
// after it returned.
func (c *Candidate) Run(ctx context.Context) error { return c.c.Run(ctx) }

// IsLeader reports whether this candidate leads now. It reads the clock on
// every call, so it turns false the instant the lease deadline passes,
// even in a process that was paused.
func (c *Candidate) IsLeader() bool { return c.c.IsLeader() }

// LeaderRev is the fencing token of the current term, 0 when not leading:
// constant during a term, greater for every new term of the key. Pass it
// to downstream writes so that they can refuse a stale leader.
func (c *Candidate) LeaderRev() uint64 { return c.c.LeaderRev() }

// ID is the candidate's CandidateID.
func (c *Candidate) ID() string { return c.c.ID() }
