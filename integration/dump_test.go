package integration

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Backup and restore the MySQL way: Debian's mysqldump dumps queue tables
// (and, with --upstream, the upstream's tables beside them) and the mysql
// CLI restores the dump; the rows come back the same, in the same order,
// and queue_wait hands them out first in, first out.

// dumpRows are rows no dump may get wrong: NULLs, quotes and backslashes,
// bytes that are not UTF-8 (NUL, 0xff, ^Z, CR/LF), and 4-byte UTF-8.
var dumpRows = [][]any{
	{int64(1), "plain", []byte("blob"), int64(10)},
	{int64(2), nil, nil, nil},
	{int64(3), `it's "quoted" \ back\slash`, []byte{0, 0xff, '\'', '\\', 0x1a, '\r', '\n', '"'}, int64(-5)},
	{int64(4), "ünïcödé 😀 𝄞 日本語", []byte("😀"), int64(0)},
	{int64(5), "", []byte{}, int64(2147483647)},
	{int64(6), "tab\tnewline\nnul\x00end", []byte{0x80, 0x81, 0xfe}, nil},
}

// dumpCase is one way to run mysqldump, and how its dump is restored.
type dumpCase struct {
	name string
	args func(db string) []string // mysqldump's arguments after the connection
	// restoreDB is the database the mysql CLI restores into ("" for dumps
	// that say which database they are: --databases, --all-databases).
	restoreDB bool
	// allDatabases dumps (or locks) the whole server: standalone only, as
	// with an upstream that is the shared MariaDB of every test.
	allDatabases bool
	// queueOnly dumps the queue table alone.
	queueOnly bool
}

var dumpCases = []dumpCase{
	{name: "defaults", args: func(db string) []string { return []string{db} }, restoreDB: true},
	{name: "single-transaction", args: func(db string) []string { return []string{"--single-transaction", db} }, restoreDB: true},
	{name: "one-table", args: func(db string) []string { return []string{db, "jobs"} }, restoreDB: true, queueOnly: true},
	{name: "databases", args: func(db string) []string { return []string{"--databases", db} }},
	{name: "all-databases", args: func(string) []string { return []string{"--all-databases"} }, allDatabases: true},
	// FLUSH TABLES WITH READ LOCK, COM_REFRESH, SHOW SLAVE STATUS; with an
	// upstream, a global read lock on the MariaDB every test uses.
	{name: "lock-all-tables", args: func(db string) []string {
		return []string{"--lock-all-tables", "--flush-logs", "--dump-slave=2", "--databases", db}
	}, allDatabases: true},
}

// TestMysqldump dumps a queue table with mysqldump in each way and
// restores it with the mysql CLI (in front of MariaDB under
// Q4MPROXY_TEST_UPSTREAM=1, with an InnoDB table beside it).
func TestMysqldump(t *testing.T) {
	requireClients(t, "mysql", "mysqldump")
	s := startServer(t)
	testMysqldump(t, s, os.Getenv("Q4MPROXY_TEST_UPSTREAM") == "1")
}

// TestUpstreamMysqldump is TestMysqldump in front of MariaDB: one dump holds
// the upstream's InnoDB table and the queue table, and restores both.
func TestUpstreamMysqldump(t *testing.T) {
	requireClients(t, "mysql", "mysqldump")
	s := startServer(t, "--upstream", mariadbAddr(t))
	testMysqldump(t, s, true)
}

