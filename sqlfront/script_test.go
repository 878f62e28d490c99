package sqlfront

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/q4mproxy/q4mproxy/queue"
)

func newEngine(t *testing.T) *Engine {
	t.Helper()
	return newEngineFor(t, newEngineLogger())
}

func newEngineLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newEngineFor(t testing.TB, log *slog.Logger) *Engine {
	t.Helper()
	db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), Logger: log, InitialDatabases: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return NewEngine(db, Config{Version: "5.7.99-test", VersionComment: "test comment", Logger: log})
}

func newSession(t *testing.T, e *Engine) *Session {
	s := e.NewSession(7, "root", "127.0.0.1")
	if err := s.UseDB("test"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// render prints a result compactly: "col1,col2|v1,v2|v1,v2" or "ok N".
func render(r *Result) string {
	if !r.HasRows() {
		return fmt.Sprintf("ok %d", r.AffectedRows)
	}
	var parts []string
	var names []string
	for _, c := range r.Columns {
		names = append(names, c.Name)
	}
	parts = append(parts, strings.Join(names, ","))
	for _, row := range r.Rows {
		var vals []string
		for _, v := range row {
			if v == nil {
				vals = append(vals, "NULL")
			} else {
				vals = append(vals, toString(v))
			}
		}
		parts = append(parts, strings.Join(vals, ","))
	}
	return strings.Join(parts, "|")
}

// errCode returns the MySQL code the catalog gives err (Cast), 0 for no
// error, or -1 for an error the server would answer with 1105.
func errCode(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := Cast(err); ok {
		return int(e.Code)
	}
	return -1
}

// outcome runs sql on s and renders the result, or "ERR <code>".
func outcome(ctx context.Context, s *Session, sql string) string {
	r, err := s.Exec(ctx, sql)
	if err != nil {
		return fmt.Sprintf("ERR %d", errCode(err))
	}
	return render(r)
}

// sessionStep is a statement of one of several sessions, and its expected outcome.
type sessionStep struct {
	s         *Session
	sql, want string
}

func runSessionSteps(t *testing.T, steps []sessionStep) {
	t.Helper()
	for _, st := range steps {
		if got := outcome(t.Context(), st.s, st.sql); got != st.want {
			t.Fatalf("%q: got %q want %q", st.sql, got, st.want)
		}
	}
}

type step struct {
	sql  string
	want string // rendered result, or "ERR <code>"
}

type script struct {
	name  string
	steps []step
}

func runScripts(t *testing.T, scripts []script) {
	for _, sc := range scripts {
		t.Run(sc.name, func(t *testing.T) {
			s := newSession(t, newEngine(t))
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			for i, st := range sc.steps {
				if got := outcome(ctx, s, st.sql); got != st.want {
					t.Fatalf("step %d %q:\n got %q\nwant %q", i, st.sql, got, st.want)
				}
			}
		})
	}
}

const mk = "CREATE TABLE q (v1 int not null, v2 varchar(255)) ENGINE=queue"

func TestStatements(t *testing.T) {
	runScripts(t, []script{
		{"quick start", []step{
			{mk, "ok 0"},
			{`INSERT INTO q (v1, v2) VALUES (3, "hello world!")`, "ok 1"},
			{"SELECT queue_wait('q')", "queue_wait('q')|1"},
			{"SELECT * FROM q", "v1,v2|3,hello world!"},
			{"SELECT queue_end()", "queue_end()|1"},
			{"SELECT * FROM q", "v1,v2"},
		}},
		{"insert forms", []step{
			{mk, "ok 0"},
			{"INSERT INTO q VALUES ('12', 'it\\'s'), (3*10, \"dq\"), (-(2), NULL)", "ok 3"},
			{"INSERT q SET v2 = 'set', v1 = 5", "ok 1"},
			{"INSERT INTO q (v1) VALUES (7)", "ok 1"},
			{"INSERT INTO q (v2, v1) VALUES (DEFAULT, 8)", "ok 1"},
			{"INSERT INTO q (v1, v2) VALUES (1.5, 0x41)", "ok 1"},
			{"INSERT INTO q VALUES (' 9 ', concat('a','b'))", "ok 1"},
			{"SELECT * FROM q", "v1,v2|12,it's|30,dq|-2,NULL|5,set|7,NULL|8,NULL|2,A|9,ab"},
		}},
		{"strict errors", []step{
			{"CREATE TABLE t (i tinyint not null, u int unsigned, s char(2), d decimal(4,1), dt datetime, e enum('a','b')) ENGINE=queue", "ok 0"},
			{"INSERT INTO t (i) VALUES (128)", "ERR 1264"},
			{"INSERT INTO t (i, u) VALUES (1, -1)", "ERR 1264"},
			{"INSERT INTO t (i, s) VALUES (1, 'abc')", "ERR 1406"},
			{"INSERT INTO t (i, d) VALUES (1, 1000)", "ERR 1264"},
			{"INSERT INTO t (i, d) VALUES (1, 'x')", "ERR 1366"},
			{"INSERT INTO t (i, dt) VALUES (1, 'nope')", "ERR 1292"},
			{"INSERT INTO t (i, e) VALUES (1, 'c')", "ERR 1265"},
			{"INSERT INTO t (i) VALUES ('')", "ERR 1366"},
			{"INSERT INTO t (u) VALUES (1)", "ERR 1364"},
			{"INSERT INTO t (i, i) VALUES (1, 1)", "ERR 1110"},
			{"INSERT INTO t (i, s) VALUES (1, x'ff')", "ERR 1366"},
			{"INSERT INTO t (i, d, dt, e) VALUES ('-3', 12.34, '2024-01-02 3:04:05', 'B')", "ok 1"},
			{"SELECT i, d, dt, e FROM t", "i,d,dt,e|-3,12.3,2024-01-02 03:04:05,b"},
		}},
		{"what mysqldump sends and its dumps hold", []step{
			{mk, "ok 0"},
			{"INSERT INTO q VALUES (1,'a'),(2,'b')", "ok 2"},
			{"SELECT LOGFILE_GROUP_NAME, FILE_NAME, TOTAL_EXTENTS, INITIAL_SIZE, ENGINE, EXTRA FROM INFORMATION_SCHEMA.FILES WHERE FILE_TYPE = 'UNDO LOG' AND FILE_NAME IS NOT NULL AND LOGFILE_GROUP_NAME IS NOT NULL GROUP BY LOGFILE_GROUP_NAME, FILE_NAME, ENGINE, TOTAL_EXTENTS, INITIAL_SIZE ORDER BY LOGFILE_GROUP_NAME",
				"LOGFILE_GROUP_NAME,FILE_NAME,TOTAL_EXTENTS,INITIAL_SIZE,ENGINE,EXTRA"},
			{"SELECT DISTINCT TABLESPACE_NAME, FILE_NAME FROM INFORMATION_SCHEMA.FILES WHERE FILE_TYPE = 'DATAFILE' AND TABLESPACE_NAME IN (SELECT DISTINCT TABLESPACE_NAME FROM INFORMATION_SCHEMA.PARTITIONS WHERE TABLE_SCHEMA='test')", "TABLESPACE_NAME,FILE_NAME"},
			{"SELECT COUNT(*) FROM information_schema.FILES", "COUNT(*)|0"},
			{"LOCK TABLES `q` READ /*!32311 LOCAL */", "ok 0"},
			{"LOCK TABLES nope WRITE", "ERR 1146"},
			{"FLUSH TABLES WITH READ LOCK", "ok 0"},
			{"FLUSH LOGS", "ok 0"},
			{"SHOW TRIGGERS LIKE 'q'", "Trigger,Event,Table,Statement,Timing,Created,sql_mode,Definer,character_set_client,collation_connection,Database Collation"},
			{"SHOW MASTER STATUS", "File,Position,Binlog_Do_DB,Binlog_Ignore_DB,Executed_Gtid_Set"},
			{"UNLOCK TABLES", "ok 0"},
			{"select column_name, extra, generation_expression, data_type from information_schema.columns where table_schema=database() and table_name='q' order by ordinal_position", "column_name,extra,generation_expression,data_type|v1,,,int|v2,,,varchar"},
			{"SELECT TRIGGER_NAME FROM INFORMATION_SCHEMA.TRIGGERS WHERE EVENT_OBJECT_SCHEMA = DATABASE() AND EVENT_OBJECT_TABLE = 'q'", "TRIGGER_NAME"},
			{"/*!40000 ALTER TABLE `q` DISABLE KEYS */", "ok 0"},
			{"SHOW WARNINGS", "Level,Code,Message|Note,1031,Table storage engine for 'q' doesn't have this option"},
			{"SET SQL_NOTES=0", "ok 0"},
			{"ALTER TABLE q ENABLE KEYS", "ok 0"},
			{"SHOW WARNINGS", "Level,Code,Message"},
			{"SHOW CREATE DATABASE IF NOT EXISTS test", "Database,Create Database|test,CREATE DATABASE /*!32312 IF NOT EXISTS*/ `test` /*!40100 DEFAULT CHARACTER SET utf8mb4 */"},
		}},
		{"savepoints", []step{
			{"SAVEPOINT sp", "ok 0"}, // autocommit: the statement's own transaction
			{"ROLLBACK TO SAVEPOINT sp", "ERR 1305"},
			{"START TRANSACTION /*!40100 WITH CONSISTENT SNAPSHOT */", "ok 0"},
			{"SAVEPOINT sp", "ok 0"},
			{"SAVEPOINT sp2", "ok 0"},
			{"ROLLBACK TO SAVEPOINT sp", "ok 0"},
			{"RELEASE SAVEPOINT sp2", "ERR 1305"},
			{"RELEASE SAVEPOINT sp", "ok 0"},
			{"ROLLBACK TO SAVEPOINT sp", "ERR 1305"},
			{"COMMIT", "ok 0"},
		}},
		{"multi-row insert is atomic", []step{
			{mk, "ok 0"},
			{"INSERT INTO q (v1) VALUES (1), (2), (NULL)", "ERR 1048"},
			{"INSERT INTO q (v1) VALUES (1), (2, 3)", "ERR 1136"},
			{"SELECT COUNT(*) FROM q", "COUNT(*)|0"},
		}},
		{"select where order limit", []step{
			{mk, "ok 0"},
			{"INSERT INTO q VALUES (1,'a'),(2,'B'),(3,'c'),(4,NULL)", "ok 4"},
			{"SELECT v1 FROM q WHERE v2 = 'b'", "v1|2"},
			{"SELECT v1 FROM q WHERE v2 IS NULL OR v1 < 2", "v1|1|4"},
			{"SELECT v1 FROM q WHERE v1 BETWEEN 2 AND 3 AND v2 LIKE '%'", "v1|2|3"},
			{"SELECT v1 FROM q WHERE v1 IN (1, 3)", "v1|1|3"},
			{"SELECT v1 AS x, v1*2 FROM q ORDER BY v1 DESC LIMIT 1, 2", "x,v1*2|3,6|2,4"},
			{"SELECT COUNT(*) FROM q WHERE v1 > 1", "COUNT(*)|3"},
			{"SELECT COUNT(v2) FROM q", "COUNT(v2)|3"},
			{"SELECT nope FROM q", "ERR 1054"},
			{"SELECT * FROM q WHERE nope = 1", "ERR 1054"},
			{"DELETE FROM q WHERE v1 = 99", "ok 0"},
			{"SELECT * FROM q WHERE v1 = 99 AND nope = 1", "ERR 1054"},
			{"SELECT v1 FROM q WHERE v1 = 99 ORDER BY nope", "ERR 1054"},
			{"DELETE FROM q WHERE nope = 1", "ERR 1054"},
			{"SELECT * FROM nosuch", "ERR 1146"},
			{"SELECT * FROM q, q AS q2", "ERR 1235"},
		}},
		{"delete", []step{
			{"CREATE TABLE d (v int, w int) ENGINE=queue", "ok 0"},
			{"INSERT INTO d VALUES (1,1),(2,3),(2,1),(3,1)", "ok 4"},
			{"DELETE FROM d WHERE v=2 ORDER BY w LIMIT 1", "ok 1"},
			{"SELECT * FROM d", "v,w|1,1|2,3|3,1"},
			{"DELETE FROM d LIMIT 2", "ok 2"},
			{"SELECT * FROM d", "v,w|3,1"},
			{"DELETE FROM d", "ok 1"},
		}},
		{"update is refused when a row matches", []step{
			{mk, "ok 0"},
			{"UPDATE q SET v1 = 1", "ok 0"},
			{"INSERT INTO q (v1) VALUES (1)", "ok 1"},
			{"UPDATE q SET v1 = 2 WHERE v1 = 5", "ok 0"},
			{"UPDATE q SET v1 = 2", "ERR 1031"},
		}},
		{"ddl", []step{
			{"CREATE TABLE t (a int) ENGINE=InnoDB", "ERR 1286"},
			{"CREATE TABLE t (a int)", "ERR 1286"},
			{"CREATE TABLE t (a int, KEY (a)) ENGINE=queue", "ERR 1069"},
			{"CREATE TABLE t (a int primary key) ENGINE=queue", "ERR 1069"},
			{"CREATE TABLE t (a int auto_increment) ENGINE=queue", "ERR 1164"},
			{"CREATE TABLE t (a int, a int) ENGINE=queue", "ERR 1060"},
			{"CREATE TABLE t (a int not null default null) ENGINE=queue", "ERR 1067"},
			{"CREATE TABLE t (a int default 'x') ENGINE=queue", "ERR 1067"},
			{"CREATE TABLE t (a int default 5, b text, c timestamp default current_timestamp) ENGINE=QUEUE DEFAULT CHARSET=utf8", "ok 0"},
			{"CREATE TABLE t (a int) ENGINE=queue", "ERR 1050"},
			{"CREATE TABLE IF NOT EXISTS t (a int) ENGINE=queue", "ok 0"},
			{"INSERT INTO t (b) VALUES ('x')", "ok 1"},
			{"SELECT a, b FROM t", "a,b|5,x"},
			{"TRUNCATE t", "ok 0"},
			{"SELECT * FROM t", "a,b,c"},
			{"DROP TABLE t", "ok 0"},
			{"DROP TABLE t", "ERR 1051"},
			{"DROP TABLE IF EXISTS t", "ok 0"},
			{"CREATE DATABASE d2", "ok 1"},
			{"CREATE DATABASE d2", "ERR 1007"},
			{"CREATE TABLE d2.x (a int) ENGINE=queue", "ok 0"},
			{"SHOW TABLES FROM d2", "Tables_in_d2|x"},
			{"USE d2", "ok 0"},
			{"SELECT DATABASE()", "DATABASE()|d2"},
			{"DROP DATABASE d2", "ok 1"},
			{"SELECT DATABASE()", "DATABASE()|NULL"},
			{"SELECT * FROM x", "ERR 1046"},
			{"USE nosuch", "ERR 1049"},
			{"DROP DATABASE nosuch", "ERR 1008"},
		}},
		{"show and describe", []step{
			{"CREATE TABLE s (v1 int not null, v2 varchar(255) default 'z', b mediumblob) ENGINE=queue", "ok 0"},
			{"SHOW TABLES", "Tables_in_test|s"},
			{"SHOW TABLES LIKE 'x%'", "Tables_in_test (x%)"},
			{"SHOW DATABASES", "Database|test"},
			{"DESCRIBE s", "Field,Type,Null,Key,Default,Extra|v1,int(11),NO,,NULL,|v2,varchar(255),YES,,z,|b,mediumblob,YES,,NULL,"},
			{"SHOW COLUMNS FROM s LIKE 'v%'", "Field,Type,Null,Key,Default,Extra|v1,int(11),NO,,NULL,|v2,varchar(255),YES,,z,"},
			{"SHOW CREATE TABLE s", "Table,Create Table|s,CREATE TABLE `s` (\n  `v1` int(11) NOT NULL,\n  `v2` varchar(255) DEFAULT 'z',\n  `b` mediumblob\n) ENGINE=QUEUE DEFAULT CHARSET=utf8mb4"},
			{"SHOW VARIABLES LIKE 'max_allowed_packet'", "Variable_name,Value|max_allowed_packet,67108864"},
			{"SHOW VARIABLES WHERE Variable_name = 'autocommit'", "Variable_name,Value|autocommit,ON"},
			{"SHOW ENGINES", "Engine,Support,Comment,Transactions,XA,Savepoints|QUEUE,DEFAULT,Queue storage engine for MySQL (q4mproxy emulation),NO,NO,NO"},
			{"SHOW WARNINGS", "Level,Code,Message"},
			{"SHOW GRANTS", "ERR 1235"},
			{"SHOW ENGINE INNODB STATUS", "ERR 1286"},
			{"CREATE TABLE u (a int unsigned, b tinyint unsigned zerofill, c bigint unsigned, d int(5), e year) ENGINE=queue", "ok 0"},
			{"SHOW COLUMNS FROM u", "Field,Type,Null,Key,Default,Extra|a,int(10) unsigned,YES,,NULL,|b,tinyint(3) unsigned zerofill,YES,,NULL,|c,bigint(20) unsigned,YES,,NULL,|d,int(5),YES,,NULL,|e,year(4),YES,,NULL,"},
		}},
		{"session statements", []step{
			{"SELECT @@version_comment LIMIT 1", "@@version_comment|test comment"},
			{"SELECT VERSION(), CONNECTION_ID(), 1, 'a', NULL, 1+2*3, 7 DIV 2, 7 % 3", "VERSION(),CONNECTION_ID(),1,'a',NULL,1+2*3,7 DIV 2,7 % 3|5.7.99-test,7,1,a,NULL,7,3,1"},
			{"SET NAMES utf8mb4", "ok 0"},
			{"SET NAMES 'utf8' COLLATE 'utf8_general_ci'", "ok 0"},
			{"SET autocommit=0", "ok 0"},
			{"SELECT @@autocommit, @@session.autocommit", "@@autocommit,@@session.autocommit|0,0"},
			{"SET @@session.autocommit = ON", "ok 0"},
			{"SELECT @@autocommit", "@@autocommit|1"},
			{"SET SESSION wait_timeout = 10, @x = 'hi'", "ok 0"},
			{"SELECT @@wait_timeout, @x, @undefined", "@@wait_timeout,@x,@undefined|10,hi,NULL"},
			{"SET character_set_server = 'utf8mb4'", "ok 0"},
			{"SET nosuch = 1", "ERR 1193"},
			{"SET version = 'x'", "ERR 1238"},
			{"SELECT @@nosuch", "ERR 1193"},
			{"BEGIN", "ok 0"},
			{"COMMIT", "ok 0"},
			{"ROLLBACK", "ok 0"},
			{"SELEC 1", "ERR 1064"},
			{"", "ERR 1065"},
			{"SELECT 1; SELECT 2", "ERR 1064"},
			{"SELECT nosuchfunc()", "ERR 1305"},
			{"GRANT ALL ON *.* TO x", "ERR 1235"},
		}},
	})
}

func TestQueueFunctions(t *testing.T) {
	runScripts(t, []script{
		{"owner mode life cycle", []step{
			{mk, "ok 0"},
			{"CREATE TABLE q2 (v1 int) ENGINE=queue", "ok 0"},
			{"SELECT queue_abort()", "ERR 1123"},
			{"SELECT queue_rowid()", "ERR 1123"},
			{"SELECT queue_wait()", "ERR 1123"},
			{"SELECT queue_wait('nosuch', 0)", "queue_wait('nosuch', 0)|NULL"},
			{"SELECT queue_wait('q', 0)", "queue_wait('q', 0)|0"},
			{"SELECT queue_rowid()", "queue_rowid()|NULL"},
			{"INSERT INTO q (v1) VALUES (1), (2)", "ok 2"},
			{"SELECT * FROM q", "v1,v2"}, // owner mode without a row: empty view
			{"SELECT COUNT(*) FROM q", "COUNT(*)|0"},
			{"SELECT queue_end()", "queue_end()|1"},
			{"SELECT COUNT(*) FROM q", "COUNT(*)|2"},
			{"SELECT queue_wait('q')", "queue_wait('q')|1"},
			{"SELECT queue_rowid(), v1 FROM q", "ERR 1123"}, // queue functions per row of a table
			{"SELECT queue_rowid()", "queue_rowid()|1"},
			{"SELECT queue_rowid(1)", "ERR 1123"},
			{"SELECT * FROM q2", "v1"}, // other tables look empty in owner mode
			{"SELECT queue_abort()", "queue_abort()|1"},
			{"SELECT v1 FROM q", "v1|1|2"}, // the row is back at the head
			{"SELECT queue_wait('q2', 'q', '1')", "queue_wait('q2', 'q', '1')|2"},
			{"SELECT v1 FROM q", "v1|1"},
			{"SELECT queue_wait('q', 0)", "queue_wait('q', 0)|1"}, // consumes row 1
			{"SELECT queue_rowid(), queue_end()", "queue_rowid(),queue_end()|2,1"},
			{"SELECT COUNT(*) FROM q", "COUNT(*)|0"},
		}},
		{"last argument is the timeout", []step{
			{mk, "ok 0"},
			{"CREATE TABLE b (v1 int) ENGINE=queue", "ok 0"},
			{"INSERT INTO b VALUES (1)", "ok 1"},
			{"SELECT queue_wait('q', 'b')", "queue_wait('q', 'b')|0"}, // 'b' is the timeout (0), not a table
			{"SELECT queue_end()", "queue_end()|1"},
			{"SELECT queue_wait(NULL)", "queue_wait(NULL)|NULL"},
			{"SELECT queue_wait('test.b', 0)", "queue_wait('test.b', 0)|1"},
			{"SELECT queue_wait('q:nope=1', 0)", "queue_wait('q:nope=1', 0)|NULL"}, // a bad condition
			{"SELECT * FROM b", "v1"},                                              // the NULL wait consumed the row and left owner mode
		}},
		{"one-statement consume form", []step{
			{mk, "ok 0"},
			{"INSERT INTO q VALUES (1, 'a'), (2, 'b')", "ok 2"},
			{"SELECT * FROM q WHERE queue_wait('q')", "v1,v2|1,a"},
			{"SELECT * FROM q WHERE queue_wait('q')", "v1,v2|2,b"},
			{"SELECT * FROM q WHERE queue_wait('q', 0)", "v1,v2"},
			{"SELECT queue_end()", "queue_end()|1"},
			{"SELECT * FROM q WHERE v1 = 1 AND queue_wait('q')", "ERR 1123"},
		}},
		{"owner delete", []step{
			{mk, "ok 0"},
			{"INSERT INTO q (v1) VALUES (1), (2)", "ok 2"},
			{"SELECT queue_wait('q')", "queue_wait('q')|1"},
			{"DELETE FROM q WHERE v1 = 2", "ok 0"}, // not visible in owner mode
			{"DELETE FROM q", "ok 1"},
			{"SELECT * FROM q", "v1,v2"},
			{"SELECT queue_abort()", "queue_abort()|1"},
			{"SELECT v1 FROM q", "v1|2"},
		}},
	})
}

// TestTwoSessions checks visibility between connections, waits woken by
// another session's insert, and the release of a closed session's row.
func TestTwoSessions(t *testing.T) {
	e := newEngine(t)
	a, b := newSession(t, e), newSession(t, e)
	ctx := t.Context()
	runSessionSteps(t, []sessionStep{
		{a, mk, "ok 0"},
		{a, "INSERT INTO q (v1) VALUES (1), (2), (3)", "ok 3"},
		{a, "SELECT queue_wait('q')", "queue_wait('q')|1"},
		{b, "SELECT v1 FROM q", "v1|2|3"},
		{b, "SELECT COUNT(*) FROM q", "COUNT(*)|3"}, // Q4M: COUNT(*) without WHERE includes owned rows
		{b, "SELECT COUNT(*) FROM q WHERE 1", "COUNT(*)|2"},
		{b, "DELETE FROM q", "ok 2"}, // spares a's row
		{a, "SELECT v1 FROM q", "v1|1"},
	})
	// b blocks; a's close releases its row to b.
	done := make(chan string, 1)
	go func() {
		r, err := b.Exec(ctx, "SELECT queue_wait('q', 10)")
		if err != nil {
			done <- err.Error()
			return
		}
		done <- render(r)
	}()
	if !a.Close() {
		t.Fatal("Close released nothing")
	}
	select {
	case got := <-done:
		if got != "queue_wait('q', 10)|1" {
			t.Fatalf("waiter got %q", got)
		}
	case <-time.After(time.Minute):
		t.Fatal("waiter not woken by the released row")
	}
	if got := outcome(ctx, b, "SELECT v1 FROM q"); got != "v1|1" {
		t.Fatalf("b owns %q", got)
	}
}

func TestPrepared(t *testing.T) {
	s := newSession(t, newEngine(t))
	ctx := t.Context()
	if _, err := s.Exec(ctx, mk); err != nil {
		t.Fatal(err)
	}
	st, err := s.Prepare("INSERT INTO q (v2, v1) VALUES (?, ?), (?, ?)")
	if err != nil {
		t.Fatal(err)
	}
	if st.NumParams() != 4 {
		t.Fatalf("NumParams = %d", st.NumParams())
	}
	if _, err := s.Execute(ctx, st, []any{"a", int64(1), []byte("b"), "2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Execute(ctx, st, []any{"a"}); errCode(err) != 1210 {
		t.Fatalf("wrong param count: %v", err)
	}
	sel, err := s.Prepare("SELECT v1, v2 FROM q WHERE v1 >= ? LIMIT ?")
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Execute(ctx, sel, []any{"2", int64(5)})
	if err != nil {
		t.Fatal(err)
	}
	if got := render(r); got != "v1,v2|2,b" {
		t.Fatalf("got %q", got)
	}
	w, _ := s.Prepare("SELECT queue_wait(?, ?)")
	r, err = s.Execute(ctx, w, []any{"q", "1"})
	if err != nil || render(r) != "queue_wait(?, ?)|1" {
		t.Fatalf("prepared wait: %v %v", render(r), err)
	}
}

func TestColumnTypes(t *testing.T) {
	s := newSession(t, newEngine(t))
	ctx := t.Context()
	if _, err := s.Exec(ctx, "CREATE TABLE c (i int not null, u bigint unsigned, f float, d double, n decimal(6,2), s varchar(10), b blob, t text, dt datetime, da date) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	r, err := s.Exec(ctx, "SELECT * FROM c")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		tp    byte
		flags uint16
	}{
		{3, flagNotNull | flagNum}, {8, flagUnsigned | flagNum}, {4, flagNum}, {5, flagNum}, {246, flagNum},
		{253, 0}, {252, flagBlob | flagBinary}, {252, flagBlob}, {12, 0}, {10, 0},
	}
	for i, c := range r.Columns {
		if c.Type != want[i].tp || c.Flags != want[i].flags {
			t.Errorf("column %s: type %d flags %d; want %d %d", c.Name, c.Type, c.Flags, want[i].tp, want[i].flags)
		}
	}
}

func TestRowCodec(t *testing.T) {
	vals := []any{nil, int64(-5), uint64(1 << 63), 1.25, []byte{0, 255}, "héllo", ""}
	got, err := decodeRow(encodeRow(vals), nil)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(vals) {
		t.Fatalf("round trip: %v != %v", got, vals)
	}
	for _, bad := range [][]byte{nil, {5}, {1, 9}, {1, tagBytes, 10, 'a'}} {
		if _, err := decodeRow(bad, nil); err == nil {
			t.Errorf("decodeRow(%v) accepted corrupt input", bad)
		}
	}
}

func TestReset(t *testing.T) {
	e := newEngine(t)
	s, other := newSession(t, e), newSession(t, e)
	ctx := t.Context()
	for _, q := range []string{mk, "INSERT INTO q (v1) VALUES (1)", "SELECT queue_wait('q')", "SET autocommit = 0", "SET @x = 1"} {
		if _, err := s.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	s.Reset()
	if !s.AutoCommit() || s.owner.InOwnerMode() {
		t.Errorf("after Reset: autocommit %v, owner mode %v", s.AutoCommit(), s.owner.InOwnerMode())
	}
	r, err := other.Exec(ctx, "SELECT v1 FROM q")
	if err != nil || render(r) != "v1|1" {
		t.Errorf("row not released by Reset: %v %v", render(r), err)
	}
	r, err = s.Exec(ctx, "SELECT @x, DATABASE()")
	if err != nil || render(r) != "@x,DATABASE()|NULL,test" {
		t.Errorf("after Reset: %v %v", render(r), err)
	}
}

func TestRelay(t *testing.T) {
	runScripts(t, []script{
		{"queue_set_srcid dedup", []step{
			{mk, "ok 0"},
			{"SELECT queue_set_srcid(1, 'a')", "ERR 1123"},
			{"SELECT queue_set_srcid(-1, 'a', 5)", "queue_set_srcid(-1, 'a', 5)|NULL"},
			{"SELECT queue_set_srcid(64, 'a', 5)", "queue_set_srcid(64, 'a', 5)|NULL"},
			{"SELECT queue_set_srcid(0, 'A', 5)", "queue_set_srcid(0, 'A', 5)|NULL"},
			{"SELECT queue_set_srcid(0, 'a', 5)", "queue_set_srcid(0, 'a', 5)|1"},
			{"INSERT INTO q (v1) VALUES (1)", "ok 1"},
			{"SELECT queue_set_srcid(0, 'a', 5)", "queue_set_srcid(0, 'a', 5)|1"},
			{"INSERT INTO q (v1) VALUES (2)", "ok 1"}, // duplicate: skipped, reported as done
			{"SELECT queue_set_srcid(1, 'a', 5)", "queue_set_srcid(1, 'a', 5)|1"},
			{"INSERT INTO q (v1) VALUES (3)", "ok 1"}, // another slot: accepted
			{"SELECT queue_set_srcid(1, 'w', 2)", "queue_set_srcid(1, 'w', 2)|1"},
			{"INSERT INTO q (v1) VALUES (4)", "ok 1"}, // 'w' forces and rewinds the mark
			{"SELECT queue_set_srcid(1, 'a', 3)", "queue_set_srcid(1, 'a', 3)|1"},
			{"INSERT INTO q (v1) VALUES (5)", "ok 1"}, // above the rewound mark
			{"SELECT queue_set_srcid(1, 'a', 3)", "queue_set_srcid(1, 'a', 3)|1"},
			{"INSERT INTO q (nope) VALUES (6)", "ERR 1054"}, // fails before the table: stays pending
			{"INSERT INTO q (v1) VALUES (6)", "ok 1"},       // ... and is used here: duplicate
			{"INSERT INTO q (v1) VALUES (7)", "ok 1"},       // no source any more
			{"SELECT v1 FROM q", "v1|1|3|4|5|7"},
		}},
		{"stats and compaction", []step{
			{mk, "ok 0"},
			{"SELECT queue_stats()", "ERR 1123"},
			{"SELECT queue_stats('nosuch')", "queue_stats('nosuch')|NULL"},
			{"SELECT queue_compact('nosuch')", "queue_compact('nosuch')|NULL"},
			{"INSERT INTO q (v1) VALUES (1), (2)", "ok 2"},
			{"SELECT queue_wait('q', 0)", "queue_wait('q', 0)|1"},
			{"SELECT queue_abort()", "queue_abort()|1"},
			{"SELECT queue_wait('q', 0)", "queue_wait('q', 0)|1"},
			{"SELECT queue_wait('nosuch2', 'q', 0)", "queue_wait('nosuch2', 'q', 0)|NULL"},
			{"SELECT queue_wait('q', 0)", "queue_wait('q', 0)|1"},
			{"SELECT queue_end()", "queue_end()|1"},
			{"SELECT queue_stats('test.q')", "queue_stats('test.q')|rows_written: 2\nrows_removed: 2\nwait_immediate: 3\nwait_delayed: 0\nwait_timeout: 0\nrestored_by_abort: 1\nrestored_by_close: 0\nbytes_total: 8\nbytes_removed: 8\n"},
			{"SELECT queue_compact('q')", "queue_compact('q')|1"},
			{"SELECT queue_stats('q')", "queue_stats('q')|rows_written: 2\nrows_removed: 2\nwait_immediate: 3\nwait_delayed: 0\nwait_timeout: 0\nrestored_by_abort: 1\nrestored_by_close: 0\nbytes_total: 0\nbytes_removed: 0\n"},
		}},
	})
}

func TestEngineStatus(t *testing.T) {
	s := newSession(t, newEngine(t))
	for _, q := range []string{mk, "INSERT INTO q (v1) VALUES (1)", "SELECT queue_wait('q')", "SELECT queue_end()"} {
		if _, err := s.Exec(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	r, err := s.Exec(t.Context(), "show engine QUEUE status;")
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Rows) != 1 || r.Rows[0][0] != "QUEUE" || r.Rows[0][1] != "" {
		t.Fatalf("rows %v", r.Rows)
	}
	text := r.Rows[0][2].(string)
	for _, want := range []string{
		"\nI/O calls\n------------------------------------\nsys_read ",
		"\nWriter thread\n------------------------------------\nappend                              1\nremove                              1\n",
		"\nHigh-level stats\n------------------------------------\nrows_written                        1\nrows_removed                        1\nqueue_wait                          1\nqueue_end                           1\nqueue_abort                         0\nqueue_rowid                         0\nqueue_set_srcid                     0\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("status lacks %q:\n%s", want, text)
		}
	}
	// Queue::Q4M::Status parses /^([\w_]+)\s+(\d+)$/ lines: 16 of them.
	n := 0
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) == 2 && len(l) == 37 {
			n++
		}
	}
	if n != 16 {
		t.Errorf("%d counter lines, want 16:\n%s", n, text)
	}
}

// TestAlterWhileOwned: ALTER TABLE ADD/DROP while another connection owns a
// row: the owner sees its row projected onto the new columns (Q4M's
// 14-alter-table).
func TestAlterWhileOwned(t *testing.T) {
	e := newEngine(t)
	a, b := newSession(t, e), newSession(t, e)
	runSessionSteps(t, []sessionStep{
		{b, "CREATE TABLE t (v1 int not null, v2 int) ENGINE=queue", "ok 0"},
		{b, "INSERT INTO t VALUES (1, 1), (2, 2)", "ok 2"},
		{a, "SELECT queue_wait('t')", "queue_wait('t')|1"},
		{b, "ALTER TABLE t ADD v3 int", "ok 0"},
		{a, "SELECT * FROM t", "v1,v2,v3|1,1,NULL"},
		{b, "SELECT * FROM t", "v1,v2,v3|2,2,NULL"},
		{b, "INSERT INTO t VALUES (3, 3, 3)", "ok 1"},
		{b, "ALTER TABLE t DROP v1", "ok 0"},
		{a, "SELECT * FROM t", "v2,v3|1,NULL"},
		{b, "SELECT * FROM t", "v2,v3|2,NULL|3,3"},
		{b, "ALTER TABLE t ADD COLUMN n int NOT NULL FIRST, ADD s varchar(3) DEFAULT 'x' AFTER v2", "ok 0"},
		{b, "SELECT * FROM t", "n,v2,s,v3|0,2,x,NULL|0,3,x,3"},
		{a, "SELECT queue_rowid()", "queue_rowid()|1"},
		{a, "SELECT queue_end()", "queue_end()|1"},
		{b, "SELECT COUNT(*) FROM t", "COUNT(*)|2"},
		{b, "ALTER TABLE t DROP nope", "ERR 1091"},
		{b, "ALTER TABLE t ADD v2 int", "ERR 1060"},
		{b, "ALTER TABLE t ADD k int, ADD KEY (k)", "ERR 1069"},
		{b, "ALTER TABLE t ENGINE=InnoDB", "ERR 1235"},
		{b, "ALTER TABLE t RENAME TO u", "ERR 1235"},
		{b, "ALTER TABLE nosuch ADD x int", "ERR 1146"},
		{b, "ALTER TABLE t DROP n, DROP v2, DROP s", "ok 0"},
		{b, "ALTER TABLE t DROP v3", "ERR 1090"},
		{b, "SHOW CREATE TABLE t", "Table,Create Table|t,CREATE TABLE `t` (\n  `v3` int(11) DEFAULT NULL\n) ENGINE=QUEUE DEFAULT CHARSET=utf8mb4"},
	})
}

func TestInformationSchema(t *testing.T) {
	runScripts(t, []script{{"information_schema", []step{
		{"SELECT PLUGIN_VERSION FROM information_schema.plugins WHERE plugin_name = 'QUEUE'", "PLUGIN_VERSION|0.9"},
		{"select plugin_version from INFORMATION_SCHEMA.PLUGINS where PLUGIN_NAME = 'queue'", "plugin_version|0.9"},
		{"SELECT ENGINE, SUPPORT FROM information_schema.engines", "ENGINE,SUPPORT|QUEUE,DEFAULT"},
		{mk, "ok 0"},
		{"INSERT INTO q (v1) VALUES (1), (2)", "ok 2"},
		{"SELECT TABLE_NAME, ENGINE, TABLE_ROWS FROM information_schema.tables WHERE table_schema = 'test'", "TABLE_NAME,ENGINE,TABLE_ROWS|q,QUEUE,2"},
		// mysqld_exporter's info_schema.tables collector.
		{"SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE, ifnull(ENGINE, 'NONE') as ENGINE, ifnull(VERSION, '0') as VERSION, ifnull(ROW_FORMAT, 'NONE') as ROW_FORMAT, ifnull(TABLE_ROWS, '0') as TABLE_ROWS, ifnull(DATA_LENGTH, '0') as DATA_LENGTH, ifnull(INDEX_LENGTH, '0') as INDEX_LENGTH, ifnull(DATA_FREE, '0') as DATA_FREE, ifnull(CREATE_OPTIONS, 'NONE') as CREATE_OPTIONS FROM information_schema.tables WHERE TABLE_SCHEMA = 'test'",
			"TABLE_SCHEMA,TABLE_NAME,TABLE_TYPE,ENGINE,VERSION,ROW_FORMAT,TABLE_ROWS,DATA_LENGTH,INDEX_LENGTH,DATA_FREE,CREATE_OPTIONS|test,q,BASE TABLE,QUEUE,10,NONE,2,0,0,0,"},
		{"SELECT COLUMN_NAME, COLUMN_TYPE FROM information_schema.columns WHERE table_name = 'q' ORDER BY ORDINAL_POSITION DESC", "COLUMN_NAME,COLUMN_TYPE|v2,varchar(255)|v1,int(11)"},
		{"SELECT COUNT(*) FROM information_schema.schemata", "COUNT(*)|1"},
		{"SELECT * FROM information_schema.processlist", "ID,USER,HOST,DB,COMMAND,TIME,STATE,INFO"},
		{"SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'UPTIME'", "VARIABLE_VALUE|1"},
		{"SELECT page_size FROM information_schema.innodb_cmp", "page_size"},
		{"SHOW MASTER STATUS", "File,Position,Binlog_Do_DB,Binlog_Ignore_DB,Executed_Gtid_Set"},
		{"SHOW GLOBAL STATUS WHERE Value > 0 AND Variable_name LIKE 'Up%'", "Variable_name,Value|Uptime,1"},
		{"SHOW STATUS WHERE Variable_name IN ('Uptime', 'Threads_connected') ORDER BY 1", "ERR 1064"},
		{"SHOW STATUS WHERE nosuch = 1", "ERR 1054"},
		{"SHOW VARIABLES WHERE Variable_name = 'max_allowed_packet' OR Value = 'nothing'", "Variable_name,Value|max_allowed_packet,67108864"},
		{"SELECT * FROM information_schema.innodb_trx", "ERR 1235"},
		{"SELECT TABLE_SCHEMA AS db, COUNT(*), SUM(TABLE_ROWS), MAX(TABLE_ROWS) FROM information_schema.tables WHERE ENGINE = 'QUEUE' GROUP BY TABLE_SCHEMA", "db,COUNT(*),SUM(TABLE_ROWS),MAX(TABLE_ROWS)|test,1,2,2"},
		{"SELECT TABLE_NAME, COUNT(*) FROM information_schema.tables WHERE TABLE_NAME = 'none' GROUP BY TABLE_NAME", "TABLE_NAME,COUNT(*)"},
		{"SELECT TABLE_NAME, AVG(TABLE_ROWS) FROM information_schema.tables GROUP BY TABLE_NAME", "ERR 1235"},
		{"SELECT TABLE_NAME FROM information_schema.tables GROUP BY nosuch", "ERR 1054"},
		{"SELECT SUBSTRING_INDEX('127.0.0.1:5000', ':', 1) AS h, SUBSTRING_INDEX('a.b.c', '.', -2) AS t, SUBSTRING_INDEX('a.b', '.', 5) AS w, SUBSTRING_INDEX('a.b', '.', 0) AS z", "h,t,w,z|127.0.0.1,b.c,a.b,"},
		{"SELECT * FROM mysql.user", "ERR 1235"},
	}}})
}

func TestConditions(t *testing.T) {
	runScripts(t, []script{
		{"conditional waits", []step{
			{"CREATE TABLE c (v int, prio tinyint, s varchar(10), ts timestamp null, d date, dt datetime, tm time) ENGINE=queue", "ok 0"},
			{"INSERT INTO c (v, prio) VALUES (1, 1), (2, 0), (3, 1), (4, 0)", "ok 4"},
			{"SELECT queue_wait('c:v!=1', 0)", "queue_wait('c:v!=1', 0)|1"},
			{"SELECT v FROM c", "v|2"},
			{"SELECT queue_wait('c:v=1', 0)", "queue_wait('c:v=1', 0)|1"},
			{"SELECT v FROM c", "v|1"},
			{"SELECT queue_wait('c:prio=0', 'c:prio=1', 0)", "queue_wait('c:prio=0', 'c:prio=1', 0)|1"},
			{"SELECT v FROM c", "v|4"},
			{"SELECT queue_wait('c:prio=0', 'c:prio=1', 0)", "queue_wait('c:prio=0', 'c:prio=1', 0)|2"},
			{"SELECT v FROM c", "v|3"},
			{"SELECT queue_wait('c:prio=0', 0)", "queue_wait('c:prio=0', 0)|0"},
			{"SELECT queue_end()", "queue_end()|1"},
			{"SELECT queue_wait('c:s=1', 0)", "queue_wait('c:s=1', 0)|NULL"},   // strings are not visible
			{"SELECT queue_wait('c:v=1 ', 0)", "queue_wait('c:v=1 ', 0)|NULL"}, // trailing space
			{"SELECT queue_wait('c:v==1', 0)", "queue_wait('c:v==1', 0)|NULL"}, // not in the grammar
			{"SELECT queue_wait('c:', 0)", "queue_wait('c:', 0)|NULL"},         // empty
			{"INSERT INTO c (v) VALUES (5)", "ok 1"},
			{"SELECT queue_wait('c', 'c:bad!', 0)", "queue_wait('c', 'c:bad!', 0)|1"}, // never compiled: c had a row
			{"SELECT queue_end()", "queue_end()|1"},
			{"INSERT INTO c (v, ts, d, dt, tm) VALUES (6, '2001-09-09 01:46:40', '2024-05-06', '2024-05-06 07:08:09', '-01:02:03')", "ok 1"},
			{"SELECT queue_wait('c:d=2024*512+5*32+6 and dt=20240506070809 and tm=-10203 and ts>0', 0)", "queue_wait('c:d=2024*512+5*32+6 and dt=20240506070809 and tm=-10203 and ts>0', 0)|1"},
			{"SELECT v FROM c", "v|6"},
			{"SELECT queue_end()", "queue_end()|1"},
		}},
	})
}
