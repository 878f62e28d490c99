package integration

import (
	"context"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/metricstest"
)

// Operations with the upstream queue store (--queue-store upstream): what
// each node reports of the shared queues. The rows of a table (and the age
// of its oldest row) are the whole table's, read from the database by every
// node; owned rows, blocked waiters and every counter are each node's own.

// TestUpstreamStoreMetrics: two nodes over one store, each with its
// /metrics, scraped with net/http and parsed with expfmt; queue_stats,
// SHOW STATUS, COUNT(*) and information_schema through go-sql-driver and
// the mysql CLI.
func TestUpstreamStoreMetrics(t *testing.T) {
	nodes, _ := startNodes(t, 2, "--http-listen", "127.0.0.1:0")
	baseA, baseB := nodes[0].httpBase(t), nodes[1].httpBase(t)
	m := driverModes[1]
	a, b := newGConn(t, nodes[0], m), newGConn(t, nodes[1], m)
	a.exec("CREATE TABLE ms (v INT) ENGINE=queue")
	a.exec("CREATE TABLE mse (v INT) ENGINE=queue")
	eventually(t, time.Minute, "the tables on node b", func() bool {
		_, err := b.execErr("SELECT COUNT(*) FROM mse") // created last
		return err == nil
	})
	b.exec("INSERT INTO ms VALUES (1), (2), (3)")
	a.exec("INSERT INTO ms VALUES (4)")

	consumer := newGConn(t, nodes[0], m) // owns a row on node a
	consumer.wantValue("1", "SELECT queue_wait('ms', 5)")
	waiter := newGConn(t, nodes[1], m) // blocked on node b
	done := make(chan error, 1)
	go func() {
		_, err := waiter.c.ExecContext(context.Background(), "SELECT queue_wait('mse', 60)")
		done <- err
	}()

	ms := []string{"db", "test", "table", "ms"}
	mse := []string{"db", "test", "table", "mse"}
	var ma, mb metricstest.Metrics
	eventually(t, time.Minute, "node b's blocked queue_wait in q4mproxy_queue_waiters", func() bool {
		select {
		case err := <-done:
			t.Fatalf("node b's queue_wait('mse', 60) returned at once: %v", err)
		default:
		}
		mb = metricstest.Scrape(t, baseB)
		v, _ := mb.Value("q4mproxy_queue_waiters", mse...)
		return v == 1
	})
	// The rows are each node's count of the table, at most a second old
	// (the count is cached: scrapes in between cost the database nothing).
	for _, base := range []string{baseA, baseB} {
		eventually(t, time.Minute, "4 rows in q4mproxy_queue_rows at "+base, func() bool {
			v, _ := metricstest.Scrape(t, base).Value("q4mproxy_queue_rows", ms...)
			return v == 4
		})
	}
	ma, mb = metricstest.Scrape(t, baseA), metricstest.Scrape(t, baseB)
	for _, n := range []struct {
		name string
		m    metricstest.Metrics
	}{{"a", ma}, {"b", mb}} {
		n.m.Want(t, 4, "q4mproxy_queue_rows", ms...) // the table's: every node's rows
		if v, ok := n.m.Value("q4mproxy_queue_oldest_row_age_seconds", ms...); !ok || v < 0 || v > 600 {
			t.Errorf("node %s: oldest row age %v, %v", n.name, v, ok)
		}
		if _, ok := n.m.Value("q4mproxy_queue_bytes", ms...); ok {
			t.Errorf("node %s: q4mproxy_queue_bytes exported for the upstream store, which does not know it", n.name)
		}
		if _, ok := n.m.Value("q4mproxy_pebble_disk_usage_bytes"); ok {
			t.Errorf("node %s: Pebble metrics without Pebble", n.name)
		}
	}
	// Each node's own.
	ma.Want(t, 1, "q4mproxy_queue_owned_rows", ms...)
	mb.Want(t, 0, "q4mproxy_queue_owned_rows", ms...)
	ma.Want(t, 0, "q4mproxy_queue_waiters", mse...)
	ma.Want(t, 1, "q4mproxy_queue_rows_inserted_total", ms...)
	mb.Want(t, 3, "q4mproxy_queue_rows_inserted_total", ms...)
	ma.Want(t, 1, "q4mproxy_queue_waits_total", "table", "ms", "result", "immediate")
	mb.Want(t, 0, "q4mproxy_queue_waits_total", "table", "ms", "result", "immediate")
	ma.Want(t, 1, "q4mproxy_queue_wait_duration_seconds", "result", "row")

	// The consumer ends its row on node a: the table's rows drop on both
	// nodes (within the one-second interval of each node's count).
	consumer.wantValue("1", "SELECT queue_end()")
	for _, base := range []string{baseA, baseB} {
		eventually(t, time.Minute, "3 rows in q4mproxy_queue_rows at "+base, func() bool {
			v, _ := metricstest.Scrape(t, base).Value("q4mproxy_queue_rows", ms...)
			return v == 3
		})
	}
	ma = metricstest.Scrape(t, baseA)
	ma.Want(t, 1, "q4mproxy_queue_rows_consumed_total", ms...)
	ma.Want(t, 0, "q4mproxy_queue_owned_rows", ms...)
	metricstest.Scrape(t, baseB).Want(t, 0, "q4mproxy_queue_rows_consumed_total", ms...)

	// Through SQL: COUNT(*), information_schema and SHOW STATUS's
	// Queue_rows and Queue_tables are the table's on every node;
	// queue_stats and the other Queue_* counters the node's own.
	for _, n := range []struct {
		name     string
		c        *gconn
		inserted string
	}{{"a", a, "1"}, {"b", b, "3"}} {
		n.c.wantValue("3", "SELECT COUNT(*) FROM ms")
		n.c.wantValue("3", "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'test' AND TABLE_NAME = 'ms'")
		eventually(t, time.Minute, "node "+n.name+"'s Queue_rows", func() bool {
			return n.c.value("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'Queue_rows'") == "3"
		})
		status := map[string]string{}
		for _, r := range n.c.rows("SHOW GLOBAL STATUS LIKE 'Queue%'") {
			status[r[0]] = r[1]
		}
		if status["Queue_tables"] != "2" || status["Queue_inserted"] != n.inserted {
			t.Errorf("node %s: Queue_tables %q, Queue_inserted %q; want 2, %s", n.name, status["Queue_tables"], status["Queue_inserted"], n.inserted)
		}
	}
	for _, n := range []struct {
		name string
		s    *server
		want string
	}{
		{"a", nodes[0], `rows_written: 1\nrows_removed: 1\nwait_immediate: 1\n`},
		{"b", nodes[1], `rows_written: 3\nrows_removed: 0\nwait_immediate: 0\n`},
	} {
		out, err := n.s.mysqlCLI(t, "SELECT queue_stats('test.ms');\n", "-N", "test")
		if err != nil || !strings.HasPrefix(strings.TrimSpace(out), n.want) {
			t.Errorf("node %s: queue_stats through the mysql CLI = %q, %v; want it to start with %q", n.name, out, err, n.want)
		}
	}

	// A row for node b's waiter, inserted on node a.
	a.exec("INSERT INTO mse VALUES (9)")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mb = metricstest.Scrape(t, baseB)
	mb.Want(t, 0, "q4mproxy_queue_waiters", mse...)
	mb.Want(t, 1, "q4mproxy_queue_owned_rows", mse...)
	mb.Want(t, 1, "q4mproxy_queue_waits_total", "table", "mse", "result", "delayed")
}

