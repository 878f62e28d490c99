package integration

import (
	"fmt"
	"testing"
)

// INSERT INTO queue_table SELECT ... FROM upstream tables: the upstream's
// rows go into the queue table in one insert, as they arrive.

// A prepared INSERT ... SELECT with parameters, executed more than once,
// through go-sql-driver with server-side prepares and with interpolation;
// a row the queue table refuses fails the statement with nothing written,
// and the connection goes on.
func TestUpstreamInsertSelectParams(t *testing.T) {
	s := startUpstreamServer(t)
	for _, m := range driverModes {
		t.Run(m.name, func(t *testing.T) {
			g := newGConn(t, s, m)
			src, q := uniqueName(t, "iss"), uniqueName(t, "isq")
			g.exec("CREATE TABLE " + src + " (id INT PRIMARY KEY, name VARCHAR(20), n INT) ENGINE=InnoDB")
			t.Cleanup(func() { openMariaDB(t, "root", "", "test").Exec("DROP TABLE IF EXISTS " + src) })
			g.exec("CREATE TABLE " + q + " (id INT NOT NULL, what VARCHAR(40)) ENGINE=queue")
			g.exec("INSERT INTO " + src + " VALUES (1, 'a', 10), (2, 'b', NULL), (3, 'c', 30), (4, 'd', 40)")

			ins := "INSERT INTO " + q + " (id, what) SELECT id, CONCAT(name, ?) FROM " + src + " WHERE id > ? AND name <> ? ORDER BY id"
			r := g.exec(ins, " it's", 1, "c")
			if n, _ := r.RowsAffected(); n != 2 {
				t.Errorf("first execution affected %d, want 2", n)
			}
			r = g.exec(ins, `\-`, -1, "zz") // a backslash; "> -1" must not read as a comment
			if n, _ := r.RowsAffected(); n != 4 {
				t.Errorf("second execution affected %d, want 4", n)
			}
			g.wantRows("SELECT id, what FROM "+q, nil,
				[]string{"2", "b it's"}, []string{"4", "d it's"},
				[]string{"1", `a\-`}, []string{"2", `b\-`}, []string{"3", `c\-`}, []string{"4", `d\-`})
			g.wantValue("6", "SELECT ROW_COUNT() + 2") // the queue's insert ran last: 4 rows

			// NULL into a NOT NULL column at the second row: nothing is written.
			_, err := g.execErr("INSERT INTO "+q+" (id, what) SELECT n, name FROM "+src+" WHERE id >= ? ORDER BY id", 0)
			wantMySQLError(t, err, 1048, "23000", "Column 'id' cannot be null", false)
			_, err = g.execErr("INSERT INTO "+q+" (id) SELECT id, name FROM "+src+" WHERE id > ?", 100)
			wantMySQLError(t, err, 1136, "21S01", "Column count doesn't match value count at row 1", false)
			g.wantValue("6", "SELECT COUNT(*) FROM "+q)
			g.wantValue("4", "SELECT COUNT(*) FROM "+src)
		})
	}
}

// A large INSERT ... SELECT (200,000 rows, 39 MB of values) is not held
// several times over: q4mproxy keeps the rows' encoding once while they
// arrive (the upstream's packets and decoded values are not collected),
// and the store copies them to commit.
func TestUpstreamInsertSelectLarge(t *testing.T) {
	s := startFastServer(t, "--upstream", mariadbAddr(t))
	g := newGConn(t, s, driverModes[1])
	q := uniqueName(t, "isbig")
	g.exec("CREATE TABLE " + q + " (id INT NOT NULL, v VARCHAR(255)) ENGINE=queue")
	const rows, size = 200000, 200
	g.wantValue("1", "SELECT 1 FROM seq_1_to_1") // the upstream connection is open
	before := vmHWM(t, s)
	r := g.exec(fmt.Sprintf("INSERT INTO %s (id, v) SELECT seq, REPEAT('x', %d) FROM seq_1_to_%d", q, size, rows))
	if n, _ := r.RowsAffected(); n != rows {
		t.Fatalf("affected %d rows, want %d", n, rows)
	}
	after := vmHWM(t, s)
	data := rows * size >> 10
	t.Logf("q4mproxy peak RSS %d kB before, %d kB after inserting %d rows (%d kB of values)", before, after, rows, data)
	g.wantValue(fmt.Sprint(rows), "SELECT COUNT(*) FROM "+q)
	g.wantValue("1", "SELECT queue_wait('"+q+"', 5)")
	g.wantRows("SELECT id, LENGTH(v) FROM "+q, nil, []string{"1", fmt.Sprint(size)})
	g.wantValue("1", "SELECT queue_end()")
	// The rows held once while they arrive, then what the store's commit
	// adds (its batch, Pebble's memtable) and the garbage collector's
	// headroom over the live heap: measured 4.5 to 4.7 times the values
	// (178 MB here), against 6.6 times (260 MB) when the result was
	// collected first (the upstream's packets, the decoded values and the
	// encoded rows, all at once).
	// The bound, 6 times, leaves room for the collector's pacing on a
	// loaded machine and still fails the collect-first way.
	if grow := after - before; grow > 6*data {
		t.Errorf("peak RSS grew by %d kB inserting %d kB of values: more than 6 times", grow, data)
	}
}
