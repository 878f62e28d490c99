package queue

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// Owner is one connection's view of the queues: Q4M's owner mode and the
// one row it may own. It must be used from one goroutine at a time.
type Owner struct {
	db       *DB
	mode     bool
	row      *held
	internal bool // may take rows of reserved tables
}

type held struct {
	t *table
	item
}

// NewOwner returns an Owner in non-owner mode.
func (db *DB) NewOwner() *Owner { return &Owner{db: db} }

// InOwnerMode reports whether o is in owner mode.
func (o *Owner) InOwnerMode() bool { return o.mode }

// consume durably deletes the owned row, if any. Refused because the disk
// is full, it keeps the row owned (nothing happened).
func (o *Owner) consume() error {
	h := o.row
	if h == nil {
		return nil
	}
	o.row = nil
	db := o.db
	var hooks []*consumeHook
	wantPayload := false
	if !o.internal {
		db.mu.Lock()
		hooks = db.hooks[nameKey(h.t.db, h.t.name)]
		db.mu.Unlock()
		for _, k := range hooks {
			wantPayload = wantPayload || k.payload
		}
	}
	var payload []byte
	if wantPayload {
		payload = db.get(h.t, h.rowid)
	}
	prepare, apply := db.consumePart(h)
	if err := db.submit(&op{removes: true, prepare: prepare, apply: apply}); err != nil {
		if err == ErrDiskFull {
			o.row = h
		}
		return fullError(err, h.t.db, h.t.name)
	}
	for _, k := range hooks {
		k.fn(Consumed{TableID: h.t.id, RowID: h.rowid, Payload: payload})
	}
	return nil
}

// get reads a row's payload (a copy), or nil.
func (db *DB) get(t *table, rowid uint64) []byte {
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return nil
	}
	v, closer, err := db.pdb.Get(rowKey(t.id, rowid))
	if err != nil {
		return nil
	}
	defer closer.Close()
	return append([]byte(nil), v...)
}

// consumePart is the durable deletion of a held row, as part of an op.
func (db *DB) consumePart(h *held) (func(*pebble.Batch) error, func()) {
	return func(b *pebble.Batch) error {
			if h.t.wdead {
				return nil
			}
			return b.Delete(rowKey(h.t.id, h.rowid), nil)
		}, func() {
			if !h.t.dead {
				h.t.held--
				h.t.stats.rowsRemoved++
				h.t.stats.bytesRemoved += uint64(h.size)
				db.counters.rowsRemoved.Add(1)
			}
		}
}

// End consumes the owned row (durably, before returning) and leaves owner
// mode. Outside owner mode it does nothing. If the disk is full it fails
// with ErrDiskFull and o keeps its row and owner mode.
func (o *Owner) End() error {
	err := o.consume()
	if !errors.Is(err, ErrDiskFull) {
		o.mode = false
	}
	return err
}

// Abort releases the owned row back to its place at the head of its queue
// and leaves owner mode. It reports whether a row was released. Outside
// owner mode it returns ErrNotOwner.
func (o *Owner) Abort() (bool, error) {
	if !o.mode {
		return false, ErrNotOwner
	}
	released := o.release(func(n *nameCounters) { n.restoredByAbort++; o.db.counters.restoredByAbort.Add(1) })
	o.mode = false
	return released, nil
}

func (o *Owner) release(count func(*nameCounters)) bool {
	h := o.row
	if h == nil {
		return false
	}
	o.row = nil
	o.db.mu.Lock()
	defer o.db.mu.Unlock()
	released := !h.t.dead
	if released {
		count(o.db.namesLocked(h.t))
	}
	o.db.releaseLocked(h)
	return released
}

// RowID returns the rowid of the owned row; ok is false in owner mode
// without a row. Outside owner mode it returns ErrNotOwner.
func (o *Owner) RowID() (rowid uint64, ok bool, err error) {
	if !o.mode {
		return 0, false, ErrNotOwner
	}
	if o.row == nil {
		return 0, false, nil
	}
	return o.row.rowid, true, nil
}

