// Package sqlstore is a queue.Store kept in a MySQL or MariaDB database
// (the upstream), so that any number of q4mproxy processes serve the same
// queues: q4mproxy's --queue-store upstream.
//
// # Layout
//
// Everything lives in one database of the upstream (Options.Database,
// "q4mproxy" by default), in InnoDB tables that Open creates:
//
//	q4m_dbs(name)                         the queue databases
//	q4m_tables(db, name, id, meta)        the queue tables: the current incarnation id and definition
//	q4m_state(id, last_rowid, seq, version) per incarnation: the last rowid given, a change
//	                                      counter (inserts and releases) and the ALTER count;
//	                                      the row with id 0 is the catalog's (last incarnation id,
//	                                      catalog version)
//	q4m_rows(tid, rowid, payload, owner)  every row of every queue table, primary key (tid, rowid);
//	                                      owner is the id of the node that owns it, 0 if free
//	q4m_nodes(id, started)                the live processes (nodes), one row each
//	q4m_marks(tid, sender, mark)          relay high-water marks
//	q4m_aux(ns, k, v)                     an in-process consumer's own state (the valve's)
//
// One rows table keyed by (incarnation, rowid) rather than one InnoDB table
// per queue table keeps DDL transactional: CREATE, DROP, TRUNCATE and ALTER
// are ordinary transactions (MySQL's own DDL commits implicitly and cannot
// be rolled back with the catalog), and a valve's Apply spans tables in one
// transaction. A store made by an earlier q4mproxy (no owner column) is
// migrated by Open.
//
// # Ownership
//
// Ownership is data, liveness is a lock (node.go): a row is owned by the
// node whose id is in its owner column, and a node is alive while the
// upstream holds its named lock (GET_LOCK) on a connection of its own.
// Nodes give back the rows of nodes whose lock is free. The consumes,
// releases and waits of a node's sessions are served together by its round
// loop, one upstream transaction per round (round.go), which writes its
// inserts too (batch.go).
//
// # Wake-ups
//
// Every insert and release increments its table's q4m_state.seq. One
// poller per process reads the seqs every Options.PollInterval and wakes
// the process's waiters of the tables that others changed (a process's own
// commits wake its waiters at once).
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Options configures a Store.
type Options struct {
	// Database is the upstream database holding the store ("q4mproxy" if
	// empty); Open creates it and its tables if missing.
	Database string
	// Logger receives the store's messages; nil means slog.Default().
	Logger *slog.Logger
	// PollInterval is how often the tables' change counters are read to
	// wake waiters for rows inserted by other processes (10 ms if 0).
	PollInterval time.Duration
	// RecheckInterval is how often a waiter looks again even unwoken: rows
	// released by a dead process wake no one (1 s if 0).
	RecheckInterval time.Duration
	// WatchInterval is how often the process checks its own node lock and
	// looks for dead nodes whose rows to give back (1 s if 0).
	WatchInterval time.Duration
	// NodeTimeout is the upstream's wait_timeout on the connection that
	// holds the node's lock: a node whose machine vanished without closing
	// its sockets loses its lock, and its rows, after it (10 s if 0).
	NodeTimeout time.Duration
	// InitialDatabases are created when the store is created (its
	// database was empty), and never again.
	InitialDatabases []string
	// StatsInterval is how long the rows counted in the database for
	// Snapshot and Stats are used before they are counted again (1 s if
	// 0; ten times the count's duration when that is longer): see
	// stats.go.
	StatsInterval time.Duration
	// Observer, if set, is told about each finished Wait (its Commit is
	// not called).
	Observer *queue.Observer
}

// Store is a queue.Store in an upstream database. It is safe for
// concurrent use.
type Store struct {
	pool  *sql.DB
	mpool *sql.DB // multiple statements per query: a round's few round trips (round.go)
	log   *slog.Logger
	opts  Options

	ctx    context.Context // cancelled by Close: ends waits and open transactions
	cancel context.CancelFunc
	wg     sync.WaitGroup
	loadMu sync.Mutex // serialises catalog loads

	counters struct {
		rowsWritten, rowsRemoved, commits atomic.Uint64
		appends, removes                  atomic.Uint64 // upstream transactions that inserted / removed rows
	}

	mu       sync.Mutex
	closed   bool                         // guarded by mu
	dbs      map[string]bool              // guarded by mu
	tables   map[string]*tinfo            // by nameKey; guarded by mu
	catSeq   uint64                       // guarded by mu
	catVer   atomic.Uint64                // catSeq, readable without mu
	seqs     map[uint64][2]uint64         // last seen change counter and last rowid by incarnation; guarded by mu
	ownSeqs  map[uint64][]uint64          // change counter values this process's own commits gave, not yet seen by the poller; guarded by mu
	reserved map[string]bool              // guarded by mu
	hooks    map[string][]*hook           // guarded by mu
	hookGen  uint64                       // raised by each change of hooks; guarded by mu
	names    map[string]*nameCounters     // guarded by mu
	tstats   map[uint64]*tableCounters    // by incarnation; guarded by mu
	purging  map[uint64]bool              // incarnations being purged; guarded by mu
	cursors  map[uint64]map[string]uint64 // filter cursors by incarnation and filter key; guarded by mu
	relGen   map[uint64]uint64            // releases seen, by incarnation; guarded by mu

	// The round loop (round.go).
	reqSeq    uint64          // the last request's arrival number; guarded by mu
	queued    []*req          // requests not yet in a round, in arrival order; guarded by mu
	pending   []*req          // blocked waits, in arrival order; guarded by mu
	dirty     map[uint64]bool // incarnations that may have rows for blocked waits; guarded by mu
	allDirty  bool            // every table may; guarded by mu
	kick      chan struct{}   // wakes the round loop (buffered 1)
	insQueued []*insReq       // inserts with no relay mark, for the next round; guarded by mu

	node node // this process's registration (node.go)

	insCh chan *insReq // inserts waiting for their batch (batch.go)

	stats statsState // what monitoring reads (stats.go)
	vs    shared     // reservations, watches and the consume log (valve.go)
}

