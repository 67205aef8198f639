package ronin

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/status"
)

// Leader is a key's leader as a node's view shows it; the zero value means
// the key has no leader.
type Leader struct {
	// CandidateID is the leader's CandidateConfig.CandidateID.
	CandidateID string
	// NodeID is the node the leader runs on.
	NodeID string
	// Rev is the leader's fencing token.
	Rev uint64
}

// Healthy returns nil while this node can write to its buckets, and
// otherwise an error that names the cause: ErrNotStarted, ErrClosed, or an
// error wrapping ErrUnavailable (disconnected from NATS, no quorum, no live
// session: reported within RenewDeadline of the loss) or ErrBucketGone.
// While unhealthy, the node's leaders have stepped down (or do so at their
// deadline) and it retries with backoff; it rejoins by itself when the store
// answers again.
func (m *Manager) Healthy() error {
	reg, err := m.registry()
	if err != nil {
		return err
	}
	select {
	case <-reg.Closing():
		return ErrClosed
	default:
	}
	if nc := m.node.Conn(); nc == nil || nc.Status() != nats.CONNECTED {
		st := "closed"
		if nc != nil {
			st = nc.Status().String()
		}
		return fmt.Errorf("%w: NATS connection %s", ErrUnavailable, st)
	}
	return reg.Health()
}

// Leader returns key's leader in bucket as the store shows it now, without
// campaigning: it opens the existing bucket with the settings stored in
// it, creates no session and writes nothing. It fails with an error
// wrapping ErrNoBucket if the bucket does not exist.
func (m *Manager) Leader(ctx context.Context, bucket, key string) (Leader, error) {
	b, stop, err := m.observe(ctx, bucket, key)
	if err != nil {
		return Leader{}, err
	}
	defer stop()
	if err := b.AwaitComplete(ctx); err != nil {
		return Leader{}, err
	}
	h, _ := b.Holder(key)
	return Leader{CandidateID: h.Candidate, NodeID: h.Node, Rev: h.Rev}, nil
}

// ObserveLeader sends key's leader in bucket now and at every change (a
// zero Leader while it has none) until ctx ends or the Manager shuts down,
// then closes the channel. Like Leader it campaigns for nothing, creates
// no session and is no member of any shard group. The channel keeps only
// the latest value for a slow reader.
func (m *Manager) ObserveLeader(ctx context.Context, bucket, key string) (<-chan Leader, error) {
	b, stop, err := m.observe(ctx, bucket, key)
	if err != nil {
		return nil, err
	}
	sub := b.Subscribe(key)
	out := make(chan Leader, 1)
	closing := m.reg.Closing()
	go func() {
		defer close(out)
		defer stop()
		defer b.Unsubscribe(sub)
		var last *Leader
		for {
			if h, complete := b.Holder(key); complete {
				l := Leader{CandidateID: h.Candidate, NodeID: h.Node, Rev: h.Rev}
				if last == nil || *last != l {
					select { // replace an unread value: the latest wins
					case <-out:
					default:
					}
					out <- l
					last = &l
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-closing:
				return
			case <-sub.C():
			}
			if b.Err() != nil {
				return
			}
		}
	}()
	return out, nil
}

func (m *Manager) observe(ctx context.Context, bucket, key string) (*engine.Bucket, func(), error) {
	if err := engine.ValidateKeyName("key", key); err != nil {
		return nil, nil, err
	}
	reg, err := m.registry()
	if err != nil {
		return nil, nil, err
	}
	return reg.Observe(ctx, bucket)
}

// Status is the picture of this node's buckets that StatusHandler shows.
type Status = status.Node

// Status returns what this node sees of every bucket it uses: members,
// each key's leader and token, each shard's owner, and whether its view is
// complete.
func (m *Manager) Status() Status {
	out := Status{Node: m.NodeID(), Time: time.Now(), Healthy: true, Buckets: []status.Bucket{}}
	if err := m.Healthy(); err != nil {
		out.Healthy, out.Problem = false, err.Error()
	}
	reg, err := m.registry()
	if err != nil {
		return out
	}
	m.mu.Lock()
	groups := make(map[string]*ShardGroup, len(m.groups))
	for name, g := range m.groups {
		groups[name] = g
	}
	m.mu.Unlock()
	for _, b := range reg.Buckets() {
		bs := status.FromSnapshot(b.Snapshot(), out.Time)
		if g := groups[bs.Name]; g != nil {
			bs.Group = &status.Group{Ready: g.Ready(), Draining: g.Draining(), Owned: len(g.Owned())}
		}
		out.Buckets = append(out.Buckets, bs)
	}
	return out
}

// StatusHandler serves m's status page: an HTML page (refreshing itself)
// listing every bucket the node uses with its members, each key's leader,
// each shard's owner (ownerless shards highlighted) and whether the node's
// view is complete; with ?format=json the same as JSON (type Status).
func StatusHandler(m *Manager) http.Handler {
	return status.Handler(func(*http.Request) status.Node { return m.Status() })
}
