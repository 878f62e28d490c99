package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Group commit one level up, for owners: the consumes, releases, waits
// and inserts of a process's sessions are served by one loop in rounds. A
// round is one upstream transaction that deletes the rows consumed, gives
// back the rows released, claims rows for the waits (in arrival order,
// each wait's tables in its argument order, conditions evaluated here),
// writes this node's id into the claimed rows' owner column, writes the
// rows inserted (batch.go), raises the change counter of the tables that
// got rows, and commits once; every request of the round is answered after
// that commit. While a round runs, the next one gathers. A wait that got no row stays pending, and is looked at again in
// a later round when one of its tables may have rows for it (an insert or
// a release here, a change counter moved by another node, or every
// RecheckInterval).

// req is one request of a connection to the round loop: a row to consume
// or to give back, and/or a wait for a row.
type req struct {
	seq      uint64
	internal bool
	consume  *owned // consumed first (End; a Wait consumes the previous row)
	release  *owned // given back (Abort, Close)
	claim    bool   // wait for a row of subs
	subs     []queue.Sub
	once     bool // look once (a Wait with no timeout)

	// Touched by the round loop only, until state is reqDone.
	tables []*tinfo // per sub, as last looked up (nil: not reached)
	looked bool     // a round looked for a row for it

	state   reqState // guarded by s.mu
	abandon bool     // its Wait gave up while a round had it; guarded by s.mu

	// Results, set before state becomes reqDone.
	err error
	idx int    // 1-based sub of the row claimed; 0: none
	row *owned // the row claimed

	ch chan struct{} // buffered(1): state changed
}

type reqState int

const (
	reqQueued  reqState = iota // waiting for its first round
	reqRound                   // in a round
	reqPending                 // a wait that got no row yet
	reqDone
)

// errLost is a consume or release of a row that a sweep gave back: this
// node lost its registration (its lock connection broke, or it did not
// check its lock for NodeTimeout), so the row may be delivered again.
var errLost = fmt.Errorf("%w: upstream: the row owned was given back (this q4mproxy lost its node lock) and may be delivered again", queue.ErrStorage)

var (
	errCareful = errors.New("sqlstore: a consume found a row gone")    // run the round again, one row at a time
	errFenced  = errors.New("sqlstore: this node's registration gone") // register again, run the round again
)

// submit hands r to the round loop; false once the store is closed.
func (s *Store) submit(r *req) bool {
	r.ch = make(chan struct{}, 1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.reqSeq++
	r.seq = s.reqSeq
	s.queued = append(s.queued, r)
	s.kickLocked()
	return true
}

// do submits r and waits for its answer.
func (s *Store) do(r *req) error {
	if !s.submit(r) {
		return queue.ErrClosed
	}
	s.awaitDone(r)
	return r.err
}

// awaitDone returns once r is answered.
func (s *Store) awaitDone(r *req) {
	for {
		s.mu.Lock()
		done := r.state == reqDone
		s.mu.Unlock()
		if done {
			return
		}
		<-r.ch
	}
}

// notifyLocked tells r's caller that its state changed. s.mu must be held.
func notifyLocked(r *req) {
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// withdraw takes a pending wait back from the loop (true), or marks it
// abandoned if a round has it (false: the caller waits for its answer).
func (s *Store) withdraw(r *req) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.state {
	case reqPending:
		s.pending = slices.DeleteFunc(s.pending, func(x *req) bool { return x == r })
		r.state = reqDone
		return true
	case reqQueued:
		s.queued = slices.DeleteFunc(s.queued, func(x *req) bool { return x == r })
		r.state = reqDone
		return true
	case reqRound:
		r.abandon = true
	}
	return false
}

// roundWorkers is how many rounds of a process may be in flight at once.
// More than one let requests skip the wait for a commit's log flush, but
// on the 2-core machine of bench/multinode, shared with the database, two
// or three doubled each round's latency and halved its size, and the
// throughput fell: the cost is CPU per statement, which bigger rounds
// share.
const roundWorkers = 1

// roundLoop runs rounds until the store closes, then answers every
// request left with ErrClosed. roundWorkers of it run.
func (s *Store) roundLoop() {
	defer s.wg.Done()
	recheck := time.NewTicker(s.opts.RecheckInterval)
	defer recheck.Stop()
	defer s.failAll()
	var g gather
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-recheck.C:
			s.mu.Lock()
			s.allDirty = true
			s.mu.Unlock()
		default:
		}
		s.mu.Lock()
		work := len(s.queued) > 0 || len(s.insQueued) > 0 || len(s.pending) > 0 && (s.allDirty || len(s.dirty) > 0)
		s.mu.Unlock()
		if work {
			g.wait(s)
			start := time.Now()
			n := s.round()
			g.n, g.end = n, time.Now()
			g.d = g.end.Sub(start)
			continue
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-recheck.C:
			s.mu.Lock()
			s.allDirty = true
			s.mu.Unlock()
		}
	}
}