// tinfo is one incarnation of a table as this process knows it.
type tinfo struct {
	db, name string
	id       uint64
	meta     []byte
	version  uint64
	ref      *queue.TableRef
}

type hook struct {
	payload bool
	fn      func(queue.Consumed)
}

type nameCounters struct {
	waitImmediate, waitDelayed, waitTimeout uint64
	restoredByAbort, restoredByClose        uint64
}

type tableCounters struct {
	rowsWritten, rowsRemoved, bytesTotal, bytesRemoved uint64
}

var _ queue.Store = (*Store)(nil)

func nameKey(db, name string) string { return db + "\x00" + name }

var schema = []string{
	"CREATE TABLE IF NOT EXISTS q4m_dbs (name VARBINARY(192) PRIMARY KEY) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS q4m_tables (db VARBINARY(192) NOT NULL, name VARBINARY(192) NOT NULL, id BIGINT UNSIGNED NOT NULL, meta LONGBLOB, PRIMARY KEY (db, name)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS q4m_state (id BIGINT UNSIGNED PRIMARY KEY, last_rowid BIGINT UNSIGNED NOT NULL, seq BIGINT UNSIGNED NOT NULL, version BIGINT UNSIGNED NOT NULL) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS q4m_rows (tid BIGINT UNSIGNED NOT NULL, rowid BIGINT UNSIGNED NOT NULL, payload LONGBLOB NOT NULL, owner BIGINT UNSIGNED NOT NULL DEFAULT 0, PRIMARY KEY (tid, rowid)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS q4m_nodes (id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, started BIGINT NOT NULL) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS q4m_marks (tid BIGINT UNSIGNED NOT NULL, sender INT NOT NULL, mark BIGINT UNSIGNED NOT NULL, PRIMARY KEY (tid, sender)) ENGINE=InnoDB",
	"CREATE TABLE IF NOT EXISTS q4m_aux (ns VARBINARY(64) NOT NULL, k VARBINARY(255) NOT NULL, v LONGBLOB NOT NULL, PRIMARY KEY (ns, k)) ENGINE=InnoDB",
}

