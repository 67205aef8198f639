package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/chaos/event"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

// Status is what the node tells the orchestrator, rewritten every
// statusPeriod (written to a temporary file and renamed, so readers never
// see half of it).
type Status struct {
	Node    string `json:"node"`
	Pid     int    `json:"pid"`
	Ready   bool   `json:"ready"`
	ReadyAt int64  `json:"ready_at,omitempty"` // CLOCK_MONOTONIC ns
	Updated int64  `json:"updated"`            // CLOCK_MONOTONIC ns
	// Owned maps each shard this node owns to its token.
	Owned map[int]uint64 `json:"owned"`
	// Leading maps each plain key this node leads to its token.
	Leading map[string]uint64 `json:"leading"`
	// Members are the shard group's live members as this node sees them.
	Members []string `json:"members"`
	// StreamLeaders maps each bucket to the server that leads its stream
	// (KV_<bucket>), as this node last learnt it.
	StreamLeaders map[string]string `json:"stream_leaders"`
	// StreamPeers maps each bucket to the servers that hold a replica of
	// its stream, leader included.
	StreamPeers map[string][]string `json:"stream_peers"`
	// OwnedPanics counts panics of ShardGroup.Owned (a library bug).
	OwnedPanics int `json:"owned_panics,omitempty"`
}

const (
	statusPeriod = 250 * time.Millisecond
	infoTimeout  = time.Second
)

type status struct {
	ev   *event.Writer
	path string
	mu   sync.Mutex
	st   Status
}

func newStatus(o options, pid int, ev *event.Writer) *status {
	s := &status{ev: ev, path: o.statusPath, st: Status{Node: o.id, Pid: pid, StreamLeaders: map[string]string{}, StreamPeers: map[string][]string{}}}
	s.write()
	return s
}

func (s *status) setReady(at int64) {
	s.mu.Lock()
	s.st.Ready, s.st.ReadyAt = true, at
	s.mu.Unlock()
	s.write()
}

// loop refreshes the status until ctx ends. Stream infos are fetched on
// their own goroutine: a stalled JetStream must not freeze the file. No
// library call is made while s.mu is held.
func (s *status) loop(ctx context.Context, mgr *ronin.Manager, g *ronin.ShardGroup, cands []*ronin.Candidate, buckets []string) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.streamLeaders(ctx, mgr, buckets) })
	t := time.NewTicker(statusPeriod)
	defer t.Stop()
	for {
		leading := map[string]uint64{}
		for i, c := range cands {
			if rev := c.LeaderRev(); rev != 0 {
				leading[keyName(i)] = rev
			}
		}
		owned, ok := s.owned(g)
		members := g.Members()
		s.mu.Lock()
		if ok {
			s.st.Owned = owned
		}
		s.st.Leading = leading
		s.st.Members = members
		s.mu.Unlock()
		s.write()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// owned calls g.Owned, turning a panic into a diagnostic event (and
// keeping the previous value): the suite must survive a library bug in a
// status call and report it.
func (s *status) owned(g *ronin.ShardGroup) (m map[int]uint64, ok bool) {
	defer func() {
		if p := recover(); p != nil {
			s.mu.Lock()
			s.st.OwnedPanics++
			n := s.st.OwnedPanics
			s.mu.Unlock()
			if n == 1 || n%100 == 0 {
				s.ev.Emit(event.Event{T: event.Mono(), Node: s.st.Node, Kind: event.Diag,
					Detail: fmt.Sprintf("ShardGroup.Owned panicked (%d times so far): %v", n, p)})
			}
			m, ok = nil, false
		}
	}()
	return g.Owned(), true
}

func (s *status) streamLeaders(ctx context.Context, mgr *ronin.Manager, buckets []string) {
	t := time.NewTicker(2 * statusPeriod)
	defer t.Stop()
	for {
		for _, b := range buckets {
			leader, peers := streamLeader(ctx, mgr, b)
			s.mu.Lock()
			s.st.StreamLeaders[b] = leader
			if len(peers) > 0 {
				s.st.StreamPeers[b] = peers
			}
			s.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// streamLeader is the leader of KV_<bucket> by a fresh Info ("" if
// unknown) and the servers holding its replicas.
func streamLeader(ctx context.Context, mgr *ronin.Manager, bucket string) (string, []string) {
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	js := nodehook.Of(mgr).JetStream()
	if js == nil {
		return "", nil
	}
	st, err := js.Stream(ictx, "KV_"+bucket)
	if err != nil {
		return "", nil
	}
	info, err := st.Info(ictx)
	if err != nil {
		info = st.CachedInfo()
	}
	if info == nil || info.Cluster == nil {
		return "", nil
	}
	var peers []string
	if info.Cluster.Leader != "" {
		peers = append(peers, info.Cluster.Leader)
	}
	for _, r := range info.Cluster.Replicas {
		peers = append(peers, r.Name)
	}
	if err != nil { // cached: the leader may be stale
		return "", peers
	}
	return info.Cluster.Leader, peers
}

func (s *status) write() {
	s.mu.Lock()
	s.st.Updated = event.Mono()
	b, err := json.Marshal(s.st)
	s.mu.Unlock()
	if err != nil {
		return
	}
	tmp := s.path + ".tmp"
	if os.WriteFile(tmp, b, 0o644) == nil {
		_ = os.Rename(tmp, s.path)
	}
}

func keyName(i int) string { return "key-" + strconv.Itoa(i) }
