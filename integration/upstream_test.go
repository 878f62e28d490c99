package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Tests of q4mproxy in front of a real MariaDB (--upstream): queue tables
// served here, everything else by the upstream, one connection for both.

// startUpstreamServer starts q4mproxy in front of the shared MariaDB.
func startUpstreamServer(t testing.TB, extra ...string) *server {
	t.Helper()
	addr := mariadbAddr(t)
	return startServer(t, append([]string{"--upstream", addr}, extra...)...)
}

// uniqueName is a table name no other test uses (the MariaDB is shared).
func uniqueName(t testing.TB, prefix string) string {
	return fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano()%1e12)
}

func TestUpstreamMixedGoDriver(t *testing.T) {
	for _, m := range driverModes {
		t.Run(m.name, func(t *testing.T) {
			s := startUpstreamServer(t)
			g := newGConn(t, s, m)
			users, jobs := uniqueName(t, "users"), uniqueName(t, "jobs")
			g.exec("CREATE TABLE " + users + " (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(20)) ENGINE=InnoDB")
			t.Cleanup(func() { openMariaDB(t, "root", "", "test").Exec("DROP TABLE IF EXISTS " + users) })
			g.exec("CREATE TABLE " + jobs + " (user_id INT, what VARCHAR(20)) ENGINE=queue")

			// An ordinary table lives upstream: MariaDB sees it directly.
			var engine string
			if err := openMariaDB(t, "root", "", "test").QueryRow("SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA='test' AND TABLE_NAME=?", users).Scan(&engine); err != nil || engine != "InnoDB" {
				t.Fatalf("upstream table: engine %q, %v", engine, err)
			}
			r := g.exec("INSERT INTO "+users+" (name) VALUES (?), (?)", "alice", "bob")
			if id, _ := r.LastInsertId(); id != 1 {
				t.Errorf("insert id %d, want 1", id)
			}
			if n, _ := r.RowsAffected(); n != 2 {
				t.Errorf("affected %d, want 2", n)
			}
			g.wantValue("1", "SELECT LAST_INSERT_ID()")
			g.exec("INSERT INTO "+jobs+" VALUES (?, ?), (?, ?)", 2, "mail", 3, "sms")
			g.wantValue("2", "SELECT ROW_COUNT()")      // the queue's INSERT ran last
			g.wantValue("1", "SELECT LAST_INSERT_ID()") // unchanged: a queue table generates no id
			g.exec("DELETE FROM " + jobs + " WHERE user_id = 3")
			g.wantValue("1", "SELECT queue_wait('"+jobs+"', 5)")
			g.wantRows("SELECT user_id, what FROM "+jobs, nil, []string{"2", "mail"})
			// The program's next step, on the same connection: an upstream row.
			g.wantRows("SELECT name FROM "+users+" WHERE id = ?", []any{2}, []string{"bob"})
			g.wantValue("1", "SELECT queue_end()")
			g.wantValue("0", "SELECT COUNT(*) FROM "+jobs)
			r = g.exec("UPDATE "+users+" SET name = ? WHERE id = ?", "carol", 1)
			if n, _ := r.RowsAffected(); n != 1 {
				t.Errorf("update affected %d, want 1", n)
			}
			// Syntax q4mproxy's parser does not execute, as the client sent it.
			g.wantRows("WITH c AS (SELECT id, name FROM "+users+") SELECT name, ROW_NUMBER() OVER (ORDER BY id) FROM c", nil,
				[]string{"carol", "1"}, []string{"bob", "2"})
			// Errors are the upstream's own, code, SQLSTATE and message.
			_, err := g.execErr("INSERT INTO " + users + " (id, name) VALUES (1, 'dup')")
			wantMySQLError(t, err, 1062, "23000", "Duplicate entry '1' for key 'PRIMARY'", false)
			_, err = g.rowsErr("SELECT * FROM no_such_table_anywhere")
			wantMySQLError(t, err, 1146, "42S02", "Table 'test.no_such_table_anywhere' doesn't exist", false)
			// A statement mixing the sides is refused, and the connection goes on.
			_, err = g.rowsErr("SELECT * FROM " + users + " JOIN " + jobs)
			wantMySQLError(t, err, 1235, "42000", "This version of q4mproxy doesn't yet support statements that mix queue tables", true)
			g.wantValue("2", "SELECT COUNT(*) FROM "+users)
			// INSERT INTO a queue table SELECT FROM an upstream table.
			r = g.exec("INSERT INTO " + jobs + " (user_id, what) SELECT id, CONCAT('hello ', name) FROM " + users + " ORDER BY id")
			if n, _ := r.RowsAffected(); n != 2 {
				t.Errorf("INSERT ... SELECT affected %d, want 2", n)
			}
			g.wantRows("SELECT user_id, what FROM "+jobs, nil, []string{"1", "hello carol"}, []string{"2", "hello bob"})
			_, err = g.execErr("INSERT INTO " + users + " (name) SELECT what FROM " + jobs)
			wantMySQLError(t, err, 1235, "42000", "This version of q4mproxy doesn't yet support INSERT ... SELECT between these tables", true)
			g.exec("DELETE FROM " + jobs)

			// One catalog: both sides' tables.
			tables := map[string]bool{}
			for _, r := range g.rows("SHOW TABLES") {
				tables[r[0]] = true
			}
			if !tables[users] || !tables[jobs] {
				t.Errorf("SHOW TABLES lacks %s or %s: %v", users, jobs, tables)
			}
			g.wantRows("SHOW FULL TABLES LIKE '"+jobs+"'", nil, []string{jobs, "BASE TABLE"})
			for _, want := range [][2]string{{users, "InnoDB"}, {jobs, "QUEUE"}} {
				rows := g.rows("SHOW TABLE STATUS LIKE '" + want[0] + "'")
				if len(rows) != 1 || len(rows[0]) < 2 || !strings.EqualFold(rows[0][1], want[1]) {
					t.Errorf("SHOW TABLE STATUS LIKE %q: %v, want engine %s", want[0], rows, want[1])
				}
			}
			// A table of either side cannot be created again on the other.
			_, err = g.execErr("CREATE TABLE " + jobs + " (id INT) ENGINE=InnoDB")
			wantMySQLError(t, err, 1050, "42S01", "Table '"+jobs+"' already exists", false)
		})
	}
}

