package sqlstore

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// This file holds what monitoring reads of the store: Snapshot (the metrics'
// per-table figures) and the live figures Stats adds to the counters. Two
// kinds of figure, kept apart:
//
//   - the table's rows and the age of its oldest row no one owns are the
//     whole table's, as every process sees it: they are read from the database,
//     by one query for every table at once, cached for
//     Options.StatsInterval (longer when the query is slow: ten times its
//     duration), shared by concurrent callers, so that any number of
//     scrapes costs the database at most one query per interval;
//   - owned rows, blocked waits and every counter are this process's own,
//     as Q4M's are each mysqld's: each connection's ownership and waits
//     are followed by a wrapper around it (tracked), which sees only the
//     queue.Conn interface.

// statsTimeout bounds one read of the live figures.
const statsTimeout = 5 * time.Second

// maxMarks bounds the arrival marks kept per table.
const maxMarks = 4096

// statsState is the store's monitoring state; the zero value is ready.
type statsState struct {
	// What tracked counts, store-wide (a wait on several tables counts
	// once).
	waitImmediate, waitDelayed, waitTimeout atomic.Uint64
	restoredByAbort, restoredByClose        atomic.Uint64
	blocked                                 atomic.Int64 // waits parked now

	mu      sync.Mutex
	owned   map[string]int // rows owned by this process's connections, by nameKey; guarded by mu
	waiting map[string]int // waits of this process blocked on the table, by nameKey; guarded by mu

	refreshing chan struct{}        // closed when the read in flight ends; nil if none; guarded by mu
	at         time.Time            // when live was read (or the last read failed); guarded by mu
	took       time.Duration        // how long the last successful read took; guarded by mu
	live       map[uint64]liveTable // by incarnation; guarded by mu
	seen       map[uint64]*arrivals // by incarnation; guarded by mu
	oldestAt   map[uint64]time.Time // by incarnation: when the oldest row arrived; guarded by mu
	err        error                // of the last read; guarded by mu
}

// liveTable is one incarnation as the database last showed it.
type liveTable struct {
	rows int
	// The smallest rowid present, the smallest of a row no one owns (0:
	// none) and the last rowid given.
	oldest, oldestFree, last uint64
}

// arrivals are the marks (rowid, time) of an incarnation: every rowid up
// to mark.rowid existed at mark.at, as this process saw the table's last
// rowid move. A row's arrival is the first mark at or above its rowid: no
// earlier than the row's commit, and later by at most the interval between
// two reads (the first mark, taken at this process's first look, stands
// for every row before it).
type arrivals struct{ marks []mark }

type mark struct {
	rowid uint64
	at    time.Time
}

// note records that last was the table's last rowid at now, and forgets
// the marks of rows all consumed (below oldest).
func (a *arrivals) note(oldest, last uint64, now time.Time) {
	if n := len(a.marks); n == 0 || last > a.marks[n-1].rowid {
		a.marks = append(a.marks, mark{last, now})
	}
	i := 0
	for i < len(a.marks)-1 && a.marks[i].rowid < oldest {
		i++
	}
	a.marks = a.marks[i:]
	if len(a.marks) > maxMarks { // coarser: every other mark; rows look younger, never older
		kept := a.marks[:0]
		for j, m := range a.marks {
			if j%2 == 1 || j == len(a.marks)-1 {
				kept = append(kept, m)
			}
		}
		a.marks = kept
	}
}

// arrival returns when rowid arrived (the zero time if no mark covers it).
func (a *arrivals) arrival(rowid uint64) time.Time {
	for _, m := range a.marks {
		if m.rowid >= rowid {
			return m.at
		}
	}
	return time.Time{}
}

// ttlLocked is how long a read of the live figures is used.
func (st *statsState) ttlLocked(interval time.Duration) time.Duration {
	return max(interval, 10*st.took)
}

