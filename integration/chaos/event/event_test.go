package event

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriterAppendsWholeLinesAndReadSkipsCutOnes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "n1.jsonl")
	// A previous incarnation was killed inside a write: half a line.
	if err := os.WriteFile(path, []byte(`{"t":1,"node":"n1","kind":"tick","key":"shard.0","token":4}`+"\n"+`{"t":2,"node":"n1","ki`), 0o644); err != nil {
		t.Fatal(err)
	}
	w, err := Create(path, time.Hour) // flushed only by Close
	if err != nil {
		t.Fatal(err)
	}
	id := 3
	w.Emit(Event{T: Mono(), Node: "n1", Kind: Tick, Key: "shard.3", Shard: &id, Rev: 9})
	w.Emit(Event{T: Mono(), Node: "n1", Kind: Lead, Key: "key-0", Rev: 10})
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	evs, bad, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if bad != 1 || len(evs) != 3 {
		t.Fatalf("bad %d, events %d: %+v", bad, len(evs), evs)
	}
	if e := evs[1]; e.Kind != Tick || e.Shard == nil || *e.Shard != 3 || e.Rev != 9 {
		t.Fatalf("%+v", e)
	}
	if evs[2].Key != "key-0" || evs[2].T < evs[1].T {
		t.Fatalf("%+v", evs[2])
	}
}

func TestMonoIsMonotonic(t *testing.T) {
	a := Mono()
	time.Sleep(time.Millisecond)
	if b := Mono(); b-a < int64(time.Millisecond) {
		t.Fatalf("%d then %d", a, b)
	}
}

func TestReadSkipsBlankLines(t *testing.T) {
	evs, bad, err := Read(strings.NewReader("\n\n" + `{"t":5,"node":"n2","kind":"ready","pid":7}` + "\n\n"))
	if err != nil || bad != 0 || len(evs) != 1 || evs[0].Pid != 7 {
		t.Fatalf("%v %d %+v", err, bad, evs)
	}
}
