package sqlstore_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/mariadbtest"
	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/queue/sqlstore"
)

// openAt opens another process's view of the store in database name.
func openAt(t *testing.T, name string, statsInterval time.Duration) *sqlstore.Store {
	t.Helper()
	s, err := sqlstore.Open(mariadbtest.Start(t).DSN("", ""), &sqlstore.Options{
		Database: name, Logger: slog.New(slog.DiscardHandler), StatsInterval: statsInterval,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// state returns the table's state in s's Snapshot.
func state(t *testing.T, s *sqlstore.Store, db, table string) queue.TableState {
	t.Helper()
	for _, ts := range s.Snapshot() {
		if ts.Database == db && ts.Table == table {
			return ts
		}
	}
	t.Fatalf("%s.%s not in the Snapshot", db, table)
	return queue.TableState{}
}

// TestSnapshotTwoProcesses: two stores on one database stand for two
// q4mproxy nodes. The rows are the whole table's, whichever node inserted
// them; owned rows and counters are each node's own; the rows read are
// kept for StatsInterval (node b: an hour), however often they are asked.
func TestSnapshotTwoProcesses(t *testing.T) {
	first, name := open(t) // creates the store
	first.Close()
	a := openAt(t, name, time.Nanosecond)
	b := openAt(t, name, time.Hour)
	if err := a.CreateDatabase("d"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateTable("d", "q", []byte("meta")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for { // b's poller loads the changed catalog
		if _, err := b.Table("d", "q"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("node b never saw table d.q")
		}
		time.Sleep(10 * time.Millisecond) // polling for the other node's catalog
	}
	h, err := a.Table("d", "q")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Insert(h, [][]byte{[]byte("1"), []byte("2"), []byte("3")}); err != nil {
		t.Fatal(err)
	}
	c := a.NewConn()
	defer c.Close()
	if i, err := c.Wait(context.Background(), []queue.Sub{{Database: "d", Table: "q"}}, 0); err != nil || i != 1 {
		t.Fatalf("Wait = %d, %v", i, err)
	}
	sa, sb := state(t, a, "d", "q"), state(t, b, "d", "q")
	if !sa.Shared || !sb.Shared {
		t.Fatal("the upstream store's tables are not marked Shared")
	}
	if sa.Rows != 3 || sb.Rows != 3 {
		t.Fatalf("rows seen by a, b = %d, %d; want 3, 3 (the table's)", sa.Rows, sb.Rows)
	}
	if sa.Owned != 1 || sb.Owned != 0 {
		t.Fatalf("owned on a, b = %d, %d; want 1, 0 (each node's own)", sa.Owned, sb.Owned)
	}
	if sa.RowsWritten != 3 || sb.RowsWritten != 0 || sa.WaitImmediate != 1 || sb.WaitImmediate != 0 {
		t.Fatalf("counters of a %+v, b %+v: want a's inserts and wait on a only", sa.TableStats, sb.TableStats)
	}
	if sb.OldestAge < 0 || sb.OldestAge > time.Minute {
		t.Fatalf("oldest row age on b = %v", sb.OldestAge)
	}
	if _, err := a.Insert(h, [][]byte{[]byte("4"), []byte("5")}); err != nil {
		t.Fatal(err)
	}
	// a reads again once its interval is over (1 ns, or ten times the
	// last read's duration).
	deadline = time.Now().Add(30 * time.Second)
	for state(t, a, "d", "q").Rows != 5 {
		if time.Now().After(deadline) {
			t.Fatal("rows on a never became 5 after 2 more")
		}
		time.Sleep(10 * time.Millisecond) // polling: the interval is the store's to judge
	}
	for range 100 { // a scrape storm on b: its read stays in use
		if r := state(t, b, "d", "q").Rows; r != 3 {
			t.Fatalf("rows on b within its StatsInterval = %d, want the 3 it read", r)
		}
	}
	if g := b.Stats(); g.Tables != 1 || g.Rows != 3 || g.Owned != 0 {
		t.Fatalf("b's Stats: tables %d, rows %d, owned %d; want 1, 3, 0", g.Tables, g.Rows, g.Owned)
	}
	if g := a.Stats(); g.Tables != 1 || g.Rows != 5 || g.Owned != 1 {
		t.Fatalf("a's Stats: tables %d, rows %d, owned %d; want 1, 5, 1", g.Tables, g.Rows, g.Owned)
	}
	if err := b.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}
