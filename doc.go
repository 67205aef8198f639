// Package ronin is masterless high-availability leader election and shard
// assignment for Go, with no external coordination service: every node
// embeds a NATS server with JetStream, the nodes route to each other, and
// JetStream's Raft is the consensus engine. Users who run NATS already can
// point a Manager at their cluster instead (ServerConfig.URL).
//
// A Manager owns the node: the embedded server and one shared connection.
// NewCandidate makes a candidate for one bucket/key with Kubernetes-Lease
// semantics (Run, IsLeader, LeaderRev as fencing token, callbacks,
// OpenTelemetry metrics). RegisterShards makes a shard group: a bucket's
// fixed number of shards, spread evenly over the nodes that run the group,
// each won shard run by the user's ShardHandler with a ctx that ends with
// ownership and the ownership's fencing token.
//
// # The contract
//
// E1 One leader. For a bucket/key, at no instant do two candidates anywhere
// report IsLeader()==true, and no two shard handlers for one shard run with
// live contexts at once. This assumes only that clock rates are close
// (drift well under the TTL-RenewDeadline margin); wall clocks need not be
// synchronised.
//
// E2 Fencing. Every acquisition gets a token greater than every token ever
// issued for that key, across leader changes, node crashes and a full
// cluster kill -9 and restart (with SyncAlways, the default). Only
// acknowledged revisions are tokens.
//
// E3 Self-demotion. A leader that cannot renew stops by its own monotonic
// clock before anyone else can take over. IsLeader and a handler's
// ctx.Err() check the deadline on both clocks on every call, so a paused
// or suspended process never acts on stale leadership after it resumes.
// The handler ctx's Done (and every context derived from it, cancelled in
// the same step) closes when the deadline timer fires: at once after a
// pause, up to RenewDeadline late after a machine suspend. Check the
// handler's own ctx.Err() before acting, and pass rev downstream.
//
// E4 Liveness. A graceful resign hands over in milliseconds. A dead leader
// is replaced once its lease has run out (TTL plus a small slack).
//
// S1 Spread. With S shards over N live members, every member owns
// floor(S/N) or ceil(S/N) shards once the cluster is quiet.
//
// S2 Little movement. A join or a leave moves close to the minimum number of
// shards (about S/N) and never reshuffles the rest.
//
// S3 No orphans. While a quorum and one member live, every shard has a
// running handler; a shard without an owner for longer than the TTL is
// logged and visible in the shard.ownerless metric.
//
// S4 Drain. A member that stops gracefully hands its shards over before it
// exits: old handler's ctx cancelled and returned, then release, then the
// new owner starts. Per-shard gap: milliseconds.
//
// # What is not guaranteed
//
// Fencing tokens protect downstream systems only if those systems check
// them: a handler whose ctx was cancelled may still be in the middle of a
// write. Safety needs clock rates that agree within the TTL margin; a
// machine suspended while its wall clock is also stepped back can break
// it. With SyncAlways turned off, a correlated power loss can lose
// acknowledged writes and reissue tokens; in URL mode durability is the
// servers' sync_interval. With fewer than a quorum of servers up, nothing
// can be elected (but no second leader appears). A bucket deleted while in
// use ends its leaders' terms (Run returns ErrBucketGone) and is never
// recreated behind their backs; a new, recreated or purged bucket grants
// no leadership for one TTL (the genesis rule), so the first election in a
// fresh cluster takes about a TTL.
// See docs/safety.md for the argument.
package ronin
