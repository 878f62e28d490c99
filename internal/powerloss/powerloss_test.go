package powerloss

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/internal/crashtest"
	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/server"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// The power-loss test. kill -9 (integration/crash_test.go) leaves the
// kernel's page cache alone, so it cannot show that what was acknowledged
// had been synced. Here the server runs in process on Pebble's crashable
// in-memory filesystem (vfs.NewCrashableMem: Pebble v2's successor of
// v1's NewStrictMem, SetIgnoreSyncs and ResetToSyncedState), and a power
// cut keeps only what was synced (CrashClone), plus in some cycles a random
// part of what was not, as a disk may have written it anyway.
//
// A cycle: open the store and the server on the "disk" left by the last
// cut, check the store against everything the clients were told, replay
// the last relayed INSERTs (they must be dropped), then run producers,
// consumers (queue_wait, queue_end, queue_abort), a relay (queue_set_srcid,
// as q4m-forward does) and a compactor (queue_compact: flushes and
// compactions) over TCP with go-sql-driver/mysql, until the power is cut:
// at the k-th write operation of the filesystem after the load starts (a
// WAL write or sync, an sstable or MANIFEST write, a rename...: the cut
// comes before the operation runs), or right after the n-th answer a client
// received, k and n random. Cycles take turns: only synced data kept and a
// cut after an answer; part of the unsynced data kept and a cut at a write;
// only synced data and a write; part and an answer. In some cycles the
// power also goes during the recovery that opens the store (an extra cut,
// at one of its first write operations). At a cut, clients get no byte
// more, the listener and every connection are closed, and the disk is
// cloned as a power failure leaves it. The old server and store are then
// shut down and closed, but only on the old disk, which is thrown away:
// for the clone they were abandoned mid-flight.
//
// Checked at every reopen, against the clients' history: every row whose
// INSERT was acknowledged, or that was ever delivered (a row is visible only
// once synced), is there unless its consume was acknowledged; a row whose
// consume was acknowledged is not; a consume in flight at the cut went
// either way; an unacknowledged INSERT is there whole or not at all; no row
// appears twice or was never inserted; each row keeps its rowid, a rowid is
// never another row's, and rowids never go backwards; the store holds each
// producer's rows in its order; relayed rows are in the destination exactly
// once, and an INSERT replaying a relayed row acknowledged before the cut is
// dropped. Within a cycle: a row is delivered again only after an abort,
// never after an acknowledged consume, and each consumer gets each table's
// rows in rowid order except for rows released by an abort. At the end
// everything is drained, the store closed cleanly and reopened: empty.
//
// Environment variables:
//
//	Q4MPROXY_POWERLOSS_CYCLES=<n>   power cuts (default 8, 3 with -short);
//	                                the long mode is 200 or more
//	Q4MPROXY_POWERLOSS_SEED=<uint>  replays the random choices of a run (its
//	                                seed is printed); Q4MPROXY_TEST_SEED too.
//	                                The choices (cut points, unsynced share,
//	                                tables, sizes, consumer actions) are the
//	                                same; how far each client gets is timing.

const (
	plIDBase         = 1_000_000_000 // id = producer*plIDBase + seq
	plSrcProducer    = 90            // "producer" of the relay source's rows
	plReplayProducer = 99            // replayed relay INSERTs: never to be seen
	plSender         = 7             // relay sender slot
	plReplayK        = 3             // relayed INSERTs replayed after each cut
	plBacklog        = 48            // rows producers may be ahead of consumers
	plSrcFill        = 30            // rows in the relay source at a cycle's start
	plProducers      = 3
	plConsumers      = 3
	plRelayer        = -1  // worker number of the relayer
	plDrainer        = 100 // worker number of the final drain
	plMaxCutOps      = 500 // a load cut comes at write op 1..plMaxCutOps,
	plMaxCutAcks     = 400 // or after acknowledgement 1..plMaxCutAcks
	plCompactEvery   = 15  // a queue_compact per so many INSERTs
	plMaxOpenCutOps  = 40  // a recovery cut at write op 1..plMaxOpenCutOps of Open (it makes 14 to 41)
	plCutDeadline    = 60 * time.Second
)

var (
	plTables = []string{"t1", "t2", "t3"}
	plAll    = []string{"t1", "t2", "t3", "src"}
)

// plInsert is one INSERT statement sent by a client.
type plInsert struct {
	table    string
	ids      []int64
	cycle    int
	acked    bool  // the server acknowledged it
	relay    bool  // sent by the relayer after queue_set_srcid
	srcRowID int64 // the relayed row's rowid in src
}

// plRecv is one row handed to a consumer, the relayer or the drain.
type plRecv struct {
	cycle, worker int
	gseq          uint64 // order of deliveries across workers
	table         string
	rowid, id     int64
	hasID         bool // SELECT id answered before the cut
	requested     bool // the consuming queue_wait or queue_end was sent
	acked         bool // ... and answered: the consume is acknowledged
	abortReq      bool // queue_abort was sent (the row is released)
	aborted       bool // ... and answered
}

// ---------------------------------------------------------------------------
// The power cut.

// plListener records every accepted connection, so that a cut can close
// them all at once, with the listener.
type plListener struct {
	net.Listener
	dead  atomic.Bool // set at the cut: no byte is written to a client after it
	mu    sync.Mutex
	conns []net.Conn
}

// plConn is an accepted connection that writes nothing once the power is
// cut. Closing the connections one by one is not enough: the server's
// goroutine of a connection closed first releases its row, and a queue_wait
// of a connection not yet closed could hand it out.
type plConn struct {
	net.Conn
	dead *atomic.Bool
}

func (c *plConn) Write(b []byte) (int, error) {
	if c.dead.Load() {
		return 0, net.ErrClosed
	}
	return c.Conn.Write(b)
}

func (l *plListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.dead.Load() {
		_ = c.Close()
		return nil, net.ErrClosed
	}
	l.conns = append(l.conns, c)
	return &plConn{Conn: c, dead: &l.dead}, nil
}

// cut stops every write to clients, then closes the listener and every
// connection.
func (l *plListener) cut() {
	l.dead.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	_ = l.Listener.Close()
	for _, c := range l.conns {
		_ = c.Close()
	}
}

