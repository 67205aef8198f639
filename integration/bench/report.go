package main

import (
	"fmt"
	"io"
	"strings"
	"sync"
)

// Sections of the table, in print order.
const (
	secElection = "Issue 2 — election"
	secShards   = "Issue 3 — shards"
	secEtcd     = "Issue 9 — baseline: etcd client/v3/concurrency on 3 embedded etcd members"
)

// row is one line of the table.
type row struct {
	metric, setting, n, result, goal, met string
}

// report collects rows per section.
type report struct {
	mu   sync.Mutex
	rows map[string][]row
}

func newReport() *report { return &report{rows: map[string][]row{}} }

func (r *report) add(section string, x row) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows[section] = append(r.rows[section], x)
	progress("result: %s | %s | %s | %s", x.metric, x.setting, x.result, x.met)
}

// fail records a measurement that could not complete.
func (r *report) fail(section, metric string, err error) {
	r.add(section, row{metric: metric, result: "FAILED: " + err.Error(), met: "**no**"})
}

// verdict renders whether a goal was met.
func verdict(ok bool) string {
	if ok {
		return "yes"
	}
	return "**no**"
}

// print writes the table as markdown, with a bold row per section.
func (r *report) print(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(w, "| Metric | Setting | n | Result | Goal | Met |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|")
	for _, sec := range []string{secElection, secShards, secEtcd} {
		if len(r.rows[sec]) == 0 {
			continue
		}
		fmt.Fprintf(w, "| **%s** | | | | | |\n", sec)
		for _, x := range r.rows[sec] {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n",
				cell(x.metric), cell(x.setting), cell(x.n), cell(x.result), cell(x.goal), cell(x.met))
		}
	}
}

func cell(s string) string {
	if s == "" {
		return "—"
	}
	return strings.NewReplacer("|", "\\|", "\n", " ").Replace(s)
}