// gatherMax bounds gather.wait.
const gatherMax = 20 * time.Millisecond

// gather is what a round loop knows of its last round: how many sessions
// it answered, when it ended and how long it took.
type gather struct {
	n   int
	end time.Time
	d   time.Duration
}

// wait lets the sessions the last round answered come back before the
// next round starts: until as many requests are queued, for at most the
// last round's duration after its end (gatherMax at most: a round that
// waited for a lock or failed is no measure). A round costs the upstream about
// as much whatever its size (its commit and log flush, a few statements),
// and a round started at once carries the few requests that came back
// first, the rest waiting for the next: rounds alternated between small
// and big. A session that does not come back costs the others one
// round's duration at most. (bench/multinode, 2 nodes, mixed 16P+16C: a
// quarter of the duration took 0.25 commits and 2.5 statements per
// message, the whole duration 0.18 and 1.8, and about 20% less of
// MariaDB's CPU per message.)
func (g *gather) wait(s *Store) {
	if g.n < 2 {
		return
	}
	deadline := g.end.Add(min(g.d, gatherMax))
	var timer *time.Timer
	for {
		s.mu.Lock()
		k := len(s.queued) + len(s.insQueued)
		s.mu.Unlock()
		left := time.Until(deadline)
		if k >= g.n || left <= 0 {
			return
		}
		if timer == nil {
			timer = time.NewTimer(left)
			defer timer.Stop()
		}
		select {
		case <-s.ctx.Done():
			return
		case <-s.kick:
		case <-timer.C:
			return
		}
	}
}

func (s *Store) failAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range append(s.queued, s.pending...) {
		r.err, r.state = queue.ErrClosed, reqDone
		notifyLocked(r)
	}
	s.queued, s.pending = nil, nil
	for _, r := range s.insQueued {
		r.err = queue.ErrClosed
		close(r.done)
	}
	s.insQueued = nil
}

// plan is what one attempt of a round did in its transaction, applied
// once it committed.
type plan struct {
	me       uint64
	consumed []*req            // consumes done
	lost     map[*req]bool     // consumes of rows given back by a sweep
	got      map[*req]int      // claims: the 1-based sub
	rows     map[*req]*owned   // claims: the row
	errs     map[*req]error    // claims that failed (a missing table, a condition)
	cursors  []cursorUpdate    // filter cursors to advance
	bumps    map[uint64]uint64 // change counters raised, by incarnation
	removes  bool              // rows were deleted
	logged   map[*req]bool     // consumes recorded in the consume log (valve.go)
}

type cursorUpdate struct {
	id, gen, v uint64
	key        string
}

