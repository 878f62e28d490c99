package queue

import (
	"bytes"
	"context"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// CreateDatabase creates database name.
func (db *DB) CreateDatabase(name string) error {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	if db.HasDatabase(name) {
		return ErrDatabaseExists
	}
	return fullError(db.submit(&op{
		prepare: func(b *pebble.Batch) error { return b.Set(databaseKey(name), nil, nil) },
		apply: func() {
			db.dbs[name] = &database{name: name, tables: make(map[string]*table)}
		},
	}), name, "")
}

// DropDatabase drops database name and every table in it.
func (db *DB) DropDatabase(name string) (int, error) {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	db.mu.Lock()
	d := db.dbs[name]
	var tables []*table
	if d != nil {
		for _, t := range d.tables {
			tables = append(tables, t)
		}
	}
	db.mu.Unlock()
	if d == nil {
		return 0, ErrNoSuchDatabase
	}
	err := db.submit(&op{
		prepare: func(b *pebble.Batch) error {
			for _, t := range tables {
				retireLocked(b, t)
				_ = b.Delete(tableKey(name, t.name), nil)
			}
			return b.Delete(databaseKey(name), nil)
		},
		apply: func() {
			for _, t := range tables {
				t.dead = true
				delete(db.names, nameKey(name, t.name))
			}
			delete(db.dbs, name)
		},
	})
	return len(tables), fullError(err, name, "")
}

// retireLocked writes the deletion of incarnation t into b. It runs on the
// commit loop.
func retireLocked(b *pebble.Batch, t *table) {
	t.wdead = true
	_ = b.Delete(stateKey(t.id), nil)
	lo := rowKey(t.id, 0)
	_ = b.DeleteRange(lo, prefixEnd(lo[:9]), nil)
}

// CreateTable creates table name in database dbname with the caller's
// metadata.
func (db *DB) CreateTable(dbname, name string, meta []byte) error {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	db.mu.Lock()
	d := db.dbs[dbname]
	exists := d != nil && d.tables[name] != nil
	db.mu.Unlock()
	if d == nil {
		return ErrNoSuchDatabase
	}
	if exists {
		return ErrTableExists
	}
	db.nextTableID++
	t := newTable(db.nextTableID, dbname, name, bytes.Clone(meta))
	return fullError(db.submit(&op{
		prepare: func(b *pebble.Batch) error {
			_ = b.Set(tableIDKey, u64(t.id), nil)
			_ = b.Set(tableKey(dbname, name), append(u64(t.id), t.meta...), nil)
			return b.Set(stateKey(t.id), t.encodeState(), nil)
		},
		apply: func() {
			t.reserved = db.reserved[nameKey(dbname, name)]
			d.tables[name] = t
		},
	}), dbname, name)
}

// DropTable drops the table. Owners of its rows keep harmless handles;
// waiters on it keep waiting until their timeout.
func (db *DB) DropTable(dbname, name string) error {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	t, err := db.lookup(dbname, name)
	if err != nil {
		return err
	}
	return fullError(db.submit(&op{
		prepare: func(b *pebble.Batch) error {
			retireLocked(b, t)
			return b.Delete(tableKey(dbname, name), nil)
		},
		apply: func() {
			t.dead = true
			if d := db.dbs[dbname]; d != nil && d.tables[name] == t {
				delete(d.tables, name)
			}
			delete(db.names, nameKey(dbname, name))
		},
	}), dbname, name)
}

// TruncateTable empties the table and restarts its rowids at 1. Rows owned
// at that moment vanish: their owners' later End or Abort affect nothing.
// Connections waiting on the table keep waiting, on the new incarnation.
func (db *DB) TruncateTable(dbname, name string) error {
	return db.ReplaceTable(dbname, name, nil)
}

// ReplaceTable is TruncateTable that also replaces the table's metadata
// (nil keeps it).
func (db *DB) ReplaceTable(dbname, name string, meta []byte) error {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	old, err := db.lookup(dbname, name)
	if err != nil {
		return err
	}
	if meta == nil {
		meta = old.meta
	}
	db.nextTableID++
	t := newTable(db.nextTableID, dbname, name, bytes.Clone(meta))
	return fullError(db.submit(&op{
		prepare: func(b *pebble.Batch) error {
			retireLocked(b, old)
			_ = b.Set(tableIDKey, u64(t.id), nil)
			_ = b.Set(tableKey(dbname, name), append(u64(t.id), t.meta...), nil)
			return b.Set(stateKey(t.id), t.encodeState(), nil)
		},
		apply: func() {
			old.dead = true
			t.reserved = old.reserved
			if d := db.dbs[dbname]; d != nil {
				d.tables[name] = t
			}
			// Waiters move to the new incarnation.
			for _, w := range old.waiters {
				for i, wt := range w.tables {
					if wt == old {
						w.tables[i] = t
					}
				}
			}
			t.waiters, old.waiters = old.waiters, nil
		},
	}), dbname, name)
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
	hi := prefixEnd(lo[:9])
	before, _ := db.pdb.EstimateDiskUsage(lo, hi)
	stop := db.watchCompaction(h.t.db+"."+h.t.name, before)
	err := db.pdb.Compact(ctx, lo, hi, false)
	elapsed := stop()
	if err != nil {
		return fmt.Errorf("queue: compact %s.%s: %w", h.t.db, h.t.name, err)
	}
	after, _ := db.pdb.EstimateDiskUsage(lo, hi)
	db.log.Info("compacted", "table", h.t.db+"."+h.t.name, "bytes_before", before, "bytes_after", after,
		"duration", elapsed.Round(time.Millisecond))
	db.mu.Lock()
	h.t.stats.bytesTotal -= min(h.t.stats.bytesRemoved, h.t.stats.bytesTotal)
	h.t.stats.bytesRemoved = 0
	db.mu.Unlock()
	return nil
}

// AlterTable replaces the table's metadata and rewrites every row with
// rewrite, atomically, keeping rowids, order and ownership: an owner keeps
// its row, rewritten. It blocks other writes while it runs.
func (db *DB) AlterTable(dbname, name string, meta []byte, rewrite func(rowid uint64, payload []byte) ([]byte, error)) error {
	db.ddlMu.Lock()
	defer db.ddlMu.Unlock()
	t, err := db.lookup(dbname, name)
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
				if it, ok := t.free.Get(item{rowid: r}); ok {
					it.size = size
					t.free.ReplaceOrInsert(it)
				}
				total += uint64(size)
			}
			t.stats.bytesTotal, t.stats.bytesRemoved = total, 0
		},
	}), dbname, name)
}
