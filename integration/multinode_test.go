package integration

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Several q4mproxy processes (nodes) with --queue-store upstream serve the
// same queues, kept in the shared MariaDB.

var storeSeq atomic.Int64

// newStoreName returns the name of a fresh queue-store database of the
// shared MariaDB, dropped when the test ends.
func newStoreName(t testing.TB) string {
	store := fmt.Sprintf("q4m_store_%d_%d", os.Getpid(), storeSeq.Add(1))
	t.Cleanup(func() {
		if db, err := sql.Open("mysql", sharedMariaDB(t).dsn("root", "", "")); err == nil {
			_, _ = db.Exec("DROP DATABASE IF EXISTS " + store)
			db.Close()
		}
	})
	return store
}

// startNodes starts n nodes sharing a queue store of their own (a fresh
// database of the shared MariaDB), and returns them with the store's name.
func startNodes(t *testing.T, n int, extra ...string) ([]*server, string) {
	t.Helper()
	store := newStoreName(t)
	var nodes []*server
	for range n {
		nodes = append(nodes, startNode(t, store, extra...))
	}
	return nodes, store
}

func startNode(t *testing.T, store string, extra ...string) *server {
	t.Helper()
	return startServer(t, append([]string{"--upstream", mariadbAddr(t),
		"--queue-store", "upstream", "--queue-store-database", store}, extra...)...)
}

// TestMultiNodeQueue: a table created on one node is served by the others;
// rows inserted on one are consumed on another, FIFO; a row owned on one
// node is not given on another; abort and disconnect give it back; a
// blocked queue_wait on one node is woken by an INSERT on another (the
// wake-up latency is logged).
func TestMultiNodeQueue(t *testing.T) {
	nodes, _ := startNodes(t, 2)
	a, b := nodes[0].open(t), nodes[1].open(t)
	if _, err := a.Exec("CREATE TABLE mq (id BIGINT NOT NULL, sent BIGINT NOT NULL DEFAULT 0) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the table on node b", func() bool {
		_, err := b.Exec("INSERT INTO mq (id) VALUES (1), (2), (3)")
		return err == nil
	})
	ctx := context.Background()
	ca, cb := nodeConn(t, a), nodeConn(t, b)
	wantWait(t, ca, "mq", 1)
	wantOwned(t, ca, 1)
	wantWait(t, cb, "mq", 1)
	wantOwned(t, cb, 2) // row 1 is owned on node a
	if _, err := ca.ExecContext(ctx, "SELECT queue_abort()"); err != nil {
		t.Fatal(err)
	}
	other := nodes[0].open(t)
	c2 := nodeConn(t, other)
	wantWait(t, c2, "mq", 1)
	wantOwned(t, c2, 1) // back at its place
	// A client that disconnects gives its row back at once: a conditional
	// wait for that very row ends.
	c2.Close()
	other.Close()
	var r int
	if err := ca.QueryRowContext(ctx, "SELECT queue_wait('mq:id=1', 10)").Scan(&r); err != nil || r != 1 {
		t.Fatalf("queue_wait for the row of the client gone = %d, %v", r, err)
	}
	wantOwned(t, ca, 1)
	if _, err := ca.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	if _, err := cb.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow("SELECT COUNT(*) FROM mq").Scan(&n); err != nil || n != 1 {
		t.Fatalf("COUNT(*) on node b = %d, %v; want 1", n, err)
	}
	wantWait(t, cb, "mq", 1)
	wantOwned(t, cb, 3)
	if _, err := cb.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}

	// Cross-node wake-ups: a consumer blocked on node a, rows inserted on
	// node b one at a time.
	const rounds = 100
	var lat []time.Duration
	for i := range rounds {
		got := make(chan error, 1)
		go func() {
			var r int
			err := ca.QueryRowContext(ctx, "SELECT queue_wait('mq', 10)").Scan(&r)
			if err == nil && r != 1 {
				err = fmt.Errorf("queue_wait = %d", r)
			}
			got <- err
		}()
		// Insert once node a shows the consumer waiting.
		eventually(t, time.Minute, "the consumer blocked", func() bool { return waiting(t, a) })
		start := time.Now()
		if _, err := b.Exec("INSERT INTO mq (id) VALUES (?)", 100+i); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		lat = append(lat, time.Since(start))
		wantOwned(t, ca, 100+i)
		if _, err := ca.ExecContext(ctx, "SELECT queue_end()"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("cross-node wake-up (INSERT on b sent to queue_wait on a returned): %s", latencies(lat))
}

// waiting reports whether SHOW PROCESSLIST on db's node shows a client
// blocked in queue_wait.
func waiting(t *testing.T, db *sql.DB) bool {
	t.Helper()
	rows, err := db.Query("SHOW PROCESSLIST")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	found := false
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		for i, c := range cols {
			if c == "State" && vals[i].String == "Waiting in queue_wait" {
				found = true
			}
		}
	}
	return found
}

