package queue

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestWaitFIFO: one owner's successive Waits hand out rows in rowid order,
// and each Wait consumes the row the previous one handed out.
func TestWaitFIFO(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	if first := insert(t, db, h, "a", "b", "c"); first != 1 {
		t.Fatalf("first rowid = %d, want 1", first)
	}
	all := []row{{1, "a"}, {2, "b"}, {3, "c"}}

	o := db.NewOwner()
	other := db.NewOwner() // never enters owner mode
	for i, want := range all {
		if idx := mustWait(t, o, subs("q"), 0); idx != 1 {
			t.Fatalf("Wait #%d = %d, want 1", i+1, idx)
		}
		if !o.InOwnerMode() {
			t.Fatalf("Wait #%d: not in owner mode", i+1)
		}
		if got := rowID(t, o); got != want.id {
			t.Errorf("Wait #%d: RowID = %d, want %d", i+1, got, want.id)
		}
		checkRows(t, fmt.Sprintf("owner scan after Wait #%d", i+1), scan(t, o, h), want)
		// The rows before want are consumed, want is owned: a non-owner
		// sees only the rows after it.
		checkRows(t, fmt.Sprintf("non-owner scan after Wait #%d", i+1), scan(t, other, h), all[i+1:]...)
		// Count includes the owned row.
		if n := db.Count(h); n != len(all)-i {
			t.Errorf("Count after Wait #%d = %d, want %d", i+1, n, len(all)-i)
		}
	}
	if err := o.End(); err != nil {
		t.Fatalf("End: %v", err)
	}
	if n := db.Count(h); n != 0 {
		t.Errorf("Count after End = %d, want 0", n)
	}
	checkRows(t, "non-owner scan after End", scan(t, other, h))
	// The queue is empty: a further Wait gets nothing.
	if idx := mustWait(t, o, subs("q"), 0); idx != 0 {
		t.Errorf("Wait on empty queue = %d, want 0", idx)
	}
}

