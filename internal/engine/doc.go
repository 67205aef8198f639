// Package engine is the election protocol on one node: for each bucket a
// view folded from one watcher (view.go), the node's session and the
// expiry of others' (session.go, observer.go, deadline.go), leases taken
// under the session (lease.go), acquisition and release by CAS
// (bucket.go), and the registry that opens each bucket once (registry.go).
// Candidates (package election) and shard groups (package shard) are its
// users; nothing outside the module can reach it. docs/safety.md argues
// why it keeps the contract.
package engine
