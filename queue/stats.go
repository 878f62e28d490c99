package queue

import (
	"sync/atomic"
)

// tableCounters are one incarnation's counters; guarded by DB.mu.
type tableCounters struct {
	rowsWritten, rowsRemoved uint64
	bytesTotal, bytesRemoved uint64
}

// nameCounters are counted per table name: they survive TRUNCATE and are
// reset by DROP TABLE and by a restart (as Q4M's are).
type nameCounters struct {
	waitImmediate, waitDelayed, waitTimeout uint64
	restoredByAbort, restoredByClose        uint64
}

func nameKey(db, name string) string { return db + "\x00" + name }

func (db *DB) namesLocked(t *table) *nameCounters {
	k := nameKey(t.db, t.name)
	n := db.names[k]
	if n == nil {
		n = &nameCounters{}
		db.names[k] = n
	}
	return n
}

// TableStats are queue_stats()'s counters for one table.
type TableStats struct {
	// RowsWritten and RowsRemoved count since the table was loaded (process
	// start, creation or TRUNCATE).
	RowsWritten, RowsRemoved uint64
	// Wait and restore counters are kept per table name until DROP TABLE
	// or a restart.
	WaitImmediate, WaitDelayed, WaitTimeout uint64
	RestoredByAbort, RestoredByClose        uint64
	// BytesTotal is the payload bytes stored, live or removed since the
	// last compaction (or load); BytesRemoved the removed part.
	BytesTotal, BytesRemoved uint64
}

// TableStats returns the table's counters.
func (db *DB) TableStats(h Table) TableStats {
	db.mu.Lock()
	defer db.mu.Unlock()
	t := h.t
	st := TableStats{
		RowsWritten: t.stats.rowsWritten, RowsRemoved: t.stats.rowsRemoved,
		BytesTotal: t.stats.bytesTotal, BytesRemoved: t.stats.bytesRemoved,
	}
	if n := db.names[nameKey(t.db, t.name)]; n != nil && !t.dead {
		st.WaitImmediate, st.WaitDelayed, st.WaitTimeout = n.waitImmediate, n.waitDelayed, n.waitTimeout
		st.RestoredByAbort, st.RestoredByClose = n.restoredByAbort, n.restoredByClose
	}
	return st
}

// dbCounters are the store-wide counters; atomic.
type dbCounters struct {
	commits, ops, syncs      atomic.Uint64
	appends, removes         atomic.Uint64 // batches carrying inserts / removals
	reads                    atomic.Uint64 // point reads and scans of the store
	rowsWritten, rowsRemoved atomic.Uint64
	// Finished waits by outcome (a wait on several tables counts once),
	// and rows given back by queue_abort and by a connection's close.
	waitImmediate, waitDelayed, waitTimeout atomic.Uint64
	restoredByAbort, restoredByClose        atomic.Uint64
}

// Stats are store-wide counters since Open.
type Stats struct {
	// Commits is the number of batches written; Syncs how many were synced
	// (all, unless Options.NoSync); Ops the operations they carried.
	// Ops/Commits is the group-commit factor.
	Commits, Syncs, Ops uint64
	// Appends and Removes count the batches that carried inserts and
	// removals.
	Appends, Removes uint64
	// Reads counts point reads and scans of the store.
	Reads uint64
	// RowsWritten and RowsRemoved count rows.
	RowsWritten, RowsRemoved uint64
	// DiskFull is set while writes are refused because the store's disk
	// is full; DiskFullEvents counts the times it filled, WritesRefused
	// the writes refused, and WritesWaiting the writes of the store
	// waiting for space now.
	DiskFull                      bool
	DiskFullEvents, WritesRefused uint64
	WritesWaiting                 int64
	// WaitImmediate, WaitDelayed and WaitTimeout count finished waits
	// (queue_wait) by outcome: a row at once, a row after blocking, none
	// before the timeout. A wait on several tables counts once.
	WaitImmediate, WaitDelayed, WaitTimeout uint64
	// RestoredByAbort and RestoredByClose count owned rows given back to
	// their queue by Owner.Abort (queue_abort) and Owner.Close (the
	// connection went away).
	RestoredByAbort, RestoredByClose uint64
	// Tables is the number of queue tables; Rows their live rows (owned
	// ones included), Owned the rows owned by connections (or being
	// consumed), Waiters the waits blocked now.
	Tables, Rows, Owned, Waiters int64
}

// Stats returns the store-wide counters. The gauges (Tables, Rows, Owned,
// Waiters) are read under the store's lock, in one pass over the tables.
func (db *DB) Stats() Stats {
	c := &db.counters
	st := Stats{
		Commits: c.commits.Load(), Syncs: c.syncs.Load(), Ops: c.ops.Load(),
		Appends: c.appends.Load(), Removes: c.removes.Load(), Reads: c.reads.Load(),
		RowsWritten: c.rowsWritten.Load(), RowsRemoved: c.rowsRemoved.Load(),
		DiskFull: db.guard.full.Load(), DiskFullEvents: db.guard.events.Load(),
		WritesRefused: db.guard.refused.Load(), WritesWaiting: db.guard.waiting.Load(),
		WaitImmediate: c.waitImmediate.Load(), WaitDelayed: c.waitDelayed.Load(), WaitTimeout: c.waitTimeout.Load(),
		RestoredByAbort: c.restoredByAbort.Load(), RestoredByClose: c.restoredByClose.Load(),
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	for _, d := range db.dbs {
		for _, t := range d.tables {
			if t.dead {
				continue
			}
			st.Tables++
			st.Rows += int64(t.free.Len() + t.held)
			st.Owned += int64(t.held)
		}
	}
	st.Waiters = int64(len(db.wait))
	return st
}
