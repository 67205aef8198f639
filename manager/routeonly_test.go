package manager

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nonchan7720/ronin/internal/testkit"
)

// TestRouteOnlyCluster runs 3 storing and 2 route-only nodes whose Peers
// name all five: the route-only servers run no JetStream yet serve the
// key-value API through their routes, and every node counts 3 storing
// servers.
func TestRouteOnlyCluster(t *testing.T) {
	base := baseline(t)
	const storing, routeOnly = 3, 2
	n := storing + routeOnly
	ports := testkit.FreePorts(t, 2*n)
	var peers []string
	for i := range n {
		peers = append(peers, routeURL(ports[n+i]))
	}
	ms := make([]*Manager, n)
	for i := range n {
		cfg := Config{ClientPort: ports[i], ClusterPort: ports[n+i], Peers: strings.Join(peers, ",")}
		if i < storing {
			cfg.NodeID = fmt.Sprintf("n%d", i+1)
		} else {
			cfg.NodeID = fmt.Sprintf("r%d", i-storing+1)
			cfg.RouteOnly = true
			cfg.DataDir = "unused" // newNode would set a temp dir; RouteOnly ignores it
		}
		ms[i] = newNode(t, cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make([]error, n)
	took := make([]time.Duration, n)
	var wg sync.WaitGroup
	began := time.Now()
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.Start(ctx); took[i] = time.Since(began) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s: %v", ms[i].NodeID(), err)
		}
	}
	t.Logf("started after %v", took)

	for i, m := range ms {
		if m.ClusterSize() != storing || m.DefaultReplicas() != 3 || !m.Clustered() {
			t.Errorf("%s: ClusterSize %d DefaultReplicas %d Clustered %t, want %d 3 true",
				m.NodeID(), m.ClusterSize(), m.DefaultReplicas(), m.Clustered(), storing)
		}
		if js := m.Server().JetStreamEnabled(); js != (i < storing) {
			t.Errorf("%s: JetStream enabled %t", m.NodeID(), js)
		}
	}
	putGet(t, ms[3], ms[4], "routeonly", 3) // written and read through route-only servers
	putGet(t, ms[4], ms[0], "routeonly2", 3)

	// A twin of a route-only node is refused. (Its Peers name r1, so the
	// check before its server starts sees r1; with the storing servers
	// only, the twin would be caught only by its server's refusal of the
	// route that gossip makes it open to r1, if that happens while its
	// Start runs: see Manager.Start.)
	twinPorts := testkit.FreePorts(t, 2)
	twin := newNode(t, Config{NodeID: "r1", RouteOnly: true, ClientPort: twinPorts[0], ClusterPort: twinPorts[1],
		Peers: strings.Join(peers, ","), DataDir: "unused"})
	err, d := startErr(twin)
	checkDuplicate(t, twin, err, d, "r1")
	twin.Shutdown()

	for _, m := range ms {
		wg.Go(m.Shutdown)
	}
	wg.Wait()
	checkNoLeaks(t, base)
}