// plCutter cuts the power: at the k-th write operation of the store's
// filesystem once armed (from the errorfs injector, before the operation
// runs), or when told to.
type plCutter struct {
	mem *vfs.MemFS
	pct int        // share of unsynced data the clone keeps
	rng *rand.Rand // used by CrashClone once

	mu     sync.Mutex
	armed  bool
	left   int
	fired  bool
	writes int // write operations seen while armed
	ln     *plListener

	cutting atomic.Bool   // set first: client errors from now on are the cut's
	done    chan struct{} // closed once clone and point are set
	clone   *vfs.MemFS    // the disk after the power cut
	point   string        // the operation the power was cut before
}

func newCutter(mem *vfs.MemFS, pct int, seed uint64) *plCutter {
	return &plCutter{mem: mem, pct: pct, rng: rand.New(rand.NewPCG(seed, 1)), done: make(chan struct{})}
}

func (c *plCutter) inject(op errorfs.Op) error {
	if op.Kind.ReadOrWrite() != errorfs.OpIsWrite {
		return nil
	}
	c.mu.Lock()
	if !c.armed || c.fired {
		c.mu.Unlock()
		return nil
	}
	c.writes++
	if c.left--; c.left > 0 {
		c.mu.Unlock()
		return nil
	}
	c.fired = true
	ln := c.ln
	c.mu.Unlock()
	c.cutNow(ln, "before "+opName(op))
	return nil
}

func (c *plCutter) arm(k int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed, c.left, c.writes = true, k, 0
}

// disarm stops counting and reports whether the power was cut, and how
// many write operations it counted.
func (c *plCutter) disarm() (fired bool, writes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.armed = false
	return c.fired, c.writes
}

func (c *plCutter) setListener(l *plListener) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ln = l
}

// fire cuts the power now unless it was cut already.
func (c *plCutter) fire(point string) {
	c.mu.Lock()
	if c.fired {
		c.mu.Unlock()
		return
	}
	c.fired = true
	ln := c.ln
	c.mu.Unlock()
	c.cutNow(ln, point)
}

func (c *plCutter) cutNow(ln *plListener, point string) {
	c.cutting.Store(true)
	if ln != nil {
		ln.cut()
	}
	// Every answer a client got was sent before the connections closed,
	// so before this clone.
	c.clone = c.mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: c.pct, RNG: c.rng})
	c.point = point
	close(c.done)
}

// opName names a filesystem operation by kind and file: "WAL sync".
func opName(op errorfs.Op) string {
	base := path.Base(op.Path)
	var file string
	switch {
	case strings.HasSuffix(base, ".log"):
		file = "WAL"
	case strings.HasSuffix(base, ".sst"):
		file = "sstable"
	case strings.HasPrefix(base, "MANIFEST"):
		file = "MANIFEST"
	case strings.HasPrefix(base, "OPTIONS"):
		file = "OPTIONS"
	case strings.HasPrefix(base, "marker."):
		file = "marker"
	case base == "store":
		file = "directory"
	case strings.HasSuffix(base, ".dbtmp"):
		file = "temporary file"
	case base == "LOCK":
		file = "LOCK"
	case strings.HasPrefix(base, "q4mproxy-reserve"):
		file = "reserve probe"
	default:
		file = "other"
	}
	var kind string
	switch op.Kind {
	case errorfs.OpFileWrite, errorfs.OpFileWriteAt:
		kind = "write"
	case errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
		kind = "sync"
	case errorfs.OpCreate, errorfs.OpReuseForWrite:
		kind = "create"
	case errorfs.OpFileClose:
		kind = "close"
	case errorfs.OpRemove, errorfs.OpRemoveAll:
		kind = "remove"
	case errorfs.OpRename:
		kind = "rename"
	case errorfs.OpLink:
		kind = "link"
	case errorfs.OpFilePreallocate:
		kind = "preallocate"
	case errorfs.OpLock:
		kind = "lock"
	case errorfs.OpMkdirAll:
		kind = "mkdir"
	default:
		kind = "other"
	}
	return file + " " + kind
}

// ---------------------------------------------------------------------------
// The server, wired as cmd/q4mproxy wires it.

type plHost struct {
	db     *queue.DB
	srv    *server.Server
	ln     *plListener
	addr   string
	served chan error
}

// plLog counts the relay's "skipping forwarded duplicates" lines and keeps
// ERROR lines.
type plLog struct {
	mu     sync.Mutex
	skips  int
	errors []string
}

func (h *plLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *plLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *plLog) WithGroup(string) slog.Handler                { return h }

func (h *plLog) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if r.Message == "skipping forwarded duplicates" {
		h.skips++
	}
	if r.Level >= slog.LevelError {
		s := r.Message
		r.Attrs(func(a slog.Attr) bool { s += " " + a.String(); return true })
		h.errors = append(h.errors, s)
	}
	return nil
}

func (h *plLog) take() (skips int, errs []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	skips, errs = h.skips, h.errors
	h.skips, h.errors = 0, nil
	return skips, errs
}

// plNoSync set to true opens the store with Options.NoSync (--sync off):
// commits are acknowledged without being synced, and the test must fail
// (it does, with hundreds of rows lost and consumes undone per run). Only
// for that demonstration: it stays false.
const plNoSync = false

// openStore opens the store on fs (the crashable disk under the cutter's
// injector).
func openStore(t *testing.T, fs vfs.FS, log *slog.Logger) *queue.DB {
	t.Helper()
	db, err := queue.Open("store", &queue.Options{
		FS:               fs,
		Logger:           log,
		InitialDatabases: []string{"test"},
		DiskReserve:      -1, // a full disk is not this test's subject
		NoSync:           plNoSync,
	})
	if err != nil {
		t.Fatalf("open the store after a power cut: %v", err)
	}
	return db
}

func startServer(t *testing.T, db *queue.DB, cut *plCutter, log *slog.Logger) *plHost {
	t.Helper()
	const version = "5.7.99-powerloss"
	srv := server.New(nil, server.Config{Version: version, Users: map[string]string{"root": ""}, Logger: log})
	srv.SetEngine(sqlfront.NewEngine(db, sqlfront.Config{Version: version, Kill: srv.Kill, Logger: log}))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &plHost{db: db, srv: srv, ln: &plListener{Listener: l}, addr: l.Addr().String(), served: make(chan error, 1)}
	if cut != nil {
		cut.setListener(h.ln)
	}
	go func() { h.served <- srv.Serve(h.ln) }()
	return h
}

