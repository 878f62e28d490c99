package integration

import (
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func openPool(t *testing.T, s *server, params ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", s.dsn("test", params...))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

// TestMaxConnections: one connection over --max-connections gets ERROR
// 1040 (08004); once one closes, a new one is served.
func TestMaxConnections(t *testing.T) {
	s := startServer(t, "--max-connections", "2")
	a, b, c := openPool(t, s), openPool(t, s), openPool(t, s)
	for _, db := range []*sql.DB{a, b} {
		if err := db.PingContext(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	err := c.PingContext(t.Context())
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1040 || string(me.SQLState[:]) != "08004" {
		t.Fatalf("third connection: %v; want 1040 (08004)", err)
	}
	a.Close()
	eventually(t, time.Minute, "a slot to free up", func() bool { return c.PingContext(t.Context()) == nil })
}

// TestWaitTimeout: an idle connection is closed after its wait_timeout and
// the row it owned goes back to the queue; a busy one (blocked in a long
// queue_wait) is not.
func TestWaitTimeout(t *testing.T) {
	s := startServer(t)
	other := s.conn(t)
	ctx := t.Context()
	for _, q := range []string{"CREATE TABLE wt (v int) ENGINE=queue", "INSERT INTO wt VALUES (1)"} {
		if _, err := other.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	idle := openPool(t, s)
	conn, err := idle.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var idx int
	if err := conn.QueryRowContext(ctx, "SELECT queue_wait('wt', 0)").Scan(&idx); err != nil || idx != 1 {
		t.Fatalf("queue_wait: %d %v", idx, err)
	}
	// The server starts the idle connection's 1 s after it has received
	// this statement: the row cannot come back before 1 s after now.
	idleFrom := time.Now()
	if _, err := conn.ExecContext(ctx, "SET SESSION wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	// Another waiter blocks longer than its own 1 s wait_timeout: it must
	// still get the row when the idle owner is dropped.
	busy := s.conn(t)
	if _, err := busy.ExecContext(ctx, "SET SESSION wait_timeout = 1"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := busy.QueryRowContext(ctx, "SELECT queue_wait('wt', 30)").Scan(&idx); err != nil || idx != 1 {
		t.Fatalf("busy waiter: %d %v", idx, err)
	}
	// Not before the idle connection's 1 s (measured from before its last
	// statement, so that a slow setup of the busy connection cannot make
	// it look early), and long before the busy waiter's own 30 s.
	if d, idle := time.Since(start), time.Since(idleFrom); idle < time.Second || d > 10*time.Second {
		t.Errorf("row came back %v after the idle connection's last statement (%v into the busy wait); want about the 1 s wait_timeout", idle, d)
	}
	if _, err := s.logs.waitFor(time.Minute, func(l string) bool { return contains(l, "idle connection closed after wait_timeout") }); !err {
		t.Error("no log line for the idle connection")
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
