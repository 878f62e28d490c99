// Package queuetest is the behaviour suite of the queue model: the contract
// of queue.Store and queue.Conn stated as tests, run against every backend
// (the Pebble one in package queue's tests, the upstream one against a real
// MariaDB). A backend passes a constructor to Run.
package queuetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Open returns a fresh, empty store for one test; the store is the test's
// own (Run closes it when the test ends).
type Open func(t *testing.T) queue.Store

// DB is the database every test of the suite creates its tables in.
const DB = "qtest"

// long bounds the waits that must end because something happens: a wait
// that reaches it fails the test (nothing measures time).
const long = 30 * time.Second

// Caps are what a backend documents as its own way where the contract
// allows two.
// Both backends hold to the whole contract today: it is empty.
type Caps struct{}

// Run runs the whole suite, one subtest per behaviour.
func Run(t *testing.T, caps Caps, open Open) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s queue.Store)
	}{
		{"Catalog", testCatalog},
		{"RowIDs", testRowIDs},
		{"FIFO", testFIFO},
		{"WaitAcrossTables", testWaitAcrossTables},
		{"OneOwner", testOneOwner},
		{"AbortKeepsPlace", testAbortKeepsPlace},
		{"CloseReleases", testCloseReleases},
		{"WaitWokenByInsert", testWaitWoken},
		{"WaitersInArrivalOrder", testWaitersInArrivalOrder},
		{"WaitTimeoutAndCancel", testWaitTimeoutCancel},
		{"WaitCancelledTakesNothing", testWaitCancelledTakesNothing},
		{"Filter", testFilter},
		{"OwnerModeScan", testOwnerModeScan},
		{"DeleteRows", testDeleteRows},
		{"RelayMarks", testRelayMarks},
		{"Truncate", testTruncate},
		{"Alter", func(t *testing.T, s queue.Store) { testAlter(t, s, caps) }},
		{"Stats", testStats},
		{"Snapshot", testSnapshot},
		{"Apply", testApply},
		{"OnConsume", testOnConsume},
		{"Fence", testFence},
		{"Concurrent", testConcurrent},
		{"Closed", testClosed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() { _ = s.Close() })
			if err := s.CreateDatabase(DB); err != nil && !errors.Is(err, queue.ErrDatabaseExists) {
				t.Fatalf("CreateDatabase: %v", err)
			}
			tc.fn(t, s)
		})
	}
}

// Helpers.

func create(t *testing.T, s queue.Store, name string) queue.Table {
	t.Helper()
	if err := s.CreateTable(DB, name, []byte("meta:"+name)); err != nil {
		t.Fatalf("CreateTable(%s): %v", name, err)
	}
	return table(t, s, name)
}

func table(t *testing.T, s queue.Store, name string) queue.Table {
	t.Helper()
	h, err := s.Table(DB, name)
	if err != nil {
		t.Fatalf("Table(%s): %v", name, err)
	}
	return h
}

func insert(t *testing.T, s queue.Store, h queue.Table, payloads ...string) uint64 {
	t.Helper()
	rows := make([][]byte, len(payloads))
	for i, p := range payloads {
		rows[i] = []byte(p)
	}
	first, err := s.Insert(h, rows)
	if err != nil {
		t.Fatalf("Insert(%s, %q): %v", h.Name(), payloads, err)
	}
	return first
}

func subs(names ...string) []queue.Sub {
	out := make([]queue.Sub, len(names))
	for i, n := range names {
		out[i] = queue.Sub{Database: DB, Table: n}
	}
	return out
}

// take waits (without blocking) for a row of the tables and returns the
// sub's index and the rowid owned (0, 0 if none).
func take(t *testing.T, c queue.Conn, names ...string) (int, uint64) {
	t.Helper()
	idx, err := c.Wait(context.Background(), subs(names...), 0)
	if err != nil {
		t.Fatalf("Wait(%v): %v", names, err)
	}
	if idx == 0 {
		return 0, 0
	}
	rowid, ok, err := c.RowID()
	if err != nil || !ok {
		t.Fatalf("RowID after Wait = %d, %v, %v", rowid, ok, err)
	}
	return idx, rowid
}

// mustTake is take that requires a row with the given rowid.
func mustTake(t *testing.T, c queue.Conn, want uint64, names ...string) {
	t.Helper()
	if _, got := take(t, c, names...); got != want {
		t.Fatalf("Wait(%v) took rowid %d, want %d", names, got, want)
	}
}

// scan returns the rows c sees in the table, as "rowid:payload".
func scan(t *testing.T, c queue.Conn, h queue.Table) []string {
	t.Helper()
	var out []string
	err := c.Scan(h, func(rowid uint64, payload []byte) bool {
		out = append(out, fmt.Sprintf("%d:%s", rowid, payload))
		return true
	})
	if err != nil {
		t.Fatalf("Scan(%s): %v", h.Name(), err)
	}
	return out
}

func end(t *testing.T, c queue.Conn) {
	t.Helper()
	if err := c.End(); err != nil {
		t.Fatalf("End: %v", err)
	}
}

func wantStrings(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("%s = %q, want %q", what, got, want)
	}
}

// The behaviours.

