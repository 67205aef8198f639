package engine

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
)

// maxWaiting bounds the keys one session advertises as waited for (see
// Wait). A node that campaigns for more keys advertises none: its renews
// stay small, and its keys are handed over by a release and a new
// election, two writes instead of one.
const maxWaiting = 16

// waiter is a candidate on this node that campaigns for a key it does not
// hold; take receives a lease handed over to it.
type waiter struct {
	candidate string
	take      func(*Lease) bool
}

// Wait registers candidate, which campaigns for key on this node, as a
// waiter. While this node holds no lease on key, its session advertises
// the key and the candidate, so that a holder on another node that
// resigns hands the key straight to it (Resign): one write, after which
// this node's watcher delivers a lease at that write's revision to take,
// which reports whether the candidate took it. take runs with the bucket
// locked: it must only store the lease. The returned function ends the
// wait; no take runs after it returned.
func (b *Bucket) Wait(key, candidate string, take func(*Lease) bool) (stop func()) {
	w := &waiter{candidate: candidate, take: take}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiters == nil {
		b.waiters = map[string][]*waiter{}
	}
	b.waiters[key] = append(b.waiters[key], w)
	b.kickLocked() // the keeper advertises it (refreshWaitingLocked)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.waiters[key] = slices.DeleteFunc(b.waiters[key], func(o *waiter) bool { return o == w })
		if len(b.waiters[key]) == 0 {
			delete(b.waiters, key)
		}
		b.kickLocked()
	}
}

// waitingChangedLocked wakes the keeper to advertise again if key is
// waited for here (a lease on it began or ended). A node waiting for more
// keys than it may advertise refreshes at its next renew instead: a
// thousand-key election would otherwise wake the keeper for every key.
func (b *Bucket) waitingChangedLocked(key string) {
	if len(b.waiters[key]) > 0 && len(b.waiters) <= maxWaiting {
		b.kickLocked()
	}
}

// refreshWaitingLocked puts the keys waited for here and not held into the
// session's value (see maxWaiting); a change is written by the next renew,
// which renewDue makes immediate.
func (b *Bucket) refreshWaitingLocked() {
	waiting := map[string]string{}
	for key, ws := range b.waiters {
		if b.leases[key] != nil {
			continue
		}
		if len(waiting) == maxWaiting {
			waiting = nil
			break
		}
		waiting[key] = ws[0].candidate
	}
	b.want.Waiting = ""
	if len(waiting) > 0 {
		b.want.Waiting = string(encode(waiting)) // sorted by key: the same set encodes the same
	}
	b.setWantLocked()
}

// waiterLocked returns a candidate that another node's live session
// advertises as waiting for key, with its node and session: of the
// sessions that do, the one of the lowest node ID.
func (b *Bucket) waiterLocked(key string) (candidate, node, session string, ok bool) {
	for _, id := range slices.Sorted(maps.Keys(b.v.sessions)) {
		val := b.v.sessions[id].val
		if val.Node == b.NodeID() || val.Leaving || val.Waiting == "" || ok && val.Node >= node {
			continue
		}
		var waiting map[string]string
		if json.Unmarshal([]byte(val.Waiting), &waiting) != nil || waiting[key] == "" {
			continue
		}
		candidate, node, session, ok = waiting[key], val.Node, id, true
	}
	return candidate, node, session, ok
}

// Resign ends l and hands its key to a candidate that waits for it on
// another node (see Wait) in one CAS at l's revision; with none in this
// node's view, it releases l. Call it only after the work done under l has
// stopped: the new holder starts as soon as the write lands.
func (b *Bucket) Resign(ctx context.Context, l *Lease) error {
	b.mu.Lock()
	candidate, node, session, ok := b.waiterLocked(l.key)
	if !ok {
		b.mu.Unlock()
		return b.Release(ctx, l)
	}
	b.log.Debug("ronin: handing the key to a waiting candidate", "key", l.key, "candidate", candidate, "node", node)
	return b.handOverLocked(ctx, l, record{Candidate: candidate, Node: node, Session: session, Handoff: true})
}
