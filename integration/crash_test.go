package integration

import (
	"context"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/internal/crashtest"
)

// Crash tests: the server is killed with SIGKILL at random moments under a
// concurrent load, or its WAL tail is damaged while it is down, and what
// clients were told (acknowledged INSERTs and consumes) is checked against
// what the restarted server delivers.
//
// Environment variables:
//
//	Q4MPROXY_CRASH_SEED=<uint64>  replays the random choices of an earlier run
//	                              of TestCrashUnderLoad (its seed is logged).
//	                              The choices (kill delays, tables, INSERT
//	                              sizes, pads) are the same; how far each
//	                              client gets before a kill is up to timing.
//	Q4MPROXY_CRASH_CYCLES=<n>     number of kill -9 cycles of
//	                              TestCrashUnderLoad (default 30, and 5 with
//	                              -short).

const (
	crashIDBase         = 1_000_000_000 // id = producer*crashIDBase + seq
	crashSrcProducer    = 90            // "producer" of the rows of the relay source table
	crashReplayProducer = 99            // replayed relay INSERTs: these ids must never appear
	crashSender         = 7             // relay sender slot
	crashReplayK        = 3             // relayed INSERTs replayed after each restart
	crashBacklog        = 64            // rows the producers may be ahead of the consumers
	crashSrcFill        = 40            // rows kept in the relay source table at a cycle's start
	crashProducers      = 4
	crashConsumers      = 4
)

var crashTables = []string{"t1", "t2", "t3"}

// crashInsert is one INSERT statement sent by a client.
type crashInsert struct {
	table    string
	ids      []int64
	cycle    int
	acked    bool  // the server acknowledged it
	relay    bool  // sent by the relayer with queue_set_srcid
	srcRowID int64 // the relayed row's rowid in src
}

// crashRecv is one row handed to a consumer (or to the relayer, on src).
type crashRecv struct {
	cycle, worker int // worker: consumer index, -1 for the relayer
	seq           int // position in the worker's receives
	table         string
	rowid         int64
	id            int64
	hasID         bool // SELECT id returned before the kill
	requested     bool // the consuming queue_wait or queue_end was sent
	acked         bool // ... and returned without error: the consume is acknowledged
}

// crashConsume is a consumer: queue_wait on tables, queue_rowid, SELECT id;
// the row is consumed by the next queue_wait. In drain mode it waits with
// timeout 0 and stops (with queue_end) when nothing is left.
func crashConsume(ctx context.Context, c *sql.Conn, cycle, worker int, tables []string, drain bool, tokens chan struct{}) ([]*crashRecv, error) {
	timeout := 1
	if drain {
		timeout = 0
	}
	wait := fmt.Sprintf("SELECT queue_wait(%s, %d)", crashtest.Quote(tables), timeout)
	var recvs []*crashRecv
	var cur *crashRecv
	for {
		if cur != nil {
			cur.requested = true
		}
		idx, err := crashtest.One(ctx, c, wait)
		if err != nil {
			return recvs, err
		}
		if cur != nil {
			cur.acked = true
			cur = nil
		}
		if !idx.Valid || idx.Int64 < 0 || idx.Int64 > int64(len(tables)) {
			return recvs, crashtest.Violationf("%s returned %v", wait, idx)
		}
		if idx.Int64 == 0 {
			if drain {
				_, err := crashtest.One(ctx, c, "SELECT queue_end()")
				return recvs, err
			}
			continue
		}
		table := tables[idx.Int64-1]
		rowid, err := crashtest.One(ctx, c, "SELECT queue_rowid()")
		if err != nil {
			return recvs, err
		}
		if !rowid.Valid || rowid.Int64 <= 0 {
			return recvs, crashtest.Violationf("queue_rowid() = %v after queue_wait returned %d", rowid, idx.Int64)
		}
		cur = &crashRecv{cycle: cycle, worker: worker, seq: len(recvs), table: table, rowid: rowid.Int64}
		recvs = append(recvs, cur)
		select {
		case tokens <- struct{}{}:
		default:
		}
		id, err := crashtest.One(ctx, c, "SELECT id FROM "+table)
		if err != nil {
			return recvs, err
		}
		if !id.Valid {
			return recvs, crashtest.Violationf("SELECT id FROM %s: NULL", table)
		}
		cur.id, cur.hasID = id.Int64, true
	}
}

