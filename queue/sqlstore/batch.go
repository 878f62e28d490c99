package sqlstore

import (
	"cmp"
	"database/sql"
	"errors"
	"maps"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Group commit one level up: the inserts of concurrent sessions of this
// process are gathered into one upstream transaction (at most maxBatch of
// them), which locks each table's state row once, hands out the rowids,
// writes every row and commits once. Inserts with no relay mark ride the
// round loop's transactions (round.go; alone, they are a batch of their
// own there); inserts with one (queue_set_srcid) have the insert loop
// below. While a batch commits, the next one gathers.

const maxBatch = 256

// insertWorkers is how many insert batches of a process may be in flight
// at once (one: see roundWorkers).
const insertWorkers = 1

// insReq is one InsertFrom waiting for its batch.
type insReq struct {
	h       queue.Table
	rows    [][]byte
	src     *queue.Source
	first   uint64
	skipped bool
	err     error
	done    chan struct{}
}

// insertLoop runs the batches until the store closes.
func (s *Store) insertLoop() {
	defer s.wg.Done()
	for {
		var batch []*insReq
		select {
		case r := <-s.insCh:
			batch = append(batch, r)
		case <-s.ctx.Done():
			return
		}
	gather:
		for len(batch) < maxBatch {
			select {
			case r := <-s.insCh:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		s.insertBatch(batch)
		for _, r := range batch {
			if r.err == nil && !r.skipped {
				s.inserted(r.h, r.rows)
			}
			close(r.done)
		}
	}
}

// insertBatch writes the batch in one transaction, in two round trips:
// the first begins it and locks the tables' state rows (in id order: two
// processes' batches lock them in the same order) and reads their relay
// marks; the second raises the last rowids and change counters, writes the
// rows and marks, and commits. A request that cannot be written (its
// table dropped or altered, a relay duplicate) gets its own answer; a
// failed statement or commit fails them all.
func (s *Store) insertBatch(batch []*insReq) {
	failAll := func(err error) {
		for _, r := range batch {
			if r.err == nil {
				r.err, r.skipped, r.first = err, false, 0
			}
		}
	}
	byTable := map[uint64][]*insReq{}
	var ids []any
	relay := map[uint64]bool{}
	var relayIDs []any
	for _, r := range batch {
		id := r.h.ID()
		if byTable[id] == nil {
			ids = append(ids, id)
		}
		byTable[id] = append(byTable[id], r)
		if r.src != nil && r.src.RowID != 0 && !relay[id] {
			relay[id] = true
			relayIDs = append(relayIDs, id)
		}
	}
	slices.SortFunc(ids, func(a, b any) int { return cmp.Compare(a.(uint64), b.(uint64)) })
	if len(relayIDs) == 0 {
		err := s.insertFast(ids, byTable)
		var me *mysql.MySQLError
		if err == nil {
			return
		}
		if !errors.As(err, &me) {
			failAll(err)
			return
		}
		// Refused by the upstream, nothing written (a table dropped or
		// altered): the general way sorts the requests out.
		for _, r := range batch {
			r.err, r.first = nil, 0
		}
	}
	tx, done, err := s.beginMulti()
	if err != nil {
		failAll(err)
		return
	}
	defer done()
	type state struct{ last, version, seq uint64 }
	states := map[uint64]state{}
	marks := map[[2]uint64]uint64{} // by table and sender
	m := &multi{}
	m.add("START TRANSACTION", nil, nil)
	tx.open = true
	m.add("SELECT id, last_rowid, version, seq FROM q4m_state WHERE id IN "+inList(len(ids))+" ORDER BY id FOR UPDATE", ids, func(rows *sql.Rows) error {
		for rows.Next() {
			var id uint64
			var st state
			if err := rows.Scan(&id, &st.last, &st.version, &st.seq); err != nil {
				return upErr(err)
			}
			states[id] = st
		}
		return upErr(rows.Err())
	})
	if len(relayIDs) > 0 {
		m.add("SELECT tid, sender, mark FROM q4m_marks WHERE tid IN "+inList(len(relayIDs)), relayIDs, func(rows *sql.Rows) error {
			for rows.Next() {
				var tid, sender, mark uint64
				if err := rows.Scan(&tid, &sender, &mark); err != nil {
					return upErr(err)
				}
				marks[[2]uint64{tid, sender}] = mark
			}
			return upErr(rows.Err())
		})
	}
	if err := m.run(tx); err != nil {
		failAll(err)
		return
	}
	m = &multi{}
	bumps := map[uint64]uint64{}
	for _, v := range ids {
		id := v.(uint64)
		st, ok := states[id]
		if !ok {
			for _, r := range byTable[id] {
				r.err = queue.ErrNoSuchTable
			}
			continue
		}
		if seq := writeTable(m, id, st.last, st.version, st.seq, byTable[id], marks); seq != 0 {
			bumps[id] = seq
		}
	}
	if len(m.q) == 0 {
		return // nothing to write: the deferred rollback ends it
	}
	m.add("COMMIT", nil, nil)
	if err := m.run(tx); err != nil {
		failAll(err)
		return
	}
	tx.open = false
	s.counters.commits.Add(1)
	for id, seq := range bumps {
		s.bumped(id, seq)
	}
	if slices.ContainsFunc(batch, func(r *insReq) bool { return r.err == nil && !r.skipped && len(r.rows) > 0 }) {
		s.counters.appends.Add(1)
	}
}

// insertFast writes a batch with no relay marks in one round trip, which
// holds the tables' state rows locked only from its first UPDATE to its
// COMMIT (addInserts). Should a table have been dropped or altered since
// the handles were taken, the INSERT fails before the COMMIT: the caller
// then takes the general way.
func (s *Store) insertFast(ids []any, byTable map[uint64][]*insReq) error {
	for _, reqs := range byTable {
		if !oneVersion(reqs) {
			return &mysql.MySQLError{Number: 1048, Message: "handles of two versions"} // the general way sorts them
		}
	}
	tx, done, err := s.beginMulti()
	if err != nil {
		return err
	}
	defer done()
	m := &multi{}
	m.add("START TRANSACTION", nil, nil)
	tx.open = true
	at := map[uint64]insertAt{}
	for _, v := range ids {
		id := v.(uint64)
		at[id] = addInserts(m, id, byTable[id])
	}
	m.add("COMMIT", nil, nil)
	_, lids, err := m.exec(tx)
	if err != nil {
		return err
	}
	tx.open = false
	s.counters.commits.Add(1)
	for id, a := range at {
		s.bumped(id, a.written(byTable[id], lids))
	}
	s.counters.appends.Add(1)
	return nil
}

// oneVersion reports whether the requests (of one table) hold handles of
// one version, which the fast way needs.
func oneVersion(reqs []*insReq) bool {
	return !slices.ContainsFunc(reqs, func(r *insReq) bool { return r.h.Version() != reqs[0].h.Version() })
}

// insertAt is where addInserts put the statements whose LAST_INSERT_ID
// tell the table's new last rowid and change counter.
type insertAt struct{ last, seq int }

// addInserts adds to m the writes of reqs, the requests for table id (one
// version), in three statements and no read: the state row's UPDATE
// (locking it, serialising the table's inserts across processes) sets
// LAST_INSERT_ID to the new last rowid, from which the rows' INSERT
// computes their rowids, then raises the change counter through
// LAST_INSERT_ID; the OK packets of the two UPDATEs carry both values
// (multi.exec). Should the first UPDATE match no row (the table dropped,
// or altered since the handles were taken), the first row's rowid is NULL
// (the guard's subquery finds no row) and the INSERT fails (the
// connections are in strict mode), before the COMMIT.
func addInserts(m *multi, id uint64, reqs []*insReq) insertAt {
	version := reqs[0].h.Version()
	var rows [][]byte
	for _, r := range reqs {
		rows = append(rows, r.rows...)
	}
	n := uint64(len(rows))
	var at insertAt
	at.last = m.add("UPDATE q4m_state SET last_rowid = LAST_INSERT_ID(last_rowid + ?) WHERE id = ? AND version = ?", []any{n, id, version}, nil)
	q := make([]byte, 0, 128+40*len(rows))
	q = append(q, "INSERT INTO q4m_rows (tid, rowid, payload) VALUES (?, (SELECT LAST_INSERT_ID() - ? FROM q4m_state WHERE id = ? AND version = ? AND last_rowid = LAST_INSERT_ID()), ?)"...)
	args := make([]any, 0, 5+3*len(rows))
	args = append(args, id, n-1, id, version, nonNil(rows[0]))
	for i, p := range rows[1:] {
		q = append(q, ", (?, LAST_INSERT_ID() - ?, ?)"...)
		args = append(args, id, n-2-uint64(i), nonNil(p))
	}
	m.add(string(q), args, nil)
	at.seq = m.add("UPDATE q4m_state SET seq = LAST_INSERT_ID(seq + 1) WHERE id = ?", []any{id}, nil)
	return at
}

// written gives each of reqs (as passed to addInserts) its first rowid from
// the LAST_INSERT_IDs of a committed multi.exec, and returns the table's
// new change counter.
func (a insertAt) written(reqs []*insReq, lids []int64) uint64 {
	first := uint64(lids[a.last]) + 1
	for _, r := range reqs {
		first -= uint64(len(r.rows))
	}
	for _, r := range reqs {
		r.first = first
		first += uint64(len(r.rows))
	}
	return uint64(lids[a.seq])
}

// writeTable adds to m the writes of the requests for one table, whose
// state row holds last, version and seq; it returns the table's change
// counter as it raises it (0 if it writes no row).
func writeTable(m *multi, id, last, version, seq uint64, reqs []*insReq, marks map[[2]uint64]uint64) uint64 {
	dirty := map[int]bool{}
	start := last
	var rows []any
	for _, r := range reqs {
		if r.h.Version() != version {
			r.err = queue.ErrTableChanged
			continue
		}
		if src := r.src; src != nil && src.RowID != 0 {
			k := [2]uint64{id, uint64(src.Sender)}
			if !src.Force && src.RowID <= marks[k] {
				r.skipped = true
				continue
			}
			marks[k], dirty[src.Sender] = src.RowID, true
		}
		r.first = last + 1
		for _, p := range r.rows {
			last++
			rows = append(rows, id, last, nonNil(p))
		}
	}
	if last > start {
		m.add("UPDATE q4m_state SET last_rowid = ?, seq = seq + 1 WHERE id = ?", []any{last, id}, nil)
		const chunk = 256 * 3
		for i := 0; i < len(rows); i += chunk {
			part := rows[i:min(i+chunk, len(rows))]
			m.add("INSERT INTO q4m_rows (tid, rowid, payload) VALUES (?, ?, ?)"+strings.Repeat(", (?, ?, ?)", len(part)/3-1), part, nil)
		}
	}
	for _, sender := range slices.Sorted(maps.Keys(dirty)) {
		m.add("INSERT INTO q4m_marks VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE mark = VALUES(mark)", []any{id, sender, marks[[2]uint64{id, uint64(sender)}]}, nil)
	}
	if last == start {
		return 0
	}
	return seq + 1
}