// TestUpstreamStoreReadyz: /readyz answers 503 while the store's database
// does not answer, and 200 again once it does. The database is a MariaDB of
// the test's own: it is frozen (SIGSTOP: the host answers TCP, the server
// nothing), thawed, then shut down.
func TestUpstreamStoreReadyz(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a MariaDB of its own")
	}
	db, err := startMariaDB()
	if err != nil {
		if mdbShared.missing && os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") != "1" {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if db.cmd != nil {
			_ = db.cmd.Process.Signal(syscall.SIGCONT)
		}
		db.stop()
		os.RemoveAll(db.dir)
	})
	s := startServer(t, "--upstream", db.addr, "--queue-store", "upstream", "--http-listen", "127.0.0.1:0")
	base := s.httpBase(t)
	code, body := metricstest.Get(t, base+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "store: open, its database answers") {
		t.Fatalf("/readyz with the database up: %d %q", code, body)
	}

	if err := db.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "/readyz 503 with the database frozen", func() bool {
		code, body = metricstest.Get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.HasPrefix(body, "store unreachable\n") || !strings.Contains(body, "store: unreachable (") {
		t.Errorf("/readyz with the database frozen: %q", body)
	}

	if err := db.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "/readyz 200 with the database thawed", func() bool {
		code, _ = metricstest.Get(t, base+"/readyz")
		return code == http.StatusOK
	})

	db.stop()
	eventually(t, time.Minute, "/readyz 503 with the database shut down", func() bool {
		code, body = metricstest.Get(t, base+"/readyz")
		return code == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "store: unreachable (") {
		t.Errorf("/readyz with the database shut down: %q", body)
	}
	// The node still lives and serves its probes.
	if code, _ := metricstest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with the database down: %d", code)
	}
}