// abandon stops what is left of a server whose power was cut: its disk is
// thrown away, so nothing it does now matters; this only frees it.
func (h *plHost) abandon() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = h.srv.Shutdown(ctx)
	<-h.served
	_ = h.db.Close()
}

// close shuts the server down gracefully and closes the store.
func (h *plHost) close(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	if err := <-h.served; !errors.Is(err, server.ErrServerClosed) {
		t.Errorf("Serve returned %v", err)
	}
	if err := h.db.Close(); err != nil {
		t.Errorf("close the store: %v", err)
	}
}

func clientDB(t *testing.T, addr string) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Net, cfg.Addr, cfg.DBName = "root", "tcp", addr, "test"
	cfg.InterpolateParams = true
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = 10*time.Second, 60*time.Second, 60*time.Second
	cfg.Logger = &mysql.NopLogger{} // every cut breaks connections: the clients see it as errors
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(conn)
}

// ---------------------------------------------------------------------------
// The clients.

// plLoad is what one cycle's clients share.
type plLoad struct {
	ctx                        context.Context
	cycle                      int
	seed                       uint64
	tokens                     chan struct{} // one per row producers may add
	tick                       chan struct{} // asks the compactor for a queue_compact
	gseq                       *atomic.Uint64
	compacts, compactsInFlight *atomic.Int64
	acks                       atomic.Int64 // acknowledgements received
	stmts                      atomic.Int64 // INSERTs of the producers acknowledged
	cutAfter                   int64        // cut the power at that acknowledgement (0: never)
	cut                        *plCutter
}

// acked counts an acknowledgement, and cuts the power at the cutAfter-th.
func (ld *plLoad) acked() {
	if n := ld.acks.Add(1); n == ld.cutAfter {
		ld.cut.fire("after a client acknowledgement")
	}
}

// produce INSERTs 1 to 5 rows into a random table, each row taking a token.
func (ld *plLoad) produce(c *sql.Conn, producer int, seq *int64) ([]*plInsert, error) {
	rng := rand.New(rand.NewPCG(ld.seed, uint64(ld.cycle*100+producer)))
	var ins []*plInsert
	for {
		table := plTables[rng.IntN(len(plTables))]
		rows := 1
		if rng.IntN(2) == 0 {
			rows = 2 + rng.IntN(4)
		}
		for range rows {
			select {
			case <-ld.tokens:
			case <-ld.ctx.Done():
				return ins, ld.ctx.Err()
			}
		}
		in := &plInsert{table: table, cycle: ld.cycle}
		var args []any
		for range rows {
			*seq++
			id := int64(producer)*plIDBase + *seq
			in.ids = append(in.ids, id)
			size := rng.IntN(48)
			if rng.IntN(8) == 0 {
				size = 200 + rng.IntN(1300)
			}
			args = append(args, id, strings.Repeat("p", size))
		}
		q := "INSERT INTO " + table + " (id, pad) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?),", rows), ",")
		ins = append(ins, in)
		if _, err := c.ExecContext(ld.ctx, q, args...); err != nil {
			return ins, err
		}
		in.acked = true
		ld.acked()
		if ld.stmts.Add(1)%plCompactEvery == 0 {
			select {
			case ld.tick <- struct{}{}:
			default:
			}
		}
	}
}

// consume is a consumer: queue_wait, queue_rowid, SELECT id, then the row
// is consumed by the next queue_wait, or by queue_end, or released by
// queue_abort.
func (ld *plLoad) consume(c *sql.Conn, worker int, tables []string) ([]*plRecv, error) {
	rng := rand.New(rand.NewPCG(ld.seed, uint64(ld.cycle*100+50+worker)))
	wait := fmt.Sprintf("SELECT queue_wait(%s, 1)", crashtest.Quote(tables))
	var recvs []*plRecv
	var cur *plRecv
	for {
		if cur != nil {
			cur.requested = true
		}
		idx, err := crashtest.One(ld.ctx, c, wait)
		if err != nil {
			return recvs, err
		}
		if cur != nil {
			cur.acked = true
			ld.acked()
			cur = nil
		}
		if !idx.Valid || idx.Int64 < 0 || idx.Int64 > int64(len(tables)) {
			return recvs, crashtest.Violationf("%s returned %v", wait, idx)
		}
		if idx.Int64 == 0 {
			continue
		}
		table := tables[idx.Int64-1]
		r, err := ld.take(c, worker, table)
		if r != nil {
			recvs = append(recvs, r)
			select {
			case ld.tokens <- struct{}{}:
			default:
			}
		}
		if err != nil {
			return recvs, err
		}
		switch a := rng.IntN(100); {
		case a < 12: // release it
			r.abortReq = true
			if _, err := crashtest.One(ld.ctx, c, "SELECT queue_abort()"); err != nil {
				return recvs, err
			}
			r.aborted = true
			ld.acked()
		case a < 30: // consume it and leave owner mode
			r.requested = true
			if _, err := crashtest.One(ld.ctx, c, "SELECT queue_end()"); err != nil {
				return recvs, err
			}
			r.acked = true
			ld.acked()
		default: // the next queue_wait consumes it
			cur = r
		}
	}
}

// take reads the owned row's rowid and id after queue_wait gave a row of
// table.
func (ld *plLoad) take(c *sql.Conn, worker int, table string) (*plRecv, error) {
	rowid, err := crashtest.One(ld.ctx, c, "SELECT queue_rowid()")
	if err != nil {
		return nil, err
	}
	if !rowid.Valid || rowid.Int64 <= 0 {
		return nil, crashtest.Violationf("queue_rowid() = %v after queue_wait gave a row of %s", rowid, table)
	}
	r := &plRecv{cycle: ld.cycle, worker: worker, gseq: ld.gseq.Add(1), table: table, rowid: rowid.Int64}
	id, err := crashtest.One(ld.ctx, c, "SELECT id FROM "+table)
	if err != nil {
		return r, err
	}
	if !id.Valid {
		return r, crashtest.Violationf("SELECT id FROM %s: NULL for the owned row", table)
	}
	r.id, r.hasID = id.Int64, true
	return r, nil
}

