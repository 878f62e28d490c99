package queue

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestWaitPriority: Wait takes from the first table, in argument order, that
// has a free row.
func TestWaitPriority(t *testing.T) {
	tests := []struct {
		name    string
		t1, t2  []string // rows inserted before the Wait
		order   []string // Wait arguments
		wantIdx int
		wantRow row
	}{
		{"both have rows", []string{"a"}, []string{"b"}, []string{"t1", "t2"}, 1, row{1, "a"}},
		{"both have rows, reversed", []string{"a"}, []string{"b"}, []string{"t2", "t1"}, 1, row{1, "b"}},
		{"only the second", nil, []string{"b"}, []string{"t1", "t2"}, 2, row{1, "b"}},
		{"only the first", []string{"a", "a2"}, nil, []string{"t1", "t2"}, 1, row{1, "a"}},
		{"same table twice", nil, []string{"b"}, []string{"t2", "t2"}, 1, row{1, "b"}},
		{"neither", nil, nil, []string{"t1", "t2"}, 0, row{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := map[string]Table{"t1": createTable(t, db, "t1"), "t2": createTable(t, db, "t2")}
			if len(tc.t1) > 0 {
				insert(t, db, h["t1"], tc.t1...)
			}
			if len(tc.t2) > 0 {
				insert(t, db, h["t2"], tc.t2...)
			}
			o := db.NewOwner()
			idx := mustWait(t, o, subs(tc.order...), 0)
			if idx != tc.wantIdx {
				t.Fatalf("Wait = %d, want %d", idx, tc.wantIdx)
			}
			if idx == 0 {
				return
			}
			got := h[tc.order[idx-1]]
			if !o.OwnsRowIn(got) {
				t.Errorf("owner does not own a row of %s", got.Name())
			}
			checkRows(t, "owner scan", scan(t, o, got), tc.wantRow)
		})
	}
}

// TestWaitBlocksUntilInsert: a blocked Wait is woken by an insert into any of
// its tables and gets the index of that table.
func TestWaitBlocksUntilInsert(t *testing.T) {
	tests := []struct {
		name    string
		order   []string // Wait arguments
		into    string
		wantIdx int
	}{
		{"first table", []string{"t1", "t2"}, "t1", 1},
		{"second table", []string{"t1", "t2"}, "t2", 2},
		{"same table twice", []string{"t2", "t1", "t2"}, "t2", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := map[string]Table{"t1": createTable(t, db, "t1"), "t2": createTable(t, db, "t2")}
			o := db.NewOwner()
			res := goWait(t.Context(), o, subs(tc.order...), 10*time.Second)
			awaitWaiters(t, db, h["t1"], 1)
			awaitWaiters(t, db, h["t2"], 1)
			notReturned(t, res, "before the insert")

			start := time.Now()
			insert(t, db, h[tc.into], "payload")
			r := receive(t, res)
			if r.err != nil || r.idx != tc.wantIdx {
				t.Fatalf("Wait = %d, %v; want %d, nil", r.idx, r.err, tc.wantIdx)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("Wait returned %v after the insert", d)
			}
			checkRows(t, "owner scan", scan(t, o, h[tc.into]), row{1, "payload"})
			for name, th := range h {
				if n := len(waitersOf(db, th)); n != 0 {
					t.Errorf("%s still has %d waiters", name, n)
				}
			}
			// The row went to the waiter, not to the free list.
			if n := db.Count(h[tc.into]); n != 1 {
				t.Errorf("Count = %d, want 1", n)
			}
			checkRows(t, "non-owner scan", scan(t, db.NewOwner(), h[tc.into]))
			// Nothing stale is left to swallow the next row.
			insert(t, db, h[tc.into], "next")
			checkRows(t, "non-owner scan after another insert", scan(t, db.NewOwner(), h[tc.into]), row{2, "next"})
		})
	}
}

// TestWaitersArrivalOrder: blocked waiters are served in the order they
// started waiting.
func TestWaitersArrivalOrder(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	o1, o2 := db.NewOwner(), db.NewOwner()
	res1 := goWait(t.Context(), o1, subs("q"), 10*time.Second)
	w1 := awaitWaiters(t, db, h, 1)[0]
	res2 := goWait(t.Context(), o2, subs("q"), 10*time.Second)
	w2 := awaitWaiters(t, db, h, 2)[1]
	if w1 == w2 {
		t.Fatal("same waiter registered twice")
	}

	insert(t, db, h, "first")
	r := receive(t, res1)
	if r.err != nil || r.idx != 1 {
		t.Fatalf("first waiter: Wait = %d, %v; want 1, nil", r.idx, r.err)
	}
	if id := rowID(t, o1); id != 1 {
		t.Errorf("first waiter got row %d, want 1", id)
	}
	// The second waiter is still blocked, and still registered.
	if ws := waitersOf(db, h); len(ws) != 1 || ws[0] != w2 {
		t.Fatalf("waiters after one insert = %v, want only the second", ws)
	}
	notReturned(t, res2, "second waiter after one insert")

	insert(t, db, h, "second")
	r = receive(t, res2)
	if r.err != nil || r.idx != 1 {
		t.Fatalf("second waiter: Wait = %d, %v; want 1, nil", r.idx, r.err)
	}
	checkRows(t, "second waiter scan", scan(t, o2, h), row{2, "second"})
	checkRows(t, "first waiter scan", scan(t, o1, h), row{1, "first"})
}

