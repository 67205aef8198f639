package engine

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/clock"
)

func TestDeadlineValid(t *testing.T) {
	sent := clock.Real().Now()
	d := newDeadline(sent, 2*time.Second)
	tests := []struct {
		name string
		now  clock.Instant
		want bool
	}{
		{"just sent", sent, true},
		{"before deadline", sent.Add(1999 * time.Millisecond), true},
		{"at deadline", sent.Add(2 * time.Second), false},
		{"after deadline", sent.Add(3 * time.Second), false},
		// A suspended machine: its monotonic clock stood still while the
		// wall clock (and every other node) moved on by an hour.
		{"suspended: wall moved, mono did not", clock.Instant{Mono: sent.Mono + time.Second, Wall: sent.Wall.Add(time.Hour)}, false},
		// A wall clock stepped back by an hour must not extend the lease.
		{"wall stepped back, mono past deadline", clock.Instant{Mono: sent.Mono + 3*time.Second, Wall: sent.Wall.Add(-time.Hour)}, false},
		// A wall clock stepped forward ends the lease early: safe.
		{"wall stepped forward", clock.Instant{Mono: sent.Mono + time.Second, Wall: sent.Wall.Add(time.Minute)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, d.valid(tt.now))
		})
	}
}

func TestClocksAgree(t *testing.T) {
	t0 := clock.Real().Now()
	margin := 100 * time.Millisecond
	assert.True(t, clocksAgree(t0, t0.Add(time.Second), margin))
	assert.True(t, clocksAgree(t0, clock.Instant{Mono: t0.Mono + time.Second, Wall: t0.Wall.Add(time.Second + 50*time.Millisecond)}, margin))
	assert.False(t, clocksAgree(t0, clock.Instant{Mono: t0.Mono + time.Second, Wall: t0.Wall.Add(time.Hour)}, margin), "suspend")
	assert.False(t, clocksAgree(t0, clock.Instant{Mono: t0.Mono + time.Second, Wall: t0.Wall.Add(-time.Hour)}, margin), "wall stepped back")
}

func TestDeadlineRemaining(t *testing.T) {
	sent := clock.Real().Now()
	d := newDeadline(sent, time.Second)
	assert.Equal(t, 400*time.Millisecond, d.remaining(sent.Add(600*time.Millisecond)))
	assert.Equal(t, time.Duration(0), d.remaining(sent.Add(2*time.Second)))
}

