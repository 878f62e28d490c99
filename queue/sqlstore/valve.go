package sqlstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// What the valve needs when several processes share the store: the tables
// it reserves, the consumes it watches wherever they happen, and one
// process elected to run it.
//
// All three live in q4m_aux, in namespaces of the store's own:
//
//	q4m/reserved  key db\0name   a table only internal owners may take rows of (Reserve)
//	q4m/watch     key db\0name   a table whose consumes are logged ("p": with the payload)
//	q4m/consumed  key tid‖rowid  one consume of a watched table (8 + 8 bytes, big endian),
//	                             its value the payload (or empty)
//
// Reservations and watches are part of the catalog: adding one bumps the
// catalog version, so every process loads it at its next poll. A consume
// of a watched table, on any process, writes its record in the
// transaction that deletes the row: the record exists exactly when the
// consume does. The process that has hooks for the table reads the
// records (at once for its own consumes, every PollInterval for others'),
// calls the hooks with the record as Consumed.Ack, and the hook's owner
// deletes the record in the write that stores what it derived, so that a
// process that dies in between leaves the record to its successor. A
// table no hook ever watched costs one map lookup per consume.
const (
	nsReserved = "q4m/reserved"
	nsWatch    = "q4m/watch"
	nsConsumed = "q4m/consumed"
)

// logBatch bounds the records read from the consume log at a time.
const logBatch = 1000

// shared is what the processes of a store share for the valve, as this
// process knows it.
type shared struct {
	mu       sync.Mutex
	reserved map[string]bool // by nameKey, as loaded with the catalog; guarded by mu
	watch    map[string]bool // by nameKey: consumes logged, with payload if true; guarded by mu
	// stored are the hooked tables whose watch this process stored (or
	// found stored, with the payload its hooks want); guarded by mu.
	stored map[string]bool
	// delivered are the log records given to the hooks and not yet seen
	// deleted, by incarnation; guarded by mu. Emptied when the hooks
	// change: new hooks get every record still in the log.
	delivered map[uint64]map[string]bool
	kick      chan struct{} // wakes the log reader (buffered 1)
}

func (v *shared) init() {
	v.reserved, v.watch, v.stored = map[string]bool{}, map[string]bool{}, map[string]bool{}
	v.delivered = map[uint64]map[string]bool{}
	v.kick = make(chan struct{}, 1)
}

func (v *shared) signal() {
	select {
	case v.kick <- struct{}{}:
	default:
	}
}

// readShared reads the reservations and watches (with the catalog).
func (s *Store) readShared() (reserved, watch map[string]bool, err error) {
	rows, err := s.pool.QueryContext(s.ctx, "SELECT ns, k, v FROM q4m_aux WHERE ns IN (?, ?)", nsReserved, nsWatch)
	if err != nil {
		return nil, nil, upErr(err)
	}
	defer rows.Close()
	reserved, watch = map[string]bool{}, map[string]bool{}
	for rows.Next() {
		var ns string
		var k, v []byte
		if err := rows.Scan(&ns, &k, &v); err != nil {
			return nil, nil, upErr(err)
		}
		if ns == nsReserved {
			reserved[string(k)] = true
		} else {
			watch[string(k)] = bytes.Equal(v, []byte("p"))
		}
	}
	return reserved, watch, upErr(rows.Err())
}

// setShared installs what readShared read.
func (s *Store) setShared(reserved, watch map[string]bool) {
	s.vs.mu.Lock()
	defer s.vs.mu.Unlock()
	s.vs.reserved, s.vs.watch = reserved, watch
}

// reservedFor reports whether t's rows are only for internal owners: this
// process reserved it, or another did (the stored reservations).
func (s *Store) reservedFor(t *tinfo) bool {
	k := nameKey(t.db, t.name)
	s.mu.Lock()
	r := s.reserved[k]
	s.mu.Unlock()
	if r {
		return true
	}
	s.vs.mu.Lock()
	defer s.vs.mu.Unlock()
	return s.vs.reserved[k]
}

