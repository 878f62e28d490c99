package server

import (
	"log/slog"
	"testing"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// TestDiskFullError: a write refused because the store's disk is full gets
// InnoDB's answer, 1114 (HY000) The table '...' is full, naming the table
// (the database for database DDL), however sqlfront wrapped it.
func TestDiskFullError(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	for _, c := range []struct {
		err  error
		want string
	}{
		{&queue.FullError{Database: "test", Table: "q"}, "The table 'q' is full"},
		{&sqlfront.TableError{Database: "test", Table: "q", Err: &queue.FullError{Database: "test", Table: "q"}}, "The table 'q' is full"},
		{&sqlfront.DatabaseError{Database: "d2", Err: &queue.FullError{Database: "d2"}}, "The table 'd2' is full"},
	} {
		e := toMyError(c.err, log)
		if e.Code != 1114 || e.State != "HY000" || e.Message != c.want {
			t.Errorf("%v -> %d (%s) %q; want 1114 (HY000) %q", c.err, e.Code, e.State, e.Message, c.want)
		}
	}
}
