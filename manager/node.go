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
	"syscall"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/nonchan7720/ronin/internal/clock"
)

// Timing of the duplicate-NodeID checks made by Start.
const (
	// nodePingTimeout bounds the wait for an answer to the NodeID ping. The
	// usual outcome, nobody subscribed, is reported by the server at once
	// (no responders); the timeout only runs out when a subscriber does not
	// answer, such as a crashed client the server has not yet noticed, or a
	// live node too busy to answer in time (a GC pause, a starved CPU).
	// Then the ping is sent once more, waiting nodePingRetryTimeout.
	nodePingTimeout      = 250 * time.Millisecond
	nodePingRetryTimeout = time.Second
	// routeProbeTimeout bounds the reading of the peers' route INFO lines.
	routeProbeTimeout = 500 * time.Millisecond
	// countStoringWait bounds the reading of the peers' route INFO lines
	// that countStoring retries: those that timed out, on a busy machine.
	countStoringWait = 2 * time.Second
	// countStoringPause spaces its attempts at one entry.
	countStoringPause = 50 * time.Millisecond
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
			info, err := readRouteInfo(ctx, hp)
			if err != nil {
				m.log.Debug("route peer not probed", "peer", hp, "err", err)
				return
			}
			if info.Name == m.cfg.NodeID {
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

// routeInfo is what Start reads from the INFO line of a route listener.
type routeInfo struct {
	Name      string `json:"server_name"`
	JetStream bool   `json:"jetstream"` // false on a route-only server
}

// routeServerName dials the route listener at hostport, reads the INFO
// line it sends first and returns its server_name. It closes the connection
// without sending anything.
func routeServerName(ctx context.Context, hostport string) (string, error) {
	info, err := readRouteInfo(ctx, hostport)
	return info.Name, err
}

// readRouteInfo dials the route listener at hostport, reads the INFO line
// it sends first and returns its server name and whether the server runs
// JetStream. It closes the connection without sending anything.
func readRouteInfo(ctx context.Context, hostport string) (routeInfo, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return routeInfo{}, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReaderSize(conn, routeInfoMax).ReadSlice('\n')
	if err != nil {
		return routeInfo{}, err
	}
	rest, ok := bytes.CutPrefix(line, []byte("INFO "))
	if !ok {
		return routeInfo{}, errors.New("no INFO line")
	}
	var info routeInfo
	if err := json.Unmarshal(bytes.TrimSpace(rest), &info); err != nil {
		return routeInfo{}, fmt.Errorf("bad INFO line: %w", err)
	}
	return info, nil
}

// countStoring returns the number of storing servers (JetStream on) among
// this node and the servers named by Peers, reading the INFO line of every
// Peers entry's route listener (attempts of routeProbeTimeout; one that
// failed otherwise than by a refused connection is retried within
// countStoringWait):
//
//   - an entry whose INFO says JetStream is off (a route-only server) does
//     not count, nor does one that carries this node's NodeID;
//   - entries that carry one server name count once;
//   - an entry that cannot be read (down, TLS on routes, not reached in
//     time) counts unless New took it for this node: a storing server
//     that is down still counts.
//
// This node counts unless it is route-only. It is called once JetStream
// answers and the NodeID is claimed, so this node's own listener answers
// with its name.
func (m *Manager) countStoring(ctx context.Context) int {
	ctx, cancel := context.WithTimeout(ctx, countStoringWait)
	defer cancel()
	type result struct {
		info routeInfo
		err  error
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results = make(map[string]result, len(m.peers))
	)
	for hp := range m.peers {
		wg.Go(func() {
			var r result
			for {
				actx, cancel := context.WithTimeout(ctx, routeProbeTimeout)
				r.info, r.err = readRouteInfo(actx, hp)
				cancel()
				if r.err == nil || errors.Is(r.err, syscall.ECONNREFUSED) || !clock.Sleep(ctx, clock.Real(), countStoringPause) {
					break
				}
			}
			mu.Lock()
			results[hp] = r
			mu.Unlock()
		})
	}
	wg.Wait()

	storing := make(map[string]bool) // server names, or entries if unnamed
	if !m.cfg.RouteOnly {
		storing[m.cfg.NodeID] = true
	}
	var routeOnly, unread []string
	for hp, r := range results {
		switch {
		case r.err == nil && r.info.Name == m.cfg.NodeID:
		case r.err == nil && !r.info.JetStream:
			routeOnly = append(routeOnly, hp)
		case r.err == nil && r.info.Name != "":
			storing[r.info.Name] = true
		case r.err == nil:
			storing[hp] = true
		case m.selfPeer[hp]:
		default:
			storing[hp] = true
			unread = append(unread, hp+": "+r.err.Error())
		}
	}
	n := len(storing)
	m.mu.Lock()
	estimate := m.clusterSize
	m.mu.Unlock()
	if n != estimate || len(unread) > 0 {
		m.log.Info("storing servers counted", "cluster_size", n, "estimate_from_peers", estimate,
			"route_only_peers", routeOnly, "unread_peers_counted", unread)
	}
	return n
}

// claimNodeID asks on the NodeID's ping subject whether another Manager
// with this NodeID is live, fails with ErrDuplicateNode if one answers,
// and otherwise subscribes to answer the pings of later Managers until the
// connection is closed. It returns once the server has the subscription.
func (m *Manager) claimNodeID(ctx context.Context, st *startup) error {
	subj := nodePingSubject(m.cfg.NodeID)
	var (
		msg *nats.Msg
		err error
	)
	for _, timeout := range []time.Duration{nodePingTimeout, nodePingRetryTimeout} {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		msg, err = st.nc.RequestWithContext(pctx, subj, nil)
		cancel()
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			break
		}
		m.log.Debug("NodeID ping unanswered: someone subscribes but did not answer in time", "timeout", timeout)
	}
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
