package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.etcd.io/etcd/api/v3/version"
)

// machine describes where the numbers were measured.
type machine struct {
	cpu    string
	nproc  int
	memGiB float64
	goVer  string
	nats   string
	etcd   string
	date   string
	fs     string // file system of the temp dir
}

func describeMachine() machine {
	return machine{
		cpu:    procField("/proc/cpuinfo", "model name"),
		nproc:  runtime.NumCPU(),
		memGiB: memTotalGiB(),
		goVer:  runtime.Version(),
		nats:   server.VERSION,
		etcd:   version.Version,
		date:   time.Now().UTC().Format("2006-01-02 15:04 MST"),
		fs:     fileSystem(os.TempDir()),
	}
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// memTotalGiB reads MemTotal (kB) from /proc/meminfo.
func memTotalGiB() float64 {
	kb, err := strconv.ParseFloat(strings.TrimSuffix(procField("/proc/meminfo", "MemTotal"), " kB"), 64)
	if err != nil {
		return 0
	}
	return kb / (1 << 20)
}

// fileSystem names the mount holding path, from /proc/mounts: "type on
// device".
func fileSystem(path string) string {
	data, err := os.ReadFile("/proc/mounts")
	if err != nil {
		return "unknown"
	}
	best, out := -1, "unknown"
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || !strings.HasPrefix(path, f[1]) || len(f[1]) <= best {
			continue
		}
		best, out = len(f[1]), f[2]+" on "+f[0]
	}
	return out
}

// printHeader writes the title, machine and settings above the table.
func printHeader(w io.Writer, m machine, mode, nodeLogs string, total time.Duration) {
	fmt.Fprintln(w, "# Ronin benchmarks")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- Machine: %s, nproc %d, %.1f GiB RAM; %s; nats-server %s; etcd %s (baseline); %s\n",
		m.cpu, m.nproc, m.memGiB, m.goVer, m.nats, m.etcd, m.date)
	fmt.Fprintf(w, "- Settings: 3 embedded nodes in one process on 127.0.0.1 (random free ports, data dirs in %s, %s),"+
		" buckets R3, SyncAlways on (default), node logs %s; CPU and heap are the whole process (all nodes)\n", os.TempDir(), m.fs, nodeLogs)
	fmt.Fprintf(w, "- Mode: %s; total run time %s. Latencies: nearest-rank percentiles (p99 = max when n < 100).\n",
		mode, total.Round(time.Second))
	fmt.Fprintln(w)
}
