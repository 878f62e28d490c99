package queue

import "errors"

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
)
