package queue

import (
	"testing"
	"time"
)

// TestStatsGaugesAndOutcomes checks the store-wide gauges (tables, rows,
// owned rows, waiters) and the wait and restore counters.
func TestStatsGaugesAndOutcomes(t *testing.T) {
	db := newDB(t)
	a := createTable(t, db, "a")
	b := createTable(t, db, "b")
	createTable(t, db, "c")
	insert(t, db, a, "1", "2", "3")
	check := func(what string, got, want Stats) {
		t.Helper()
		if got.Tables != want.Tables || got.Rows != want.Rows || got.Owned != want.Owned || got.Waiters != want.Waiters ||
			got.WaitImmediate != want.WaitImmediate || got.WaitDelayed != want.WaitDelayed || got.WaitTimeout != want.WaitTimeout ||
			got.RestoredByAbort != want.RestoredByAbort || got.RestoredByClose != want.RestoredByClose {
			t.Errorf("%s: got %+v\nwant %+v", what, got, want)
		}
	}
	check("after inserts", db.Stats(), Stats{Tables: 3, Rows: 3})

	o := db.NewOwner()
	mustWait(t, o, subs("a"), time.Second)
	check("one owned", db.Stats(), Stats{Tables: 3, Rows: 3, Owned: 1, WaitImmediate: 1})
	if _, err := o.Abort(); err != nil {
		t.Fatal(err)
	}
	check("aborted", db.Stats(), Stats{Tables: 3, Rows: 3, WaitImmediate: 1, RestoredByAbort: 1})

	mustWait(t, o, subs("a"), time.Second)
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	mustWait(t, o, subs("a"), time.Second)
	o.Close()
	check("consumed one, closed with one", db.Stats(), Stats{Tables: 3, Rows: 2, WaitImmediate: 3, RestoredByAbort: 1, RestoredByClose: 1})

	// A wait on empty tables: a waiter, then a timeout, counted once for
	// the two tables.
	w := db.NewOwner()
	ch := goWait(t.Context(), w, subs("b", "c"), 50*time.Millisecond)
	awaitWaiters(t, db, lookup(t, db, "b"), 1)
	if st := db.Stats(); st.Waiters != 1 {
		t.Errorf("Waiters = %d while a wait blocks, want 1", st.Waiters)
	}
	if r := receive(t, ch); r.err != nil || r.idx != 0 {
		t.Fatalf("wait on an empty table: %d, %v", r.idx, r.err)
	}
	check("timed out", db.Stats(), Stats{Tables: 3, Rows: 2, WaitImmediate: 3, WaitTimeout: 1, RestoredByAbort: 1, RestoredByClose: 1})
	w.Close()

	// A wait served by a later insert is delayed.
	ch = goWait(t.Context(), w, subs("b"), time.Minute)
	awaitWaiters(t, db, b, 1)
	insert(t, db, b, "x")
	if r := receive(t, ch); r.err != nil || r.idx != 1 {
		t.Fatalf("wait served by an insert: %d, %v", r.idx, r.err)
	}
	check("delayed", db.Stats(), Stats{Tables: 3, Rows: 3, Owned: 1, WaitImmediate: 3, WaitDelayed: 1, WaitTimeout: 1, RestoredByAbort: 1, RestoredByClose: 1})
	w.Close()
}
