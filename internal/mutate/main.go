// Command mutate shows that every guard of the protocol is tested: it
// removes one guard at a time from a copy of the module, runs the fast
// tests and a simulator slice against it, and prints which test caught the
// removal. `make mutate` runs it; it ends with "caught: K/N".
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// mutation removes one guard: each edit replaces text that must occur
// exactly once in file.
type mutation struct {
	guard string
	file  string
	edits [][2]string
	focus string // simulator fault mix that exercises the guard
}

var mutations = []mutation{
	{"postpone checks the revision", "internal/engine/observer.go",
		[][2]string{{"if s, ok := o.sessions[id]; ok && s.rev == rev {\n\t\ts.seen = max", "if s, ok := o.sessions[id]; ok {\n\t\ts.seen = max"}}, "slow"},
	{"hole 1 as reviewed: postpone without both guards", "internal/engine/observer.go",
		[][2]string{{"if s, ok := o.sessions[id]; ok && s.rev == rev {\n\t\ts.seen = max(s.seen, at-o.ttl)", "if s, ok := o.sessions[id]; ok {\n\t\ts.seen = at - o.ttl"}}, "observer"},
	{"postpone never brings an expiry forward", "internal/engine/observer.go",
		[][2]string{{"s.seen = max(s.seen, at-o.ttl)", "s.seen = at - o.ttl"}}, "slow"},
	{"kill only after TTL on the observer's clock", "internal/engine/observer.go",
		[][2]string{{"if id != skip && now-s.seen >= o.ttl {", "if id != skip && now-s.seen >= o.ttl/2 {"}}, "partition"},
	{"observer margin: holder stops at RenewDeadline < TTL", "internal/engine/session.go",
		[][2]string{{"d := newDeadline(sent, b.spec.RenewDeadline)", "d := newDeadline(sent, b.spec.TTL+b.spec.RetryPeriod)"}}, "partition"},
	{"IsLeader/Err read the clock", "internal/engine/session.go",
		[][2]string{{"return d != nil && d.valid(now)", "return d != nil"}}, "pause"},
	{"deadline valid by the wall clock too (suspend)", "internal/engine/deadline.go",
		[][2]string{{"return now.Mono < d.Mono && now.Wall.Before(d.Wall)", "return now.Mono < d.Mono"}}, "suspend"},
	{"wall/monotonic agreement on renew", "internal/engine/session.go",
		[][2]string{{"!s.lastSent.Wall.IsZero() && !clocksAgree(s.lastSent, sent, margin)", "false && !clocksAgree(s.lastSent, sent, margin)"}}, "suspend"},
	{"deadline never extended once passed", "internal/engine/session.go",
		[][2]string{{"if old := s.dl.Load(); old != nil && !old.valid(now) {", "if old := s.dl.Load(); false && old != nil && !old.valid(now) {"}}, "suspend"},
	{"kill is a CAS at the exact revision seen", "internal/engine/session.go",
		[][2]string{{"deleted, err := b.deleteSession(ctx, e.id, e.rev)", "deleted, err := b.deleteSession(ctx, e.id, 0)"}}, "slow"},
	{"handler returned before release", "shard/group.go",
		[][2]string{{"r.run.Stop(g.cfg.HandoffTimeout)", "go r.run.Stop(g.cfg.HandoffTimeout)"}}, "crash"},
	{"leaving mark before handoff", "shard/group.go",
		[][2]string{{"g.bucket.SetLeaving(true)\n\tdeadline :=", "g.bucket.SetLeaving(false)\n\tdeadline :="}}, "crash"},
	{"R1 refused in a cluster", "internal/engine/registry.go",
		[][2]string{{"case spec.Replicas == 1 && r.host.Clustered && !r.host.AllowSingleReplica:", "case false:"}}, ""},
	{"deleted bucket ends every lease (never recreated silently)", "internal/engine/bucket.go",
		[][2]string{{"if !errors.Is(err, store.ErrBucketGone) {\n\t\treturn false", "if true {\n\t\treturn false"}}, "delete"},
	{"nothing acquired without the genesis record", "internal/engine/bucket.go",
		[][2]string{{"b.gone == nil && b.v.synced && b.v.genesis && b.sess != nil", "b.gone == nil && b.v.synced && b.sess != nil"}}, "purge"},
	{"genesis written only a TTL after it was found missing", "internal/engine/session.go",
		[][2]string{{"b.grantAfter = now + b.spec.TTL\n", "b.grantAfter = now\n"}}, "purge"},
	{"genesis write follows an acknowledged renew", "internal/engine/session.go",
		[][2]string{{"case now < b.grantAfter || !acked:", "case now < b.grantAfter:"}}, "purge"},
	{"an unexplained conflict makes the node re-read the bucket", "internal/engine/session.go",
		[][2]string{{"case now-sp.at >= b.spec.RetryPeriod:\n\t\t\tstale = true", "case now-sp.at >= b.spec.RetryPeriod:\n\t\t\tstale = false"}}, "purge"},
	{"run registered before its handler starts", "shard/group.go",
		[][2]string{
			{"\tg.running[id] = r\n\tr.run = worker.Start(", "\tg.mu.Unlock()\n\tr.run = worker.Start("},
			{"OnExit:    func() { g.reap(r); g.signal() },\n\t})\n}", "OnExit:    func() { g.reap(r); g.signal() },\n\t})\n\ttime.Sleep(time.Millisecond)\n\tg.mu.Lock()\n\tg.running[id] = r\n}"},
		}, "crash"},
	{"a handover is adopted only by the session it names", "internal/engine/bucket.go",
		[][2]string{{"e.rec.Session != s.id ||", "false ||"}}, "crash"},
	{"OnSteppingDown returns before a resign hands over or releases the key", "election/candidate.go",
		[][2]string{{"\tc.stepDown()\n\tctx, cancel := context.WithTimeout(context.Background(), c.bucket.Spec().RequestTimeout())\n\tdefer cancel()\n\tif err := c.bucket.Resign(ctx, l); err != nil {\n\t\tc.log.Warn(\"ronin: release failed; the key frees when this node's session ends\", \"err\", err)\n\t}\n",
			"\tctx, cancel := context.WithTimeout(context.Background(), c.bucket.Spec().RequestTimeout())\n\tdefer cancel()\n\tif err := c.bucket.Resign(ctx, l); err != nil {\n\t\tc.log.Warn(\"ronin: release failed; the key frees when this node's session ends\", \"err\", err)\n\t}\n\tc.stepDown()\n"}}, ""},
	{"a record whose session the view has not seen is held", "internal/engine/view.go",
		[][2]string{{"if _, unseen := v.unseen[e.rec.Session]; unseen {", "if _, unseen := v.unseen[e.rec.Session]; false && unseen {"}}, ""},
	{"no CAS for a key taken while waiting for a write slot", "internal/engine/bucket.go",
		[][2]string{{"\tcase h.Candidate != \"\":\n\t\treturn 0, ErrHeld\n\tcase rev != casRev:", "\tcase false && h.Candidate != \"\":\n\t\treturn 0, ErrHeld\n\tcase false && rev != casRev:"}}, ""},
	{"records held here without a lease are freed (reconcile)", "internal/engine/session.go",
		[][2]string{{"if s == nil || !b.v.synced || !b.unsettled {", "if true {"}}, "crash"},
	{"reconcile looks again after a record changes", "internal/engine/bucket.go",
		[][2]string{{"\tif c.key != \"\" {\n\t\tb.unsettled = true", "\tif c.key != \"\" {"}}, "crash"},
	{"reconcile looks again after a lease ends", "internal/engine/bucket.go",
		[][2]string{{"\tdelete(b.leases, key)\n\tb.unsettled = true", "\tdelete(b.leases, key)"}}, "crash"},
	{"reconcile looks again while its deletes fail", "internal/engine/session.go",
		[][2]string{{"b.unsettled = len(todo) > 0", "b.unsettled = false"}}, "crash"},
	{"a watch moves off a server that stops (409 server shutdown)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"jetstream.ErrServerShutdown, ", ""}}, ""},
	{"a cold start waits for as many members as the cluster has servers", "shard/planner.go",
		[][2]string{{"return now.Mono < p.settleEnd.Mono || p.stretching(now)", "return now.Mono < p.settleEnd.Mono"}}, ""},
	{"members first seen while the window stretched are in the first plan", "shard/planner.go",
		[][2]string{{"\t\tp.settleEnd = now // the window lasted until now", "\t\t_ = now // the window lasted until now"}}, ""},
	{"a failed acquisition makes reconcile look again", "internal/engine/bucket.go",
		[][2]string{{"\t\tb.unsettled = true\n\t\tb.kickLocked()\n\t}\n\tif errors.Is(err, ErrNoSession) {", "\t\tb.kickLocked()\n\t}\n\tif errors.Is(err, ErrNoSession) {"}}, "purge"},
	{"a created record's lease waits for a renew sent after it", "internal/engine/bucket.go",
		[][2]string{{"if err == nil && casRev == 0 {", "if false {"}}, "purge"},
	{"a session acquires only on a read begun after it", "internal/engine/bucket.go",
		[][2]string{{" && b.syncedBy > b.sess.readsBefore", ""}}, ""},
	{"a new session re-reads the view", "internal/engine/session.go",
		[][2]string{{"\tif b.watchStop != nil {\n\t\tb.requestRewatchLocked()\n\t}", ""}}, ""},
	{"a new session restarts the genesis grace", "internal/engine/session.go",
		[][2]string{{"\tb.restartGraceLocked()\n\ts.readsBefore = b.reads", "\ts.readsBefore = b.reads"}}, "purge"},
	{"a due genesis record renews the session at once", "internal/engine/session.go",
		[][2]string{{"genesisDue && s.lastSent.Mono < b.grantAfter ||", "genesisDue && false ||"}}, "purge"},
	{"the genesis grace counts from the sync that lacked it", "internal/engine/bucket.go",
		[][2]string{{"\tif !b.v.genesis {\n\t\tb.kickLocked()", "\tif false {\n\t\tb.kickLocked()"}}, "purge"},
	{"a cold start ends once as many members as the cluster's servers are seen", "shard/planner.go",
		[][2]string{{"case p.expected > 0 && len(members) >= p.expected && !p.rejoin(now):", "case false:"}}, ""},
	{"a new session after a lost one opens the settle window (rejoin)", "shard/planner.go",
		[][2]string{{"\tif p.session != \"\" {\n\t\tp.settle(", "\tif false {\n\t\tp.settle("}}, ""},
	{"the group tells the planner its session (rejoin)", "shard/group.go",
		[][2]string{{"p.newSession(g.bucket.SessionID(), now, g.bucket.Registry().ClusterSize())", ""}}, ""},
	{"while rejoining, only shards of the full plan are taken or rescued (rejoin)", "shard/planner.go",
		[][2]string{{"if rejoining && p.full[id] != p.self {", "if rejoining && false {"}}, ""},
	{"while rejoining, a node takes its own shards at once (rejoin)", "shard/planner.go",
		[][2]string{{"len(holders) == 0 && !rejoining {", "len(holders) == 0 {"}}, ""},
	{"a rejoin window does not end on a count of stale members (rejoin)", "shard/planner.go",
		[][2]string{{"len(members) >= p.expected && !p.rejoin(now):", "len(members) >= p.expected:"}}, ""},
	{"while rejoining, members are adopted at once (rejoin)", "shard/planner.go",
		[][2]string{{"first.Mono <= p.settleEnd.Mono || p.rejoin(now)", "first.Mono <= p.settleEnd.Mono"}}, ""},
	{"a member that left is remembered: only its shards move", "shard/planner.go",
		[][2]string{{"if p.cfg.Remember <= 0 {", "if true {"}}, ""},
	{"PlanAway keeps the members' shards of the plan with the away members", "balancer/balancer.go",
		[][2]string{{"plan := Plan(shards, append(slices.Clone(ms), away...))", "plan := Plan(shards, ms)"}}, ""},
	{"API requests overlap while JetStream is silent", "internal/store/jsstore/retry.go",
		[][2]string{{"next = time.After(attemptEvery)", "next = nil"}}, ""},
	{"a session advertises the keys its candidates wait for", "internal/engine/waiters.go",
		[][2]string{{"waiting[key] = ws[0].candidate", "_ = ws[0].candidate"}}, ""},
	{"an ended wait is forgotten", "internal/engine/waiters.go",
		[][2]string{{"b.waiters[key] = slices.DeleteFunc(b.waiters[key], func(o *waiter) bool { return o == w })", "_ = w"}}, ""},
	{"a handed-over lease goes to the candidate its record names", "internal/engine/bucket.go",
		[][2]string{{"if w.candidate == e.rec.Candidate {", "if true {"}}, ""},
	{"a candidate stops waiting before it resigns", "election/candidate.go",
		[][2]string{{"stopWaiting() // no lease is handed to it from here on", "_ = stopWaiting"}}, ""},
	{"OnSteppingDown only after OnElected", "election/candidate.go",
		[][2]string{{"if l == nil || c.told != l {", "if l == nil {"}}, ""},
	{"OnElected once per lease", "election/candidate.go",
		[][2]string{{"if c.told == l {\n\t\treturn\n\t}", ""}}, ""},
	{"a watch's consumer requests overlap (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"if w.cc, err = overlap(octx, w.consume, answered, jetstream.ConsumeContext.Stop); err != nil {", "if w.cc, err = w.consume(octx); err != nil {"}}, ""},
	{"stream lookups overlap (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"return overlap(ctx, func(c context.Context) (jetstream.Stream, error) { return b.js.Stream(c, streamName(b.name)) }, answered, nil)", "return b.js.Stream(ctx, streamName(b.name))"}}, ""},
	{"a consumer from a losing attempt is stopped (jsstore)", "internal/store/jsstore/retry.go",
		[][2]string{{"if r := <-results; r.err == nil && discard != nil {", "if r := <-results; false {"}}, ""},
	{"missed heartbeats move the watch at once (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"jetstream.ErrNoHeartbeat, ", ""}}, ""},
	{"no responders move the watch at once (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"nats.ErrNoResponders, ", ""}}, ""},
	{"a deleted consumer moves the watch at once (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{", jetstream.ErrConsumerDeleted", ""}}, ""},
	{"a view showing the genesis record ends the grace at once", "internal/engine/bucket.go",
		[][2]string{{"if b.v.genesis && b.grantAfter != 0 {", "if false {"}}, "purge"},
	{"a replaced session restarts the others' countdowns", "internal/engine/session.go",
		[][2]string{{"\t\tb.v.obs.restart(b.clock.Now().Mono)\n", ""}}, ""},
	{"a view short of the session's create grants nothing", "internal/engine/bucket.go",
		[][2]string{{" &&\n\t\tb.v.lastRev >= b.sess.createdRev", ""}}, ""},
	{"a node without a live session expires nobody", "internal/engine/session.go",
		[][2]string{{"return b.v.synced && b.sess != nil && b.sess.valid(now)", "return b.v.synced"}}, ""},
	{"a node keeps its lost sessions until it can acquire again", "internal/engine/session.go",
		[][2]string{{"\tif !b.acquirableLocked(b.clock.Now()) {\n\t\tb.mu.Unlock()\n\t\treturn\n\t}\n\tdead := b.dead", "\tdead := b.dead"}}, ""},
	{"a node keeps its lost sessions until its view is read again", "internal/engine/session.go",
		[][2]string{{"\tif !b.acquirableLocked(b.clock.Now()) {\n\t\tb.mu.Unlock()\n\t\treturn\n\t}\n\tdead := b.dead", "\tif b.sess == nil || !b.sess.valid(b.clock.Now()) {\n\t\tb.mu.Unlock()\n\t\treturn\n\t}\n\tdead := b.dead"}}, ""},
	{"a node without a live session is not woken by others' expiries", "internal/engine/session.go",
		[][2]string{{"ok && b.expiresLocked(now) {", "ok && b.v.synced {"}}, ""},
	{"a cut-off node retries its session at most TTL/2 apart", "internal/engine/bucket.go",
		[][2]string{{"backoff.New(spec.RetryPeriod, spec.TTL/2)", "backoff.New(spec.RetryPeriod, spec.TTL)"}}, ""},
	{"a watch's move waits for a slow consumer answer (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"ctx, cancel := bounded(w.ctx)", "ctx, cancel := context.WithTimeout(w.ctx, watchHeartbeat/2)"}}, ""},
	{"a watch's initial values reach the stream's last revision (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"\tcase e.Rev < w.floor:\n\t\tgo w.move() // its replica is behind the stream: try another\n", ""}}, ""},
	{"a new consumer's deliveries wait for a bucket check (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"\t\tif w.gate == nil {\n\t\t\tw.gate = make(chan struct{})", "\t\tif false {\n\t\t\tw.gate = make(chan struct{})"}}, ""},
	{"a watch starts only on its own bucket incarnation (jsstore)", "internal/store/jsstore/jsstore.go",
		[][2]string{{"if err := b.same(st); err != nil {\n\t\treturn nil, err", "if err := b.same(st); err != nil && false {\n\t\treturn nil, err"}}, ""},
	{"a watch starts only on its own bucket incarnation (memstore)", "internal/store/memstore/memstore.go",
		[][2]string{{"\tif err == nil {\n\t\terr = b.same(inc)\n\t}", ""}}, ""},
	{"open waits for the stream's leader", "internal/store/jsstore/jsstore.go",
		[][2]string{{"if info.Cluster != nil && info.Cluster.Leader == \"\" {", "if false {"}}, ""},
	{"lease end cancels the handler ctx synchronously", "internal/engine/lease.go",
		[][2]string{{"\tfor _, f := range fs {\n\t\tf()\n\t}", "\tfor _, f := range fs {\n\t\tgo f()\n\t}"}}, ""},
	{"metrics: a provider that cannot be a map key gets meters of its own", "election/metrics.go",
		[][2]string{{"if !reflect.ValueOf(mp).Comparable() {", "if false && !reflect.ValueOf(mp).Comparable() {"}}, ""},
	{"metrics: the last candidate of a provider removes its meters", "election/metrics.go",
		[][2]string{{"\t\t\t\tdelete(shared.byProvider, key)\n", ""}}, ""},
}

var (
	scenarios = flag.Int("scenarios", 500, "simulator scenarios per mutation (per fault mix)")
	only      = flag.String("only", "", "run only guards whose name contains this")
	simOnly   = flag.Bool("sim-only", false, "skip the unit tests: show what the simulator alone catches")
)

func main() {
	flag.Parse()
	root, err := os.Getwd()
	check(err)
	files := gitFiles(root)
	fmt.Printf("%-58s | %-52s | %s\n", "guard", "caught by", "time")
	fmt.Printf("%s-|-%s-|-%s\n", strings.Repeat("-", 58), strings.Repeat("-", 52), strings.Repeat("-", 6))
	caught, total := 0, 0
	for _, m := range mutations {
		if *only != "" && !strings.Contains(m.guard, *only) {
			continue
		}
		total++
		start := time.Now()
		by, err := run(root, files, m)
		if err != nil {
			by = "ERROR: " + err.Error()
		} else if by != "" {
			caught++
		} else {
			by = "NOT CAUGHT"
		}
		fmt.Printf("%-58s | %-52s | %5.0fs\n", m.guard, by, time.Since(start).Seconds())
	}
	fmt.Printf("caught: %d/%d\n", caught, total)
	if caught != total {
		os.Exit(1)
	}
}

// run applies m to a fresh copy of the module and reports the first test
// that fails, "" if none does.
func run(root string, files []string, m mutation) (string, error) {
	dir, err := os.MkdirTemp("", "ronin-mutate-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(root, f))
		if err != nil {
			continue // deleted in the work tree
		}
		check(os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755))
		check(os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	path := filepath.Join(dir, m.file)
	src, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, e := range m.edits {
		if n := bytes.Count(src, []byte(e[0])); n != 1 {
			return "", fmt.Errorf("%s: guard text found %d times (stale mutation)", m.file, n)
		}
		src = bytes.Replace(src, []byte(e[0]), []byte(e[1]), 1)
	}
	check(os.WriteFile(path, src, 0o644))
	if out, err := command(dir, "go", "build", "./..."); err != nil {
		return "", fmt.Errorf("mutant does not build: %s", firstLine(out))
	}
	if !*simOnly {
		pkgs := []string{"./election/", "./internal/engine/", "./shard/", "./worker/"}
		switch {
		case strings.HasPrefix(m.file, "internal/store/"):
			pkgs = append(pkgs, "./internal/store/...") // the stores' own tests run real servers
		case strings.HasPrefix(m.file, "balancer/"):
			pkgs = append(pkgs, "./balancer/")
		}
		if out, err := command(dir, "go", append([]string{"test", "-count=1"}, pkgs...)...); err != nil {
			return failure(out, "unit"), nil
		}
		if out, err := command(dir, "go", "test", "-count=1", "-run", "TestDrainGap", "./internal/sim/"); err != nil {
			return failure(out, "unit"), nil
		}
	}
	for _, focus := range []string{"rotate", m.focus} {
		out, err := command(dir, "go", "test", "-count=1", "-timeout", "10m", "-run", "TestSim|TestDrainGap", "./internal/sim",
			"-sim.scenarios", fmt.Sprint(*scenarios), "-sim.focus="+focus)
		if err != nil {
			return failure(out, "sim"+orNone(focus)), nil
		}
		if focus == m.focus {
			break
		}
	}
	return "", nil
}

func orNone(focus string) string {
	if focus == "" {
		return ""
	}
	return " (" + focus + ")"
}

var (
	failRe      = regexp.MustCompile(`--- FAIL: (\S+)`)
	violationRe = regexp.MustCompile(`t=\S+ (E1|E2|E3|E4|S1|S2|S3|S4)[^:]*:`)
	seedRe      = regexp.MustCompile(`seed (\d+): `)
	panicRe     = regexp.MustCompile(`panic: (.{0,40})`)
)

// failure names what failed: the simulator's first violation and seed, a
// panic, or the first failing test.
func failure(out, suite string) string {
	if v := violationRe.FindStringSubmatch(out); v != nil {
		seed := ""
		if s := seedRe.FindStringSubmatch(out); s != nil {
			seed = " seed " + s[1]
		}
		return fmt.Sprintf("%s: %s violation%s", suite, v[1], seed)
	}
	if p := panicRe.FindStringSubmatch(out); p != nil {
		return fmt.Sprintf("%s: panic %s", suite, strings.TrimSpace(p[1]))
	}
	if f := failRe.FindStringSubmatch(out); f != nil {
		return fmt.Sprintf("%s: %s", suite, f[1])
	}
	return suite + ": " + firstLine(out)
}

func command(dir, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var b bytes.Buffer
	cmd.Stdout, cmd.Stderr = &b, &b
	err := cmd.Run()
	return b.String(), err
}

func gitFiles(root string) []string {
	out, err := command(root, "git", "ls-files", "-co", "--exclude-standard")
	check(err)
	return strings.Fields(out)
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutate:", err)
		os.Exit(2)
	}
}
