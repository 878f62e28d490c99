package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// conn is a client connection's view of the store. The row it owns
// carries this node's id in its owner column; consuming, giving back and
// waiting go through the round loop (round.go).
type conn struct {
	s        *Store
	internal bool
	mode     bool
	row      *owned
}

// owned is a row claimed by this node.
type owned struct {
	t       *tinfo
	rowid   uint64
	payload []byte
	owner   uint64 // the node id it was claimed under
	version uint64 // the table's version when payload was read
}

var _ queue.Conn = (*conn)(nil)

// NewConn implements queue.Store.
func (s *Store) NewConn() queue.Conn { return s.track(&conn{s: s}) }

// NewInternalConn implements queue.Store.
func (s *Store) NewInternalConn() queue.Conn { return s.track(&conn{s: s, internal: true}) }

func (c *conn) InOwnerMode() bool { return c.mode }

// consume deletes the owned row, if c owns one, in a round.
func (c *conn) consume() error {
	r := c.row
	if r == nil {
		return nil
	}
	c.row = nil
	return c.s.do(&req{internal: c.internal, consume: r})
}

// consumed counts a consumed row and calls the table's hooks, or, if the
// consume was logged, has the log reader call them.
func (s *Store) consumed(r *owned, internal, logged bool) {
	if logged {
		s.vs.signal()
		internal = true // the hooks are called from the log
	}
	s.counters.rowsRemoved.Add(1)
	s.mu.Lock()
	var hooks []*hook
	if s.liveLocked(r.t) {
		c := s.tstatsLocked(r.t.id)
		c.rowsRemoved++
		c.bytesRemoved += uint64(len(r.payload))
		if !internal {
			hooks = s.hooks[nameKey(r.t.db, r.t.name)]
		}
	}
	s.mu.Unlock()
	for _, k := range hooks {
		var p []byte
		if k.payload {
			p = r.payload
		}
		k.fn(queue.Consumed{TableID: r.t.id, RowID: r.rowid, Payload: p})
	}
}