// crashProduce is a producer: INSERTs of 1 to 5 rows into a random table,
// each row taking a token (so the backlog stays bounded).
func crashProduce(ctx context.Context, c *sql.Conn, cycle, producer int, seq *int64, rng *rand.Rand, tokens chan struct{}) ([]*crashInsert, error) {
	var ins []*crashInsert
	for {
		table := crashTables[rng.IntN(len(crashTables))]
		n := 1
		if rng.IntN(2) == 0 {
			n = 2 + rng.IntN(4)
		}
		for range n {
			select {
			case <-tokens:
			case <-ctx.Done():
				return ins, ctx.Err()
			}
		}
		in := &crashInsert{table: table, cycle: cycle}
		var args []any
		for range n {
			*seq++
			id := int64(producer)*crashIDBase + *seq
			in.ids = append(in.ids, id)
			args = append(args, id, strings.Repeat("p", rng.IntN(48)))
		}
		q := "INSERT INTO " + table + " (id, pad) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?),", n), ",")
		ins = append(ins, in)
		if _, err := c.ExecContext(ctx, q, args...); err != nil {
			return ins, err
		}
		in.acked = true
	}
}

// crashRelay is q4m-forward from src to t3 on the same server: queue_wait
// on src, then queue_set_srcid(sender, 'a', rowid) and the INSERT into t3 on
// a second connection; the next queue_wait consumes the source row.
func crashRelay(ctx context.Context, src, dst *sql.Conn, cycle int, drain bool) ([]*crashRecv, []*crashInsert, error) {
	wait := "SELECT queue_wait('src', 1)"
	if drain {
		wait = "SELECT queue_wait('src', 0)"
	}
	var recvs []*crashRecv
	var relays []*crashInsert
	var cur *crashRecv
	for {
		if cur != nil {
			cur.requested = true
		}
		idx, err := crashtest.One(ctx, src, wait)
		if err != nil {
			return recvs, relays, err
		}
		if cur != nil {
			cur.acked = true
			cur = nil
		}
		if !idx.Valid || (idx.Int64 != 0 && idx.Int64 != 1) {
			return recvs, relays, crashtest.Violationf("%s returned %v", wait, idx)
		}
		if idx.Int64 == 0 {
			if drain {
				_, err := crashtest.One(ctx, src, "SELECT queue_end()")
				return recvs, relays, err
			}
			continue
		}
		rowid, err := crashtest.One(ctx, src, "SELECT queue_rowid()")
		if err != nil {
			return recvs, relays, err
		}
		if !rowid.Valid || rowid.Int64 <= 0 {
			return recvs, relays, crashtest.Violationf("src: queue_rowid() = %v", rowid)
		}
		cur = &crashRecv{cycle: cycle, worker: -1, seq: len(recvs), table: "src", rowid: rowid.Int64}
		recvs = append(recvs, cur)
		id, err := crashtest.One(ctx, src, "SELECT id FROM src")
		if err != nil {
			return recvs, relays, err
		}
		cur.id, cur.hasID = id.Int64, true
		ok, err := crashtest.One(ctx, dst, "SELECT queue_set_srcid(?, 'a', ?)", crashSender, rowid.Int64)
		if err != nil {
			return recvs, relays, err
		}
		if ok.Int64 != 1 {
			return recvs, relays, crashtest.Violationf("queue_set_srcid(%d, 'a', %d) = %v", crashSender, rowid.Int64, ok)
		}
		in := &crashInsert{table: "t3", ids: []int64{id.Int64}, cycle: cycle, relay: true, srcRowID: rowid.Int64}
		relays = append(relays, in)
		if _, err := dst.ExecContext(ctx, "INSERT INTO t3 (id, pad) VALUES (?, 'relayed')", id.Int64); err != nil {
			return recvs, relays, err
		}
		in.acked = true
	}
}

// crashMain is the test's own connection to the current server.
type crashMain struct {
	t   *testing.T
	ctx context.Context
	c   *sql.Conn
}

