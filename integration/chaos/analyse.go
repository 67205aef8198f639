package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/nonchan7720/ronin/integration/chaos/check"
	"github.com/nonchan7720/ronin/integration/chaos/event"
)

// finish saves run.json, checks the histories and writes the report. It
// returns the number of violations.
func finish(out string, rec *runRecord) (int, error) {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(out, "run.json"), b, 0o644); err != nil {
		return 0, err
	}
	return analyse(out, rec)
}

// recheck redoes the analysis of the run saved in dir.
func recheck(dir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dir, "run.json"))
	if err != nil {
		return 0, err
	}
	var rec runRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return 0, fmt.Errorf("run.json: %w", err)
	}
	return analyse(dir, &rec)
}

// analyse reads the events, runs the checker and writes the report, the
// picture and violations.json.
func analyse(dir string, rec *runRecord) (int, error) {
	events, stats, err := readEvents(filepath.Join(dir, "events"))
	if err != nil {
		return 0, err
	}
	eff := *rec
	eff.Timeline = effectiveTimeline(rec, events)
	rec = &eff
	res := check.Check(events, rec.Timeline)
	if b, err := json.MarshalIndent(res.Violations, "", "  "); err == nil {
		_ = os.WriteFile(filepath.Join(dir, "violations.json"), b, 0o644)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(report(rec, res, stats, diagnostics(events))), 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(dir, "timeline.svg"), []byte(timelineSVG(rec, res, events)), 0o644); err != nil {
		return 0, err
	}
	fmt.Printf("chaos: report: %s\n", filepath.Join(dir, "report.md"))
	fmt.Printf("chaos: picture: %s\n", filepath.Join(dir, "timeline.svg"))
	fmt.Printf("chaos: %s\n", longestOrphan(res, rec.Timeline))
	printViolations(res.Violations, maxPrinted)
	return len(res.Violations), nil
}

// maxPrinted is how many violations the run prints beside violations.json,
// so that a CI log, which keeps only the tail, says what broke.
const maxPrinted = 20

// printViolations prints the first limit violations, one a line.
func printViolations(vs []check.Violation, limit int) {
	for _, v := range vs[:min(len(vs), limit)] {
		fmt.Printf("chaos: violation: %s %s: %s\n", v.Kind, v.Key, v.Detail)
	}
	if len(vs) > limit {
		fmt.Printf("chaos: ... and %d more in violations.json\n", len(vs)-limit)
	}
}

// diagnostics collects the nodes' diag events, one line per node and text.
func diagnostics(events []event.Event) []string {
	seen := map[string]bool{}
	var out []string
	for _, e := range events {
		if e.Kind == event.Diag {
			line := e.Node + ": " + e.Detail
			if !seen[line] {
				seen[line] = true
				out = append(out, line)
			}
		}
	}
	return out
}

// eventStats counts what was read.
type eventStats struct {
	Files, Events, Bad int
	PerNode            map[string]int
}

func readEvents(dir string) ([]event.Event, eventStats, error) {
	st := eventStats{PerNode: map[string]int{}}
	paths, err := filepath.Glob(filepath.Join(dir, "*.jsonl"))
	if err != nil {
		return nil, st, err
	}
	var all []event.Event
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return nil, st, err
		}
		evs, bad, err := event.Read(f)
		_ = f.Close()
		if err != nil {
			return nil, st, fmt.Errorf("%s: %w", p, err)
		}
		st.Files++
		st.Events += len(evs)
		st.Bad += bad
		st.PerNode[strings.TrimSuffix(filepath.Base(p), ".jsonl")] = len(evs)
		all = append(all, evs...)
	}
	return all, st, nil
}
