package queue

import (
	"context"
	"errors"
	"math"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Insert appends rows (opaque payloads) to the table as one atomic, durable
// unit and returns the rowid of the first. It returns after the rows are
// synced, and only then are they visible and handed to waiters. It fails
// with ErrTableChanged if the table was altered since h was taken.
func (db *DB) Insert(h Table, rows [][]byte) (uint64, error) {
	first, _, err := db.InsertFrom(h, rows, nil)
	return first, err
}

// Source identifies relayed rows: the sender slot (0..MaxSenders-1) and the
// rowid the rows had in the source table (Q4M's queue_set_srcid).
type Source struct {
	Sender int
	RowID  uint64
	// Force writes the rows even if RowID is not above the sender's mark
	// (mode 'w'); otherwise such rows are duplicates and are skipped.
	Force bool
}

// InsertFrom is Insert for relayed rows. With src (and src.RowID != 0), the
// destination's high-water mark for src.Sender decides: rows whose source
// rowid is not above it are skipped (skipped = true, nothing written), and
// otherwise the mark is raised to src.RowID in the same synced batch as the
// rows, so a relay stays exactly-once across a crash of either side.
func (db *DB) InsertFrom(h Table, rows [][]byte, src *Source) (first uint64, skipped bool, err error) {
	t := h.t
	if src != nil && (src.Sender < 0 || src.Sender >= MaxSenders) {
		return 0, false, errors.New("queue: sender out of range")
	}
	sizes := make([]uint32, len(rows))
	var total uint64
	for i, r := range rows {
		sizes[i] = clampSize(len(r))
		total += uint64(sizes[i])
	}
	err = db.submit(&op{
		inserts: true,
		prepare: func(b *pebble.Batch) error {
			if t.wdead {
				return ErrNoSuchTable
			}
			if t.wversion != h.version {
				return ErrTableChanged
			}
			if src != nil && src.RowID != 0 {
				if !src.Force && src.RowID <= t.marks[src.Sender] {
					skipped = true
					return nil
				}
				t.marks[src.Sender] = src.RowID
			}
			first = t.lastRowID + 1
			for i, r := range rows {
				_ = b.Set(rowKey(t.id, first+uint64(i)), r, nil)
			}
			t.lastRowID += uint64(len(rows))
			return b.Set(stateKey(t.id), t.encodeState(), nil)
		},
		apply: func() {
			if t.dead || skipped {
				return
			}
			for i := range rows {
				t.free.ReplaceOrInsert(item{first + uint64(i), sizes[i]})
			}
			t.stats.rowsWritten += uint64(len(rows))
			t.stats.bytesTotal += total
			db.counters.rowsWritten.Add(uint64(len(rows)))
			db.serveLocked(t)
		},
	})
	return first, skipped, err
}

// Owner is one connection's view of the queues: Q4M's owner mode and the
// one row it may own. It must be used from one goroutine at a time.
type Owner struct {
	db   *DB
	mode bool
	row  *held
}

type held struct {
	t     *table
	rowid uint64
	size  uint32
}

// NewOwner returns an Owner in non-owner mode.
func (db *DB) NewOwner() *Owner { return &Owner{db: db} }

// InOwnerMode reports whether o is in owner mode.
func (o *Owner) InOwnerMode() bool { return o.mode }

// Sub names one table a Wait subscribes to.
type Sub struct {
	Database, Table string
}

// waiter is a Wait blocked on one or more tables.
type waiter struct {
	tables []*table      // argument order; guarded by DB.mu
	ready  chan struct{} // closed when finished (under DB.mu)
	done   bool          // guarded by DB.mu
	got    *held         // the row handed to this waiter, if any
	idx    int           // 1-based index of the sub that got
	closed bool          // the DB was closed while waiting
}

// MaxWait bounds a Wait's timeout.
const MaxWait = time.Duration(math.MaxInt32) * time.Second

// Wait consumes the row o owns (if any), then takes the oldest free row of
// the first table in subs, in argument order, that has one. If none has,
// and timeout > 0, it blocks until a row arrives on any of them, the timeout
// elapses, or ctx is done. It returns the 1-based index of the sub whose row
// o now owns, or 0 on timeout; in both cases o is then in owner mode.
//
// Tables are resolved in argument order and the search stops at the first
// table with a free row, so (as in Q4M) a table named after it is not
// looked up at all. A table reached that does not exist gives
// ErrNoSuchTable and leaves o in non-owner mode (the previous row is
// consumed all the same). If ctx ends the wait, the error is
// context.Cause(ctx) and o is in non-owner mode.
func (o *Owner) Wait(ctx context.Context, subs []Sub, timeout time.Duration) (int, error) {
	if err := o.consume(); err != nil {
		o.mode = false
		return 0, err
	}
	o.mode = false
	db := o.db
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return 0, ErrClosed
	}
	tables := make([]*table, 0, len(subs))
	for i, s := range subs {
		t, err := db.lookupLocked(s.Database, s.Table)
		if err != nil {
			db.mu.Unlock()
			return 0, err
		}
		tables = append(tables, t)
		if it, ok := t.takeLocked(); ok {
			db.countWaitLocked(tables, i, true)
			db.mu.Unlock()
			o.mode, o.row = true, &held{t, it.rowid, it.size}
			return i + 1, nil
		}
	}
	if timeout <= 0 {
		db.countWaitLocked(tables, -1, true)
		db.mu.Unlock()
		o.mode = true
		return 0, nil
	}
	w := &waiter{tables: tables, ready: make(chan struct{})}
	for i, t := range tables {
		if !containsTable(tables[:i], t) {
			t.waiters = append(t.waiters, w)
		}
	}
	db.wait[w] = struct{}{}
	db.mu.Unlock()

	timeout = min(timeout, MaxWait)
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-w.ready:
	case <-timer.C:
	case <-ctx.Done():
	}

	db.mu.Lock()
	if !w.done {
		db.finishWaiterLocked(w, nil, 0)
	}
	got, idx := w.got, w.idx
	cancelled := ctx.Err() != nil
	if got != nil && (cancelled || w.closed) {
		db.releaseLocked(got) // nobody will see it: give it back
		got = nil
	}
	if !cancelled && !w.closed {
		db.countWaitLocked(w.tables, idx-1, false)
	}
	db.mu.Unlock()
	switch {
	case w.closed:
		return 0, ErrClosed
	case cancelled:
		return 0, context.Cause(ctx)
	}
	o.mode = true
	if got != nil {
		o.row = got
		return idx, nil
	}
	return 0, nil
}