func testCatalog(t *testing.T, s queue.Store) {
	if !s.HasDatabase(DB) || !slices.Contains(s.Databases(), DB) {
		t.Fatalf("database %s missing: %v", DB, s.Databases())
	}
	if err := s.CreateDatabase(DB); !errors.Is(err, queue.ErrDatabaseExists) {
		t.Fatalf("CreateDatabase twice: %v, want ErrDatabaseExists", err)
	}
	create(t, s, "b")
	h := create(t, s, "a")
	if err := s.CreateTable(DB, "a", nil); !errors.Is(err, queue.ErrTableExists) {
		t.Fatalf("CreateTable twice: %v, want ErrTableExists", err)
	}
	if err := s.CreateTable("qtest_nodb", "a", nil); !errors.Is(err, queue.ErrNoSuchDatabase) {
		t.Fatalf("CreateTable in a missing database: %v, want ErrNoSuchDatabase", err)
	}
	names, err := s.Tables(DB)
	if err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "Tables", names, "a", "b")
	if _, err := s.Tables("qtest_nodb"); !errors.Is(err, queue.ErrNoSuchDatabase) {
		t.Fatalf("Tables of a missing database: %v", err)
	}
	if h.Name() != "a" || h.Database() != DB || !bytes.Equal(h.Meta(), []byte("meta:a")) {
		t.Fatalf("handle = %s.%s %q", h.Database(), h.Name(), h.Meta())
	}
	if _, err := s.Table(DB, "nope"); !errors.Is(err, queue.ErrNoSuchTable) {
		t.Fatalf("Table(nope): %v, want ErrNoSuchTable", err)
	}
	if err := s.DropTable(DB, "b"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropTable(DB, "b"); !errors.Is(err, queue.ErrNoSuchTable) {
		t.Fatalf("DropTable twice: %v", err)
	}
	if _, err := s.Table(DB, "b"); !errors.Is(err, queue.ErrNoSuchTable) {
		t.Fatalf("Table after DROP: %v", err)
	}
	insert(t, s, h, "x")
	if _, err := s.Insert(h, [][]byte{[]byte("y")}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateDatabase("qtest2"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable("qtest2", "c", nil); err != nil {
		t.Fatal(err)
	}
	n, err := s.DropDatabase("qtest2")
	if err != nil || n != 1 {
		t.Fatalf("DropDatabase = %d, %v; want 1 table", n, err)
	}
	if s.HasDatabase("qtest2") {
		t.Fatal("database still there after DropDatabase")
	}
	if _, err := s.DropDatabase("qtest2"); !errors.Is(err, queue.ErrNoSuchDatabase) {
		t.Fatalf("DropDatabase twice: %v", err)
	}
}

func testRowIDs(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	if first := insert(t, s, h, "a", "b", "c"); first != 1 {
		t.Fatalf("first rowid = %d, want 1", first)
	}
	if first := insert(t, s, h, "d"); first != 4 {
		t.Fatalf("next rowid = %d, want 4", first)
	}
	if n := s.Count(h); n != 4 {
		t.Fatalf("Count = %d, want 4", n)
	}
	wantStrings(t, "Scan", scan(t, s.NewConn(), h), "1:a", "2:b", "3:c", "4:d")
	c := s.NewConn()
	mustTake(t, c, 1, "q")
	end(t, c)
	// Consumed rowids are not given again.
	if first := insert(t, s, h, "e"); first != 5 {
		t.Fatalf("rowid after a consume = %d, want 5", first)
	}
	if ok, err := s.RowExists(h, 1); err != nil || ok {
		t.Fatalf("RowExists(consumed) = %v, %v", ok, err)
	}
	if ok, err := s.RowExists(h, 2); err != nil || !ok {
		t.Fatalf("RowExists(2) = %v, %v", ok, err)
	}
}

func testFIFO(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "a", "b", "c")
	c := s.NewConn()
	if c.InOwnerMode() {
		t.Fatal("a new Conn is in owner mode")
	}
	if _, _, err := c.RowID(); !errors.Is(err, queue.ErrNotOwner) {
		t.Fatalf("RowID outside owner mode: %v", err)
	}
	if _, err := c.Abort(); !errors.Is(err, queue.ErrNotOwner) {
		t.Fatalf("Abort outside owner mode: %v", err)
	}
	mustTake(t, c, 1, "q")
	if !c.InOwnerMode() {
		t.Fatal("not in owner mode after Wait")
	}
	if d, tb, r, ok := c.Owned(); !ok || d != DB || tb != "q" || r != 1 {
		t.Fatalf("Owned = %s.%s %d %v", d, tb, r, ok)
	}
	if !c.OwnsRowIn(h) {
		t.Fatal("OwnsRowIn = false")
	}
	// Wait consumes the owned row before taking the next.
	mustTake(t, c, 2, "q")
	end(t, c)
	if c.InOwnerMode() {
		t.Fatal("in owner mode after End")
	}
	if n := s.Count(h); n != 1 {
		t.Fatalf("Count = %d, want 1", n)
	}
	mustTake(t, c, 3, "q")
	end(t, c)
	if idx, _ := take(t, c, "q"); idx != 0 {
		t.Fatalf("Wait on an empty table = %d", idx)
	}
	if !c.InOwnerMode() {
		t.Fatal("a Wait that timed out leaves owner mode off")
	}
	if _, ok, err := c.RowID(); ok || err != nil {
		t.Fatalf("RowID with no row = %v, %v", ok, err)
	}
	end(t, c)
}

func testWaitAcrossTables(t *testing.T, s queue.Store) {
	a, b := create(t, s, "a"), create(t, s, "b")
	insert(t, s, b, "b1")
	c := s.NewConn()
	if idx, r := take(t, c, "a", "b"); idx != 2 || r != 1 {
		t.Fatalf("Wait(a, b) = %d, %d; want sub 2 row 1", idx, r)
	}
	if _, tb, _, _ := c.Owned(); tb != "b" {
		t.Fatalf("owns a row of %q", tb)
	}
	end(t, c)
	insert(t, s, a, "a1")
	insert(t, s, b, "b2")
	if idx, _ := take(t, c, "a", "b"); idx != 1 {
		t.Fatalf("Wait(a, b) with both ready = %d, want 1 (argument order)", idx)
	}
	if idx, _ := take(t, c, "b", "a"); idx != 1 {
		t.Fatalf("Wait(b, a) = %d, want 1", idx)
	}
	end(t, c)
	// A missing table reached in argument order is an error.
	if _, err := c.Wait(context.Background(), subs("nope", "a"), 0); !errors.Is(err, queue.ErrNoSuchTable) {
		t.Fatalf("Wait(nope): %v", err)
	}
	if c.InOwnerMode() {
		t.Fatal("in owner mode after a failed Wait")
	}
}

func testOneOwner(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "only")
	c1, c2 := s.NewConn(), s.NewConn()
	mustTake(t, c1, 1, "q")
	if idx, _ := take(t, c2, "q"); idx != 0 {
		t.Fatal("a second Conn took an owned row")
	}
	wantStrings(t, "Scan by another Conn", scan(t, c2, h))
	end(t, c2)
	if n := s.Count(h); n != 1 {
		t.Fatalf("Count with the row owned = %d, want 1", n)
	}
	if ok, err := c1.Abort(); !ok || err != nil {
		t.Fatalf("Abort = %v, %v", ok, err)
	}
	mustTake(t, c2, 1, "q")
	end(t, c2)
}

