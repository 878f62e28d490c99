package queue

import (
	"errors"
	"fmt"
)

// Sentinel errors. Callers test them with errors.Is; the server maps them to
// MySQL error codes in one place.
var (
	// ErrNoSuchTable is returned when a table does not exist.
	ErrNoSuchTable = errors.New("queue: no such table")
	// ErrTableExists is returned by CreateTable for an existing table.
	ErrTableExists = errors.New("queue: table exists")
	// ErrNoSuchDatabase is returned when a database does not exist.
	ErrNoSuchDatabase = errors.New("queue: no such database")
	// ErrDatabaseExists is returned by CreateDatabase for an existing database.
	ErrDatabaseExists = errors.New("queue: database exists")
	// ErrNotOwner is returned by Abort and RowID outside owner mode.
	ErrNotOwner = errors.New("queue: not in owner mode")
	// ErrClosed is returned by every call once the DB is closed.
	ErrClosed = errors.New("queue: closed")
	// ErrStorage wraps a failed write to the store. Once a write failed the
	// DB refuses further writes (it cannot know what reached the disk), so
	// nothing unacknowledged is ever reported as done.
	ErrStorage = errors.New("queue: storage failure")
	// ErrDiskFull is a write refused because the store's disk is full
	// (inside a *FullError). Nothing of the write happened: an owner
	// keeps its row. Reads go on, and writes are accepted again, without
	// a restart, once space is freed.
	ErrDiskFull = errors.New("queue: disk full")
	// ErrFenced is returned by Apply when its Write.Fence entry no longer
	// holds its value (another process took the writer's place): nothing
	// of the write happened.
	ErrFenced = errors.New("queue: fenced off")
)

// FullError is a write refused because the store's disk is full. It names
// the table written (only the database for database DDL) and wraps
// ErrDiskFull.
type FullError struct {
	Database, Table string
}

func (e *FullError) Error() string {
	if e.Table == "" {
		return fmt.Sprintf("queue: disk full: database %s", e.Database)
	}
	return fmt.Sprintf("queue: disk full: table %s.%s", e.Database, e.Table)
}

func (e *FullError) Unwrap() error { return ErrDiskFull }

// fullError names the table of a write refused by submit.
func fullError(err error, db, table string) error {
	if err == ErrDiskFull {
		return &FullError{Database: db, Table: table}
	}
	return err
}

// ErrTableChanged is returned by Insert when the table was altered after
// the handle was taken: the rows were encoded for the old definition.
var ErrTableChanged = errors.New("queue: table definition changed")

// ErrNoRow is returned by Apply when asked to consume without a held row.
var ErrNoRow = errors.New("queue: no owned row")
