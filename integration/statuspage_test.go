package integration

import (
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin"
	"github.com/nonchan7720/ronin/integration/ronintest"
)

// statusPageOut is where TestStatusPage keeps its screenshots, relative to
// this package's directory: out/statuspage at the repository root.
const statusPageOut = "../out/statuspage"

// TestStatusPage looks at a node's status page through a real headless
// Chromium: a 3-node cluster runs a 16-shard group, and the page of one
// node must show every shard with an owner, spread over the 3 nodes. Then
// a node is killed (no resign), and the page must show every shard on a
// surviving node, none ownerless, within TTL + 1 s of the kill. It keeps a
// screenshot from before and after the kill in out/statuspage.
//
// Each --dump-dom run is timed by when the server rendered the page it
// shows. The runs that watch the kill are started before the cluster and
// held by the server until their moment (see timedPage), because
// Chromium's start-up takes seconds of CPU that would otherwise starve the
// cluster just when it takes over. The test also checks the handlers' log
// (no two live handlers for a shard, tokens grow).
func TestStatusPage(t *testing.T) {
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Skipf("no chromium binary on PATH (scripts/install-chromium.sh installs Debian's): %v", err)
	}
	const (
		bucket = "statuspage"
		shards = 16
		ttl    = 2 * time.Second
		limit  = ttl + time.Second
	)
	require.NoError(t, os.MkdirAll(statusPageOut, 0o755))
	before, after := filepath.Join(statusPageOut, "before.png"), filepath.Join(statusPageOut, "after.png")
	page := newTimedPage()
	srv := httptest.NewServer(page) // 127.0.0.1, a free port
	t.Cleanup(srv.Close)
	b := newBrowser(t, bin, page, srv.URL)
	t.Cleanup(func() { page.release(time.Now(), 0) }) // before the browser's: held loads end

	// The page loads to check. Chromium takes one to several seconds of
	// CPU to start, more on a busy machine, which would starve the cluster
	// (TTL 2 s) if it happened near the kill. So these loads start first,
	// before the cluster, and the server holds each request: "before" is
	// rendered once the cluster has settled, and each of the others at its
	// moment after the kill (the live page at that moment), all of them
	// sent after the last moment, so that Chromium does its work after the
	// takeover, not during it.
	openBefore := page.gate("before")
	t.Cleanup(openBefore)
	var loads []string
	for i, off := range sampleAt {
		load := fmt.Sprintf("after-%d", i)
		page.hold(load, off)
		loads = append(loads, load)
	}
	beforeDOM := make(chan pageSample, 1)
	go func() { beforeDOM <- b.dumpDOM("before") }()
	results := make(chan pageSample, len(loads))
	var launched sync.WaitGroup
	for _, load := range loads {
		time.Sleep(300 * time.Millisecond) // spread Chromium's start-up
		launched.Go(func() { results <- b.dumpDOM(load) })
	}
	require.NoError(t, page.awaitHeld(1+len(loads), 5*time.Minute), "every held page load reached the server")
	time.Sleep(2 * time.Second) // let Chromium settle

	c := ronintest.NewCluster(t, 3)
	log := ronintest.NewShardLog()
	cfg := shardConfig(bucket, shards, ttl)
	for i := range c.Size() {
		startGroup(t, c.Manager(i), cfg, log)
	}
	all := []string{"n1", "n2", "n3"}
	settled(t, log, shards, all, 30*time.Second)

	// The victim does not lead the bucket's stream: its death then costs
	// no JetStream Raft election, and the takeover is the TTL's alone
	// (TestShardsStreamLeaderCrash covers the other case). Another node
	// serves the page.
	victim, served := 2, 0
	if c.StreamLeader(bucket) == victim {
		victim = 1
	}
	victimID, servedID := c.Node(victim).Config.NodeID, c.Node(served).Config.NodeID
	var survivors []string
	for _, id := range all {
		if id != victimID {
			survivors = append(survivors, id)
		}
	}
	page.set(ronin.StatusHandler(c.Manager(served)))

	// The serving node's own view has caught up with the handlers.
	ronintest.Eventually(t, 10*time.Second, func() bool {
		owners := ownersOf(c.Manager(served).Status(), bucket)
		return len(owners) == shards && len(distinct(owners)) == 3
	}, "node %s's view shows all %d shards on 3 nodes", servedID, shards)

	openBefore()
	s := <-beforeDOM
	require.NoError(t, s.err)
	rows := parseShardRows(s.dom)
	require.Len(t, rows, shards, "shard rows on the page")
	for _, r := range rows {
		require.NotEmpty(t, r.node, "shard %d has an owner on the page", r.shard)
		require.False(t, r.ownerless, "shard %d is not marked ownerless", r.shard)
	}
	require.ElementsMatch(t, all, distinct(nodesOf(rows)), "shards spread over the 3 nodes")
	var members []string
	for _, m := range memberRowRE.FindAllStringSubmatch(s.dom, -1) {
		members = append(members, m[1])
	}
	require.ElementsMatch(t, all, distinct(members), "member rows") // a node may show twice while its old session expires
	require.Contains(t, s.dom, `data-healthy="true"`)
	t.Logf("page of %s before the kill: %s", servedID, spread(rows))
	require.NoError(t, b.screenshot(before))

	// The kill waits for calm: Chromium has exited, the shards are spread.
	time.Sleep(3 * time.Second)
	settled(t, log, shards, all, 30*time.Second)
	killAt := time.Now()
	page.release(killAt, sampleAt[len(sampleAt)-1]+500*time.Millisecond)
	c.Kill(victim) // a crash: connection and server gone, nothing resigned
	t.Logf("killed %s (%v to stop its server); %d loads of %s's page rendered at %v after the kill",
		victimID, time.Since(killAt).Round(time.Millisecond), len(loads), servedID, sampleAt)
	launched.Wait()
	close(results)
	var samples []pageSample
	for s := range results {
		samples = append(samples, s)
	}
	slices.SortFunc(samples, func(x, y pageSample) int { return x.at.Compare(y.at) })

	good := func(rows []shardRow) bool {
		for _, r := range rows {
			if r.ownerless || !slices.Contains(survivors, r.node) {
				return false
			}
		}
		return len(rows) == shards
	}
	var firstGood time.Duration = -1
	for _, s := range samples {
		require.NoError(t, s.err)
		since := s.at.Sub(killAt)
		rows := parseShardRows(s.dom)
		require.Len(t, rows, shards, "shard rows on the page")
		ok := good(rows)
		t.Logf("page rendered %.2fs after the kill (due at %v): %s%s", since.Seconds(), page.holdOf(s.load), spread(rows),
			map[bool]string{true: "  (all on survivors)", false: ""}[ok])
		switch {
		case ok && firstGood < 0:
			firstGood = since
		case !ok && firstGood >= 0:
			t.Errorf("page rendered %.2fs after the kill went back after the takeover: %s", since.Seconds(), spread(rows))
		case !ok && since > limit:
			t.Errorf("page rendered %.2fs after the kill, beyond TTL + 1 s, still shows shards of %s or ownerless ones: %s", since.Seconds(), victimID, spread(rows))
		}
	}
	page.mu.Lock()
	if page.abandoned > 0 {
		t.Logf("(Chromium gave up %d held requests and loaded again: those pages render late)", page.abandoned)
	}
	page.mu.Unlock()
	require.GreaterOrEqual(t, firstGood, time.Duration(0), "no page showed every shard on %v", survivors)
	require.LessOrEqual(t, firstGood, limit, "the page showed the takeover only %v after the kill", firstGood)
	t.Logf("first page with every shard on %v: rendered %v after the kill (limit TTL + 1 s = %v)", survivors, firstGood.Round(time.Millisecond), limit)

	require.NoError(t, b.screenshot(after))
	log.Check(t)
	abs := func(p string) string { a, _ := filepath.Abs(p); return a }
	t.Logf("screenshots: %s (before the kill), %s (after)", abs(before), abs(after))
}