// liveFigures returns every incarnation's rows, and when each one's oldest
// row arrived, reading them from the database if the cached ones are older
// than their interval. Concurrent callers share one read; a failed read is
// not retried before the interval either (the figures of the last good one
// are returned, with the error).
func (s *Store) liveFigures() (map[uint64]liveTable, map[uint64]time.Time, error) {
	st := &s.stats
	interval := s.opts.StatsInterval
	if interval <= 0 {
		interval = time.Second
	}
	st.mu.Lock()
	if ch := st.refreshing; ch != nil {
		st.mu.Unlock()
		<-ch
		st.mu.Lock()
		defer st.mu.Unlock()
		return st.live, st.oldestAt, st.err
	}
	if !st.at.IsZero() && time.Since(st.at) < st.ttlLocked(interval) {
		defer st.mu.Unlock()
		return st.live, st.oldestAt, st.err
	}
	ch := make(chan struct{})
	st.refreshing = ch
	st.mu.Unlock()

	start := time.Now()
	live, err := s.readLive()
	now := time.Now()

	st.mu.Lock()
	defer st.mu.Unlock()
	st.refreshing = nil
	close(ch)
	st.at, st.err = now, err
	if err != nil {
		return st.live, st.oldestAt, err
	}
	st.took = now.Sub(start)
	if st.seen == nil {
		st.seen = map[uint64]*arrivals{}
	}
	oldestAt := make(map[uint64]time.Time, len(live))
	for id, l := range live {
		a := st.seen[id]
		if a == nil {
			a = &arrivals{}
			st.seen[id] = a
		}
		a.note(l.oldest, l.last, now) // owned rows may come back: their marks stay
		if l.oldestFree != 0 {
			oldestAt[id] = a.arrival(l.oldestFree)
		}
	}
	for id := range st.seen {
		if _, ok := live[id]; !ok {
			delete(st.seen, id) // dropped or truncated
		}
	}
	st.live, st.oldestAt = live, oldestAt
	return live, oldestAt, nil
}

// readLive reads every incarnation's rows, smallest rowids (of any row,
// of a free one: owner 0) and last rowid in one query: a consistent,
// non-locking read (READ COMMITTED), so it never makes a waiter skip a
// row, that scans the rows through the primary key as COUNT(*) does.
func (s *Store) readLive() (map[uint64]liveTable, error) {
	ctx, cancel := context.WithTimeout(s.ctx, statsTimeout)
	defer cancel()
	rows, err := s.pool.QueryContext(ctx, `SELECT s.id, s.last_rowid, COUNT(r.rowid), COALESCE(MIN(r.rowid), 0),
COALESCE(MIN(CASE WHEN r.owner = 0 THEN r.rowid END), 0)
FROM q4m_state s LEFT JOIN q4m_rows r ON r.tid = s.id WHERE s.id <> 0 GROUP BY s.id, s.last_rowid`)
	if err != nil {
		return nil, upErr(err)
	}
	defer rows.Close()
	live := map[uint64]liveTable{}
	for rows.Next() {
		var id uint64
		var l liveTable
		if err := rows.Scan(&id, &l.last, &l.rows, &l.oldest, &l.oldestFree); err != nil {
			return nil, upErr(err)
		}
		live[id] = l
	}
	return live, upErr(rows.Err())
}

// Snapshot implements queue.Store: every table, its rows and oldest row's
// age read from the database (at most StatsInterval old), its owned rows,
// blocked waits and counters this process's own (TableState.Shared). If
// the database cannot be read, the figures of the last read are given.
func (s *Store) Snapshot() []queue.TableState {
	live, oldestAt, _ := s.liveFigures()
	now := time.Now()
	var out []queue.TableState
	for _, d := range s.Databases() {
		names, err := s.Tables(d)
		if err != nil {
			continue
		}
		for _, n := range names {
			h, err := s.Table(d, n)
			if err != nil {
				continue
			}
			ts := queue.TableState{Database: d, Table: n, Shared: true, TableStats: s.TableStats(h)}
			ts.Rows = live[h.ID()].rows
			if at, ok := oldestAt[h.ID()]; ok && !at.IsZero() {
				ts.OldestAge = max(now.Sub(at), 0)
			}
			k := nameKey(d, n)
			if t, err := s.lookup(d, n); err == nil {
				ts.Reserved = s.reservedFor(t) // by this node or another (valve.go)
			}
			s.stats.mu.Lock()
			ts.Owned, ts.Waiters = s.stats.owned[k], s.stats.waiting[k]
			s.stats.mu.Unlock()
			out = append(out, ts)
		}
	}
	return out
}