// Open opens the store in the upstream that dsn (a go-sql-driver DSN, its
// database ignored) reaches, creating its database and tables if missing.
func Open(dsn string, opts *Options) (*Store, error) {
	o := Options{}
	if opts != nil {
		o = *opts
	}
	if o.Database == "" {
		o.Database = "q4mproxy"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Millisecond
	}
	if o.RecheckInterval <= 0 {
		o.RecheckInterval = time.Second
	}
	if o.WatchInterval <= 0 {
		o.WatchInterval = time.Second
	}
	if o.NodeTimeout <= 0 {
		o.NodeTimeout = defaultNodeTimeout
	}
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("queue store: %w", err)
	}
	cfg.DBName = ""
	cfg.InterpolateParams = true
	cfg.ParseTime = false
	boot, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	_, err = boot.Exec("CREATE DATABASE IF NOT EXISTS " + quoteName(o.Database))
	boot.Close()
	if err != nil {
		return nil, fmt.Errorf("queue store: %w", err)
	}
	cfg.DBName = o.Database
	pool, err := openRC(cfg)
	if err != nil {
		return nil, fmt.Errorf("queue store: %w", err)
	}
	pool.SetMaxIdleConns(64)
	mcfg := cfg.Clone()
	mcfg.MultiStatements = true
	// Strict: a NULL into a NOT NULL column fails a multi-row INSERT too
	// (the guard of insertFast).
	mcfg.Params = maps.Clone(mcfg.Params)
	if mcfg.Params == nil {
		mcfg.Params = map[string]string{}
	}
	mcfg.Params["sql_mode"] = "CONCAT_WS(',', NULLIF(@@sql_mode, ''), 'STRICT_ALL_TABLES')"
	mpool, err := openRC(mcfg)
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue store: %w", err)
	}
	mpool.SetMaxIdleConns(8)
	opened := false
	defer func() {
		if !opened {
			mpool.Close()
		}
	}()
	for _, q := range schema {
		if _, err := pool.Exec(q); err != nil {
			pool.Close()
			return nil, fmt.Errorf("queue store: %s: %w", q, err)
		}
	}
	if err := migrate(pool); err != nil {
		pool.Close()
		return nil, err
	}
	res, err := pool.Exec("INSERT IGNORE INTO q4m_state VALUES (0, 0, 0, 0)")
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("queue store: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 1 {
		for _, d := range o.InitialDatabases {
			if _, err := pool.Exec("INSERT IGNORE INTO q4m_dbs VALUES (?)", d); err != nil {
				pool.Close()
				return nil, fmt.Errorf("queue store: %w", err)
			}
		}
	}
	s := &Store{
		pool: pool, mpool: mpool, log: o.Logger, opts: o,
		dbs: map[string]bool{}, tables: map[string]*tinfo{}, seqs: map[uint64][2]uint64{}, ownSeqs: map[uint64][]uint64{},
		reserved: map[string]bool{}, dirty: map[uint64]bool{}, kick: make(chan struct{}, 1),
		hooks: map[string][]*hook{}, names: map[string]*nameCounters{},
		tstats: map[uint64]*tableCounters{}, purging: map[uint64]bool{},
		cursors: map[uint64]map[string]uint64{}, relGen: map[uint64]uint64{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.vs.init()
	s.node.prefix = lockPrefix(o.Database)
	if err := s.loadCatalog(); err != nil {
		pool.Close()
		return nil, err
	}
	if err := s.register(); err != nil {
		pool.Close()
		return nil, err
	}
	// Rows of incarnations dropped while their process died are purged.
	var orphans []uint64
	rows, err := pool.Query("SELECT DISTINCT tid FROM q4m_rows WHERE tid NOT IN (SELECT id FROM q4m_state)")
	if err == nil {
		for rows.Next() {
			var id uint64
			if rows.Scan(&id) == nil {
				orphans = append(orphans, id)
			}
		}
		rows.Close()
	}
	s.purge(orphans...)
	s.insCh = make(chan *insReq, maxBatch)
	s.wg.Add(3 + insertWorkers + roundWorkers)
	go s.every(s.opts.PollInterval, s.poll)
	for range insertWorkers {
		go s.insertLoop()
	}
	for range roundWorkers {
		go s.roundLoop()
	}
	go s.every(s.opts.WatchInterval, s.watch)
	go s.readLog()
	opened = true
	return s, nil
}

// openRC opens a pool whose connections are READ COMMITTED from their
// start (no gap locks: a take that finds no row must not block inserts),
// which saves a round trip per transaction over asking it per BeginTx.
// MySQL names the variable transaction_isolation, MariaDB before 11.1
// tx_isolation.
func openRC(cfg *mysql.Config) (*sql.DB, error) {
	var last error
	for _, v := range []string{"transaction_isolation", "tx_isolation"} {
		c := cfg.Clone()
		if c.Params == nil {
			c.Params = map[string]string{}
		}
		c.Params[v] = "'READ-COMMITTED'"
		pool, err := sql.Open("mysql", c.FormatDSN())
		if err != nil {
			return nil, err
		}
		if last = pool.Ping(); last == nil {
			return pool, nil
		}
		pool.Close()
	}
	return nil, last
}

func quoteName(n string) string { return "`" + strings.ReplaceAll(n, "`", "``") + "`" }

// Close closes the store: waits end with queue.ErrClosed, the rows this
// process owns are released and its registration removed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return queue.ErrClosed
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.unregisterNode()
	s.mpool.Close()
	return s.pool.Close()
}

// migrate brings a store created by an earlier q4mproxy to this layout:
// q4m_rows gains its owner column (ownership was a row lock held by an open
// transaction; no row of such a store is owned once its processes are
// stopped, so 0 is right for every row).
func migrate(pool *sql.DB) error {
	var n int
	err := pool.QueryRow("SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'q4m_rows' AND COLUMN_NAME = 'owner'").Scan(&n)
	if err != nil {
		return fmt.Errorf("queue store: %w", err)
	}
	if n == 0 {
		if _, err := pool.Exec("ALTER TABLE q4m_rows ADD COLUMN owner BIGINT UNSIGNED NOT NULL DEFAULT 0"); err != nil {
			return fmt.Errorf("queue store: adding q4m_rows.owner: %w", err)
		}
	}
	return nil
}

func (s *Store) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// upErr wraps an upstream failure.
func upErr(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, queue.ErrClosed) || errors.Is(err, queue.ErrNoSuchTable) || errors.Is(err, queue.ErrTableChanged) || errors.Is(err, queue.ErrFenced) {
		return err
	}
	return fmt.Errorf("%w: upstream: %w", queue.ErrStorage, err)
}

func isDup(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}

// begin starts a READ COMMITTED transaction bound to the store's life.
func (s *Store) begin() (*sql.Tx, error) {
	if s.isClosed() {
		return nil, queue.ErrClosed
	}
	tx, err := s.pool.BeginTx(s.ctx, nil) // READ COMMITTED: the connections' own (openRC)
	if err != nil {
		if s.isClosed() {
			return nil, queue.ErrClosed
		}
		return nil, upErr(err)
	}
	return tx, nil
}

