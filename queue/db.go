package queue

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/google/btree"

	"github.com/q4mproxy/q4mproxy/internal/progress"
)

// Options configures a DB. The zero value is usable.
type Options struct {
	// FS is the filesystem Pebble uses; nil means the OS filesystem.
	// Tests pass vfs.NewMem().
	FS vfs.FS
	// Logger receives lifecycle and storage messages; nil means slog.Default().
	Logger *slog.Logger
	// NoSync turns off syncing of commits. Acknowledged writes may then be
	// lost on a power failure or an OS crash. Unsafe; for benchmarks.
	NoSync bool
	// InitialDatabases are created when the store is created (a fresh data
	// directory), and never again.
	InitialDatabases []string
	// CacheSize is the size in bytes of the block cache of the store
	// (DefaultCacheSize if 0). Consumers read payloads from it; a deep
	// backlog keeps the index blocks of many tables there.
	CacheSize int64
	// MaxBatchOps bounds how many operations one group commit gathers.
	// Zero means 1024.
	MaxBatchOps int
	// DiskReserve is the size in bytes of the reserve file kept next to the
	// store, given up when the disk fills so that the write in flight
	// completes (see diskfull.go). Zero means DefaultDiskReserve; it is
	// capped at an eighth of the filesystem. Negative means no reserve.
	DiskReserve int64
	// Observer, if set, is told about the engine's work as it happens
	// (for metrics).
	Observer *Observer
	// ProgressInterval is how often Open logs the progress of loading a
	// backlog (rows so far, rows per second, tables done) and Compact of a
	// compaction. Zero means every 2 s; negative, never.
	ProgressInterval time.Duration
}

// DB is a set of databases holding queue tables, stored in Pebble.
// It is safe for concurrent use.
//
// Lock order, outermost first: checkpointMu, ddlMu, readMu, mu. submitMu
// is held only around a send to writeCh, and no caller of submit holds mu
// or readMu: the commit loop takes mu to apply what it committed, so a
// submitter holding mu would wait for a loop that waits for it. Each
// field below names the lock that guards it.
type DB struct {
	pdb       *pebble.DB
	guard     *diskGuard // the store's filesystem: a full disk refuses writes
	log       *slog.Logger
	writeOpts *pebble.WriteOptions
	maxOps    int
	obs       Observer      // funcs may be nil
	opened    time.Time     // ticks count from here
	progress  time.Duration // Options.ProgressInterval

	// ddlMu serialises DDL (check, then commit) so that checks made before
	// submitting stay true until the commit is applied.
	ddlMu       sync.Mutex
	nextTableID uint64 // guarded by ddlMu

	// submitMu guards writeCh against a send racing with Close.
	submitMu sync.RWMutex
	closing  bool // guarded by submitMu
	writeCh  chan *op
	loopDone chan struct{}

	// readMu is held (shared) by readers of the store, and exclusively by
	// Close before it closes Pebble.
	readMu sync.RWMutex

	counters   dbCounters
	compacting atomic.Bool

	// checkpointMu makes checkpoints one at a time (see Checkpoint).
	checkpointMu sync.Mutex

	// failed is set once by the commit loop when a commit fails; read under mu.
	mu       sync.Mutex
	failed   error
	closed   bool                      // guarded by mu
	dbs      map[string]*database      // guarded by mu
	wait     map[*waiter]struct{}      // every registered waiter; guarded by mu
	names    map[string]*nameCounters  // per table name, survive TRUNCATE; guarded by mu
	reserved map[string]bool           // table names reserved for internal owners; guarded by mu
	hooks    map[string][]*consumeHook // OnConsume hooks by table name; guarded by mu
}

type database struct {
	name   string
	tables map[string]*table
}

// table is one incarnation of a queue table. DROP and TRUNCATE retire it
// (dead), and TRUNCATE installs a fresh incarnation under the same name.
type table struct {
	id   uint64
	db   string
	name string

	// Guarded by DB.mu.
	reserved bool   // only internal owners take its rows
	meta     []byte // replaced (never modified) by AlterTable
	version  uint64 // incremented by AlterTable
	dead     bool
	free     *btree.BTreeG[item] // rows that may be handed out, by rowid
	held     int                 // live rows that are not free: owned or being deleted
	waiters  []*waiter           // in arrival order
	stats    tableCounters
	cursors  map[string]*cursor // per filter key, see scanFilter
	// pubSeq counts publications (inserts and releases), releaseSeq
	// releases; waits compare them to notice rows that arrived meanwhile.
	pubSeq, releaseSeq uint64

	// Owned by the commit loop.
	lastRowID uint64
	marks     [MaxSenders]uint64 // relay high-water marks, by sender
	wversion  uint64
	wdead     bool
}

// item is a free row in a table's index.
type item struct {
	rowid uint64
	size  uint32 // payload bytes, for queue_stats
	at    tick   // when the row was published (the age of the oldest row)
}

func itemLess(a, b item) bool { return a.rowid < b.rowid }

func newTable(id uint64, db, name string, meta []byte) *table {
	return &table{
		id: id, db: db, name: name, meta: meta,
		free: btree.NewG[item](32, itemLess),
	}
}

