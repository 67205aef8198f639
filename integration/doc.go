// Package integration holds Ronin's tests against real embedded NATS
// servers on loopback; the harness they use is the public package
// integration/ronintest.
//
// Everything here listens on 127.0.0.1 only.
package integration