// commit commits tx, counting it.
func (s *Store) commit(tx *sql.Tx) error {
	if err := tx.Commit(); err != nil {
		return upErr(err)
	}
	s.counters.commits.Add(1)
	return nil
}

// Catalog.

// loadCatalog reads the databases and tables, keeping the tinfo (and so the
// metadata slice) of every incarnation whose definition did not change.
func (s *Store) loadCatalog() error {
	s.loadMu.Lock()
	defer s.loadMu.Unlock()
	var catSeq uint64
	if err := s.pool.QueryRowContext(s.ctx, "SELECT seq FROM q4m_state WHERE id = 0").Scan(&catSeq); err != nil {
		return upErr(err)
	}
	dbs := map[string]bool{}
	rows, err := s.pool.QueryContext(s.ctx, "SELECT name FROM q4m_dbs")
	if err != nil {
		return upErr(err)
	}
	for rows.Next() {
		var n []byte
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return upErr(err)
		}
		dbs[string(n)] = true
	}
	rows.Close()
	rows, err = s.pool.QueryContext(s.ctx, "SELECT t.db, t.name, t.id, t.meta, s.version FROM q4m_tables t JOIN q4m_state s ON s.id = t.id")
	if err != nil {
		return upErr(err)
	}
	var list []*tinfo
	for rows.Next() {
		t := &tinfo{}
		var db, name []byte
		if err := rows.Scan(&db, &name, &t.id, &t.meta, &t.version); err != nil {
			rows.Close()
			return upErr(err)
		}
		t.db, t.name = string(db), string(name)
		list = append(list, t)
	}
	rows.Close()
	reserved, watch, err := s.readShared()
	if err != nil {
		return err
	}
	s.setShared(reserved, watch)
	s.mu.Lock()
	defer s.mu.Unlock()
	tables := make(map[string]*tinfo, len(list))
	for _, t := range list {
		k := nameKey(t.db, t.name)
		if old := s.tables[k]; old != nil && old.id == t.id && old.version == t.version {
			t = old
		} else {
			if t.meta == nil {
				t.meta = []byte{}
			}
			t.ref = &queue.TableRef{Database: t.db, Name: t.name, ID: t.id, Impl: t}
		}
		tables[k] = t
	}
	s.dbs, s.tables, s.catSeq = dbs, tables, catSeq
	s.catVer.Store(catSeq)
	return nil
}

// ddl runs f in a transaction that first bumps the catalog version (which
// also serialises DDL across processes), then reloads the catalog and wakes
// every waiter (tables may have changed under them).
func (s *Store) ddl(f func(tx *sql.Tx) error) error {
	var err error
	for try := 0; ; try++ {
		if err = s.ddlOnce(f); err == nil || !retryable(err) || try == 4 {
			break
		}
	}
	if err != nil {
		return err
	}
	err = s.loadCatalog()
	s.mu.Lock()
	s.resetAllCursorsLocked()
	s.signalAllLocked()
	s.mu.Unlock()
	return err
}

func (s *Store) ddlOnce(f func(tx *sql.Tx) error) error {
	tx, err := s.begin()
	if err != nil {
		return err
	}
	if _, err := tx.Exec("UPDATE q4m_state SET seq = seq + 1 WHERE id = 0"); err != nil {
		tx.Rollback()
		return upErr(err)
	}
	if err := f(tx); err != nil {
		tx.Rollback()
		return err
	}
	return s.commit(tx)
}

// retryable reports whether err is a transaction the upstream rolled back
// to break a deadlock (or a lock wait that timed out): running it again is
// safe.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

// CatalogVersion implements queue.Store: the catalog's version as last
// loaded.
func (s *Store) CatalogVersion() uint64 { return s.catVer.Load() }

// Databases implements queue.Store.
func (s *Store) Databases() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.dbs))
	for n := range s.dbs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// HasDatabase implements queue.Store.
func (s *Store) HasDatabase(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dbs[name]
}

// Tables implements queue.Store.
func (s *Store) Tables(dbname string) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.dbs[dbname] {
		return nil, queue.ErrNoSuchDatabase
	}
	var out []string
	for _, t := range s.tables {
		if t.db == dbname {
			out = append(out, t.name)
		}
	}
	sort.Strings(out)
	return out, nil
}

func handle(t *tinfo) queue.Table { return queue.NewTable(t.ref, t.meta, t.version) }

// Table implements queue.Store.
func (s *Store) Table(dbname, name string) (queue.Table, error) {
	t, err := s.lookup(dbname, name)
	if err != nil {
		return queue.Table{}, err
	}
	return handle(t), nil
}

func (s *Store) lookup(dbname, name string) (*tinfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, queue.ErrClosed
	}
	t := s.tables[nameKey(dbname, name)]
	if t == nil {
		return nil, queue.ErrNoSuchTable
	}
	return t, nil
}

// CreateDatabase implements queue.Store.
func (s *Store) CreateDatabase(name string) error {
	return s.ddl(func(tx *sql.Tx) error {
		if _, err := tx.Exec("INSERT INTO q4m_dbs VALUES (?)", name); err != nil {
			if isDup(err) {
				return queue.ErrDatabaseExists
			}
			return upErr(err)
		}
		return nil
	})
}

