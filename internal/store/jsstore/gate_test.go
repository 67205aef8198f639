package jsstore

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nonchan7720/ronin/internal/store"
)

// stallingJS answers stream info with the stream created at created, once
// release is closed.
type stallingJS struct {
	jetstream.JetStream
	release chan struct{}
	created time.Time
}

func (j stallingJS) Stream(ctx context.Context, _ string) (jetstream.Stream, error) {
	select {
	case <-j.release:
		return infoStream{created: j.created}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

type infoStream struct {
	jetstream.Stream
	created time.Time
}

func (s infoStream) CachedInfo() *jetstream.StreamInfo {
	return &jetstream.StreamInfo{Created: s.created}
}

type idleConsume struct{ jetstream.ConsumeContext }

func (idleConsume) Stop() {}

// msg is a KV put of key at stream sequence rev, delivered by consumer.
type msg struct {
	jetstream.Msg
	key      string
	rev      uint64
	consumer string
}

func (m msg) Subject() string      { return "$KV.b." + m.key }
func (m msg) Data() []byte         { return []byte("v") }
func (m msg) Headers() nats.Header { return nats.Header{} }
func (m msg) Metadata() (*jetstream.MsgMetadata, error) {
	return &jetstream.MsgMetadata{Sequence: jetstream.SequencePair{Stream: m.rev}, Consumer: m.consumer}, nil
}

// The ordered consumer recreates itself after an error without a word, and
// the new consumer may read a new incarnation of the bucket's name: a
// consumer's first delivery waits for a check; a new incarnation ends the
// watch with nothing delivered, the same bucket lets the delivery through,
// and the consumer's later deliveries need no check.
func TestWatchHoldsANewConsumersDeliveriesUntilTheBucketChecksOut(t *testing.T) {
	created := time.Unix(1000, 0)
	for _, tc := range []struct {
		name    string
		created time.Time
		want    bool // delivered
	}{
		{"new incarnation", created.Add(time.Second), false},
		{"same bucket", created, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			js := stallingJS{release: make(chan struct{}), created: tc.created}
			w := &watcher{b: &bucket{js: js, name: "b", created: created}, ctx: context.Background(),
				out: make(chan *store.Entry, 4), done: make(chan struct{}), cc: idleConsume{}, consumers: map[string]bool{}}
			handled := make(chan struct{})
			go func() { defer close(handled); w.handle(msg{key: "k", rev: 7, consumer: "c_2"}) }()
			select {
			case e := <-w.out:
				t.Fatalf("delivered %v before the check", e)
			case <-time.After(50 * time.Millisecond):
			}
			close(js.release)
			<-handled
			e, open := <-w.out
			if tc.want {
				require.True(t, open)
				assert.Equal(t, "k", e.Key)
				w.b.js = stallingJS{release: make(chan struct{})} // a check would stall now
				go w.handle(msg{key: "l", rev: 8, consumer: "c_2"})
				select {
				case e := <-w.out:
					assert.Equal(t, "l", e.Key)
				case <-time.After(time.Second):
					t.Fatal("a consumer's later delivery waited for a check")
				}
			} else {
				assert.False(t, open, "the watch ended with nothing delivered, got %v", e)
			}
			_ = w.Stop()
		})
	}
}

// An open attempt answered for a stream that has no leader yet (being
// created, or recovering) fails, so that Open returns only once writes
// can land.
func TestOpenedNeedsAStreamLeader(t *testing.T) {
	_, err := Backend{}.opened(context.Background(), "b", &jetstream.StreamInfo{Cluster: &jetstream.ClusterInfo{Name: "c"}}, true)
	require.ErrorIs(t, err, errNoStreamLeader)
}