// round runs one round: the requests queued, and the pending waits that
// one of their tables' changes concerns. It returns how many requests of
// sessions it answered.
func (s *Store) round() int {
	s.mu.Lock()
	batch := s.queued
	s.queued = nil
	ins := s.insQueued
	if len(ins) > maxBatch {
		ins, s.insQueued = ins[:maxBatch:maxBatch], slices.Clone(ins[maxBatch:])
	} else {
		s.insQueued = nil
	}
	all, dirty := s.allDirty, s.dirty
	s.allDirty, s.dirty = false, map[uint64]bool{}
	for _, r := range batch {
		if r.release != nil {
			// Rows given back in this round are there for its waits: the
			// filter cursors behind them no longer hold.
			dirty[r.release.t.id] = true
			s.resetCursorsLocked(r.release.t.id)
		}
	}
	var claimants []*req
	for _, r := range s.pending {
		if all || slices.ContainsFunc(r.tables, func(t *tinfo) bool { return t != nil && dirty[t.id] }) {
			r.state = reqRound
			claimants = append(claimants, r)
		}
	}
	s.pending = slices.DeleteFunc(s.pending, func(r *req) bool { return r.state == reqRound })
	for _, r := range batch {
		r.state = reqRound
		if r.claim {
			claimants = append(claimants, r)
		}
	}
	s.mu.Unlock()

	// The inserts are written in the round's transaction: one commit (and
	// log flush) for both. Alone, or when one table's requests hold
	// handles of two versions, they are a batch of their own.
	var apart []*insReq
	ids, byTable := groupInserts(ins)
	if len(batch) == 0 && len(claimants) == 0 || slices.ContainsFunc(ids, func(id uint64) bool { return !oneVersion(byTable[id]) }) {
		apart, ids, byTable = ins, nil, nil
	}
	var p *plan
	var err error
	careful := false
	for try := 0; len(batch) > 0 || len(claimants) > 0; try++ {
		p, err = s.attempt(batch, claimants, ids, byTable, all, dirty, careful)
		var me *mysql.MySQLError
		switch {
		case err == nil:
		case errors.Is(err, errCareful) && !careful:
			careful = true
			continue
		case errors.Is(err, errFenced) && try < 5:
			if err = s.fenced(p.me); err == nil {
				continue
			}
		case retryable(err) && try < 5:
			continue
		case len(ids) > 0 && errors.As(err, &me):
			// Refused by the upstream, nothing written: perhaps an
			// insert's table dropped or altered. The round again
			// without them, which the general way sorts out.
			apart, ids, byTable = ins, nil, nil
			continue
		}
		break
	}
	if err != nil && s.isClosed() {
		err = queue.ErrClosed
	}
	if len(ids) > 0 {
		for _, r := range ins {
			if err != nil {
				r.err, r.first = err, 0
			}
		}
		s.insertsDone(ins)
	}
	if p != nil || err != nil {
		s.finish(batch, claimants, p, err)
	}
	if len(apart) > 0 {
		for _, r := range apart {
			r.err, r.first = nil, 0
		}
		s.insertBatch(apart)
		s.insertsDone(apart)
	}
	n := len(ins)
	s.mu.Lock()
	for _, r := range claimants {
		if !r.internal && r.state == reqDone {
			n++
		}
	}
	for _, r := range batch {
		if !r.internal && r.state == reqDone && !r.claim {
			n++
		}
	}
	s.mu.Unlock()
	return n
}

// groupInserts groups inserts by table, the tables in id order.
func groupInserts(ins []*insReq) ([]uint64, map[uint64][]*insReq) {
	if len(ins) == 0 {
		return nil, nil
	}
	byTable := map[uint64][]*insReq{}
	var ids []uint64
	for _, r := range ins {
		id := r.h.ID()
		if byTable[id] == nil {
			ids = append(ids, id)
		}
		byTable[id] = append(byTable[id], r)
	}
	slices.Sort(ids)
	return ids, byTable
}

// insertsDone counts the rows written and answers each insert.
func (s *Store) insertsDone(ins []*insReq) {
	for _, r := range ins {
		if r.err == nil && !r.skipped {
			s.inserted(r.h, r.rows)
		}
		close(r.done)
	}
}

// sqlTx is what a round's statements run on: *sql.Tx, or mtx.
type sqlTx interface {
	Exec(q string, args ...any) (sql.Result, error)
	Query(q string, args ...any) (*sql.Rows, error)
	QueryRow(q string, args ...any) *sql.Row
}

// mtx is a transaction on a connection of the multi-statement pool, begun
// and committed inside the round's own queries (no round trip of their
// own).
type mtx struct {
	c    *sql.Conn
	ctx  context.Context
	open bool // a START TRANSACTION was sent and no COMMIT or ROLLBACK since
}

func (t *mtx) Exec(q string, args ...any) (sql.Result, error) {
	return t.c.ExecContext(t.ctx, q, args...)
}

func (t *mtx) Query(q string, args ...any) (*sql.Rows, error) {
	return t.c.QueryContext(t.ctx, q, args...)
}

func (t *mtx) QueryRow(q string, args ...any) *sql.Row {
	return t.c.QueryRowContext(t.ctx, q, args...)
}

