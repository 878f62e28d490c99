package queue

import (
	"bytes"
	"errors"
	"slices"

	"github.com/cockroachdb/pebble/v2"
)

// This file holds what an in-process consumer (the valve) needs beyond a
// connection's view: tables reserved for it, its own state stored next to
// the queues, and changes to several tables and that state in one synced
// batch.

// Reserve reserves table name of database dbname (this and every later
// incarnation) for internal owners: a Wait by any other owner never gets
// its rows; they still see them in SELECT until an internal owner takes them.
func (db *DB) Reserve(dbname, name string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.reserved[nameKey(dbname, name)] = true
	if d := db.dbs[dbname]; d != nil && d.tables[name] != nil {
		d.tables[name].reserved = true
	}
}

// NewInternalOwner returns an Owner that may take rows of reserved tables.
func (db *DB) NewInternalOwner() *Owner { return &Owner{db: db, internal: true} }

// mayTakeLocked reports whether owners of this kind may take rows of t.
func (t *table) mayTakeLocked(internal bool) bool { return internal || !t.reserved }

// Consumed is a row an owner consumed, as OnConsume's hooks see it.
type Consumed struct {
	TableID uint64 // the incarnation of the table (Table.ID)
	RowID   uint64
	Payload []byte // nil unless a hook of the table asked for payloads
	// Ack, when its NS is set, is the store's durable record of this
	// consume: a store shared by several processes logs the consumes of
	// the tables that have hooks, so that the process holding the hooks
	// learns of consumes made anywhere (see queue/sqlstore). The hook's
	// owner deletes it (Write.Delete) in the same write as the state it
	// derived from the consume; until then, after a crash, a process that
	// registers a hook for the table is given it again. *DB, alone on its
	// store, calls hooks in process and leaves Ack empty.
	Ack AuxEntry
}

type consumeHook struct {
	payload bool
	fn      func(Consumed)
}

// OnConsume registers fn to be called with every row of table
// dbname.name that a (non-internal) owner consumes, once the consume is
// durable; with payload, Consumed.Payload holds the row (read before the
// consume, an extra read per consume). fn runs on the consuming
// connection's goroutine: it must be quick and must not call back into the
// DB. A table may have several hooks; remove unregisters this one (a
// consume already past the lookup may still call fn once).
func (db *DB) OnConsume(dbname, name string, payload bool, fn func(Consumed)) (remove func()) {
	k := &consumeHook{payload: payload, fn: fn}
	key := nameKey(dbname, name)
	db.mu.Lock()
	defer db.mu.Unlock()
	db.hooks[key] = append(slices.Clone(db.hooks[key]), k)
	return func() {
		db.mu.Lock()
		defer db.mu.Unlock()
		hs := slices.DeleteFunc(slices.Clone(db.hooks[key]), func(h *consumeHook) bool { return h == k })
		if len(hs) == 0 {
			delete(db.hooks, key)
		} else {
			db.hooks[key] = hs
		}
	}
}

// RowExists reports whether row rowid of the table is still stored: free,
// owned, or being consumed (until its consume is durable). A table that
// was dropped or truncated since h was taken has no rows.
func (db *DB) RowExists(h Table, rowid uint64) (bool, error) {
	db.mu.Lock()
	dead := h.t.dead
	db.mu.Unlock()
	if dead {
		return false, nil
	}
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return false, ErrClosed
	}
	_, closer, err := db.pdb.Get(rowKey(h.t.id, rowid))
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, closer.Close()
}

// AuxEntry is a key and value of an internal user's own state, stored in
// namespace NS next to the queues.
type AuxEntry struct {
	NS         string
	Key, Value []byte
}

func auxKey(ns string, key []byte) []byte {
	k := make([]byte, 0, 2+len(ns)+len(key))
	k = append(k, kindAux)
	k = append(k, ns...)
	k = append(k, 0)
	return append(k, key...)
}

// AuxScan calls fn with each key and value of namespace ns, in key order.
// The slices are valid only during the call.
func (db *DB) AuxScan(ns string, fn func(key, value []byte) bool) error {
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return ErrClosed
	}
	lo := auxKey(ns, nil)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo)})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return err
		}
		if !fn(bytes.TrimPrefix(it.Key(), lo), v) {
			break
		}
	}
	return it.Close()
}

