package queue

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// prefixFilter matches payloads that start with prefix and counts its
// evaluations.
type prefixFilter struct {
	prefix string
	evals  *atomic.Int64
}

func (f prefixFilter) Key() string { return "prefix:" + f.prefix }

func (f prefixFilter) Match(p []byte) bool {
	if f.evals != nil {
		f.evals.Add(1)
	}
	return strings.HasPrefix(string(p), f.prefix)
}

func condSub(table, prefix string, evals *atomic.Int64) Sub {
	return Sub{Database: testDB, Table: table, Filter: prefixFilter{prefix, evals}}
}

func payloadOf(t *testing.T, o *Owner, h Table) string {
	t.Helper()
	rows := scan(t, o, h)
	if len(rows) != 1 {
		t.Fatalf("owner sees %v; want one row", rows)
	}
	return rows[0].payload
}

func TestFilterImmediate(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "p")
	insert(t, db, h, "1:a", "0:b", "1:c", "0:d")
	o := db.NewOwner()
	for _, want := range []string{"0:b", "0:d"} {
		if idx := mustWait(t, o, []Sub{condSub("p", "0:", nil)}, 0); idx != 1 {
			t.Fatalf("Wait = %d", idx)
		}
		if got := payloadOf(t, o, h); got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
	if idx := mustWait(t, o, []Sub{condSub("p", "0:", nil)}, 0); idx != 0 {
		t.Fatalf("no prio-0 row left, Wait = %d", idx)
	}
	// Priority between two filters on one table, and a plain fallback.
	if idx := mustWait(t, o, []Sub{condSub("p", "2:", nil), condSub("p", "1:", nil), {Database: testDB, Table: "p"}}, 0); idx != 2 {
		t.Fatalf("Wait(2:, 1:, any) = %d, want 2", idx)
	}
	if got := payloadOf(t, o, h); got != "1:a" {
		t.Errorf("got %q", got)
	}
}

// TestFilterSleepingPriority: a waiter already asleep on two filters of one
// table gets the first filter's row when one insert brings rows for both
// (Q4M's 09-pqueue-single-table-wake-listener).
func TestFilterSleepingPriority(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "p")
	o := db.NewOwner()
	ch := goWait(t.Context(), o, []Sub{condSub("p", "0:", nil), condSub("p", "1:", nil)}, 10*time.Second)
	awaitWaiters(t, db, h, 1)
	if _, err := db.Insert(h, [][]byte{[]byte("1:one"), []byte("0:two"), []byte("1:three")}); err != nil {
		t.Fatal(err)
	}
	r := receive(t, ch)
	if r.err != nil || r.idx != 1 {
		t.Fatalf("Wait = %d, %v; want 1", r.idx, r.err)
	}
	if got := payloadOf(t, o, h); got != "0:two" {
		t.Errorf("got %q, want 0:two", got)
	}
}

// TestFilterCursor: rows found not to match are not evaluated again, until
// a row is released.
func TestFilterCursor(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "p")
	for i := range 50 {
		insert(t, db, h, fmt.Sprintf("1:%d", i))
	}
	var evals atomic.Int64
	o := db.NewOwner()
	sub := []Sub{condSub("p", "0:", &evals)}
	if idx := mustWait(t, o, sub, 0); idx != 0 {
		t.Fatalf("Wait = %d", idx)
	}
	if n := evals.Load(); n != 50 {
		t.Fatalf("first scan evaluated %d rows, want 50", n)
	}
	_ = o.End()
	if idx := mustWait(t, o, sub, 0); idx != 0 || evals.Load() != 50 {
		t.Fatalf("second scan: Wait = %d, evaluations %d; want no new ones", idx, evals.Load())
	}
	_ = o.End()
	insert(t, db, h, "0:new")
	if idx := mustWait(t, o, sub, 0); idx != 1 || evals.Load() != 51 {
		t.Fatalf("after insert: Wait = %d, evaluations %d; want 1 and 51", idx, evals.Load())
	}
	// A released row is looked at again.
	other := db.NewOwner()
	if idx := mustWait(t, other, subs("p"), 0); idx != 1 {
		t.Fatal("plain wait got nothing")
	}
	if _, err := other.Abort(); err != nil {
		t.Fatal(err)
	}
	if idx := mustWait(t, o, sub, 0); idx != 0 {
		t.Fatalf("Wait = %d", idx)
	}
	if n := evals.Load(); n != 52 {
		t.Errorf("after a release: %d evaluations, want 52 (only the released row)", n)
	}
}

// TestFilterReleasedRowWakesWaiter: a conditional waiter asleep is woken by
// the release of a matching row.
func TestFilterReleasedRowWakesWaiter(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "p")
	insert(t, db, h, "0:x")
	a := db.NewOwner()
	mustWait(t, a, subs("p"), 0) // a owns 0:x
	b := db.NewOwner()
	ch := goWait(t.Context(), b, []Sub{condSub("p", "0:", nil)}, 10*time.Second)
	awaitWaiters(t, db, h, 1)
	insert(t, db, h, "1:y") // does not match: b sleeps on
	notReturned(t, ch, "after a non-matching insert")
	if _, err := a.Abort(); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, ch); r.idx != 1 || r.err != nil {
		t.Fatalf("Wait = %d, %v", r.idx, r.err)
	}
	if got := payloadOf(t, b, h); got != "0:x" {
		t.Errorf("got %q", got)
	}
}

// TestFilterConcurrent: producers insert rows of two priorities while
// consumers wait on both filters; every row is consumed once.
func TestFilterConcurrent(t *testing.T) {
	db := newDB(t)
	h := createTable(t, db, "p")
	const producers, each, consumers = 4, 250, 6
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := db.Insert(h, [][]byte{[]byte(fmt.Sprintf("%d:%d-%d", i%2, p, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var total atomic.Int64
	for range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := db.NewOwner()
			defer o.Close()
			for total.Load() < producers*each {
				idx, err := o.Wait(t.Context(), []Sub{condSub("p", "0:", nil), condSub("p", "1:", nil)}, 50*time.Millisecond)
				if err != nil {
					t.Error(err)
					return
				}
				if idx == 0 {
					continue
				}
				var payload string
				_ = o.Scan(h, func(_ uint64, p []byte) bool { payload = string(p); return false })
				if want := fmt.Sprintf("%d:", idx-1); !strings.HasPrefix(payload, want) {
					t.Errorf("sub %d got %q", idx, payload)
				}
				mu.Lock()
				seen[payload]++
				mu.Unlock()
				total.Add(1)
			}
			_ = o.End()
		}()
	}
	wg.Wait()
	if len(seen) != producers*each {
		t.Errorf("consumed %d distinct rows, want %d", len(seen), producers*each)
	}
	for p, n := range seen {
		if n != 1 {
			t.Errorf("%s consumed %d times", p, n)
		}
	}
	if n := db.Count(h); n != 0 {
		t.Errorf("%d rows left", n)
	}
}