// sampleAt are the moments after the kill at which the page is loaded:
// densely around the takeover (about one TTL after the kill) up to the
// limit, TTL + 1 s, then twice more to see that it stays.
var sampleAt = []time.Duration{
	1000 * time.Millisecond, 1750 * time.Millisecond, 2000 * time.Millisecond, 2250 * time.Millisecond,
	2500 * time.Millisecond, 2750 * time.Millisecond, 3000 * time.Millisecond, 4500 * time.Millisecond,
}

// shardRow is one shard's row of the status page's DOM.
type shardRow struct {
	shard     int
	node      string
	ownerless bool
}

var (
	shardRowRE  = regexp.MustCompile(`<tr class="(shard[^"]*)" data-shard="(\d+)" data-node="([^"]*)"`)
	memberRowRE = regexp.MustCompile(`<tr class="member[^"]*" data-node="([^"]*)"`)
)

func parseShardRows(dom string) []shardRow {
	var rows []shardRow
	for _, m := range shardRowRE.FindAllStringSubmatch(dom, -1) {
		id, _ := strconv.Atoi(m[2])
		rows = append(rows, shardRow{shard: id, node: m[3], ownerless: slices.Contains(strings.Fields(m[1]), "ownerless")})
	}
	return rows
}

func nodesOf(rows []shardRow) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r.node)
	}
	return out
}

// spread describes rows as "n1:6 n2:5 n3:5" (and "ownerless:k").
func spread(rows []shardRow) string {
	count := map[string]int{}
	for _, r := range rows {
		if r.ownerless || r.node == "" {
			count["ownerless"]++
		} else {
			count[r.node]++
		}
	}
	var parts []string
	for _, n := range slices.Sorted(maps.Keys(count)) {
		parts = append(parts, fmt.Sprintf("%s:%d", n, count[n]))
	}
	return strings.Join(parts, " ")
}

