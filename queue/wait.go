package queue

import (
	"context"
	"errors"
	"math"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Sub names one table a Wait subscribes to, optionally with a filter
// (Q4M's conditional subscription, 'table:expression').
type Sub struct {
	Database, Table string
	Filter          Filter
	// Compile, if set (and Filter is nil), builds the filter from the table
	// when Wait reaches this sub, so that (as in Q4M) the conditions of subs
	// after the first one with a row are never compiled. A Compile error
	// ends the Wait with that error.
	Compile func(Table) (Filter, error)
}

// Filter selects the rows a conditional subscription accepts.
type Filter interface {
	// Key identifies the filter among the table's filters: two filters with
	// the same key accept the same rows. The table remembers, per key, how
	// far it has been scanned, so rows already found not to match are not
	// evaluated again (rows never change).
	Key() string
	// Match reports whether the row matches. It may be called with DB
	// internals locked and must not call back into the DB.
	Match(payload []byte) bool
}

// waiter is a Wait blocked on one or more tables.
type waiter struct {
	internal bool // the owner may take rows of reserved tables
	subs     []Sub
	tables   []*table      // resolved subs, argument order; guarded by DB.mu
	ready    chan struct{} // closed when finished (under DB.mu)
	done     bool          // guarded by DB.mu
	got      *held         // the row handed to this waiter, if any
	idx      int           // 1-based index of the sub that got
	rescan   bool          // woken to scan again (a row it may match was released)
	closed   bool          // the DB was closed while waiting
}

// MaxWait bounds a Wait's timeout.
const MaxWait = time.Duration(math.MaxInt32) * time.Second

// Wait consumes the row o owns (if any), then takes the oldest free row
// (matching the sub's filter, if any) of the first sub, in argument order,
// that has one. If none has, and timeout > 0, it blocks until a row arrives
// for any of them, the timeout elapses, or ctx is done. It returns the
// 1-based index of the sub whose row o now owns, or 0 on timeout; in both
// cases o is then in owner mode. A waiter woken by one insert that brings
// rows for several of its subs on one table gets the row of the first sub.
//
// Tables are resolved in argument order and the search stops at the first
// sub with a row, so (as in Q4M) a table named after it is not looked up at
// all. A table reached that does not exist gives ErrNoSuchTable and leaves
// o in non-owner mode (the previous row is consumed all the same). If ctx
// ends the wait, the error is context.Cause(ctx) and o is in non-owner mode.
// If the disk is full, consuming the owned row is refused: Wait returns
// ErrDiskFull (in a *FullError) and o keeps its row and owner mode.
func (o *Owner) Wait(ctx context.Context, subs []Sub, timeout time.Duration) (idx int, err error) {
	if f := o.db.obs.Wait; f != nil {
		start := time.Now()
		defer func() {
			if err == nil {
				f(time.Since(start), idx > 0)
			}
		}()
	}
	if err := o.consume(); err != nil {
		if !errors.Is(err, ErrDiskFull) { // refused: o keeps its row
			o.mode = false
		}
		return 0, err
	}
	o.mode = false
	db := o.db
	subs = slices.Clone(subs) // pass fills in compiled filters
	timeout = min(timeout, MaxWait)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		idx, tables, seqs, err := o.pass(subs)
		if err != nil {
			return idx, err
		}
		if idx > 0 {
			if ctx.Err() != nil {
				// Cancelled while it looked (KILL QUERY, shutdown): the
				// row goes back. At a shutdown, statements are cancelled
				// before idle connections close and give their rows
				// back, so a row given back that way is never returned
				// to a statement of the dying server.
				o.release(func(*nameCounters) {})
				o.mode = false
				return 0, context.Cause(ctx)
			}
			return idx, nil
		}
		db.mu.Lock()
		if db.closed {
			db.mu.Unlock()
			return 0, ErrClosed
		}
		if timeout <= 0 {
			db.countWaitLocked(tables, -1, true)
			db.mu.Unlock()
			o.mode = true
			return 0, nil
		}
		if publishedSince(tables, seqs) { // rows arrived while scanning
			db.mu.Unlock()
			continue
		}
		w := &waiter{internal: o.internal, subs: subs, tables: tables, ready: make(chan struct{})}
		for i, t := range tables {
			if !containsTable(tables[:i], t) {
				t.waiters = append(t.waiters, w)
			}
		}
		db.wait[w] = struct{}{}
		db.mu.Unlock()

		if timer == nil {
			timer = time.NewTimer(timeout)
		}
		Blocking(ctx)
		timedOut := false
		select {
		case <-w.ready:
		case <-timer.C:
			timedOut = true
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
		if w.rescan && !timedOut && !cancelled && !w.closed {
			db.mu.Unlock()
			continue
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
}

// pass is Wait's immediate search. On a hit it sets o.row and returns the
// sub's index; otherwise it returns the resolved tables and their publish
// counters as they were when each was searched.
func (o *Owner) pass(subs []Sub) (int, []*table, []uint64, error) {
	db := o.db
	tables := make([]*table, 0, len(subs))
	seqs := make([]uint64, 0, len(subs))
	for i, s := range subs {
		db.mu.Lock()
		t, err := db.lookupLocked(s.Database, s.Table)
		if err != nil {
			db.mu.Unlock()
			return 0, nil, nil, err
		}
		tables = append(tables, t)
		seqs = append(seqs, t.pubSeq)
		if s.Filter == nil && s.Compile != nil {
			h := handle(t)
			db.mu.Unlock()
			f, err := s.Compile(h)
			if err != nil {
				return 0, nil, nil, err
			}
			subs[i].Filter, s.Filter = f, f
			db.mu.Lock()
		}
		if !t.mayTakeLocked(o.internal) {
			db.mu.Unlock()
			continue // reserved for the valve: looks empty
		}
		if s.Filter == nil {
			if it, ok := t.takeLocked(); ok {
				db.countWaitLocked(tables, i, true)
				db.mu.Unlock()
				o.mode, o.row = true, &held{t, it}
				return i + 1, nil, nil, nil
			}
			db.mu.Unlock()
			continue
		}
		db.mu.Unlock()
		it, ok, err := db.scanFilter(t, s.Filter)
		if err != nil {
			return 0, nil, nil, err
		}
		if ok {
			db.mu.Lock()
			db.countWaitLocked(tables, i, true)
			db.mu.Unlock()
			o.mode, o.row = true, &held{t, it}
			return i + 1, nil, nil, nil
		}
	}
	return 0, tables, seqs, nil
}

func publishedSince(tables []*table, seqs []uint64) bool {
	for i, t := range tables {
		if t.pubSeq != seqs[i] {
			return true
		}
	}
	return false
}

// cursor records, for one filter of a table, that every free row with a
// rowid up to pos has been found not to match, except the rows in recheck
// (released since they were looked at; ascending).
type cursor struct {
	pos     uint64
	recheck []uint64
}

// maxCursors bounds the filters a table remembers.
const maxCursors = 100

func (t *table) cursorLocked(key string) *cursor {
	c := t.cursors[key]
	if c == nil {
		if len(t.cursors) >= maxCursors {
			clear(t.cursors)
		}
		if t.cursors == nil {
			t.cursors = map[string]*cursor{}
		}
		c = &cursor{}
		t.cursors[key] = c
	}
	return c
}

// scanFilter takes the oldest free row of t that f matches, reading
// payloads from the store without holding DB.mu.
func (db *DB) scanFilter(t *table, f Filter) (item, bool, error) {
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	for {
		db.mu.Lock()
		if db.closed {
			db.mu.Unlock()
			return item{}, false, ErrClosed
		}
		c := t.cursorLocked(f.Key())
		from, seq := c.pos+1, t.releaseSeq
		if lo, ok := t.free.Min(); ok && lo.rowid > from {
			from = lo.rowid // rows below the oldest free one are gone: do not walk their tombstones
		}
		recheck := slices.Clone(c.recheck)
		hiItem, any := t.free.Max()
		if t.dead || !any || (hiItem.rowid < from && len(recheck) == 0) {
			db.mu.Unlock()
			return item{}, false, nil
		}
		free := t.free.Clone()
		db.mu.Unlock()

		found, checked, err := db.recheck(t, f, free, recheck)
		if err != nil {
			return item{}, false, err
		}
		scanned := from - 1
		if found == 0 && hiItem.rowid >= from {
			if found, scanned, err = db.scanFrom(t, f, free, from, hiItem.rowid); err != nil {
				return item{}, false, err
			}
		}
		db.mu.Lock()
		if t.releaseSeq == seq { // nothing released meanwhile: what was skipped stays non-matching
			c.pos = max(c.pos, scanned)
			c.recheck = c.recheck[min(checked, len(c.recheck)):]
		}
		if found == 0 {
			db.mu.Unlock()
			return item{}, false, nil
		}
		if got, ok := t.free.Delete(item{rowid: found}); ok && !t.dead {
			t.held++
			db.mu.Unlock()
			return got, true, nil
		}
		db.mu.Unlock() // taken by someone else meanwhile: look again
	}
}

// recheck evaluates f on the released rows (ascending) that are still
// free; it returns the first match and how many rows it looked at.
func (db *DB) recheck(t *table, f Filter, free interface{ Has(item) bool }, rows []uint64) (uint64, int, error) {
	for i, r := range rows {
		if !free.Has(item{rowid: r}) {
			continue
		}
		db.counters.reads.Add(1)
		v, closer, err := db.pdb.Get(rowKey(t.id, r))
		if err == pebble.ErrNotFound {
			continue
		}
		if err != nil {
			return 0, i, err
		}
		ok := f.Match(v)
		_ = closer.Close()
		if ok {
			return r, i, nil
		}
	}
	return 0, len(rows), nil
}

// scanFrom evaluates f on the free rows from rowid from to hi, in order; it
// returns the first match, or 0 and the last rowid it found not matching.
func (db *DB) scanFrom(t *table, f Filter, free interface{ Has(item) bool }, from, hi uint64) (found, scanned uint64, err error) {
	db.counters.reads.Add(1)
	it, err := db.pdb.NewIter(&pebble.IterOptions{
		LowerBound: rowKey(t.id, from),
		UpperBound: rowKey(t.id, hi+1),
	})
	if err != nil {
		return 0, 0, err
	}
	defer it.Close()
	scanned = from - 1
	for it.First(); it.Valid(); it.Next() {
		rowid := rowKeyRowID(it.Key())
		if !free.Has(item{rowid: rowid}) {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, 0, err
		}
		if f.Match(v) {
			return rowid, scanned, nil
		}
		scanned = rowid
	}
	return 0, hi, nil
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
	switch {
	case win < 0:
		db.counters.waitTimeout.Add(1)
	case immediate:
		db.counters.waitImmediate.Add(1)
	default:
		db.counters.waitDelayed.Add(1)
	}
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

// newRow is a row just published, with its payload, so that filters can
// be evaluated without reading the store.
type newRow struct {
	rowid   uint64
	payload []byte
}

// serveLocked hands free rows of t directly to its waiters, in the order
// they started waiting. For each waiter the subs naming t are tried in
// argument order: an unfiltered sub takes the oldest free row; a filtered
// sub takes the oldest of rows (the rows just inserted) that it matches.
// When rows is nil (a row was released), waiters with a filter on t are
// woken to scan again.
func (db *DB) serveLocked(t *table, rows []newRow) {
	for i := 0; i < len(t.waiters); {
		if t.free.Len() == 0 {
			return
		}
		w := t.waiters[i]
		if !t.mayTakeLocked(w.internal) {
			i++
			continue
		}
		served, rescan := false, false
		for idx, wt := range w.tables {
			if wt != t {
				continue
			}
			f := w.subs[idx].Filter
			if f == nil {
				if it, ok := t.takeLocked(); ok {
					db.finishWaiterLocked(w, &held{t, it}, idx+1)
					served = true
				}
				break
			}
			if rows == nil {
				rescan = true
				continue
			}
			if it, ok := t.takeMatchingLocked(rows, f); ok {
				db.finishWaiterLocked(w, &held{t, it}, idx+1)
				served = true
				break
			}
		}
		if !served && rescan {
			w.rescan = true
			db.finishWaiterLocked(w, nil, 0)
			served = true
		}
		if !served {
			i++
		}
	}
}

// takeMatchingLocked takes the oldest of rows that is still free and that
// f matches.
func (t *table) takeMatchingLocked(rows []newRow, f Filter) (item, bool) {
	for _, r := range rows {
		if !t.free.Has(item{rowid: r.rowid}) || !f.Match(r.payload) {
			continue
		}
		it, _ := t.free.Delete(item{rowid: r.rowid})
		t.held++
		return it, true
	}
	return item{}, false
}

// releaseLocked returns a held row to its original place in the queue and
// serves waiters.
func (db *DB) releaseLocked(h *held) {
	if h.t.dead {
		return
	}
	t := h.t
	t.held--
	t.free.ReplaceOrInsert(h.item)
	t.releaseSeq++
	t.pubSeq++
	for _, c := range t.cursors {
		if h.rowid <= c.pos { // the row must be looked at again
			i, _ := slices.BinarySearch(c.recheck, h.rowid)
			c.recheck = slices.Insert(c.recheck, i, h.rowid)
		}
	}
	db.serveLocked(t, nil)
}
