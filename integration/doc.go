// Package integration holds Ronin's test harness and its tests against real
// embedded NATS servers on loopback: a cluster helper with fault verbs
// (Kill, Restart, Stop, Pause through a proxy) and a history checker that
// fails on overlapping leadership or tokens that do not grow.
//
// Everything here listens on 127.0.0.1 only.
package integration
