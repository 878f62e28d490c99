package queue

import (
	"errors"
	"strings"
	"testing"
)

// TestAlterTable: rows are rewritten in place (same rowids, order and
// owner), the metadata changes, and inserts encoded for the old definition
// are refused.
func TestAlterTable(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "a")
	insert(t, db, h, "r1", "r2", "r3")
	o := db.NewOwner()
	mustWait(t, o, subs("a"), 0) // owns r1
	err := db.AlterTable(testDB, "a", []byte("meta:v2"), func(rowid uint64, p []byte) ([]byte, error) {
		return []byte(strings.ToUpper(string(p))), nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Insert(h, [][]byte{[]byte("old")}); !errors.Is(err, ErrTableChanged) {
		t.Fatalf("insert through a stale handle: %v; want ErrTableChanged", err)
	}
	h2 := lookup(t, db, "a")
	if string(h2.Meta()) != "meta:v2" {
		t.Errorf("meta = %q", h2.Meta())
	}
	insert(t, db, h2, "r4")
	checkRows(t, "owner after ALTER", scan(t, o, h2), row{1, "R1"})
	checkRows(t, "others after ALTER", scan(t, db.NewOwner(), h2), row{2, "R2"}, row{3, "R3"}, row{4, "r4"})
	if err := db.AlterTable(testDB, "a", nil, func(uint64, []byte) ([]byte, error) { return nil, errors.New("boom") }); err == nil {
		t.Fatal("a failing rewrite was accepted")
	}
	checkRows(t, "after a failed ALTER", scan(t, db.NewOwner(), h2), row{2, "R2"}, row{3, "R3"}, row{4, "r4"})
	if err := db.AlterTable(testDB, "nope", nil, nil); !errors.Is(err, ErrNoSuchTable) {
		t.Errorf("ALTER of a missing table: %v", err)
	}
}
