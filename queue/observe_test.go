package queue

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestSnapshot checks what monitoring reads of a table: rows, owned rows,
// waiters, counters and the age of the oldest free row, as rows are
// inserted, owned, released and consumed.
func TestSnapshot(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "jobs")
	createTable(t, db, "alpha")
	one := func() TableState {
		t.Helper()
		for _, st := range db.Snapshot() {
			if st.Table == "jobs" {
				return st
			}
		}
		t.Fatal("jobs not in the snapshot")
		return TableState{}
	}
	if snap := db.Snapshot(); len(snap) != 2 || snap[0].Table != "alpha" || snap[1].Table != "jobs" {
		t.Fatalf("snapshot not sorted by name: %+v", snap)
	}
	if st := one(); st.Rows != 0 || st.OldestAge != 0 {
		t.Fatalf("empty table: %+v", st)
	}
	start := time.Now()
	insert(t, db, h, "a", "b", "c")
	// Five seconds pass for the DB.
	db.mu.Lock()
	db.opened = db.opened.Add(-5 * time.Second)
	db.mu.Unlock()
	st := one()
	if st.Rows != 3 || st.Owned != 0 || st.RowsWritten != 3 {
		t.Fatalf("after 3 inserts: %+v", st)
	}
	if lim := 5*time.Second + time.Since(start) + tickUnit; st.OldestAge < 5*time.Second || st.OldestAge > lim {
		t.Fatalf("oldest age %v, want between 5s and %v", st.OldestAge, lim)
	}

	o := db.NewOwner()
	if idx, err := o.Wait(context.Background(), []Sub{{Database: testDB, Table: "jobs"}}, time.Second); err != nil || idx != 1 {
		t.Fatalf("Wait = %d, %v", idx, err)
	}
	if st := one(); st.Rows != 3 || st.Owned != 1 || st.OldestAge < 5*time.Second {
		t.Fatalf("one row owned: %+v", st)
	}
	if _, err := o.Abort(); err != nil {
		t.Fatal(err)
	}
	if st := one(); st.Owned != 0 || st.RestoredByAbort != 1 || st.OldestAge < 5*time.Second {
		t.Fatalf("row released, keeping its age: %+v", st)
	}
	for range 3 {
		if idx, err := o.Wait(context.Background(), []Sub{{Database: testDB, Table: "jobs"}}, time.Second); err != nil || idx != 1 {
			t.Fatalf("Wait = %d, %v", idx, err)
		}
	}
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	if st := one(); st.Rows != 0 || st.RowsRemoved != 3 || st.OldestAge != 0 || st.WaitImmediate != 4 {
		t.Fatalf("all consumed: %+v", st)
	}

	// A blocked waiter is counted.
	w := db.NewOwner()
	done := make(chan error, 1)
	go func() {
		_, err := w.Wait(context.Background(), []Sub{{Database: testDB, Table: "jobs"}}, time.Minute)
		done <- err
	}()
	awaitWaiters(t, db, h, 1)
	if st := one(); st.Waiters != 1 {
		t.Fatalf("blocked waiter: %+v", st)
	}
	insert(t, db, h, "d")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := one(); st.Waiters != 0 || st.Owned != 1 {
		t.Fatalf("waiter served: %+v", st)
	}
}

// TestObserver checks that the Observer hears of every commit and of each
// Wait's outcome.
func TestObserver(t *testing.T) {
	var mu sync.Mutex
	var commits, ops int
	var got, timedOut int
	db, err := Open("db", &Options{
		FS: vfs.NewMem(), InitialDatabases: []string{testDB}, Logger: testOptions(nil).Logger,
		Observer: &Observer{
			Commit: func(n int, synced bool, d time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				if !synced || d < 0 {
					t.Errorf("commit: synced %v, %v", synced, d)
				}
				commits++
				ops += n
			},
			Wait: func(d time.Duration, row bool) {
				mu.Lock()
				defer mu.Unlock()
				if row {
					got++
				} else {
					timedOut++
				}
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := createTable(t, db, "jobs")
	insert(t, db, h, "a")
	o := db.NewOwner()
	sub := []Sub{{Database: testDB, Table: "jobs"}}
	if idx, err := o.Wait(context.Background(), sub, time.Second); err != nil || idx != 1 {
		t.Fatalf("Wait = %d, %v", idx, err)
	}
	if idx, err := o.Wait(context.Background(), sub, 0); err != nil || idx != 0 {
		t.Fatalf("Wait = %d, %v", idx, err)
	}
	mu.Lock()
	defer mu.Unlock()
	// CREATE TABLE, INSERT, and the consume by the second Wait.
	if commits != 3 || ops != 3 || got != 1 || timedOut != 1 {
		t.Fatalf("commits %d ops %d got %d timed out %d", commits, ops, got, timedOut)
	}
}
