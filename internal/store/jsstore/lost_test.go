package jsstore

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

// losingJS loses the first stream lookup and the first consumer request
// (as a leader that dies with them in flight does) and answers the rest.
// A slow first consumer request is answered after slowFirst instead.
type losingJS struct {
	jetstream.JetStream
	created          time.Time
	slowFirst        time.Duration
	lookups, creates atomic.Int32
	stopped          atomic.Int32
}

func (j *losingJS) Stream(ctx context.Context, _ string) (jetstream.Stream, error) {
	if j.lookups.Add(1) == 1 {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return infoStream{created: j.created}, nil
}

func (j *losingJS) OrderedConsumer(ctx context.Context, _ string, _ jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	if j.creates.Add(1) > 1 {
		return countingConsumer{js: j}, nil
	}
	if j.slowFirst > 0 { // an answer that comes after its request was given up
		time.Sleep(j.slowFirst)
		return countingConsumer{js: j}, nil
	}
	<-ctx.Done()
	return nil, ctx.Err()
}

// countingConsumer's consume contexts count their Stop calls in js.
type countingConsumer struct {
	jetstream.Consumer
	js *losingJS
}

func (c countingConsumer) Consume(jetstream.MessageHandler, ...jetstream.PullConsumeOpt) (jetstream.ConsumeContext, error) {
	return countingConsume{js: c.js}, nil
}

type countingConsume struct {
	jetstream.ConsumeContext
	js *losingJS
}

func (c countingConsume) Stop() { c.js.stopped.Add(1) }

// A lost request costs an attempt interval, not nats.go's 5 s timeout:
// checking the bucket and starting a watch send their requests again.
func TestLostRequestsAreSentAgain(t *testing.T) {
	created := time.Unix(1000, 0)
	js := &losingJS{created: created}
	b := &bucket{js: js, name: "b", created: created}

	start := time.Now()
	require.NoError(t, b.Check(context.Background()))
	assert.Less(t, time.Since(start), attemptEvery+500*time.Millisecond, "check")

	js.lookups.Store(0)
	start = time.Now()
	w, err := b.Watch(context.Background())
	require.NoError(t, err)
	assert.Less(t, time.Since(start), 2*attemptEvery+500*time.Millisecond, "watch")
	assert.Equal(t, int32(2), js.creates.Load())
	require.NoError(t, w.Stop())
}

// A consumer created by an attempt that lost the race is stopped.
func TestWatchStopsTheConsumersItDoesNotUse(t *testing.T) {
	created := time.Unix(1000, 0)
	js := &losingJS{created: created, slowFirst: attemptEvery + 300*time.Millisecond}
	js.lookups.Store(1) // answer the lookup
	w, err := (&bucket{js: js, name: "b", created: created}).Watch(context.Background())
	require.NoError(t, err)
	assert.Eventually(t, func() bool { return js.stopped.Load() == 1 }, 2*time.Second, 10*time.Millisecond)
	require.NoError(t, w.Stop())
	assert.Equal(t, int32(2), js.stopped.Load())
}

// An error that ends the consumer's deliveries (its server died, stops,
// left the cluster's interest, or the consumer was deleted) moves the
// watch to a new consumer at once.
func TestDeliveriesEndedMoveTheWatch(t *testing.T) {
	for _, err := range []error{jetstream.ErrNoHeartbeat, jetstream.ErrServerShutdown, nats.ErrNoResponders, jetstream.ErrConsumerDeleted} {
		t.Run(err.Error(), func(t *testing.T) {
			created := time.Unix(1000, 0)
			js := &losingJS{created: created}
			js.lookups.Store(1)
			js.creates.Store(1)
			w := &watcher{b: &bucket{js: js, name: "b", created: created}, ctx: context.Background(),
				out: make(chan *store.Entry, 4), done: make(chan struct{}), cc: countingConsume{js: js}}
			w.onError(nil, err)
			assert.Eventually(t, func() bool { return js.creates.Load() == 2 }, time.Second, 10*time.Millisecond, "a new consumer")
			assert.Eventually(t, func() bool { return js.stopped.Load() == 1 }, time.Second, 10*time.Millisecond, "the old one stopped")
			require.NoError(t, w.Stop())
		})
	}
}

// slowJS answers every consumer request after delay, as a meta leader
// just elected in a loaded cluster does.
type slowJS struct {
	losingJS
	delay time.Duration
}

func (j *slowJS) OrderedConsumer(ctx context.Context, _ string, _ jetstream.OrderedConsumerConfig) (jetstream.Consumer, error) {
	j.creates.Add(1)
	select {
	case <-time.After(j.delay):
		return countingConsumer{js: &j.losingJS}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// A move waits for a slow answer instead of giving up on every attempt
// before it comes.
func TestSlowConsumerRequestsStillMoveTheWatch(t *testing.T) {
	created := time.Unix(1000, 0)
	js := &slowJS{losingJS: losingJS{created: created}, delay: 600 * time.Millisecond}
	w := &watcher{b: &bucket{js: js, name: "b", created: created}, ctx: context.Background(),
		out: make(chan *store.Entry, 4), done: make(chan struct{}), cc: countingConsume{js: &js.losingJS}}
	w.onError(nil, jetstream.ErrNoHeartbeat)
	assert.Eventually(t, func() bool { return js.stopped.Load() >= 1 }, 3*time.Second, 10*time.Millisecond, "moved: the old consumer stopped")
	require.NoError(t, w.Stop())
}
