package ronintest

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeLeader is a participant whose view the test sets.
type fakeLeader struct{ token atomic.Uint64 }

func (f *fakeLeader) IsLeader() bool    { return f.token.Load() != 0 }
func (f *fakeLeader) LeaderRev() uint64 { return f.token.Load() }

func TestHistoryDetectsOverlap(t *testing.T) {
	h := NewHistory()
	a, b := &fakeLeader{}, &fakeLeader{}
	h.Add("k", "a", a)
	h.Add("k", "b", b)
	a.token.Store(5)
	time.Sleep(5 * time.Millisecond)
	b.token.Store(6) // b takes over while a still leads
	time.Sleep(5 * time.Millisecond)
	violations, _ := h.Stop()
	require.NotEmpty(t, violations)
	assert.Contains(t, violations[0], "led at once")
}

func TestHistoryDetectsRevNotGrowing(t *testing.T) {
	h := NewHistory()
	a, b := &fakeLeader{}, &fakeLeader{}
	h.Add("k", "a", a)
	h.Add("k", "b", b)
	a.token.Store(9)
	time.Sleep(5 * time.Millisecond)
	a.token.Store(0)
	time.Sleep(5 * time.Millisecond)
	b.token.Store(9) // reused token
	time.Sleep(5 * time.Millisecond)
	violations, terms := h.Stop()
	require.Len(t, violations, 1)
	assert.Contains(t, violations[0], "not above the previous 9")
	assert.Len(t, terms, 2)
}

func TestHistoryCleanHandover(t *testing.T) {
	h := NewHistory()
	a, b := &fakeLeader{}, &fakeLeader{}
	h.Add("k", "a", a)
	h.Add("k", "b", b)
	for tok := uint64(1); tok <= 20; tok += 2 {
		a.token.Store(tok)
		time.Sleep(time.Millisecond)
		a.token.Store(0)
		b.token.Store(tok + 1)
		time.Sleep(time.Millisecond)
		b.token.Store(0)
	}
	violations, terms := h.Stop()
	assert.Empty(t, violations)
	assert.NotEmpty(t, terms)
}
