package queue

import (
	"context"
	"time"
)

// Store is the queue model's contract, what the SQL front, the server and
// the valve use: databases of queue tables, inserts (with relay marks),
// connections in owner mode (Conn), counters and DDL. *DB (this package,
// on Pebble) is one backend; any other must pass the same behaviour suite
// (package queue/queuetest), which states the contract as tests.
//
// The contract, besides each method's own documentation on *DB:
//   - Rowids of a table are 1, 2, ... in insert order without gaps, never
//     reused except after TRUNCATE; Wait hands out rows in rowid order.
//   - A row is owned by at most one Conn at a time; End consumes it durably
//     before returning; Abort and Close put it back at its place.
//   - An acknowledged Insert, InsertFrom or Apply is durable, and its rows
//     are handed to waiters only once it is.
//   - InsertFrom's relay mark is raised in the same durable unit as the
//     rows it guards.
//   - A Table's Meta is immutable, and the same slice for as long as the
//     definition is the same (callers cache by its address).
type Store interface {
	// Close closes the store; every later call fails with ErrClosed.
	Close() error

	Databases() []string
	HasDatabase(name string) bool
	Tables(dbname string) ([]string, error)
	Table(dbname, name string) (Table, error)

	CreateDatabase(name string) error
	DropDatabase(name string) (int, error)
	CreateTable(dbname, name string, meta []byte) error
	DropTable(dbname, name string) error
	TruncateTable(dbname, name string) error
	ReplaceTable(dbname, name string, meta []byte) error
	AlterTable(dbname, name string, meta []byte, rewrite func(rowid uint64, payload []byte) ([]byte, error)) error
	Compact(ctx context.Context, h Table) error

	Insert(h Table, rows [][]byte) (uint64, error)
	InsertFrom(h Table, rows [][]byte, src *Source) (first uint64, skipped bool, err error)

	// CatalogVersion changes whenever another process changed the
	// catalog (databases, tables, definitions) of a shared store; *DB,
	// alone on its store, returns 0.
	CatalogVersion() uint64

	Count(h Table) int
	TableStats(h Table) TableStats
	Stats() Stats
	// Snapshot is every table's state for monitoring, sorted by database
	// and table name (see TableState.Shared for a shared store's).
	Snapshot() []TableState

	// NewConn returns a connection's view of the queues, not in owner mode.
	NewConn() Conn

	// What an in-process consumer (the valve) needs besides: see
	// internal.go.
	Reserve(dbname, name string)
	NewInternalConn() Conn
	OnConsume(dbname, name string, payload bool, fn func(Consumed)) (remove func())
	RowExists(h Table, rowid uint64) (bool, error)
	AuxScan(ns string, fn func(key, value []byte) bool) error
}

// Conn is one client connection's view of a Store: Q4M's owner mode and
// the one row it may own. It is used from one goroutine at a time. The
// methods are documented on *Owner, the Pebble backend's Conn.
type Conn interface {
	InOwnerMode() bool
	Wait(ctx context.Context, subs []Sub, timeout time.Duration) (int, error)
	End() error
	Abort() (bool, error)
	Close() bool
	RowID() (rowid uint64, ok bool, err error)
	Owned() (db, table string, rowid uint64, ok bool)
	OwnsRowIn(h Table) bool
	Scan(h Table, fn func(rowid uint64, payload []byte) bool) error
	DeleteRows(h Table, rowids []uint64) (int, error)
	Apply(w Write) error
}

var (
	_ Store = (*DB)(nil)
	_ Conn  = (*Owner)(nil)
)

// CatalogVersion implements Store: no other process changes a *DB.
func (db *DB) CatalogVersion() uint64 { return 0 }

// NewConn is NewOwner as a Conn.
func (db *DB) NewConn() Conn { return db.NewOwner() }

// NewInternalConn is NewInternalOwner as a Conn.
func (db *DB) NewInternalConn() Conn { return db.NewInternalOwner() }

// TableRef is what another backend keeps in a Table handle: the table's
// names, incarnation and the backend's own state.
type TableRef struct {
	Database, Name string
	ID             uint64
	// Impl is the backend's own, read back through Table.Ref.
	Impl any
}

// NewTable returns a handle for another backend than *DB: ref identifies
// the incarnation, meta is its definition and version counts its ALTERs.
func NewTable(ref *TableRef, meta []byte, version uint64) Table {
	return Table{ref: ref, meta: meta, version: version}
}

// Ref returns what NewTable was given (nil for a *DB's handle).
func (h Table) Ref() *TableRef { return h.ref }

// Version counts the ALTERs of the table's incarnation when the handle was
// taken.
func (h Table) Version() uint64 { return h.version }