// TestWaitServedByAbort: a row released by Abort goes to a blocked waiter.
func TestWaitServedByAbort(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1")
	a, b := db.NewOwner(), db.NewOwner()
	mustWait(t, a, subs("q"), 0)
	res := goWait(t.Context(), b, subs("q"), 10*time.Second)
	awaitWaiters(t, db, h, 1)
	if released, err := a.Abort(); err != nil || !released {
		t.Fatalf("Abort = %v, %v", released, err)
	}
	if r := receive(t, res); r.err != nil || r.idx != 1 {
		t.Fatalf("Wait = %d, %v; want 1, nil", r.idx, r.err)
	}
	if id := rowID(t, b); id != 1 {
		t.Errorf("waiter got row %d, want 1", id)
	}
}

// TestWaitCancel: cancelling the context ends a blocked Wait with
// context.Cause, outside owner mode; a row already handed to the waiter goes
// back to the queue.
func TestWaitCancel(t *testing.T) {
	cause := errors.New("client went away")
	tests := []struct {
		name string
		// handOver hands a row to the waiter in the same critical section
		// as the cancellation, so that the waiter sees both.
		handOver bool
	}{
		{"nothing handed over", false},
		{"row handed over", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := createTable(t, db, "q")
			insert(t, db, h, "r1")
			holder := db.NewOwner()
			mustWait(t, holder, subs("q"), 0) // owns 1

			ctx, cancel := context.WithCancelCause(t.Context())
			defer cancel(nil)
			o := db.NewOwner()
			res := goWait(ctx, o, subs("q"), 10*time.Second)
			w := awaitWaiters(t, db, h, 1)[0]

			if tc.handOver {
				db.mu.Lock()
				cancel(cause)
				// holder.Abort, inside the lock held for the cancellation.
				hr := holder.row
				holder.row, holder.mode = nil, false
				db.releaseLocked(hr)
				gotRow := w.got != nil
				db.mu.Unlock()
				if !gotRow {
					t.Fatal("the released row was not handed to the waiter")
				}
			} else {
				cancel(cause)
			}

			r := receive(t, res)
			if r.idx != 0 || !errors.Is(r.err, cause) {
				t.Fatalf("Wait = %d, %v; want 0, %v", r.idx, r.err, cause)
			}
			if o.InOwnerMode() {
				t.Error("owner mode after a cancelled Wait")
			}
			if len(waitersOf(db, h)) != 0 {
				t.Error("cancelled waiter still registered")
			}
			if n := db.Count(h); n != 1 {
				t.Errorf("Count = %d, want 1", n)
			}
			if tc.handOver {
				// Row 1 is free again and goes to the next Wait.
				next := db.NewOwner()
				if idx := mustWait(t, next, subs("q"), 0); idx != 1 {
					t.Fatalf("next Wait = %d, want 1", idx)
				}
				if id := rowID(t, next); id != 1 {
					t.Errorf("next Wait got row %d, want 1", id)
				}
			} else {
				checkRows(t, "non-owner scan", scan(t, db.NewOwner(), h))
			}
		})
	}
}

// TestWaitCancelConsumesPreviousRow: the previous row is consumed even when
// the Wait is then cancelled.
func TestWaitCancelConsumesPreviousRow(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1")
	o := db.NewOwner()
	mustWait(t, o, subs("q"), 0)
	ctx, cancel := context.WithCancel(t.Context())
	res := goWait(ctx, o, subs("q"), 10*time.Second)
	awaitWaiters(t, db, h, 1)
	cancel()
	if r := receive(t, res); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Wait = %d, %v; want context.Canceled", r.idx, r.err)
	}
	if n := db.Count(h); n != 0 {
		t.Errorf("Count = %d, want 0", n)
	}
}

// TestCloseWakesWaiters: Close ends blocked Waits with ErrClosed, and every
// later call fails with ErrClosed.
func TestCloseWakesWaiters(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "q")
	h2 := createTable(t, db, "q2")
	var results []<-chan waitResult
	var owners []*Owner
	for _, s := range [][]Sub{subs("q"), subs("q", "q2"), subs("q2")} {
		o := db.NewOwner()
		owners = append(owners, o)
		results = append(results, goWait(t.Context(), o, s, 10*time.Second))
	}
	awaitWaiters(t, db, h, 2)
	awaitWaiters(t, db, h2, 2)

	start := time.Now()
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i, res := range results {
		r := receive(t, res)
		if r.idx != 0 || !errors.Is(r.err, ErrClosed) {
			t.Errorf("waiter %d: Wait = %d, %v; want 0, ErrClosed", i, r.idx, r.err)
		}
		if owners[i].InOwnerMode() {
			t.Errorf("waiter %d in owner mode", i)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("waiters woke %v after Close", d)
	}

	o := db.NewOwner()
	calls := []struct {
		name string
		err  error
	}{
		{"Close", db.Close()},
		{"Insert", func() error { _, err := db.Insert(h, [][]byte{[]byte("x")}); return err }()},
		{"Table", func() error { _, err := db.Table(testDB, "q"); return err }()},
		{"Wait", func() error { _, err := o.Wait(t.Context(), subs("q"), time.Second); return err }()},
		{"CreateTable", db.CreateTable(testDB, "new", nil)},
		{"CreateDatabase", db.CreateDatabase("new")},
		{"DropTable", db.DropTable(testDB, "q")},
		{"TruncateTable", db.TruncateTable(testDB, "q")},
	}
	for _, c := range calls {
		if !errors.Is(c.err, ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", c.name, c.err)
		}
	}
}
