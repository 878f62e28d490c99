package queue

import (
	"errors"
	"fmt"
	"slices"
	"sync"
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
	db.OnConsume(testDB, "timed", true, func(c Consumed) { consumed = append(consumed, string(c.Payload)) })
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

// TestApplyFinish: Finish sees the first rowid of each insertion before
// the batch is committed (and so before a waiter can take the rows), and
// its entries are stored in the same batch; it is not called for a write
// refused before its batch.
func TestApplyFinish(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	a := createTable(t, db, "a")
	b := createTable(t, db, "b")
	insert(t, db, b, "b1", "b2")
	ext := db.NewOwner()
	ch := goWait(t.Context(), ext, subs("a"), 10*time.Second)
	awaitWaiters(t, db, a, 1)
	var seen []uint64
	var takenBefore bool
	err := db.NewInternalOwner().Apply(Write{
		Inserts: []Insertion{{Table: a, Rows: [][]byte{[]byte("a1"), []byte("a2")}}, {Table: b, Rows: [][]byte{[]byte("b3")}}},
		Finish: func(first []uint64) []AuxEntry {
			seen = first
			db.mu.Lock()
			takenBefore = len(a.t.waiters) == 0
			db.mu.Unlock()
			return []AuxEntry{{NS: "v", Key: []byte("k"), Value: fmt.Appendf(nil, "%d,%d", first[0], first[1])}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(seen, []uint64{1, 3}) || takenBefore {
		t.Errorf("Finish saw %v (waiter served before: %v); want [1 3], before the waiter got a row", seen, takenBefore)
	}
	if r := receive(t, ch); r.idx != 1 || r.err != nil {
		t.Fatalf("waiter: %d, %v", r.idx, r.err)
	}
	_ = ext.Close()
	called := false
	if err := db.NewInternalOwner().Apply(Write{Consume: true, Finish: func([]uint64) []AuxEntry { called = true; return nil }}); !errors.Is(err, ErrNoRow) || called {
		t.Errorf("refused write: %v, Finish called %v", err, called)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = openDB(t, fs)
	var got []string
	if err := db.AuxScan("v", func(k, v []byte) bool { got = append(got, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{"k=1,3"}) {
		t.Errorf("stored by Finish: %q", got)
	}
}

// TestConsumeHooks: several hooks per table, each told the table's
// incarnation and the rowid (the payload only if one asked for it); a
// removed hook is not called; internal owners' consumes call none.
func TestConsumeHooks(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "t")
	insert(t, db, h, "r1", "r2", "r3")
	var mu sync.Mutex
	var got []string
	hook := func(name string) func(Consumed) {
		return func(c Consumed) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, fmt.Sprintf("%s:%d/%d/%s", name, c.TableID, c.RowID, c.Payload))
		}
	}
	removeA := db.OnConsume(testDB, "t", false, hook("a"))
	db.OnConsume(testDB, "t", true, hook("b"))
	o := db.NewOwner()
	mustWait(t, o, subs("t"), 0)
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	removeA()
	mustWait(t, o, subs("t"), 0)
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	in := db.NewInternalOwner()
	mustWait(t, in, subs("t"), 0)
	if err := in.End(); err != nil {
		t.Fatal(err)
	}
	id := h.ID()
	// With hook b asking for payloads, every hook sees them.
	want := []string{fmt.Sprintf("a:%d/1/r1", id), fmt.Sprintf("b:%d/1/r1", id), fmt.Sprintf("b:%d/2/r2", id)}
	if !slices.Equal(got, want) {
		t.Errorf("hooks saw %q, want %q", got, want)
	}
	if err := db.TruncateTable(testDB, "t"); err != nil {
		t.Fatal(err)
	}
	if h2 := lookup(t, db, "t"); h2.ID() == id {
		t.Errorf("TRUNCATE kept the table's ID %d", id)
	}
}

// TestRowExists: a row exists while free or owned, and not once consumed
// or deleted, nor after its table was truncated.
func TestRowExists(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "t")
	insert(t, db, h, "r1", "r2", "r3")
	exists := func(rowid uint64) bool {
		t.Helper()
		ok, err := db.RowExists(h, rowid)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	o := db.NewOwner()
	mustWait(t, o, subs("t"), 0)
	if !exists(1) || !exists(2) || exists(4) {
		t.Errorf("owned row 1, free row 2, missing row 4: %v %v %v", exists(1), exists(2), exists(4))
	}
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	if n, err := db.NewOwner().DeleteRows(h, []uint64{2}); err != nil || n != 1 {
		t.Fatalf("DeleteRows: %d, %v", n, err)
	}
	if exists(1) || exists(2) || !exists(3) {
		t.Errorf("consumed row 1, deleted row 2, row 3: %v %v %v", exists(1), exists(2), exists(3))
	}
	if err := db.TruncateTable(testDB, "t"); err != nil {
		t.Fatal(err)
	}
	if exists(3) {
		t.Error("row 3 exists after TRUNCATE (through the old handle)")
	}
}