// TestScanVisibility: an owner sees only its own row, in its own table;
// others see every row not owned.
func TestScanVisibility(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	h2 := createTable(t, db, "other")
	insert(t, db, h, "r1", "r2", "r3", "r4")
	insert(t, db, h2, "x1")

	a, b := db.NewOwner(), db.NewOwner()
	if idx := mustWait(t, a, subs("q"), 0); idx != 1 {
		t.Fatalf("Wait = %d, want 1", idx)
	}
	if id := rowID(t, a); id != 1 {
		t.Fatalf("A owns row %d, want 1", id)
	}

	tests := []struct {
		name  string
		owner *Owner
		table Table
		want  []row
	}{
		{"owner sees only its row", a, h, []row{{1, "r1"}}},
		{"owner sees nothing in another table", a, h2, nil},
		{"non-owner sees the free rows", b, h, []row{{2, "r2"}, {3, "r3"}, {4, "r4"}}},
		{"non-owner sees the other table", b, h2, []row{{1, "x1"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkRows(t, "Scan", scan(t, tc.owner, tc.table), tc.want...)
		})
	}

	t.Run("scan stops when fn returns false", func(t *testing.T) {
		var got []uint64
		err := b.Scan(h, func(id uint64, _ []byte) bool {
			got = append(got, id)
			return false
		})
		if err != nil || len(got) != 1 || got[0] != 2 {
			t.Errorf("Scan = %v, %v; want [2], nil", got, err)
		}
	})

	counts := []struct {
		table Table
		want  int
	}{{h, 4}, {h2, 1}}
	for _, c := range counts {
		if n := db.Count(c.table); n != c.want {
			t.Errorf("Count(%s) = %d, want %d (owned rows included)", c.table.Name(), n, c.want)
		}
	}
	if !a.OwnsRowIn(h) || a.OwnsRowIn(h2) || b.OwnsRowIn(h) {
		t.Errorf("OwnsRowIn: a/q=%v a/other=%v b/q=%v; want true false false",
			a.OwnsRowIn(h), a.OwnsRowIn(h2), b.OwnsRowIn(h))
	}
}

// TestAbort: Abort puts the row back at the head of its queue.
func TestAbort(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1", "r2", "r3")

	a, b, c := db.NewOwner(), db.NewOwner(), db.NewOwner()
	mustWait(t, a, subs("q"), 0)
	mustWait(t, b, subs("q"), 0)
	if ida, idb := rowID(t, a), rowID(t, b); ida != 1 || idb != 2 {
		t.Fatalf("A owns %d, B owns %d; want 1, 2", ida, idb)
	}
	released, err := a.Abort()
	if err != nil || !released {
		t.Fatalf("Abort = %v, %v; want true, nil", released, err)
	}
	if a.InOwnerMode() {
		t.Error("owner mode after Abort")
	}
	if n := db.Count(h); n != 3 {
		t.Errorf("Count after Abort = %d, want 3", n)
	}
	checkRows(t, "non-owner scan after Abort", scan(t, a, h), row{1, "r1"}, row{3, "r3"})

	// Row 1 is at the head again, before row 3.
	mustWait(t, c, subs("q"), 0)
	if id := rowID(t, c); id != 1 {
		t.Errorf("Wait after Abort got row %d, want 1", id)
	}
	// The aborted owner gets the same row back once C releases it.
	if released, err := c.Abort(); err != nil || !released {
		t.Fatalf("C.Abort = %v, %v", released, err)
	}
	mustWait(t, a, subs("q"), 0)
	if id := rowID(t, a); id != 1 {
		t.Errorf("A's Wait after aborts got row %d, want 1", id)
	}

	// Abort in owner mode without a row: no error, nothing released.
	o := db.NewOwner()
	if idx := mustWait(t, o, subs("q"), 0); idx != 1 {
		t.Fatalf("Wait = %d, want 1 (row 3)", idx)
	}
	if idx := mustWait(t, o, subs("q"), 0); idx != 0 {
		t.Fatalf("Wait on drained queue = %d, want 0", idx)
	}
	if released, err := o.Abort(); err != nil || released {
		t.Errorf("Abort without a row = %v, %v; want false, nil", released, err)
	}
}

// TestNotOwner: Abort and RowID require owner mode.
func TestNotOwner(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1")

	ended := db.NewOwner()
	mustWait(t, ended, subs("q"), 0)
	if err := ended.End(); err != nil {
		t.Fatal(err)
	}
	aborted := db.NewOwner()
	insert(t, db, h, "r2")
	mustWait(t, aborted, subs("q"), 0)
	if _, err := aborted.Abort(); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		owner *Owner
	}{
		{"new owner", db.NewOwner()},
		{"after End", ended},
		{"after Abort", aborted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.owner.InOwnerMode() {
				t.Error("InOwnerMode = true")
			}
			if released, err := tc.owner.Abort(); !errors.Is(err, ErrNotOwner) || released {
				t.Errorf("Abort = %v, %v; want false, ErrNotOwner", released, err)
			}
			if id, ok, err := tc.owner.RowID(); !errors.Is(err, ErrNotOwner) || ok || id != 0 {
				t.Errorf("RowID = %d, %v, %v; want 0, false, ErrNotOwner", id, ok, err)
			}
			// End outside owner mode does nothing.
			if err := tc.owner.End(); err != nil {
				t.Errorf("End = %v", err)
			}
		})
	}
	if n := db.Count(h); n != 1 {
		t.Errorf("Count = %d, want 1 (the aborted row)", n)
	}
}

// TestWaitTimeout: a Wait that finds nothing returns 0 and leaves the owner
// in owner mode without a row; End leaves owner mode.
func TestWaitTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
	}{
		{"zero", 0},
		{"negative", -time.Second},
		{"short", 20 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := createTable(t, db, "q")
			insert(t, db, h, "r1")
			o := db.NewOwner()
			mustWait(t, o, subs("q"), 0) // owns row 1

			start := time.Now()
			idx := mustWait(t, o, subs("q"), tc.timeout)
			elapsed := time.Since(start)
			if idx != 0 {
				t.Fatalf("Wait = %d, want 0", idx)
			}
			if tc.timeout > 0 && elapsed < tc.timeout {
				t.Errorf("Wait returned after %v, before its timeout %v", elapsed, tc.timeout)
			}
			if !o.InOwnerMode() {
				t.Error("not in owner mode after a timed-out Wait")
			}
			if id, ok, err := o.RowID(); err != nil || ok || id != 0 {
				t.Errorf("RowID = %d, %v, %v; want 0, false, nil", id, ok, err)
			}
			checkRows(t, "owner scan", scan(t, o, h))
			// The Wait consumed row 1.
			if n := db.Count(h); n != 0 {
				t.Errorf("Count = %d, want 0", n)
			}
			if len(waitersOf(db, h)) != 0 {
				t.Error("timed-out waiter still registered")
			}
			if err := o.End(); err != nil {
				t.Fatalf("End: %v", err)
			}
			if o.InOwnerMode() {
				t.Error("owner mode after End")
			}
		})
	}
}

