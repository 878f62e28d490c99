package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// TestToMyError: the code, SQLSTATE and message each kind of error reaches
// a client with, and which ones the operator hears of (vitess's
// TestErrorCodes). The engine errors marked "was 1105" reached clients as
// 1105 before the catalog gave them a code.
func TestToMyError(t *testing.T) {
	tableErr := func(err error) error { return &sqlfront.TableError{Database: "test", Table: "q", Err: err} }
	dbErr := func(err error) error { return &sqlfront.DatabaseError{Database: "d", Err: err} }
	for _, c := range []struct {
		err    error
		code   uint16
		state  string
		msg    string
		logged bool
	}{
		{&sqlfront.Error{Code: sqlfront.ErrCodeParse, Message: "syntax"}, 1064, "42000", "syntax", false},
		{fmt.Errorf("ctx: %w", &sqlfront.Error{Code: sqlfront.ErrCodeNotSupported, Message: "no"}), 1235, "42000", "no", false},
		{&sqlfront.Error{Code: sqlfront.ErrCodeTableDefChanged, Message: "changed"}, 1412, "HY000", "changed", false},
		{tableErr(queue.ErrNoSuchTable), 1146, "42S02", "Table 'test.q' doesn't exist", false},
		{tableErr(queue.ErrTableExists), 1050, "42S01", "Table 'q' already exists", false},
		{dbErr(queue.ErrNoSuchDatabase), 1049, "42000", "Unknown database 'd'", false},
		{tableErr(queue.ErrNoSuchDatabase), 1049, "42000", "Unknown database 'test'", false},                              // was 1105
		{dbErr(queue.ErrDatabaseExists), 1007, "HY000", "Can't create database 'd'; database exists", false},              // was 1105
		{tableErr(queue.ErrTableChanged), 1412, "HY000", "Table definition has changed, please retry transaction", false}, // was 1105
		{queue.ErrNotOwner, 1123, "HY000", "Can't initialize function; not in owner mode", false},                         // was 1105
		{queue.ErrNoRow, 1123, "HY000", "Can't initialize function; no row is owned", false},                              // was 1105
		{queue.ErrClosed, 1053, "08S01", "Server shutdown in progress", false},
		{&queue.FullError{Database: "test", Table: "q"}, 1114, "HY000", "The table 'q' is full", false},
		{fmt.Errorf("pebble: %w", queue.ErrStorage), 1030, "HY000", "Got error 5 'Input/output error' from storage engine", true},
		{errKilled, 1317, "70100", "Query execution was interrupted", false},
		{errClientGone, 1317, "70100", "Query execution was interrupted", false},
		{context.Canceled, 1317, "70100", "Query execution was interrupted", false},
		{errShutdown, 1053, "08S01", "Server shutdown in progress", false},
		{errors.New("boom"), 1105, "HY000", "Internal error; see the server log", true},
		{tableErr(errors.New("boom")), 1105, "HY000", "Internal error; see the server log", true},
	} {
		var buf bytes.Buffer
		e := toMyError(c.err, slog.New(slog.NewTextHandler(&buf, nil)))
		if e.Code != c.code || e.State != c.state || e.Message != c.msg {
			t.Errorf("%v -> %d (%s) %q; want %d (%s) %q", c.err, e.Code, e.State, e.Message, c.code, c.state, c.msg)
		}
		if logged := buf.Len() > 0; logged != c.logged {
			t.Errorf("%v: logged %v (%q); want %v", c.err, logged, buf.String(), c.logged)
		}
	}
	// A MySQL error (the upstream's) goes out as it is.
	up := &mysql.MyError{Code: 1045, State: "28000", Message: "Access denied"}
	if e := toMyError(fmt.Errorf("upstream: %w", up), slog.New(slog.DiscardHandler)); e != up {
		t.Errorf("upstream error became %v", e)
	}
}

// TestErrorPacket: the packets written outside go-mysql carry the
// catalog's SQLSTATE.
func TestErrorPacket(t *testing.T) {
	p := errorPacket(mysql.ER_CON_COUNT_ERROR, "Too many connections", 0)
	want := append([]byte{29, 0, 0, 0, 0xff, 0x10, 0x04}, "#08004Too many connections"...)
	if !bytes.Equal(p, want) {
		t.Errorf("errorPacket = %q; want %q", p, want)
	}
}