// addLive completes Stats: the tables (the catalog), their rows (the
// database's, as Snapshot's), this process's owned rows, blocked waits,
// finished waits and rows given back.
func (s *Store) addLive(g *queue.Stats) {
	st := &s.stats
	g.WaitImmediate, g.WaitDelayed, g.WaitTimeout = st.waitImmediate.Load(), st.waitDelayed.Load(), st.waitTimeout.Load()
	g.RestoredByAbort, g.RestoredByClose = st.restoredByAbort.Load(), st.restoredByClose.Load()
	live, _, _ := s.liveFigures()
	s.mu.Lock()
	for _, t := range s.tables {
		g.Tables++
		g.Rows += int64(live[t.id].rows)
	}
	s.mu.Unlock()
	st.mu.Lock()
	for _, n := range st.owned {
		g.Owned += int64(n)
	}
	st.mu.Unlock()
	g.Waiters = st.blocked.Load()
}

// track wraps a new connection so that its owned row and blocked waits are
// counted.
func (s *Store) track(c queue.Conn) queue.Conn { return &tracked{Conn: c, s: s} }

// tracked is a Conn whose ownership and waits are counted in s.stats. Like
// the Conn it wraps, it is used from one goroutine at a time.
type tracked struct {
	queue.Conn
	s   *Store
	key string // nameKey of the table of the row owned (as last counted); "" for none
}

// sync counts the row the connection owns now.
func (t *tracked) sync() {
	k := ""
	if db, table, _, ok := t.Conn.Owned(); ok {
		k = nameKey(db, table)
	}
	if k == t.key {
		return
	}
	st := &t.s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.owned == nil {
		st.owned = map[string]int{}
	}
	if t.key != "" {
		if st.owned[t.key]--; st.owned[t.key] <= 0 {
			delete(st.owned, t.key)
		}
	}
	if k != "" {
		st.owned[k]++
	}
	t.key = k
}

// addWaiting counts a blocked wait on keys in or out.
func (st *statsState) addWaiting(keys []string, d int) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.waiting == nil {
		st.waiting = map[string]int{}
	}
	for _, k := range keys {
		if st.waiting[k] += d; st.waiting[k] <= 0 {
			delete(st.waiting, k)
		}
	}
}

// Wait counts the wait as blocked from the moment it parks (the store
// calls queue.Blocking then), and its outcome once it returns.
func (t *tracked) Wait(ctx context.Context, subs []queue.Sub, timeout time.Duration) (int, error) {
	start := time.Now()
	st := &t.s.stats
	var keys []string
	for _, sub := range subs {
		k := nameKey(sub.Database, sub.Table)
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
	}
	blocked := false
	outer := ctx
	ctx = queue.WithBlockHook(ctx, func() {
		if !blocked { // counted before the caller's hook hears of it
			blocked = true
			t.sync() // the row owned before was consumed by now
			st.addWaiting(keys, 1)
			st.blocked.Add(1)
		}
		queue.Blocking(outer)
	})
	i, err := t.Conn.Wait(ctx, subs, timeout)
	if blocked {
		st.addWaiting(keys, -1)
		st.blocked.Add(-1)
	}
	t.sync()
	if err != nil {
		return i, err
	}
	switch {
	case i == 0:
		st.waitTimeout.Add(1)
	case blocked:
		st.waitDelayed.Add(1)
	default:
		st.waitImmediate.Add(1)
	}
	if o := t.s.opts.Observer; o != nil && o.Wait != nil {
		o.Wait(time.Since(start), i > 0)
	}
	return i, nil
}

func (t *tracked) End() error {
	err := t.Conn.End()
	t.sync()
	return err
}

func (t *tracked) Abort() (bool, error) {
	released, err := t.Conn.Abort()
	t.sync()
	if released {
		t.s.stats.restoredByAbort.Add(1)
	}
	return released, err
}

func (t *tracked) Close() bool {
	released := t.Conn.Close()
	t.sync()
	if released {
		t.s.stats.restoredByClose.Add(1)
	}
	return released
}

func (t *tracked) DeleteRows(h queue.Table, rowids []uint64) (int, error) {
	n, err := t.Conn.DeleteRows(h, rowids)
	t.sync()
	return n, err
}

func (t *tracked) Apply(w queue.Write) error {
	err := t.Conn.Apply(w)
	t.sync()
	return err
}

// Ping checks that the store's database answers (/readyz): one round trip
// on a connection of the pool, a new one if the pooled ones are broken.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return queue.ErrClosed
	}
	return upErr(s.pool.PingContext(ctx))
}
