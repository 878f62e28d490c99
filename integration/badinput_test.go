package integration

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"
)

// badCase is one statement that must fail with a MySQL error, or (for
// queue_wait's odd arguments) return a given value.
type badCase struct {
	name  string
	setup []string // run first, on the same connection, without arguments
	sql   string
	args  []any // bound parameters: sent interpolated or prepared
	// Expected error, or (num 0) expected single value.
	num    uint16
	state  string
	msg    string // prefix of the message
	value  string
	within time.Duration // the statement must return within this (0: 30 s); for a wait "at once", a third of Q4M's default 60 s
	// textOnly statements are not prepared (USE, as on MySQL, is not
	// preparable): they run as COM_QUERY in both modes.
	textOnly bool
}

func badCases() []badCase {
	tables70 := make([]string, 70)
	ph70 := make([]string, 71)
	args70 := make([]any, 71)
	for i := range tables70 {
		tables70[i] = fmt.Sprintf("q70_%02d", i+1)
		ph70[i] = "?"
		args70[i] = tables70[i]
	}
	ph70[70], args70[70] = "?", 0
	wait70 := "SELECT queue_wait(" + strings.Join(ph70, ", ") + ")"

	return []badCase{
		// Malformed SQL.
		{name: "syntax", sql: "SELEC 1", num: 1064, state: "42000", msg: "You have an error in your SQL syntax"},
		{name: "syntax with args", sql: "INSERT INTO bi (a) VALUES (?", args: []any{1}, num: 1064, state: "42000", msg: "You have an error in your SQL syntax"},
		{name: "syntax: unterminated string", sql: "SELECT 'abc", num: 1064, state: "42000", msg: "You have an error in your SQL syntax"},
		{name: "syntax: garbage bytes", sql: "\x01\x02\xff\xfe SELECT", num: 1064, state: "42000", msg: "You have an error in your SQL syntax"},
		{name: "two statements", sql: "SELECT 1; SELECT 2", num: 1064, state: "42000", msg: "You have an error in your SQL syntax"},

		// Unknown table, column, database.
		{name: "unknown table", sql: "SELECT * FROM nosuch WHERE v = ?", args: []any{1}, num: 1146, state: "42S02", msg: "Table 'test.nosuch' doesn't exist"},
		{name: "unknown table delete", sql: "DELETE FROM nosuch WHERE v = ?", args: []any{1}, num: 1146, state: "42S02", msg: "Table 'test.nosuch' doesn't exist"},
		{name: "unknown table in unknown db", sql: "INSERT INTO nosuchdb.bi (a) VALUES (?)", args: []any{1}, num: 1146, state: "42S02", msg: "Table 'nosuchdb.bi' doesn't exist"},
		{name: "unknown column in field list", sql: "SELECT nope FROM bi WHERE a = ?", args: []any{1}, num: 1054, state: "42S22", msg: "Unknown column 'nope' in 'field list'"},
		// bi is empty (every insert into it fails): MySQL resolves column
		// names before reading rows, so an empty table changes nothing.
		{name: "unknown column in where", sql: "SELECT a FROM bi WHERE nope = ?", args: []any{1}, num: 1054, state: "42S22", msg: "Unknown column 'nope' in 'where clause'"},
		{name: "unknown column in delete where", sql: "DELETE FROM bi WHERE nope = ?", args: []any{1}, num: 1054, state: "42S22", msg: "Unknown column 'nope' in 'where clause'"},
		{name: "unknown column in insert", sql: "INSERT INTO bi (a, nope) VALUES (?, ?)", args: []any{1, 2}, num: 1054, state: "42S22", msg: "Unknown column 'nope' in 'field list'"},
		{name: "unknown database", sql: "USE nosuchdb", num: 1049, state: "42000", msg: "Unknown database 'nosuchdb'", textOnly: true},
		{name: "unknown database, quoted", sql: "USE `no such db`", num: 1049, state: "42000", msg: "Unknown database 'no such db'", textOnly: true},
		{name: "create table in unknown database", sql: "CREATE TABLE nosuchdb.x (v INT) ENGINE=queue", num: 1049, state: "42000", msg: "Unknown database 'nosuchdb'"},

		// Wrong value counts.
		{name: "fewer values than columns", sql: "INSERT INTO bi (a, b) VALUES (?)", args: []any{1}, num: 1136, state: "21S01", msg: "Column count doesn't match value count at row 1"},
		{name: "more values than columns", sql: "INSERT INTO bi VALUES (?, ?, ?, ?, ?, ?)", args: []any{1, 2, "s", 1.5, 3, 4}, num: 1136, state: "21S01", msg: "Column count doesn't match value count at row 1"},
		{name: "second row short", sql: "INSERT INTO bi (a, b) VALUES (?, ?), (?)", args: []any{1, 2, 3}, num: 1136, state: "21S01", msg: "Column count doesn't match value count at row 2"},

		// Wrong types.
		{name: "string into int", sql: "INSERT INTO bi (a, b) VALUES (?, ?)", args: []any{1, "abc"}, num: 1366, state: "HY000", msg: "Incorrect integer value: 'abc' for column 'b' at row 1"},
		{name: "string into decimal", sql: "INSERT INTO bi (a, x) VALUES (?, ?)", args: []any{1, "abc"}, num: 1366, state: "HY000", msg: "Incorrect decimal value: 'abc' for column 'x' at row 1"},
		{name: "bad value in a later row", sql: "INSERT INTO bi (a) VALUES (?), (?), (?)", args: []any{1, 2, "zz"}, num: 1366, state: "HY000", msg: "Incorrect integer value: 'zz' for column 'a' at row 3"},

		// NULL into NOT NULL.
		{name: "null into not null", sql: "INSERT INTO bi (a, b) VALUES (?, ?)", args: []any{nil, 1}, num: 1048, state: "23000", msg: "Column 'a' cannot be null"},
		{name: "null into not null, SET form", sql: "INSERT INTO bi SET a = ?, b = ?", args: []any{nil, 2}, num: 1048, state: "23000", msg: "Column 'a' cannot be null"},

		// Too long.
		{name: "too long", sql: "INSERT INTO bi (a, s) VALUES (?, ?)", args: []any{1, "abcdef"}, num: 1406, state: "22001", msg: "Data too long for column 's' at row 1"},
		{name: "too long in characters", sql: "INSERT INTO bi (a, s) VALUES (?, ?)", args: []any{1, "éééééé"}, num: 1406, state: "22001", msg: "Data too long for column 's' at row 1"},
		{name: "too long binary", sql: "INSERT INTO bi (a, vb) VALUES (?, ?)", args: []any{1, []byte("abcdefgh")}, num: 1406, state: "22001", msg: "Data too long for column 'vb' at row 1"},

		// Invalid UTF-8 in a utf8 column.
		{name: "invalid utf8", sql: "INSERT INTO bi (a, s) VALUES (?, ?)", args: []any{1, "ab\xff\xfe"}, num: 1366, state: "HY000", msg: `Incorrect string value: '\xFF\xFE' for column 's' at row 1`},
		{name: "invalid utf8: truncated sequence", sql: "INSERT INTO bi (a, s) VALUES (?, ?)", args: []any{1, "a\xe2\x82"}, num: 1366, state: "HY000", msg: "Incorrect string value: "},
		{name: "invalid utf8: surrogate", sql: "INSERT INTO bi (a, t) VALUES (?, ?)", args: []any{1, "x\xed\xa0\x80y"}, num: 1366, state: "HY000", msg: "Incorrect string value: "},
		{name: "invalid utf8: overlong", sql: "INSERT INTO bi (a, t) VALUES (?, ?)", args: []any{1, "\xc0\xaf"}, num: 1366, state: "HY000", msg: "Incorrect string value: "},

		// Out of range.
		{name: "tinyint over", sql: "INSERT INTO bi (a, b) VALUES (?, ?)", args: []any{1, 300}, num: 1264, state: "22003", msg: "Out of range value for column 'b' at row 1"},
		{name: "tinyint under", sql: "INSERT INTO bi (a, b) VALUES (?, ?)", args: []any{1, -129}, num: 1264, state: "22003", msg: "Out of range value for column 'b' at row 1"},
		{name: "int over", sql: "INSERT INTO bi (a) VALUES (?)", args: []any{int64(1) << 40}, num: 1264, state: "22003", msg: "Out of range value for column 'a' at row 1"},
		{name: "unsigned negative", sql: "INSERT INTO bi (a, u) VALUES (?, ?)", args: []any{1, -1}, num: 1264, state: "22003", msg: "Out of range value for column 'u' at row 1"},
		{name: "decimal over", sql: "INSERT INTO bi (a, x) VALUES (?, ?)", args: []any{1, 12345}, num: 1264, state: "22003", msg: "Out of range value for column 'x' at row 1"},

		// queue_wait's odd arguments (§2.1 and the README's decisions).
		{name: "queue_wait NULL table", sql: "SELECT queue_wait(?)", args: []any{nil}, value: "NULL"},
		{name: "queue_wait NULL table with timeout", sql: "SELECT queue_wait(?, ?)", args: []any{nil, 0}, value: "NULL"},
		{name: "queue_wait negative timeout", sql: "SELECT queue_wait(?, ?)", args: []any{"qe", -5}, value: "0", within: 20 * time.Second},
		{name: "queue_wait huge timeout, row ready", setup: []string{"INSERT INTO qw VALUES (1)"}, sql: "SELECT queue_wait(?, ?)", args: []any{"qw", int64(99999999999)}, value: "1", within: 20 * time.Second},
		{name: "queue_wait huge negative timeout", sql: "SELECT queue_wait(?, ?)", args: []any{"qe", int64(-99999999999)}, value: "0", within: 20 * time.Second},
		{name: "queue_wait 70 tables, 35th ready", setup: []string{"INSERT INTO q70_70 VALUES (70)", "INSERT INTO q70_35 VALUES (35)"}, sql: wait70, args: args70, value: "35", within: 20 * time.Second},
		{name: "queue_wait 70 tables, 70th ready", sql: wait70, args: args70, value: "70", within: 20 * time.Second},
		{name: "queue_wait 70 tables, none ready", sql: wait70, args: args70, value: "0", within: 20 * time.Second},
		{name: "queue_wait empty name", sql: "SELECT queue_wait(?, ?)", args: []any{"", 0}, value: "NULL"},
		{name: "queue_wait empty name, one argument", sql: "SELECT queue_wait(?)", args: []any{""}, value: "NULL"},
		{name: "queue_wait db. form", sql: "SELECT queue_wait(?, ?)", args: []any{"test.", 0}, value: "NULL"},
		{name: "queue_wait .t form", sql: "SELECT queue_wait(?, ?)", args: []any{".t", 0}, value: "NULL"},
		{name: "queue_wait unknown db", sql: "SELECT queue_wait(?, ?)", args: []any{"nosuchdb.t", 0}, value: "NULL"},
	}
}

