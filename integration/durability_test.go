package integration

import (
	"database/sql"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// defaultMode is go-sql-driver/mysql as most programs use it: statements
// with arguments are prepared on the server, the others sent as text.
var defaultMode = driverMode{name: "default"}

// TestDurabilityKill9 kills the server with SIGKILL: nothing acknowledged
// may be lost.
func TestDurabilityKill9(t *testing.T) {
	testDurability(t, (*server).kill)
}

// TestDurabilitySIGTERM stops the server cleanly, with a connection still
// owning a row.
func TestDurabilitySIGTERM(t *testing.T) {
	testDurability(t, (*server).stop)
}

func testDurability(t *testing.T, down func(*server)) {
	const (
		writers   = 5
		inserts   = 10 // per writer
		perInsert = 10 // rows per INSERT
		total     = writers * inserts * perInsert
		consumed  = 100
	)
	s := startServer(t)
	ctx := t.Context()
	db := s.open(t)
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE d (id INT NOT NULL, w INT NOT NULL, pad VARCHAR(64)) ENGINE=queue")
	g.exec("CREATE TABLE drained (v INT) ENGINE=queue")

	// Several connections insert concurrently; each records the ids of the
	// INSERTs the server acknowledged, in order.
	acked := make([][]string, writers)
	errc := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			c, err := db.Conn(ctx)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			for i := range inserts {
				var ids []string
				var args []any
				for j := range perInsert {
					id := (w+1)*1000 + i*perInsert + j
					ids = append(ids, strconv.Itoa(id))
					args = append(args, id, w, strings.Repeat("x", j))
				}
				q := "INSERT INTO d (id, w, pad) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?),", perInsert), ",")
				if _, err := c.ExecContext(ctx, q, args...); err != nil {
					errc <- err
					return
				}
				acked[w] = append(acked[w], ids...)
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}

	// The queue's order: all acknowledged rows, each writer's in the order
	// it wrote them, each INSERT's rows next to each other.
	var order []string
	for _, r := range g.rows("SELECT id FROM d") {
		order = append(order, r[0])
	}
	checkOrder(t, order, acked, perInsert)
	if len(order) != total {
		t.Fatalf("%d rows in the queue, want %d", len(order), total)
	}

	// Consume the first rows, reading their rowids: the i-th row ever
	// inserted has rowid i.
	for i := range consumed {
		g.wantValue("1", "SELECT queue_wait('d', 0)")
		g.wantValue(strconv.Itoa(i+1), "SELECT queue_rowid()")
		g.wantValue(order[i], "SELECT id FROM d")
	}
	g.wantValue("1", "SELECT queue_end()")
	// A table whose every row was consumed: its next rowid must not restart.
	g.exec("INSERT INTO drained (v) VALUES (1), (2), (3)")
	for i := 1; i <= 3; i++ {
		g.wantValue("1", "SELECT queue_wait('drained', 0)")
		g.wantValue(strconv.Itoa(i), "SELECT queue_rowid()")
	}
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("0", "SELECT COUNT(*) FROM drained")

	// A live connection owns the next row when the server goes down.
	holder := newGConn(t, s, defaultMode)
	holder.wantValue("1", "SELECT queue_wait('d', 0)")
	holder.wantValue(strconv.Itoa(consumed+1), "SELECT queue_rowid()")
	holder.wantValue(order[consumed], "SELECT id FROM d")
	g.wantValue(strconv.Itoa(total-consumed), "SELECT COUNT(*) FROM d") // owned rows count
	g.wantValue(strconv.Itoa(total-consumed-1), "SELECT COUNT(*) FROM d WHERE id > 0")

	down(s)
	s.restart()

	g = newGConn(t, s, defaultMode)
	// Every unconsumed row is back, the owned one in its old place (at least
	// once delivery); consumed rows are gone for good.
	var after []string
	for _, r := range g.rows("SELECT id FROM d") {
		after = append(after, r[0])
	}
	if !reflect.DeepEqual(after, order[consumed:]) {
		t.Errorf("rows after restart (%d):\n got  %v\n want %v", len(after), after, order[consumed:])
	}
	g.wantValue(strconv.Itoa(total-consumed), "SELECT COUNT(*) FROM d")

	// New rows get the next rowids, never reused ones.
	g.exec("INSERT INTO d (id, w) VALUES (?, ?)", 99999, 9)
	g.exec("INSERT INTO drained (v) VALUES (?)", 4)
	g.wantValue("1", "SELECT queue_wait('drained', 0)")
	g.wantValue("4", "SELECT queue_rowid()")
	g.wantValue("4", "SELECT v FROM drained")

	// Same rowids as before the restart, in FIFO order.
	want := append(append([]string(nil), order[consumed:]...), "99999")
	for i, id := range want {
		rowid := strconv.Itoa(consumed + 1 + i)
		if got := g.value("SELECT queue_wait('d', 0)"); got != "1" {
			t.Fatalf("row %d: queue_wait = %s, want 1", i, got)
		}
		if got := g.value("SELECT queue_rowid()"); got != rowid {
			t.Errorf("row %d (id %s): queue_rowid = %s, want %s", i, id, got, rowid)
		}
		g.wantValue(id, "SELECT id FROM d")
	}
	g.wantValue("0", "SELECT queue_wait('d', 0)")
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("0", "SELECT COUNT(*) FROM d")
}