// beginMulti takes a connection of the multi-statement pool for one
// transaction; done rolls back what is still open and gives the connection
// back.
func (s *Store) beginMulti() (*mtx, func(), error) {
	c, err := s.mpool.Conn(s.ctx)
	if err != nil {
		return nil, nil, upErr(err)
	}
	tx := &mtx{c: c, ctx: s.ctx}
	return tx, func() {
		if tx.open {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if _, err := c.ExecContext(ctx, "ROLLBACK"); err != nil {
				c.Raw(func(any) error { return driver.ErrBadConn }) // not pooled with a transaction open
			}
		}
		c.Close()
	}, nil
}

// multi is a multi-statement query being built: its statements, their
// arguments, and a reader for each result set (each SELECT) in order.
type multi struct {
	q     []byte
	n     int // statements
	args  []any
	reads []func(*sql.Rows) error
}

// add appends a statement and returns its index (for exec's results).
func (m *multi) add(stmt string, args []any, read func(*sql.Rows) error) int {
	if len(m.q) > 0 {
		m.q = append(m.q, "; "...)
	}
	m.q = append(m.q, stmt...)
	m.args = append(m.args, args...)
	if read != nil {
		m.reads = append(m.reads, read)
	}
	m.n++
	return m.n - 1
}

// exec sends m, which reads nothing, in one round trip and returns each
// statement's affected rows and LAST_INSERT_ID, from the OK packets (no
// SELECT ROW_COUNT() of their own).
func (m *multi) exec(tx *mtx) (affected, ids []int64, err error) {
	args := make([]driver.NamedValue, len(m.args))
	for i, a := range m.args {
		if v, ok := a.(int); ok {
			a = int64(v)
		}
		args[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	err = tx.c.Raw(func(dc any) error {
		res, err := dc.(driver.ExecerContext).ExecContext(tx.ctx, string(m.q), args)
		if err != nil {
			return err
		}
		r := res.(mysql.Result)
		affected, ids = r.AllRowsAffected(), r.AllLastInsertIds()
		return nil
	})
	if err == nil && (len(affected) != m.n || len(ids) != m.n) {
		err = fmt.Errorf("%d results of %d statements", len(affected), m.n)
	}
	return affected, ids, upErr(err)
}

// addIn adds stmt (ending in "IN ") followed by the list in.
func (m *multi) addIn(stmt string, args, in []any, read func(*sql.Rows) error) {
	m.add(stmt+inList(len(in)), append(slices.Clip(args), in...), read)
}

func inList(n int) string {
	b := make([]byte, 0, 2*n+1)
	b = append(b, '(')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '?')
	}
	return string(append(b, ')'))
}

// run sends m in one round trip and reads its result sets.
func (m *multi) run(tx sqlTx) error {
	if len(m.reads) == 0 {
		_, err := tx.Exec(string(m.q), m.args...)
		return upErr(err)
	}
	rows, err := tx.Query(string(m.q), m.args...)
	if err != nil {
		return upErr(err)
	}
	defer rows.Close()
	for i, read := range m.reads {
		if i > 0 && !rows.NextResultSet() {
			if err := rows.Err(); err != nil {
				return upErr(err)
			}
			return upErr(errors.New("a result set missing"))
		}
		if err := read(rows); err != nil {
			return err
		}
	}
	for rows.NextResultSet() {
	}
	if err := rows.Err(); err != nil {
		return upErr(err)
	}
	return upErr(rows.Close())
}

// scanOne reads the one row of a result set into dest.
func scanOne(rows *sql.Rows, dest ...any) error {
	if !rows.Next() {
		if err := rows.Err(); err != nil {
			return upErr(err)
		}
		return upErr(errors.New("a result row missing"))
	}
	return upErr(rows.Scan(dest...))
}

