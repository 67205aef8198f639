// Command fenced shows fenced downstream writes: shard handlers write to a
// store that refuses a write whose fencing token (the handler's rev) is
// older than the last token it accepted for that record, so an owner that
// lost its shard without knowing it cannot overwrite its successor's work.
//
// Two nodes run a 1-shard group. The owner (A) is cut off from the cluster
// without resigning; the other node (B) takes the shard over with a higher
// token after the TTL and writes. Then a write of A's, delayed until now,
// reaches the store and is refused.
//
//	go run ./examples/fenced
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/internal/loopback"
	"github.com/nonchan7720/ronin/internal/nodehook"
)

const ttl = 2 * time.Second

func main() {
	log.SetFlags(0)
	if err := run(); err != nil {
		log.Fatal(err)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// Two nodes on loopback. They stay up the whole time: with two
	// servers, both are needed for a JetStream quorum.
	nodes, err := startNodes(ctx, "n1", "n2")
	if err != nil {
		return err
	}
	// The downstream store: a KV bucket reached through its own
	// connection, as an application's database client would be.
	st, err := openStore(ctx, nodes[0].mgr.ClientURL())
	if err != nil {
		stopAll(nodes)
		return err
	}
	defer func() {
		stopAll(nodes) // handlers first: they write to the store
		st.close()
	}()

	// A 1-shard group on both nodes. Each handler writes the shard's record
	// once a second, carrying its rev as the fencing token.
	for _, n := range nodes {
		if err := n.join(st); err != nil {
			return err
		}
	}

	// Let the group settle, then find the owner: A.
	time.Sleep(2 * time.Second)
	var a, b *node
	err = waitFor(ctx, func() bool {
		for i, n := range nodes {
			if tok, ok := n.group.Owned()[0]; ok && n.lastWrite() == tok {
				a, b = n, nodes[1-i]
				return true
			}
		}
		return false
	})
	if err != nil {
		return err
	}
	staleRev := a.lastWrite()

	// Cut A off: its connection to the cluster closes and it resigns
	// nothing, as in a network partition. Its handler's ctx ends at the
	// local lease deadline; B takes the shard once A's session expires.
	fmt.Printf("-- cutting %s off the cluster (no resign)\n", a.id)
	cut := time.Now()
	nodehook.Of(a.mgr).Conn().Close() // only to simulate the partition
	if err := waitFor(ctx, func() bool { return b.lastWrite() > staleRev }); err != nil {
		return err
	}
	fmt.Printf("-- %s took over after %v\n", b.id, time.Since(cut).Round(10*time.Millisecond))
	time.Sleep(1500 * time.Millisecond)

	// A write of A's, issued before it was cut off and delayed (a long GC
	// pause, a slow network), arrives now with A's old token.
	fmt.Printf("-- a delayed write of %s's arrives with token %d\n", a.id, staleRev)
	err = st.write(ctx, "shard-0", staleRev, a.id+" (stale)")
	if !errors.Is(err, errFenced) {
		return fmt.Errorf("stale write was not refused: %v", err)
	}
	fmt.Printf("store refused it: %v\n", err)

	rec, err := st.read(ctx, "shard-0")
	if err != nil {
		return err
	}
	fmt.Printf("store: shard-0 = %+v\n", rec)
	return nil
}

// errFenced is the store's refusal of a write with an old token.
var errFenced = errors.New("fenced")

// record is what the store keeps per key: the value and the token of the
// write that stored it.
type record struct {
	Rev   uint64 `json:"token"`
	Value string `json:"value"`
}

// store is a KV bucket whose writes are fenced by token.
type store struct {
	nc *nats.Conn
	kv jetstream.KeyValue
}

func openStore(ctx context.Context, url string) (*store, error) {
	nc, err := nats.Connect(url)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, err
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "fenced_store"})
	if err != nil {
		nc.Close()
		return nil, err
	}
	return &store{nc: nc, kv: kv}, nil
}

func (s *store) close() { s.nc.Close() }

