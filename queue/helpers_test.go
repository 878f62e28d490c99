package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

const testDB = "test"

// testOptions returns the options every test opens its store with.
func testOptions(fs vfs.FS) *Options {
	return &Options{
		FS:               fs,
		InitialDatabases: []string{testDB},
		Logger:           slog.New(slog.DiscardHandler),
	}
}

// openDB opens the store "db" on fs and closes it when the test ends (unless
// the test closed it already).
func openDB(t *testing.T, fs vfs.FS) *DB {
	t.Helper()
	db, err := Open("db", testOptions(fs))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil && !errors.Is(err, ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return db
}

// newDB opens a fresh in-memory store.
func newDB(t *testing.T) *DB {
	t.Helper()
	return openDB(t, vfs.NewMem())
}

// createTable creates table name in the test database and returns a handle.
func createTable(t *testing.T, db *DB, name string) Table {
	t.Helper()
	if err := db.CreateTable(testDB, name, []byte("meta:"+name)); err != nil {
		t.Fatalf("CreateTable(%s): %v", name, err)
	}
	return lookup(t, db, name)
}

// lookup looks up a table of the test database.
func lookup(t *testing.T, db *DB, name string) Table {
	t.Helper()
	h, err := db.Table(testDB, name)
	if err != nil {
		t.Fatalf("Table(%s): %v", name, err)
	}
	return h
}

// insert inserts the payloads as one unit and returns the first rowid.
func insert(t *testing.T, db *DB, h Table, payloads ...string) uint64 {
	t.Helper()
	rows := make([][]byte, len(payloads))
	for i, p := range payloads {
		rows[i] = []byte(p)
	}
	first, err := db.Insert(h, rows)
	if err != nil {
		t.Fatalf("Insert(%s, %q): %v", h.Name(), payloads, err)
	}
	return first
}

// row is one row as seen by Scan.
type row struct {
	id      uint64
	payload string
}

func (r row) String() string { return fmt.Sprintf("%d:%s", r.id, r.payload) }

// scan returns every row o can see in h.
func scan(t *testing.T, o *Owner, h Table) []row {
	t.Helper()
	var rows []row
	err := o.Scan(h, func(id uint64, p []byte) bool {
		rows = append(rows, row{id, string(p)})
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%s): %v", h.Name(), err)
	}
	return rows
}

// checkRows fails the test unless got equals want.
func checkRows(t *testing.T, what string, got []row, want ...row) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: rows = %v, want %v", what, got, want)
	}
}

// rowID returns the rowid o owns and fails the test if it owns none.
func rowID(t *testing.T, o *Owner) uint64 {
	t.Helper()
	id, ok, err := o.RowID()
	if err != nil || !ok {
		t.Fatalf("RowID = %d, %v, %v; want an owned row", id, ok, err)
	}
	return id
}

// subs names tables of the test database.
func subs(names ...string) []Sub {
	s := make([]Sub, len(names))
	for i, n := range names {
		s[i] = Sub{Database: testDB, Table: n}
	}
	return s
}

// mustWait calls Wait and fails the test on error.
func mustWait(t *testing.T, o *Owner, s []Sub, timeout time.Duration) int {
	t.Helper()
	idx, err := o.Wait(t.Context(), s, timeout)
	if err != nil {
		t.Fatalf("Wait(%v): %v", s, err)
	}
	return idx
}

type waitResult struct {
	idx int
	err error
}

// goWait runs o.Wait in a new goroutine; o must not be used until the result
// has been received.
func goWait(ctx context.Context, o *Owner, s []Sub, timeout time.Duration) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		idx, err := o.Wait(ctx, s, timeout)
		ch <- waitResult{idx, err}
	}()
	return ch
}

// receive waits (bounded) for a Wait result.
func receive(t *testing.T, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Minute):
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

// notReturned fails the test if the Wait behind ch has already returned.
func notReturned(t *testing.T, ch <-chan waitResult, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s: Wait returned %d, %v; want it still blocked", what, r.idx, r.err)
	default:
	}
}

// waitersOf returns the waiters registered on h, under db.mu.
func waitersOf(db *DB, h Table) []*waiter {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(h.t.waiters)
}

// awaitWaiters polls until h has n registered waiters and returns them.
func awaitWaiters(t *testing.T, db *DB, h Table, n int) []*waiter {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		ws := waitersOf(db, h)
		if len(ws) == n {
			return ws
		}
		if time.Now().After(deadline) {
			t.Fatalf("table %s has %d waiters, want %d", h.Name(), len(ws), n)
		}
		runtime.Gosched()
	}
}
