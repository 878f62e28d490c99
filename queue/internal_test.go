package queue

import (
	"errors"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestReservedAndApply(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	in := createTable(t, db, "incoming")
	out := createTable(t, db, "timed")
	db.Reserve(testDB, "incoming")
	insert(t, db, in, "m1", "m2")

	var consumed []string
	db.OnConsume(testDB, "timed", func(p []byte) { consumed = append(consumed, string(p)) })
	ext := db.NewOwner()
	if idx := mustWait(t, ext, subs("incoming"), 0); idx != 0 {
		t.Fatalf("an external owner got a row of a reserved table (%d)", idx)
	}
	_ = ext.End()
	// An external waiter blocked on both tables is served only from timed.
	ch := goWait(t.Context(), ext, subs("incoming", "timed"), 10*time.Second)
	awaitWaiters(t, db, out, 1)

	v := db.NewInternalOwner()
	if idx := mustWait(t, v, subs("incoming"), 0); idx != 1 {
		t.Fatalf("internal owner: Wait = %d", idx)
	}
	err := v.Apply(Write{
		Consume: true,
		Inserts: []Insertion{{Table: out, Rows: [][]byte{[]byte("moved m1")}}},
		Set:     []AuxEntry{{NS: "valve", Key: []byte("k1"), Value: []byte("v1")}, {NS: "valve", Key: []byte("k2"), Value: []byte("v2")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := receive(t, ch); r.idx != 2 || r.err != nil {
		t.Fatalf("external waiter: %d, %v; want 2 (timed)", r.idx, r.err)
	}
	checkRows(t, "external owns", scan(t, ext, out), row{1, "moved m1"})
	if err := v.Apply(Write{Consume: true}); !errors.Is(err, ErrNoRow) {
		t.Errorf("consume without a row: %v", err)
	}
	if err := v.Apply(Write{Delete: []AuxEntry{{NS: "valve", Key: []byte("k1")}}}); err != nil {
		t.Fatal(err)
	}
	checkRows(t, "incoming after the move", scan(t, db.NewOwner(), in), row{2, "m2"})
	if err := ext.End(); err != nil {
		t.Fatal(err)
	}
	if len(consumed) != 1 || consumed[0] != "moved m1" {
		t.Errorf("consume hook saw %q", consumed)
	}

	// Everything survives a restart, and the reservation is set again by its user.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	var got []string
	if err := db.AuxScan("valve", func(k, v []byte) bool { got = append(got, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "k2=v2" {
		t.Errorf("aux after restart: %v", got)
	}
	checkRows(t, "timed after restart (the moved row was consumed)", scan(t, db.NewOwner(), lookup(t, db, "timed")))
	checkRows(t, "incoming after restart", scan(t, db.NewOwner(), lookup(t, db, "incoming")), row{2, "m2"})
}