// attempt runs a round's transaction once: in the common case two round
// trips, the first beginning it, checking the node's registration,
// deleting the rows consumed, giving back the rows released and locking
// candidate rows for the waits; the second writing the owners and change
// counters and committing.
func (s *Store) attempt(batch, claimants []*req, insIDs []uint64, ins map[uint64][]*insReq, all bool, dirty map[uint64]bool, careful bool) (*plan, error) {
	p := &plan{me: s.nodeID(), lost: map[*req]bool{}, got: map[*req]int{}, rows: map[*req]*owned{},
		errs: map[*req]error{}, bumps: map[uint64]uint64{}}
	tx, done, err := s.beginMulti()
	if err != nil {
		return p, err
	}
	defer done()
	m := &multi{}
	m.add("START TRANSACTION", nil, nil)
	tx.open = true
	written := false
	fenced := false
	if len(claimants) > 0 {
		// A shared lock on this node's row: a sweep of this node waits
		// for the round, or the round finds the row gone.
		m.add("SELECT id FROM q4m_nodes WHERE id = ? LOCK IN SHARE MODE", []any{p.me}, func(rows *sql.Rows) error {
			fenced = !rows.Next()
			return upErr(rows.Err())
		})
	}

	// Consumes, by table and owner id.
	type key struct{ tid, owner uint64 }
	group := func(pick func(*req) *owned) (map[key][]*req, []key) {
		m := map[key][]*req{}
		var keys []key
		for _, r := range batch {
			if o := pick(r); o != nil {
				k := key{o.t.id, o.owner}
				if m[k] == nil {
					keys = append(keys, k)
				}
				m[k] = append(m[k], r)
			}
		}
		slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.tid, b.tid), cmp.Compare(a.owner, b.owner)) })
		return m, keys
	}
	cons, ckeys := group(func(r *req) *owned { return r.consume })
	short := false
	if !careful {
		for _, k := range ckeys {
			rs := cons[k]
			ids := make([]any, len(rs))
			for i, r := range rs {
				ids[i] = r.consume.rowid
			}
			m.addIn("DELETE FROM q4m_rows WHERE tid = ? AND owner = ? AND rowid IN ", []any{k.tid, k.owner}, ids, nil)
			m.add("SELECT ROW_COUNT()", nil, func(rows *sql.Rows) error {
				var n int
				if err := scanOne(rows, &n); err != nil {
					return err
				}
				if n != len(rs) {
					short = true
				}
				return nil
			})
			written = true
		}
	}

	// Releases.
	rels, rkeys := group(func(r *req) *owned { return r.release })
	for _, k := range rkeys {
		ids := make([]any, len(rels[k]))
		for i, r := range rels[k] {
			ids[i] = r.release.rowid
		}
		m.addIn("UPDATE q4m_rows SET owner = 0 WHERE tid = ? AND owner = ? AND rowid IN ", []any{k.tid, k.owner}, ids, nil)
		m.add("SELECT ROW_COUNT()", nil, func(rows *sql.Rows) error {
			var n int
			if err := scanOne(rows, &n); err != nil {
				return err
			}
			if n > 0 {
				p.bumps[k.tid] = 0
				written = true
			}
			return nil
		})
	}

	// The candidates of the waits that may take any row, locked.
	trs := s.prefetch(m, claimants, all, dirty)

	if err := m.run(tx); err != nil {
		return p, err
	}
	if fenced {
		return p, errFenced
	}
	if short {
		return p, errCareful
	}
	if careful {
		for _, k := range ckeys {
			for _, r := range cons[k] {
				written = true
				if err := s.consumeOne(tx, p, r, k.tid, k.owner); err != nil {
					return p, err
				}
			}
		}
	} else {
		for _, k := range ckeys {
			p.consumed = append(p.consumed, cons[k]...)
		}
	}
	p.removes = len(p.consumed) > 0

	// The consumes of watched tables are recorded with them.
	if p.logged, err = s.logConsumesTx(tx, p.consumed); err != nil {
		return p, err
	}

	// Claims.
	if len(claimants) > 0 {
		if err := s.claim(tx, p, claimants, all, dirty, trs); err != nil {
			return p, err
		}
	}

	// Owners, then the inserts and change counters, table by table in id
	// order (as insert batches lock the state rows), and the commit: one
	// round trip that reads nothing (the OK packets tell the results).
	m = &multi{}
	for _, id := range slices.Sorted(maps.Keys(trs)) {
		tr := trs[id]
		if len(tr.claimed) > 0 {
			m.addIn("UPDATE q4m_rows SET owner = ? WHERE tid = ? AND rowid IN ", []any{p.me, id}, tr.claimed, nil)
			written = true
		}
		if len(tr.locked) > len(tr.claimed) {
			// Rows locked and not claimed: another node's round skipped
			// them; its waiters are told to look again.
			p.bumps[id] = 0
		}
	}
	states := map[uint64]bool{}
	for id := range p.bumps {
		states[id] = true
	}
	for _, id := range insIDs {
		states[id] = true
	}
	bumpAt := map[uint64]int{}
	insAt := map[uint64]insertAt{}
	for _, id := range slices.Sorted(maps.Keys(states)) {
		written = true
		if reqs := ins[id]; reqs != nil {
			insAt[id] = addInserts(m, id, reqs) // raises the change counter too
			continue
		}
		bumpAt[id] = m.add("UPDATE q4m_state SET seq = LAST_INSERT_ID(seq + 1) WHERE id = ?", []any{id}, nil)
	}
	if !written {
		return p, nil // the deferred rollback ends it
	}
	m.add("COMMIT", nil, nil)
	affected, lids, err := m.exec(tx)
	if err != nil {
		return p, err
	}
	tx.open = false
	s.counters.commits.Add(1)
	for id, i := range bumpAt {
		if affected[i] == 1 {
			p.bumps[id] = uint64(lids[i])
		}
	}
	for id, a := range insAt {
		p.bumps[id] = a.written(ins[id], lids)
	}
	if len(insAt) > 0 {
		s.counters.appends.Add(1)
	}
	return p, nil
}