func testAbortKeepsPlace(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "a", "b", "c")
	c1, c2, c3 := s.NewConn(), s.NewConn(), s.NewConn()
	mustTake(t, c1, 1, "q")
	mustTake(t, c2, 2, "q")
	if _, err := c1.Abort(); err != nil {
		t.Fatal(err)
	}
	if c1.InOwnerMode() {
		t.Fatal("in owner mode after Abort")
	}
	mustTake(t, c3, 1, "q")
	wantStrings(t, "Scan", scan(t, c1, h), "3:c")
}

func testCloseReleases(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "a", "b")
	c1, c2 := s.NewConn(), s.NewConn()
	mustTake(t, c1, 1, "q")
	if !c1.Close() {
		t.Fatal("Close released nothing")
	}
	mustTake(t, c2, 1, "q")
	if c1.Close() {
		t.Fatal("a second Close released a row")
	}
	end(t, c2)
}

func testWaitWoken(t *testing.T, s queue.Store) {
	a := create(t, s, "a")
	b := create(t, s, "b")
	type result struct {
		idx int
		err error
	}
	c := s.NewConn()
	done := make(chan result, 1)
	go func() {
		idx, err := c.Wait(context.Background(), subs("a", "b"), long)
		done <- result{idx, err}
	}()
	insert(t, s, b, "late")
	r := <-done
	if r.err != nil || r.idx != 2 {
		t.Fatalf("woken Wait = %d, %v; want 2", r.idx, r.err)
	}
	wantStrings(t, "owned row", scan(t, c, b), "1:late")
	end(t, c)
	if n := s.Count(a); n != 0 {
		t.Fatalf("Count(a) = %d", n)
	}
}

// startWaiter starts a blocking Wait on sub of a new Conn and returns
// once it has parked; the result arrives on the channel.
func startWaiter(t *testing.T, s queue.Store, sub []queue.Sub) (queue.Conn, <-chan int) {
	t.Helper()
	c := s.NewConn()
	blocked := make(chan struct{})
	done := make(chan int, 1)
	var once sync.Once
	go func() {
		ctx := queue.WithBlockHook(context.Background(), func() { once.Do(func() { close(blocked) }) })
		idx, err := c.Wait(ctx, sub, long)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		done <- idx
	}()
	select {
	case <-blocked:
	case idx := <-done:
		t.Fatalf("Wait returned %d without blocking", idx)
	}
	return c, done
}

