package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/mariadbtest"
	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/queue/sqlstore"
)

// reopen opens another store on database name: another process sharing
// the queues.
func reopen(t *testing.T, name string) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(mariadbtest.Start(t).DSN("", ""), &sqlstore.Options{Database: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// TestValveElection: one store at a time leads a name; release and a
// store that goes away (its connections closed, as when its process dies)
// let the next one lead.
func TestValveElection(t *testing.T) {
	a, name := open(t)
	defer a.Close()
	stores := []*sqlstore.Store{reopen(t, name), reopen(t, name)}
	ctx := context.Background()
	lead, release, err := a.Lead(ctx, "test_v")
	if err != nil {
		t.Fatal(err)
	}
	type term struct {
		i       int
		lead    context.Context
		release func()
	}
	got := make(chan term, 2)
	for i, s := range stores {
		go func() {
			l, r, err := s.Lead(ctx, "test_v")
			if err != nil {
				t.Error(err)
				return
			}
			got <- term{i, l, r}
		}()
	}
	select {
	case <-got:
		t.Fatal("a second store leads while the first does")
	case <-time.After(2 * time.Second): // the others ask every second
	}
	release()
	if lead.Err() == nil {
		t.Fatal("the released term's context is not done")
	}
	next := <-got
	select {
	case <-got:
		t.Fatal("two stores lead at once")
	case <-time.After(2 * time.Second):
	}
	// The leader's store closes (its connections, and so its lock, go,
	// as when its process dies): the other takes over.
	start := time.Now()
	stores[next.i].Close()
	last := <-got
	t.Logf("takeover after the leader's store closed: %v", time.Since(start).Round(time.Millisecond))
	if next.lead.Err() == nil {
		t.Fatal("the closed store's term is not done")
	}
	last.release()
	next.release()
	stores[last.i].Close()
}

// TestValveAcrossProcesses: a reservation made by one store holds in
// another; a consume made in one store reaches the hooks of another
// through the consume log, again until its record is deleted; a fenced
// write fails once the fence moved.
func TestValveAcrossProcesses(t *testing.T) {
	a, name := open(t)
	defer a.Close()
	b := reopen(t, name)
	defer b.Close()
	const db = "test"
	if err := a.CreateDatabase(db); err != nil {
		t.Fatal(err)
	}
	for _, tb := range []string{"in", "out"} {
		if err := a.CreateTable(db, tb, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, "the tables in store b", func() bool { _, err := b.Table(db, "out"); return err == nil })
	in, _ := b.Table(db, "in")
	out, _ := b.Table(db, "out")

	// Reserve on a: b's clients no longer get the rows.
	a.Reserve(db, "in")
	if _, err := b.Insert(in, [][]byte{[]byte("r1")}); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the reservation in store b", func() bool {
		c := b.NewConn()
		defer c.Close()
		n, err := c.Wait(context.Background(), []queue.Sub{{Database: db, Table: "in"}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	ic := b.NewInternalConn()
	if n, err := ic.Wait(context.Background(), []queue.Sub{{Database: db, Table: "in"}}, 0); n != 1 || err != nil {
		t.Fatalf("an internal conn's wait on a reserved table = %d, %v", n, err)
	}
	// A row owned in b: a's AwaitUnowned waits for it to be given back.
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	err := a.AwaitUnowned(short, db, []string{"in", "gone"})
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("AwaitUnowned with a row owned elsewhere: %v", err)
	}
	ic.Close()
	if err := a.AwaitUnowned(context.Background(), db, []string{"in", "gone"}); err != nil {
		t.Fatalf("AwaitUnowned once the row is back: %v", err)
	}

	// Hooks on a; consumes on b.
	var mu sync.Mutex
	var seen []queue.Consumed
	hook := func(c queue.Consumed) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, c)
	}
	remove := a.OnConsume(db, "out", true, hook)
	if _, err := b.Insert(out, [][]byte{[]byte("p1"), []byte("p2")}); err != nil {
		t.Fatal(err)
	}
	got := func() []string {
		mu.Lock()
		defer mu.Unlock()
		var s []string
		for _, c := range seen {
			s = append(s, fmt.Sprintf("%d:%d:%s", c.TableID, c.RowID, c.Payload))
		}
		return s
	}
	// b learns of the watch at its next catalog load: consume row 1 once
	// its consume is logged.
	consume := func(want uint64) {
		t.Helper()
		c := b.NewConn()
		defer c.Close()
		if n, err := c.Wait(context.Background(), []queue.Sub{{Database: db, Table: "out"}}, time.Second); n != 1 || err != nil {
			t.Fatalf("wait = %d, %v", n, err)
		}
		if r, _, _ := c.RowID(); r != want {
			t.Fatalf("took row %d, want %d", r, want)
		}
		if err := c.End(); err != nil {
			t.Fatal(err)
		}
	}
	// OnConsume stored the watch, a catalog change: b logs its consumes
	// once it loaded the catalog since.
	v := a.CatalogVersion()
	waitUntil(t, "the watch in store b", func() bool { return b.CatalogVersion() >= v })
	consume(1)
	want := fmt.Sprintf("%d:1:p1", out.ID())
	waitUntil(t, "the hook on a to see b's consume", func() bool { return len(got()) == 1 })
	if g := got(); g[0] != want {
		t.Fatalf("hook saw %v, want %s", g, want)
	}
	mu.Lock()
	ack := seen[0].Ack
	mu.Unlock()
	if ack.NS == "" {
		t.Fatal("a logged consume came without its record")
	}
	// Not acknowledged: new hooks get it again.
	remove()
	remove = a.OnConsume(db, "out", true, hook)
	waitUntil(t, "the record given again", func() bool { return len(got()) == 2 })
	if err := a.NewInternalConn().Apply(queue.Write{Delete: []queue.AuxEntry{ack}}); err != nil {
		t.Fatal(err)
	}
	remove()
	remove = a.OnConsume(db, "out", true, hook)
	defer remove()
	consume(2)
	waitUntil(t, "the second consume", func() bool { return len(got()) == 3 })
	if g := got(); g[2] != fmt.Sprintf("%d:2:p2", out.ID()) {
		t.Fatalf("hook saw %v after the record was deleted", g)
	}

	// Fence.
	fence := queue.AuxEntry{NS: "v", Key: []byte("epoch"), Value: []byte("one")}
	if err := a.NewInternalConn().Apply(queue.Write{Set: []queue.AuxEntry{fence}}); err != nil {
		t.Fatal(err)
	}
	w := queue.Write{Fence: &fence, Set: []queue.AuxEntry{{NS: "v", Key: []byte("k"), Value: []byte("1")}}}
	if err := b.NewInternalConn().Apply(w); err != nil {
		t.Fatal(err)
	}
	if err := a.NewInternalConn().Apply(queue.Write{Set: []queue.AuxEntry{{NS: "v", Key: []byte("epoch"), Value: []byte("two")}}}); err != nil {
		t.Fatal(err)
	}
	w.Set[0].Value = []byte("2")
	if err := b.NewInternalConn().Apply(w); !errors.Is(err, queue.ErrFenced) {
		t.Fatalf("a write past its fence: %v", err)
	}
	var k1 string
	_ = a.AuxScan("v", func(k, val []byte) bool {
		if string(k) == "k" {
			k1 = string(val)
		}
		return true
	})
	if k1 != "1" {
		t.Fatalf("the fenced write stored k = %q", k1)
	}
}
