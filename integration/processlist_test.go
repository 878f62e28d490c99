package integration

import (
	"context"
	"strings"
	"testing"
	"time"
)

// SHOW PROCESSLIST lists every client with what it does: a consumer blocked
// in queue_wait, an idle owner with the row it owns, the asking connection.
func TestProcessList(t *testing.T) {
	s := startServer(t)
	admin := newGConn(t, s, driverModes[1])
	admin.exec("CREATE TABLE plq (v INT) ENGINE=queue")
	admin.exec("INSERT INTO plq VALUES (1)")

	owner := newGConn(t, s, driverModes[1])
	ownerID := owner.value("SELECT CONNECTION_ID()")
	owner.wantValue("1", "SELECT queue_wait('plq', 5)")

	waiter := newGConn(t, s, driverModes[1])
	waiterID := waiter.value("SELECT CONNECTION_ID()")
	done := make(chan error, 1)
	go func() {
		_, err := waiter.c.ExecContext(context.Background(), "SELECT queue_wait('plq', 60)")
		done <- err
	}()

	var rows [][]string
	eventually(t, time.Minute, "the waiter to show in SHOW FULL PROCESSLIST", func() bool {
		rows = admin.rows("SHOW FULL PROCESSLIST")
		for _, r := range rows {
			if r[0] == waiterID && r[6] == "Waiting in queue_wait" {
				return true
			}
		}
		return false
	})
	byID := map[string][]string{}
	for _, r := range rows {
		if len(r) != 8 {
			t.Fatalf("row %q: want 8 columns (Id, User, Host, db, Command, Time, State, Info)", r)
		}
		byID[r[0]] = r
	}
	if w := byID[waiterID]; w[1] != "root" || !strings.HasPrefix(w[2], "127.0.0.1:") || w[3] != "test" ||
		w[4] != "Query" || w[7] != "SELECT queue_wait('plq', 60)" {
		t.Errorf("waiter row %q", w)
	}
	if o := byID[ownerID]; o == nil || o[4] != "Sleep" || o[6] != "owns test.plq rowid 1" || o[7] != "NULL" {
		t.Errorf("owner row %q, want Sleep / owns test.plq rowid 1", o)
	}
	self := admin.value("SELECT CONNECTION_ID()")
	if a := byID[self]; a == nil || a[4] != "Query" || a[7] != "SHOW FULL PROCESSLIST" {
		t.Errorf("own row %q", a)
	}
	// The mysql CLI, as an operator types it: both forms list the waiter
	// with how long it has waited (Time counts up while it waits) and the
	// owner with its row.
	for _, stmt := range []string{"SHOW FULL PROCESSLIST", "SHOW PROCESSLIST"} {
		var out string
		eventually(t, time.Minute, stmt+" in the mysql CLI to show the waiter waiting 1 s or more", func() bool {
			o, err := s.mysqlCLI(t, "", "-B", "-N", "-e", stmt)
			if err != nil {
				t.Fatalf("mysql -e %q: %v\n%s", stmt, err, o)
			}
			out = o
			for _, l := range strings.Split(strings.TrimSpace(o), "\n") {
				f := strings.Split(l, "\t")
				if len(f) == 8 && f[0] == waiterID && f[6] == "Waiting in queue_wait" && f[5] != "0" {
					return true
				}
			}
			return false
		})
		lines := map[string][]string{}
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Split(l, "\t")
			lines[f[0]] = f
		}
		if o := lines[ownerID]; len(o) != 8 || o[4] != "Sleep" || o[6] != "owns test.plq rowid 1" || o[7] != "NULL" {
			t.Errorf("%s, owner's line %q, want Sleep, owns test.plq rowid 1, NULL", stmt, o)
		}
		if w := lines[waiterID]; len(w) != 8 || w[4] != "Query" || w[7] != "SELECT queue_wait('plq', 60)" {
			t.Errorf("%s, waiter's line %q", stmt, w)
		}
	}

	// The waiter ends when the owner gives the row back.
	owner.wantValue("1", "SELECT queue_abort()")
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the waiter did not get the aborted row")
	}
}