// Reserve implements queue.Store: the table is reserved in this process at
// once, and stored so that every process sharing the store refuses its
// rows to clients (from its next catalog load), whether or not it runs
// the valve. A reservation is kept until deleted by hand from q4m_aux.
func (s *Store) Reserve(dbname, name string) {
	k := nameKey(dbname, name)
	s.mu.Lock()
	s.reserved[k] = true
	s.mu.Unlock()
	s.vs.mu.Lock()
	known := s.vs.reserved[k]
	s.vs.mu.Unlock()
	if known {
		return
	}
	err := s.ddl(func(tx *sql.Tx) error {
		_, err := tx.Exec("INSERT IGNORE INTO q4m_aux VALUES (?, ?, '')", nsReserved, []byte(k))
		return upErr(err)
	})
	if err != nil && !s.isClosed() {
		s.log.Warn("queue store: reservation not stored; other processes still give the table's rows to clients", "database", dbname, "table", name, "err", err)
	}
}

// OnConsume implements queue.Store. The hooks see the consumes of every
// process sharing the store: the table is watched (stored, see above),
// and the hooks are called from the consume log, with Consumed.Ack set.
// Until the watch is stored, and for consumes made by a process before
// it loads the watch, consumes of this process call the hooks directly
// (without Ack) and those of others are not seen.
func (s *Store) OnConsume(dbname, name string, payload bool, fn func(queue.Consumed)) (remove func()) {
	k := &hook{payload: payload, fn: fn}
	key := nameKey(dbname, name)
	s.mu.Lock()
	s.hooks[key] = append(append([]*hook(nil), s.hooks[key]...), k)
	s.hooksChangedLocked()
	s.mu.Unlock()
	s.vs.signal()
	// Store the watch now, so that this process's consumes from here on
	// are logged (the log reader retries if this fails).
	if err := s.storeWatch(key); err != nil && !s.isClosed() {
		s.log.Warn("queue store: consume watch not stored yet; retrying", "database", dbname, "table", name, "err", err)
	}
	return func() {
		s.mu.Lock()
		var hs []*hook
		for _, h := range s.hooks[key] {
			if h != k {
				hs = append(hs, h)
			}
		}
		if len(hs) == 0 {
			delete(s.hooks, key)
		} else {
			s.hooks[key] = hs
		}
		s.hooksChangedLocked()
		s.mu.Unlock()
		s.vs.signal()
	}
}

// hooksChangedLocked makes the log reader store the new hooks' watches
// and give them every record still in the log (the caller holds s.mu, and
// kicks the reader after). A read in flight is dropped (see deliver).
func (s *Store) hooksChangedLocked() {
	s.hookGen++
	s.vs.mu.Lock()
	s.vs.stored = map[string]bool{}
	s.vs.delivered = map[uint64]map[string]bool{}
	s.vs.mu.Unlock()
}

func logKey(tid, rowid uint64) []byte {
	return binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(make([]byte, 0, 16), tid), rowid)
}

// logConsumedTx records, in tx (the consume's own transaction), the
// consume of row rowid of t if t is watched; it reports whether it did.
// Internal owners' consumes are not logged (the hooks do not see them).
func (s *Store) logConsumedTx(tx *sql.Tx, t *tinfo, rowid uint64, payload []byte, internal bool) (bool, error) {
	if internal {
		return false, nil
	}
	s.vs.mu.Lock()
	withPayload, ok := s.vs.watch[nameKey(t.db, t.name)]
	s.vs.mu.Unlock()
	if !ok {
		return false, nil
	}
	if !withPayload {
		payload = nil
	}
	_, err := tx.Exec("INSERT INTO q4m_aux VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)", nsConsumed, logKey(t.id, rowid), nonNil(payload))
	return true, upErr(err)
}

