package queue

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestCheckpoint: a checkpoint taken while rows are owned, consumed and
// inserted holds the store as it was: consumed rows gone, owned rows free
// again, rowids continuing; the live store goes on unaffected.
func TestCheckpoint(t *testing.T) {
	mem := vfs.NewMem()
	db := openDB(t, mem)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1", "r2", "r3", "r4", "r5")
	a, b := db.NewOwner(), db.NewOwner()
	mustWait(t, a, subs("q"), 0)    // owns 1
	if err := a.End(); err != nil { // 1 consumed
		t.Fatal(err)
	}
	mustWait(t, b, subs("q"), 0) // owns 2, still owned at the checkpoint

	if err := db.Checkpoint("backups/one"); err != nil {
		t.Fatalf("Checkpoint: %v", err)
	}
	if err := db.Checkpoint("backups/one"); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Checkpoint over an existing one = %v, want fs.ErrExist", err)
	}
	if _, err := mem.Stat("backups/one.partial"); err == nil {
		t.Fatal("the partial copy is left behind")
	}
	// After the checkpoint: the live store moves on.
	if err := b.End(); err != nil {
		t.Fatal(err)
	}
	insert(t, db, h, "r6")
	checkRows(t, "live rows", scan(t, db.NewOwner(), h), row{3, "r3"}, row{4, "r4"}, row{5, "r5"}, row{6, "r6"})

	cp, err := Open("backups/one", testOptions(mem))
	if err != nil {
		t.Fatalf("Open(checkpoint): %v", err)
	}
	defer cp.Close()
	ch := lookup(t, cp, "q")
	checkRows(t, "checkpoint rows", scan(t, cp.NewOwner(), ch), row{2, "r2"}, row{3, "r3"}, row{4, "r4"}, row{5, "r5"})
	if first := insert(t, cp, ch, "n6"); first != 6 {
		t.Errorf("next rowid in the checkpoint = %d, want 6", first)
	}

	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Checkpoint("backups/two"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Checkpoint after Close = %v, want ErrClosed", err)
	}
}