// testWaitersInArrivalOrder: blocked waiters are served in the order they
// started waiting (Q4M's wake-listener test): one row goes to the first
// waiter, and of rows that came together, the first waiter takes its
// choice before the second takes its own.
func testWaitersInArrivalOrder(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	c1, done1 := startWaiter(t, s, subs("q"))
	c2, done2 := startWaiter(t, s, subs("q"))
	insert(t, s, h, "one")
	if idx := <-done1; idx != 1 {
		t.Fatalf("first waiter: Wait = %d", idx)
	}
	wantStrings(t, "first waiter's row", scan(t, c1, h), "1:one")
	insert(t, s, h, "two")
	if idx := <-done2; idx != 1 {
		t.Fatalf("second waiter: Wait = %d", idx)
	}
	wantStrings(t, "second waiter's row", scan(t, c2, h), "2:two")
	end(t, c1)
	end(t, c2)

	// Each prefers "p0" rows, then takes "p1" ones.
	pref := []queue.Sub{
		{Database: DB, Table: "q", Filter: prefixFilter("p0")},
		{Database: DB, Table: "q", Filter: prefixFilter("p1")},
	}
	c1, done1 = startWaiter(t, s, pref)
	c2, done2 = startWaiter(t, s, pref)
	insert(t, s, h, "p1a", "p0b", "p1c")
	if idx := <-done1; idx != 1 {
		t.Fatalf("first waiter: Wait = %d, want 1 (the p0 row)", idx)
	}
	if idx := <-done2; idx != 2 {
		t.Fatalf("second waiter: Wait = %d, want 2 (a p1 row)", idx)
	}
	wantStrings(t, "first waiter's row", scan(t, c1, h), "4:p0b")
	wantStrings(t, "second waiter's row", scan(t, c2, h), "3:p1a")
	end(t, c1)
	end(t, c2)
	wantStrings(t, "left", scan(t, s.NewConn(), h), "5:p1c")
}

// testWaitCancelledTakesNothing: a Wait whose context is already
// cancelled (a statement killed, or the server shutting down, as it
// starts) returns the cause and leaves a free row free, so a row given
// back by a connection closed in a shutdown never reaches a statement of
// the dying server.
func testWaitCancelledTakesNothing(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "a")
	cause := errors.New("shutting down")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(cause)
	c := s.NewConn()
	if idx, err := c.Wait(ctx, subs("q"), long); !errors.Is(err, cause) || idx != 0 {
		t.Fatalf("Wait with a cancelled context = %d, %v; want 0, %v", idx, err, cause)
	}
	if _, _, _, ok := c.Owned(); ok {
		t.Fatal("the cancelled Wait left its connection owning a row")
	}
	other := s.NewConn()
	if idx, err := other.Wait(context.Background(), subs("q"), 0); err != nil || idx != 1 {
		t.Fatalf("Wait after the cancelled one = %d, %v; want the row", idx, err)
	}
	wantStrings(t, "the row", scan(t, other, h), "1:a")
	end(t, other)
	c.Close()
}

func testWaitTimeoutCancel(t *testing.T, s queue.Store) {
	create(t, s, "q")
	c := s.NewConn()
	idx, err := c.Wait(context.Background(), subs("q"), 20*time.Millisecond)
	if err != nil || idx != 0 {
		t.Fatalf("Wait on an empty table = %d, %v; want a timeout", idx, err)
	}
	end(t, c)
	cause := errors.New("client gone")
	ctx, cancel := context.WithCancelCause(context.Background())
	done := make(chan error, 1)
	blocked := make(chan struct{})
	var once sync.Once
	go func() {
		ctx := queue.WithBlockHook(ctx, func() { once.Do(func() { close(blocked) }) })
		_, err := c.Wait(ctx, subs("q"), long)
		done <- err
	}()
	<-blocked
	cancel(cause)
	if err := <-done; !errors.Is(err, cause) {
		t.Fatalf("cancelled Wait: %v, want the cause", err)
	}
	if c.InOwnerMode() {
		t.Fatal("in owner mode after a cancelled Wait")
	}
}

// prefixFilter accepts rows whose payload starts with its prefix.
type prefixFilter string

func (f prefixFilter) Key() string               { return string(f) }
func (f prefixFilter) Match(payload []byte) bool { return bytes.HasPrefix(payload, []byte(f)) }

func testFilter(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "x1", "y2", "x3", "y4")
	c := s.NewConn()
	sub := []queue.Sub{{Database: DB, Table: "q", Filter: prefixFilter("y")}}
	idx, err := c.Wait(context.Background(), sub, 0)
	if err != nil || idx != 1 {
		t.Fatalf("filtered Wait = %d, %v", idx, err)
	}
	if r, _, _ := c.RowID(); r != 2 {
		t.Fatalf("filtered Wait took %d, want 2", r)
	}
	// Compile builds the filter only when the sub is reached.
	compiled := 0
	sub = []queue.Sub{{Database: DB, Table: "q", Compile: func(h queue.Table) (queue.Filter, error) {
		compiled++
		return prefixFilter("y"), nil
	}}}
	if idx, err := c.Wait(context.Background(), sub, 0); err != nil || idx != 1 {
		t.Fatalf("compiled Wait = %d, %v", idx, err)
	}
	if r, _, _ := c.RowID(); r != 4 || compiled != 1 {
		t.Fatalf("compiled Wait took %d (compiled %d times), want 4", r, compiled)
	}
	end(t, c)
	// A filtered waiter is woken only by a matching row.
	done := make(chan int, 1)
	go func() {
		idx, err := c.Wait(context.Background(), []queue.Sub{{Database: DB, Table: "q", Filter: prefixFilter("z")}}, long)
		if err != nil {
			t.Errorf("Wait: %v", err)
		}
		done <- idx
	}()
	insert(t, s, h, "x5")
	insert(t, s, h, "z6")
	if idx := <-done; idx != 1 {
		t.Fatalf("filtered blocking Wait = %d", idx)
	}
	wantStrings(t, "owned row", scan(t, c, h), "6:z6")
	end(t, c)
	wantStrings(t, "left", scan(t, c, h), "1:x1", "3:x3", "5:x5")
}

