package integration

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// driverMode is one way go-sql-driver/mysql talks to the server.
type driverMode struct {
	name   string
	params []string
	// prepared sends every statement with COM_STMT_PREPARE + EXECUTE, so
	// rows come back in the binary protocol: the driver does this by itself
	// for statements with arguments, and gconn prepares the others
	// explicitly. Otherwise arguments are interpolated into COM_QUERY text.
	prepared bool
}

var driverModes = []driverMode{
	{name: "prepared", prepared: true},
	{name: "interpolated", params: []string{"interpolateParams=true"}},
}

// forEachMode runs f once per driver mode, each on a server of its own.
func forEachMode(t *testing.T, f func(t *testing.T, s *server, m driverMode)) {
	t.Helper()
	for _, m := range driverModes {
		t.Run(m.name, func(t *testing.T) {
			f(t, startServer(t), m)
		})
	}
}

// gconn is one dedicated connection (queue ownership is per connection)
// driven in one driver mode. Its helpers fail the test on errors.
type gconn struct {
	t testing.TB
	c *sql.Conn
	m driverMode
}

func newGConn(t testing.TB, s *server, m driverMode) *gconn {
	t.Helper()
	return &gconn{t: t, c: s.conn(t, m.params...), m: m}
}

// queryErr runs a query; done closes the rows (and the statement).
func (g *gconn) queryErr(q string, args ...any) (rows *sql.Rows, done func(), err error) {
	ctx := g.t.Context()
	if g.m.prepared && len(args) == 0 {
		st, err := g.c.PrepareContext(ctx, q)
		if err != nil {
			return nil, nil, err
		}
		rs, err := st.QueryContext(ctx)
		if err != nil {
			st.Close()
			return nil, nil, err
		}
		// A statement prepared on a *sql.Conn is closed on the server at
		// once (COM_STMT_CLOSE), so only after its rows were read.
		return rs, func() { rs.Close(); st.Close() }, nil
	}
	rs, err := g.c.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, nil, err
	}
	return rs, func() { rs.Close() }, nil
}

func (g *gconn) execErr(q string, args ...any) (sql.Result, error) {
	ctx := g.t.Context()
	if g.m.prepared && len(args) == 0 {
		st, err := g.c.PrepareContext(ctx, q)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		return st.ExecContext(ctx)
	}
	return g.c.ExecContext(ctx, q, args...)
}

func (g *gconn) exec(q string, args ...any) sql.Result {
	g.t.Helper()
	r, err := g.execErr(q, args...)
	if err != nil {
		g.t.Fatalf("%s %v: %v", q, args, err)
	}
	return r
}

// rows runs a query and returns its rows as strings ("NULL" for NULL).
func (g *gconn) rows(q string, args ...any) [][]string {
	g.t.Helper()
	out, err := g.rowsErr(q, args...)
	if err != nil {
		g.t.Fatalf("%s %v: %v", q, args, err)
	}
	return out
}

func (g *gconn) rowsErr(q string, args ...any) ([][]string, error) {
	rs, done, err := g.queryErr(q, args...)
	if err != nil {
		return nil, err
	}
	defer done()
	return scanStrings(rs)
}

func scanStrings(rs *sql.Rows) ([][]string, error) {
	defer rs.Close()
	cols, err := rs.Columns()
	if err != nil {
		return nil, err
	}
	out := [][]string{}
	for rs.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rs.Scan(ptrs...); err != nil {
			return nil, err
		}
		row := make([]string, len(cols))
		for i, v := range vals {
			row[i] = "NULL"
			if v.Valid {
				row[i] = v.String
			}
		}
		out = append(out, row)
	}
	return out, rs.Err()
}

// value runs a query that returns one row of one column.
func (g *gconn) value(q string, args ...any) string {
	g.t.Helper()
	rows := g.rows(q, args...)
	if len(rows) != 1 || len(rows[0]) != 1 {
		g.t.Fatalf("%s %v: got %q, want one value", q, args, rows)
	}
	return rows[0][0]
}