// checkOrder checks a queue's rows against what each writer had
// acknowledged: the same rows, each writer's in its order, and the rows of
// one INSERT (perInsert of them) next to each other.
func checkOrder(t *testing.T, order []string, acked [][]string, perInsert int) {
	t.Helper()
	pos := make(map[string]int, len(order))
	for i, id := range order {
		if _, dup := pos[id]; dup {
			t.Errorf("row %s is in the queue twice", id)
		}
		pos[id] = i
	}
	n := 0
	for w, ids := range acked {
		n += len(ids)
		for i, id := range ids {
			p, ok := pos[id]
			if !ok {
				t.Errorf("acknowledged row %s (writer %d) is missing", id, w)
				continue
			}
			if i > 0 && i%perInsert != 0 && p != pos[ids[i-1]]+1 {
				t.Errorf("row %s is at %d, not right after %s of the same INSERT (at %d)", id, p, ids[i-1], pos[ids[i-1]])
			}
			if i > 0 && p < pos[ids[i-1]] {
				t.Errorf("writer %d: row %s is before %s", w, id, ids[i-1])
			}
		}
	}
	if n != len(order) {
		t.Errorf("%d rows in the queue, %d acknowledged", len(order), n)
	}
}

// TestDurabilitySchema checks that databases, tables and their definitions
// survive a clean restart and a kill -9, and that dropped ones stay dropped.
func TestDurabilitySchema(t *testing.T) {
	standaloneOnly(t, "SHOW DATABASES and SHOW TABLES list the upstream's too")
	s := startServer(t)
	g := newGConn(t, s, defaultMode)
	for _, q := range []string{
		"CREATE DATABASE db2",
		"CREATE TABLE db2.t1 (a INT NOT NULL, b VARCHAR(10) DEFAULT 'z', c DOUBLE, d DATETIME) ENGINE=queue",
		"CREATE TABLE db2.t2 (x BLOB, y TINYINT NOT NULL DEFAULT '-3') ENGINE=queue COMMENT='second'",
		"CREATE TABLE test.t3 (y DECIMAL(6,3)) ENGINE=queue",
		"CREATE TABLE test.gone (y INT) ENGINE=queue",
		"CREATE DATABASE db3",
		"CREATE TABLE db3.t (y INT) ENGINE=queue",
		"INSERT INTO db2.t1 (a, c, d) VALUES (1, 2.5, '2020-01-02 03:04:05')",
		"DROP TABLE test.gone",
		"DROP DATABASE db3",
	} {
		g.exec(q)
	}
	tables := []string{"db2.t1", "db2.t2", "test.t3"}
	creates := map[string]string{}
	for _, tb := range tables {
		creates[tb] = g.rows("SHOW CREATE TABLE " + tb)[0][1]
	}

	for _, restart := range []struct {
		name string
		down func(*server)
	}{{"SIGTERM", (*server).stop}, {"kill -9", (*server).kill}} {
		restart.down(s)
		s.restart()
		g := newGConn(t, s, defaultMode)
		g.wantRows("SHOW DATABASES", nil, []string{"db2"}, []string{"test"})
		g.wantRows("SHOW TABLES FROM db2", nil, []string{"t1"}, []string{"t2"})
		g.wantRows("SHOW TABLES", nil, []string{"t3"})
		for _, tb := range tables {
			if got := g.rows("SHOW CREATE TABLE " + tb)[0][1]; got != creates[tb] {
				t.Errorf("after %s: SHOW CREATE TABLE %s:\n got  %s\n want %s", restart.name, tb, got, creates[tb])
			}
		}
		g.wantRows("SELECT * FROM db2.t1", nil, []string{"1", "z", "2.5", "2020-01-02 03:04:05"})
		_, err := g.execErr("SELECT * FROM gone")
		wantMySQLError(t, err, 1146, "42S02", "Table 'test.gone' doesn't exist", false)

		// A connection whose default database is db2.
		c := s.conn(t)
		if _, err := c.ExecContext(t.Context(), "USE db2"); err != nil {
			t.Fatalf("after %s: USE db2: %v", restart.name, err)
		}
		g2 := &gconn{t: t, c: c, m: defaultMode}
		g2.wantValue("db2", "SELECT DATABASE()")
		g2.wantRows("SHOW TABLES", nil, []string{"t1"}, []string{"t2"})
		_, err = g2.execErr("USE db3")
		wantMySQLError(t, err, 1049, "42000", "Unknown database 'db3'", false)
	}
	// A row in a restored table can still be consumed.
	g = newGConn(t, s, defaultMode)
	g.wantValue("1", "SELECT queue_wait('db2.t1', 0)")
	g.wantValue("1", "SELECT queue_rowid()")
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("0", "SELECT COUNT(*) FROM db2.t1")
}

