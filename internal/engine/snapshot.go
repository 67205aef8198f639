package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Snapshot is a bucket as one node's view shows it at one instant.
type Snapshot struct {
	// Spec is the bucket's settings.
	Spec BucketSpec
	// Complete reports whether the view holds the bucket's current state
	// (its watcher delivered every value); false while it (re)reads.
	Complete bool
	// Genesis reports whether the bucket's genesis record is present:
	// without it nothing is acquired (a new, recreated or purged bucket).
	Genesis bool
	// Sessions are the live sessions, sorted by node then id.
	Sessions []SessionInfo
	// Records are the election records by key: held keys and keys whose
	// holder released them or died. This node's own leases are included
	// even before its watcher delivered them.
	Records map[string]Holder
	// Err is the bucket's health (see Bucket.Health).
	Err error
}

// SessionInfo is one live session in a view.
type SessionInfo struct {
	// ID is the session's id, "<node>.<nonce>".
	ID string
	// Node runs the session.
	Node string
	// Leaving marks a member that drains.
	Leaving bool
	// Renewed is the server time of the session's last renew.
	Renewed time.Time
	// Unchanged is how long this view has seen the session's current
	// revision (since the view started, at most): a session unchanged for
	// the TTL is expired.
	Unchanged time.Duration
	// Own marks this node's own session.
	Own bool
}

// AwaitComplete waits until the view is complete or ctx ends.
func (b *Bucket) AwaitComplete(ctx context.Context) error {
	sub := b.SubscribeAll()
	defer b.Unsubscribe(sub)
	for {
		b.mu.Lock()
		synced, gone := b.v.synced, b.gone
		b.mu.Unlock()
		switch {
		case gone != nil:
			return gone
		case synced:
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bucket %q: view not complete: %w", b.spec.Name, ctx.Err())
		case <-sub.C():
		}
	}
}

// Snapshot returns the bucket as this node's view shows it now.
func (b *Bucket) Snapshot() Snapshot {
	err := b.Health()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now().Mono
	s := Snapshot{Spec: b.spec, Complete: b.v.synced, Genesis: b.v.genesis, Records: map[string]Holder{}, Err: err}
	own := b.ownIDLocked()
	for id, e := range b.v.sessions {
		info := SessionInfo{ID: id, Node: e.val.Node, Leaving: e.val.Leaving, Own: id == own, Renewed: e.at}
		if o, ok := b.v.obs.sessions[id]; ok {
			info.Unchanged = max(0, now-o.seen)
		}
		s.Sessions = append(s.Sessions, info)
	}
	slices.SortFunc(s.Sessions, func(a, b SessionInfo) int {
		return cmp.Or(strings.Compare(a.Node, b.Node), strings.Compare(a.ID, b.ID))
	})
	for key := range b.v.records {
		s.Records[key], _ = b.v.holder(key)
	}
	// This node's own leases, which its watcher may not have delivered
	// yet: the picture is what the node acts on.
	for key, l := range b.leases {
		if h := s.Records[key]; h.Rev < l.rev && l.Valid() {
			s.Records[key] = Holder{Candidate: l.candidate, Node: b.NodeID(), Rev: l.rev}
		}
	}
	return s
}