// wantRows checks a query's rows.
func (g *gconn) wantRows(q string, args []any, want ...[]string) {
	g.t.Helper()
	if want == nil {
		want = [][]string{}
	}
	if got := g.rows(q, args...); !reflect.DeepEqual(got, want) {
		g.t.Errorf("%s %v:\n got  %q\n want %q", q, args, got, want)
	}
}

// wantValue checks a one-value query.
func (g *gconn) wantValue(want, q string, args ...any) {
	g.t.Helper()
	if got := g.value(q, args...); got != want {
		g.t.Errorf("%s %v = %q, want %q", q, args, got, want)
	}
}

// wantMySQLError checks that err is a server error with this code,
// SQLSTATE and message (a prefix of it when prefix is set).
func wantMySQLError(t testing.TB, err error, num uint16, state, msg string, prefix bool) {
	t.Helper()
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		t.Errorf("error %v (%T), want MySQL error %d (%s)", err, err, num, state)
		return
	}
	if me.Number != num || string(me.SQLState[:]) != state {
		t.Errorf("error %d (%s) %q, want %d (%s)", me.Number, me.SQLState[:], me.Message, num, state)
	}
	if prefix && !strings.HasPrefix(me.Message, msg) || !prefix && me.Message != msg {
		t.Errorf("message %q, want %q (prefix: %v)", me.Message, msg, prefix)
	}
}

func TestGoDriverRoundTrip(t *testing.T) {
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		g := newGConn(t, s, m)
		g.exec("CREATE TABLE rt (v1 INT NOT NULL, v2 VARCHAR(255)) ENGINE=queue")
		res := g.exec("INSERT INTO rt (v1, v2) VALUES (?, ?), (?, ?)", 3, "hello world!", 4, "second")
		if n, err := res.RowsAffected(); err != nil || n != 2 {
			t.Errorf("RowsAffected = %d, %v; want 2", n, err)
		}
		g.wantValue("1", "SELECT queue_wait(?)", "rt")
		g.wantRows("SELECT * FROM rt", nil, []string{"3", "hello world!"})
		g.wantValue("1", "SELECT queue_rowid()")
		g.wantValue("1", "SELECT queue_end()")
		g.wantRows("SELECT v2, v1 FROM rt", nil, []string{"second", "4"})
		g.wantValue("1", "SELECT COUNT(*) FROM rt")
		g.wantValue("1", "SELECT queue_wait(?, ?)", "rt", 0)
		g.wantValue("2", "SELECT queue_rowid()")
		g.wantValue("1", "SELECT queue_end()")
		g.wantValue("0", "SELECT COUNT(*) FROM rt")
	})
}