// DropDatabase implements queue.Store.
func (s *Store) DropDatabase(name string) (int, error) {
	var ids []uint64
	err := s.ddl(func(tx *sql.Tx) error {
		res, err := tx.Exec("DELETE FROM q4m_dbs WHERE name = ?", name)
		if err != nil {
			return upErr(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return queue.ErrNoSuchDatabase
		}
		rows, err := tx.Query("SELECT id FROM q4m_tables WHERE db = ? FOR UPDATE", name)
		if err != nil {
			return upErr(err)
		}
		for rows.Next() {
			var id uint64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return upErr(err)
			}
			ids = append(ids, id)
		}
		rows.Close()
		for _, id := range ids {
			if err := retire(tx, id); err != nil {
				return err
			}
		}
		_, err = tx.Exec("DELETE FROM q4m_tables WHERE db = ?", name)
		return upErr(err)
	})
	if err != nil {
		return 0, err
	}
	s.forget(name, "", ids)
	return len(ids), nil
}

// retire deletes an incarnation's state and marks; its rows are purged
// after the commit (rows owned now are locked: the purge comes back later).
func retire(tx *sql.Tx, id uint64) error {
	if _, err := tx.Exec("DELETE FROM q4m_state WHERE id = ?", id); err != nil {
		return upErr(err)
	}
	if _, err := tx.Exec("DELETE FROM q4m_marks WHERE tid = ?", id); err != nil {
		return upErr(err)
	}
	return retireLogTx(tx, id)
}

// forget drops the local counters of dropped tables and purges their rows.
func (s *Store) forget(dbname, name string, ids []uint64) {
	s.mu.Lock()
	for k := range s.names {
		d, n, _ := strings.Cut(k, "\x00")
		if d == dbname && (name == "" || n == name) {
			delete(s.names, k)
		}
	}
	for _, id := range ids {
		delete(s.tstats, id)
	}
	s.mu.Unlock()
	s.purge(ids...)
}

// newID allocates an incarnation id.
func newID(tx *sql.Tx) (uint64, error) {
	res, err := tx.Exec("UPDATE q4m_state SET last_rowid = LAST_INSERT_ID(last_rowid + 1) WHERE id = 0")
	if err != nil {
		return 0, upErr(err)
	}
	id, err := res.LastInsertId()
	return uint64(id), upErr(err)
}

// CreateTable implements queue.Store.
func (s *Store) CreateTable(dbname, name string, meta []byte) error {
	return s.ddl(func(tx *sql.Tx) error {
		var one int
		if err := tx.QueryRow("SELECT 1 FROM q4m_dbs WHERE name = ? FOR UPDATE", dbname).Scan(&one); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return queue.ErrNoSuchDatabase
			}
			return upErr(err)
		}
		id, err := newID(tx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec("INSERT INTO q4m_tables VALUES (?, ?, ?, ?)", dbname, name, id, nonNil(meta)); err != nil {
			if isDup(err) {
				return queue.ErrTableExists
			}
			return upErr(err)
		}
		_, err = tx.Exec("INSERT INTO q4m_state VALUES (?, 0, 0, 0)", id)
		return upErr(err)
	})
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// tableID locks the catalog entry of a table and returns its incarnation.
func tableID(tx *sql.Tx, dbname, name string) (uint64, []byte, error) {
	var id uint64
	var meta []byte
	err := tx.QueryRow("SELECT id, meta FROM q4m_tables WHERE db = ? AND name = ? FOR UPDATE", dbname, name).Scan(&id, &meta)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil, queue.ErrNoSuchTable
	}
	return id, meta, upErr(err)
}

// DropTable implements queue.Store.
func (s *Store) DropTable(dbname, name string) error {
	var id uint64
	err := s.ddl(func(tx *sql.Tx) error {
		var err error
		if id, _, err = tableID(tx, dbname, name); err != nil {
			return err
		}
		if err := retire(tx, id); err != nil {
			return err
		}
		_, err = tx.Exec("DELETE FROM q4m_tables WHERE db = ? AND name = ?", dbname, name)
		return upErr(err)
	})
	if err == nil {
		s.forget(dbname, name, []uint64{id})
	}
	return err
}

// TruncateTable implements queue.Store.
func (s *Store) TruncateTable(dbname, name string) error {
	return s.ReplaceTable(dbname, name, nil)
}

// ReplaceTable implements queue.Store.
func (s *Store) ReplaceTable(dbname, name string, meta []byte) error {
	var old uint64
	err := s.ddl(func(tx *sql.Tx) error {
		var cur []byte
		var err error
		if old, cur, err = tableID(tx, dbname, name); err != nil {
			return err
		}
		if meta == nil {
			meta = cur
		}
		if err := retire(tx, old); err != nil {
			return err
		}
		id, err := newID(tx)
		if err != nil {
			return err
		}
		if _, err := tx.Exec("UPDATE q4m_tables SET id = ?, meta = ? WHERE db = ? AND name = ?", id, nonNil(meta), dbname, name); err != nil {
			return upErr(err)
		}
		_, err = tx.Exec("INSERT INTO q4m_state VALUES (?, 0, 0, 0)", id)
		return upErr(err)
	})
	if err == nil {
		s.mu.Lock()
		delete(s.tstats, old)
		s.mu.Unlock()
		s.purge(old)
	}
	return err
}

