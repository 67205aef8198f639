// Package manager runs the NATS server that a Ronin node embeds and the one
// shared client connection that every election and shard layer uses.
//
// A [Manager] either embeds a nats-server with JetStream enabled (single
// node, or a cluster when [Config.Peers] names route URLs) or, when
// [Config.URL] is set, connects to an existing NATS deployment instead.
// [Manager.Start] returns only once JetStream answers requests, so callers can
// create key-value buckets straight away; [Manager.Shutdown] closes the
// connection, stops the embedded server and waits for it.
//
// What this package does not do: it holds no election or shard logic, creates
// no buckets or streams, and does not manage cluster membership beyond the
// static route list given at construction. It does not restart a server that
// stopped, and it does not hide JetStream's own availability rules: a
// clustered JetStream needs a quorum of its servers before Start can return.
// TLS, authentication and other server or connection settings are passed
// through unchanged via [Config.ServerOptions] and [Config.NATSOptions].
//
// Durability: the embedded server runs JetStream with SyncAlways (fsync on
// every write) unless [Config.DisableSyncAlways] is set, because losing
// acknowledged writes on a correlated power loss would reissue fencing
// tokens. In URL mode durability is the servers' own sync_interval setting
// (see [Config.URL]). In a cluster, buckets need more than one replica
// unless [Config.AllowSingleReplica] says otherwise ([Manager.Clustered]).
//
// One NodeID, one live node: [Manager.Start] fails with [ErrDuplicateNode]
// when it finds another live node with its NodeID, and every started
// Manager answers pings for its NodeID on "_RONIN.node.<NodeID>.ping". See
// Start for what the check cannot see.
package manager
