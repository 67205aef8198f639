package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/nonchan7720/ronin/internal/store"
	"github.com/nonchan7720/ronin/internal/store/memstore"
)

func open(t *testing.T, st *memstore.Store, name string) store.Opened {
	t.Helper()
	o, err := st.Backend().Open(t.Context(), store.Spec{Name: name, Replicas: 1, Metadata: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func recv(t *testing.T, w store.Watcher) (*store.Entry, bool) {
	t.Helper()
	select {
	case e, ok := <-w.Updates():
		return e, ok
	case <-time.After(time.Minute):
		t.Fatal("no delivery")
		return nil, false
	}
}

// A watcher that reads nothing never blocks writers; when it reads, it
// gets every key's writes in order, except those a later write of the same
// key replaced before it read them (History 1).
func TestSlowWatcherNeverBlocksWriters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memstore.New(time.Now)
		b := open(t, st, "b").Bucket
		w, err := b.Watch(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var revs []uint64
		for i := range 1000 {
			rev, err := b.Create(t.Context(), fmt.Sprint("k", i), []byte{byte(i)})
			if err != nil {
				t.Fatal(err)
			}
			revs = append(revs, rev)
		}
		var last uint64
		for i := range 5 { // rewrite k0 while nothing was read
			if last, err = b.Update(t.Context(), "k0", []byte{byte(i)}, max(revs[0], last)); err != nil {
				t.Fatal(err)
			}
		}
		if e, _ := recv(t, w); e != nil {
			t.Fatalf("first delivery %+v, want nil", e)
		}
		for i, want := range append(revs[1:], last) {
			e, _ := recv(t, w)
			if e == nil || e.Rev != want {
				t.Fatalf("delivery %d: %+v, want rev %d", i, e, want)
			}
		}
		w.Stop()
		if _, ok := recv(t, w); ok {
			t.Fatal("channel open after Stop")
		}
	})
}

func at(s []uint64, i int) uint64 {
	if i < 0 {
		return 0
	}
	return s[i]
}

// A watcher's goroutine exits when its ctx ends (synctest.Test fails if it
// does not).
func TestWatcherEndsWithContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memstore.New(time.Now)
		b := open(t, st, "b").Bucket
		ctx, cancel := context.WithCancel(t.Context())
		w, err := b.Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		b.Create(t.Context(), "a", nil)
		cancel()
		synctest.Wait()
		for range w.Updates() {
		}
		if _, err := b.Create(t.Context(), "b", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Get(ctx, "a"); !errors.Is(err, context.Canceled) {
			t.Fatalf("Get with a cancelled ctx: %v", err)
		}
	})
}

// A watcher of a deleted bucket notices at its first 10 s heartbeat tick
// that is at least 10 s after the delete, then closes.
func TestWatcherOfDeletedBucketCloses(t *testing.T) {
	for _, c := range []struct{ deleteAfter, closeAfter time.Duration }{
		{0, memstore.WatchResetDelay},
		{3 * time.Second, 3*time.Second + memstore.WatchResetDelay},
		{15 * time.Second, 15*time.Second + memstore.WatchResetDelay},
	} {
		synctest.Test(t, func(t *testing.T) {
			st := memstore.New(time.Now)
			b := open(t, st, "b").Bucket
			start := time.Now()
			w, err := b.Watch(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			recv(t, w) // nil
			time.Sleep(c.deleteAfter)
			st.DeleteBucket("b")
			if _, ok := recv(t, w); ok {
				t.Fatal("delivery after delete")
			}
			if got := time.Since(start); got != c.closeAfter {
				t.Errorf("delete at %v: closed at %v, want %v", c.deleteAfter, got, c.closeAfter)
			}
		})
	}
}

// Created times and revisions across incarnations.
func TestCreatedAndIncarnations(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := memstore.New(time.Now)
		o := open(t, st, "b")
		if !o.Created || o.Replicas != 1 || o.Metadata["k"] != "v" {
			t.Fatalf("first open: %+v", o)
		}
		r1, _ := o.Bucket.Create(t.Context(), "a", []byte("x"))
		if r1 != 1 {
			t.Fatalf("first revision %d, want 1", r1)
		}
		time.Sleep(5 * time.Second)
		o2 := open(t, st, "b")
		if o2.Created {
			t.Fatalf("reopen: %+v", o2)
		}
		e, err := o2.Bucket.Get(t.Context(), "a")
		if err != nil || !e.Created.Equal(time.Now().Add(-5*time.Second)) {
			t.Fatalf("Get: %+v %v", e, err)
		}
		e.Value[0] = 'y'
		if e, _ := o2.Bucket.Get(t.Context(), "a"); string(e.Value) != "x" {
			t.Fatal("Get returned the stored slice")
		}
		r2, _ := o2.Bucket.Update(t.Context(), "a", nil, r1)
		st.Purge("b")
		r3, _ := o2.Bucket.Create(t.Context(), "a", nil)
		if r3 != r2+1 {
			t.Fatalf("after purge: revision %d, want %d", r3, r2+1)
		}
		st.DeleteBucket("b")
		o3 := open(t, st, "b")
		r4, _ := o3.Bucket.Create(t.Context(), "a", nil)
		if !o3.Created || r4 != r3+1 {
			t.Fatalf("new incarnation: %+v, first revision %d, want %d", o3, r4, r3+1)
		}
		if err := o.Bucket.Check(t.Context()); !errors.Is(err, store.ErrBucketGone) {
			t.Fatalf("old Check: %v", err)
		}
		if err := o3.Bucket.Check(t.Context()); err != nil {
			t.Fatalf("new Check: %v", err)
		}
	})
}