// TestOwnerClose: closing an Owner releases its row to another owner.
func TestOwnerClose(t *testing.T) {
	tests := []struct {
		name         string
		prepare      func(t *testing.T, o *Owner)
		wantReleased bool
		wantNext     uint64
	}{
		{"owning row 1", func(t *testing.T, o *Owner) { mustWait(t, o, subs("q"), 0) }, true, 1},
		{"owner mode without a row", func(t *testing.T, o *Owner) {
			mustWait(t, o, subs("q"), 0)
			if _, err := o.DeleteRows(lookup(t, o.db, "q"), []uint64{1}); err != nil {
				t.Fatal(err)
			}
		}, false, 2},
		{"not in owner mode", func(*testing.T, *Owner) {}, false, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := createTable(t, db, "q")
			insert(t, db, h, "r1", "r2")
			o := db.NewOwner()
			tc.prepare(t, o)
			if released := o.Close(); released != tc.wantReleased {
				t.Errorf("Close = %v, want %v", released, tc.wantReleased)
			}
			if o.InOwnerMode() {
				t.Error("owner mode after Close")
			}
			other := db.NewOwner()
			if idx := mustWait(t, other, subs("q"), 0); idx != 1 {
				t.Fatalf("other Wait = %d, want 1", idx)
			}
			if id := rowID(t, other); id != tc.wantNext {
				t.Errorf("other owner got row %d, want %d", id, tc.wantNext)
			}
		})
	}
}

// TestDeleteRows: a non-owner deletes free rows only; an owner deletes only
// its own row and stays in owner mode.
func TestDeleteRows(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	h2 := createTable(t, db, "other")
	insert(t, db, h, "r1", "r2", "r3", "r4", "r5")
	insert(t, db, h2, "x1", "x2")

	a := db.NewOwner()
	mustWait(t, a, subs("q"), 0) // owns 1
	b := db.NewOwner()           // non-owner

	steps := []struct {
		name   string
		owner  *Owner
		table  Table
		rowids []uint64
		want   int
	}{
		{"non-owner: nothing to delete", b, h, nil, 0},
		{"non-owner: unknown rowid", b, h, []uint64{99}, 0},
		{"non-owner: not rows owned by others", b, h, []uint64{1}, 0},
		{"non-owner: free rows only", b, h, []uint64{1, 2, 4, 4}, 2},
		{"non-owner: already deleted", b, h, []uint64{2}, 0},
		{"owner: not a free row", a, h, []uint64{3}, 0},
		{"owner: its row in another table's rowids", a, h2, []uint64{1}, 0},
		{"owner: its own row", a, h, []uint64{3, 1}, 1},
		{"owner: without a row", a, h, []uint64{1, 3}, 0},
	}
	for _, s := range steps {
		n, err := s.owner.DeleteRows(s.table, s.rowids)
		if err != nil || n != s.want {
			t.Errorf("%s: DeleteRows(%s, %v) = %d, %v; want %d, nil", s.name, s.table.Name(), s.rowids, n, err, s.want)
		}
	}
	if !a.InOwnerMode() {
		t.Error("owner left owner mode after deleting its row")
	}
	if id, ok, err := a.RowID(); err != nil || ok {
		t.Errorf("RowID after deleting the owned row = %d, %v, %v; want no row", id, ok, err)
	}
	checkRows(t, "owner scan", scan(t, a, h))
	checkRows(t, "non-owner scan", scan(t, b, h), row{3, "r3"}, row{5, "r5"})
	checkRows(t, "other table untouched", scan(t, b, h2), row{1, "x1"}, row{2, "x2"})
	if n := db.Count(h); n != 2 {
		t.Errorf("Count = %d, want 2", n)
	}

	// A later End consumes nothing else; Abort after it has nothing to
	// resurrect.
	if err := a.End(); err != nil {
		t.Fatalf("End: %v", err)
	}
	if n := db.Count(h); n != 2 {
		t.Errorf("Count after End = %d, want 2", n)
	}
	mustWait(t, a, subs("q"), 0) // owns 3
	if n, err := a.DeleteRows(h, []uint64{3}); n != 1 || err != nil {
		t.Fatalf("DeleteRows = %d, %v", n, err)
	}
	if released, err := a.Abort(); err != nil || released {
		t.Errorf("Abort after DeleteRows = %v, %v; want false, nil", released, err)
	}
	checkRows(t, "non-owner scan after Abort", scan(t, b, h), row{5, "r5"})
	if n := db.Count(h); n != 1 {
		t.Errorf("Count after Abort = %d, want 1", n)
	}
	c := db.NewOwner()
	mustWait(t, c, subs("q"), 0)
	if id := rowID(t, c); id != 5 {
		t.Errorf("next Wait got row %d, want 5", id)
	}
}