// TestBadInput runs bad statements through go-sql-driver/mysql, with
// arguments interpolated into COM_QUERY and as server-side prepared
// statements: each gets its MySQL error code and SQLSTATE (or queue_wait's
// documented value), the same connection goes on working, and a canary row
// acknowledged at the start is still there at the end; nothing of the
// failed inserts was stored.
func TestBadInput(t *testing.T) {
	s := startServer(t)
	setup := newGConn(t, s, defaultMode)
	setup.exec("CREATE TABLE canary (v INT NOT NULL, s VARCHAR(20)) ENGINE=queue")
	setup.exec("INSERT INTO canary VALUES (42, 'canary')")
	setup.exec("CREATE TABLE bi (a INT NOT NULL, b TINYINT, s VARCHAR(5) CHARACTER SET utf8, d DOUBLE, x DECIMAL(5,2), u INT UNSIGNED, vb VARBINARY(4), t TEXT) ENGINE=queue")
	for _, tb := range []string{"qe", "qw", "t"} {
		setup.exec("CREATE TABLE " + tb + " (v INT) ENGINE=queue")
	}
	setup.exec("INSERT INTO t VALUES (1)") // '.t' must not find it
	for i := 1; i <= 70; i++ {
		setup.exec(fmt.Sprintf("CREATE TABLE q70_%02d (v INT) ENGINE=queue", i))
	}

	for _, m := range driverModes {
		t.Run(m.name, func(t *testing.T) {
			g := newGConn(t, s, m)
			for _, tc := range badCases() {
				t.Run(tc.name, func(t *testing.T) {
					g := &gconn{t: t, c: g.c, m: m}
					for _, q := range tc.setup {
						g.exec(q)
					}
					within := tc.within
					if within == 0 {
						within = 30 * time.Second
					}
					ctx, cancel := context.WithTimeout(t.Context(), within+5*time.Second)
					defer cancel()
					start := time.Now()
					got, err := runBad(ctx, g, tc)
					if d := time.Since(start); d > within {
						t.Errorf("returned after %v, want within %v", d, within)
					}
					if tc.num != 0 {
						wantMySQLError(t, err, tc.num, tc.state, tc.msg, true)
					} else if err != nil || got != tc.value {
						t.Errorf("got %q, %v; want %q", got, err, tc.value)
					}
					// The same connection goes on, in both protocols; leave
					// owner mode (queue_end is always 1).
					g.wantValue("1", "SELECT 1")
					g.wantValue("1", "SELECT ?", 1)
					g.wantValue("1", "SELECT queue_end()")
					g.wantRows("SELECT v, s FROM canary", nil, []string{"42", "canary"})
				})
			}
			g.wantValue("1", "SELECT COUNT(*) FROM canary")
		})
	}
	// Nothing of the failed inserts was stored; the canary is intact; the
	// rows of the queue_wait cases were consumed and 't' kept its row.
	check := newGConn(t, s, defaultMode)
	check.wantRows("SELECT v, s FROM canary", nil, []string{"42", "canary"})
	check.wantValue("0", "SELECT COUNT(*) FROM bi")
	check.wantValue("0", "SELECT COUNT(*) FROM qw")
	check.wantValue("0", "SELECT COUNT(*) FROM q70_35")
	check.wantValue("0", "SELECT COUNT(*) FROM q70_70")
	check.wantValue("1", "SELECT COUNT(*) FROM t")
	serverHealthy(t, s)
}