// relay is q4m-forward from src to t3 on the same server: queue_wait on
// src, then queue_set_srcid(sender, 'a', rowid) and the INSERT on a second
// connection; the next queue_wait consumes the source row.
func (ld *plLoad) relay(src, dst *sql.Conn) ([]*plRecv, []*plInsert, error) {
	var recvs []*plRecv
	var relays []*plInsert
	var cur *plRecv
	for {
		if cur != nil {
			cur.requested = true
		}
		idx, err := crashtest.One(ld.ctx, src, "SELECT queue_wait('src', 1)")
		if err != nil {
			return recvs, relays, err
		}
		if cur != nil {
			cur.acked = true
			ld.acked()
			cur = nil
		}
		if !idx.Valid || (idx.Int64 != 0 && idx.Int64 != 1) {
			return recvs, relays, crashtest.Violationf("queue_wait('src', 1) returned %v", idx)
		}
		if idx.Int64 == 0 {
			continue
		}
		r, err := ld.take(src, plRelayer, "src")
		if r != nil {
			recvs = append(recvs, r)
		}
		if err != nil {
			return recvs, relays, err
		}
		ok, err := crashtest.One(ld.ctx, dst, "SELECT queue_set_srcid(?, 'a', ?)", plSender, r.rowid)
		if err != nil {
			return recvs, relays, err
		}
		if ok.Int64 != 1 {
			return recvs, relays, crashtest.Violationf("queue_set_srcid(%d, 'a', %d) = %v", plSender, r.rowid, ok)
		}
		in := &plInsert{table: "t3", ids: []int64{r.id}, cycle: ld.cycle, relay: true, srcRowID: r.rowid}
		relays = append(relays, in)
		if _, err := dst.ExecContext(ld.ctx, "INSERT INTO t3 (id, pad) VALUES (?, 'relayed')", r.id); err != nil {
			return recvs, relays, err
		}
		in.acked = true
		ld.acked()
		cur = r
	}
}

// compact runs queue_compact on a random table when a producer asks:
// memtable flushes and compactions, so that cuts also land in those.
func (ld *plLoad) compact(c *sql.Conn) error {
	rng := rand.New(rand.NewPCG(ld.seed, uint64(ld.cycle*100+90)))
	for {
		select {
		case <-ld.tick:
		case <-ld.ctx.Done():
			return ld.ctx.Err()
		}
		table := plAll[rng.IntN(len(plAll))]
		ld.compactsInFlight.Add(1)
		v, err := crashtest.One(ld.ctx, c, "SELECT queue_compact(?)", table)
		ld.compactsInFlight.Add(-1)
		if err != nil {
			return err
		}
		if !v.Valid || v.Int64 != 1 {
			return crashtest.Violationf("queue_compact('%s') = %v", table, v)
		}
		ld.compacts.Add(1)
		ld.acked()
	}
}

// ---------------------------------------------------------------------------
// The model: what the clients were told, checked at every reopen.

type plKey struct {
	table string
	n     int64 // an id or a rowid
}

type plRow struct {
	rowid   int64 // 0 until seen
	durable bool  // INSERT acknowledged, or the row was seen: it must survive
	gone    bool  // consumed for sure
	cycles  []int // cycles of the INSERTs that carried it
	last    *plRecv
}

type plObs struct {
	table string
	rowid int64
	epoch int // 2c: the scan at the start of cycle c; 2c+1: deliveries in cycle c
}

type plSummary struct {
	rowsAcked, stmtsAcked, consumesAcked, abortsAcked, relaysAcked int
	redelivered, lost, dupAfterAck                                 int
	inDoubtBack, inDoubtDone, ownedBack                            int
	unackedKept, unackedGone                                       int
	replayed, skipsLogged, compacts                                int
}

type plModel struct {
	t         *testing.T
	seed      uint64
	rows      map[plKey]*plRow
	idAt      map[plKey]int64 // (table, rowid) -> id
	replayIDs map[int64]bool
	pending   []*plInsert // unacknowledged INSERTs, resolved by the next scan
	inDoubt   []*plRecv   // consumes in flight at the cut
	owned     []*plRecv   // rows owned (or being aborted) at the cut
	rowidOnly []*plRecv   // delivered, the cut came before SELECT id
	obs       []plObs
	fails     map[string]int
	sum       plSummary
}

func newModel(t *testing.T, seed uint64) *plModel {
	return &plModel{t: t, seed: seed, rows: map[plKey]*plRow{}, idAt: map[plKey]int64{},
		replayIDs: map[int64]bool{}, fails: map[string]int{}}
}

func (m *plModel) errorf(kind, format string, args ...any) {
	m.t.Helper()
	m.fails[kind]++
	if m.fails[kind] <= 20 {
		m.t.Errorf("seed %d: %s: %s", m.seed, kind, fmt.Sprintf(format, args...))
	}
}

func (m *plModel) row(table string, id int64) *plRow {
	k := plKey{table, id}
	r := m.rows[k]
	if r == nil {
		r = &plRow{}
		m.rows[k] = r
	}
	return r
}

// learn records that the row of table with id has rowid.
func (m *plModel) learn(table string, id, rowid int64, where string) {
	r := m.rows[plKey{table, id}]
	if r.rowid == 0 {
		r.rowid = rowid
	} else if r.rowid != rowid {
		kind := "duplicated insert"
		if table == "t3" && id/plIDBase == plSrcProducer {
			kind = "relay duplicated"
		}
		m.errorf(kind, "%s id %d had rowid %d, now rowid %d (%s)", table, id, r.rowid, rowid, where)
	}
	rk := plKey{table, rowid}
	if old, ok := m.idAt[rk]; ok && old != id {
		m.errorf("rowid reused", "%s rowid %d held id %d, now id %d (%s)", table, rowid, old, id, where)
	}
	m.idAt[rk] = id
}