// release gives the owned row back, at its place, in a round.
func (c *conn) release(count func(*nameCounters)) bool {
	r := c.row
	if r == nil {
		return false
	}
	c.row = nil
	s := c.s
	if err := s.do(&req{internal: c.internal, release: r}); err != nil && !errors.Is(err, queue.ErrClosed) {
		s.log.Warn("queue store: giving a row back failed; a later round gives it back", "err", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	live := s.liveLocked(r.t)
	if live {
		count(s.namesLocked(r.t))
	}
	return live
}

func (c *conn) End() error {
	err := c.consume()
	c.mode = false
	return err
}

func (c *conn) Abort() (bool, error) {
	if !c.mode {
		return false, queue.ErrNotOwner
	}
	released := c.release(func(n *nameCounters) { n.restoredByAbort++ })
	c.mode = false
	return released, nil
}

func (c *conn) Close() bool {
	released := c.release(func(n *nameCounters) { n.restoredByClose++ })
	c.mode = false
	return released
}

func (c *conn) RowID() (uint64, bool, error) {
	if !c.mode {
		return 0, false, queue.ErrNotOwner
	}
	if c.row == nil {
		return 0, false, nil
	}
	return c.row.rowid, true, nil
}

func (c *conn) Owned() (db, table string, rowid uint64, ok bool) {
	if !c.mode || c.row == nil {
		return "", "", 0, false
	}
	return c.row.t.db, c.row.t.name, c.row.rowid, true
}

func (c *conn) OwnsRowIn(h queue.Table) bool {
	return c.mode && c.row != nil && c.row.t.id == h.ID()
}

// Wait implements queue.Conn: the previous row is consumed and a row
// claimed in one round; if none is free, the wait stays with the round
// loop until a round gives it a row, it times out or is cancelled.
func (c *conn) Wait(ctx context.Context, subs []queue.Sub, timeout time.Duration) (int, error) {
	prev := c.row
	c.row, c.mode = nil, false
	s := c.s
	timeout = min(timeout, queue.MaxWait)
	r := &req{internal: c.internal, consume: prev, claim: true, subs: slices.Clone(subs), once: timeout <= 0}
	if !s.submit(r) {
		return 0, queue.ErrClosed
	}
	<-r.ch
	s.mu.Lock()
	done := r.state == reqDone
	s.mu.Unlock()
	if !done {
		queue.Blocking(ctx)
		timer := time.NewTimer(timeout)
		defer timer.Stop()
		var cause error
	wait:
		for {
			select {
			case <-r.ch:
				s.mu.Lock()
				done := r.state == reqDone
				s.mu.Unlock()
				if done {
					break wait
				}
			case <-timer.C:
				break wait
			case <-ctx.Done():
				cause = context.Cause(ctx)
				break wait
			case <-s.ctx.Done():
				cause = queue.ErrClosed
				break wait
			}
		}
		if s.withdraw(r) {
			if cause != nil {
				return 0, cause
			}
			s.mu.Lock()
			s.countWaitLocked(r.tables, -1, false)
			s.mu.Unlock()
			c.mode = true
			return 0, nil
		}
		s.awaitDone(r)
		if cause != nil {
			if r.row != nil {
				c.row = r.row
				c.release(func(*nameCounters) {})
			}
			return 0, cause
		}
		if r.err == nil && r.row == nil {
			s.mu.Lock()
			s.countWaitLocked(r.tables, -1, false)
			s.mu.Unlock()
		}
	}
	if r.err != nil {
		return 0, r.err
	}
	if r.row != nil && ctx.Err() != nil {
		// Cancelled while its round ran (KILL QUERY, shutdown): the row
		// goes back, as *DB's Wait gives it.
		c.row = r.row
		c.release(func(*nameCounters) {})
		return 0, context.Cause(ctx)
	}
	c.mode = true
	c.row = r.row
	return r.idx, nil
}

// countWaitLocked counts a finished wait as *DB does: the winning sub
// (index win, -1 for none) an immediate or delayed hit, every other table
// reached a timeout. s.mu must be held.
func (s *Store) countWaitLocked(tables []*tinfo, win int, immediate bool) {
	for i, t := range tables {
		if t == nil || !s.liveLocked(t) || slices.Contains(tables[:i], t) && i != win {
			continue
		}
		n := s.namesLocked(t)
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

// Scan implements queue.Conn. Outside owner mode it reads the rows no
// node owns.
func (c *conn) Scan(h queue.Table, fn func(rowid uint64, payload []byte) bool) error {
	s := c.s
	if s.isClosed() {
		return queue.ErrClosed
	}
	if c.mode {
		if r := c.row; r != nil && r.t.id == h.ID() {
			if h.Version() != r.version {
				// Rewritten by an ALTER since it was read.
				var p []byte
				err := s.pool.QueryRowContext(s.ctx, "SELECT payload FROM q4m_rows WHERE tid = ? AND rowid = ?", r.t.id, r.rowid).Scan(&p)
				if err != nil && !errors.Is(err, sql.ErrNoRows) {
					return upErr(err)
				}
				if err == nil {
					r.payload, r.version = p, h.Version()
				}
			}
			fn(r.rowid, r.payload)
		}
		return nil
	}
	rows, err := s.pool.QueryContext(s.ctx, "SELECT rowid, payload FROM q4m_rows WHERE tid = ? AND owner = 0 ORDER BY rowid", h.ID())
	if err != nil {
		return upErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var rowid uint64
		var payload []byte
		if err := rows.Scan(&rowid, &payload); err != nil {
			return upErr(err)
		}
		if !fn(rowid, payload) {
			break
		}
	}
	return upErr(rows.Err())
}

// DeleteRows implements queue.Conn.
func (c *conn) DeleteRows(h queue.Table, rowids []uint64) (int, error) {
	if len(rowids) == 0 {
		return 0, nil
	}
	if c.mode {
		if c.row == nil || c.row.t.id != h.ID() || !slices.Contains(rowids, c.row.rowid) {
			return 0, nil
		}
		if err := c.consume(); err != nil {
			return 0, err
		}
		return 1, nil
	}
	s := c.s
	tx, err := s.begin()
	if err != nil {
		return 0, err
	}
	args := []any{h.ID()}
	for _, r := range rowids {
		args = append(args, r)
	}
	in := "(?" + strings.Repeat(",?", len(rowids)-1) + ")"
	rows, err := tx.Query("SELECT rowid, LENGTH(payload) FROM q4m_rows WHERE tid = ? AND owner = 0 AND rowid IN "+in+" FOR UPDATE SKIP LOCKED", args...)
	if err != nil {
		tx.Rollback()
		return 0, upErr(err)
	}
	var got []any
	var bytes uint64
	for rows.Next() {
		var r, n uint64
		if err := rows.Scan(&r, &n); err != nil {
			rows.Close()
			tx.Rollback()
			return 0, upErr(err)
		}
		got = append(got, r)
		bytes += n
	}
	rows.Close()
	if len(got) == 0 {
		tx.Rollback()
		return 0, nil
	}
	q := "DELETE FROM q4m_rows WHERE tid = ? AND rowid IN (?" + strings.Repeat(",?", len(got)-1) + ")"
	if _, err := tx.Exec(q, append([]any{h.ID()}, got...)...); err != nil {
		tx.Rollback()
		return 0, upErr(err)
	}
	if err := s.commit(tx); err != nil {
		return 0, err
	}
	s.counters.removes.Add(1)
	s.counters.rowsRemoved.Add(uint64(len(got)))
	s.mu.Lock()
	st := s.tstatsLocked(h.ID())
	st.rowsRemoved += uint64(len(got))
	st.bytesRemoved += bytes
	s.mu.Unlock()
	return len(got), nil
}

// Apply implements queue.Conn: every change in one transaction, the owned
// row's when it consumes it.
func (c *conn) Apply(w queue.Write) error {
	s := c.s
	var r *owned
	if w.Consume {
		if c.row == nil {
			return queue.ErrNoRow
		}
		r, c.row = c.row, nil
	}
	tx, err := s.begin()
	if err != nil {
		c.row = r
		return err
	}
	fail := func(err error) error {
		tx.Rollback()
		if r != nil {
			// Still this node's: given back, as a failed consume is.
			if err := s.do(&req{internal: true, release: r}); err != nil && !errors.Is(err, queue.ErrClosed) {
				s.log.Warn("queue store: giving a row back failed; a later round gives it back", "err", err)
			}
		}
		return err
	}
	if w.Fence != nil {
		if err := fenceTx(tx, w.Fence); err != nil {
			return fail(err)
		}
	}
	first := make([]uint64, len(w.Inserts))
	for i, in := range w.Inserts {
		f, _, err := insertTx(tx, in.Table, in.Rows, nil)
		if err != nil {
			return fail(err)
		}
		first[i] = f
	}
	set := func(e queue.AuxEntry) error {
		_, err := tx.Exec("INSERT INTO q4m_aux VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)", e.NS, nonNil(e.Key), nonNil(e.Value))
		return upErr(err)
	}
	for _, e := range w.Set {
		if err := set(e); err != nil {
			return fail(err)
		}
	}
	for _, e := range w.Delete {
		if _, err := tx.Exec("DELETE FROM q4m_aux WHERE ns = ? AND k = ?", e.NS, nonNil(e.Key)); err != nil {
			return fail(upErr(err))
		}
	}
	if w.Finish != nil {
		for _, e := range w.Finish(first) {
			if err := set(e); err != nil {
				return fail(err)
			}
		}
	}
	logged := false
	if r != nil {
		res, err := tx.Exec("DELETE FROM q4m_rows WHERE tid = ? AND rowid = ? AND owner = ?", r.t.id, r.rowid, r.owner)
		if err != nil {
			return fail(upErr(err))
		}
		if n, _ := res.RowsAffected(); n == 0 {
			var v uint64
			err := tx.QueryRow("SELECT version FROM q4m_state WHERE id = ?", r.t.id).Scan(&v)
			if err == nil {
				tx.Rollback()
				return errLost
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return fail(upErr(err))
			}
		}
		if logged, err = s.logConsumedTx(tx, r.t, r.rowid, r.payload, c.internal); err != nil {
			return fail(err)
		}
	}
	if err := s.commit(tx); err != nil {
		if r != nil {
			s.do(&req{internal: true, release: r})
		}
		return err
	}
	if slices.ContainsFunc(w.Inserts, func(in queue.Insertion) bool { return len(in.Rows) > 0 }) {
		s.counters.appends.Add(1)
	}
	if r != nil {
		s.counters.removes.Add(1)
		s.consumed(r, c.internal, logged)
	}
	for _, in := range w.Inserts {
		s.inserted(in.Table, in.Rows)
	}
	return nil
}

// cursor returns how far the rows of incarnation id are known not to hold
// a free row for filter key, and the release generation it holds for.
func (s *Store) cursor(id uint64, key string) (uint64, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cursors[id][key], s.relGen[id]
}

// setCursorLocked advances a filter's cursor, unless a row was released
// since the scan began (gen). s.mu must be held.
func (s *Store) setCursorLocked(id uint64, key string, gen, v uint64) {
	if s.relGen[id] != gen {
		return
	}
	m := s.cursors[id]
	if m == nil {
		m = map[string]uint64{}
		s.cursors[id] = m
	}
	if v > m[key] {
		m[key] = v
	}
}

// resetCursorsLocked forgets the filter cursors of incarnation id: a row
// behind them may be free again.
func (s *Store) resetCursorsLocked(id uint64) {
	s.relGen[id]++
	delete(s.cursors, id)
}

// resetAllCursorsLocked forgets every cursor (the catalog changed: an
// ALTER rewrote rows).
func (s *Store) resetAllCursorsLocked() {
	for id := range s.cursors {
		s.resetCursorsLocked(id)
	}
}