// TestShutdownGraceful sends SIGTERM while one connection is blocked in
// queue_wait and another owns a row: the waiter gets an error (or a closed
// connection) at once, not after its 60 s, the server exits 0, and the
// owned row is there again after a restart.
func TestShutdownGraceful(t *testing.T) {
	// A shutdown timeout longer than the wait: a server that let the wait
	// run would take its 60 s, not the default 10 s of --shutdown-timeout,
	// so the bounds below can leave a loaded machine room and still tell.
	s := startServer(t, "--log-level", "debug", "--shutdown-timeout", "2m")
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE t (v VARCHAR(10)) ENGINE=queue")
	g.exec("INSERT INTO t (v) VALUES ('only')")
	g.wantValue("1", "SELECT queue_wait('t', 0)")
	g.wantRows("SELECT v FROM t", nil, []string{"only"})

	waiter := s.conn(t)
	type result struct {
		v   sql.NullInt64
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		var r result
		r.err = waiter.QueryRowContext(t.Context(), "SELECT queue_wait('t', 60)").Scan(&r.v)
		r.at = time.Now()
		res <- r
	}()
	// The server logs each statement at debug level as it starts it.
	if _, ok := s.logs.waitFor(time.Minute, func(l string) bool {
		return strings.Contains(l, `"msg":"statement"`) && strings.Contains(l, "queue_wait('t', 60)")
	}); !ok {
		t.Fatal("the server did not log the blocking queue_wait")
	}
	select {
	case r := <-res:
		t.Fatalf("queue_wait('t', 60) returned before the shutdown: %v, %v", r.v, r.err)
	default:
	}

	sigterm := time.Now()
	s.stop() // SIGTERM; fails the test unless the exit status is 0
	exited := time.Since(sigterm)
	if exited > 30*time.Second {
		t.Errorf("the server took %v to exit after SIGTERM", exited)
	}
	select {
	case r := <-res:
		if r.err == nil {
			t.Errorf("queue_wait('t', 60) returned %v during the shutdown, want an error", r.v)
		}
		var me *mysql.MySQLError
		if errors.As(r.err, &me) {
			wantMySQLError(t, r.err, 1053, "08S01", "Server shutdown in progress", false)
		}
		if d := r.at.Sub(sigterm); d > 30*time.Second {
			t.Errorf("the blocked queue_wait ended %v after SIGTERM", d)
		}
		t.Logf("blocked queue_wait ended %v after SIGTERM with %v; server exited after %v", r.at.Sub(sigterm), r.err, exited)
	case <-time.After(time.Minute):
		t.Fatal("the blocked queue_wait did not end within a minute after the server exited")
	}

	s.restart()
	g = newGConn(t, s, defaultMode)
	g.wantRows("SELECT v FROM t", nil, []string{"only"})
	g.wantValue("1", "SELECT queue_wait('t', 0)")
	g.wantValue("1", "SELECT queue_rowid()")
	g.wantValue("only", "SELECT v FROM t")
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("0", "SELECT COUNT(*) FROM t")
}