func TestGoDriverTypes(t *testing.T) {
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		g := newGConn(t, s, m)
		g.exec(`CREATE TABLE ty (i INT, u BIGINT UNSIGNED, f FLOAT, d DOUBLE, dc DECIMAL(10,2),
			v VARCHAR(50), b BLOB, dt DATETIME, da DATE, tm TIME, ti TINYINT) ENGINE=queue`)
		blob := make([]byte, 256)
		for i := range blob {
			blob[i] = byte(i)
		}
		const text = "héllo, 世界 🎉 'quoted' \\ \"x\""
		when := time.Date(2024, 2, 29, 23, 59, 58, 0, time.UTC)
		g.exec("INSERT INTO ty VALUES (?,?,?,?,?,?,?,?,?,?,?), (?,?,?,?,?,?,?,?,?,?,?)",
			int64(math.MinInt32), uint64(math.MaxUint64), float32(-1.5), math.Pi, "-12345.67",
			text, blob, when, "2024-02-29", "-25:02:03", int8(-128),
			nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil)

		rs, done, err := g.queryErr("SELECT i, u, f, d, dc, v, b, dt, da, tm, ti FROM ty")
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		cts, err := rs.ColumnTypes()
		if err != nil {
			t.Fatal(err)
		}
		wantTypes := []string{"INT", "UNSIGNED BIGINT", "FLOAT", "DOUBLE", "DECIMAL", "VARCHAR", "BLOB", "DATETIME", "DATE", "TIME", "TINYINT"}
		var gotTypes []string
		for _, ct := range cts {
			gotTypes = append(gotTypes, ct.DatabaseTypeName())
			if null, ok := ct.Nullable(); !ok || !null {
				t.Errorf("column %s: Nullable() = %v, %v; want true, true", ct.Name(), null, ok)
			}
		}
		if !reflect.DeepEqual(gotTypes, wantTypes) {
			t.Errorf("DatabaseTypeName:\n got  %q\n want %q", gotTypes, wantTypes)
		}
		if p, sc, ok := cts[4].DecimalSize(); !ok || p != 10 || sc != 2 {
			t.Errorf("DECIMAL(10,2) DecimalSize() = %d, %d, %v", p, sc, ok)
		}

		type row struct {
			i          sql.NullInt64
			u          sql.Null[uint64]
			f          sql.Null[float32]
			d          sql.NullFloat64
			dc, v      sql.NullString
			b          []byte
			dt, da, tm sql.NullString
			ti         sql.NullInt64
		}
		var got []row
		for rs.Next() {
			var r row
			if err := rs.Scan(&r.i, &r.u, &r.f, &r.d, &r.dc, &r.v, &r.b, &r.dt, &r.da, &r.tm, &r.ti); err != nil {
				t.Fatal(err)
			}
			got = append(got, r)
		}
		if err := rs.Err(); err != nil {
			t.Fatal(err)
		}
		if len(got) != 2 {
			t.Fatalf("got %d rows, want 2", len(got))
		}
		str := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
		want := row{
			i:  sql.NullInt64{Int64: math.MinInt32, Valid: true},
			u:  sql.Null[uint64]{V: math.MaxUint64, Valid: true},
			f:  sql.Null[float32]{V: -1.5, Valid: true},
			d:  sql.NullFloat64{Float64: math.Pi, Valid: true},
			dc: str("-12345.67"),
			v:  str(text),
			b:  blob,
			dt: str("2024-02-29 23:59:58"),
			da: str("2024-02-29"),
			tm: str("-25:02:03"),
			ti: sql.NullInt64{Int64: -128, Valid: true},
		}
		if !reflect.DeepEqual(got[0], want) {
			t.Errorf("row 1:\n got  %+v\n want %+v", got[0], want)
		}
		if !reflect.DeepEqual(got[1], row{}) {
			t.Errorf("row 2 (all NULL): got %+v", got[1])
		}

		// With parseTime=true the driver turns DATETIME and DATE into time.Time.
		pt := &gconn{t: t, c: s.conn(t, append([]string{"parseTime=true"}, m.params...)...), m: m}
		rs2, done2, err := pt.queryErr("SELECT dt, da FROM ty WHERE dt IS NOT NULL")
		if err != nil {
			t.Fatal(err)
		}
		defer done2()
		var times []time.Time
		for rs2.Next() {
			var dt, da time.Time
			if err := rs2.Scan(&dt, &da); err != nil {
				t.Fatal(err)
			}
			times = append(times, dt, da)
		}
		if err := rs2.Err(); err != nil {
			t.Fatal(err)
		}
		if wantTimes := []time.Time{when, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC)}; !reflect.DeepEqual(times, wantTimes) {
			t.Errorf("parseTime=true: got %v, want %v", times, wantTimes)
		}
	})
}

