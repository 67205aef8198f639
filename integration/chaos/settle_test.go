package main

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// A blip shorter than relapseAfter (a shard between two owners) neither
// counts as a relapse nor starts the quiet period over.
func TestQuietForIgnoresBlips(t *testing.T) {
	start := time.Now()
	healthy := func() (bool, string) {
		since := time.Since(start)
		return since < 100*time.Millisecond || since > 400*time.Millisecond, "1 shards unowned"
	}
	relapses := 0
	err := quietFor(context.Background(), 600*time.Millisecond, 10*time.Millisecond, healthy, func(string) error { relapses++; return nil })
	if err != nil || relapses != 0 {
		t.Fatalf("err %v, relapses %d; want nil, 0", err, relapses)
	}
	if d := time.Since(start); d > relapseAfter {
		t.Fatalf("took %v: the blip started the quiet period over", d)
	}
}

// An outage after the heal (every key was held, then the store went out)
// is a relapse: reported once, and the quiet period starts again after it.
func TestQuietForWaitsOutARelapse(t *testing.T) {
	const quiet = relapseAfter + 500*time.Millisecond
	start := time.Now()
	var recovered atomic.Bool
	healthy := func() (bool, string) {
		return recovered.Load() || time.Since(start) < 100*time.Millisecond, "4 keys unled"
	}
	var relapsedAt time.Duration
	var whys []string
	err := quietFor(context.Background(), quiet, 10*time.Millisecond, healthy, func(why string) error {
		relapsedAt = time.Since(start)
		whys = append(whys, why)
		recovered.Store(true)
		return nil
	})
	if err != nil || len(whys) != 1 || whys[0] != "4 keys unled" {
		t.Fatalf("err %v, relapses %q; want nil and one with the reason", err, whys)
	}
	if relapsedAt < 100*time.Millisecond+relapseAfter {
		t.Fatalf("relapse reported %v after start: before it had lasted %v", relapsedAt, relapseAfter)
	}
	if d := time.Since(start); d < relapsedAt+quiet {
		t.Fatalf("returned %v after start, relapse at %v: the quiet period did not start over", d, relapsedAt)
	}
}

// A relapse that does not recover ends the wait with its error.
func TestQuietForStopsOnAFailedRecovery(t *testing.T) {
	healthy := func() (bool, string) { return false, "n2 not ready" }
	err := quietFor(context.Background(), time.Minute, 10*time.Millisecond, healthy, func(string) error { return errNotRecovered })
	if !errors.Is(err, errNotRecovered) {
		t.Fatalf("err %v, want errNotRecovered", err)
	}
}