// addInserts records a cycle's INSERTs.
func (m *plModel) addInserts(ins []*plInsert) {
	for _, in := range ins {
		if in.acked {
			m.sum.stmtsAcked++
			m.sum.rowsAcked += len(in.ids)
			if in.relay {
				m.sum.relaysAcked++
			}
		} else {
			m.pending = append(m.pending, in)
		}
		for _, id := range in.ids {
			r := m.row(in.table, id)
			r.cycles = append(r.cycles, in.cycle)
			r.durable = r.durable || in.acked
		}
	}
}

// addRecvs records a cycle's deliveries and checks them.
func (m *plModel) addRecvs(cycle int, recvs []*plRecv) {
	sort.Slice(recvs, func(i, j int) bool { return recvs[i].gseq < recvs[j].gseq })
	type wt struct {
		worker int
		table  string
	}
	last := map[wt]int64{}
	released := map[plKey]bool{} // (table, rowid) released by an abort in this cycle
	for _, r := range recvs {
		rk := plKey{r.table, r.rowid}
		m.obs = append(m.obs, plObs{r.table, r.rowid, 2*cycle + 1})
		w := wt{r.worker, r.table}
		if l, ok := last[w]; ok && r.rowid <= l && !released[rk] {
			m.errorf("FIFO", "worker %d, cycle %d, %s: rowid %d after rowid %d (not released by an abort)", r.worker, cycle, r.table, r.rowid, l)
		}
		last[w] = max(last[w], r.rowid)
		if r.abortReq {
			released[rk] = true
		}
		if r.aborted {
			m.sum.abortsAcked++
		}
		if !r.hasID {
			id, ok := m.idAt[rk]
			if !ok {
				m.rowidOnly = append(m.rowidOnly, r)
				continue
			}
			r.id, r.hasID = id, true
		}
		m.addRecv(r)
	}
}

func (m *plModel) addRecv(r *plRecv) {
	k := plKey{r.table, r.id}
	if m.replayIDs[r.id] {
		m.errorf("relay mark", "replayed relay INSERT (id %d) delivered from %s in cycle %d", r.id, r.table, r.cycle)
		return
	}
	row := m.rows[k]
	if row == nil {
		m.errorf("phantom row", "id %d delivered from %s (rowid %d, cycle %d) was never inserted there", r.id, r.table, r.rowid, r.cycle)
		return
	}
	m.learn(r.table, r.id, r.rowid, fmt.Sprintf("delivered in cycle %d", r.cycle))
	if row.gone {
		m.sum.dupAfterAck++
		m.errorf("duplicated after ack", "%s rowid %d (id %d): consumed (cycle %d, worker %d), delivered again in cycle %d (worker %d)",
			r.table, r.rowid, r.id, row.last.cycle, row.last.worker, r.cycle, r.worker)
	}
	if p := row.last; p != nil {
		if p.cycle == r.cycle && !p.abortReq {
			m.errorf("delivered twice", "%s rowid %d (id %d) delivered twice in cycle %d (workers %d and %d) without an abort", r.table, r.rowid, r.id, r.cycle, p.worker, r.worker)
		}
		if p.cycle != r.cycle {
			m.sum.redelivered++
		}
	}
	row.last = r
	row.durable = true // a row is handed out only once synced
	switch {
	case r.acked:
		row.gone = true
		m.sum.consumesAcked++
	case r.requested:
		m.inDoubt = append(m.inDoubt, r)
	default:
		m.owned = append(m.owned, r)
	}
}

// plPair is one row of a scan.
type plPair struct{ rowid, id int64 }

