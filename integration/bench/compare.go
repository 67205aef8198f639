package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"time"
)

// The comparison table sets the figures that Ronin, the naive per-key NATS
// lease and etcd's election recipe share side by side, with Ronin/etcd.

// Implementations in the comparison.
const (
	implRonin = "ronin"
	implNaive = "naive"
	implEtcd  = "etcd"
)

// keysFig is one keys-at-scale measurement; took is 0 where nothing is
// elected (the naive lease).
type keysFig struct {
	took   time.Duration
	st     steady
	failed string // what went wrong; the figures are then not comparable
}

type keysAt struct {
	impl string
	ttl  time.Duration
	k    int
}

// comparison collects figures as the cases record them.
type comparison struct {
	mu       sync.Mutex
	idle     map[string]steady
	handover map[string]sample
	crash    map[string]map[time.Duration]sample
	keys     map[keysAt]keysFig
}

func newComparison() *comparison {
	return &comparison{idle: map[string]steady{}, handover: map[string]sample{},
		crash: map[string]map[time.Duration]sample{}, keys: map[keysAt]keysFig{}}
}

func (c *comparison) setIdle(impl string, st steady) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle[impl] = st
}

func (c *comparison) setHandover(impl string, s sample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.handover[impl] = s
}

func (c *comparison) setCrash(impl string, ttl time.Duration, s sample) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.crash[impl] == nil {
		c.crash[impl] = map[time.Duration]sample{}
	}
	c.crash[impl][ttl] = s
}

func (c *comparison) setKeys(impl string, ttl time.Duration, k int, f keysFig) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.keys[keysAt{impl, ttl, k}] = f
}

// fig is one cell: a value and how to print it; ok false prints "—".
type fig struct {
	v    float64
	ok   bool
	fmt  string
	text string // printed instead of the value, for failures
}

func (f fig) String() string {
	if f.text != "" {
		return f.text
	}
	if !f.ok {
		return "—"
	}
	return fmt.Sprintf(f.fmt, f.v)
}

// ratio is Ronin/etcd, when both exist and etcd's is not zero.
func ratio(ronin, etcd fig) string {
	if !ronin.ok || !etcd.ok || etcd.v == 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f", ronin.v/etcd.v)
}

func msFig(d time.Duration, ok bool) fig { return fig{float64(d) / 1e6, ok, "%.1f ms", ""} }

// print writes the comparison table; nothing when etcd did not run.
func (c *comparison) print(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) == 0 && len(c.handover) == 0 && len(c.crash) == 0 && len(c.keys) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## Side by side: Ronin, a naive per-key NATS lease, etcd's election recipe")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Figure | Setting | n | Ronin | Naive NATS lease | etcd concurrency | Ronin/etcd |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	line := func(figure, setting, n string, ronin, naive, etcd fig) {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", cell(figure), cell(setting), cell(n), ronin, naive, etcd, ratio(ronin, etcd))
	}
	none := fig{}

	ri, rok := c.idle[implRonin]
	ei, eok := c.idle[implEtcd]
	line("Idle cluster: CPU, % of a core", "3 nodes / members, nothing running", "window", fig{100 * ri.cpu, rok, "%.1f", ""}, none, fig{100 * ei.cpu, eok, "%.1f", ""})
	line("Idle cluster: heap in use, MiB", "after GC, end of window", "", fig{ri.heap, rok, "%.0f", ""}, none, fig{ei.heap, eok, "%.0f", ""})

	rh, eh := c.handover[implRonin], c.handover[implEtcd]
	n := fmt.Sprintf("%d / %d", len(rh), len(eh))
	set := "TTL 5 s, 3 candidates, one per node; Ronin: leader's ctx cancelled → next OnElected; etcd: Resign → next Campaign returned"
	line("Graceful handover p50", set, n, msFig(rh.pct(50), len(rh) > 0), none, msFig(eh.pct(50), len(eh) > 0))
	line("Graceful handover p99", set, n, msFig(rh.pct(99), len(rh) > 0), none, msFig(eh.pct(99), len(eh) > 0))

	rc, ec := c.crash[implRonin][etcdCrashTTL], c.crash[implEtcd][etcdCrashTTL]
	n = fmt.Sprintf("%d / %d", len(rc), len(ec))
	set = fmt.Sprintf("TTL %s (etcd's minimum), leader's connection closed right after a renew", etcdCrashTTL)
	inTTL := func(d time.Duration, ok bool) fig {
		return fig{d.Seconds() / etcdCrashTTL.Seconds(), ok, "%.3f × TTL", ""}
	}
	line("Leader crash → next leader, p50", set, n, inTTL(rc.pct(50), len(rc) > 0), none, inTTL(ec.pct(50), len(ec) > 0))
	line("Leader crash → next leader, max", set, n, inTTL(rc.max(), len(rc) > 0), none, inTTL(ec.max(), len(ec) > 0))

	var ks []int
	for at := range c.keys {
		if at.ttl == etcdTTL && !slices.Contains(ks, at.k) {
			ks = append(ks, at.k)
		}
	}
	slices.Sort(ks)
	for _, k := range ks {
		r, rok := c.keys[keysAt{implRonin, etcdTTL, k}]
		a, aok := c.keys[keysAt{implNaive, etcdTTL, k}]
		e, eok := c.keys[keysAt{implEtcd, etcdTTL, k}]
		failed := func(f fig) fig {
			if eok && e.failed != "" {
				f.ok, f.text = false, strings.TrimPrefix(e.failed, "; ")
			}
			return f
		}
		set := fmt.Sprintf("TTL %s, %d keys × 3 candidates (Ronin: bucket past its genesis; naive: %d keys, one renewing holder each)", etcdTTL, k, k)
		line(fmt.Sprintf("%d keys: start → every key led", k), set, "1", msFig(r.took, rok), none, failed(msFig(e.took, eok)))
		line(fmt.Sprintf("%d keys: replicated writes/s, steady", k), set+"; Ronin, naive: KV stream messages; etcd: raft entries", "window",
			fig{r.st.writes, rok, "%.1f", ""}, fig{a.st.writes, aok, "%.1f", ""}, failed(fig{e.st.writes, eok, "%.1f", ""}))
		line(fmt.Sprintf("%d keys: CPU, %% of a core, steady", k), set+"; whole process", "window",
			fig{100 * r.st.cpu, rok, "%.1f", ""}, fig{100 * a.st.cpu, aok, "%.1f", ""}, failed(fig{100 * e.st.cpu, eok, "%.1f", ""}))
		line(fmt.Sprintf("%d keys: heap in use, MiB", k), set+"; after GC, end of window, whole process", "",
			fig{r.st.heap, rok, "%.0f", ""}, fig{a.st.heap, aok, "%.0f", ""}, failed(fig{e.st.heap, eok, "%.0f", ""}))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ronin/etcd below 1 means Ronin's figure is smaller (faster, cheaper). The etcd cluster runs before the NATS one starts,"+
		" in the same process, and is closed before it: CPU and heap of each are its own. \"—\": not measured in this run or not applicable"+
		" (the naive lease has no elections; etcd has no TTL below 2 s with default timers).")
}
