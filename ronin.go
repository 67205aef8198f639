package ronin

import (
	"context"
	"sync"
	"time"

	"github.com/nonchan7720/ronin/election"
	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/errs"
	"github.com/nonchan7720/ronin/internal/nodehook"
	"github.com/nonchan7720/ronin/internal/store/jsstore"
	"github.com/nonchan7720/ronin/manager"
)

// ServerConfig configures the node: the embedded NATS server (or an
// existing NATS cluster through URL) and its shared connection. See
// manager.Config for every field and its default.
type ServerConfig = manager.Config

// CandidateConfig configures a candidate for one bucket/key. See
// election.CandidateConfig for every field and its default.
type CandidateConfig = election.CandidateConfig

// Errors callers may test with errors.Is.
var (
	// ErrInvalidConfig wraps every configuration error; the message names
	// the field and the value.
	ErrInvalidConfig = errs.ErrInvalidConfig
	// ErrBucketMismatch means a bucket is used with other settings.
	ErrBucketMismatch = errs.ErrBucketMismatch
	// ErrNotStarted means the Manager was not started.
	ErrNotStarted = errs.ErrNotStarted
	// ErrClosed means the Manager is shut down; Run returns it when the
	// Manager shuts down under a running candidate or group.
	ErrClosed = errs.ErrClosed
	// ErrDuplicateNode means Start found another live node with the same
	// NodeID.
	ErrDuplicateNode = errs.ErrDuplicateNode
	// ErrAlreadyRunning means Run was called on a candidate or shard group
	// that is already running.
	ErrAlreadyRunning = errs.ErrAlreadyRunning
	// ErrBucketGone means a bucket was deleted (or deleted and created
	// anew) while in use: its leaders stepped down, and Run returns it.
	// Nothing recreates a bucket behind its users' backs.
	ErrBucketGone = errs.ErrBucketGone
	// ErrUnavailable means this node cannot write to the store now
	// (Healthy names the cause).
	ErrUnavailable = errs.ErrUnavailable
	// ErrNoBucket means Leader or ObserveLeader named a bucket that does
	// not exist.
	ErrNoBucket = errs.ErrNoBucket
)

// Timeouts of the Manager's own operations.
const (
	// RegisterTimeout bounds NewCandidate and RegisterShards, which open or
	// create the bucket in the store.
	RegisterTimeout = 30 * time.Second
	// ShutdownTimeout bounds how long Shutdown waits for running candidates
	// and shard groups to resign before it stops the server anyway.
	ShutdownTimeout = 30 * time.Second
)

// Manager runs one node: the embedded NATS server with JetStream, the
// shared connection, and the candidates and shard groups made from it.
type Manager struct {
	node *manager.Manager

	mu     sync.Mutex
	reg    *engine.Registry
	groups map[string]*ShardGroup // by bucket
}

// NewManager validates cfg and returns a Manager; nothing starts before
// Start. Bad input fails with an error wrapping ErrInvalidConfig.
func NewManager(cfg ServerConfig) (*Manager, error) {
	node, err := manager.New(cfg)
	if err != nil {
		return nil, err
	}
	return &Manager{node: node, groups: map[string]*ShardGroup{}}, nil
}

// Start starts the server and connection and returns once JetStream is
// usable, retrying unreachable servers until ctx ends. Errors no retry
// cures fail at once, wrapping the nats error: wrong credentials
// (nats.ErrAuthorization), a TLS certificate that does not verify, a
// standalone server without JetStream (jetstream.ErrJetStreamNotEnabled),
// another live node with this NodeID (ErrDuplicateNode). Nodes of a new
// cluster must be started concurrently: JetStream needs a quorum of them.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.node.Start(ctx); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reg = engine.NewRegistry(engine.Host{
		Store:              jsstore.Backend{JS: m.node.JetStream(), Description: "Ronin election bucket"},
		NodeID:             m.node.NodeID(),
		Logger:             m.node.Logger(),
		DefaultReplicas:    m.node.DefaultReplicas(),
		ClusterSize:        m.node.ClusterSize(),
		Clustered:          m.node.Clustered(),
		AllowSingleReplica: m.node.AllowSingleReplica(),
	})
	return nil
}

// Shutdown resigns every running candidate and drains every running shard
// group (so their keys move to other nodes at once, not after a TTL), then
// closes the connection and stops the server. It waits for all of it, at
// most ShutdownTimeout for the resignations. It is idempotent.
func (m *Manager) Shutdown() {
	m.mu.Lock()
	reg := m.reg
	m.mu.Unlock()
	if reg != nil && !reg.Close(ShutdownTimeout) {
		m.node.Logger().Warn("ronin: candidates did not resign in time; shutting down anyway", "timeout", ShutdownTimeout)
	}
	m.node.Shutdown()
}

// NewCandidate returns a candidate for cfg's bucket/key. It registers the
// bucket's settings at once (creating the bucket if needed), so a TTL or
// Replicas clash with other users of the bucket, here or in the cluster,
// is an error here (ErrBucketMismatch), not later from Run.
func (m *Manager) NewCandidate(cfg CandidateConfig) (*Candidate, error) {
	reg, err := m.registry()
	if err != nil {
		return nil, err
	}
	ctx, cancel := m.registerContext()
	defer cancel()
	c, err := election.NewCandidate(ctx, reg, cfg)
	if err != nil {
		return nil, err
	}
	return &Candidate{c: c}, nil
}

// NodeID is this node's ID.
func (m *Manager) NodeID() string { return m.node.NodeID() }

// ClientURL is where NATS clients can reach this node's server.
func (m *Manager) ClientURL() string { return m.node.ClientURL() }

func init() {
	nodehook.Of = func(mgr any) *manager.Manager { return mgr.(*Manager).node }
}

func (m *Manager) registry() (*engine.Registry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.reg == nil {
		return nil, ErrNotStarted
	}
	return m.reg, nil
}

// registerContext bounds a registration by RegisterTimeout and by Shutdown.
func (m *Manager) registerContext() (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), RegisterTimeout)
	go func() {
		select {
		case <-m.node.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