// fenceTx returns queue.ErrFenced unless entry f holds f's value. It reads
// the entry with a shared lock kept until tx ends: a takeover's write of
// the entry waits for tx, and tx, once past here, cannot be overtaken by it.
func fenceTx(tx *sql.Tx, f *queue.AuxEntry) error {
	var v []byte
	err := tx.QueryRow("SELECT v FROM q4m_aux WHERE ns = ? AND k = ? LOCK IN SHARE MODE", f.NS, nonNil(f.Key)).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return queue.ErrFenced
	}
	if err != nil {
		return upErr(err)
	}
	if !bytes.Equal(v, f.Value) {
		return queue.ErrFenced
	}
	return nil
}

// logConsumesTx records, in tx (a round's), the consumes of rs whose
// tables are watched, in one statement; it returns the requests logged.
func (s *Store) logConsumesTx(tx sqlTx, rs []*req) (map[*req]bool, error) {
	var logged map[*req]bool
	var args []any
	s.vs.mu.Lock()
	for _, r := range rs {
		o := r.consume
		if r.internal || o == nil {
			continue
		}
		withPayload, ok := s.vs.watch[nameKey(o.t.db, o.t.name)]
		if !ok {
			continue
		}
		var p []byte
		if withPayload {
			p = o.payload
		}
		if logged == nil {
			logged = map[*req]bool{}
		}
		logged[r] = true
		args = append(args, nsConsumed, logKey(o.t.id, o.rowid), nonNil(p))
	}
	s.vs.mu.Unlock()
	if len(args) == 0 {
		return nil, nil
	}
	q := "INSERT INTO q4m_aux VALUES (?, ?, ?)" + strings.Repeat(", (?, ?, ?)", len(args)/3-1) + " ON DUPLICATE KEY UPDATE v = VALUES(v)"
	if _, err := tx.Exec(q, args...); err != nil {
		return nil, upErr(err)
	}
	return logged, nil
}

// retireLogTx deletes, in tx, the consume records of a retired
// incarnation: its rows are gone, and with them its flights.
func retireLogTx(tx *sql.Tx, id uint64) error {
	_, err := tx.Exec("DELETE FROM q4m_aux WHERE ns = ? AND k >= ? AND k < ?", nsConsumed, logKey(id, 0), logKey(id+1, 0))
	return upErr(err)
}

// readLog runs until the store closes: it stores the watches of this
// process's hooks and gives the hooks the consume log's records.
func (s *Store) readLog() {
	defer s.wg.Done()
	tick := time.NewTicker(s.opts.PollInterval)
	defer tick.Stop()
	failing := false
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		case <-s.vs.kick:
		}
		err := s.readLogOnce()
		switch {
		case err != nil && !failing && !s.isClosed():
			s.log.Warn("queue store: cannot read the consume log; retrying", "err", err)
			failing = true
		case err == nil && failing:
			s.log.Info("queue store: consume log read again")
			failing = false
		}
	}
}

func (s *Store) readLogOnce() error {
	s.mu.Lock()
	type target struct {
		key string
		t   *tinfo
	}
	var targets []target
	for k := range s.hooks {
		if t := s.tables[k]; t != nil {
			targets = append(targets, target{k, t})
		}
	}
	s.mu.Unlock()
	for _, tg := range targets {
		if err := s.storeWatch(tg.key); err != nil {
			return err
		}
		if err := s.deliver(tg.key, tg.t); err != nil {
			return err
		}
	}
	return nil
}

// storeWatch stores the watch of table key for this process's hooks, if
// it is not stored yet (with the payload they want).
func (s *Store) storeWatch(key string) error {
	s.mu.Lock()
	payload := false
	for _, h := range s.hooks[key] {
		payload = payload || h.payload
	}
	s.mu.Unlock()
	s.vs.mu.Lock()
	stored := s.vs.stored[key]
	p, watched := s.vs.watch[key]
	s.vs.mu.Unlock()
	if stored {
		return nil
	}
	if !watched || payload && !p {
		v := ""
		if payload {
			v = "p"
		}
		err := s.ddl(func(tx *sql.Tx) error {
			_, err := tx.Exec("INSERT INTO q4m_aux VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE v = IF(v = 'p', v, VALUES(v))", nsWatch, []byte(key), v)
			return upErr(err)
		})
		if err != nil {
			return err
		}
	}
	s.vs.mu.Lock()
	s.vs.stored[key] = true
	s.vs.mu.Unlock()
	return nil
}

