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

// report collects rows per section, and tables of their own.
type report struct {
	mu     sync.Mutex
	rows   map[string][]row
	tables []*table
}

// table is a table of its own with its columns, printed after the main
// one: for scenarios whose figures do not fit one Result cell.
type table struct {
	title string
	head  []string
	rows  [][]string
	notes []string // printed under the table
}

func newTable(title string, head ...string) *table { return &table{title: title, head: head} }

func (t *table) add(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) note(format string, args ...any) {
	t.notes = append(t.notes, fmt.Sprintf(format, args...))
}

// addTable records a finished table.
func (r *report) addTable(t *table) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tables = append(r.tables, t)
	progress("result: table %q, %d rows", t.title, len(t.rows))
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

// print writes the table as markdown, with a bold row per section (none
// when no section has a row), then the tables of their own.
func (r *report) print(w io.Writer) {
	r.mu.Lock()
	defer r.mu.Unlock()
	defer r.printTables(w)
	if len(r.rows) == 0 {
		return
	}
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

func (r *report) printTables(w io.Writer) {
	for _, t := range r.tables {
		fmt.Fprintf(w, "\n## %s\n\n", t.title)
		fmt.Fprintf(w, "| %s |\n", strings.Join(t.head, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---|", len(t.head)))
		for _, cells := range t.rows {
			out := make([]string, len(t.head))
			for i := range out {
				if i < len(cells) {
					out[i] = cell(cells[i])
				} else {
					out[i] = cell("")
				}
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(out, " | "))
		}
		if len(t.notes) > 0 {
			fmt.Fprintln(w)
			for _, n := range t.notes {
				fmt.Fprintf(w, "- %s\n", n)
			}
		}
	}
}