// AlterTable implements queue.Store. Owned rows are rewritten under their
// owners, as Q4M does: ownership is the rows' owner column, which the
// rewrite keeps.
func (s *Store) AlterTable(dbname, name string, meta []byte, rewrite func(rowid uint64, payload []byte) ([]byte, error)) error {
	var id uint64
	var total uint64
	err := s.ddl(func(tx *sql.Tx) error {
		var err error
		total = 0
		if id, _, err = tableID(tx, dbname, name); err != nil {
			return err
		}
		// The rows first (a round that holds some of them locked goes on
		// to raise the table's change counter), then the version: bumping
		// it waits for inserts in flight, and makes later ones through
		// older handles fail; the rows are read again after it.
		if _, err := tx.Exec("SELECT rowid FROM q4m_rows WHERE tid = ? FOR UPDATE", id); err != nil {
			return upErr(err)
		}
		if _, err := tx.Exec("UPDATE q4m_state SET version = version + 1 WHERE id = ?", id); err != nil {
			return upErr(err)
		}
		rows, err := tx.Query("SELECT rowid, payload FROM q4m_rows WHERE tid = ? ORDER BY rowid FOR UPDATE", id)
		if err != nil {
			return upErr(err)
		}
		type kv struct {
			rowid   uint64
			payload []byte
		}
		var all []kv
		for rows.Next() {
			var r kv
			if err := rows.Scan(&r.rowid, &r.payload); err != nil {
				rows.Close()
				return upErr(err)
			}
			all = append(all, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return upErr(err)
		}
		for _, r := range all {
			np, err := rewrite(r.rowid, r.payload)
			if err != nil {
				return err
			}
			total += uint64(len(np))
			if _, err := tx.Exec("UPDATE q4m_rows SET payload = ? WHERE tid = ? AND rowid = ?", nonNil(np), id, r.rowid); err != nil {
				return upErr(err)
			}
		}
		_, err = tx.Exec("UPDATE q4m_tables SET meta = ? WHERE db = ? AND name = ?", nonNil(meta), dbname, name)
		return upErr(err)
	})
	if err == nil {
		s.mu.Lock()
		c := s.tstatsLocked(id)
		c.bytesTotal, c.bytesRemoved = total, 0
		s.mu.Unlock()
	}
	return err
}

// Compact implements queue.Store: InnoDB purges deleted rows by itself;
// the removed-bytes counter is reset.
func (s *Store) Compact(ctx context.Context, h queue.Table) error {
	if s.isClosed() {
		return queue.ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.tstatsLocked(h.ID())
	c.bytesTotal -= min(c.bytesRemoved, c.bytesTotal)
	c.bytesRemoved = 0
	return nil
}

// purge deletes the rows of dropped incarnations in the background,
// coming back for rows still owned (locked) until they are gone.
func (s *Store) purge(ids ...uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if s.purging[id] || s.closed {
			continue
		}
		s.purging[id] = true
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.purging, id)
				s.mu.Unlock()
			}()
			for {
				done, err := s.purgeSome(id)
				if err == nil && done {
					return
				}
				select {
				case <-s.ctx.Done():
					return
				case <-time.After(s.opts.RecheckInterval): // rows still owned
				}
			}
		}()
	}
}

// purgeSome deletes what it can of incarnation id's rows; done when none
// is left.
func (s *Store) purgeSome(id uint64) (done bool, err error) {
	for {
		tx, err := s.begin()
		if err != nil {
			return false, err
		}
		var ids []any
		rows, err := tx.Query("SELECT rowid FROM q4m_rows WHERE tid = ? ORDER BY rowid LIMIT 500 FOR UPDATE SKIP LOCKED", id)
		if err != nil {
			tx.Rollback()
			return false, upErr(err)
		}
		for rows.Next() {
			var r uint64
			if rows.Scan(&r) == nil {
				ids = append(ids, r)
			}
		}
		rows.Close()
		if len(ids) > 0 {
			q := "DELETE FROM q4m_rows WHERE tid = ? AND rowid IN (?" + strings.Repeat(",?", len(ids)-1) + ")"
			if _, err := tx.Exec(q, append([]any{id}, ids...)...); err != nil {
				tx.Rollback()
				return false, upErr(err)
			}
		}
		if err := s.commit(tx); err != nil {
			return false, err
		}
		if len(ids) < 500 {
			var n int
			if err := s.pool.QueryRowContext(s.ctx, "SELECT COUNT(*) FROM q4m_rows WHERE tid = ?", id).Scan(&n); err != nil {
				return false, upErr(err)
			}
			return n == 0, nil
		}
	}
}

// Counters.

func (s *Store) namesLocked(t *tinfo) *nameCounters {
	k := nameKey(t.db, t.name)
	n := s.names[k]
	if n == nil {
		n = &nameCounters{}
		s.names[k] = n
	}
	return n
}

