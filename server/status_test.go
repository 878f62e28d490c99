package server

import (
	"database/sql"
	"sort"
	"strconv"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		q    string
		want string // Com_ name without prefix, "" for none
	}{
		{"SELECT 1", "select"},
		{"  (select 1) union (select 2)", "select"},
		{"/* hi */ SELECT queue_wait('q')", "select"},
		{"-- c\nselect 1", "select"},
		{"# c\nselect 1", "select"},
		{"INSERT INTO q VALUES (1)", "insert"},
		{"insert into q (a, b) values ('select', 2)", "insert"},
		{"INSERT INTO q SELECT * FROM t", "insert_select"},
		{"insert ignore into q (v) select 1", "insert_select"},
		{"REPLACE INTO t VALUES (1)", "replace"},
		{"UPDATE t SET a=1", "update"},
		{"DELETE FROM q", "delete"},
		{"SET NAMES utf8mb4", "set_option"},
		{"/*!40101 SET NAMES utf8 */", "set_option"},
		{"/*M!100100 SET @x=1 */", "set_option"},
		{"use test", "change_db"},
		{"BEGIN", "begin"},
		{"START TRANSACTION", "begin"},
		{"commit", "commit"},
		{"ROLLBACK", "rollback"},
		{"ROLLBACK TO SAVEPOINT a", "rollback_to_savepoint"},
		{"SHOW GLOBAL STATUS", "show_status"},
		{"SHOW STATUS LIKE 'Com%'", "show_status"},
		{"show session variables", "show_variables"},
		{"SHOW FULL PROCESSLIST", "show_processlist"},
		{"SHOW FULL TABLES", "show_tables"},
		{"SHOW TABLE STATUS", "show_table_status"},
		{"SHOW CREATE TABLE q", "show_create_table"},
		{"SHOW CREATE DATABASE test", "show_create_db"},
		{"SHOW ENGINE QUEUE STATUS", "show_engine_status"},
		{"SHOW SLAVE STATUS", "show_slave_status"},
		{"SHOW MASTER STATUS", "show_master_status"},
		{"SHOW BINARY LOGS", "show_binlogs"},
		{"SHOW WARNINGS", "show_warnings"},
		{"SHOW COLUMNS FROM q", "show_fields"},
		{"DESCRIBE q", "show_fields"},
		{"EXPLAIN SELECT 1", "select"},
		{"CREATE TABLE q (v int) ENGINE=queue", "create_table"},
		{"CREATE TEMPORARY TABLE t (v int)", "create_table"},
		{"create database d", "create_db"},
		{"DROP TABLE q", "drop_table"},
		{"DROP DATABASE IF EXISTS d", "drop_db"},
		{"ALTER TABLE q COMMENT 'x'", "alter_table"},
		{"TRUNCATE TABLE q", "truncate"},
		{"KILL QUERY 3", "kill"},
		{"LOCK TABLES q READ", "lock_tables"},
		{"UNLOCK TABLES", "unlock_tables"},
		{"CALL p()", "call_procedure"},
		{"SHOW VALVE STATUS", ""},
		{"", ""},
		{"'x'", ""},
		{"FOO BAR", ""},
	}
	for _, tt := range tests {
		got := ""
		if k := classify(tt.q); k != noCom {
			got = strings.TrimPrefix(comNames[k], "Com_")
		}
		if got != tt.want {
			t.Errorf("classify(%q) = %q, want %q", tt.q, got, tt.want)
		}
	}
}

// TestStatusVarsSorted checks that the variables come sorted and unique,
// as SHOW STATUS lists them (clients bisect or diff them).
func TestStatusVarsSorted(t *testing.T) {
	srv, _ := startServer(t)
	vars := srv.StatusVars()
	names := make([]string, len(vars))
	for i, v := range vars {
		names[i] = strings.ToLower(v.Name)
	}
	if !sort.StringsAreSorted(names) {
		t.Errorf("not sorted: %v", names)
	}
	for i := 1; i < len(names); i++ {
		if names[i] == names[i-1] {
			t.Errorf("duplicate %s", names[i])
		}
	}
	if !sort.SliceIsSorted(comNames[:], func(i, j int) bool { return comNames[i] < comNames[j] }) {
		t.Error("comNames not sorted")
	}
}

