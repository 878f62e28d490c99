package sqlstore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Nodes: ownership as data, liveness by lock.
//
// Each process (node) registers in q4m_nodes under a fresh id and holds the
// upstream's named lock q4m_node:<store>:<id> (GET_LOCK) on a connection of
// its own for as long as it lives. Rows it owns carry its id in
// q4m_rows.owner. The node is alive exactly while the upstream holds its
// lock: when the process dies its connections close and the lock is free;
// every node looks each WatchInterval for registered nodes whose lock is
// free and gives their rows back (owner = 0, change counter raised). No
// clock decides that a node is dead, except the upstream's wait_timeout on
// the lock connection (Options.NodeTimeout), which frees the lock of a node
// whose machine vanished without closing its sockets.
//
// Fencing: a sweep deletes the dead node's q4m_nodes row and frees its rows
// in one transaction; a round that claims rows first takes a shared lock on
// its node's row, so a claim either commits before the sweep (whose UPDATE
// then frees the row too) or finds the row gone. A consume or release
// names the owner id it was claimed under (… AND owner = id): once a sweep
// freed the row, it affects nothing and the client is told the row was
// lost. A node that finds its lock connection broken or its row gone
// registers again under a new id; rows held under the old id stay its
// clients' until a sweep (its own, too) frees them.

// defaultNodeTimeout is the wait_timeout of the lock connection: the upstream
// drops the session (and so the lock) of a node that has not checked its
// lock for that long.
const defaultNodeTimeout = 10 * time.Second

// node is this process's registration.
type node struct {
	prefix string // lock name prefix: q4m_node:<hash of the store's database>:

	mu   sync.Mutex
	id   uint64    // guarded by mu
	conn *sql.Conn // holds the lock; guarded by mu
}

// lockPrefix returns the lock name prefix of a store's database (names are
// per server and at most 64 characters: the database name is hashed).
func lockPrefix(database string) string {
	h := sha256.Sum256([]byte(database))
	return "q4m_node:" + hex.EncodeToString(h[:8]) + ":"
}

// nodeID returns this process's current node id.
func (s *Store) nodeID() uint64 {
	s.node.mu.Lock()
	defer s.node.mu.Unlock()
	return s.node.id
}