// TestGoDriverErrors checks error codes and SQLSTATEs through the driver's
// *mysql.MySQLError. In the prepared mode they come back from
// COM_STMT_PREPARE or COM_STMT_EXECUTE, where go-mysql used to lose them.
func TestGoDriverErrors(t *testing.T) {
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		g := newGConn(t, s, m)
		g.exec("CREATE TABLE q (v INT NOT NULL, s VARCHAR(3)) ENGINE=queue")
		tests := []struct {
			sql    string
			args   []any
			num    uint16
			state  string
			msg    string
			prefix bool
		}{
			{"SELECT * FROM nosuch", nil, 1146, "42S02", "Table 'test.nosuch' doesn't exist", false},
			{"INSERT INTO nosuch (v) VALUES (?)", []any{1}, 1146, "42S02", "Table 'test.nosuch' doesn't exist", false},
			{"SELEC ?", []any{1}, 1064, "42000", "You have an error in your SQL syntax", true},
			{"INSERT INTO q VALUES (?)", []any{1}, 1136, "21S01", "Column count doesn't match value count at row 1", false},
			{"INSERT INTO q (v, s) VALUES (?, ?)", []any{nil, "a"}, 1048, "23000", "Column 'v' cannot be null", false},
			{"INSERT INTO q (v) VALUES (?), (?), (?)", []any{1, 2, nil}, 1048, "23000", "Column 'v' cannot be null", false},
			{"INSERT INTO q (v, s) VALUES (?, ?)", []any{1, "abcd"}, 1406, "22001", "Data too long for column 's' at row 1", false},
			{"INSERT INTO q (v) VALUES (?)", []any{"x"}, 1366, "HY000", "Incorrect integer value: 'x' for column 'v' at row 1", false},
			{"INSERT INTO q (nope) VALUES (?)", []any{1}, 1054, "42S22", "Unknown column 'nope' in 'field list'", false},
			{"SELECT queue_abort(?)", []any{1}, 1123, "HY000", "Can't initialize function 'queue_abort'; queue_abort(): not in owner mode", false},
			{"SELECT queue_rowid()", nil, 1123, "HY000", "Can't initialize function 'queue_rowid'; queue_rowid(): not in owner mode", false},
			{"SELECT queue_wait()", nil, 1123, "HY000", "Can't initialize function 'queue_wait'; queue_wait(table_name[,timeout]): argument error", false},
		}
		for _, tc := range tests {
			t.Run(fmt.Sprintf("%d/%s", tc.num, tc.sql), func(t *testing.T) {
				g := &gconn{t: t, c: g.c, m: m}
				_, err := g.execErr(tc.sql, tc.args...)
				wantMySQLError(t, err, tc.num, tc.state, tc.msg, tc.prefix)
				// The same connection goes on working, in both protocols.
				g.wantValue("still alive", "SELECT 'still alive'")
				g.wantValue("42", "SELECT ?", 42)
			})
		}
		// Nothing of the failed inserts was stored (the multi-row one is atomic).
		g.wantValue("0", "SELECT COUNT(*) FROM q")
	})
}