func showStatus(t *testing.T, c *sql.Conn, q string) map[string]int64 {
	t.Helper()
	rows, err := c.QueryContext(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	m := map[string]int64{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			t.Fatal(err)
		}
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			m[name] = n
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestStatusCounters drives the counters through go-sql-driver and reads
// them back with SHOW STATUS and through StatusVars / ErrorCounts.
func TestStatusCounters(t *testing.T) {
	srv, addr := startServer(t)
	c := openConn(t, addr, "")
	ctx := t.Context()
	before := showStatus(t, c, "SHOW GLOBAL STATUS")
	for _, name := range []string{"Uptime", "Threads_connected", "Threads_running", "Connections", "Questions",
		"Com_select", "Com_insert", "Bytes_received", "Bytes_sent", "Max_used_connections", "Queue_tables", "Queue_rows"} {
		if _, ok := before[name]; !ok {
			t.Errorf("SHOW GLOBAL STATUS has no %s", name)
		}
	}
	if before["Threads_connected"] != 1 || before["Threads_running"] != 1 {
		t.Errorf("Threads_connected %d, Threads_running %d; want 1, 1", before["Threads_connected"], before["Threads_running"])
	}
	for _, q := range []string{"CREATE TABLE q (v int) ENGINE=queue", "INSERT INTO q VALUES (1)", "INSERT INTO q VALUES (2),(3)"} {
		if _, err := c.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.ExecContext(ctx, "SELECT * FROM nosuch"); err == nil {
		t.Fatal("SELECT from a missing table succeeded")
	}
	c2 := openConn(t, addr, "")
	after := showStatus(t, c, "SHOW GLOBAL STATUS")
	checks := []struct {
		name string
		min  int64
	}{
		{"Com_insert", 2}, {"Com_create_table", 1}, {"Com_select", 1}, {"Com_show_status", 1},
		{"Questions", 5}, {"Queue_inserted", 3}, {"Queue_rows", 3},
	}
	for _, ck := range checks {
		if d := after[ck.name] - before[ck.name]; d < ck.min && !(ck.name == "Queue_rows" && after[ck.name] >= ck.min) {
			t.Errorf("%s grew by %d, want >= %d", ck.name, d, ck.min)
		}
	}
	if after["Bytes_received"] <= before["Bytes_received"] || after["Bytes_sent"] <= before["Bytes_sent"] {
		t.Errorf("Bytes_* did not grow: %v -> %v", before, after)
	}
	if after["Threads_connected"] != 2 || after["Max_used_connections"] < 2 || after["Queue_tables"] != 1 {
		t.Errorf("Threads_connected %d, Max_used_connections %d, Queue_tables %d; want 2, >= 2, 1",
			after["Threads_connected"], after["Max_used_connections"], after["Queue_tables"])
	}
	// The session's counters are its own.
	sess := showStatus(t, c2, "SHOW SESSION STATUS")
	if sess["Com_insert"] != 0 || sess["Com_show_status"] != 1 || sess["Questions"] != 1 {
		t.Errorf("new session: Com_insert %d, Com_show_status %d, Questions %d; want 0, 1, 1",
			sess["Com_insert"], sess["Com_show_status"], sess["Questions"])
	}
	like := showStatus(t, c, "SHOW STATUS LIKE 'Com_ins%'")
	if len(like) != 2 || like["Com_insert"] != 2 {
		t.Errorf("SHOW STATUS LIKE 'Com_ins%%' = %v; want Com_insert 2 and Com_insert_select", like)
	}
	// FLUSH STATUS restarts the session's counters, not the server's.
	if _, err := c.ExecContext(ctx, "FLUSH STATUS"); err != nil {
		t.Fatal(err)
	}
	flushed := showStatus(t, c, "SHOW SESSION STATUS")
	if flushed["Com_insert"] != 0 || flushed["Questions"] != 1 || flushed["Max_used_connections"] != 2 {
		t.Errorf("after FLUSH STATUS: session Com_insert %d, Questions %d, Max_used_connections %d; want 0, 1, 2",
			flushed["Com_insert"], flushed["Questions"], flushed["Max_used_connections"])
	}
	if g := showStatus(t, c, "SHOW GLOBAL STATUS LIKE 'Com_insert'"); g["Com_insert"] < 2 {
		t.Errorf("FLUSH STATUS reset the global Com_insert: %d", g["Com_insert"])
	}
	if n := srv.ErrorCounts()[1146]; n != 1 {
		t.Errorf("ErrorCounts()[1146] = %d, want 1", n)
	}

	// A refused login is an aborted connect and an error 1045.
	bad, err := sql.Open("mysql", "root:wrong@tcp("+addr+")/test")
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.PingContext(ctx); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
	vars := map[string]int64{}
	for _, v := range srv.StatusVars() {
		vars[v.Name] = v.Value
	}
	if vars["Aborted_connects"] < 1 || srv.ErrorCounts()[1045] < 1 {
		t.Errorf("after a refused login: Aborted_connects %d, errors 1045 %d", vars["Aborted_connects"], srv.ErrorCounts()[1045])
	}
}