func (s *Store) tstatsLocked(id uint64) *tableCounters {
	c := s.tstats[id]
	if c == nil {
		c = &tableCounters{}
		s.tstats[id] = c
	}
	return c
}

// liveLocked reports whether t is still the current incarnation of its name.
func (s *Store) liveLocked(t *tinfo) bool {
	cur := s.tables[nameKey(t.db, t.name)]
	return cur != nil && cur.id == t.id
}

// Count implements queue.Store: the table's rows, owned ones included (0
// if the upstream cannot be read).
func (s *Store) Count(h queue.Table) int {
	var n int
	if err := s.pool.QueryRowContext(s.ctx, "SELECT COUNT(*) FROM q4m_rows WHERE tid = ?", h.ID()).Scan(&n); err != nil {
		return 0
	}
	return n
}

// TableStats implements queue.Store. The counters are this process's own
// (as Q4M's are per mysqld).
func (s *Store) TableStats(h queue.Table) queue.TableStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := queue.TableStats{}
	if c := s.tstats[h.ID()]; c != nil {
		st.RowsWritten, st.RowsRemoved = c.rowsWritten, c.rowsRemoved
		st.BytesTotal, st.BytesRemoved = c.bytesTotal, c.bytesRemoved
	}
	if n := s.names[nameKey(h.Database(), h.Name())]; n != nil {
		st.WaitImmediate, st.WaitDelayed, st.WaitTimeout = n.waitImmediate, n.waitDelayed, n.waitTimeout
		st.RestoredByAbort, st.RestoredByClose = n.restoredByAbort, n.restoredByClose
	}
	return st
}

// Stats implements queue.Store: this process's counters, with the
// tables and their rows of the whole store (stats.go).
func (s *Store) Stats() queue.Stats {
	c := s.counters.commits.Load()
	st := queue.Stats{
		Commits: c, Syncs: c, Ops: c,
		Appends: s.counters.appends.Load(), Removes: s.counters.removes.Load(),
		RowsWritten: s.counters.rowsWritten.Load(), RowsRemoved: s.counters.rowsRemoved.Load(),
	}
	s.addLive(&st)
	return st
}

// Inserts.

// Insert implements queue.Store.
func (s *Store) Insert(h queue.Table, rows [][]byte) (uint64, error) {
	first, _, err := s.InsertFrom(h, rows, nil)
	return first, err
}

// InsertFrom implements queue.Store.
func (s *Store) InsertFrom(h queue.Table, rows [][]byte, src *queue.Source) (uint64, bool, error) {
	if src != nil && (src.Sender < 0 || src.Sender >= queue.MaxSenders) {
		return 0, false, errors.New("queue: sender out of range")
	}
	if len(rows) == 0 {
		return 0, false, nil
	}
	r := &insReq{h: h, rows: rows, src: src, done: make(chan struct{})}
	if src == nil || src.RowID == 0 {
		// Written by the next round, in its transaction (round.go).
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return 0, false, queue.ErrClosed
		}
		s.insQueued = append(s.insQueued, r)
		s.kickLocked()
		s.mu.Unlock()
	} else {
		select {
		case s.insCh <- r:
		case <-s.ctx.Done():
			return 0, false, queue.ErrClosed
		}
	}
	select {
	case <-r.done:
	case <-s.ctx.Done():
		return 0, false, queue.ErrClosed
	}
	if r.err != nil || r.skipped {
		return 0, r.skipped, r.err
	}
	return r.first, false, nil
}

// insertTx writes rows into h in tx: the table's state row is locked
// (serialising the table's inserts) and its last rowid raised.
func insertTx(tx *sql.Tx, h queue.Table, rows [][]byte, src *queue.Source) (uint64, bool, error) {
	id := h.ID()
	n := uint64(len(rows))
	res, err := tx.Exec("UPDATE q4m_state SET last_rowid = LAST_INSERT_ID(last_rowid + ?), seq = seq + 1 WHERE id = ? AND version = ?", n, id, h.Version())
	if err != nil {
		return 0, false, upErr(err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		var v uint64
		err := tx.QueryRow("SELECT version FROM q4m_state WHERE id = ?", id).Scan(&v)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, false, queue.ErrNoSuchTable
		}
		if err != nil {
			return 0, false, upErr(err)
		}
		return 0, false, queue.ErrTableChanged
	}
	last, err := res.LastInsertId()
	if err != nil {
		return 0, false, upErr(err)
	}
	if src != nil && src.RowID != 0 {
		var mark uint64
		err := tx.QueryRow("SELECT mark FROM q4m_marks WHERE tid = ? AND sender = ?", id, src.Sender).Scan(&mark)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return 0, false, upErr(err)
		}
		if !src.Force && src.RowID <= mark {
			return 0, true, nil
		}
		if _, err := tx.Exec("INSERT INTO q4m_marks VALUES (?, ?, ?) ON DUPLICATE KEY UPDATE mark = VALUES(mark)", id, src.Sender, src.RowID); err != nil {
			return 0, false, upErr(err)
		}
	}
	first := uint64(last) - n + 1
	const chunk = 256
	for i := 0; i < len(rows); i += chunk {
		part := rows[i:min(i+chunk, len(rows))]
		q := "INSERT INTO q4m_rows (tid, rowid, payload) VALUES (?, ?, ?)" + strings.Repeat(", (?, ?, ?)", len(part)-1)
		args := make([]any, 0, 3*len(part))
		for j, r := range part {
			args = append(args, id, first+uint64(i+j), nonNil(r))
		}
		if _, err := tx.Exec(q, args...); err != nil {
			return 0, false, upErr(err)
		}
	}
	return first, false, nil
}