func (m *crashMain) exec(q string, args ...any) {
	m.t.Helper()
	if _, err := m.c.ExecContext(m.ctx, q, args...); err != nil {
		m.t.Fatalf("%s: %v", q, err)
	}
}

func (m *crashMain) int(q string, args ...any) int64 {
	m.t.Helper()
	v, err := crashtest.One(m.ctx, m.c, q, args...)
	if err != nil || !v.Valid {
		m.t.Fatalf("%s: %v (%v)", q, v, err)
	}
	return v.Int64
}

var crashParams = []string{"interpolateParams=true", "timeout=10s", "readTimeout=30s", "writeTimeout=30s"}

// crashOpen is a *sql.DB on the current server whose driver does not log
// the broken connections every kill leaves (the clients see them as errors).
func crashOpen(t *testing.T, s *server) *sql.DB {
	t.Helper()
	cfg, err := mysql.ParseDSN(s.dsn("test", crashParams...))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = &mysql.NopLogger{}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return sql.OpenDB(conn)
}

// TestCrashUnderLoad: producers, consumers and a relayer run against the
// server while it is killed with SIGKILL at a random moment of each cycle
// and restarted on the same data directory; at the end everything is
// drained, and no acknowledged INSERT may be missing, no acknowledged
// consume may come back, rows owned at a crash come back, FIFO order and
// rowids hold, and replayed relay INSERTs are dropped.
func TestCrashUnderLoad(t *testing.T) {
	cyclesDefault := uint64(30)
	if testing.Short() {
		cyclesDefault = 5
	}
	cycles := int(crashtest.EnvUint(t, "Q4MPROXY_CRASH_CYCLES", cyclesDefault))
	seed := crashtest.EnvUint(t, "Q4MPROXY_CRASH_SEED", rand.Uint64())
	t.Logf("seed %d (replay with Q4MPROXY_CRASH_SEED=%d), %d cycles", seed, seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()

	s := startServer(t)
	var (
		inserts   []*crashInsert
		recvs     []*crashRecv
		relays    []*crashInsert // the relayer's INSERTs, in order
		replayIDs = map[int64]bool{}
		seqs      [crashProducers + 1]int64
		srcSeq    int64
		replaySeq int64
		kills     []time.Duration
		replayed  int
	)

	for cycle := 0; cycle <= cycles; cycle++ {
		final := cycle == cycles
		db := crashOpen(t, s)
		ctx, cancel := context.WithCancel(t.Context())
		mc, err := db.Conn(ctx)
		if err != nil {
			t.Fatalf("cycle %d: connect: %v", cycle, err)
		}
		m := &crashMain{t: t, ctx: ctx, c: mc}
		if cycle == 0 {
			for _, tb := range append(slices.Clone(crashTables), "src") {
				m.exec("CREATE TABLE " + tb + " (id BIGINT NOT NULL, pad VARCHAR(64)) ENGINE=queue")
			}
		}

		// Relay marks: replay the last relayed INSERTs the server acknowledged,
		// with the same (sender, source rowid), as the relayer would after a
		// crash; they must be dropped. Nobody owns a row yet, so the scan
		// sees every row of t3.
		var acked []*crashInsert
		for _, r := range relays {
			if r.acked {
				acked = append(acked, r)
			}
		}
		for _, r := range acked[max(0, len(acked)-crashReplayK):] {
			replaySeq++
			id := crashReplayProducer*crashIDBase + replaySeq
			replayIDs[id] = true
			if v := m.int("SELECT queue_set_srcid(?, 'a', ?)", crashSender, r.srcRowID); v != 1 {
				t.Fatalf("queue_set_srcid = %d", v)
			}
			m.exec("INSERT INTO t3 (id, pad) VALUES (?, 'replayed')", id)
			if n := m.int("SELECT COUNT(*) FROM t3 WHERE id = ?", id); n != 0 {
				t.Errorf("seed %d, cycle %d: relay marks: the replayed INSERT of sender %d, source rowid %d (relayed in cycle %d as id %d) was not dropped: id %d is in t3",
					seed, cycle, crashSender, r.srcRowID, r.cycle, r.ids[0], id)
				continue
			}
			// The server logs the drop before it answers.
			want := fmt.Sprintf(`"sender":%d,"source_rowid":%d}`, crashSender, r.srcRowID)
			if _, ok := s.logs.waitFor(time.Minute, func(l string) bool {
				return strings.Contains(l, `"msg":"skipping forwarded duplicates"`) && strings.Contains(l, want)
			}); !ok {
				t.Errorf("seed %d, cycle %d: no \"skipping forwarded duplicates\" log line for source rowid %d", seed, cycle, r.srcRowID)
			}
			replayed++
		}

		// Keep the relay source table filled.
		if n := m.int("SELECT COUNT(*) FROM src"); !final && n < crashSrcFill {
			for add := crashSrcFill - n; add > 0; add -= 10 {
				in := &crashInsert{table: "src", cycle: cycle}
				var args []any
				for range min(add, 10) {
					srcSeq++
					id := crashSrcProducer*crashIDBase + srcSeq
					in.ids = append(in.ids, id)
					args = append(args, id, "src")
				}
				inserts = append(inserts, in)
				m.exec("INSERT INTO src (id, pad) VALUES "+strings.TrimSuffix(strings.Repeat("(?, ?),", len(in.ids)), ","), args...)
				in.acked = true
			}
		}
		backlog := int64(0)
		for _, tb := range crashTables {
			backlog += m.int("SELECT COUNT(*) FROM " + tb)
		}
		tokens := make(chan struct{}, crashBacklog)
		for range max(0, crashBacklog-int(backlog)) {
			tokens <- struct{}{}
		}

		conns := []*sql.Conn{mc}
		conn := func() *sql.Conn {
			c, err := db.Conn(ctx)
			if err != nil {
				t.Fatalf("cycle %d: connect: %v", cycle, err)
			}
			conns = append(conns, c)
			return c
		}
		var (
			killed atomic.Bool
			mu     sync.Mutex
			wg     sync.WaitGroup
		)
		unexpected := crashtest.NewUnexpected(killed.Load)
		report := unexpected.Report
		srcC, dstC := conn(), conn()
		wg.Go(func() {
			rr, rel, err := crashRelay(ctx, srcC, dstC, cycle, final)
			report("relayer", err)
			mu.Lock()
			recvs = append(recvs, rr...)
			relays = append(relays, rel...)
			inserts = append(inserts, rel...)
			mu.Unlock()
		})
		if final {
			wg.Wait() // the relayer drains src before the consumers drain t1..t3
		}
		for k := range crashConsumers {
			c := conn()
			order := append(slices.Clone(crashTables[k%3:]), crashTables[:k%3]...)
			wg.Go(func() {
				rr, err := crashConsume(ctx, c, cycle, k, order, final, tokens)
				report(fmt.Sprintf("consumer %d", k), err)
				mu.Lock()
				recvs = append(recvs, rr...)
				mu.Unlock()
			})
		}
		if !final {
			for p := 1; p <= crashProducers; p++ {
				c := conn()
				prng := rand.New(rand.NewPCG(seed, uint64(cycle*100+p)))
				wg.Go(func() {
					ins, err := crashProduce(ctx, c, cycle, p, &seqs[p], prng, tokens)
					report(fmt.Sprintf("producer %d", p), err)
					mu.Lock()
					inserts = append(inserts, ins...)
					mu.Unlock()
				})
			}
			// Fault injection: the kill comes at a random moment of the cycle.
			delay := time.Duration(50+rng.IntN(351)) * time.Millisecond
			kills = append(kills, delay)
			<-time.After(delay)
			killed.Store(true)
			s.kill()
			cancel()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(90 * time.Second):
			t.Fatalf("seed %d, cycle %d: clients did not finish", seed, cycle)
		}
		cancel()
		for _, c := range conns {
			c.Close()
		}
		db.Close()
		for _, u := range unexpected.Errors() {
			t.Errorf("seed %d, cycle %d: %s", seed, cycle, u)
		}
		if final {
			m2 := crashOpen(t, s)
			c, err := m2.Conn(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			m := &crashMain{t: t, ctx: t.Context(), c: c}
			for _, tb := range append(slices.Clone(crashTables), "src") {
				if n := m.int("SELECT COUNT(*) FROM " + tb); n != 0 {
					t.Errorf("%s has %d rows after the drain", tb, n)
				}
			}
			c.Close()
			m2.Close()
			s.stop()
			break
		}
		s.start()
	}

	sum := crashCheck(t, seed, cycles, inserts, recvs, replayIDs)
	t.Logf("kill delays: %v", kills)
	// Printed: shown by go test -v, and in the output of a failing package.
	fmt.Printf("crash test: %d cycles, %d inserts acked (rows; %d statements), %d consumes acked, %d redelivered after crash, %d lost, %d duplicated-after-ack; "+
		"%d consumes in doubt at a crash (not redelivered), %d owned rows redelivered, %d relayed INSERTs acked, %d replays dropped; seed %d, %v\n",
		cycles, sum.rowsAcked, sum.stmtsAcked, sum.consumesAcked, sum.redelivered, sum.lost, sum.dupAfterAck,
		sum.inDoubt, sum.ownedBack, sum.relaysAcked, replayed, seed, time.Since(began).Round(time.Millisecond))
}

type crashSummary struct {
	rowsAcked, stmtsAcked, consumesAcked, redelivered, lost, dupAfterAck, inDoubt, ownedBack, relaysAcked int
}

type crashKey struct {
	table string
	n     int64 // an id or a rowid
}

// crashCheck checks the history of a crash test; final is the cycle
// number of the drain.
func crashCheck(t *testing.T, seed uint64, final int, inserts []*crashInsert, recvs []*crashRecv, replayIDs map[int64]bool) crashSummary {
	t.Helper()
	var sum crashSummary
	fail := map[string]int{}
	errorf := func(kind, format string, args ...any) {
		fail[kind]++
		if fail[kind] <= 20 {
			t.Errorf("seed %d: %s: %s", seed, kind, fmt.Sprintf(format, args...))
		}
	}

	// What was sent, and in which cycles.
	sentCycles := map[crashKey][]int{}
	for _, in := range inserts {
		for _, id := range in.ids {
			k := crashKey{in.table, id}
			sentCycles[k] = append(sentCycles[k], in.cycle)
		}
		if in.acked {
			sum.stmtsAcked++
			sum.rowsAcked += len(in.ids)
			if in.relay {
				sum.relaysAcked++
			}
		}
	}

	sort.SliceStable(recvs, func(i, j int) bool {
		a, b := recvs[i], recvs[j]
		if a.cycle != b.cycle {
			return a.cycle < b.cycle
		}
		if a.worker != b.worker {
			return a.worker < b.worker
		}
		return a.seq < b.seq
	})

	// Identity: one id, one row; one row, one id.
	seen := map[crashKey]bool{}
	rowOf := map[crashKey]int64{}
	idOf := map[crashKey]int64{}
	for _, r := range recvs {
		if r.acked {
			sum.consumesAcked++
		}
		if !r.hasID {
			continue
		}
		k := crashKey{r.table, r.id}
		if replayIDs[r.id] {
			errorf("relay mark", "replayed relay INSERT (id %d) was delivered from %s in cycle %d", r.id, r.table, r.cycle)
		}
		if _, ok := sentCycles[k]; !ok && !replayIDs[r.id] {
			errorf("phantom row", "id %d delivered from %s (rowid %d, cycle %d) was never inserted there", r.id, r.table, r.rowid, r.cycle)
		}
		seen[k] = true
		if old, ok := rowOf[k]; ok && old != r.rowid {
			errorf("duplicated insert", "id %d is in %s twice, as rowids %d and %d (cycle %d)", r.id, r.table, old, r.rowid, r.cycle)
		}
		rowOf[k] = r.rowid
		rk := crashKey{r.table, r.rowid}
		if old, ok := idOf[rk]; ok && old != r.id {
			errorf("rowid reused", "%s rowid %d held id %d, then id %d (cycle %d)", r.table, r.rowid, old, r.id, r.cycle)
		}
		idOf[rk] = r.id
	}

	// No acknowledged INSERT is missing; an INSERT is all there or not at all.
	for _, in := range inserts {
		n := 0
		var missing []int64
		for _, id := range in.ids {
			if seen[crashKey{in.table, id}] {
				n++
			} else {
				missing = append(missing, id)
			}
		}
		if in.acked && n != len(in.ids) {
			sum.lost += len(missing)
			errorf("lost", "INSERT into %s acknowledged in cycle %d: ids %v never delivered", in.table, in.cycle, missing)
		}
		if !in.acked && !in.relay && n != 0 && n != len(in.ids) {
			errorf("torn insert", "unacknowledged INSERT into %s in cycle %d: ids %v missing, %d of %d there", in.table, in.cycle, missing, n, len(in.ids))
		}
		if in.table == "src" && in.acked {
			for _, id := range in.ids {
				if !seen[crashKey{"t3", id}] {
					errorf("relay lost", "src id %d (inserted in cycle %d) never reached t3", id, in.cycle)
				}
			}
		}
	}

	// Per row: never twice in one server lifetime, never again after an
	// acknowledged consume, and back after a crash unless its consume was
	// requested.
	byRow := map[crashKey][]*crashRecv{}
	var rowKeys []crashKey
	for _, r := range recvs {
		k := crashKey{r.table, r.rowid}
		if byRow[k] == nil {
			rowKeys = append(rowKeys, k)
		}
		byRow[k] = append(byRow[k], r)
	}
	for _, k := range rowKeys {
		rs := byRow[k]
		for i, r := range rs {
			if i > 0 {
				prev := rs[i-1]
				if prev.cycle == r.cycle {
					errorf("delivered twice", "%s rowid %d (id %d) delivered twice in cycle %d (workers %d and %d)", k.table, k.n, r.id, r.cycle, prev.worker, r.worker)
				} else {
					sum.redelivered++
					if !prev.requested {
						sum.ownedBack++
					}
				}
				for _, p := range rs[:i] {
					if p.acked {
						sum.dupAfterAck++
						errorf("duplicated after ack", "%s rowid %d (id %d): consume acknowledged in cycle %d (worker %d), delivered again in cycle %d (worker %d)",
							k.table, k.n, r.id, p.cycle, p.worker, r.cycle, r.worker)
						break
					}
				}
			}
			if i == len(rs)-1 && !r.acked {
				switch {
				case r.cycle == final:
					errorf("drain", "%s rowid %d (id %d) was not consumed by the drain", k.table, k.n, r.id)
				case !r.requested:
					errorf("at-least-once", "%s rowid %d (id %d) owned by worker %d at the crash of cycle %d, never delivered again",
						k.table, k.n, r.id, r.worker, r.cycle)
				default:
					sum.inDoubt++ // its consume was under way at the crash: either is right
				}
			}
		}
	}

	// FIFO: within one connection and cycle, rowids of a table, and ids of
	// one producer in a table, arrive in increasing order.
	type wc struct {
		cycle, worker int
		table         string
	}
	lastRow := map[wc]int64{}
	type wcp struct {
		wc
		producer int64
	}
	lastID := map[wcp]int64{}
	for _, r := range recvs {
		k := wc{r.cycle, r.worker, r.table}
		if last, ok := lastRow[k]; ok && r.rowid <= last {
			errorf("FIFO", "worker %d, cycle %d, %s: rowid %d after rowid %d", r.worker, r.cycle, r.table, r.rowid, last)
		}
		lastRow[k] = r.rowid
		if r.hasID {
			kp := wcp{k, r.id / crashIDBase}
			if last, ok := lastID[kp]; ok && r.id <= last {
				errorf("FIFO", "worker %d, cycle %d, %s: id %d after id %d", r.worker, r.cycle, r.table, r.id, last)
			}
			lastID[kp] = r.id
		}
	}

	// Rowids never go backwards: a row inserted in cycle c has a rowid above
	// every rowid of its table seen in earlier cycles.
	maxBefore := map[string][]int64{} // table -> cycle -> max rowid seen in earlier cycles
	for _, tb := range append(slices.Clone(crashTables), "src") {
		m := make([]int64, final+2)
		for _, r := range recvs {
			if r.table == tb {
				m[r.cycle+1] = max(m[r.cycle+1], r.rowid)
			}
		}
		for c := 1; c < len(m); c++ {
			m[c] = max(m[c], m[c-1])
		}
		maxBefore[tb] = m
	}
	for _, r := range recvs {
		if !r.hasID {
			continue
		}
		cs := sentCycles[crashKey{r.table, r.id}]
		if len(cs) != 1 { // a row relayed again after a crash: its cycle is ambiguous
			continue
		}
		if mb := maxBefore[r.table][cs[0]]; r.rowid <= mb {
			errorf("rowid went backwards", "%s id %d inserted in cycle %d has rowid %d, but rowid %d was seen before that cycle", r.table, r.id, cs[0], r.rowid, mb)
		}
	}
	return sum
}

// TestWALTailCorruption damages the tail of Pebble's WAL while the server
// is down after a SIGKILL: the last synced batch (the last INSERT) is
// truncated or overwritten with garbage. Pebble v2.1.7 treats a bad tail of
// the newest WAL as the ambiguous end of a crashed log (record.ErrUnexpectedEOF
// with strictWALTail=false in replayWAL): it stops reading at the last good
// record and opens without an error. So the server starts, every row
// acknowledged before that batch is there, the damaged INSERT is gone as a
// whole (its rowids are handed out again), and the only trace is Pebble's
// "WAL ... stopped reading at offset" line, which the server logs at Info
// ("store recovery: ...") so that an operator sees it.
func TestWALTailCorruption(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt func(t *testing.T, path string, size int64)
	}{
		// The control: the same kill -9 without damage; Pebble reads the WAL to its end.
		{"intact", nil},
		{"truncated", func(t *testing.T, path string, size int64) {
			if err := os.Truncate(path, size-5); err != nil {
				t.Fatal(err)
			}
		}},
		{"garbage", func(t *testing.T, path string, size int64) {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			junk := make([]byte, 16)
			r := rand.New(rand.NewPCG(1, 2))
			for i := range junk {
				junk[i] = byte(r.Uint32())
			}
			if _, err := f.WriteAt(junk, size-16); err != nil {
				t.Fatal(err)
			}
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testWALTail(t, tc.corrupt)
		})
	}
}

// walNewest returns the newest WAL file (highest file number) of the store.
func walNewest(t *testing.T, dir string) (string, int64) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL in %s: %v", dir, err)
	}
	num := func(p string) int {
		n, err := strconv.Atoi(strings.TrimSuffix(filepath.Base(p), ".log"))
		if err != nil {
			t.Fatalf("unexpected WAL name %s", p)
		}
		return n
	}
	sort.Slice(logs, func(i, j int) bool { return num(logs[i]) < num(logs[j]) })
	fi, err := os.Stat(logs[len(logs)-1])
	if err != nil {
		t.Fatal(err)
	}
	return logs[len(logs)-1], fi.Size()
}

