package main

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, ident, table string }{
		{"t", "`t`", "`t`"},
		{"db.t", "`db.t`", "`db`.`t`"},
		{"a`b", "`a``b`", "`a``b`"},
		{"we?rd col", "`we?rd col`", "`we?rd col`"},
	}
	for _, tc := range tests {
		if got := quoteIdent(tc.in); got != tc.ident {
			t.Errorf("quoteIdent(%q) = %s, want %s", tc.in, got, tc.ident)
		}
		if got := quoteTable(tc.in); got != tc.table {
			t.Errorf("quoteTable(%q) = %s, want %s", tc.in, got, tc.table)
		}
	}
}

func TestInsertSQL(t *testing.T) {
	m := &message{
		rowid:   7,
		columns: []string{"a", "b`x", "c"},
		values:  [][]byte{[]byte("1"), nil, {}},
	}
	q, args := m.insertSQL("db.dst")
	if want := "INSERT INTO `db`.`dst` (`a`, `b``x`, `c`) VALUES (?, ?, ?)"; q != want {
		t.Errorf("query %s, want %s", q, want)
	}
	want := []any{[]byte("1"), nil, []byte{}}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("args %#v, want %#v", args, want)
	}
	if m.size() != 1 {
		t.Errorf("size %d", m.size())
	}
}

func TestIsTransient(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{driver.ErrBadConn, true},
		{mysql.ErrInvalidConn, true},
		{io.EOF, true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{&sideError{side: sideSource, op: "queue_wait", err: io.ErrUnexpectedEOF}, true},
		{&mysql.MySQLError{Number: 1053, Message: "Server shutdown in progress"}, true},
		{&sideError{side: sideDestination, op: "insert", err: &mysql.MySQLError{Number: 1317}}, true},
		{&mysql.MySQLError{Number: 1146, Message: "Table 'test.x' doesn't exist"}, false},
		{&sideError{side: sideDestination, op: "insert", err: &mysql.MySQLError{Number: 1054}}, false},
		{&mysql.MySQLError{Number: 1045, Message: "Access denied"}, false},
		{fatalf("%s", msgSourceError), false},
		{fmt.Errorf("wrapped: %w", fatalf("%s", msgSetSrcID)), false},
	}
	for _, tc := range tests {
		if got := isTransient(tc.err); got != tc.want {
			t.Errorf("isTransient(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if !errors.Is(&sideError{side: sideSource, op: "x", err: io.EOF}, io.EOF) {
		t.Error("sideError does not unwrap")
	}
}

func TestRate(t *testing.T) {
	if r := rate(1000, 2*time.Second); r != 500 {
		t.Errorf("rate = %v", r)
	}
	if r := rate(1, 3*time.Second); r != 0.3 {
		t.Errorf("rate = %v", r)
	}
	if r := rate(5, 0); r != 0 {
		t.Errorf("rate = %v", r)
	}
}