// inserted counts committed rows and wakes this process's waiters.
func (s *Store) inserted(h queue.Table, rows [][]byte) {
	var total uint64
	for _, r := range rows {
		total += uint64(len(r))
	}
	s.counters.rowsWritten.Add(uint64(len(rows)))
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.tstatsLocked(h.ID())
	c.rowsWritten += uint64(len(rows))
	c.bytesTotal += total
	s.signalLocked(h.ID())
}

// Waking the round loop.

// signalLocked notes that incarnation id may have free rows for the
// blocked waiters: the next round looks at it. s.mu must be held.
func (s *Store) signalLocked(id uint64) {
	s.dirty[id] = true
	s.kickLocked()
}

// signalAllLocked makes the next round look at every table of every
// blocked waiter. s.mu must be held.
func (s *Store) signalAllLocked() {
	s.allDirty = true
	s.kickLocked()
}

// kickLocked wakes the round loop. s.mu must be held.
func (s *Store) kickLocked() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// bumped notes that a commit of this process raised the change counter of
// incarnation id to seq. Its waiters were woken by the commit itself; the
// poller wakes them only for the changes of others. Without this, a
// poll after one's own insert woke a waiter for nothing, and that waiter's
// extra look could take a row ahead of an earlier waiter woken for it.
func (s *Store) bumped(id, seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq > s.seqs[id][0] {
		s.ownSeqs[id] = append(s.ownSeqs[id], seq)
	}
}

// othersChangedLocked reports whether the change counter of id moved from
// old to seq through a commit this process did not note as its own, and
// forgets the own values seen.
func (s *Store) othersChangedLocked(id, old, seq uint64) bool {
	own := s.ownSeqs[id]
	n := 0
	for _, v := range own {
		if v > old && v <= seq {
			n++
		}
	}
	own = slices.DeleteFunc(own, func(v uint64) bool { return v <= seq })
	if len(own) == 0 {
		delete(s.ownSeqs, id)
	} else {
		s.ownSeqs[id] = own
	}
	return seq < old || seq-old > uint64(n)
}

// every calls f every d until the store closes: one of the store's
// goroutines, counted in s.wg.
func (s *Store) every(d time.Duration, f func()) {
	defer s.wg.Done()
	tick := time.NewTicker(d)
	defer tick.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-tick.C:
		}
		f()
	}
}

// poll, every PollInterval, reads the change counters and wakes the
// waiters of the tables that others changed; a changed catalog is
// reloaded.
func (s *Store) poll() {
	rows, err := s.pool.QueryContext(s.ctx, "SELECT id, seq, last_rowid FROM q4m_state")
	if err != nil {
		return
	}
	seqs := map[uint64][2]uint64{}
	for rows.Next() {
		var id, seq, last uint64
		if rows.Scan(&id, &seq, &last) == nil {
			seqs[id] = [2]uint64{seq, last}
		}
	}
	rows.Close()
	s.mu.Lock()
	catChanged := seqs[0][0] != s.catSeq
	for id, v := range seqs {
		old := s.seqs[id]
		if id != 0 && old[0] != v[0] && s.othersChangedLocked(id, old[0], v[0]) {
			// A release raises seq alone; inserts raise both. Rows
			// released elsewhere (or mixed with inserts) are caught
			// by resetting on any change.
			s.resetCursorsLocked(id)
			s.signalLocked(id)
		}
	}
	s.seqs = seqs
	s.mu.Unlock()
	if catChanged {
		if err := s.loadCatalog(); err == nil {
			s.mu.Lock()
			s.resetAllCursorsLocked()
			s.signalAllLocked()
			s.mu.Unlock()
		}
	}
}

// What the valve needs.

// RowExists implements queue.Store.
func (s *Store) RowExists(h queue.Table, rowid uint64) (bool, error) {
	if s.isClosed() {
		return false, queue.ErrClosed
	}
	var one int
	err := s.pool.QueryRowContext(s.ctx, "SELECT 1 FROM q4m_rows WHERE tid = ? AND rowid = ?", h.ID(), rowid).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, upErr(err)
}

// AuxScan implements queue.Store.
func (s *Store) AuxScan(ns string, fn func(key, value []byte) bool) error {
	if s.isClosed() {
		return queue.ErrClosed
	}
	rows, err := s.pool.QueryContext(s.ctx, "SELECT k, v FROM q4m_aux WHERE ns = ? ORDER BY k", ns)
	if err != nil {
		return upErr(err)
	}
	defer rows.Close()
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			return upErr(err)
		}
		if !fn(k, v) {
			break
		}
	}
	return upErr(rows.Err())
}
