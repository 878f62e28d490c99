package queue

import (
	"sort"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// This file holds what monitoring reads of the engine: the Observer told
// about commits and waits as they happen, and Snapshot, the state of every
// table at one moment. Neither knows how it is exported.

// Observer is told about the engine's work as it happens. Each func may be
// nil; a set one must be quick and must not call into the DB.
type Observer struct {
	// Commit is called by the commit loop after each batch it writes: the
	// operations the batch carried (the group-commit factor), whether it
	// was synced, and how long the write took (with the sync, if synced).
	Commit func(ops int, synced bool, d time.Duration)
	// Wait is called when an Owner.Wait returns without an error: how long
	// it took (consuming the previously owned row included) and whether it
	// got a row (false: it timed out).
	Wait func(d time.Duration, got bool)
}

// tick is a time since the DB was opened, in tenths of a second (13 years
// fit in it); it stamps rows, in the padding of item, for the age of the
// oldest row.
type tick uint32

const tickUnit = 100 * time.Millisecond

// tickLocked returns the current tick. DB.mu must be held: tests move
// db.opened under it.
func (db *DB) tickLocked() tick {
	n := time.Since(db.opened) / tickUnit
	if n > 1<<32-1 {
		n = 1<<32 - 1
	}
	return tick(n)
}

// TableState is one table as Snapshot saw it.
type TableState struct {
	Database, Table string
	// Rows is the number of live rows (not consumed), owned ones included;
	// Owned counts the rows handed out and not yet consumed or released
	// (and rows being deleted by a DELETE until it is durable).
	Rows, Owned int
	// Waiters is the number of Waits blocked on the table.
	Waiters int
	// OldestAge is the age of the oldest row waiting to be handed out
	// (owned rows not counted), counted from when its INSERT was synced,
	// or from the open of the store for rows stored before it; with a
	// resolution of 100 ms. Zero when no row waits.
	OldestAge time.Duration
	// Reserved tables are served only to internal owners (a valve).
	Reserved bool
	// Shared is set by a store that other processes share (the upstream
	// store, package queue/sqlstore): Rows and OldestAge are then the
	// whole table's, Owned, Waiters and the TableStats this process's own,
	// and the payload bytes of the live rows are not known (BytesTotal
	// and BytesRemoved count this process's inserts and consumes).
	Shared bool
	TableStats
}

// Snapshot returns the state of every table, sorted by database and table
// name. It takes the DB's lock once and does no I/O.
func (db *DB) Snapshot() []TableState {
	db.mu.Lock()
	defer db.mu.Unlock()
	now := db.tickLocked()
	var out []TableState
	for _, d := range db.dbs {
		for _, t := range d.tables {
			st := TableState{
				Database: t.db, Table: t.name,
				Rows: t.free.Len() + t.held, Owned: t.held,
				Waiters:  len(t.waiters),
				Reserved: t.reserved,
				TableStats: TableStats{
					RowsWritten: t.stats.rowsWritten, RowsRemoved: t.stats.rowsRemoved,
					BytesTotal: t.stats.bytesTotal, BytesRemoved: t.stats.bytesRemoved,
				},
			}
			if oldest, ok := t.free.Min(); ok {
				st.OldestAge = time.Duration(now-min(oldest.at, now)) * tickUnit
			}
			if n := db.names[nameKey(t.db, t.name)]; n != nil {
				st.WaitImmediate, st.WaitDelayed, st.WaitTimeout = n.waitImmediate, n.waitDelayed, n.waitTimeout
				st.RestoredByAbort, st.RestoredByClose = n.restoredByAbort, n.restoredByClose
			}
			out = append(out, st)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Database != out[j].Database {
			return out[i].Database < out[j].Database
		}
		return out[i].Table < out[j].Table
	})
	return out
}

// Metrics returns Pebble's metrics of the store, or nil once it is closed.
func (db *DB) Metrics() *pebble.Metrics {
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return nil
	}
	return db.pdb.Metrics()
}
