package sqlfront

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/q4mproxy/q4mproxy/queue"
)

// TestRoute is the routing table of README's "In front of a MySQL": SQL in,
// route (or error code) out, with jobs a queue table and users not one.
func TestRoute(t *testing.T) {
	log := newEngineLogger()
	db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), Logger: log, InitialDatabases: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := NewEngine(db, Config{Upstream: true, Logger: log})
	s := e.NewSession(1, "root", "127.0.0.1")
	if err := s.UseDB("test"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec(context.Background(), "CREATE TABLE jobs (id INT, what TEXT) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sql  string
		want Route
		code uint16 // an error instead
	}{
		{sql: "UPDATE `jobs` SET id = 2", want: RouteLocal}, // refused there, as Q4M refuses UPDATE
		{sql: "SELECT * FROM JOBS", want: RouteUpstream},    // table names are case-sensitive: not the queue table
		{sql: "select 'jobs' from users", want: RouteUpstream},
		{sql: "/* hint */ SELECT * FROM jobs", want: RouteLocal},
		{sql: "SELECT * FROM jobs", want: RouteLocal},
		{sql: "SELECT * FROM test.jobs WHERE id = 1", want: RouteLocal},
		{sql: "INSERT INTO jobs VALUES (1, 'a')", want: RouteLocal},
		{sql: "INSERT INTO jobs (id, what) VALUES (2, 'b'), (3, 'c')", want: RouteLocal},
		{sql: "DELETE FROM jobs WHERE id = 1", want: RouteLocal},
		{sql: "SELECT queue_wait('jobs', 5)", want: RouteLocal},
		{sql: "SELECT queue_end()", want: RouteLocal},
		{sql: "SELECT CONNECTION_ID()", want: RouteLocal},
		{sql: "SELECT @@queue_mmap_max", want: RouteLocal},
		{sql: "CREATE TABLE q2 (v INT) ENGINE=queue", want: RouteLocal},
		{sql: "CREATE TABLE t2 (v INT) ENGINE=InnoDB", want: RouteUpstream},
		{sql: "CREATE TABLE t3 (v INT)", want: RouteUpstream},
		{sql: "KILL QUERY 12", want: RouteLocal},
		{sql: "SHOW ENGINE QUEUE STATUS", want: RouteLocal},
		{sql: "SHOW VALVE STATUS", want: RouteLocal},
		{sql: "SHOW CREATE TABLE jobs", want: RouteLocal},
		{sql: "DESCRIBE jobs", want: RouteLocal},
		{sql: "SHOW FULL PROCESSLIST", want: RouteLocal},
		{sql: "SELECT * FROM users WHERE id = 1", want: RouteUpstream},
		{sql: "SELECT 1", want: RouteUpstream},
		{sql: "SELECT NOW(), VERSION()", want: RouteUpstream},
		{sql: "SELECT LAST_INSERT_ID()", want: RouteUpstream},
		{sql: "UPDATE orders SET paid = 1 WHERE id = 3", want: RouteUpstream},
		{sql: "WITH c AS (SELECT 1 AS x) SELECT * FROM c", want: RouteUpstream},
		{sql: "CALL do_things(1)", want: RouteUpstream},
		{sql: "SELECT * FROM JSON_TABLE('[1]', '$[*]' COLUMNS (x INT PATH '$')) AS t", want: RouteUpstream},
		{sql: "LOAD DATA LOCAL INFILE '/tmp/x' INTO TABLE users", want: RouteUpstream},
		{sql: "SELECT 1; SELECT 2", want: RouteUpstream},
		{sql: "BEGIN", want: RouteUpstream},
		{sql: "START TRANSACTION", want: RouteUpstream},
		{sql: "COMMIT", want: RouteUpstream},
		{sql: "ROLLBACK", want: RouteUpstream},
		{sql: "SAVEPOINT a", want: RouteUpstream},
		{sql: "CREATE DATABASE d2", want: RouteUpstream},
		{sql: "SHOW CREATE TABLE users", want: RouteUpstream},
		{sql: "USE test", want: RouteBoth},
		{sql: "SET NAMES utf8mb4", want: RouteBoth},
		{sql: "SET @a = 1", want: RouteBoth},
		{sql: "SET autocommit = 0", want: RouteBoth},
		{sql: "SET @n = (SELECT COUNT(*) FROM users)", want: RouteUpstream},
		{sql: "DROP DATABASE d2", want: RouteBoth},
		{sql: "SELECT ROW_COUNT()", want: RouteLastSide},
		{sql: "SELECT FOUND_ROWS()", want: RouteLastSide},
		{sql: "SHOW WARNINGS", want: RouteLastSide},
		{sql: "SHOW TABLES", want: RouteMerge},
		{sql: "SHOW FULL TABLES FROM test LIKE 'j%'", want: RouteMerge},
		{sql: "SHOW TABLE STATUS", want: RouteMerge},
		{sql: "SHOW ENGINES", want: RouteMerge},
		{sql: "SHOW VARIABLES LIKE 'queue%'", want: RouteMerge},
		{sql: "SELECT PLUGIN_VERSION FROM information_schema.plugins WHERE plugin_name = 'QUEUE'", want: RouteMerge},
		// Evaluated here over both sides' rows (catalogeval.go).
		{sql: "SELECT COUNT(*) FROM information_schema.TABLES", want: RouteMerge},
		{sql: "SELECT * FROM information_schema.TABLES ORDER BY TABLE_NAME", want: RouteMerge},
		{sql: "SELECT COUNT(*) FROM information_schema.COLUMNS WHERE TABLE_NAME = 'users'", want: RouteUpstream},
		{sql: "INSERT INTO jobs (id, what) SELECT id, name FROM users", want: RouteInsertSelect},
		{sql: "INSERT INTO users (name) SELECT what FROM jobs", code: ErrCodeNotSupported},
		{sql: "SELECT * FROM users JOIN jobs ON users.id = jobs.id", code: ErrCodeNotSupported},
		{sql: "SELECT * FROM users WHERE id IN (SELECT id FROM jobs)", code: ErrCodeNotSupported},
		{sql: "SELECT queue_wait('jobs') FROM users", code: ErrCodeNotSupported},
		{sql: "CREATE TABLE jobs (v INT) ENGINE=InnoDB", code: ErrCodeTableExists},
		// What mysqldump sends for a database holding both sides.
		{sql: "LOCK TABLES `jobs` READ /*!32311 LOCAL */", want: RouteLocal},
		{sql: "LOCK TABLES `users` READ /*!32311 LOCAL */", want: RouteUpstream},
		{sql: "LOCK TABLES `users` READ /*!32311 LOCAL */,`jobs` READ /*!32311 LOCAL */", want: RouteUpstreamPart},
		{sql: "UNLOCK TABLES", want: RouteUpstream},
		{sql: "select column_name, extra, generation_expression, data_type from information_schema.columns where table_schema=database() and table_name='jobs' order by ordinal_position", want: RouteLocal},
		{sql: "select column_name, extra, generation_expression, data_type from information_schema.columns where table_schema=database() and table_name='users' order by ordinal_position", want: RouteUpstream},
		{sql: "SELECT TRIGGER_NAME FROM INFORMATION_SCHEMA.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'jobs'", want: RouteLocal},
		{sql: "SELECT engine, table_type FROM INFORMATION_SCHEMA.TABLES WHERE table_schema = 'other' AND table_name = 'jobs'", want: RouteMerge},
		{sql: "SELECT queue_backup('nightly')", want: RouteLocal},
	} {
		if s.fastUpstream(tc.sql) {
			if r, err := s.routeParsed(tc.sql); r != RouteUpstream || err != nil {
				t.Errorf("%s: the fast path says upstream, the parse %v, %v", tc.sql, r, err)
			}
		}
		got, err := s.Route(tc.sql)
		switch {
		case tc.code != 0:
			if code := errorCode(err); code != tc.code {
				t.Errorf("%s: route %v, error %v; want error %d", tc.sql, got, err, tc.code)
			}
		case err != nil || got != tc.want:
			t.Errorf("%s: route %v, %v; want %v", tc.sql, got, err, tc.want)
		}
	}
	if up, err := s.UpstreamPart("LOCK TABLES `users` READ /*!32311 LOCAL */,`jobs` READ /*!32311 LOCAL */, t2 WRITE"); err != nil || up != "LOCK TABLES `users` READ LOCAL, `t2` WRITE" {
		t.Errorf("UpstreamPart of LOCK TABLES = %q, %v", up, err)
	}
	if _, err := s.RoutePrepared("LOCK TABLES users READ, jobs READ"); errorCode(err) != ErrCodeUnsupportedPS {
		t.Errorf("preparing a split LOCK TABLES: %v, want %d", err, ErrCodeUnsupportedPS)
	}
	// Without an upstream everything is local.
	solo := newSession(t, newEngine(t))
	if r, err := solo.Route("SELECT * FROM users"); r != RouteLocal || err != nil {
		t.Errorf("without an upstream: %v, %v", r, err)
	}
}

