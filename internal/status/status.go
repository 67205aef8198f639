// Package status is the picture of a node's buckets that the status page,
// its JSON and `ronin status` show: members, each key's leader, each
// shard's owner, from one node's view of the store.
package status

import (
	"cmp"
	"slices"
	"strings"
	"time"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/shard"
)

// Node is what one node (or one `ronin status` reader) sees.
type Node struct {
	// Node is the node's ID; "" for a reader that is no node.
	Node string `json:"node,omitempty"`
	// Time is when the picture was taken (the reader's wall clock).
	Time time.Time `json:"time"`
	// Healthy is false when the node cannot write to the store;
	// Problem then says why.
	Healthy bool   `json:"healthy"`
	Problem string `json:"problem,omitempty"`
	// Buckets are the buckets the node uses, by name.
	Buckets []Bucket `json:"buckets"`
}

// Bucket is one election bucket.
type Bucket struct {
	Name       string  `json:"name"`
	TTLSeconds float64 `json:"ttl_seconds"`
	Replicas   int     `json:"replicas"`
	// Complete is false while the view (re)reads the bucket: what it
	// shows may be missing entries.
	Complete bool `json:"complete"`
	// Genesis is false for a new, recreated or purged bucket, which
	// grants nothing for a TTL.
	Genesis bool `json:"genesis"`
	// Problem is this node's trouble with the bucket, "" if none.
	Problem string   `json:"problem,omitempty"`
	Members []Member `json:"members"`
	// Keys are the election keys of a bucket of candidates.
	Keys []Key `json:"keys,omitempty"`
	// Shards are the shards of a shard group's bucket, by id.
	Shards []Shard `json:"shards,omitempty"`
	// Ownerless counts the shards without a live owner.
	Ownerless int `json:"ownerless"`
	// Group is this node's part in the bucket's shard group, if it runs one.
	Group *Group `json:"group,omitempty"`
}

// Member is one live session.
type Member struct {
	Node    string `json:"node"`
	Session string `json:"session"`
	Leaving bool   `json:"leaving,omitempty"`
	// Self marks the session of the node showing the page.
	Self bool `json:"self,omitempty"`
	// RenewedAgoSeconds is the age of its last renew: the server time of
	// the write against this reader's clock, or how long this view has
	// seen the same revision, whichever is larger.
	RenewedAgoSeconds float64 `json:"renewed_ago_seconds"`
}

// Key is one election key.
type Key struct {
	Key       string `json:"key"`
	Candidate string `json:"candidate,omitempty"`
	Node      string `json:"node,omitempty"`
	// Rev is the leader's fencing token; 0 without a leader.
	Rev   uint64    `json:"rev,omitempty"`
	Since time.Time `json:"since,omitzero"`
}

// Shard is one shard of a shard group.
type Shard struct {
	Shard int    `json:"shard"`
	Node  string `json:"node,omitempty"`
	Rev   uint64 `json:"rev,omitempty"`
	// Since is when the owner took it, or, without an owner, the time of
	// its record's last write.
	Since     time.Time `json:"since,omitzero"`
	Ownerless bool      `json:"ownerless,omitempty"`
}

// Group is this node's part in a shard group.
type Group struct {
	Ready    bool `json:"ready"`
	Draining bool `json:"draining"`
	Owned    int  `json:"owned"`
}

// FromSnapshot turns one view of a bucket into its picture at now.
func FromSnapshot(s engine.Snapshot, now time.Time) Bucket {
	b := Bucket{
		Name:       s.Spec.Name,
		TTLSeconds: s.Spec.TTL.Seconds(),
		Replicas:   s.Spec.Replicas,
		Complete:   s.Complete,
		Genesis:    s.Genesis,
		Members:    []Member{},
	}
	if s.Err != nil {
		b.Problem = s.Err.Error()
	}
	for _, m := range s.Sessions {
		age := m.Unchanged
		if !m.Renewed.IsZero() {
			age = max(age, now.Sub(m.Renewed))
		}
		b.Members = append(b.Members, Member{Node: m.Node, Session: m.ID, Leaving: m.Leaving, Self: m.Own, RenewedAgoSeconds: age.Seconds()})
	}
	if n, ok := shard.Count(s.Spec); ok {
		for id := range n {
			h := s.Records[shard.Key(id)]
			sh := Shard{Shard: id, Node: h.Node, Rev: h.Rev, Since: h.Since, Ownerless: h.Candidate == ""}
			if sh.Ownerless {
				b.Ownerless++
			}
			b.Shards = append(b.Shards, sh)
		}
		return b
	}
	for key, h := range s.Records {
		if strings.HasPrefix(key, engine.ReservedPrefix) {
			continue
		}
		b.Keys = append(b.Keys, Key{Key: key, Candidate: h.Candidate, Node: h.Node, Rev: h.Rev, Since: h.Since})
	}
	slices.SortFunc(b.Keys, func(x, y Key) int { return cmp.Compare(x.Key, y.Key) })
	return b
}