func containsTable(ts []*table, t *table) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}

// countWaitLocked counts a finished wait: the winning table (index win,
// -1 for none) got an immediate or delayed hit, every other table a timeout.
func (db *DB) countWaitLocked(tables []*table, win int, immediate bool) {
	for i, t := range tables {
		if t.dead || containsTable(tables[:i], t) && i != win {
			continue
		}
		n := db.namesLocked(t)
		switch {
		case i != win:
			n.waitTimeout++
		case immediate:
			n.waitImmediate++
		default:
			n.waitDelayed++
		}
	}
}

// takeLocked removes the oldest free row and marks it held.
func (t *table) takeLocked() (item, bool) {
	if t.dead {
		return item{}, false
	}
	it, ok := t.free.DeleteMin()
	if ok {
		t.held++
	}
	return it, ok
}

// finishWaiterLocked unregisters w, records what it got, and wakes it.
func (db *DB) finishWaiterLocked(w *waiter, got *held, idx int) {
	if w.done {
		return
	}
	w.done, w.got, w.idx = true, got, idx
	for _, t := range w.tables {
		for i, x := range t.waiters {
			if x == w {
				t.waiters = append(t.waiters[:i], t.waiters[i+1:]...)
				break
			}
		}
	}
	delete(db.wait, w)
	close(w.ready)
}

// serveLocked hands free rows of t directly to its waiters, in the order
// they started waiting. For each waiter the subs naming t are tried in
// argument order.
func (db *DB) serveLocked(t *table) {
	for i := 0; i < len(t.waiters) && t.free.Len() > 0; {
		w := t.waiters[i]
		served := false
		for idx, wt := range w.tables {
			if wt != t {
				continue
			}
			if it, ok := t.takeLocked(); ok {
				db.finishWaiterLocked(w, &held{t, it.rowid, it.size}, idx+1) // removes w from t.waiters
				served = true
			}
			break
		}
		if !served {
			i++
		}
	}
}

// releaseLocked returns a held row to its original place in the queue and
// serves waiters.
func (db *DB) releaseLocked(h *held) {
	if h.t.dead {
		return
	}
	h.t.held--
	h.t.free.ReplaceOrInsert(item{h.rowid, h.size})
	db.serveLocked(h.t)
}

// consume durably deletes the owned row, if any.
func (o *Owner) consume() error {
	h := o.row
	if h == nil {
		return nil
	}
	o.row = nil
	db := o.db
	return db.submit(&op{
		removes: true,
		prepare: func(b *pebble.Batch) error {
			if h.t.wdead {
				return nil
			}
			return b.Delete(rowKey(h.t.id, h.rowid), nil)
		},
		apply: func() {
			if !h.t.dead {
				h.t.held--
				h.t.stats.rowsRemoved++
				h.t.stats.bytesRemoved += uint64(h.size)
				db.counters.rowsRemoved.Add(1)
			}
		},
	})
}

// End consumes the owned row (durably, before returning) and leaves owner
// mode. Outside owner mode it does nothing.
func (o *Owner) End() error {
	err := o.consume()
	o.mode = false
	return err
}

// Abort releases the owned row back to its place at the head of its queue
// and leaves owner mode. It reports whether a row was released. Outside
// owner mode it returns ErrNotOwner.
func (o *Owner) Abort() (bool, error) {
	if !o.mode {
		return false, ErrNotOwner
	}
	released := o.release(func(n *nameCounters) { n.restoredByAbort++ })
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
	released := o.release(func(n *nameCounters) { n.restoredByClose++ })
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
	if errors.Is(err, ErrClosed) { // never reached the commit loop
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
		return 0, err
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