// write stores value under key if token is not older than the token of the
// stored record, and fails with errFenced otherwise.
//
// It is check-then-CAS: read the record and its revision in the store,
// check the token, then write with Update(key, value, revision) (Create for
// a new key), which fails if anything was written to the key since the
// read. So two concurrent writers cannot both pass the check: the second
// one's CAS fails, it reads again and its token is checked against the
// first one's.
func (s *store) write(ctx context.Context, key string, token uint64, value string) error {
	data, err := json.Marshal(record{Rev: token, Value: value})
	if err != nil {
		return err
	}
	for {
		var last record
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = s.kv.Create(ctx, key, data)
		case err != nil:
			return err
		default:
			if err := json.Unmarshal(e.Value(), &last); err != nil {
				return err
			}
			if token < last.Rev {
				return fmt.Errorf("%w: token %d is older than %d", errFenced, token, last.Rev)
			}
			_, err = s.kv.Update(ctx, key, data, e.Revision())
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // another write came first: check again
		}
		return err
	}
}

func (s *store) read(ctx context.Context, key string) (record, error) {
	var r record
	e, err := s.kv.Get(ctx, key)
	if err != nil {
		return r, err
	}
	return r, json.Unmarshal(e.Value(), &r)
}

// node is one Ronin node running the 1-shard group.
type node struct {
	id    string
	dir   string
	mgr   *ronin.Manager
	group *ronin.ShardGroup
	end   context.CancelFunc // ends the group's Run
	ran   chan struct{}      // closed when Run returned

	mu    sync.Mutex
	token uint64 // token of this node's last accepted write
}

// handler writes the shard's record every second while this node owns the
// shard, with rev as the fencing token.
func (n *node) handler(st *store) ronin.ShardHandler {
	return func(ctx context.Context, shardID int, rev uint64) error {
		fmt.Printf("%s: owns shard %d, token %d\n", n.id, shardID, rev)
		defer fmt.Printf("%s: handler stopped (token %d)\n", n.id, rev)
		key := fmt.Sprintf("shard-%d", shardID)
		for i := 1; ; i++ {
			if ctx.Err() != nil {
				return nil
			}
			err := st.write(ctx, key, rev, fmt.Sprintf("%s #%d", n.id, i))
			if err != nil && ctx.Err() != nil {
				return nil // ownership ended during the write
			}
			if err != nil {
				fmt.Printf("%s: write #%d with token %d: %v\n", n.id, i, rev, err)
			} else {
				fmt.Printf("%s: write #%d with token %d: ok\n", n.id, i, rev)
				n.mu.Lock()
				n.token = rev
				n.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

func (n *node) lastWrite() uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.token
}

// join registers the group on the node and runs it in the background.
func (n *node) join(st *store) error {
	g, err := n.mgr.RegisterShards(ronin.ShardConfig{
		BucketName: "fenced_demo",
		Shards:     1,
		TTL:        ttl,
		Handler:    n.handler(st),
	})
	if err != nil {
		return err
	}
	ctx, end := context.WithCancel(context.Background())
	n.group, n.end, n.ran = g, end, make(chan struct{})
	go func() { defer close(n.ran); _ = g.Run(ctx) }()
	return nil
}

// stop drains the group, shuts the node down and removes its data.
func (n *node) stop() {
	if n.end != nil {
		n.end()
		<-n.ran
	}
	n.mgr.Shutdown()
	os.RemoveAll(n.dir)
}

// stopAll stops the nodes concurrently.
func stopAll(nodes []*node) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(n.stop)
	}
	wg.Wait()
}

// startNodes starts a cluster of the named nodes on 127.0.0.1, with free
// ports and temporary data dirs, concurrently (JetStream needs a quorum).
func startNodes(ctx context.Context, ids ...string) ([]*node, error) {
	ports, err := loopback.FreePorts(2 * len(ids))
	if err != nil {
		return nil, err
	}
	var peers []string
	for i := range ids {
		peers = append(peers, fmt.Sprintf("nats://127.0.0.1:%d", ports[len(ids)+i]))
	}
	nodes := make([]*node, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			dir, err := os.MkdirTemp("", "ronin-fenced-")
			if err != nil {
				errs[i] = err
				return
			}
			m, err := ronin.NewManager(ronin.ServerConfig{
				NodeID:      id,
				Host:        "127.0.0.1",
				ClientPort:  ports[i],
				ClusterPort: ports[len(ids)+i],
				Peers:       strings.Join(peers, ","),
				DataDir:     dir,
				Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			if err == nil {
				err = m.Start(ctx)
			}
			if err != nil {
				os.RemoveAll(dir)
				errs[i] = err
				return
			}
			nodes[i] = &node{id: id, dir: dir, mgr: m}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, n := range nodes {
			if n != nil {
				n.stop()
			}
		}
		return nil, err
	}
	return nodes, nil
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