// consumeOne deletes one consumed row, telling a row gone with its table
// (consumed, as on one node) from one a sweep gave back (lost).
func (s *Store) consumeOne(tx sqlTx, p *plan, r *req, tid, owner uint64) error {
	res, err := tx.Exec("DELETE FROM q4m_rows WHERE tid = ? AND owner = ? AND rowid = ?", tid, owner, r.consume.rowid)
	if err != nil {
		return upErr(err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		p.consumed = append(p.consumed, r)
		return nil
	}
	var v uint64
	err = tx.QueryRow("SELECT version FROM q4m_state WHERE id = ?", tid).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return upErr(err)
	}
	var one int
	err = tx.QueryRow("SELECT 1 FROM q4m_rows WHERE tid = ? AND rowid = ?", tid, r.consume.rowid).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // deleted by its owner's earlier statement (DELETE in owner mode)
	}
	if err != nil {
		return upErr(err)
	}
	p.lost[r] = true
	return nil
}

// prefetch adds to m, for each table that waits of the round may take any
// row of, a locking read of as many free rows as there are such waits.
func (s *Store) prefetch(m *multi, claimants []*req, all bool, dirty map[uint64]bool) map[uint64]*tround {
	trs := map[uint64]*tround{}
	need := map[uint64]int{}
	var order []*tround
	for _, r := range claimants {
		seen := map[uint64]bool{}
		for j, sub := range r.subs {
			if sub.Filter != nil || sub.Compile != nil {
				continue
			}
			t, err := s.lookup(sub.Database, sub.Table)
			if err != nil || seen[t.id] {
				continue
			}
			if r.looked && !all && !dirty[t.id] && r.tables != nil && r.tables[j] == t {
				continue
			}
			if !r.internal && s.reservedFor(t) {
				continue
			}
			seen[t.id] = true
			if trs[t.id] == nil {
				tr := &tround{t: t, locked: map[uint64]bool{}, taken: map[uint64]bool{}}
				trs[t.id] = tr
				order = append(order, tr)
			}
			need[t.id]++
		}
	}
	for _, tr := range order {
		n := need[tr.t.id]
		m.add("SELECT rowid, payload FROM q4m_rows WHERE tid = ? AND owner = 0 ORDER BY rowid LIMIT ? FOR UPDATE SKIP LOCKED", []any{tr.t.id, n}, func(rows *sql.Rows) error {
			got, err := tr.read(rows)
			if err == nil && got < n {
				tr.exhausted = true
			}
			return err
		})
	}
	return trs
}

// tround is one table's rows as a round sees them.
type tround struct {
	t         *tinfo
	free      []*owned        // locked by the round, not yet claimed, in rowid order
	after     uint64          // the last rowid the locking reads reached
	exhausted bool            // no free row after it
	locked    map[uint64]bool // rows the round locked
	taken     map[uint64]bool // rows the round claimed
	claimed   []any           // their rowids, in claim order
}