func latencies(ds []time.Duration) string {
	return fmt.Sprintf("%d samples, p50 %v, p99 %v, max %v", len(ds), percentile(ds, 50), percentile(ds, 99), slices.Max(ds))
}

func nodeConn(t *testing.T, db *sql.DB) *sql.Conn {
	t.Helper()
	c, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantWait(t *testing.T, c *sql.Conn, table string, want int) {
	t.Helper()
	var r int
	if err := c.QueryRowContext(context.Background(), "SELECT queue_wait(?, 0)", table).Scan(&r); err != nil || r != want {
		t.Fatalf("queue_wait(%s) = %d, %v; want %d", table, r, err, want)
	}
}

func wantOwned(t *testing.T, c *sql.Conn, id int) {
	t.Helper()
	var got int
	if err := c.QueryRowContext(context.Background(), "SELECT id FROM mq").Scan(&got); err != nil || got != id {
		t.Fatalf("owned row id = %d, %v; want %d", got, err, id)
	}
}

// TestMultiNodeKill: producers and consumers spread over two stable nodes
// and a third that is killed with SIGKILL at a random moment and started
// again, Q4MPROXY_KILL_CYCLES times (20 by default). Nothing acknowledged
// is lost: every row whose INSERT was acknowledged is delivered; no row is
// delivered again after its queue_end was acknowledged; the rows the
// killed node owned come back within the documented bound (30 s); the
// stable nodes never go longer than the bound without consuming.
func TestMultiNodeKill(t *testing.T) {
	cycles := 20
	if v := os.Getenv("Q4MPROXY_KILL_CYCLES"); v != "" {
		var err error
		if cycles, err = strconv.Atoi(v); err != nil {
			t.Fatal(err)
		}
	}
	const bound = 30 * time.Second
	nodes, store := startNodes(t, 2)
	pools := []*sql.DB{nodes[0].open(t), nodes[1].open(t)}
	if _, err := pools[0].Exec("CREATE TABLE kq (id BIGINT NOT NULL) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the table on node 1", func() bool {
		var n int
		return pools[1].QueryRow("SELECT COUNT(*) FROM kq").Scan(&n) == nil
	})

	var (
		mu        sync.Mutex
		inserted  = map[int64]bool{}      // acknowledged inserts
		delivered = map[int64]bool{}      // seen owned by a consumer
		ended     = map[int64]bool{}      // acknowledged queue_end
		orphaned  = map[int64]time.Time{} // owned on a killed node: when it died
		back      []time.Duration         // kill to delivery again
		stable    []time.Time             // acknowledged queue_ends on the stable nodes
		failures  []string
	)
	failf := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(failures) < 20 {
			failures = append(failures, fmt.Sprintf(format, args...))
		}
	}
	// got records a delivery.
	got := func(id int64) {
		mu.Lock()
		defer mu.Unlock()
		if ended[id] {
			failures = append(failures, fmt.Sprintf("row %d delivered again after its queue_end was acknowledged", id))
		}
		delivered[id] = true
		if at, ok := orphaned[id]; ok {
			back = append(back, time.Since(at))
			delete(orphaned, id)
		}
	}
	var (
		stopOwning    atomic.Bool           // the next stable consumer to get a row stops
		stoppedOwning = make(chan struct{}) // closed when one did
	)
	var nextID atomic.Int64
	produce := func(ctx context.Context, db *sql.DB) {
		for ctx.Err() == nil {
			id := nextID.Add(1)
			if _, err := db.ExecContext(ctx, "INSERT INTO kq (id) VALUES (?)", id); err == nil {
				mu.Lock()
				inserted[id] = true
				mu.Unlock()
			}
		}
	}
	// consume runs one consumer session until ctx ends or, on the node to
	// be killed (died set), its node dies.
	consume := func(ctx context.Context, db *sql.DB, died *atomic.Pointer[time.Time]) {
		c, err := db.Conn(ctx)
		if err != nil {
			return
		}
		defer discardConn(c) // it may own a row: disconnect, which gives it back
		for ctx.Err() == nil {
			var r int
			if err := c.QueryRowContext(ctx, "SELECT queue_wait('kq', 1)").Scan(&r); err != nil {
				if died == nil && ctx.Err() == nil {
					failf("queue_wait on a stable node: %v", err)
				}
				return
			}
			if r != 1 {
				continue
			}
			if died == nil && stopOwning.CompareAndSwap(true, false) {
				// Stopped while owning a row, as when ctx ends between
				// the queue_wait and the next statement (which then is
				// not sent): the row must come back.
				close(stoppedOwning)
				return
			}
			var id int64
			if err := c.QueryRowContext(ctx, "SELECT id FROM kq").Scan(&id); err != nil {
				if died == nil && ctx.Err() == nil {
					failf("SELECT of the owned row on a stable node: %v", err)
				}
				return // on the killed node: the row comes back, unknown
			}
			got(id)
			if _, err := c.ExecContext(context.Background(), "SELECT queue_end()"); err != nil {
				if died == nil {
					failf("queue_end on a stable node: %v", err)
					return
				}
				// Killed while owning id, its queue_end sent or not: the
				// row was consumed, or it comes back.
				at := time.Now()
				if d := died.Load(); d != nil {
					at = *d
				}
				mu.Lock()
				orphaned[id] = at
				mu.Unlock()
				return
			}
			mu.Lock()
			ended[id] = true
			if died == nil {
				stable = append(stable, time.Now())
			}
			mu.Unlock()
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, db := range pools {
		for range 2 {
			wg.Go(func() { produce(ctx, db) })
			wg.Go(func() { consume(ctx, db, nil) })
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	victims := make([]*server, 0, cycles)
	for range cycles {
		victim := startNode(t, store)
		victims = append(victims, victim)
		vdb, err := sql.Open("mysql", victim.dsn("test"))
		if err != nil {
			t.Fatal(err)
		}
		var died atomic.Pointer[time.Time]
		vctx, vcancel := context.WithCancel(ctx)
		var vwg sync.WaitGroup
		for range 2 {
			vwg.Go(func() { produce(vctx, vdb) })
			vwg.Go(func() { consume(vctx, vdb, &died) })
		}
		// Kill it at a random moment.
		time.Sleep(time.Duration(100+rng.IntN(700)) * time.Millisecond) // the moment to kill at, not synchronisation
		now := time.Now()
		died.Store(&now)
		victim.kill()
		vcancel()
		vwg.Wait()
		vdb.Close()
	}
	// One stable consumer stops while it owns a row (see consume), then
	// every one stops.
	stopOwning.Store(true)
	select {
	case <-stoppedOwning:
	case <-time.After(time.Minute):
		t.Error("no stable consumer got a row in a minute")
	}
	cancel()
	wg.Wait()
	var stall time.Duration
	for i := 1; i < len(stable); i++ {
		stall = max(stall, stable[i].Sub(stable[i-1]))
	}

	// Drain on node 0 until the table is empty. Every killed node's rows
	// are free by now or within the bound.
	drain, err := pools[0].Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer drain.Close()
	deadline := time.Now().Add(bound + 10*time.Second)
	for {
		var r int
		if err := drain.QueryRowContext(context.Background(), "SELECT queue_wait('kq', 1)").Scan(&r); err != nil {
			t.Fatal(err)
		}
		if r == 1 {
			var id int64
			if err := drain.QueryRowContext(context.Background(), "SELECT id FROM kq").Scan(&id); err != nil {
				t.Fatal(err)
			}
			got(id)
			if _, err := drain.ExecContext(context.Background(), "SELECT queue_end()"); err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			ended[id] = true
			mu.Unlock()
			continue
		}
		// COUNT(*) counts owned rows too: with every consumer stopped, an
		// empty table means the orphans not delivered again were consumed
		// by their last queue_end.
		var n int
		if err := pools[1].QueryRow("SELECT COUNT(*) FROM kq").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			mu.Lock()
			var open []int64 // acknowledged inserts without an acknowledged queue_end
			for id := range inserted {
				if !ended[id] {
					open = append(open, id)
				}
			}
			mu.Unlock()
			slices.Sort(open)
			t.Logf("diagnosis: rows owned on a killed node when it died and not delivered since: %v", slices.Sorted(maps.Keys(orphaned)))
			killDiagnosis(t, store, nodes, victims, open)
			t.Fatalf("%d rows still in the table %v after the last kill", n, bound)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failures {
		t.Error(f)
	}
	lostRows := 0
	for id := range inserted {
		if !delivered[id] {
			lostRows++
		}
	}
	if lostRows > 0 {
		t.Errorf("%d acknowledged rows never delivered", lostRows)
	}
	for _, d := range back {
		if d > bound {
			t.Errorf("a row owned on a killed node came back after %v, over the %v bound", d, bound)
		}
	}
	if stall > bound {
		t.Errorf("the stable nodes consumed nothing for %v, over the %v bound", stall, bound)
	}
	t.Logf("%d kill cycles: %d acknowledged rows, all delivered; %d owned on a killed node came back (kill to delivery: %s), %d were consumed by their last queue_end; stable nodes' longest pause %v",
		cycles, len(inserted), len(back), latenciesOrNone(back), len(orphaned), stall)
}

// killDiagnosis logs, for a failed TestMultiNodeKill, what the store holds
// (every row left with its owner, the registered nodes and whether their
// lock is free, the open InnoDB transactions and the upstream's sessions),
// which node (stable or killed, by its log) each node id was, the clients'
// sessions on the stable nodes (an idle owner shows as "owns test.kq rowid
// N") and the test's own record of the rows not consumed, so that a failure
// explains itself.
func killDiagnosis(t *testing.T, store string, stable, victims []*server, open []int64) {
	t.Helper()
	db, err := sql.Open("mysql", sharedMariaDB(t).dsn("root", "", store))
	if err != nil {
		t.Logf("diagnosis: %v", err)
		return
	}
	defer db.Close()
	h := sha256.Sum256([]byte(store))
	prefix := "q4m_node:" + hex.EncodeToString(h[:8]) + ":" // the nodes' lock names (queue/sqlstore)
	logQuery(t, db, "rows left (owner: the id of the node that owns it, 0: free)", "SELECT tid, rowid, owner, HEX(payload) FROM q4m_rows ORDER BY tid, rowid LIMIT 50")
	logQuery(t, db, "registered nodes", "SELECT id, started, IS_FREE_LOCK(CONCAT(?, id)) AS lock_free, IS_USED_LOCK(CONCAT(?, id)) AS lock_holder FROM q4m_nodes ORDER BY id", prefix, prefix)
	logQuery(t, db, "open InnoDB transactions", "SELECT trx_id, trx_state, trx_started, trx_mysql_thread_id, trx_rows_locked, trx_tables_locked, trx_query FROM information_schema.INNODB_TRX")
	logQuery(t, db, "upstream sessions on the store", "SELECT ID, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST WHERE DB = ?", store)
	var who []string
	for i, s := range append(slices.Clone(stable), victims...) {
		name := fmt.Sprintf("stable node %d", i)
		if i >= len(stable) {
			name = fmt.Sprintf("the node killed in cycle %d", i-len(stable)+1)
		}
		for line := range strings.SplitSeq(s.logs.String(), "\n") {
			var rec struct {
				Msg  string
				Node uint64
			}
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "queue store: node registered" {
				who = append(who, fmt.Sprintf("node id %d: %s", rec.Node, name))
			}
		}
	}
	t.Logf("diagnosis: node ids\n  %s", strings.Join(who, "\n  "))
	for i, s := range stable {
		pool, err := sql.Open("mysql", s.dsn(""))
		if err != nil {
			continue
		}
		logQuery(t, pool, fmt.Sprintf("SHOW PROCESSLIST on stable node %d", i), "SHOW PROCESSLIST")
		pool.Close()
	}
	t.Logf("diagnosis: acknowledged inserts without an acknowledged queue_end: %v", open)
}

// logQuery logs the result of q on db under title, one line a row.
func logQuery(t *testing.T, db *sql.DB, title, q string, args ...any) {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Logf("diagnosis: %s: %v", title, err)
		return
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var b strings.Builder
	fmt.Fprintf(&b, "diagnosis: %s\n  %s", title, strings.Join(cols, " | "))
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	for rows.Next() {
		if err := rows.Scan(ptrs...); err != nil {
			t.Logf("diagnosis: %s: %v", title, err)
			return
		}
		b.WriteString("\n  ")
		for i, v := range vals {
			if i > 0 {
				b.WriteString(" | ")
			}
			if v.Valid {
				b.WriteString(v.String)
			} else {
				b.WriteString("NULL")
			}
		}
	}
	t.Log(b.String())
}

// discardConn closes c's connection instead of putting it back in its
// pool: a session that may own a row ends by disconnecting, which gives
// the row back. Put back, it would stay in owner mode with its row, and the
// next user of the pool would inherit the row (its queue_wait consuming it)
// or leave it owned for good. A consumer stops so whenever its context ends
// between a queue_wait that got a row and the next statement: database/sql
// and go-sql-driver return the context's error without sending the
// statement, and without closing the connection.
func discardConn(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	c.Close()
}

func latenciesOrNone(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	return latencies(ds)
}

// TestForwardEmbeddedToUpstream moves a queue from a node with the
// embedded store to nodes sharing the upstream store, with q4m-forward:
// every row arrives once, in order, and is served by any of the new nodes.
func TestForwardEmbeddedToUpstream(t *testing.T) {
	const n = 300
	old := startServer(t, "--queue-store", "embedded")
	nodes, _ := startNodes(t, 2)
	gOld, gNew := newGConn(t, old, defaultMode), newGConn(t, nodes[0], defaultMode)
	gOld.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	gNew.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	fwdInsertIDs(t, gOld, "q", 0, n)
	fwdDrain(t, fwdDSN(old, "test", "q"), fwdDSN(nodes[0], "test", "q"))
	if c := fwdCount(old.open(t), "q"); c != 0 {
		t.Fatalf("%d rows left at the source", c)
	}
	// The other node serves them: the store is shared.
	fwdWantIDs(t, newGConn(t, nodes[1], defaultMode), "q", 0, n)
}
