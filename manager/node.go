package manager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Timing of the duplicate-NodeID checks made by Start.
const (
	// nodePingTimeout bounds the wait for an answer to the NodeID ping. The
	// usual outcome, nobody subscribed, is reported by the server at once
	// (no responders); the timeout only runs out when a subscriber does not
	// answer, such as a crashed client the server has not yet noticed.
	nodePingTimeout = 250 * time.Millisecond
	// routeProbeTimeout bounds the reading of the peers' route INFO lines.
	routeProbeTimeout = 500 * time.Millisecond
	// routeInfoMax caps the length of a route INFO line that is read.
	routeInfoMax = 64 << 10
)

// nodePingSubject returns the subject on which the Manager of nodeID answers
// pings while it runs: "_RONIN.node.<nodeID>.ping", with each '.' of the
// NodeID written "%2E" so that the NodeID is one subject token ('%' cannot
// occur in a NodeID, so distinct NodeIDs keep distinct subjects).
// pingFlushTimeout bounds the round trip that makes the NodeID
// subscription effective.
const pingFlushTimeout = 5 * time.Second

func nodePingSubject(nodeID string) string {
	return "_RONIN.node." + strings.ReplaceAll(nodeID, ".", "%2E") + ".ping"
}

// nodeAnswer is the body of an answer to a NodeID ping.
type nodeAnswer struct {
	Node      string `json:"node"`
	Server    string `json:"server,omitempty"`     // server the answering Manager is connected to
	ClientURL string `json:"client_url,omitempty"` // its ClientURL
	Embedded  bool   `json:"embedded"`
}

// probeRoutePeers reads the INFO line that the route listener of every
// Peers entry sends on accept, and fails with ErrDuplicateNode if one
// carries this node's name. It runs before this node's server starts, so no
// entry can be this node: a server that answers with NodeID is another
// live node. Entries that cannot be reached or read within
// routeProbeTimeout (not started yet, TLS on routes, other software) are
// skipped.
func (m *Manager) probeRoutePeers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, routeProbeTimeout)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		found string
	)
	for hp := range peerSet(m.cfg.Peers) {
		wg.Go(func() {
			name, err := routeServerName(ctx, hp)
			if err != nil {
				m.log.Debug("route peer not probed", "peer", hp, "err", err)
				return
			}
			if name == m.cfg.NodeID {
				mu.Lock()
				found = hp
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if found != "" {
		return fmt.Errorf("%w: NodeID %q is the server name of the live server at route address %s",
			ErrDuplicateNode, m.cfg.NodeID, found)
	}
	return nil
}

// routeServerName dials the route listener at hostport, reads the INFO
// line it sends first and returns its server_name. It closes the connection
// without sending anything.
func routeServerName(ctx context.Context, hostport string) (string, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReaderSize(conn, routeInfoMax).ReadSlice('\n')
	if err != nil {
		return "", err
	}
	rest, ok := bytes.CutPrefix(line, []byte("INFO "))
	if !ok {
		return "", errors.New("no INFO line")
	}
	var info struct {
		Name string `json:"server_name"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(rest), &info); err != nil {
		return "", fmt.Errorf("bad INFO line: %w", err)
	}
	return info.Name, nil
}

// claimNodeID asks on the NodeID's ping subject whether another Manager
// with this NodeID is live, fails with ErrDuplicateNode if one answers,
// and otherwise subscribes to answer the pings of later Managers until the
// connection is closed. It returns once the server has the subscription.
func (m *Manager) claimNodeID(ctx context.Context, st *startup) error {
	subj := nodePingSubject(m.cfg.NodeID)
	pctx, cancel := context.WithTimeout(ctx, nodePingTimeout)
	msg, err := st.nc.RequestWithContext(pctx, subj, nil)
	cancel()
	switch {
	case err == nil:
		var a nodeAnswer
		_ = json.Unmarshal(msg.Data, &a)
		return fmt.Errorf("%w: NodeID %q is in use by a live node (embedded %t, on server %q, client URL %q)",
			ErrDuplicateNode, m.cfg.NodeID, a.Embedded, a.Server, a.ClientURL)
	case ctx.Err() != nil:
		return fmt.Errorf("checking NodeID: %w", context.Cause(ctx))
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		// Nobody answered.
	default:
		return fmt.Errorf("checking NodeID on %s: %w", subj, err)
	}

	answer, err := json.Marshal(nodeAnswer{
		Node:      m.cfg.NodeID,
		Server:    st.nc.ConnectedServerName(),
		ClientURL: st.clientURL,
		Embedded:  st.srv != nil,
	})
	if err != nil {
		return err
	}
	sub, err := st.nc.Subscribe(subj, func(msg *nats.Msg) {
		if msg.Reply == "" {
			return
		}
		m.log.Warn("a node with this NodeID is starting elsewhere; it was refused")
		if err := msg.Respond(answer); err != nil {
			m.log.Warn("answering NodeID ping", "err", err)
		}
	})
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", subj, err)
	}
	st.pingSub = sub
	fctx, cancel := context.WithTimeout(ctx, pingFlushTimeout) // Flush needs a deadline
	defer cancel()
	if err := st.nc.FlushWithContext(fctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("subscribing to %s: %w", subj, context.Cause(ctx))
		}
		return fmt.Errorf("subscribing to %s: %w", subj, err)
	}
	if err := st.nc.LastError(); errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), subj) {
		return fmt.Errorf("subscribing to %s (the user needs publish and subscribe permission on _RONIN.>): %w", subj, err)
	}
	return nil
}