func TestObserverExpiry(t *testing.T) {
	ttl := 5 * time.Second
	t0 := time.Duration(0)
	tests := []struct {
		name  string
		steps func(o *observer)
		at    time.Duration
		want  []expiredSession
	}{
		{
			name:  "unchanged for ttl expires",
			steps: func(o *observer) { o.seen("a", 7, t0) },
			at:    ttl,
			want:  []expiredSession{{"a", 7}},
		},
		{
			name:  "not yet",
			steps: func(o *observer) { o.seen("a", 7, t0) },
			at:    ttl - time.Millisecond,
		},
		{
			name: "same revision seen again does not restart",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				o.seen("a", 7, t0+(4*time.Second))
			},
			at:   ttl,
			want: []expiredSession{{"a", 7}},
		},
		{
			name: "new revision restarts the countdown",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				o.seen("a", 9, t0+(4*time.Second))
			},
			at: ttl,
		},
		{
			name: "deleted session is forgotten",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				o.gone("a")
			},
			at: 2 * ttl,
		},
		{
			name: "own session is never expired",
			steps: func(o *observer) {
				o.seen("self", 7, t0)
			},
			at: 2 * ttl,
		},
		{
			name: "a stall does not restart countdowns",
			steps: func(o *observer) {
				o.event(t0)
				o.seen("a", 7, t0)
				// Nothing for 4 s (stall), then events resume without a
				// new revision of a.
				for at := 4 * time.Second; at <= ttl; at += 500 * time.Millisecond {
					o.event(t0 + at)
					o.seen("a", 7, t0+at)
				}
			},
			at:   ttl,
			want: []expiredSession{{"a", 7}},
		},
		{
			name: "nothing expires while the store is silent",
			steps: func(o *observer) {
				o.event(t0)
				o.seen("a", 7, t0)
			},
			at: ttl,
		},
		{
			name: "postponed after a failed expiry",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				o.postpone("a", 7, t0+ttl+time.Second)
			},
			at: ttl + 500*time.Millisecond,
		},
		{
			// The review's E1 hole: a kill at revision 7 fails because the
			// holder renewed (9), and the watcher delivered 9 while the kill
			// was in flight. Postponing must not rewrite 9's countdown.
			name: "a failed kill never shortens a newer revision's countdown",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				o.seen("a", 9, t0+4*time.Second)
				o.postpone("a", 7, t0+4*time.Second+time.Second)
			},
			at: 4*time.Second + ttl - time.Millisecond,
		},
		{
			// A kill computed for an old revision that fails must not delay
			// the newer revision's countdown either: takeover would wait.
			name: "postponing an old revision leaves the new one's countdown",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				o.seen("a", 9, t0+time.Second)
				o.postpone("a", 7, t0+time.Second+ttl+2*time.Second)
			},
			at:   time.Second + ttl,
			want: []expiredSession{{"a", 9}},
		},
		{
			name: "postpone never brings an expiry forward",
			steps: func(o *observer) {
				o.seen("a", 7, t0+4*time.Second)
				o.postpone("a", 7, t0+time.Second)
			},
			at: 4*time.Second + ttl - time.Millisecond,
		},
		{
			name: "regular events do not restart",
			steps: func(o *observer) {
				o.seen("a", 7, t0)
				for i := 0; i <= 10; i++ {
					o.event(t0 + time.Duration(i)*500*time.Millisecond)
				}
			},
			at:   ttl,
			want: []expiredSession{{"a", 7}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := newObserver(ttl, time.Second)
			tt.steps(o)
			got := o.expired(t0+tt.at, "self")
			require.ElementsMatch(t, tt.want, got)
		})
	}
}

func TestTimingValidate(t *testing.T) {
	tests := []struct {
		name    string
		timing  Timing
		wantErr string
	}{
		{"defaults from 5s", Timing{TTL: 5 * time.Second}, ""},
		{"defaults from 1s", Timing{TTL: time.Second}, ""},
		{"ttl zero", Timing{}, "TTL 0s"},
		{"ttl negative", Timing{TTL: -time.Second}, "TTL -1s"},
		{"ttl too small", Timing{TTL: 100 * time.Millisecond}, "TTL 100ms"},
		{"renew deadline too close to ttl", Timing{TTL: 10 * time.Second, RenewDeadline: 10 * time.Second}, "RenewDeadline 10s: must be at most 90% of TTL 10s"},
		{"retry period too long", Timing{TTL: 10 * time.Second, RenewDeadline: 6 * time.Second, RetryPeriod: 4 * time.Second}, "RetryPeriod 4s: must be at most half of RenewDeadline 6s"},
		{"negative retry", Timing{TTL: 10 * time.Second, RetryPeriod: -time.Second}, "RetryPeriod -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.timing.withDefaults().validate()
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, ErrInvalidConfig)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestObserverNextExpiry(t *testing.T) {
	o := newObserver(5*time.Second, time.Second)
	_, ok := o.nextExpiry(0, "self")
	assert.False(t, ok)
	o.seen("self", 1, 0)
	_, ok = o.nextExpiry(0, "self")
	assert.False(t, ok, "own session is skipped")
	o.seen("a", 3, 2*time.Second)
	o.seen("b", 4, time.Second)
	next, ok := o.nextExpiry(0, "self")
	require.True(t, ok)
	assert.Equal(t, 6*time.Second, next)
}