// register gives this process a fresh node id and takes its lock. The row
// and the lock are taken in one transaction on the lock connection, so no
// other node sees the row while the lock is free.
func (s *Store) register() error {
	ctx := s.ctx
	conn, err := s.pool.Conn(ctx)
	if err != nil {
		return upErr(err)
	}
	fail := func(err error) error {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // the connection is not reused
		conn.Close()
		return upErr(err)
	}
	timeout := s.opts.NodeTimeout
	if _, err := conn.ExecContext(ctx, "SET SESSION wait_timeout = ?", max(1, int(timeout.Seconds()))); err != nil {
		return fail(err)
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fail(err)
	}
	res, err := tx.Exec("INSERT INTO q4m_nodes (started) VALUES (?)", time.Now().Unix())
	if err != nil {
		tx.Rollback()
		return fail(err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		tx.Rollback()
		return fail(err)
	}
	var got sql.NullInt64
	if err := tx.QueryRow("SELECT GET_LOCK(?, 0)", s.node.prefix+fmt.Sprint(id)).Scan(&got); err != nil || got.Int64 != 1 {
		tx.Rollback()
		if err == nil {
			err = fmt.Errorf("lock %s%d held elsewhere", s.node.prefix, id)
		}
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	s.node.mu.Lock()
	old := s.node.conn
	s.node.id, s.node.conn = uint64(id), conn
	s.node.mu.Unlock()
	if old != nil {
		old.Raw(func(any) error { return driver.ErrBadConn }) // closed, not pooled: the lock goes with it
		old.Close()
	}
	s.log.Info("queue store: node registered", "node", id)
	return nil
}

// fenced re-registers this process if its node id is still old (a round
// found the node's row gone, or the watch found its lock lost).
func (s *Store) fenced(old uint64) error {
	if s.nodeID() != old {
		return nil
	}
	s.log.Warn("queue store: node lost its registration; registering again (rows owned under the old id are given back)", "node", old)
	return s.register()
}

// watch, every WatchInterval, checks this node's lock and sweeps dead
// nodes.
func (s *Store) watch() {
	s.checkLock()
	s.sweepDead()
}

// checkLock verifies that the lock connection still holds this node's
// lock (which also keeps the session from reaching its wait_timeout).
func (s *Store) checkLock() {
	s.node.mu.Lock()
	id, conn := s.node.id, s.node.conn
	s.node.mu.Unlock()
	var ok sql.NullInt64
	err := conn.QueryRowContext(s.ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", s.node.prefix+fmt.Sprint(id)).Scan(&ok)
	if s.ctx.Err() != nil || (err == nil && ok.Int64 == 1) {
		return
	}
	if err := s.fenced(id); err != nil && s.ctx.Err() == nil {
		s.log.Warn("queue store: registering the node again failed; retrying", "err", err)
	}
}

// sweepDead gives back the rows of every registered node whose lock is
// free.
func (s *Store) sweepDead() {
	rows, err := s.pool.QueryContext(s.ctx, "SELECT id FROM q4m_nodes WHERE id <> ? AND IS_FREE_LOCK(CONCAT(?, id)) = 1", s.nodeID(), s.node.prefix)
	if err != nil {
		return
	}
	var dead []uint64
	for rows.Next() {
		var id uint64
		if rows.Scan(&id) == nil {
			dead = append(dead, id)
		}
	}
	rows.Close()
	for _, id := range dead {
		if err := s.sweep(id); err != nil && s.ctx.Err() == nil {
			s.log.Warn("queue store: giving back a dead node's rows failed; retrying", "node", id, "err", err)
		}
	}
}

// sweep gives back the rows of node id and deletes its registration, in
// one transaction, raising the change counter of each table it touched.
func (s *Store) sweep(id uint64) error {
	n, err := s.freeRows(s.ctx, id, true)
	if err == nil && n > 0 {
		s.log.Info("queue store: a dead node's rows given back", "node", id, "rows", n)
	}
	return err
}

// freeRows sets owner = 0 on the rows of node id and raises the change
// counters of their tables; with unregister, the node's row is deleted
// first (which waits for its claims in flight, and makes later ones fail).
func (s *Store) freeRows(ctx context.Context, id uint64, unregister bool) (int, error) {
	tx, err := s.pool.BeginTx(ctx, nil)
	if err != nil {
		return 0, upErr(err)
	}
	defer tx.Rollback()
	if unregister {
		res, err := tx.Exec("DELETE FROM q4m_nodes WHERE id = ?", id)
		if err != nil {
			return 0, upErr(err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return 0, nil // swept by another node
		}
	}
	rows, err := tx.Query("SELECT tid, rowid FROM q4m_rows WHERE owner = ? FOR UPDATE", id)
	if err != nil {
		return 0, upErr(err)
	}
	byTable := map[uint64][]any{}
	var tids []uint64
	n := 0
	for rows.Next() {
		var tid, rowid uint64
		if err := rows.Scan(&tid, &rowid); err != nil {
			rows.Close()
			return 0, upErr(err)
		}
		if byTable[tid] == nil {
			tids = append(tids, tid)
		}
		byTable[tid] = append(byTable[tid], rowid)
		n++
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, upErr(err)
	}
	slices.Sort(tids)
	for _, tid := range tids {
		if err := execIn(tx, "UPDATE q4m_rows SET owner = 0 WHERE tid = ? AND owner = ? AND rowid IN ", []any{tid, id}, byTable[tid]); err != nil {
			return 0, err
		}
	}
	for _, tid := range tids {
		if _, err := tx.Exec("UPDATE q4m_state SET seq = seq + 1 WHERE id = ?", tid); err != nil {
			return 0, upErr(err)
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, upErr(err)
	}
	s.mu.Lock()
	for _, tid := range tids {
		s.resetCursorsLocked(tid)
		s.signalLocked(tid)
	}
	s.mu.Unlock()
	return n, nil
}

// unregisterNode, at Close, gives back the rows this process still owns,
// deletes its registration and releases its lock.
func (s *Store) unregisterNode() {
	s.node.mu.Lock()
	id, conn := s.node.id, s.node.conn
	s.node.conn = nil
	s.node.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.freeRows(ctx, id, true); err != nil {
		s.log.Warn("queue store: rows owned at close not given back; another node will when it sees this one gone", "err", err)
	}
	if conn != nil {
		conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", s.node.prefix+fmt.Sprint(id))
		conn.Raw(func(any) error { return driver.ErrBadConn })
		conn.Close()
	}
}

// execIn runs q (ending in "IN ") with args followed by the list in.
func execIn(tx sqlTx, q string, args []any, in []any) error {
	_, err := execInRes(tx, q, args, in)
	return err
}

func execInRes(tx sqlTx, q string, args []any, in []any) (int64, error) {
	var b []byte
	b = append(b, q...)
	b = append(b, '(')
	for i := range in {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '?')
	}
	b = append(b, ')')
	res, err := tx.Exec(string(b), append(slices.Clip(args), in...)...)
	if err != nil {
		return 0, upErr(err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}