// runBad runs tc in g's mode and returns its single value (or "" for a
// statement without rows).
func runBad(ctx context.Context, g *gconn, tc badCase) (string, error) {
	var rows *sql.Rows
	var err error
	switch {
	case tc.textOnly || !g.m.prepared || len(tc.args) > 0:
		// Interpolated mode: COM_QUERY with the arguments in the text;
		// prepared mode with arguments: the driver prepares on the server.
		rows, err = g.c.QueryContext(ctx, tc.sql, tc.args...)
	default:
		// Prepared mode without arguments: prepare explicitly.
		var st *sql.Stmt
		if st, err = g.c.PrepareContext(ctx, tc.sql); err != nil {
			return "", err
		}
		defer st.Close()
		rows, err = st.QueryContext(ctx)
	}
	if err != nil {
		return "", err
	}
	out, err := scanStrings(rows)
	if err != nil || len(out) == 0 {
		return "", err
	}
	if len(out) != 1 || len(out[0]) != 1 {
		return fmt.Sprint(out), nil
	}
	return out[0][0], nil
}

// TestBadInputStmtWrongParamCount: go-sql-driver/mysql checks parameter
// counts itself, so the raw client sends COM_STMT_EXECUTE for a statement
// with two parameters carrying one: an ERR packet, nothing stored, the
// connection usable, the canary intact. (More malformed executes in
// TestAbuseStmtExecute.)
func TestBadInputStmtWrongParamCount(t *testing.T) {
	s := startServer(t)
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE canary (v INT NOT NULL) ENGINE=queue")
	g.exec("INSERT INTO canary VALUES (42)")
	g.exec("CREATE TABLE pc (a INT NOT NULL, b INT) ENGINE=queue")
	r := rawLogin(t, s)
	id, params := r.prepare("INSERT INTO pc (a, b) VALUES (?, ?)")
	if params != 2 {
		t.Fatalf("%d parameters, want 2", params)
	}
	// One parameter: NULL bitmap, new-params-bound, one type (LONGLONG),
	// one value.
	r.send(execute(id, []byte{0}, []byte{0x08, 0}, []byte{5, 0, 0, 0, 0, 0, 0, 0}))
	res := r.mustResult()
	if res.err == nil {
		t.Errorf("execute with 1 of 2 parameters: %+v, want an ERR packet", res)
	} else {
		t.Logf("execute with 1 of 2 parameters: %v", res.err)
	}
	r.alive("a wrong parameter count")
	g.wantValue("42", "SELECT v FROM canary")
	g.wantValue("0", "SELECT COUNT(*) FROM pc WHERE b IS NOT NULL")
}
