package main

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/nonchan7720/ronin/integration/chaos/check"
)

// maxListed bounds the violations written into report.md; all of them are
// in violations.json.
const maxListed = 50

// report renders report.md.
func report(rec *runRecord, res check.Result, st eventStats, diags []string) string {
	var b strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	tl := rec.Timeline
	checked := time.Duration(tl.End - tl.Start)

	p("# Ronin chaos report")
	p("")
	p("| | |")
	p("|---|---|")
	p("| seed | %d |", rec.Seed)
	p("| fault phase (-duration) | %s (checked window %s) |", rec.Duration, checked.Round(time.Second))
	p("| nodes | %d (%s), each its own process and network namespace |", len(rec.Nodes), strings.Join(rec.Nodes, ", "))
	p("| TTL | %s (quiet period after each recovery %s) |", rec.TTL, rec.Quiet)
	p("| shards / plain keys | %d / %d |", rec.Shards, rec.Keys)
	p("| orphan limit | TTL + %s allowance (Raft election up to 9 s after a stream leader dies, + TTL/2 for the nodes' session retries, + 1 s) outside quorum loss |", tl.Allowance)
	p("| down time | any gap between ticks longer than %s |", tl.DownGap)
	p("| events read | %d from %d files (%d unparsable lines skipped) |", st.Events, st.Files, st.Bad)
	p("")
	p("Replay: `%s`", rec.Replay)
	p("")

	p("## Violations: %d", len(res.Violations))
	p("")
	if len(res.Violations) == 0 {
		p("None: no two holders of a shard or key overlapped, every new term's token was above every earlier one (across %d faults, full restarts included), and no shard or key went without a holder for longer than TTL + allowance while a quorum was up.", len(tl.Faults))
	} else {
		counts := map[string]int{}
		for _, v := range res.Violations {
			counts[v.Kind]++
		}
		p("| kind | count |")
		p("|---|---|")
		for _, k := range slices.Sorted(maps.Keys(counts)) {
			p("| %s | %d |", k, counts[k])
		}
		p("")
		p("| at | kind | key | fault window | detail |")
		p("|---|---|---|---|---|")
		for i, v := range res.Violations {
			if i == maxListed {
				p("")
				p("… %d more in violations.json", len(res.Violations)-maxListed)
				break
			}
			p("| %s | %s | %s | %s | %s |", rel(v.At, tl.Start), v.Kind, v.Key, faultAt(tl.Faults, v.At), cell(v.Detail))
		}
	}
	p("")
	p("%s.", longestOrphan(res, tl))
	p("")

	p("## Faults injected")
	p("")
	counts := map[string]int{}
	for _, f := range tl.Faults {
		counts[f.Kind]++
	}
	p("| fault | count | what it does |")
	p("|---|---|---|")
	for _, k := range allKinds {
		p("| %s | %d | %s |", k, counts[k], kindDoc[k])
	}
	p("")
	if len(rec.Unsupported) > 0 {
		p("Unsupported here: %s.", strings.Join(rec.Unsupported, "; "))
		p("")
	}
	if len(rec.Skipped) > 0 {
		p("Skipped: %s.", strings.Join(rec.Skipped, "; "))
		p("")
	}

	p("## Availability and failover")
	p("")
	p("Availability is the share of time a shard (or plain key) had ticks from some holder, a gap over %s counting as down. Over the whole checked window: **shards %s, plain keys %s**.", tl.DownGap, pct(res.Availability.Shards), pct(res.Availability.Keys))
	p("")
	p("Per fault type, over the fault windows (injection to the end of the quiet period after recovery). Failover: injection to the first tick of a new term, for each shard or key whose holder was hit. Gap: the old term's last tick to the new term's first tick.")
	p("")
	p("| fault | n | avail shards | avail keys | shard failover p50 / p99 / max (n) | key failover p50 / p99 / max (n) | shard gap p50 / p99 | key gap p50 / p99 | not recovered | key moves | shard moves / ideal |")
	p("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, k := range res.Kinds {
		p("| %s | %d | %s | %s | %s | %s | %s | %s | %d | %d | %s |", k.Kind, k.Count, pct(k.Availability.Shards), pct(k.Availability.Keys),
			pcts(k.ShardFailover, true), pcts(k.KeyFailover, true), pcts(k.ShardGap, false), pcts(k.KeyGap, false), k.Unrecovered,
			k.Moves-k.ShardMoves, movesVsIdeal(k.ShardMoves, k.IdealShardMoves))
	}
	p("")

	p("## Moves")
	p("")
	p("%d moves (a key going to another node) in the checked window: %d of shards, %d of plain keys; %d outside any fault window.", res.Moves, res.ShardMoves, res.Moves-res.ShardMoves, res.QuietMoves)
	p("")
	var moved, ideal int
	for _, k := range res.Kinds {
		moved, ideal = moved+k.ShardMoves, ideal+k.IdealShardMoves
	}
	p("Shard moves in fault windows against the ideal (each shard that failed over to another node moves away and back once): %s (goal: at most 1.2 × ideal).", movesVsIdeal(moved, ideal))
	p("")
	if len(rec.Spread) > 0 {
		p("Shards per node once quiet (contract S1: floor or ceil of shards/nodes):")
		p("")
		for _, s := range rec.Spread {
			p("- %s", s)
		}
		p("")
	}

	p("## Fault timeline")
	p("")
	p("| fault | at | targets | detail | healed after | recovered after heal | affected | worst failover | availability shards / keys |")
	p("|---|---|---|---|---|---|---|---|---|")
	for _, f := range res.Faults {
		worst := time.Duration(0)
		for _, fo := range f.Failovers {
			worst = max(worst, fo.Failover)
		}
		healed, recovered := "-", "not in time"
		if f.Fault.Healed != 0 {
			healed = dur(f.Fault.Healed - f.Fault.Start)
		}
		if f.Fault.Recovered != 0 {
			recovered = dur(f.Fault.Recovered - max(f.Fault.Healed, f.Fault.Start))
		}
		affected := fmt.Sprint(len(f.Failovers) + len(f.Unrecovered))
		if len(f.Unrecovered) > 0 {
			affected += fmt.Sprintf(" (%d not recovered)", len(f.Unrecovered))
		}
		p("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |", f.Fault.Name, rel(f.Fault.Start, tl.Start), strings.Join(f.Fault.Targets, ","),
			cell(f.Fault.Detail), healed, recovered, affected, worst.Round(time.Millisecond), pct(f.Availability.Shards), pct(f.Availability.Keys))
	}
	p("")
	if len(tl.Excused) > 0 {
		var parts []string
		for _, e := range tl.Excused {
			parts = append(parts, fmt.Sprintf("%s–%s", rel(e.Start, tl.Start), rel(e.End, tl.Start)))
		}
		p("Windows without a quorum (excused from the orphan check): %s.", strings.Join(parts, ", "))
		p("")
	}

	p("## Node processes")
	p("")
	unexpected := 0
	for _, e := range rec.Exits {
		if !e.Expected {
			unexpected++
			p("- unexpected exit of %s at %s: %s", e.Node, rel(e.At, tl.Start), e.Status)
		}
	}
	p("%d exits, %d unexpected. Events per node: %s.", len(rec.Exits), unexpected, perNode(st.PerNode))
	if len(rec.SuiteErrors) > 0 {
		p("")
		p("Suite errors (the run is not valid): %s", strings.Join(rec.SuiteErrors, "; "))
	}
	p("")
	if len(diags) > 0 {
		p("Library diagnostics from the nodes (%d):", len(diags))
		p("")
		for i, d := range diags {
			if i == maxListed {
				p("- …")
				break
			}
			p("- %s", strings.SplitN(d, "\n", 2)[0])
		}
		p("")
	}

	p("## What this suite cannot reproduce")
	p("")
	p("- **Power loss of unsynced writes.** Every node shares one kernel and page cache: SIGKILL loses nothing that was written, so a run can neither show nor rule out the reissue of tokens after a correlated power loss. Ronin embeds with `SyncAlways` on by default; with `DisableSyncAlways` a power loss can lose acknowledged writes and so repeat fencing tokens (see the README).")
	p("- **Disk corruption** or a lost data dir: nodes restart with their data intact. A node whose data dir is wiped rejoins as a new replica; a bucket deleted under its nodes ends their leases (`ErrBucketGone`), and one Ronin creates anew starts its revisions above the old ones (they come from the clock).")
	p("- **Clock-rate drift beyond the margin.** All nodes read one machine's clocks. Safety assumes rates differ by much less than (TTL − RenewDeadline)/TTL; a host whose clock runs faster than that breaks E1 and no single-machine test can show it.")
	p("- **Suspend of a whole VM or machine**, whose monotonic clock stops while others run: SIGSTOP freezes a process but its clock keeps running. Ronin compares wall and monotonic progress on every renew for this case; it is covered by unit tests, not here.")
	p("- The last ~100 ms of a SIGKILLed node's events may be missing (buffered); that can only hide a violation inside those 100 ms, never invent one.")
	if len(rec.Unsupported) > 0 {
		p("- Faults unsupported on this machine: %s.", strings.Join(rec.Unsupported, "; "))
	}
	return b.String()
}

