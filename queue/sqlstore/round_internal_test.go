package sqlstore

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/mariadbtest"
	"github.com/q4mproxy/q4mproxy/queue"
)

// TestRoundCarriesInserts: inserts queued with a consume are written in
// the consume's round, one commit for both; an insert the upstream refuses
// in such a round (its handle older than an ALTER) gets its own error and
// the consume still goes through.
func TestRoundCarriesInserts(t *testing.T) {
	m := mariadbtest.Start(t)
	s, err := Open(m.DSN("", ""), &Options{
		Database: fmt.Sprintf("q4mt_round_%d", os.Getpid()), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const db = "qdb"
	if err := s.CreateDatabase(db); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"t", "u"} {
		if err := s.CreateTable(db, name, []byte("meta")); err != nil {
			t.Fatal(err)
		}
	}
	h, err := s.Table(db, "t")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Insert(h, [][]byte{[]byte("a"), []byte("b"), []byte("c")}); err != nil {
		t.Fatal(err)
	}

	// own returns a connection owning the next row of t.
	own := func() *conn {
		c := &conn{s: s}
		if i, err := c.Wait(t.Context(), []queue.Sub{{Database: db, Table: "t"}}, time.Second); err != nil || i != 1 {
			t.Fatalf("Wait = %d, %v", i, err)
		}
		return c
	}
	// together queues a consume of c's row and the inserts for one round,
	// and waits for all of them.
	together := func(c *conn, ins ...*insReq) *req {
		r := &req{consume: c.row, ch: make(chan struct{}, 1)}
		c.row = nil
		for _, in := range ins {
			in.done = make(chan struct{})
		}
		s.mu.Lock()
		s.reqSeq++
		r.seq = s.reqSeq
		s.queued = append(s.queued, r)
		s.insQueued = append(s.insQueued, ins...)
		s.kickLocked()
		s.mu.Unlock()
		s.awaitDone(r)
		for _, in := range ins {
			<-in.done
		}
		return r
	}
	payloads := func(table string) []string {
		var got []string
		c := s.NewConn()
		h, err := s.Table(db, table)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Scan(h, func(_ uint64, p []byte) bool { got = append(got, string(p)); return true }); err != nil {
			t.Fatal(err)
		}
		return got
	}

	hu, err := s.Table(db, "u")
	if err != nil {
		t.Fatal(err)
	}
	c := own() // row a
	commits := s.counters.commits.Load()
	in1 := &insReq{h: h, rows: [][]byte{[]byte("d"), []byte("e")}}
	in2 := &insReq{h: hu, rows: [][]byte{[]byte("x")}}
	r := together(c, in1, in2)
	if r.err != nil || in1.err != nil || in2.err != nil {
		t.Fatalf("consume: %v, inserts: %v, %v", r.err, in1.err, in2.err)
	}
	if n := s.counters.commits.Load() - commits; n != 1 {
		t.Errorf("%d commits for a consume and two inserts, want 1", n)
	}
	if in1.first != 4 || in2.first != 1 {
		t.Errorf("first rowids %d and %d, want 4 and 1", in1.first, in2.first)
	}
	if got, want := payloads("t"), []string{"b", "c", "d", "e"}; !slices.Equal(got, want) {
		t.Errorf("t holds %q, want %q", got, want)
	}
	if got, want := payloads("u"), []string{"x"}; !slices.Equal(got, want) {
		t.Errorf("u holds %q, want %q", got, want)
	}

	// An ALTER since the handle was taken: the upstream refuses the
	// insert, the round runs again without it.
	c = own() // row b
	if err := s.AlterTable(db, "t", []byte("meta2"), func(_ uint64, p []byte) ([]byte, error) { return p, nil }); err != nil {
		t.Fatal(err)
	}
	stale := &insReq{h: h, rows: [][]byte{[]byte("f")}}
	fresh := &insReq{h: hu, rows: [][]byte{[]byte("y")}}
	r = together(c, stale, fresh)
	if r.err != nil {
		t.Fatalf("consume beside a refused insert: %v", r.err)
	}
	if !errors.Is(stale.err, queue.ErrTableChanged) {
		t.Errorf("insert with a handle older than the ALTER: %v, want ErrTableChanged", stale.err)
	}
	if fresh.err != nil || fresh.first != 2 {
		t.Errorf("the other insert: first %d, %v; want 2, nil", fresh.first, fresh.err)
	}
	if got, want := payloads("t"), []string{"c", "d", "e"}; !slices.Equal(got, want) {
		t.Errorf("t holds %q, want %q", got, want)
	}
	if got, want := payloads("u"), []string{"x", "y"}; !slices.Equal(got, want) {
		t.Errorf("u holds %q, want %q", got, want)
	}
}
