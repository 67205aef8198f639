// Package nodehook hands Ronin's own harnesses (tests, benchmarks, the
// chaos nodes, demos that simulate a crash) the node behind a
// ronin.Manager: its embedded server, connection and JetStream context,
// which the public API keeps to itself.
package nodehook

import "github.com/nonchan7720/ronin/manager"

// Of returns the node behind mgr, which must be a *ronin.Manager. Package
// ronin sets it when it is initialised.
var Of func(mgr any) *manager.Manager

// Crash stops mgr's node as if its process died: the connection closes and
// the embedded server (if any) shuts down; nothing is resigned. It returns
// once the server has stopped. The Manager still needs Shutdown to release
// what is left.
func Crash(mgr any) {
	node := Of(mgr)
	node.Conn().Close()
	if s := node.Server(); s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}
