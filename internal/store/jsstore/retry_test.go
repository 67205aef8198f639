package jsstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

func noFatal(error) error { return nil }

// A stream without a leader leaves requests unanswered, and a request sent
// before the leader exists is never answered: the open must see the
// leader within about attemptEvery of its election, not when a
// one-second attempt gives up.
func TestRetryOpenSeesAnAnswerSoonAfterSilence(t *testing.T) {
	t0 := time.Now()
	answersFrom := t0.Add(400 * time.Millisecond)
	var calls atomic.Int32
	o, err := retryOpen(context.Background(), "b", func(ctx context.Context) (store.Opened, error) {
		calls.Add(1)
		if time.Now().Before(answersFrom) {
			<-ctx.Done() // silent
			return store.Opened{}, ctx.Err()
		}
		return store.Opened{Replicas: 3}, nil
	}, noFatal)
	require.NoError(t, err)
	assert.Equal(t, 3, o.Replicas)
	took := time.Since(t0)
	assert.Less(t, took, answersFrom.Sub(t0)+attemptEvery+150*time.Millisecond, "answered within an attempt interval of the leader")
	assert.LessOrEqual(t, calls.Load(), int32(maxAttempts), "at most maxAttempts at once")
}

// Answers slower than attemptEvery (a loaded server) are still taken.
func TestRetryOpenTakesASlowAnswer(t *testing.T) {
	_, err := retryOpen(context.Background(), "b", func(ctx context.Context) (store.Opened, error) {
		select {
		case <-time.After(600 * time.Millisecond):
			return store.Opened{}, nil
		case <-ctx.Done():
			return store.Opened{}, ctx.Err()
		}
	}, noFatal)
	require.NoError(t, err)
}

// An error that retrying cannot cure ends the open at once; others are
// retried until ctx ends, and the error says the last one.
func TestRetryOpenErrors(t *testing.T) {
	final := errors.New("replicas mismatch")
	_, err := retryOpen(context.Background(), "b", func(context.Context) (store.Opened, error) { return store.Opened{}, final },
		func(err error) error { return err })
	require.ErrorIs(t, err, final)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var calls atomic.Int32
	_, err = retryOpen(ctx, "b", func(context.Context) (store.Opened, error) {
		calls.Add(1)
		return store.Opened{}, errors.New("no meta leader")
	}, noFatal)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "no meta leader")
	assert.Greater(t, calls.Load(), int32(1), "retried")
	assert.Less(t, calls.Load(), int32(10), "an error reply backs off")
}