// Close releases the owned row (the connection went away) and leaves owner
// mode. It reports whether a row was released.
func (o *Owner) Close() bool {
	released := o.release(func(n *nameCounters) { n.restoredByClose++; o.db.counters.restoredByClose.Add(1) })
	o.mode = false
	return released
}

// OwnsRowIn reports whether o owns a live row of the table.
func (o *Owner) OwnsRowIn(h Table) bool {
	return o.mode && o.row != nil && o.row.t == h.t
}

// Scan calls fn with the rows of the table that o can see, in rowid order.
// In owner mode that is only the owned row, and only in its own table;
// otherwise it is every row not owned by anyone. The payload is valid only
// during the call. fn returns false to stop.
func (o *Owner) Scan(h Table, fn func(rowid uint64, payload []byte) bool) error {
	db := o.db
	t := h.t
	db.readMu.RLock() // keeps the store open for the scan
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return ErrClosed
	}
	db.counters.reads.Add(1)
	if o.mode {
		if o.row == nil || o.row.t != t {
			return nil
		}
		v, closer, err := db.pdb.Get(rowKey(t.id, o.row.rowid))
		if err == pebble.ErrNotFound {
			return nil
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		fn(o.row.rowid, v)
		return nil
	}
	db.mu.Lock()
	if t.dead || t.free.Len() == 0 {
		db.mu.Unlock()
		return nil
	}
	free := t.free.Clone() // copy-on-write: O(1)
	db.mu.Unlock()
	lo, _ := free.Min()
	hi, _ := free.Max()
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: rowKey(t.id, lo.rowid),
		UpperBound: rowKey(t.id, hi.rowid+1),
	})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		rowid := rowKeyRowID(it.Key())
		if !free.Has(item{rowid: rowid}) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		if !fn(rowid, v) {
			break
		}
	}
	return it.Close()
}

// DeleteRows durably deletes the given rows of the table among those o can
// see (as Scan) and returns how many it deleted. In owner mode it can only
// delete the owned row; owner mode is kept, without a row.
func (o *Owner) DeleteRows(h Table, rowids []uint64) (int, error) {
	if len(rowids) == 0 {
		return 0, nil
	}
	t := h.t
	if o.mode {
		if o.row == nil || o.row.t != t || !hasRowID(rowids, o.row.rowid) {
			return 0, nil
		}
		if err := o.consume(); err != nil {
			return 0, err
		}
		return 1, nil
	}
	db := o.db
	db.mu.Lock()
	if t.dead {
		db.mu.Unlock()
		return 0, nil
	}
	taken := make([]item, 0, len(rowids))
	for _, r := range rowids {
		if it, ok := t.free.Delete(item{rowid: r}); ok {
			taken = append(taken, it)
		}
	}
	t.held += len(taken)
	db.mu.Unlock()
	if len(taken) == 0 {
		return 0, nil
	}
	err := db.submit(&op{
		removes: true,
		prepare: func(b *pebble.Batch) error {
			if t.wdead {
				return nil
			}
			for _, r := range taken {
				_ = b.Delete(rowKey(t.id, r.rowid), nil)
			}
			return nil
		},
		apply: func() {
			if !t.dead {
				t.held -= len(taken)
				t.stats.rowsRemoved += uint64(len(taken))
				for _, r := range taken {
					t.stats.bytesRemoved += uint64(r.size)
				}
				db.counters.rowsRemoved.Add(uint64(len(taken)))
			}
		},
		undo: func() {
			if !t.dead {
				t.held -= len(taken)
				for _, r := range taken {
					t.free.ReplaceOrInsert(r)
				}
			}
		},
	})
	if err == ErrClosed || err == ErrDiskFull { // never reached the store
		db.mu.Lock()
		if !t.dead {
			t.held -= len(taken)
			for _, r := range taken {
				t.free.ReplaceOrInsert(r)
			}
		}
		db.mu.Unlock()
	}
	if err != nil {
		return 0, fullError(err, t.db, t.name)
	}
	return len(taken), nil
}

func hasRowID(ids []uint64, id uint64) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
