package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// sample is a set of measured durations.
type sample []time.Duration

// pct is the nearest-rank percentile p (0..100): with n < 100 samples p99
// is the maximum.
func (s sample) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	sorted := slices.Sorted(slices.Values(s))
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

func (s sample) max() time.Duration { return s.pct(100) }

// summary is "p50 · p99 · max".
func (s sample) summary() string {
	if len(s) == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s · p99 %s · max %s", ms(s.pct(50)), ms(s.pct(99)), ms(s.max()))
}

// shifted returns s with d subtracted from every value.
func (s sample) shifted(d time.Duration) sample {
	out := make(sample, len(s))
	for i, v := range s {
		out[i] = v - d
	}
	return out
}

// ms formats a duration in milliseconds below 10 s, else in seconds.
func ms(d time.Duration) string {
	if d.Abs() >= 10*time.Second {
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
	if d.Abs() >= 100*time.Millisecond {
		return fmt.Sprintf("%.0f ms", float64(d)/1e6)
	}
	return fmt.Sprintf("%.1f ms", float64(d)/1e6)
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// heapMB is the heap in use after a full GC, in MiB.
func heapMB() float64 {
	runtime.GC()
	var st runtime.MemStats
	runtime.ReadMemStats(&st)
	return float64(st.HeapInuse) / (1 << 20)
}

// steady is what a quiet window costs.
type steady struct {
	writes float64 // KV writes per second on the bucket (stream LastSeq delta)
	cpu    float64 // process CPU seconds per wall second
	heap   float64 // MiB in use after GC, at the end of the window
}

func (s steady) String() string {
	return fmt.Sprintf("%.1f writes/s · CPU %.1f %% of a core · heap %.0f MiB", s.writes, 100*s.cpu, s.heap)
}

// lastSeq is the last sequence of bucket's stream; 0 with a nil js.
func lastSeq(ctx context.Context, js jetstream.JetStream, bucket string) (uint64, error) {
	if js == nil {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, "KV_"+bucket)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.LastSeq, nil
}

// measureSteady watches bucket (if js is not nil) and the process for
// window and returns the rates, then the heap.
func measureSteady(ctx context.Context, js jetstream.JetStream, bucket string, window time.Duration) (steady, error) {
	return measureSteadyWith(ctx, func(ctx context.Context) (uint64, error) { return lastSeq(ctx, js, bucket) }, window)
}

// measureSteadyWith is measureSteady with writes counted by seq, a
// counter of replicated writes.
func measureSteadyWith(ctx context.Context, seq func(context.Context) (uint64, error), window time.Duration) (steady, error) {
	seq0, err := seq(ctx)
	if err != nil {
		return steady{}, err
	}
	stopProfile := startSteadyProfile()
	t0, cpu0 := time.Now(), cpuTime()
	err = sleep(ctx, window)
	wall, cpu := time.Since(t0), cpuTime()-cpu0
	stopProfile()
	if err != nil {
		return steady{}, err
	}
	seq1, err := seq(ctx)
	if err != nil {
		return steady{}, err
	}
	return steady{
		writes: float64(seq1-seq0) / wall.Seconds(),
		cpu:    cpu.Seconds() / wall.Seconds(),
		heap:   heapMB(),
	}, nil
}

// steadyProfile is the -steadyprofile path; steadyWindows numbers its files.
var (
	steadyProfile string
	steadyWindows int
)

// startSteadyProfile starts a CPU profile of one steady window when
// -steadyprofile is set and returns the function that ends it.
func startSteadyProfile() (stop func()) {
	if steadyProfile == "" {
		return func() {}
	}
	steadyWindows++
	name := fmt.Sprintf("%s.%d", steadyProfile, steadyWindows)
	f, err := os.Create(name)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		progress("steady profile %s: %v", name, err)
		return func() {}
	}
	progress("steady profile: %s", name)
	return func() { pprof.StopCPUProfile(); _ = f.Close() }
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// errTimeout is returned by waitUntil.
var errTimeout = errors.New("timed out")

// waitUntil polls cond every poll until it holds, and returns the time it
// was first seen to hold; it gives up after timeout.
func waitUntil(ctx context.Context, timeout, poll time.Duration, cond func() bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("%w after %v", errTimeout, timeout)
		}
		if err := sleep(ctx, poll); err != nil {
			return time.Time{}, err
		}
	}
}

// waitDone waits until done is closed, at most timeout.
func waitDone(ctx context.Context, done <-chan struct{}, timeout time.Duration) error {
	_, err := recv(ctx, done, timeout)
	return err
}

// recv waits for a value on ch, at most timeout.
func recv[T any](ctx context.Context, ch <-chan T, timeout time.Duration) (T, error) {
	var zero T
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case v := <-ch:
		return v, nil
	case <-t.C:
		return zero, fmt.Errorf("%w after %v", errTimeout, timeout)
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
