// Package ronintest is Ronin's test harness, for Ronin's own tests and
// benchmarks and for applications that test code built on Ronin: clusters
// of real embedded NATS servers on loopback (Start, or NewCluster in a
// test; New and StartAll to run code on each node as soon as it started)
// with fault verbs (Kill, Stop, Restart, StopAll and StartAll for a
// whole-cluster restart, Partition and Heal through proxies on the routes,
// a Proxy that pauses a client), and the checkers that find a broken
// contract: History for candidates (overlapping leadership, tokens that do
// not grow) and ShardLog for shard handlers (two live handlers of one
// shard, tokens that do not grow).
//
// Everything listens on 127.0.0.1 only.
package ronintest