// kindDoc says what each fault does.
var kindDoc = map[string]string{
	kindKill9:      "SIGKILL one node; restart it with the same data dir after a pause longer than the TTL",
	kindStop:       "SIGSTOP one node for longer than the TTL, then SIGCONT",
	kindIsolate:    "blackhole routes between one node and all others, both ways; then heal",
	kindSplit:      "blackhole routes between a minority and the majority; then heal",
	kindNetem:      "tc netem delay and loss on one node's link; then remove",
	kindKillLeader: "SIGKILL the node leading the shard bucket's stream (per the status files); restart later",
	kindKillAll:    "SIGKILL every node at once; restart all with their data dirs (tokens must keep growing)",
	kindGraceful:   "SIGTERM one node (drain: shards handed over), restart it after a pause",
}

// longestOrphan says how close the run came to the orphan limit.
func longestOrphan(res check.Result, tl check.Timeline) string {
	limit := tl.TTL + tl.Allowance
	if res.LongestKey == "" {
		return fmt.Sprintf("No shard or key went without a holder for over %s outside quorum loss (limit %s)", tl.DownGap, limit)
	}
	l := res.Longest
	return fmt.Sprintf("Longest stretch without a holder outside quorum loss: %s (%s, %s to %s); limit TTL + allowance = %s",
		dur(l.End-l.Start), res.LongestKey, rel(l.Start, tl.Start), rel(l.End, tl.Start), limit)
}

func pct(x float64) string { return fmt.Sprintf("%.3f%%", 100*x) }

func dur(ns int64) string { return time.Duration(ns).Round(10 * time.Millisecond).String() }

func rel(ns, origin int64) string { return fmt.Sprintf("%.1fs", float64(ns-origin)/1e9) }

func pcts(p check.Percentiles, withMax bool) string {
	if p.N == 0 {
		return "-"
	}
	r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	if withMax {
		return fmt.Sprintf("%s / %s / %s (%d)", r(p.P50), r(p.P99), r(p.Max), p.N)
	}
	return fmt.Sprintf("%s / %s", r(p.P50), r(p.P99))
}

func faultAt(faults []check.Fault, t int64) string {
	for _, f := range faults {
		if f.Start <= t && t < f.End {
			return f.Name
		}
	}
	return "-"
}

func perNode(m map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

// cell makes s safe inside a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}

// movesVsIdeal prints shard moves beside their ideal and the ratio.
func movesVsIdeal(moves, ideal int) string {
	if ideal == 0 {
		return fmt.Sprintf("%d / 0", moves)
	}
	return fmt.Sprintf("%d / %d (%.2f×)", moves, ideal, float64(moves)/float64(ideal))
}