func testMysqldump(t *testing.T, s *server, upstream bool) {
	ctx := context.Background()
	dbName := fmt.Sprintf("dump%d_%d", os.Getpid(), time.Now().UnixNano()%1e6)
	admin := s.open(t)
	mustExec(t, admin, "CREATE DATABASE "+dbName)
	t.Cleanup(func() { _, _ = admin.Exec("DROP DATABASE IF EXISTS " + dbName) })
	db := openDB(t, s, dbName)
	mustExec(t, db, "CREATE TABLE jobs (id INT NOT NULL, s VARCHAR(200), b BLOB, n INT) ENGINE=queue")
	if upstream {
		mustExec(t, db, "CREATE TABLE inno (id INT NOT NULL PRIMARY KEY, s VARCHAR(200), b BLOB, n INT) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4")
	}
	for _, r := range dumpRows {
		mustExec(t, db, "INSERT INTO jobs VALUES (?, ?, ?, ?)", r...)
		if upstream {
			mustExec(t, db, "INSERT INTO inno VALUES (?, ?, ?, ?)", r...)
		}
	}
	// A second insert of the first rows: order is rowid order, not id order.
	mustExec(t, db, "INSERT INTO jobs VALUES (?, ?, ?, ?), (?, ?, ?, ?)", append(append([]any{}, dumpRows[3]...), dumpRows[0]...)...)
	want := tableRows(t, db, "jobs")
	if len(want) != len(dumpRows)+2 {
		t.Fatalf("jobs holds %d rows before the dump, want %d", len(want), len(dumpRows)+2)
	}
	var wantInno [][]string
	if upstream {
		wantInno = tableRows(t, db, "inno")
	}

	dir := t.TempDir()
	for _, c := range dumpCases {
		t.Run(c.name, func(t *testing.T) {
			if c.allDatabases && upstream {
				t.Skip("--all-databases through an upstream dumps the shared MariaDB of every test")
			}
			file := filepath.Join(dir, c.name+".sql")
			out, err := s.mysqldump(t, file, c.args(dbName)...)
			if err != nil {
				t.Fatalf("mysqldump %s: %v\n%s", strings.Join(c.args(dbName), " "), err, out)
			}
			dump, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(string(dump), "ENGINE=QUEUE") {
				t.Fatalf("the dump has no queue table:\n%s", dump)
			}
			// Restore into an empty database: the dump must create the
			// tables itself.
			mustExec(t, db, "DROP TABLE jobs")
			withInno := upstream && !c.queueOnly
			if withInno {
				mustExec(t, db, "DROP TABLE inno")
			}
			var args []string
			if c.restoreDB {
				args = append(args, dbName)
			}
			if out, err := s.mysqlCLI(t, string(dump), args...); err != nil {
				t.Fatalf("mysql < dump: %v\n%s", err, out)
			}
			if got := tableRows(t, db, "jobs"); !reflect.DeepEqual(got, want) {
				t.Fatalf("restored queue table:\n got %q\nwant %q", got, want)
			}
			if withInno {
				if got := tableRows(t, db, "inno"); !reflect.DeepEqual(got, wantInno) {
					t.Fatalf("restored InnoDB table:\n got %q\nwant %q", got, wantInno)
				}
			}
		})
	}

	// queue_wait hands the restored rows out in their order.
	conn, err := db.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var got [][]string
	for {
		var n sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT queue_wait('jobs', 1)").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n.Int64 != 1 {
			break
		}
		rows := connRows(t, conn, "jobs")
		if len(rows) != 1 {
			t.Fatalf("owner mode shows %d rows, want 1", len(rows))
		}
		got = append(got, rows[0])
	}
	if _, err := conn.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("queue_wait delivered the restored rows\n   %q\nwant %q", got, want)
	}
}

// mysqldump runs Debian's mysqldump against the server, writing the dump
// to file (--result-file, so the dump's bytes are exactly as written).
func (s *server) mysqldump(t testing.TB, file string, args ...string) (string, error) {
	t.Helper()
	requireClients(t, "mysqldump")
	full := append([]string{"--no-defaults", "-h127.0.0.1", "-P" + s.port, "-uroot", "--result-file=" + file}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "mysqldump", full...).CombinedOutput()
	return string(out), err
}

func openDB(t testing.TB, s *server, db string) *sql.DB {
	t.Helper()
	d, err := sql.Open("mysql", s.dsn(db))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func mustExec(t testing.TB, db *sql.DB, q string, args ...any) {
	t.Helper()
	if _, err := db.Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// tableRows reads every row of table (id, s, b, n), NULL as "NULL" and
// values quoted, in the order the server returns them.
func tableRows(t testing.TB, db *sql.DB, table string) [][]string {
	t.Helper()
	rows, err := db.Query("SELECT id, s, b, n FROM " + table)
	if err != nil {
		t.Fatal(err)
	}
	return scanRows(t, rows)
}

func connRows(t testing.TB, c *sql.Conn, table string) [][]string {
	t.Helper()
	rows, err := c.QueryContext(context.Background(), "SELECT id, s, b, n FROM "+table)
	if err != nil {
		t.Fatal(err)
	}
	return scanRows(t, rows)
}

func scanRows(t testing.TB, rows *sql.Rows) [][]string {
	t.Helper()
	defer rows.Close()
	var out [][]string
	for rows.Next() {
		vals := make([]sql.RawBytes, 4)
		ptrs := make([]any, len(vals))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := make([]string, len(vals))
		for i, v := range vals {
			row[i] = "NULL"
			if v != nil {
				row[i] = fmt.Sprintf("%q", v)
			}
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