// claim gives rows to the claimants in arrival order (trs: the tables as
// the round read them so far).
func (s *Store) claim(tx sqlTx, p *plan, claimants []*req, all bool, dirty map[uint64]bool, trs map[uint64]*tround) error {
	for i, r := range claimants {
		if p.lost[r] {
			continue
		}
		s.mu.Lock()
		abandoned := r.abandon
		s.mu.Unlock()
		if abandoned {
			continue
		}
		if r.tables == nil {
			r.tables = make([]*tinfo, len(r.subs))
		}
		for j := range r.subs {
			sub := &r.subs[j]
			t, err := s.lookup(sub.Database, sub.Table)
			if errors.Is(err, queue.ErrNoSuchTable) && r.looked {
				continue // dropped while waited on: wait on, as *DB's waiters do
			}
			if err != nil {
				p.errs[r] = err
				break
			}
			prev := r.tables[j]
			r.tables[j] = t
			if r.looked && !all && !dirty[t.id] && prev == t {
				continue // nothing new for it there
			}
			if !r.internal && s.reservedFor(t) {
				continue
			}
			if sub.Filter == nil && sub.Compile != nil {
				f, err := sub.Compile(handle(t))
				if err != nil {
					p.errs[r] = err
					break
				}
				sub.Filter = f
			}
			tr := trs[t.id]
			if tr == nil {
				tr = &tround{t: t, locked: map[uint64]bool{}, taken: map[uint64]bool{}}
				trs[t.id] = tr
			}
			var o *owned
			if sub.Filter == nil {
				o, err = tr.takeAny(tx, demand(claimants[i:], sub.Database, sub.Table))
			} else {
				o, err = s.takeMatch(tx, tr, sub.Filter, p)
			}
			if err != nil {
				return err
			}
			if o != nil {
				o.owner = p.me
				p.got[r], p.rows[r] = j+1, o
				break
			}
		}
	}
	return nil
}

// demand counts the claims (of rs) that may take any row of the table: how
// many rows a locking read asks for.
func demand(rs []*req, db, table string) int {
	n := 0
	for _, r := range rs {
		if slices.ContainsFunc(r.subs, func(sub queue.Sub) bool {
			return sub.Filter == nil && sub.Compile == nil && sub.Database == db && sub.Table == table
		}) {
			n++
		}
	}
	return max(n, 1)
}

// takeAny claims the oldest free row of the table, reading (and locking)
// up to n more when the round has none left.
func (tr *tround) takeAny(tx sqlTx, n int) (*owned, error) {
	for {
		for len(tr.free) > 0 {
			o := tr.free[0]
			tr.free = tr.free[1:]
			if !tr.taken[o.rowid] {
				tr.takeLocked(o)
				return o, nil
			}
		}
		if tr.exhausted {
			return nil, nil
		}
		rows, err := tx.Query("SELECT rowid, payload FROM q4m_rows WHERE tid = ? AND owner = 0 AND rowid > ? ORDER BY rowid LIMIT ? FOR UPDATE SKIP LOCKED", tr.t.id, tr.after, n)
		if err != nil {
			return nil, upErr(err)
		}
		got, err := tr.read(rows)
		rows.Close()
		if err != nil {
			return nil, err
		}
		if got < n {
			tr.exhausted = true
		}
	}
}

// read adds the rows of a locking read to the round's free rows.
func (tr *tround) read(rows *sql.Rows) (int, error) {
	got := 0
	for rows.Next() {
		o := &owned{t: tr.t, version: tr.t.version}
		if err := rows.Scan(&o.rowid, &o.payload); err != nil {
			return got, upErr(err)
		}
		got++
		tr.after = o.rowid
		tr.locked[o.rowid] = true
		tr.free = append(tr.free, o)
	}
	return got, upErr(rows.Err())
}

func (tr *tround) takeLocked(o *owned) {
	tr.taken[o.rowid] = true
	tr.claimed = append(tr.claimed, o.rowid)
}

