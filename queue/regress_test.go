package queue

// Regression tests for defects found by review: closing while scanning,
// waiting after close, and abort racing a truncate.

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestScanAfterClose: every call returns ErrClosed once the DB is closed,
// including scans, which must not reach the closed Pebble store (it
// panics).
func TestScanAfterClose(t *testing.T) {
	tests := []struct {
		name  string
		owner bool
	}{
		{"owner mode", true},
		{"non-owner", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := createTable(t, db, "q")
			insert(t, db, h, "r1", "r2")
			o := db.NewOwner()
			if tc.owner {
				mustWait(t, o, subs("q"), 0)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			err := func() (err error) {
				defer func() {
					if r := recover(); r != nil {
						err = fmt.Errorf("panic: %v", r)
					}
				}()
				return o.Scan(h, func(uint64, []byte) bool { return true })
			}()
			if !errors.Is(err, ErrClosed) {
				t.Errorf("Scan after Close = %v, want ErrClosed", err)
			}
		})
	}
}

// TestWaitLaterTablesNotResolved: as in Q4M, tables after the first one
// with a row are not looked up; once they are reached, a missing one is an
// error.
func TestWaitLaterTablesNotResolved(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1")
	o := db.NewOwner()
	idx, err := o.Wait(t.Context(), subs("q", "nope"), time.Second)
	if idx != 1 || err != nil {
		t.Errorf("Wait(q, nope) = %d, %v; want 1, nil (Q4M does not resolve tables after the first hit)", idx, err)
	}
	o2 := db.NewOwner()
	if idx, err := o2.Wait(t.Context(), subs("q", "nope"), 0); !errors.Is(err, ErrNoSuchTable) {
		t.Errorf("Wait(q (empty), nope) = %d, %v; want ErrNoSuchTable", idx, err)
	}
}

// TestAbortRacesTruncate: Owner.release (owner.go) reads h.t.wdead after
// unlocking DB.mu, while the commit loop writes it in retireLocked (db.go)
// without holding DB.mu: a data race, reported by -race.
func TestAbortRacesTruncate(t *testing.T) {
	db := newDB(t)
	for i := range 20 {
		h := lookupOrCreate(t, db, "q")
		insert(t, db, h, "r")
		o := db.NewOwner()
		mustWait(t, o, subs("q"), 0)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := db.TruncateTable(testDB, "q"); err != nil {
				t.Errorf("round %d: TruncateTable: %v", i, err)
			}
		})
		wg.Go(func() {
			if _, err := o.Abort(); err != nil {
				t.Errorf("round %d: Abort: %v", i, err)
			}
		})
		wg.Wait()
	}
}

func lookupOrCreate(t *testing.T, db *DB, name string) Table {
	t.Helper()
	if h, err := db.Table(testDB, name); err == nil {
		return h
	}
	return createTable(t, db, name)
}

// TestWaitNoSubsAfterClose: Wait with no subs looks up no table, so it
// never notices that the DB is closed: it registers a waiter after Close
// woke them all and returns 0, nil at its timeout instead of ErrClosed.
func TestWaitNoSubsAfterClose(t *testing.T) {
	db := newDB(t)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	o := db.NewOwner()
	idx, err := o.Wait(t.Context(), nil, 20*time.Millisecond)
	if !errors.Is(err, ErrClosed) {
		t.Errorf("Wait(no subs) after Close = %d, %v; want ErrClosed", idx, err)
	}
}