func clampSize(n int) uint32 {
	if n > 1<<32-1 {
		return 1<<32 - 1
	}
	return uint32(n)
}

// DefaultCacheSize is the block cache's size unless Options say otherwise:
// with 8 MB (Pebble's default), consuming from behind a backlog of a
// million rows was 6 % slower.
const DefaultCacheSize = 64 << 20

// Open opens (creating if needed) the store in dir and rebuilds the in-memory
// index of every table from it: every row not consumed is ready again, in
// rowid order, whatever state the previous process left it in.
func Open(dir string, opts *Options) (*DB, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxBatchOps <= 0 {
		o.MaxBatchOps = 1024
	}
	log := o.Logger.With("component", "queue")
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultCacheSize
	}
	cache := pebble.NewCache(o.CacheSize)
	defer cache.Unref() // the DB holds its own reference
	fs := o.FS
	if fs == nil {
		fs = vfs.Default
	}
	reserve := o.DiskReserve
	if reserve == 0 {
		reserve = DefaultDiskReserve
	}
	lim := newLogLimiter(logEvery)
	guard := newDiskGuard(fs, dir, max(reserve, 0), log, lim)
	popts := &pebble.Options{
		FS:     guard,
		Logger: pebbleLogger{log, lim},
		Cache:  cache,
	}
	start := time.Now()
	pdb, err := pebble.Open(dir, popts)
	if err != nil {
		return nil, fmt.Errorf("queue: open %s: %w", dir, err)
	}
	db := &DB{
		pdb:       pdb,
		guard:     guard,
		log:       log,
		writeOpts: pebble.Sync,
		maxOps:    o.MaxBatchOps,
		progress:  o.ProgressInterval,
		writeCh:   make(chan *op, 256),
		loopDone:  make(chan struct{}),
		dbs:       make(map[string]*database),
		wait:      make(map[*waiter]struct{}),
		names:     make(map[string]*nameCounters),
		reserved:  make(map[string]bool),
		hooks:     make(map[string][]*consumeHook),
	}
	if o.NoSync {
		db.writeOpts = pebble.NoSync
	}
	if o.Observer != nil {
		db.obs = *o.Observer
	}
	db.opened = time.Now()
	if err := db.load(o.InitialDatabases); err != nil {
		_ = pdb.Close()
		return nil, err
	}
	guard.start()
	go db.commitLoop()
	rows := 0
	ntables := 0
	for _, d := range db.dbs {
		for _, t := range d.tables {
			ntables++
			rows += t.free.Len()
		}
	}
	log.Info("store opened", "dir", dir, "databases", len(db.dbs), "tables", ntables,
		"rows", rows, "sync", !o.NoSync, "duration", time.Since(start).Round(time.Millisecond))
	return db, nil
}

// load reads the catalog and the row keys of every table.
func (db *DB) load(initial []string) error {
	_, closer, err := db.pdb.Get(formatKey)
	switch {
	case errors.Is(err, pebble.ErrNotFound):
		b := db.pdb.NewBatch()
		_ = b.Set(formatKey, u64(formatVersion), nil)
		for _, name := range initial {
			_ = b.Set(databaseKey(name), nil, nil)
		}
		if err := b.Commit(pebble.Sync); err != nil {
			return fmt.Errorf("queue: initialise store: %w", err)
		}
		_ = b.Close()
	case err != nil:
		return fmt.Errorf("queue: read format: %w", err)
	default:
		_ = closer.Close()
	}

	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{kindDatabase}, UpperBound: []byte{kindDatabase + 1}})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		name := string(it.Key()[1:])
		db.dbs[name] = &database{name: name, tables: make(map[string]*table)}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("queue: load databases: %w", err)
	}

	if v, closer, err := db.pdb.Get(tableIDKey); err == nil {
		db.nextTableID = binary.BigEndian.Uint64(v)
		_ = closer.Close()
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("queue: load table id: %w", err)
	}

	it, err = db.pdb.NewIter(&pebble.IterOptions{LowerBound: []byte{kindTable}, UpperBound: []byte{kindTable + 1}})
	if err != nil {
		return err
	}
	var tables []*table
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()[1:]
		i := bytes.IndexByte(k, 0)
		v, err := it.ValueAndErr()
		if err != nil || i < 0 || len(v) < 8 {
			_ = it.Close()
			return fmt.Errorf("queue: corrupt table record %q: %v", it.Key(), err)
		}
		t := newTable(binary.BigEndian.Uint64(v), string(k[:i]), string(k[i+1:]), bytes.Clone(v[8:]))
		d := db.dbs[t.db]
		if d == nil {
			continue
		}
		d.tables[t.name] = t
		tables = append(tables, t)
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("queue: load tables: %w", err)
	}
	done := 0
	meter := progress.New(db.log, progress.Config{
		Msg: "recovering the store", Unit: "rows", Interval: db.progress, Stride: 4096,
		Attrs: func() []any { return []any{"tables", fmt.Sprintf("%d/%d", done, len(tables))} },
	})
	for _, t := range tables {
		if err := db.loadTable(t, meter); err != nil {
			return err
		}
		done++
	}
	return nil
}