func testOwnerModeScan(t *testing.T, s queue.Store) {
	h, other := create(t, s, "q"), create(t, s, "o")
	insert(t, s, h, "a", "b")
	insert(t, s, other, "o")
	c := s.NewConn()
	mustTake(t, c, 1, "q")
	wantStrings(t, "owner-mode Scan", scan(t, c, h), "1:a")
	wantStrings(t, "owner-mode Scan of another table", scan(t, c, other))
	wantStrings(t, "Scan by another Conn", scan(t, s.NewConn(), h), "2:b")
	end(t, c)
}

func testDeleteRows(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "a", "b", "c", "d")
	owner := s.NewConn()
	mustTake(t, owner, 1, "q")
	c := s.NewConn()
	n, err := c.DeleteRows(h, []uint64{1, 2, 4})
	if err != nil || n != 2 {
		t.Fatalf("DeleteRows = %d, %v; want 2 (row 1 is owned)", n, err)
	}
	n, err = owner.DeleteRows(h, []uint64{3})
	if err != nil || n != 0 {
		t.Fatalf("owner DeleteRows of another row = %d, %v", n, err)
	}
	n, err = owner.DeleteRows(h, []uint64{1})
	if err != nil || n != 1 {
		t.Fatalf("owner DeleteRows of its row = %d, %v", n, err)
	}
	if !owner.InOwnerMode() {
		t.Fatal("DeleteRows left owner mode")
	}
	end(t, owner)
	wantStrings(t, "left", scan(t, c, h), "3:c")
	if cnt := s.Count(h); cnt != 1 {
		t.Fatalf("Count = %d", cnt)
	}
}

func testRelayMarks(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	rows := [][]byte{[]byte("r")}
	first, skipped, err := s.InsertFrom(h, rows, &queue.Source{Sender: 3, RowID: 5})
	if err != nil || skipped || first != 1 {
		t.Fatalf("InsertFrom(5) = %d, %v, %v", first, skipped, err)
	}
	for _, id := range []uint64{5, 4} {
		if _, skipped, err := s.InsertFrom(h, rows, &queue.Source{Sender: 3, RowID: id}); err != nil || !skipped {
			t.Fatalf("InsertFrom(%d) again = skipped %v, %v", id, skipped, err)
		}
	}
	// Marks are per sender.
	if _, skipped, err := s.InsertFrom(h, rows, &queue.Source{Sender: 4, RowID: 1}); err != nil || skipped {
		t.Fatalf("other sender: skipped %v, %v", skipped, err)
	}
	if _, skipped, err := s.InsertFrom(h, rows, &queue.Source{Sender: 3, RowID: 2, Force: true}); err != nil || skipped {
		t.Fatalf("forced: skipped %v, %v", skipped, err)
	}
	// A forced write sets the mark: 3 is above 2.
	if _, skipped, err := s.InsertFrom(h, rows, &queue.Source{Sender: 3, RowID: 3}); err != nil || skipped {
		t.Fatalf("after the forced write: skipped %v, %v", skipped, err)
	}
	if _, _, err := s.InsertFrom(h, rows, &queue.Source{Sender: queue.MaxSenders}); err == nil {
		t.Fatal("sender out of range accepted")
	}
	if n := s.Count(h); n != 4 {
		t.Fatalf("Count = %d, want 4", n)
	}
}