func errorCode(err error) uint16 {
	if e, ok := Cast(err); ok {
		return e.Code
	}
	return 0
}

// TestSelectPart: the SELECT of an INSERT ... SELECT, as the client wrote it.
func TestSelectPart(t *testing.T) {
	for _, tc := range []struct{ sql, want string }{
		{"INSERT INTO q (a, b) SELECT x, y FROM t WHERE z = 'a'", "SELECT x, y FROM t WHERE z = 'a'"},
		{"insert into q select * from t", "select * from t"},
		{"INSERT INTO q (SELECT a FROM t)", "(SELECT a FROM t)"},
		{"INSERT INTO q WITH c AS (SELECT 1) SELECT * FROM c", "WITH c AS (SELECT 1) SELECT * FROM c"},
		{"INSERT INTO `select` (a) SELECT 'select' FROM t", "SELECT 'select' FROM t"},
		{"INSERT /* select */ INTO q -- select\n SELECT 1", "SELECT 1"},
		{"INSERT INTO q SELECT a FROM t UNION SELECT b FROM u", "SELECT a FROM t UNION SELECT b FROM u"},
		{"INSERT INTO selection (a) SELECT 1", "SELECT 1"},
	} {
		got, ok := selectPart(tc.sql)
		if !ok || got != tc.want {
			t.Errorf("selectPart(%q) = %q, %v; want %q", tc.sql, got, ok, tc.want)
		}
	}
	if _, ok := selectPart("INSERT INTO q VALUES (1)"); ok {
		t.Error("selectPart found a SELECT in INSERT ... VALUES")
	}
}

