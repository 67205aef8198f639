package status

import (
	"context"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/nonchan7720/ronin/internal/engine"
	"github.com/nonchan7720/ronin/internal/store/jsstore"
)

// Read takes the picture of the named buckets, or of every bucket Ronin
// created when names is empty, from any JetStream connection: it watches
// each bucket until its view is complete, writes nothing and joins
// nothing. Readers are not members, so Problem is never set for them.
func Read(ctx context.Context, js jetstream.JetStream, names []string) (Node, error) {
	backend := jsstore.Backend{JS: js}
	if len(names) == 0 {
		var err error
		if names, err = backend.Names(ctx, engine.ProtocolMetadataKey); err != nil {
			return Node{}, err
		}
	}
	reg := engine.NewRegistry(engine.Host{Store: backend, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	out := Node{Healthy: true, Buckets: []Bucket{}}
	for _, name := range names {
		b, stop, err := reg.Observe(ctx, name)
		if err != nil {
			return Node{}, err
		}
		err = b.AwaitComplete(ctx)
		snap := b.Snapshot()
		stop()
		if err != nil {
			return Node{}, err
		}
		out.Buckets = append(out.Buckets, FromSnapshot(snap, time.Now()))
	}
	out.Time = time.Now()
	return out, nil
}