// Write is a set of changes that Owner.Apply makes in one synced batch:
// all or nothing, across a crash.
type Write struct {
	// Consume consumes the row the owner holds (as End does, but owner
	// mode is kept).
	Consume bool
	// Inserts appends rows to tables.
	Inserts []Insertion
	// Set writes, and Delete removes, entries of internal state.
	Set    []AuxEntry
	Delete []AuxEntry // Value unused
	// Finish, if set, is called once the batch is sure to hold every
	// change above (rowids assigned), before it is committed, with the
	// first rowid of each insertion; the entries it returns are set in the
	// same batch. It runs on the commit loop, before the sync, so it lets
	// the caller record the rowids before any waiter can take the rows. It
	// must be quick and must not call into the DB or wait for anything
	// that may wait for a commit. It is not called if the write fails
	// before its batch is written (then nothing of it is stored); if the
	// commit itself fails, the DB refuses every later write.
	Finish func(first []uint64) []AuxEntry
	// Fence, if set, is an entry that must be stored with exactly its
	// value for the write to be made; otherwise Apply fails with
	// ErrFenced and nothing of the write is stored. A consumer elected
	// among several processes sets a token there when it takes over, so
	// that a former one's late writes fail instead of overwriting its
	// state (a shared store checks it under a lock that the takeover's
	// write waits for).
	Fence *AuxEntry
}

// Insertion is rows to append to a table.
type Insertion struct {
	Table Table
	Rows  [][]byte
}

// checkFence returns ErrFenced unless entry f is stored with f's value.
// It runs in the commit loop, in a batch of its own (the op is exclusive),
// so the store holds every earlier write.
func (db *DB) checkFence(f *AuxEntry) error {
	v, closer, err := db.pdb.Get(auxKey(f.NS, f.Key))
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrFenced
	}
	if err != nil {
		return err
	}
	defer closer.Close()
	if !bytes.Equal(v, f.Value) {
		return ErrFenced
	}
	return nil
}

// Apply makes w's changes in one synced batch, and publishes the inserted
// rows (handing them to waiters) only after it.
func (o *Owner) Apply(w Write) error {
	db := o.db
	var parts []func(*pebble.Batch) error
	var applies []func()
	var consumed *held
	if w.Consume {
		h := o.row
		if h == nil {
			return ErrNoRow
		}
		o.row, consumed = nil, h
		p, a := db.consumePart(h)
		parts, applies = append(parts, p), append(applies, a)
	}
	inserts := make([]*insertPart, len(w.Inserts))
	for i, in := range w.Inserts {
		ins := db.insertPart(in.Table, in.Rows, nil)
		inserts[i] = ins
		parts, applies = append(parts, ins.prepare), append(applies, ins.apply)
	}
	err := db.submit(&op{
		// A fenced write is committed alone, after every write submitted
		// before it: its check reads the store, not the shared batch.
		exclusive: w.Fence != nil,
		inserts:   len(w.Inserts) > 0,
		removes:   w.Consume,
		prepare: func(b *pebble.Batch) error {
			// Check the fence and every insertion before writing
			// anything: a part that fails must leave the batch untouched.
			if w.Fence != nil {
				if err := db.checkFence(w.Fence); err != nil {
					return err
				}
			}
			for _, in := range w.Inserts {
				if in.Table.t.wdead {
					return ErrNoSuchTable
				}
				if in.Table.t.wversion != in.Table.version {
					return ErrTableChanged
				}
			}
			for _, p := range parts {
				if err := p(b); err != nil {
					return err
				}
			}
			for _, e := range w.Set {
				_ = b.Set(auxKey(e.NS, e.Key), e.Value, nil)
			}
			for _, e := range w.Delete {
				_ = b.Delete(auxKey(e.NS, e.Key), nil)
			}
			if w.Finish != nil {
				first := make([]uint64, len(inserts))
				for i, ins := range inserts {
					first[i] = ins.first
				}
				for _, e := range w.Finish(first) {
					_ = b.Set(auxKey(e.NS, e.Key), e.Value, nil)
				}
			}
			return nil
		},
		apply: func() {
			for _, a := range applies {
				a()
			}
		},
	})
	if err == ErrFenced && w.Consume { // refused: the row is still held
		o.row = consumed
		return err
	}
	if err == ErrDiskFull { // refused: nothing happened
		var d, t string
		switch {
		case w.Consume:
			o.row = consumed
			d, t = consumed.t.db, consumed.t.name
		case len(w.Inserts) > 0:
			d, t = w.Inserts[0].Table.Database(), w.Inserts[0].Table.Name()
		}
		return &FullError{Database: d, Table: t}
	}
	return err
}