func TestUpstreamTransactionsAndSession(t *testing.T) {
	s := startUpstreamServer(t)
	g := newGConn(t, s, driverModes[0])
	users, jobs := uniqueName(t, "tx"), uniqueName(t, "txq")
	g.exec("CREATE TABLE " + users + " (id INT PRIMARY KEY) ENGINE=InnoDB")
	t.Cleanup(func() { openMariaDB(t, "root", "", "test").Exec("DROP TABLE IF EXISTS " + users) })
	g.exec("CREATE TABLE " + jobs + " (v INT) ENGINE=queue")

	g.exec("BEGIN")
	g.exec("INSERT INTO " + users + " VALUES (1)")
	g.exec("INSERT INTO " + jobs + " VALUES (7)") // takes effect at once: queue tables are not transactional
	g.exec("ROLLBACK")
	g.wantValue("0", "SELECT COUNT(*) FROM "+users)
	g.wantValue("1", "SELECT COUNT(*) FROM "+jobs)

	// As mysqld warns when a rollback cannot undo a non-transactional
	// table's change (text protocol: SHOW WARNINGS right after).
	tg := newGConn(t, s, driverModes[1])
	tg.exec("START TRANSACTION")
	tg.exec("INSERT INTO " + users + " VALUES (2)")
	tg.exec("INSERT INTO " + jobs + " VALUES (8)")
	tg.exec("ROLLBACK")
	tg.wantRows("SHOW WARNINGS", nil, []string{"Warning", "1196", "Some non-transactional changed tables couldn't be rolled back"})
	tg.exec("BEGIN")
	tg.exec("INSERT INTO " + users + " VALUES (3)")
	tg.exec("ROLLBACK") // no queue change: no warning
	tg.wantRows("SHOW WARNINGS", nil)
	tg.wantValue("0", "SELECT COUNT(*) FROM "+users)

	// Session state agrees on both sides.
	g.exec("CREATE DATABASE IF NOT EXISTS q4m_other")
	t.Cleanup(func() { openMariaDB(t, "root", "", "").Exec("DROP DATABASE IF EXISTS q4m_other") })
	g.exec("USE q4m_other")
	g.wantValue("q4m_other", "SELECT DATABASE()")
	g.exec("CREATE TABLE oq (v INT) ENGINE=queue") // a queue table in an upstream database
	g.exec("INSERT INTO oq VALUES (1)")
	g.wantValue("1", "SELECT queue_wait('oq', 1)")
	g.wantValue("1", "SELECT queue_end()")
	g.wantRows("SELECT DATABASE(), queue_wait('oq', 0)", nil, []string{"q4m_other", "0"}) // answered here
	g.exec("USE test")
	g.exec("SET @who = 'me'")
	g.wantValue("me", "SELECT @who")
	g.exec("SET SESSION sql_mode = 'ANSI_QUOTES'")
	g.wantValue("ANSI_QUOTES", "SELECT @@SESSION.sql_mode")
	g.exec("SET time_zone = '+09:00'")
	g.wantValue("+09:00", "SELECT @@time_zone")
}

