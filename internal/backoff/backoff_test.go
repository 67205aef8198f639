package backoff

import (
	"testing"
	"time"
)

func TestNextDoublesWithinJitterAndCaps(t *testing.T) {
	b := New(100*time.Millisecond, time.Second)
	for i, want := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		want *= time.Millisecond
		if d := b.Next(); d < want/2 || d > want {
			t.Fatalf("wait %d = %v, want in [%v, %v]", i, d, want/2, want)
		}
	}
	b.Reset()
	if d := b.Next(); d < 50*time.Millisecond || d > 100*time.Millisecond {
		t.Fatalf("after Reset: %v, want in [50ms, 100ms]", d)
	}
}

func TestNextIsJittered(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		seen[New(time.Second, time.Second).Next()] = true
	}
	if len(seen) < 10 {
		t.Fatalf("50 first waits took only %d distinct values: no jitter", len(seen))
	}
}
