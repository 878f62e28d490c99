package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
)

// MaxSenders is the number of relay sender slots (Q4M's 0..63).
const MaxSenders = 64

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
}

// Stats returns the store-wide counters.
func (db *DB) Stats() Stats {
	c := &db.counters
	return Stats{
		Commits: c.commits.Load(), Syncs: c.syncs.Load(), Ops: c.ops.Load(),
		Appends: c.appends.Load(), Removes: c.removes.Load(), Reads: c.reads.Load(),
		RowsWritten: c.rowsWritten.Load(), RowsRemoved: c.rowsRemoved.Load(),
		DiskFull: db.guard.full.Load(), DiskFullEvents: db.guard.events.Load(),
		WritesRefused: db.guard.refused.Load(), WritesWaiting: db.guard.waiting.Load(),
	}
}

// encodeState encodes what the commit loop persists per table: the last
// rowid and the non-zero relay marks.
func (t *table) encodeState() []byte {
	b := binary.AppendUvarint(make([]byte, 0, 16), t.lastRowID)
	n := 0
	for _, m := range t.marks {
		if m != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for s, m := range t.marks {
		if m != 0 {
			b = append(b, byte(s))
			b = binary.AppendUvarint(b, m)
		}
	}
	return b
}

var errBadState = errors.New("corrupt table state")

func (t *table) decodeState(v []byte) error {
	last, k := binary.Uvarint(v)
	if k <= 0 {
		return errBadState
	}
	v = v[k:]
	n, k := binary.Uvarint(v)
	if k <= 0 || n > MaxSenders {
		return errBadState
	}
	v = v[k:]
	t.lastRowID = last
	for i := uint64(0); i < n; i++ {
		if len(v) < 2 || v[0] >= MaxSenders {
			return errBadState
		}
		s := v[0]
		m, k := binary.Uvarint(v[1:])
		if k <= 0 {
			return errBadState
		}
		t.marks[s] = m
		v = v[1+k:]
	}
	return nil
}

// Compact makes the store drop what consumed rows of the table left behind
// (Pebble's tombstones) by compacting the table's key range, and resets
// the table's removed-bytes counter. If a compaction is already running it
// returns at once.
func (db *DB) Compact(ctx context.Context, h Table) error {
	if !db.compacting.CompareAndSwap(false, true) {
		return nil
	}
	defer db.compacting.Store(false)
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return ErrClosed
	}
	if db.guard.full.Load() { // a compaction writes before it frees
		db.guard.refuse()
		return &FullError{Database: h.t.db, Table: h.t.name}
	}
	lo := rowKey(h.t.id, 0)
	if err := db.pdb.Compact(ctx, lo, prefixEnd(lo[:9]), false); err != nil {
		return fmt.Errorf("queue: compact %s.%s: %w", h.t.db, h.t.name, err)
	}
	db.mu.Lock()
	h.t.stats.bytesTotal -= min(h.t.stats.bytesRemoved, h.t.stats.bytesTotal)
	h.t.stats.bytesRemoved = 0
	db.mu.Unlock()
	return nil
}

// ErrTableChanged is returned by Insert when the table was altered after
// the handle was taken: the rows were encoded for the old definition.
var ErrTableChanged = errors.New("queue: table definition changed")

// AlterTable replaces the table's metadata and rewrites every row with
// rewrite, atomically, keeping rowids, order and ownership: an owner keeps
// its row, rewritten. It blocks other writes while it runs.
func (db *DB) AlterTable(dbname, name string, meta []byte, rewrite func(rowid uint64, payload []byte) ([]byte, error)) error {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	db.mu.Lock()
	t, err := db.lookupLocked(dbname, name)
	db.mu.Unlock()
	if err != nil {
		return err
	}
	meta = append([]byte(nil), meta...)
	sizes := map[uint64]uint32{}
	return fullError(db.submit(&op{
		exclusive: true, // sees every earlier write committed
		prepare: func(b *pebble.Batch) error {
			if t.wdead {
				return ErrNoSuchTable
			}
			lo := rowKey(t.id, 0)
			it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo[:9])})
			if err != nil {
				return err
			}
			type kv struct {
				k, v []byte
			}
			var rows []kv
			for it.First(); it.Valid(); it.Next() {
				v, err := it.ValueAndErr()
				if err != nil {
					_ = it.Close()
					return err
				}
				nv, err := rewrite(rowKeyRowID(it.Key()), v)
				if err != nil {
					_ = it.Close()
					return err
				}
				rows = append(rows, kv{append([]byte(nil), it.Key()...), nv})
			}
			if err := it.Close(); err != nil {
				return err
			}
			for _, r := range rows {
				_ = b.Set(r.k, r.v, nil)
				sizes[rowKeyRowID(r.k)] = clampSize(len(r.v))
			}
			t.wversion++
			return b.Set(tableKey(dbname, name), append(u64(t.id), meta...), nil)
		},
		apply: func() {
			t.meta = meta
			t.version++
			var total uint64
			for r, size := range sizes {
				if _, ok := t.free.Get(item{rowid: r}); ok {
					t.free.ReplaceOrInsert(item{r, size})
				}
				total += uint64(size)
			}
			t.stats.bytesTotal, t.stats.bytesRemoved = total, 0
		},
	}), dbname, name)
}