func TestUpstreamCLI(t *testing.T) {
	s := startUpstreamServer(t)
	tbl, q := uniqueName(t, "cli"), uniqueName(t, "cliq")
	t.Cleanup(func() { openMariaDB(t, "root", "", "test").Exec("DROP TABLE IF EXISTS " + tbl) })
	out, err := s.mysqlCLI(t, fmt.Sprintf(`CREATE TABLE %[1]s (id INT PRIMARY KEY, name TEXT);
INSERT INTO %[1]s VALUES (1, 'one'), (2, 'two');
CREATE TABLE %[2]s (id INT) ENGINE=queue;
INSERT INTO %[2]s VALUES (5);
SELECT queue_wait('%[2]s', 5) AS w;
SELECT name FROM %[1]s WHERE id = (SELECT 2);
SELECT queue_end() AS e;
SELECT * FROM no_such_cli_table;
`, tbl, q), "-N", "--force", "test")
	_ = err // --force: the exit status depends on the client's version
	for _, want := range []string{"1\ntwo\n1\n", "ERROR 1146 (42S02) at line 8: Table 'test.no_such_cli_table' doesn't exist"} {
		if !strings.Contains(out, want) {
			t.Errorf("mysql CLI output lacks %q:\n%s", want, out)
		}
	}
}

func TestUpstreamPerl(t *testing.T) {
	s := startUpstreamServer(t)
	for _, d := range perlDrivers {
		for _, serverPrepare := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/server_prepare=%v", d, serverPrepare), func(t *testing.T) {
				tbl, q := uniqueName(t, "pl"), uniqueName(t, "plq")
				t.Cleanup(func() { openMariaDB(t, "root", "", "test").Exec("DROP TABLE IF EXISTS " + tbl) })
				env := []string{"T_TABLE=" + tbl, "T_QUEUE=" + q}
				if serverPrepare {
					env = append(env, "DBI="+s.perlDSN(d)+";"+strings.ToLower(d)+"_server_prepare=1")
				}
				out := s.perl(t, d, "upstream-mixed.pl", env...)
				if !strings.Contains(out, "ok 1") {
					t.Errorf("no TAP output:\n%s", out)
				}
			})
		}
	}
}

func TestUpstreamDown(t *testing.T) {
	addr := closedAddr(t) // nothing listens there, nor will
	s := startServer(t, "--upstream", addr)
	g := newGConn(t, s, driverModes[0])
	g.exec("CREATE TABLE q (v INT) ENGINE=queue")
	g.exec("INSERT INTO q VALUES (1)")
	g.wantValue("1", "SELECT queue_wait('q', 1)")
	_, err := g.rowsErr("SELECT * FROM users")
	wantMySQLError(t, err, 2003, "HY000", "Can't connect to MySQL server on '"+addr+"'", true)
	// The connection stays usable, and keeps its owned row.
	g.wantRows("SELECT v FROM q", nil, []string{"1"})
	g.wantValue("1", "SELECT queue_end()")
}

func TestUpstreamKillQuery(t *testing.T) {
	s := startUpstreamServer(t)
	db := s.open(t)
	victim, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	var id int64
	if err := victim.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		var v sql.NullInt64
		done <- victim.QueryRowContext(context.Background(), "SELECT SLEEP(60)").Scan(&v)
	}()
	// KILL QUERY with the id the victim saw; wait until the upstream runs it.
	up := openMariaDB(t, "root", "", "")
	eventually(t, time.Minute, "the forwarded SLEEP to run upstream", func() bool {
		var n int
		_ = up.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO = 'SELECT SLEEP(60)'").Scan(&n)
		return n == 1
	})
	if _, err := db.Exec("KILL QUERY " + strconv.FormatInt(id, 10)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		// MariaDB's SLEEP answers 1 when interrupted; MySQL's gives 1317.
		var me *mysql.MySQLError
		if err != nil && !(errors.As(err, &me) && me.Number == 1317) {
			t.Fatalf("killed SLEEP: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("KILL QUERY did not end the forwarded statement")
	}
	var one int
	if err := victim.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("victim after KILL QUERY: %d, %v", one, err)
	}
}