// deliver gives the hooks of table key the records of t's consumes they
// were not given yet.
func (s *Store) deliver(key string, t *tinfo) error {
	s.mu.Lock()
	gen := s.hookGen
	s.mu.Unlock()
	rows, err := s.pool.QueryContext(s.ctx, "SELECT k, v FROM q4m_aux WHERE ns = ? AND k >= ? AND k < ? ORDER BY k LIMIT ?",
		nsConsumed, logKey(t.id, 0), logKey(t.id+1, 0), logBatch)
	if err != nil {
		return upErr(err)
	}
	type rec struct{ k, v []byte }
	var recs []rec
	for rows.Next() {
		var r rec
		if err := rows.Scan(&r.k, &r.v); err != nil {
			rows.Close()
			return upErr(err)
		}
		recs = append(recs, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return upErr(err)
	}
	// The hooks as they were when the log was read. If they changed since,
	// this read is dropped: the new hooks get a read of their own (the
	// change kicks the reader), and a record acknowledged after this read
	// began must not reach them from it. s.mu is held until the records
	// are marked, so that a change cannot fall between the check and the
	// marks.
	s.mu.Lock()
	if s.hookGen != gen {
		s.mu.Unlock()
		return nil
	}
	hooks := s.hooks[key]
	s.vs.mu.Lock()
	seen := s.vs.delivered[t.id]
	if seen == nil {
		seen = map[string]bool{}
		s.vs.delivered[t.id] = seen
	}
	var todo []rec
	for _, r := range recs {
		if !seen[string(r.k)] {
			todo = append(todo, r)
		}
	}
	if len(recs) < logBatch {
		// Forget the records deleted since.
		in := make(map[string]bool, len(recs))
		for _, r := range recs {
			in[string(r.k)] = true
		}
		for k := range seen {
			if !in[k] {
				delete(seen, k)
			}
		}
	}
	for _, r := range todo {
		seen[string(r.k)] = true
	}
	s.vs.mu.Unlock()
	s.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	for _, r := range todo {
		if len(r.k) != 16 {
			continue
		}
		c := queue.Consumed{
			TableID: binary.BigEndian.Uint64(r.k[:8]), RowID: binary.BigEndian.Uint64(r.k[8:]),
			Ack: queue.AuxEntry{NS: nsConsumed, Key: r.k},
		}
		for _, h := range hooks {
			c.Payload = nil
			if h.payload {
				c.Payload = r.v
			}
			h.fn(c)
		}
	}
	return nil
}

// Lead is how a valve is elected among the processes sharing the store:
// it returns once this process holds the upstream's named lock
// (GET_LOCK) for the valve, on a connection of its own, trying again
// every second while another process holds it. The returned context ends
// when ctx ends or the lock is lost: its connection is checked every
// second, and a connection that breaks frees the lock in the upstream, so
// another process takes over (a process whose machine vanished: after the
// session's wait_timeout, set to Options.NodeTimeout). release frees the lock. name is scoped to
// the store's database.
//
// GET_LOCK locks are per server: with a Galera cluster every process must
// use the same node.
func (s *Store) Lead(ctx context.Context, name string) (context.Context, func(), error) {
	lock := lockName(s.opts.Database, name)
	// The store's closing ends the wait too.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	defer context.AfterFunc(s.ctx, wcancel)()
	for {
		conn, err := s.pool.Conn(wctx)
		if err == nil {
			// As for the node lock: the upstream drops the session, and
			// so frees the lock, of a process that vanished (its
			// machine gone) after NodeTimeout without a check.
			_, err = conn.ExecContext(wctx, "SET SESSION wait_timeout = ?", max(1, int(s.opts.NodeTimeout.Seconds())))
		}
		if err == nil {
			var got sql.NullInt64
			for err == nil {
				err = conn.QueryRowContext(wctx, "SELECT GET_LOCK(?, 1)", lock).Scan(&got)
				if err == nil && got.Valid && got.Int64 == 1 {
					return s.held(ctx, conn, lock)
				}
				if err == nil && !got.Valid {
					err = errors.New("GET_LOCK returned NULL")
				}
			}
		}
		if conn != nil {
			discard(conn)
		}
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		if s.isClosed() {
			return nil, nil, queue.ErrClosed
		}
		s.log.Warn("queue store: cannot ask for a valve's lock; retrying", "lock", lock, "err", err)
		t := time.NewTimer(time.Second)
		select {
		case <-wctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
}

// AwaitUnowned returns once no row of the tables of database dbname is
// owned by a connection of any process (missing tables have none), or
// when ctx ends. A valve's successor calls it for the tables it reserved
// before it consumes them: only valves own their rows, so an owned one is
// its predecessor's, given back by a sweep once that node is seen dead
// (see Lead), and taking the rows after it first would pass messages on
// out of order.
func (s *Store) AwaitUnowned(ctx context.Context, dbname string, tables []string) error {
	for {
		owned := false
		for _, name := range tables {
			t, err := s.lookup(dbname, name)
			if errors.Is(err, queue.ErrNoSuchTable) {
				continue
			}
			if err != nil {
				return err
			}
			var one int
			err = s.pool.QueryRowContext(ctx, "SELECT 1 FROM q4m_rows WHERE tid = ? AND owner <> 0 LIMIT 1", t.id).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return upErr(err)
			}
			owned = true
		}
		if !owned {
			return nil
		}
		t := time.NewTimer(100 * time.Millisecond) // a sweep frees them within about a second
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-s.ctx.Done():
			t.Stop()
			return queue.ErrClosed
		case <-t.C:
		}
	}
}

// held watches the lock conn holds until it is lost, the store closes or
// release is called; then it frees the lock and closes conn.
func (s *Store) held(ctx context.Context, conn *sql.Conn, lock string) (context.Context, func(), error) {
	lctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(queue.ErrClosed) })
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer stop()
		defer discard(conn) // a lock still held goes with its connection
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				rctx, rcancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, _ = conn.ExecContext(rctx, "DO RELEASE_LOCK(?)", lock)
				rcancel()
				return
			case <-tick.C:
			}
			qctx, qcancel := context.WithTimeout(lctx, 5*time.Second)
			var mine sql.NullInt64
			err := conn.QueryRowContext(qctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", lock).Scan(&mine)
			qcancel()
			if lctx.Err() == nil && (err != nil || !mine.Valid || mine.Int64 != 1) {
				if err == nil {
					err = errors.New("the lock is no longer held by this connection")
				}
				cancel(fmt.Errorf("valve lock %s lost: %w", lock, err))
				return
			}
		}
	}()
	release := func() {
		cancel(context.Canceled)
		<-done
	}
	return lctx, release, nil
}

// discard closes conn's upstream connection rather than pooling it: a
// lock it may still hold is freed with it.
func discard(conn *sql.Conn) {
	_ = conn.Raw(func(any) error { return driver.ErrBadConn })
	_ = conn.Close()
}

// lockName is the upstream lock of valve name in store database db:
// q4m_valve_<db>_<name>, or a digest of it where that exceeds the
// 64 characters MySQL allows.
func lockName(db, name string) string {
	n := "q4m_valve_" + db + "_" + name
	if len(n) <= 64 && !strings.ContainsRune(n, 0) {
		return n
	}
	sum := sha256.Sum256([]byte(db + "\x00" + name))
	return "q4m_valve_" + hex.EncodeToString(sum[:20])
}