// takeMatch claims the oldest free row of the table that f accepts. The
// candidates are read without locks, from the filter's cursor (the rows
// before it held no free match); a match is then locked, unless another
// owner got it first.
func (s *Store) takeMatch(tx sqlTx, tr *tround, f queue.Filter, p *plan) (*owned, error) {
	const batch = 256
	id := tr.t.id
	key := f.Key()
	after, gen := s.cursor(id, key)
	for {
		rows, err := tx.Query("SELECT rowid, payload FROM q4m_rows WHERE tid = ? AND owner = 0 AND rowid > ? ORDER BY rowid LIMIT ?", id, after, batch)
		if err != nil {
			return nil, upErr(err)
		}
		var match []*owned
		n := 0
		for rows.Next() {
			o := &owned{t: tr.t, version: tr.t.version}
			if err := rows.Scan(&o.rowid, &o.payload); err != nil {
				rows.Close()
				return nil, upErr(err)
			}
			n++
			after = o.rowid
			if !tr.taken[o.rowid] && f.Match(o.payload) {
				match = append(match, o)
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, upErr(err)
		}
		for _, o := range match {
			if !tr.locked[o.rowid] {
				err := tx.QueryRow("SELECT payload FROM q4m_rows WHERE tid = ? AND rowid = ? AND owner = 0 FOR UPDATE SKIP LOCKED", id, o.rowid).Scan(&o.payload)
				if errors.Is(err, sql.ErrNoRows) {
					continue
				}
				if err != nil {
					return nil, upErr(err)
				}
				tr.locked[o.rowid] = true
			}
			tr.takeLocked(o)
			p.cursors = append(p.cursors, cursorUpdate{id: id, gen: gen, v: o.rowid - 1, key: key})
			return o, nil
		}
		if n < batch {
			p.cursors = append(p.cursors, cursorUpdate{id: id, gen: gen, v: after, key: key})
			return nil, nil
		}
	}
}

// finish answers a round's requests: err (the round failed) or what the
// committed plan says.
func (s *Store) finish(batch, claimants []*req, p *plan, err error) {
	if err != nil {
		// Rows whose consume or release failed are still this node's in
		// the upstream: they are given back by a later round.
		var retry []*req
		for _, r := range batch {
			if o := cmp.Or(r.consume, r.release); o != nil {
				retry = append(retry, &req{internal: true, release: o, ch: make(chan struct{}, 1)})
			}
		}
		s.mu.Lock()
		for _, r := range append(batch, claimants...) {
			r.err, r.state = err, reqDone
			notifyLocked(r)
		}
		if !s.closed {
			for _, r := range retry {
				s.reqSeq++
				r.seq = s.reqSeq
				s.queued = append(s.queued, r)
			}
		}
		s.mu.Unlock()
		if !s.isClosed() {
			s.log.Warn("queue store: a round failed", "err", err)
			select {
			case <-s.ctx.Done():
			case <-time.After(100 * time.Millisecond): // not a retry storm against a failing upstream
			}
		}
		return
	}
	for id, seq := range p.bumps {
		if seq != 0 {
			s.bumped(id, seq)
		}
	}
	if p.removes {
		s.counters.removes.Add(1)
	}
	for _, r := range p.consumed {
		s.consumed(r.consume, r.internal, p.logged[r])
	}
	s.mu.Lock()
	for _, c := range p.cursors {
		s.setCursorLocked(c.id, c.key, c.gen, c.v)
	}
	for _, r := range batch {
		if p.lost[r] {
			r.err = errLost
		}
		if !r.claim {
			r.state = reqDone
			notifyLocked(r)
		}
	}
	var still []*req
	for _, r := range claimants {
		switch {
		case r.err != nil:
		case p.errs[r] != nil:
			r.err = p.errs[r]
		case p.got[r] > 0:
			r.idx, r.row = p.got[r], p.rows[r]
			s.countWaitLocked(r.tables, r.idx-1, !r.looked)
		case r.once:
			s.countWaitLocked(r.tables, -1, true)
		case r.abandon:
		default:
			r.state = reqPending
			still = append(still, r)
			if !r.looked {
				r.looked = true
				notifyLocked(r) // its Wait blocks now
			}
			continue
		}
		r.state = reqDone
		notifyLocked(r)
	}
	if len(still) > 0 {
		s.pending = append(s.pending, still...)
		slices.SortFunc(s.pending, func(a, b *req) int { return cmp.Compare(a.seq, b.seq) })
	}
	s.mu.Unlock()
}