var walStopRE = regexp.MustCompile(`WAL (\d+).* stopped reading at offset: \(.*: (\d+)\); replayed (\d+) keys in (\d+) batches`)

func testWALTail(t *testing.T, corrupt func(*testing.T, string, int64)) {
	const inserts, perInsert, consumed = 10, 2, 5
	s := startServer(t, "--log-level", "debug")
	store := filepath.Join(s.dataDir, "store")
	g := newGConn(t, s, driverMode{name: "interpolated", params: []string{"interpolateParams=true"}})
	g.exec("CREATE TABLE w (id BIGINT NOT NULL, pad VARCHAR(64)) ENGINE=queue")
	var ids []string
	insert := func(i int) {
		var args []any
		for j := range perInsert {
			id := 1000 + i*perInsert + j
			ids = append(ids, strconv.Itoa(id))
			args = append(args, id, strings.Repeat("w", 20+j))
		}
		g.exec("INSERT INTO w (id, pad) VALUES (?, ?), (?, ?)", args...)
	}
	for i := range inserts {
		insert(i)
	}
	for i := range consumed {
		g.wantValue("1", "SELECT queue_wait('w', 0)")
		g.wantValue(strconv.Itoa(i+1), "SELECT queue_rowid()")
	}
	g.wantValue("1", "SELECT queue_end()") // consumes the last one: acknowledged

	// The last synced batch: one more INSERT. The client is alone and the
	// server idle, so the WAL grows by exactly that batch.
	wal, before := walNewest(t, store)
	insert(inserts)
	wal2, after := walNewest(t, store)
	if wal2 != wal || after-before <= 16 {
		t.Fatalf("the last INSERT went to %s (%d -> %d bytes), want %s and more than 16 bytes", wal2, before, after, wal)
	}
	g.wantValue(strconv.Itoa((inserts+1)*perInsert-consumed), "SELECT COUNT(*) FROM w")
	s.kill()

	if corrupt != nil {
		corrupt(t, wal, after)
	}
	s.start() // fails the test unless the server reports listening
	line, ok := s.logs.waitFor(time.Minute, func(l string) bool { return walStopRE.MatchString(l) })
	if !ok {
		t.Fatalf("no Pebble log line about replaying the WAL; log:\n%s", s.logs)
	}
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, "WAL") || strings.Contains(l, `"level":"WARN"`) || strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, "store opened") {
			t.Logf("recovery log: %s", l)
		}
	}
	if !strings.Contains(line, `"level":"INFO"`) || !strings.Contains(line, "store recovery: ") {
		t.Errorf("the WAL replay line is not an Info-level store recovery line: %s", line)
	}
	sm := walStopRE.FindStringSubmatch(line)
	if num, _ := strconv.Atoi(sm[1]); fmt.Sprintf("%06d.log", num) != filepath.Base(wal) {
		t.Errorf("Pebble replayed WAL %s, want %s", sm[1], filepath.Base(wal))
	}
	stopped, _ := strconv.ParseInt(sm[2], 10, 64)
	want := after // intact: read to the end
	keep := ids[consumed:]
	if corrupt != nil {
		// Damaged: Pebble stops at the end of the last good record, which is
		// where the WAL ended before the last INSERT, and drops that batch.
		want = before
		keep = ids[consumed : inserts*perInsert]
	}
	if stopped != want {
		t.Errorf("Pebble stopped reading the WAL at offset %d, want %d (the WAL was %d bytes before the last INSERT, %d after)", stopped, want, before, after)
	}
	t.Logf("WAL %s: %d bytes before the last INSERT, %d after; Pebble stopped reading at %d, replayed %s keys in %s batches",
		filepath.Base(wal), before, after, stopped, sm[3], sm[4])

	// Every row acknowledged before the last batch is there, in order, with
	// its rowid; the consumed ones stay consumed.
	g = newGConn(t, s, driverMode{name: "interpolated", params: []string{"interpolateParams=true"}})
	var got []string
	for _, r := range g.rows("SELECT id FROM w") {
		got = append(got, r[0])
	}
	if !slices.Equal(got, keep) {
		t.Errorf("rows after the restart:\n got  %v\n want %v", got, keep)
	}
	// The next INSERT continues right after the last row that survived.
	g.exec("INSERT INTO w (id, pad) VALUES (?, ?)", 1, "after")
	keep = append(slices.Clone(keep), "1")
	for i, id := range keep {
		g.wantValue("1", "SELECT queue_wait('w', 0)")
		g.wantValue(strconv.Itoa(consumed+1+i), "SELECT queue_rowid()")
		g.wantValue(id, "SELECT id FROM w")
	}
	g.wantValue("0", "SELECT queue_wait('w', 0)")
	g.wantValue("1", "SELECT queue_end()")

	// The recovered store survives another kill -9.
	s.kill()
	s.start()
	g = newGConn(t, s, driverMode{name: "interpolated", params: []string{"interpolateParams=true"}})
	g.wantValue("0", "SELECT COUNT(*) FROM w")
	g.exec("INSERT INTO w (id, pad) VALUES (?, ?)", 2, "again")
	g.wantValue("1", "SELECT queue_wait('w', 0)")
	g.wantValue(strconv.Itoa(consumed+len(keep)+1), "SELECT queue_rowid()")
	g.wantValue("1", "SELECT queue_end()")
}