func TestGoDriverQueueWaitForms(t *testing.T) {
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		g := newGConn(t, s, m)
		for _, tb := range []string{"pa", "pb", "pz"} {
			g.exec("CREATE TABLE " + tb + " (v INT) ENGINE=queue")
		}

		// A quoted timeout is coerced to an integer: '1' waits one second.
		start := time.Now()
		g.wantValue("0", "SELECT queue_wait(?, ?)", "pa", "1")
		if d := time.Since(start); d < 900*time.Millisecond || d > 10*time.Second {
			t.Errorf("queue_wait('pa', '1') on an empty table returned after %v, want about 1s", d)
		}
		g.wantValue("1", "SELECT queue_end()")

		// Several tables: the result is the 1-based index of the table the
		// row came from, and earlier tables have priority.
		g.exec("INSERT INTO pb (v) VALUES (?)", 20)
		g.wantValue("2", "SELECT queue_wait(?, ?, ?)", "pa", "pb", "1")
		g.wantRows("SELECT * FROM pb", nil, []string{"20"})
		g.wantRows("SELECT * FROM pa", nil)
		g.wantValue("1", "SELECT queue_end()")
		g.exec("INSERT INTO pb (v) VALUES (?)", 21)
		g.exec("INSERT INTO pa (v) VALUES (?)", 10)
		g.wantValue("1", "SELECT queue_wait(?, ?, ?)", "pa", "pb", "1")
		g.wantRows("SELECT * FROM pa", nil, []string{"10"})
		g.wantRows("SELECT * FROM pb", nil) // owner mode: other tables look empty
		g.wantValue("2", "SELECT queue_wait(?, ?, ?)", "pa", "pb", 0)
		g.wantRows("SELECT * FROM pb", nil, []string{"21"})
		g.wantValue("1", "SELECT queue_end()")
		g.wantValue("0", "SELECT COUNT(*) FROM pa")
		g.wantValue("0", "SELECT COUNT(*) FROM pb")

		// db.table form.
		g.exec("INSERT INTO pa (v) VALUES (?)", 11)
		g.wantValue("1", "SELECT queue_wait(?, ?)", "test.pa", 0)
		g.wantRows("SELECT * FROM pa", nil, []string{"11"})

		// A missing table: NULL, the owned row is consumed, and the
		// connection is no longer in owner mode.
		g.wantValue("NULL", "SELECT queue_wait(?, ?)", "nosuch", 0)
		_, err := g.execErr("SELECT queue_rowid()")
		wantMySQLError(t, err, 1123, "HY000", "Can't initialize function 'queue_rowid'; queue_rowid(): not in owner mode", false)
		g.wantValue("0", "SELECT COUNT(*) FROM pa")
		g.wantRows("SELECT * FROM pa", nil)

		// Timeout 0 on an empty table returns 0 at once and stays in owner
		// mode without a row: the table looks empty until queue_end.
		start = time.Now()
		g.wantValue("0", "SELECT queue_wait(?, ?)", "pz", 0)
		if d := time.Since(start); d > 30*time.Second { // at once: not Q4M's default 60 s
			t.Errorf("queue_wait('pz', 0) took %v", d)
		}
		g.wantValue("NULL", "SELECT queue_rowid()")
		g.exec("INSERT INTO pz (v) VALUES (?)", 7)
		g.wantRows("SELECT * FROM pz", nil)
		g.wantValue("0", "SELECT COUNT(*) FROM pz")
		g.wantValue("1", "SELECT queue_end()")
		g.wantRows("SELECT * FROM pz", nil, []string{"7"})
	})
}

// TestGoDriverSelectWhereQueueWait checks the one-statement consume form of
// MySQL 5.1/5.5: SELECT * FROM t WHERE queue_wait('t').
func TestGoDriverSelectWhereQueueWait(t *testing.T) {
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		g := newGConn(t, s, m)
		other := newGConn(t, s, m)
		g.exec("CREATE TABLE wq (v INT, s VARCHAR(10)) ENGINE=queue")
		g.exec("INSERT INTO wq VALUES (?, ?), (?, ?)", 1, "one", 2, "two")

		g.wantRows("SELECT * FROM wq WHERE queue_wait(?)", []any{"wq"}, []string{"1", "one"})
		g.wantValue("1", "SELECT queue_rowid()")
		other.wantRows("SELECT v FROM wq", nil, []string{"2"})
		// The next one consumes the first row and takes the second.
		g.wantRows("SELECT s FROM wq WHERE queue_wait(?, ?)", []any{"wq", 0}, []string{"two"})
		g.wantValue("2", "SELECT queue_rowid()")
		other.wantRows("SELECT v FROM wq", nil)
		other.wantValue("1", "SELECT COUNT(*) FROM wq") // COUNT(*) counts owned rows

		// Timed out: an empty set with the table's columns, in owner mode with no row.
		rs, done, err := g.queryErr("SELECT * FROM wq WHERE queue_wait(?, ?)", "wq", 0)
		if err != nil {
			t.Fatal(err)
		}
		defer done()
		if cols, err := rs.Columns(); err != nil || !reflect.DeepEqual(cols, []string{"v", "s"}) {
			t.Errorf("columns %q, %v", cols, err)
		}
		if got, err := scanStrings(rs); err != nil || len(got) != 0 {
			t.Errorf("rows %q, %v; want none", got, err)
		}
		g.wantValue("NULL", "SELECT queue_rowid()")
		g.wantValue("1", "SELECT queue_end()")
		other.wantValue("0", "SELECT COUNT(*) FROM wq")
	})
}

