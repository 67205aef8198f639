// Package ronintest is Ronin's test harness, for Ronin's own tests and
// benchmarks and for applications that test code built on Ronin: clusters
// of real embedded NATS servers on loopback (Start, or NewCluster in a
// test) with fault verbs (Kill, Stop, Restart, Partition and Heal through
// proxies on the routes, a Proxy that pauses a client), and the checkers
// that find a broken contract: History for candidates (overlapping
// leadership, tokens that do not grow) and ShardLog for shard handlers (two
// live handlers of one shard, tokens that do not grow).
//
// Everything listens on 127.0.0.1 only.
package ronintest