// TestMergeRows: the upstream's columns, local rows by column name, no
// name twice, sorted when asked.
func TestMergeRows(t *testing.T) {
	local := &Result{Columns: textColumns("Variable_name", "Value"), Rows: [][]any{{"version", "5.7.99-q4mproxy"}, {"queue_mmap_max", "17179869184"}}}
	up := [][]any{{"version", "10.11.19-MariaDB"}, {"autocommit", "ON"}}
	got := MergeRows([]string{"Variable_name", "Value"}, up, local, true)
	want := [][]any{{"autocommit", "ON"}, {"queue_mmap_max", "17179869184"}, {"version", "10.11.19-MariaDB"}}
	if len(got.Rows) != len(want) {
		t.Fatalf("rows %v, want %v", got.Rows, want)
	}
	for i := range want {
		if got.Rows[i][0] != want[i][0] || got.Rows[i][1] != want[i][1] {
			t.Errorf("row %d: %v, want %v", i, got.Rows[i], want[i])
		}
	}
	// A local column the upstream's answer lacks is left out; one it has
	// and the local answer lacks is NULL.
	got = MergeRows([]string{"Tables_in_test", "Table_type", "Extra"}, [][]any{{"users", "BASE TABLE", "x"}},
		&Result{Columns: textColumns("Tables_in_test", "Table_type"), Rows: [][]any{{"jobs", "BASE TABLE"}}}, false)
	if len(got.Rows) != 2 || got.Rows[1][0] != "jobs" || got.Rows[1][2] != nil {
		t.Errorf("merged %v", got.Rows)
	}
}

// FuzzFastUpstream: the fast path never sends upstream a text that the
// parse would route elsewhere.
func FuzzFastUpstream(f *testing.F) {
	for _, seed := range []string{
		"SELECT * FROM users WHERE id = 1", "SELECT * FROM jobs", "INSERT INTO jobs VALUES (1, 'a')",
		"UPDATE t SET a = 'jobs'", "SELECT `jobs`.id FROM jobs", "SELECT queue_wait('jobs')",
		"SET @a = 1", "select connection_id()", "SELECT * FROM information_schema.PLUGINS",
		"INSERT INTO jobs SELECT * FROM users", "SELECT \"jobs\".* FROM users", "SHOW TABLES",
		"SELECT 'a\\'b' FROM users", "SELECT ROW_COUNT()", "with x as (select 1) select * from x",
	} {
		f.Add(seed)
	}
	log := newEngineLogger()
	db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), Logger: log, InitialDatabases: []string{"test"}})
	if err != nil {
		f.Fatal(err)
	}
	defer db.Close()
	e := NewEngine(db, Config{Upstream: true, Logger: log})
	s := e.NewSession(1, "root", "127.0.0.1")
	_ = s.UseDB("test")
	if _, err := s.Exec(context.Background(), "CREATE TABLE jobs (id INT, what TEXT) ENGINE=queue"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		if !s.fastUpstream(sql) {
			return
		}
		if r, err := s.routeParsed(sql); r != RouteUpstream || err != nil {
			t.Errorf("%q: the fast path says upstream, the parse %v, %v", sql, r, err)
		}
	})
}

// BenchmarkRouteUpstreamText: routing a text bound upstream whose literals
// change (sysbench's point select in the text protocol): the fast path
// against the parse it saves.
func BenchmarkRouteUpstreamText(b *testing.B) {
	log := newEngineLogger()
	db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), Logger: log, InitialDatabases: []string{"test"}})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	s := NewEngine(db, Config{Upstream: true, Logger: log}).NewSession(1, "root", "127.0.0.1")
	_ = s.UseDB("test")
	texts := make([]string, 1000) // more than the parse cache holds
	for i := range texts {
		texts[i] = fmt.Sprintf("SELECT c FROM sbtest1 WHERE id=%d", 4711+i)
	}
	for _, bc := range []struct {
		name  string
		route func(string) (Route, error)
	}{{"fast", s.Route}, {"parsed", s.routeParsed}} {
		b.Run(bc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if r, _ := bc.route(texts[i%len(texts)]); r != RouteUpstream {
					b.Fatal(r)
				}
			}
		})
	}
}