// TestGoDriverConcurrentConsumers drains rows with 32 connections at once
// while they are being inserted: every row exactly once.
func TestGoDriverConcurrentConsumers(t *testing.T) {
	const (
		consumers = 32
		batches   = 64
		perBatch  = 100
		total     = batches * perBatch
	)
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		ctx := t.Context()
		db := s.open(t, m.params...)
		db.SetMaxOpenConns(consumers + 2)
		if _, err := db.ExecContext(ctx, "CREATE TABLE cq (id INT NOT NULL) ENGINE=queue"); err != nil {
			t.Fatal(err)
		}

		var (
			mu    sync.Mutex
			seen  = make(map[int64]int, total)
			dups  []int64
			count int
		)
		done := make(chan struct{}) // closed when every row was received
		errc := make(chan error, consumers+1)
		var wg sync.WaitGroup
		for range consumers {
			wg.Go(func() {
				errc <- func() error {
					c, err := db.Conn(ctx)
					if err != nil {
						return err
					}
					defer c.Close()
					g := &gconn{t: t, c: c, m: m}
					for {
						select {
						case <-done:
							_, err := g.execErr("SELECT queue_end()")
							return err
						default:
						}
						r, err := g.rowsErr("SELECT queue_wait(?, ?)", "cq", 1)
						if err != nil {
							return err
						}
						if len(r) != 1 {
							return fmt.Errorf("queue_wait('cq', 1) returned rows %q", r)
						}
						if r[0][0] == "0" {
							continue // timed out; look at done again
						}
						if r[0][0] != "1" {
							return fmt.Errorf("queue_wait('cq', 1) = %s", r[0][0])
						}
						r, err = g.rowsErr("SELECT id FROM cq")
						if err != nil {
							return err
						}
						if len(r) != 1 {
							return fmt.Errorf("owner sees rows %q, want one", r)
						}
						id, err := strconv.ParseInt(r[0][0], 10, 64)
						if err != nil {
							return err
						}
						mu.Lock()
						seen[id]++
						if seen[id] > 1 {
							dups = append(dups, id)
						}
						count++
						if count == total {
							close(done)
						}
						mu.Unlock()
					}
				}()
			})
		}
		// Insert while the consumers wait, from two connections.
		wg.Go(func() {
			errc <- func() error {
				var iw sync.WaitGroup
				ierr := make(chan error, 2)
				for p := range 2 {
					iw.Go(func() {
						for b := p; b < batches; b += 2 {
							var sb strings.Builder
							args := make([]any, 0, perBatch)
							sb.WriteString("INSERT INTO cq (id) VALUES ")
							for i := range perBatch {
								if i > 0 {
									sb.WriteString(",")
								}
								sb.WriteString("(?)")
								args = append(args, b*perBatch+i)
							}
							if _, err := db.ExecContext(ctx, sb.String(), args...); err != nil {
								ierr <- err
								return
							}
						}
					})
				}
				iw.Wait()
				close(ierr)
				return <-ierr
			}()
		})
		finished := make(chan struct{})
		go func() { wg.Wait(); close(finished) }()
		select {
		case <-finished:
		case <-time.After(45 * time.Second):
			mu.Lock()
			n := count
			mu.Unlock()
			t.Fatalf("consumers did not finish: %d of %d rows received", n, total)
		}
		close(errc)
		for err := range errc {
			if err != nil {
				t.Error(err)
			}
		}
		if len(dups) > 0 {
			t.Errorf("rows delivered twice: %v", dups)
		}
		if len(seen) != total {
			t.Errorf("received %d distinct rows, want %d", len(seen), total)
		}
		for id := range int64(total) {
			if seen[id] != 1 {
				t.Errorf("row %d received %d times", id, seen[id])
				break
			}
		}
		var left int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM cq").Scan(&left); err != nil || left != 0 {
			t.Errorf("COUNT(*) after draining = %d, %v; want 0", left, err)
		}
	})
}