func distinct(xs []string) []string {
	out := slices.Clone(xs)
	slices.Sort(out)
	return slices.Compact(out)
}

// ownersOf returns the owners of bucket's shards that have one, as a
// Status shows them.
func ownersOf(s ronin.Status, bucket string) []string {
	var out []string
	for _, b := range s.Buckets {
		if b.Name != bucket {
			continue
		}
		for _, sh := range b.Shards {
			if !sh.Ownerless && sh.Node != "" {
				out = append(out, sh.Node)
			}
		}
	}
	return out
}

// timedPage serves a status page at / and records when it rendered the
// page for each load, which the browser names with ?load=. A load may be
// held: its page is rendered at the given time after the base that
// release sets, and sent at the base plus deliver, so that Chromium's work
// (parsing, layout, exit) does not load the machine while the cluster
// takes over.
type timedPage struct {
	page atomic.Pointer[http.Handler] // set once the cluster runs

	mu       sync.Mutex
	at       map[string]time.Time
	holds    map[string]time.Duration
	gates    map[string]chan struct{}
	held     int
	arrived  chan struct{}
	base     time.Time
	deliver  time.Duration
	released chan struct{}
	once     sync.Once
	// abandoned counts held requests whose client gave up waiting.
	abandoned int
}

func (p *timedPage) abandon() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.abandoned++
}

func newTimedPage() *timedPage {
	return &timedPage{
		at: map[string]time.Time{}, holds: map[string]time.Duration{}, gates: map[string]chan struct{}{},
		arrived: make(chan struct{}, 100), released: make(chan struct{}),
	}
}

func (p *timedPage) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/" {
		http.NotFound(w, r) // e.g. /favicon.ico
		return
	}
	load := r.URL.Query().Get("load")
	p.mu.Lock()
	off, hold := p.holds[load]
	gate, gated := p.gates[load]
	if hold || gated {
		p.held++
		p.arrived <- struct{}{}
	}
	p.mu.Unlock()
	switch {
	case gated:
		select {
		case <-gate:
			p.render(load, w, r)
		case <-r.Context().Done():
			p.abandon()
		}
		return
	case !hold:
		p.render(load, w, r)
		return
	}
	select {
	case <-p.released:
	case <-r.Context().Done():
		p.abandon()
		return
	}
	p.mu.Lock()
	due, deliver := p.base.Add(off), p.base.Add(p.deliver)
	p.mu.Unlock()
	if !sleepUntil(r, due) {
		p.abandon()
		return
	}
	page := httptest.NewRecorder()
	p.render(load, page, r)
	if !sleepUntil(r, deliver) {
		p.abandon()
		return
	}
	maps.Copy(w.Header(), page.Header())
	w.WriteHeader(page.Code)
	_, _ = page.Body.WriteTo(w)
}

// set makes page the page to serve.
func (p *timedPage) set(page http.Handler) { p.page.Store(&page) }

// render serves the page of load to w and records when.
func (p *timedPage) render(load string, w http.ResponseWriter, r *http.Request) {
	page := p.page.Load()
	if page == nil {
		http.Error(w, "no page yet", http.StatusServiceUnavailable)
		return
	}
	now := time.Now()
	p.mu.Lock()
	p.at[load] = now
	p.mu.Unlock()
	(*page).ServeHTTP(w, r)
}

// sleepUntil waits until t; false if r's client went away first.
func sleepUntil(r *http.Request, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// gate makes the request of load wait until open(load), and returns
// open.
func (p *timedPage) gate(load string) (open func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := make(chan struct{})
	p.gates[load] = ch
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

// hold makes the request of load wait for release, then until off after
// the base.
func (p *timedPage) hold(load string, off time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds[load] = off
}

func (p *timedPage) holdOf(load string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holds[load]
}

// awaitHeld waits until n held requests have arrived.
func (p *timedPage) awaitHeld(n int, timeout time.Duration) error {
	deadline := time.After(timeout)
	for {
		p.mu.Lock()
		held := p.held
		p.mu.Unlock()
		if held >= n {
			return nil
		}
		select {
		case <-p.arrived:
		case <-deadline:
			return fmt.Errorf("%d of %d held page loads arrived within %v", held, n, timeout)
		}
	}
}

// release lets the held requests go: each renders at base plus its
// offset, and all are sent at base plus deliver. Only the first call
// counts.
func (p *timedPage) release(base time.Time, deliver time.Duration) {
	p.once.Do(func() {
		p.mu.Lock()
		p.base, p.deliver = base, deliver
		p.mu.Unlock()
		close(p.released)
	})
}

func (p *timedPage) renderedAt(load string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	at, ok := p.at[load]
	return at, ok
}