func testTruncate(t *testing.T, s queue.Store) {
	old := create(t, s, "q")
	insert(t, s, old, "a", "b")
	c := s.NewConn()
	mustTake(t, c, 1, "q")
	if err := s.TruncateTable(DB, "q"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(old, [][]byte{[]byte("x")}); !errors.Is(err, queue.ErrNoSuchTable) {
		t.Fatalf("Insert through a handle from before TRUNCATE: %v", err)
	}
	h := table(t, s, "q")
	if h.ID() == old.ID() {
		t.Fatal("TRUNCATE kept the incarnation's ID")
	}
	if !bytes.Equal(h.Meta(), old.Meta()) {
		t.Fatalf("TRUNCATE changed the definition: %q", h.Meta())
	}
	if n := s.Count(h); n != 0 {
		t.Fatalf("Count after TRUNCATE = %d", n)
	}
	if first := insert(t, s, h, "new"); first != 1 {
		t.Fatalf("first rowid after TRUNCATE = %d, want 1", first)
	}
	// The row owned before vanished: ending it consumes nothing new.
	end(t, c)
	wantStrings(t, "after TRUNCATE", scan(t, c, h), "1:new")
	if err := s.ReplaceTable(DB, "q", []byte("meta2")); err != nil {
		t.Fatal(err)
	}
	if h := table(t, s, "q"); !bytes.Equal(h.Meta(), []byte("meta2")) || s.Count(h) != 0 {
		t.Fatalf("ReplaceTable: meta %q count %d", h.Meta(), s.Count(h))
	}
}

func testAlter(t *testing.T, s queue.Store, caps Caps) {
	old := create(t, s, "q")
	insert(t, s, old, "a", "b", "c")
	c := s.NewConn()
	mustTake(t, c, 1, "q")
	alter := func() error {
		return s.AlterTable(DB, "q", []byte("meta:v2"), func(rowid uint64, p []byte) ([]byte, error) {
			return append(bytes.ToUpper(p), '!'), nil
		})
	}
	// The owned row is rewritten under its owner.
	if err := alter(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(old, [][]byte{[]byte("x")}); !errors.Is(err, queue.ErrTableChanged) {
		t.Fatalf("Insert through a handle from before ALTER: %v", err)
	}
	h := table(t, s, "q")
	if !bytes.Equal(h.Meta(), []byte("meta:v2")) || h.ID() != old.ID() {
		t.Fatalf("after ALTER: meta %q, id %d (was %d)", h.Meta(), h.ID(), old.ID())
	}
	wantStrings(t, "owned row after ALTER", scan(t, c, h), "1:A!")
	wantStrings(t, "rows after ALTER", scan(t, s.NewConn(), h), "2:B!", "3:C!")
	if first := insert(t, s, h, "d"); first != 4 {
		t.Fatalf("rowid after ALTER = %d", first)
	}
	end(t, c)
	failed := errors.New("bad row")
	err := s.AlterTable(DB, "q", []byte("meta:v3"), func(rowid uint64, p []byte) ([]byte, error) {
		if rowid == 3 {
			return nil, failed
		}
		return p, nil
	})
	if !errors.Is(err, failed) {
		t.Fatalf("failed ALTER: %v", err)
	}
	if h := table(t, s, "q"); !bytes.Equal(h.Meta(), []byte("meta:v2")) {
		t.Fatalf("a failed ALTER changed the definition to %q", h.Meta())
	}
	if err := s.Compact(context.Background(), table(t, s, "q")); err != nil {
		t.Fatalf("Compact: %v", err)
	}
	wantStrings(t, "rows after Compact", scan(t, s.NewConn(), h), "2:B!", "3:C!", "4:d")
}

func testStats(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	g0 := s.Stats()
	insert(t, s, h, "aa", "bb", "cc")
	c := s.NewConn()
	mustTake(t, c, 1, "q") // immediate
	end(t, c)
	// One insert of three rows is one batch that appends, one consume one
	// that removes (what SHOW ENGINE QUEUE STATUS shows as append, remove).
	if g := s.Stats(); g.Appends-g0.Appends != 1 || g.Removes-g0.Removes != 1 {
		t.Fatalf("after an insert and a consume: Appends +%d, Removes +%d; want +1, +1",
			g.Appends-g0.Appends, g.Removes-g0.Removes)
	}
	mustTake(t, c, 2, "q")
	if _, err := c.Abort(); err != nil {
		t.Fatal(err)
	}
	mustTake(t, c, 2, "q")
	c.Close()
	mustTake(t, c, 2, "q")
	end(t, c)
	mustTake(t, c, 3, "q")
	end(t, c)
	if idx, _ := take(t, c, "q"); idx != 0 {
		t.Fatal("row left")
	}
	end(t, c)
	st := s.TableStats(h)
	want := queue.TableStats{
		RowsWritten: 3, RowsRemoved: 3,
		WaitImmediate: 5, WaitTimeout: 1,
		RestoredByAbort: 1, RestoredByClose: 1,
		BytesTotal: 6, BytesRemoved: 6,
	}
	if st != want {
		t.Fatalf("TableStats = %+v\nwant          %+v", st, want)
	}
	g := s.Stats()
	if g.RowsWritten < 3 || g.RowsRemoved < 3 {
		t.Fatalf("Stats = %+v", g)
	}
	// The store-wide counters: a wait counts once, however many tables.
	if d := (queue.Stats{
		WaitImmediate: g.WaitImmediate - g0.WaitImmediate, WaitDelayed: g.WaitDelayed - g0.WaitDelayed,
		WaitTimeout: g.WaitTimeout - g0.WaitTimeout, RestoredByAbort: g.RestoredByAbort - g0.RestoredByAbort,
		RestoredByClose: g.RestoredByClose - g0.RestoredByClose,
	}); d != (queue.Stats{WaitImmediate: 5, WaitTimeout: 1, RestoredByAbort: 1, RestoredByClose: 1}) {
		t.Fatalf("Stats' wait and restore counters moved by %+v", d)
	}
}

// testSnapshot: what monitoring reads. Rows counts owned rows too; Owned
// and Waiters follow the connections (a wait counts from when it parks);
// Stats sums them, with the tables.
func testSnapshot(t *testing.T, s queue.Store) {
	q, e := create(t, s, "q"), create(t, s, "e")
	create(t, s, "f")
	insert(t, s, q, "aa", "bb")
	c := s.NewConn()
	mustTake(t, c, 1, "q")
	type fig struct{ rows, owned, waiters int }
	look := func() map[string]fig {
		out := map[string]fig{}
		for _, ts := range s.Snapshot() {
			if ts.Database == DB {
				out[ts.Table] = fig{ts.Rows, ts.Owned, ts.Waiters}
			}
		}
		return out
	}
	snap := s.Snapshot()
	if len(snap) != 3 || snap[0].Table != "e" || snap[1].Table != "f" || snap[2].Table != "q" || snap[2].Database != DB {
		t.Fatalf("Snapshot = %+v; want e, f, q in that order", snap)
	}
	if got, want := look(), (map[string]fig{"q": {2, 1, 0}, "e": {0, 0, 0}, "f": {0, 0, 0}}); !maps.Equal(got, want) {
		t.Fatalf("Snapshot (rows, owned, waiters) = %v, want %v", got, want)
	}
	if g := s.Stats(); g.Tables != 3 || g.Rows != 2 || g.Owned != 1 || g.Waiters != 0 {
		t.Fatalf("Stats: tables %d, rows %d, owned %d, waiters %d; want 3, 2, 1, 0", g.Tables, g.Rows, g.Owned, g.Waiters)
	}
	w, got := startWaiter(t, s, subs("e", "f"))
	if f := look(); f["e"].waiters != 1 || f["f"].waiters != 1 || f["q"].waiters != 0 {
		t.Fatalf("a parked wait on e and f: %v", f)
	}
	if g := s.Stats(); g.Waiters != 1 {
		t.Fatalf("Stats.Waiters = %d with one wait parked on two tables", g.Waiters)
	}
	insert(t, s, e, "x")
	if idx := <-got; idx != 1 {
		t.Fatalf("woken wait = %d, want 1", idx)
	}
	end(t, c) // q's row 1 consumed
	if f := look(); f["e"].waiters != 0 || f["f"].waiters != 0 || f["e"].owned != 1 || f["q"].owned != 0 {
		t.Fatalf("after the wait took e's row and q's was consumed: %v", f)
	}
	w.Close()
	if f := look(); f["e"].owned != 0 {
		t.Fatalf("after the owner closed: %v", f)
	}
}

func testApply(t *testing.T, s queue.Store) {
	in, out := create(t, s, "in"), create(t, s, "out")
	s.Reserve(DB, "in")
	insert(t, s, in, "m1")
	user := s.NewConn()
	if idx, _ := take(t, user, "in"); idx != 0 {
		t.Fatal("a Conn took a row of a reserved table")
	}
	end(t, user)
	wantStrings(t, "SELECT sees reserved rows", scan(t, user, in), "1:m1")
	ic := s.NewInternalConn()
	if err := ic.Apply(queue.Write{Consume: true}); !errors.Is(err, queue.ErrNoRow) {
		t.Fatalf("Apply(Consume) without a row: %v", err)
	}
	mustTake(t, ic, 1, "in")
	var firsts []uint64
	err := ic.Apply(queue.Write{
		Consume: true,
		Inserts: []queue.Insertion{{Table: out, Rows: [][]byte{[]byte("o1"), []byte("o2")}}},
		Set:     []queue.AuxEntry{{NS: "v", Key: []byte("k1"), Value: []byte("v1")}, {NS: "v", Key: []byte("k2"), Value: []byte("v2")}},
		Finish: func(first []uint64) []queue.AuxEntry {
			firsts = first
			return []queue.AuxEntry{{NS: "v", Key: []byte("k3"), Value: fmt.Appendf(nil, "%d", first[0])}}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(firsts, []uint64{1}) {
		t.Fatalf("Finish got %v", firsts)
	}
	if n := s.Count(in); n != 0 {
		t.Fatalf("Count(in) = %d after Apply consumed", n)
	}
	wantStrings(t, "out", scan(t, user, out), "1:o1", "2:o2")
	aux := func() []string {
		var kv []string
		if err := s.AuxScan("v", func(k, v []byte) bool {
			kv = append(kv, string(k)+"="+string(v))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		return kv
	}
	wantStrings(t, "aux", aux(), "k1=v1", "k2=v2", "k3=1")
	if err := ic.Apply(queue.Write{Delete: []queue.AuxEntry{{NS: "v", Key: []byte("k2")}}}); err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "aux after Delete", aux(), "k1=v1", "k3=1")
	// An insertion into a table altered since its handle was taken fails
	// whole.
	if err := s.AlterTable(DB, "out", []byte("v2"), func(_ uint64, p []byte) ([]byte, error) { return p, nil }); err != nil {
		t.Fatal(err)
	}
	err = ic.Apply(queue.Write{
		Inserts: []queue.Insertion{{Table: table(t, s, "in"), Rows: [][]byte{[]byte("x")}}, {Table: out, Rows: [][]byte{[]byte("y")}}},
		Set:     []queue.AuxEntry{{NS: "v", Key: []byte("k9"), Value: []byte("no")}},
	})
	if !errors.Is(err, queue.ErrTableChanged) {
		t.Fatalf("Apply into an altered table: %v", err)
	}
	if n := s.Count(in); n != 0 {
		t.Fatalf("a failed Apply inserted: Count(in) = %d", n)
	}
	wantStrings(t, "aux after a failed Apply", aux(), "k1=v1", "k3=1")
}

func testOnConsume(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	insert(t, s, h, "p1", "p2")
	var mu sync.Mutex
	var got []string
	remove := s.OnConsume(DB, "q", true, func(c queue.Consumed) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprintf("%d:%d:%s", c.TableID, c.RowID, c.Payload))
	})
	c := s.NewConn()
	mustTake(t, c, 1, "q")
	end(t, c)
	// A shared store calls the hook soon after the consume, from its log.
	deadline := time.Now().Add(time.Minute)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond) // polling interval
	}
	remove()
	mustTake(t, c, 2, "q")
	end(t, c)
	mu.Lock()
	defer mu.Unlock()
	wantStrings(t, "consumed", got, fmt.Sprintf("%d:1:p1", h.ID()))
}

// testFence: a write whose fence entry no longer holds its value fails
// with ErrFenced and stores nothing; an owned row it was to consume stays
// unconsumed.
func testFence(t *testing.T, s queue.Store) {
	in, out := create(t, s, "in"), create(t, s, "out")
	insert(t, s, in, "m1")
	ic := s.NewInternalConn()
	fence := queue.AuxEntry{NS: "v", Key: []byte("epoch"), Value: []byte("one")}
	if err := ic.Apply(queue.Write{Set: []queue.AuxEntry{fence}}); err != nil {
		t.Fatal(err)
	}
	if err := ic.Apply(queue.Write{Fence: &fence, Set: []queue.AuxEntry{{NS: "v", Key: []byte("k"), Value: []byte("1")}}}); err != nil {
		t.Fatalf("a write within its fence: %v", err)
	}
	if err := ic.Apply(queue.Write{Set: []queue.AuxEntry{{NS: "v", Key: []byte("epoch"), Value: []byte("two")}}}); err != nil {
		t.Fatal(err)
	}
	mustTake(t, ic, 1, "in")
	err := ic.Apply(queue.Write{
		Consume: true, Fence: &fence,
		Inserts: []queue.Insertion{{Table: out, Rows: [][]byte{[]byte("o1")}}},
		Set:     []queue.AuxEntry{{NS: "v", Key: []byte("k"), Value: []byte("2")}},
	})
	if !errors.Is(err, queue.ErrFenced) {
		t.Fatalf("a write past its fence: %v", err)
	}
	ic.Close()
	var kv []string
	if err := s.AuxScan("v", func(k, v []byte) bool { kv = append(kv, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	wantStrings(t, "aux after a fenced write", kv, "epoch=two", "k=1")
	if n := s.Count(out); n != 0 {
		t.Fatalf("a fenced write inserted: Count(out) = %d", n)
	}
	if n := s.Count(in); n != 1 {
		t.Fatalf("a fenced write consumed: Count(in) = %d", n)
	}
}

// testConcurrent runs producers and consumers at once: every row is
// consumed exactly once.
func testConcurrent(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	const producers, consumers, perProducer = 4, 4, 100
	var wg sync.WaitGroup
	for p := range producers {
		wg.Go(func() {
			for i := range perProducer {
				if _, err := s.Insert(h, [][]byte{fmt.Appendf(nil, "%d/%03d", p, i)}); err != nil {
					t.Errorf("Insert: %v", err)
					return
				}
			}
		})
	}
	var mu sync.Mutex
	seen := map[string]bool{}
	var cw sync.WaitGroup
	for range consumers {
		cw.Go(func() {
			c := s.NewConn()
			defer c.Close()
			for {
				mu.Lock()
				n := len(seen)
				mu.Unlock()
				if n == producers*perProducer {
					end(t, c)
					return
				}
				idx, err := c.Wait(context.Background(), subs("q"), 50*time.Millisecond)
				if err != nil {
					t.Errorf("Wait: %v", err)
					return
				}
				if idx == 0 {
					continue
				}
				var payload string
				if err := c.Scan(h, func(_ uint64, p []byte) bool { payload = string(p); return false }); err != nil {
					t.Errorf("Scan: %v", err)
					return
				}
				mu.Lock()
				if seen[payload] {
					t.Errorf("row %q delivered twice", payload)
				}
				seen[payload] = true
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	cw.Wait()
	if len(seen) != producers*perProducer {
		t.Fatalf("consumed %d rows, want %d", len(seen), producers*perProducer)
	}
	if n := s.Count(h); n != 0 {
		t.Fatalf("Count = %d after consuming everything", n)
	}
}

func testClosed(t *testing.T, s queue.Store) {
	h := create(t, s, "q")
	c := s.NewConn()
	done := make(chan error, 1)
	blocked := make(chan struct{})
	var once sync.Once
	go func() {
		ctx := queue.WithBlockHook(context.Background(), func() { once.Do(func() { close(blocked) }) })
		_, err := c.Wait(ctx, subs("q"), long)
		done <- err
	}()
	<-blocked
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Wait across Close: %v", err)
	}
	if _, err := s.Insert(h, [][]byte{[]byte("x")}); err == nil {
		t.Fatal("Insert after Close succeeded")
	}
	if _, err := s.Table(DB, "q"); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("Table after Close: %v", err)
	}
}