// scanStore reads every table: ids through SQL (SELECT id, in rowid order),
// rowids from the store (in rowid order, the same rows: nobody else is
// connected and nothing is owned).
func scanStore(t *testing.T, ctx context.Context, c *sql.Conn, db *queue.DB) map[string][]plPair {
	t.Helper()
	out := map[string][]plPair{}
	for _, table := range plAll {
		rs, err := c.QueryContext(ctx, "SELECT id FROM "+table)
		if err != nil {
			t.Fatalf("SELECT id FROM %s: %v", table, err)
		}
		var ids []int64
		for rs.Next() {
			var id int64
			if err := rs.Scan(&id); err != nil {
				t.Fatal(err)
			}
			ids = append(ids, id)
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		rs.Close()
		h, err := db.Table("test", table)
		if err != nil {
			t.Fatalf("table %s after a power cut: %v", table, err)
		}
		var rowids []int64
		if err := db.NewOwner().Scan(h, func(rowid uint64, _ []byte) bool {
			rowids = append(rowids, int64(rowid))
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if len(ids) != len(rowids) {
			t.Fatalf("%s: SELECT gave %d rows, the store %d", table, len(ids), len(rowids))
		}
		for i := range ids {
			out[table] = append(out[table], plPair{rowids[i], ids[i]})
		}
	}
	return out
}

// check checks a scan taken at the start of cycle against the history.
func (m *plModel) check(cycle int, scan map[string][]plPair) {
	present := map[plKey]int64{}
	for _, table := range plAll {
		seen := map[int64]bool{}
		lastID := map[int64]int64{} // per producer
		lastRowid := int64(0)
		for _, p := range scan[table] {
			if p.rowid <= lastRowid {
				m.errorf("FIFO", "cycle %d: %s: rowid %d after rowid %d", cycle, table, p.rowid, lastRowid)
			}
			lastRowid = p.rowid
			if seen[p.id] {
				m.errorf("duplicated insert", "cycle %d: id %d twice in %s", cycle, p.id, table)
			}
			seen[p.id] = true
			present[plKey{table, p.id}] = p.rowid
			m.obs = append(m.obs, plObs{table, p.rowid, 2 * cycle})
			prod := p.id / plIDBase
			if l, ok := lastID[prod]; ok && p.id <= l {
				m.errorf("FIFO", "cycle %d: %s holds id %d after id %d of the same producer", cycle, table, p.id, l)
			}
			lastID[prod] = p.id
		}
	}

	// Unacknowledged INSERTs: there whole (then they must stay) or not at all.
	for _, in := range m.pending {
		n, durable := 0, false
		for _, id := range in.ids {
			k := plKey{in.table, id}
			if _, ok := present[k]; ok {
				n++
				durable = true
			}
			if m.rows[k].durable {
				durable = true
			}
		}
		if n != 0 && n != len(in.ids) && !in.relay {
			m.errorf("torn insert", "cycle %d: unacknowledged INSERT into %s of cycle %d: %d of its %d rows there", cycle, in.table, in.cycle, n, len(in.ids))
		}
		if durable {
			m.sum.unackedKept++
		} else {
			m.sum.unackedGone++
		}
		for _, id := range in.ids {
			r := m.rows[plKey{in.table, id}]
			r.durable = r.durable || durable
		}
	}
	m.pending = nil

	// Rows delivered just before the cut, before their id was read.
	for _, r := range m.rowidOnly {
		found := false
		for _, p := range scan[r.table] {
			if p.rowid == r.rowid {
				r.id, r.hasID, found = p.id, true, true
				break
			}
		}
		if !found {
			m.sum.lost++
			m.errorf("lost", "%s rowid %d, delivered in cycle %d (worker %d) and owned at the cut, is gone", r.table, r.rowid, r.cycle, r.worker)
			continue
		}
		m.addRecv(r)
	}
	m.rowidOnly = nil

	// Consumes in flight at the cut went either way.
	doubt := map[plKey]bool{}
	for _, r := range m.inDoubt {
		k := plKey{r.table, r.id}
		doubt[k] = true
		if _, ok := present[k]; ok {
			m.sum.inDoubtBack++
		} else {
			m.rows[k].gone = true
			m.sum.inDoubtDone++
		}
	}
	m.inDoubt = nil
	for _, r := range m.owned {
		k := plKey{r.table, r.id}
		if _, ok := present[k]; ok && m.rows[k].last == r { // not delivered again after an abort
			m.sum.ownedBack++
		}
	}
	m.owned = nil

	keys := make([]plKey, 0, len(present))
	for k := range present {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].table != keys[j].table {
			return keys[i].table < keys[j].table
		}
		return keys[i].n < keys[j].n
	})
	for _, k := range keys {
		rowid := present[k]
		if m.replayIDs[k.n] {
			m.errorf("relay mark", "cycle %d: replayed relay INSERT (id %d) is in %s", cycle, k.n, k.table)
			continue
		}
		r := m.rows[k]
		if r == nil {
			m.errorf("phantom row", "cycle %d: id %d is in %s (rowid %d) but was never inserted there", cycle, k.n, k.table, rowid)
			continue
		}
		if r.gone {
			m.sum.dupAfterAck++
			who := "an in-flight consume (gone at an earlier reopen)"
			if r.last != nil && r.last.acked {
				who = fmt.Sprintf("an acknowledged consume (cycle %d, worker %d)", r.last.cycle, r.last.worker)
			}
			m.errorf("duplicated after ack", "cycle %d: %s id %d (rowid %d) is back after %s", cycle, k.table, k.n, rowid, who)
			r.gone = false // reported once: from now on it is a row like the others
		}
		if !r.durable {
			m.errorf("phantom row", "cycle %d: %s id %d (rowid %d) is there, but its INSERT was resolved as lost at an earlier reopen", cycle, k.table, k.n, rowid)
		}
		m.learn(k.table, k.n, rowid, fmt.Sprintf("scan at the start of cycle %d", cycle))
	}
	var lost []string
	for k, r := range m.rows {
		if r.durable && !r.gone {
			if _, ok := present[k]; !ok {
				m.sum.lost++
				rowid := "never seen"
				if r.rowid != 0 {
					rowid = strconv.FormatInt(r.rowid, 10)
				}
				lost = append(lost, fmt.Sprintf("%s id %d (rowid %s)", k.table, k.n, rowid))
				r.gone = true // reported once
			}
		}
	}
	sort.Strings(lost)
	for _, l := range lost {
		m.errorf("lost", "cycle %d: %s: acknowledged or delivered, not consumed, and missing", cycle, l)
	}
}

// finish checks that rowids never went backwards: a row inserted in cycle
// c has a rowid above every rowid of its table seen before c's load.
func (m *plModel) finish(cycles int) {
	maxUpTo := map[string][]int64{}
	for _, table := range plAll {
		maxUpTo[table] = make([]int64, 2*cycles+4)
	}
	for _, o := range m.obs {
		a := maxUpTo[o.table]
		a[o.epoch] = max(a[o.epoch], o.rowid)
	}
	for _, a := range maxUpTo {
		for i := 1; i < len(a); i++ {
			a[i] = max(a[i], a[i-1])
		}
	}
	for k, r := range m.rows {
		if len(r.cycles) != 1 || r.rowid == 0 {
			continue // relayed again after a cut: its cycle is ambiguous
		}
		c := r.cycles[0]
		if mb := maxUpTo[k.table][2*c]; r.rowid <= mb {
			m.errorf("rowid went backwards", "%s id %d inserted in cycle %d has rowid %d, but rowid %d was seen before", k.table, k.n, c, r.rowid, mb)
		}
	}
}

// ---------------------------------------------------------------------------

// TestPowerLoss: see the top of this file.
func TestPowerLoss(t *testing.T) {
	def := uint64(8)
	if testing.Short() {
		def = 3
	}
	cycles := int(crashtest.EnvUint(t, "Q4MPROXY_POWERLOSS_CYCLES", def))
	seed := crashtest.EnvUint(t, "Q4MPROXY_POWERLOSS_SEED", crashtest.EnvUint(t, "Q4MPROXY_TEST_SEED", rand.Uint64()))
	t.Logf("seed %d (replay with Q4MPROXY_POWERLOSS_SEED=%d), %d cycles", seed, seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 0x706f776572))
	began := time.Now()
	logs := &plLog{}
	log := slog.New(logs)
	m := newModel(t, seed)

	var (
		mem              = vfs.NewCrashableMem()
		relays           []*plInsert // the relayer's INSERTs, in order
		seqs             [plProducers + 1]int64
		srcSeq           int64
		replaySeq        int64
		points           = map[string]int{} // where the cuts came
		pcts             []int
		recoveryCut      int
		deadlineCut      int
		cutDuringCompact int
		created          bool
		gseq             atomic.Uint64
		compacts         atomic.Int64
	)

	for cycle := 0; ; cycle++ {
		final := cycle == cycles
		// The random choices of the cycle, drawn in a fixed order.
		pct := 0
		if p := rng.IntN(101); cycle%2 == 1 {
			pct = p // else only what was synced survives
		}
		cutK := 1 + rng.IntN(plMaxCutOps)
		cutAck := 1 + rng.IntN(plMaxCutAcks)
		if cycle%4 == 1 || cycle%4 == 2 {
			cutAck = 0 // the cut comes at the cutK-th write operation
		}
		openCut := cycle > 0 && rng.IntN(8) == 0
		openK := 1 + rng.IntN(plMaxOpenCutOps)
		cloneSeed := rng.Uint64()
		if final {
			openCut = false
		}

		// Open the store on what the last cut left; in some cycles the
		// power goes again during the recovery (an extra cut).
		var (
			cut        *plCutter
			db         *queue.DB
			openWrites int
		)
		for attempt := uint64(0); ; attempt++ {
			cut = newCutter(mem, pct, cloneSeed+attempt)
			if openCut && attempt == 0 {
				cut.arm(openK)
			} else {
				cut.arm(math.MaxInt) // counts the write operations of the recovery
			}
			db = openStore(t, errorfs.Wrap(mem, errorfs.InjectorFunc(cut.inject)), log)
			var fired bool
			if fired, openWrites = cut.disarm(); !fired {
				break
			}
			// The power went during the recovery (or right after it).
			<-cut.done
			_ = db.Close()
			mem = cut.clone
			recoveryCut++
			points["during recovery, "+cut.point]++
			pcts = append(pcts, pct)
			t.Logf("cycle %d: power cut during recovery, %s (write op %d), %d%% of unsynced data kept", cycle, cut.point, openK, pct)
		}
		h := startServer(t, db, cut, log)
		sdb := clientDB(t, h.addr)
		ctx, cancel := context.WithCancel(t.Context())
		mc, err := sdb.Conn(ctx)
		if err != nil {
			t.Fatalf("cycle %d: connect: %v", cycle, err)
		}
		exec := func(q string, args ...any) {
			t.Helper()
			if _, err := mc.ExecContext(ctx, q, args...); err != nil {
				t.Fatalf("cycle %d: %s: %v", cycle, q, err)
			}
		}
		value := func(q string, args ...any) int64 {
			t.Helper()
			v, err := crashtest.One(ctx, mc, q, args...)
			if err != nil || !v.Valid {
				t.Fatalf("cycle %d: %s: %v (%v)", cycle, q, v, err)
			}
			return v.Int64
		}
		if !created {
			for _, table := range plAll {
				exec("CREATE TABLE " + table + " (id BIGINT NOT NULL, pad VARCHAR(2048)) ENGINE=queue")
			}
			created = true
		}

		// What survived the cut, against what the clients were told.
		m.check(cycle, scanStore(t, ctx, mc, db))

		if final {
			// Drain everything, close cleanly, reopen: nothing is left.
			ld := &plLoad{ctx: ctx, cycle: cycle, gseq: &gseq}
			recvs, err := ld.drain(mc)
			if err != nil {
				t.Fatalf("drain: %v", err)
			}
			m.addRecvs(cycle, recvs)
			mc.Close()
			sdb.Close()
			cancel()
			h.close(t)
			db = openStore(t, mem, log)
			h = startServer(t, db, nil, log)
			sdb = clientDB(t, h.addr)
			mc, err = sdb.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			scan := scanStore(t, t.Context(), mc, db)
			m.check(cycle+1, scan)
			for _, table := range plAll {
				if n := len(scan[table]); n != 0 {
					t.Errorf("%s holds %d rows after the drain and a clean restart", table, n)
				}
			}
			mc.Close()
			sdb.Close()
			h.close(t)
			break
		}

		// Relay marks: replay the last relayed INSERTs the server
		// acknowledged, with the same (sender, source rowid), as a relay
		// restarted after the cut would; they must be dropped.
		var acked []*plInsert
		for _, r := range relays {
			if r.acked {
				acked = append(acked, r)
			}
		}
		for _, r := range acked[max(0, len(acked)-plReplayK):] {
			replaySeq++
			id := plReplayProducer*plIDBase + replaySeq
			m.replayIDs[id] = true
			if v := value("SELECT queue_set_srcid(?, 'a', ?)", plSender, r.srcRowID); v != 1 {
				t.Fatalf("queue_set_srcid = %d", v)
			}
			exec("INSERT INTO t3 (id, pad) VALUES (?, 'replayed')", id)
			if n := value("SELECT COUNT(*) FROM t3 WHERE id = ?", id); n != 0 {
				m.errorf("relay mark", "cycle %d: the replay of sender %d, source rowid %d (relayed in cycle %d as id %d) was written to t3",
					cycle, plSender, r.srcRowID, r.cycle, r.ids[0])
			}
			m.sum.replayed++
		}

		// Keep the relay source filled.
		var inserts []*plInsert
		if n := value("SELECT COUNT(*) FROM src"); n < plSrcFill {
			for add := plSrcFill - n; add > 0; add -= 10 {
				in := &plInsert{table: "src", cycle: cycle}
				var args []any
				for range min(add, 10) {
					srcSeq++
					id := plSrcProducer*plIDBase + srcSeq
					in.ids = append(in.ids, id)
					args = append(args, id, "src")
				}
				inserts = append(inserts, in)
				exec("INSERT INTO src (id, pad) VALUES "+strings.TrimSuffix(strings.Repeat("(?, ?),", len(in.ids)), ","), args...)
				in.acked = true
			}
		}
		backlog := int64(0)
		for _, table := range plTables {
			backlog += value("SELECT COUNT(*) FROM " + table)
		}
		ld := &plLoad{ctx: ctx, cycle: cycle, seed: seed, tokens: make(chan struct{}, plBacklog),
			tick: make(chan struct{}, 1), gseq: &gseq, compacts: &compacts, compactsInFlight: new(atomic.Int64),
			cutAfter: int64(cutAck), cut: cut}
		for range max(0, plBacklog-int(backlog)) {
			ld.tokens <- struct{}{}
		}

		conns := []*sql.Conn{mc}
		conn := func() *sql.Conn {
			c, err := sdb.Conn(ctx)
			if err != nil {
				t.Fatalf("cycle %d: connect: %v", cycle, err)
			}
			conns = append(conns, c)
			return c
		}
		var (
			mu    sync.Mutex
			wg    sync.WaitGroup
			recvs []*plRecv
		)
		unexpected := crashtest.NewUnexpected(cut.cutting.Load)
		report := unexpected.Report
		srcC, dstC, compC := conn(), conn(), conn()
		consumerConns := make([]*sql.Conn, plConsumers)
		for k := range consumerConns {
			consumerConns[k] = conn()
		}
		producerConns := make([]*sql.Conn, plProducers+1)
		for p := 1; p <= plProducers; p++ {
			producerConns[p] = conn()
		}

		// The load, until the power goes.
		if cutAck == 0 {
			cut.arm(cutK)
		}
		wg.Go(func() {
			rr, rel, err := ld.relay(srcC, dstC)
			report("relayer", err)
			mu.Lock()
			recvs = append(recvs, rr...)
			relays = append(relays, rel...)
			inserts = append(inserts, rel...)
			mu.Unlock()
		})
		wg.Go(func() { report("compactor", ld.compact(compC)) })
		for k := range plConsumers {
			order := append(slices.Clone(plTables[k%3:]), plTables[:k%3]...)
			wg.Go(func() {
				rr, err := ld.consume(consumerConns[k], k, order)
				report(fmt.Sprintf("consumer %d", k), err)
				mu.Lock()
				recvs = append(recvs, rr...)
				mu.Unlock()
			})
		}
		for p := 1; p <= plProducers; p++ {
			wg.Go(func() {
				ins, err := ld.produce(producerConns[p], p, &seqs[p])
				report(fmt.Sprintf("producer %d", p), err)
				mu.Lock()
				inserts = append(inserts, ins...)
				mu.Unlock()
			})
		}
		select {
		case <-cut.done:
		case <-time.After(plCutDeadline):
			cut.fire("at the deadline")
			deadlineCut++
		}
		if ld.compactsInFlight.Load() > 0 {
			cutDuringCompact++
		}
		cut.disarm()
		cancel()
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			t.Fatalf("seed %d, cycle %d: clients did not stop after the power cut", seed, cycle)
		}
		for _, c := range conns {
			c.Close()
		}
		sdb.Close()
		h.abandon()
		mem = cut.clone
		points[cut.point]++
		pcts = append(pcts, pct)
		for _, u := range unexpected.Errors() {
			t.Errorf("seed %d, cycle %d: %s", seed, cycle, u)
		}
		at := fmt.Sprintf("write op %d", cutK)
		if cutAck != 0 {
			at = fmt.Sprintf("acknowledgement %d", cutAck)
		}
		nIns, nRecv := 0, len(recvs)
		for _, in := range inserts {
			if in.acked {
				nIns += len(in.ids)
			}
		}
		t.Logf("cycle %d: recovery took %d write ops; power cut %s (%s), %d%% of unsynced data kept; %d rows acked, %d deliveries",
			cycle, openWrites, cut.point, at, pct, nIns, nRecv)
		m.addInserts(inserts)
		m.addRecvs(cycle, recvs)
	}

	m.finish(cycles + 1)
	skips, errs := logs.take()
	m.sum.skipsLogged = skips
	m.sum.compacts = int(compacts.Load())
	for _, e := range errs {
		t.Logf("server logged: %s", e)
	}
	if skips < m.sum.replayed {
		t.Errorf("%d relay replays, but only %d \"skipping forwarded duplicates\" log lines", m.sum.replayed, skips)
	}
	var pts []string
	for p, n := range points {
		pts = append(pts, fmt.Sprintf("%s %d", p, n))
	}
	sort.Strings(pts)
	zero := 0
	for _, p := range pcts {
		if p == 0 {
			zero++
		}
	}
	s := m.sum
	// Printed: shown by go test -v, and in the output of a failing package.
	fmt.Printf("power-loss test: %d cycles (and %d more cuts during recovery, %d by deadline), %d inserts acked (rows; %d statements), %d consumes acked, %d aborts acked, "+
		"%d redelivered after a cut, %d lost, %d duplicated-after-ack; %d consumes in flight at a cut (%d came back, %d done), %d owned rows back, "+
		"%d unacknowledged INSERTs (%d survived whole, %d gone whole), %d relayed INSERTs acked, %d replays dropped (%d skip lines), %d queue_compact (%d cuts during one); "+
		"%d of %d cuts kept only synced data; cuts: %s; seed %d, %v\n",
		cycles, recoveryCut, deadlineCut, s.rowsAcked, s.stmtsAcked, s.consumesAcked, s.abortsAcked,
		s.redelivered, s.lost, s.dupAfterAck, s.inDoubtBack+s.inDoubtDone, s.inDoubtBack, s.inDoubtDone, s.ownedBack,
		s.unackedKept+s.unackedGone, s.unackedKept, s.unackedGone, s.relaysAcked, s.replayed, s.skipsLogged, s.compacts, cutDuringCompact,
		zero, len(pcts), strings.Join(pts, ", "), seed, time.Since(began).Round(time.Millisecond))
	if len(m.fails) > 0 {
		var kinds []string
		for k, n := range m.fails {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		sort.Strings(kinds)
		fmt.Printf("power-loss test: violations: %s\n", strings.Join(kinds, ", "))
	}
}

// drain consumes every row of every table (timeout 0) and ends owner mode.
func (ld *plLoad) drain(c *sql.Conn) ([]*plRecv, error) {
	wait := fmt.Sprintf("SELECT queue_wait(%s, 0)", crashtest.Quote(plAll))
	var recvs []*plRecv
	var cur *plRecv
	for {
		if cur != nil {
			cur.requested = true
		}
		idx, err := crashtest.One(ld.ctx, c, wait)
		if err != nil {
			return recvs, err
		}
		if cur != nil {
			cur.acked = true
			cur = nil
		}
		if !idx.Valid || idx.Int64 < 0 || idx.Int64 > int64(len(plAll)) {
			return recvs, crashtest.Violationf("%s returned %v", wait, idx)
		}
		if idx.Int64 == 0 {
			_, err := crashtest.One(ld.ctx, c, "SELECT queue_end()")
			return recvs, err
		}
		r, err := ld.take(c, plDrainer, plAll[idx.Int64-1])
		if err != nil {
			return recvs, err
		}
		recvs = append(recvs, r)
		cur = r
	}
}