// loadTable reads t's state and row keys, counting the rows on meter.
func (db *DB) loadTable(t *table, meter *progress.Meter) error {
	v, closer, err := db.pdb.Get(stateKey(t.id))
	if err == nil {
		err = t.decodeState(v)
		_ = closer.Close()
		if err != nil {
			return fmt.Errorf("queue: state of %s.%s: %w", t.db, t.name, err)
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("queue: load state of %s.%s: %w", t.db, t.name, err)
	}
	lo := rowKey(t.id, 0)
	it, err := db.pdb.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: prefixEnd(lo[:9])})
	if err != nil {
		return err
	}
	for it.First(); it.Valid(); it.Next() {
		rowid := rowKeyRowID(it.Key())
		v, err := it.ValueAndErr()
		if err != nil {
			_ = it.Close()
			return fmt.Errorf("queue: load %s.%s: %w", t.db, t.name, err)
		}
		size := clampSize(len(v))
		meter.Add(1)
		t.free.ReplaceOrInsert(item{rowid: rowid, size: size}) // at 0: the open
		t.stats.bytesTotal += uint64(size)
		if rowid > t.lastRowID { // cannot happen: the state is written with the rows
			t.lastRowID = rowid
		}
	}
	return it.Close()
}

// Close wakes every waiter (they return ErrClosed), finishes pending
// commits and closes the store. Rows owned at that moment are not consumed:
// they are ready again when the store is next opened.
func (db *DB) Close() error {
	db.mu.Lock()
	if db.closed {
		db.mu.Unlock()
		return ErrClosed
	}
	db.closed = true
	for w := range db.wait {
		db.finishWaiterLocked(w, nil, 0)
		w.closed = true
	}
	db.mu.Unlock()

	db.submitMu.Lock()
	db.closing = true
	close(db.writeCh)
	db.submitMu.Unlock()
	db.guard.close() // a write waiting for space fails now
	<-db.loopDone
	db.readMu.Lock()
	defer db.readMu.Unlock()
	err := db.pdb.Close()
	db.guard.wait()
	if err != nil {
		return fmt.Errorf("queue: close: %w", err)
	}
	db.log.Info("store closed")
	return nil
}

func (db *DB) isClosed() bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.closed
}

// Databases returns the names of all databases, sorted.
func (db *DB) Databases() []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	names := make([]string, 0, len(db.dbs))
	for n := range db.dbs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// HasDatabase reports whether database name exists.
func (db *DB) HasDatabase(name string) bool {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.dbs[name] != nil
}

// Tables returns the names of the tables of database name, sorted.
func (db *DB) Tables(name string) ([]string, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	d := db.dbs[name]
	if d == nil {
		return nil, ErrNoSuchDatabase
	}
	names := make([]string, 0, len(d.tables))
	for n := range d.tables {
		names = append(names, n)
	}
	sort.Strings(names)
	return names, nil
}

// Table is a handle on the current incarnation of a table. It stays valid
// after the table is dropped or truncated, but then refers to nothing:
// inserts through it fail with ErrNoSuchTable and scans see no rows.
type Table struct {
	t       *table    // a *DB's table
	ref     *TableRef // another backend's (see NewTable)
	meta    []byte
	version uint64
}

// Name returns the table's name.
func (h Table) Name() string {
	if h.t != nil {
		return h.t.name
	}
	return h.ref.Name
}

// ID identifies the table's incarnation: a TRUNCATE or a DROP and CREATE
// gives the name a new one (rowids are only unique within one).
func (h Table) ID() uint64 {
	if h.t != nil {
		return h.t.id
	}
	return h.ref.ID
}

// Database returns the name of the table's database.
func (h Table) Database() string {
	if h.t != nil {
		return h.t.db
	}
	return h.ref.Database
}

// Meta returns the table's metadata as it was when the handle was taken.
// It must not be modified.
func (h Table) Meta() []byte { return h.meta }

func handle(t *table) Table { return Table{t: t, meta: t.meta, version: t.version} }

// Table returns a handle on table name of database dbname.
func (db *DB) Table(dbname, name string) (Table, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	t, err := db.lookupLocked(dbname, name)
	if err != nil {
		return Table{}, err
	}
	return handle(t), nil
}

// lookup is lookupLocked for a caller that does not hold db.mu.
func (db *DB) lookup(dbname, name string) (*table, error) {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.lookupLocked(dbname, name)
}

func (db *DB) lookupLocked(dbname, name string) (*table, error) {
	if db.closed {
		return nil, ErrClosed
	}
	d := db.dbs[dbname]
	if d == nil {
		return nil, ErrNoSuchTable
	}
	t := d.tables[name]
	if t == nil {
		return nil, ErrNoSuchTable
	}
	return t, nil
}

// Count returns the number of live rows of the table (not consumed),
// including rows owned by connections; Q4M's COUNT(*) without WHERE.
func (db *DB) Count(h Table) int {
	db.mu.Lock()
	defer db.mu.Unlock()
	if h.t.dead {
		return 0
	}
	return h.t.free.Len() + h.t.held
}