// TestDurabilityKill9DuringInserts kills the server while connections are
// inserting: every acknowledged INSERT survives; one that was in flight is
// there entirely or not at all; rowids stay dense and in FIFO order.
func TestDurabilityKill9DuringInserts(t *testing.T) {
	const (
		writers       = 4
		perInsert     = 10
		maxInserts    = 500 // per writer; the kill comes long before
		minAcked      = 5   // per writer before the kill
		known         = 20  // rows inserted first, the first consumedFirst of them consumed
		consumedFirst = 5
	)
	s := startServer(t)
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE d (id INT NOT NULL, w INT NOT NULL) ENGINE=queue")
	var knownIDs []string
	for i := range known {
		g.exec("INSERT INTO d (id, w) VALUES (?, ?)", i, -1)
		knownIDs = append(knownIDs, strconv.Itoa(i))
	}
	for range consumedFirst {
		g.wantValue("1", "SELECT queue_wait('d', 0)")
	}
	g.wantValue("1", "SELECT queue_end()")

	ctx := t.Context()
	db := s.open(t)
	var (
		sent  = make([][][]string, writers) // batches each writer sent, in order
		acked = make([]int, writers)        // how many of them were acknowledged
	)
	progress := make(chan int, writers*maxInserts)
	var wg sync.WaitGroup
	for w := range writers {
		c, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer c.Close()
			for i := range maxInserts {
				var ids []string
				var args []any
				for j := range perInsert {
					id := 100000*(w+1) + i*perInsert + j
					ids = append(ids, strconv.Itoa(id))
					args = append(args, id, w)
				}
				sent[w] = append(sent[w], ids)
				q := "INSERT INTO d (id, w) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?),", perInsert), ",")
				if _, err := c.ExecContext(ctx, q, args...); err != nil {
					return // the server is gone
				}
				acked[w]++
				progress <- w
			}
		})
	}
	counts := make([]int, writers)
	deadline := time.After(30 * time.Second)
	for ready := 0; ready < writers; {
		select {
		case w := <-progress:
			counts[w]++
			if counts[w] == minAcked {
				ready++
			}
		case <-deadline:
			t.Fatalf("writers too slow: %v inserts acknowledged", counts)
		}
	}
	s.kill()
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("writers did not notice the kill")
	}
	s.restart()

	g = newGConn(t, s, defaultMode)
	var after []string
	for _, r := range g.rows("SELECT id FROM d") {
		after = append(after, r[0])
	}
	if len(after) < known-consumedFirst || !reflect.DeepEqual(after[:known-consumedFirst], knownIDs[consumedFirst:]) {
		t.Fatalf("rows from before the writers: got %v..., want %v", after[:min(len(after), known-consumedFirst)], knownIDs[consumedFirst:])
	}
	rest := after[known-consumedFirst:]
	pos := make(map[string]int, len(rest))
	for i, id := range rest {
		if _, dup := pos[id]; dup {
			t.Errorf("row %s is there twice", id)
		}
		pos[id] = i
	}
	total, inflight := 0, 0
	for w := range writers {
		for b, ids := range sent[w] {
			present := 0
			for _, id := range ids {
				if _, ok := pos[id]; ok {
					present++
				}
			}
			switch {
			case b < acked[w] && present != len(ids):
				t.Errorf("writer %d: acknowledged INSERT %d has %d of its %d rows", w, b, present, len(ids))
			case b >= acked[w] && present != 0 && present != len(ids):
				t.Errorf("writer %d: unacknowledged INSERT %d is partly there (%d of %d rows)", w, b, present, len(ids))
			}
			if present == len(ids) {
				if b >= acked[w] {
					inflight++
				}
				total += present
				first := pos[ids[0]]
				for j, id := range ids {
					if pos[id] != first+j {
						t.Errorf("writer %d: rows of INSERT %d are not next to each other", w, b)
						break
					}
				}
				if b > 0 && pos[sent[w][b-1][0]] > first {
					t.Errorf("writer %d: INSERT %d comes before INSERT %d", w, b, b-1)
				}
			}
		}
	}
	if total != len(rest) {
		t.Errorf("%d rows after the restart are not from any INSERT sent", len(rest)-total)
	}
	t.Logf("acknowledged INSERTs per writer: %v; unacknowledged ones that survived: %d; rows: %d", acked, inflight, len(after))

	// Rowids: dense, in FIFO order, continuing after the consumed ones; the
	// next INSERT continues after the last one.
	g.exec("INSERT INTO d (id, w) VALUES (?, ?)", -1, -1)
	want := append(after, "-1")
	for i, id := range want {
		if got := g.value("SELECT queue_wait('d', 0)"); got != "1" {
			t.Fatalf("row %d: queue_wait = %s, want 1", i, got)
		}
		if got, rowid := g.value("SELECT queue_rowid()"), strconv.Itoa(consumedFirst+1+i); got != rowid {
			t.Fatalf("row %d (id %s): queue_rowid = %s, want %s", i, id, got, rowid)
		}
		g.wantValue(id, "SELECT id FROM d")
	}
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("0", "SELECT COUNT(*) FROM d")
}