func TestGoDriverSession(t *testing.T) {
	standaloneOnly(t, "SHOW DATABASES and the variables are the upstream's")
	forEachMode(t, func(t *testing.T, s *server, m driverMode) {
		g := newGConn(t, s, m)
		ctx := t.Context()

		// autocommit: BEGIN/COMMIT/ROLLBACK are accepted and ignored (Q4M
		// has no transactions: an insert is durable at once).
		g.wantValue("1", "SELECT @@autocommit")
		if _, err := g.c.ExecContext(ctx, "SET autocommit=0"); err != nil {
			t.Fatal(err)
		}
		g.wantValue("0", "SELECT @@autocommit")
		g.wantRows("SHOW VARIABLES LIKE 'autocommit'", nil, []string{"autocommit", "OFF"})
		if _, err := g.c.ExecContext(ctx, "SET autocommit=1"); err != nil {
			t.Fatal(err)
		}
		g.wantValue("1", "SELECT @@autocommit")
		if _, err := g.c.ExecContext(ctx, "SET NAMES utf8mb4"); err != nil {
			t.Fatal(err)
		}
		g.wantValue("utf8mb4", "SELECT @@character_set_client")

		g.exec("CREATE TABLE sq (id INT NOT NULL, name VARCHAR(32) DEFAULT 'x', u BIGINT UNSIGNED) ENGINE=queue")
		for _, st := range []string{"BEGIN", "COMMIT", "START TRANSACTION", "ROLLBACK"} {
			if _, err := g.c.ExecContext(ctx, st); err != nil {
				t.Errorf("%s: %v", st, err)
			}
		}
		if _, err := g.c.ExecContext(ctx, "BEGIN"); err != nil {
			t.Fatal(err)
		}
		g.exec("INSERT INTO sq (id) VALUES (?)", 1)
		if _, err := g.c.ExecContext(ctx, "ROLLBACK"); err != nil {
			t.Fatal(err)
		}
		tx, err := g.c.BeginTx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO sq (id, name) VALUES (?, ?)", 2, "tx"); err != nil {
			t.Fatal(err)
		}
		if err := tx.Rollback(); err != nil {
			t.Fatal(err)
		}
		g.wantRows("SELECT id, name FROM sq", nil, []string{"1", "x"}, []string{"2", "tx"})

		g.wantRows("SHOW DATABASES", nil, []string{"test"})
		g.wantRows("SHOW TABLES", nil, []string{"sq"})
		g.wantRows("SHOW CREATE TABLE sq", nil, []string{"sq", "CREATE TABLE `sq` (\n" +
			"  `id` int(11) NOT NULL,\n" +
			"  `name` varchar(32) DEFAULT 'x',\n" +
			"  `u` bigint(20) unsigned DEFAULT NULL\n" +
			") ENGINE=QUEUE DEFAULT CHARSET=utf8mb4"})
		cols := [][]string{
			{"id", "int(11)", "NO", "", "NULL", ""},
			{"name", "varchar(32)", "YES", "", "x", ""},
			{"u", "bigint(20) unsigned", "YES", "", "NULL", ""},
		}
		g.wantRows("SHOW COLUMNS FROM sq", nil, cols...)
		g.wantRows("DESCRIBE sq", nil, cols...)
		g.wantRows("SHOW VARIABLES LIKE 'max_allowed_packet'", nil, []string{"max_allowed_packet", "67108864"})

		if v := g.value("SELECT VERSION()"); !strings.HasPrefix(v, "5.7.99-q4mproxy-") {
			t.Errorf("VERSION() = %q", v)
		}
		if v := g.value("SELECT @@version_comment"); !strings.HasPrefix(v, "q4mproxy ") {
			t.Errorf("@@version_comment = %q", v)
		}
		g.wantValue("test", "SELECT DATABASE()")
		id1, id2 := g.value("SELECT CONNECTION_ID()"), newGConn(t, s, m).value("SELECT CONNECTION_ID()")
		if id1 == id2 || id1 == "0" || id1 == "NULL" || strings.HasPrefix(id1, "-") {
			t.Errorf("CONNECTION_ID() of two connections: %q and %q", id1, id2)
		}
		g.wantValue(id1, "SELECT CONNECTION_ID()")
	})
}