// A large result streams through the proxy: its memory grows by far less
// than the result's size.
func TestUpstreamLargeResultStreams(t *testing.T) {
	s := startUpstreamServer(t)
	db := s.open(t)
	const rows, rowSize = 256, 1 << 20 // 256 MB
	before := vmHWM(t, s)
	rs, err := db.Query(fmt.Sprintf("SELECT seq, REPEAT('x', %d) FROM seq_1_to_%d", rowSize, rows))
	if err != nil {
		t.Fatal(err)
	}
	n, total := 0, 0
	for rs.Next() {
		var seq int
		var b sql.RawBytes
		if err := rs.Scan(&seq, &b); err != nil {
			t.Fatal(err)
		}
		n++
		total += len(b)
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	rs.Close()
	if n != rows || total != rows*rowSize {
		t.Fatalf("%d rows, %d bytes; want %d, %d", n, total, rows, rows*rowSize)
	}
	after := vmHWM(t, s)
	t.Logf("q4mproxy peak RSS %d kB before, %d kB after %d MB relayed", before, after, total>>20)
	if grow := after - before; grow > 48<<10 {
		t.Errorf("peak RSS grew by %d kB relaying %d MB: the result is not streamed", grow, total>>20)
	}
}

// vmHWM is the server process's peak resident set, in kB.
func vmHWM(t testing.TB, s *server) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// The upstream closes a session's connection (restart, wait_timeout, an
// operator's KILL): a session with nothing to lose reconnects quietly at
// its next statement; one with state to lose (a user variable) loses its
// connection as with a dying mysqld, and its owned row goes back.
func TestUpstreamConnectionLoss(t *testing.T) {
	s := startUpstreamServer(t)
	direct := openMariaDB(t, "root", "", "")
	killUpstream := func(g *gconn) {
		t.Helper()
		id := g.value("SELECT @@pseudo_thread_id") // the upstream connection's id
		if _, err := direct.Exec("KILL CONNECTION " + id); err != nil {
			t.Fatal(err)
		}
		eventually(t, time.Minute, "the upstream connection to go", func() bool {
			var n int
			_ = direct.QueryRow("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = " + id).Scan(&n)
			return n == 0
		})
	}

	g := newGConn(t, s, driverModes[1])
	g.exec("CREATE TABLE lq (v INT) ENGINE=queue")
	g.exec("INSERT INTO lq VALUES (1)")
	g.exec("SET time_zone = '+03:00'")
	killUpstream(g)
	g.wantValue("2", "SELECT 1 + 1")            // quietly on a new upstream connection,
	g.wantValue("+03:00", "SELECT @@time_zone") // with the session's SETs replayed

	g.wantValue("1", "SELECT queue_wait('lq', 5)") // owns row 1
	g.exec("SET @state = 'precious'")
	killUpstream(g)
	_, err := g.rowsErr("SELECT @state")
	if err == nil {
		t.Fatal("a session that lost its user variables went on as if nothing happened")
	}
	// Its connection is gone, and with it the owned row: another consumer gets it.
	other := newGConn(t, s, driverModes[1])
	other.wantValue("1", "SELECT queue_wait('lq', 60)")
	other.wantRows("SELECT v FROM lq", nil, []string{"1"})
}

// COM_RESET_CONNECTION resets both sides: the upstream's user variables and
// the owned row.
func TestUpstreamResetConnection(t *testing.T) {
	s := startUpstreamServer(t)
	r := rawLogin(t, s)
	r.query("CREATE TABLE rq (v INT) ENGINE=queue")
	r.query("INSERT INTO rq VALUES (1)")
	if got := r.value("SELECT queue_wait('rq', 5)"); got != "1" {
		t.Fatalf("queue_wait: %q", got)
	}
	r.query("SET @gone = 'before reset'")
	if got := r.value("SELECT @gone"); got != "before reset" {
		t.Fatalf("user variable upstream: %q", got)
	}
	r.send([]byte{0x1f}) // COM_RESET_CONNECTION
	if res := r.mustResult(); res.err != nil {
		t.Fatalf("COM_RESET_CONNECTION: %v", res.err)
	}
	if got := r.value("SELECT IFNULL(@gone, 'reset')"); got != "reset" {
		t.Errorf("user variable after COM_RESET_CONNECTION: %q", got)
	}
	// The owned row went back: a new wait takes it again.
	if got := r.value("SELECT queue_wait('rq', 5)"); got != "1" {
		t.Errorf("queue_wait after reset: %q", got)
	}
	if got := r.value("SELECT v FROM rq"); got != "1" {
		t.Errorf("row after reset: %q", got)
	}
}
