package integration

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cliStatus runs SHOW <scope> STATUS [LIKE pattern] through the mysql CLI
// (a connection of its own) and returns the numeric values by name.
func cliStatus(t *testing.T, s *server, query string) map[string]int64 {
	t.Helper()
	out, err := s.mysqlCLI(t, "", "-N", "-B", "-e", query)
	if err != nil {
		t.Fatalf("mysql -e %q: %v\n%s", query, err, out)
	}
	m := map[string]int64{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		name, value, ok := strings.Cut(line, "\t")
		if !ok {
			t.Fatalf("%q: unexpected line %q", query, line)
		}
		if n, err := strconv.ParseInt(value, 10, 64); err == nil {
			m[name] = n
		}
	}
	return m
}

// SHOW GLOBAL STATUS through the mysql CLI: the counters monitoring tools
// read are there and move with what clients do.
func TestShowStatusCLI(t *testing.T) {
	s := startServer(t)
	before := cliStatus(t, s, "SHOW GLOBAL STATUS")
	for _, name := range []string{"Uptime", "Threads_connected", "Threads_running", "Threads_created", "Connections",
		"Aborted_connects", "Aborted_clients", "Questions", "Queries", "Com_select", "Com_insert", "Com_update",
		"Com_delete", "Com_set_option", "Com_show_status", "Com_begin", "Com_commit", "Com_rollback",
		"Com_stmt_prepare", "Com_stmt_execute", "Com_stmt_close", "Com_change_db", "Bytes_received", "Bytes_sent",
		"Max_used_connections", "Slow_queries", "Queue_tables", "Queue_rows", "Queue_owned", "Queue_waiters",
		"Queue_inserted", "Queue_consumed", "Queue_aborted", "Queue_restored", "Queue_wait_timeouts"} {
		if _, ok := before[name]; !ok {
			t.Errorf("SHOW GLOBAL STATUS lacks %s", name)
		}
	}
	// Three connections of go-sql-driver held open, and statements of
	// every kind: text and prepared.
	g := newGConn(t, s, driverModes[1])
	p := newGConn(t, s, driverModes[0])
	newGConn(t, s, driverModes[1])
	g.exec("CREATE TABLE stq (v INT) ENGINE=queue")
	g.exec("INSERT INTO stq VALUES (1), (2)")
	g.exec("INSERT INTO stq VALUES (3)")
	p.exec("INSERT INTO stq VALUES (?)", 4)
	g.wantValue("4", "SELECT COUNT(*) FROM stq")
	g.wantValue("1", "SELECT queue_wait('stq')")
	g.wantValue("1", "SELECT queue_end()")

	// A login refused for a wrong password.
	if out, err := s.mysqlCLI(t, "", "-pwrong", "-e", "SELECT 1"); err == nil || !strings.Contains(out, "ERROR 1045") {
		t.Fatalf("login with a wrong password: %v\n%s", err, out)
	}

	after := cliStatus(t, s, "SHOW GLOBAL STATUS")
	grew := func(name string, min int64) {
		t.Helper()
		if d := after[name] - before[name]; d < min {
			t.Errorf("%s grew by %d (%d -> %d), want at least %d", name, d, before[name], after[name], min)
		}
	}
	grew("Com_insert", 3)
	grew("Com_select", 3)
	grew("Com_create_table", 1)
	grew("Com_stmt_prepare", 1)
	grew("Com_stmt_execute", 1)
	grew("Com_show_status", 1)
	grew("Questions", 8)
	grew("Connections", 4)
	grew("Aborted_connects", 1)
	grew("Bytes_received", 100)
	grew("Bytes_sent", 100)
	grew("Queue_inserted", 4)
	grew("Queue_consumed", 1)
	grew("Queue_wait_immediate", 1)
	// The three held connections and the CLI's own; the first CLI has
	// gone, without COM_QUIT or with it.
	if after["Threads_connected"] != 4 {
		t.Errorf("Threads_connected = %d with 3 connections held and the CLI's, want 4", after["Threads_connected"])
	}
	if after["Threads_running"] < 1 || after["Max_used_connections"] < 4 {
		t.Errorf("Threads_running %d, Max_used_connections %d; want >= 1, >= 4", after["Threads_running"], after["Max_used_connections"])
	}
	if after["Queue_tables"] != 1 || after["Queue_rows"] != 3 {
		t.Errorf("Queue_tables %d, Queue_rows %d; want 1, 3", after["Queue_tables"], after["Queue_rows"])
	}
	if after["Uptime"] < before["Uptime"] {
		t.Errorf("Uptime went back: %d -> %d", before["Uptime"], after["Uptime"])
	}

	// LIKE and WHERE Variable_name = ..., and the session's own counters.
	like := cliStatus(t, s, "SHOW GLOBAL STATUS LIKE 'Queue\\_%'")
	for name := range like {
		if !strings.HasPrefix(name, "Queue_") {
			t.Errorf("LIKE 'Queue\\_%%' listed %s", name)
		}
	}
	if len(like) < 9 {
		t.Errorf("LIKE 'Queue\\_%%' listed %d variables: %v", len(like), like)
	}
	g.wantRows("SHOW GLOBAL STATUS WHERE Variable_name = 'Queue_rows'", nil, []string{"Queue_rows", "3"})
	sess := newGConn(t, s, driverModes[1])
	sess.exec("SELECT 1")
	sess.wantRows("SHOW SESSION STATUS LIKE 'Com_select'", nil, []string{"Com_select", "1"})
	sess.wantRows("SHOW STATUS LIKE 'Com_insert'", nil, []string{"Com_insert", "0"})
	// FLUSH STATUS (mysqladmin flush-status) restarts the session's own.
	g.exec("FLUSH STATUS")
	g.wantRows("SHOW SESSION STATUS LIKE 'Com_insert'", nil, []string{"Com_insert", "0"})
	if r := g.rows("SHOW GLOBAL STATUS LIKE 'Com_insert'"); len(r) != 1 || r[0][1] == "0" {
		t.Errorf("after FLUSH STATUS, the global Com_insert: %q", r)
	}

	// A client that goes away without COM_QUIT is an aborted client.
	aborted := after["Aborted_clients"]
	raw := rawLogin(t, s) // abuse_test.go
	raw.c.Close()
	eventually(t, time.Minute, "Aborted_clients to count a connection closed without COM_QUIT", func() bool {
		var v string
		_ = g.c.QueryRowContext(t.Context(), "SHOW GLOBAL STATUS LIKE 'Aborted_clients'").Scan(new(string), &v)
		n, _ := strconv.ParseInt(v, 10, 64)
		return n > aborted
	})
}

// information_schema.PROCESSLIST lists the connections as SHOW FULL
// PROCESSLIST does, with WHERE and ORDER BY; with --upstream it is
// q4mproxy's list (one thread-id space).
func TestInformationSchemaProcessList(t *testing.T) {
	s := startServer(t)
	admin := newGConn(t, s, driverModes[1])
	admin.exec("CREATE TABLE ipq (v INT) ENGINE=queue")
	waiter := newGConn(t, s, driverModes[1])
	waiterID := waiter.value("SELECT CONNECTION_ID()")
	done := make(chan error, 1)
	go func() {
		_, err := waiter.c.ExecContext(context.Background(), "SELECT queue_wait('ipq', 60)")
		done <- err
	}()
	q := "SELECT ID, USER, DB, COMMAND, STATE, INFO FROM information_schema.PROCESSLIST WHERE ID = " + waiterID
	eventually(t, time.Minute, "the waiter in information_schema.PROCESSLIST", func() bool {
		rows := admin.rows(q)
		return len(rows) == 1 && rows[0][4] == "Waiting in queue_wait"
	})
	admin.wantRows(q, nil, []string{waiterID, "root", "test", "Query", "Waiting in queue_wait", "SELECT queue_wait('ipq', 60)"})
	self := admin.value("SELECT CONNECTION_ID()")
	rows := admin.rows("SELECT ID, COMMAND, INFO FROM information_schema.PROCESSLIST ORDER BY ID DESC")
	if len(rows) != 2 {
		t.Fatalf("PROCESSLIST rows %q, want the waiter and this connection", rows)
	}
	hi, lo := self, waiterID
	if a, _ := strconv.Atoi(self); a < mustAtoi(t, waiterID) {
		hi, lo = waiterID, self
	}
	if rows[0][0] != hi || rows[1][0] != lo {
		t.Errorf("ORDER BY ID DESC gave %q", rows)
	}
	for _, r := range rows {
		if r[0] == self && (r[1] != "Query" || !strings.HasPrefix(r[2], "SELECT ID, COMMAND, INFO FROM information_schema.PROCESSLIST")) {
			t.Errorf("own row %q", r)
		}
	}
	// The mysql CLI sees MySQL's columns.
	out, err := s.mysqlCLI(t, "", "-B", "-e", "SELECT * FROM information_schema.PROCESSLIST WHERE COMMAND <> 'Sleep' ORDER BY ID")
	if err != nil {
		t.Fatalf("mysql: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if lines[0] != "ID\tUSER\tHOST\tDB\tCOMMAND\tTIME\tSTATE\tINFO" {
		t.Errorf("header %q", lines[0])
	}
	if len(lines) != 3 || !strings.HasPrefix(lines[1], waiterID+"\troot\t127.0.0.1:") || !strings.Contains(lines[2], "information_schema.PROCESSLIST") {
		t.Errorf("mysql CLI rows:\n%s", out)
	}
	admin.exec("KILL QUERY " + waiterID)
	if err := <-done; err == nil {
		t.Error("the killed wait returned no error")
	}

	// The status tables.
	admin.exec("INSERT INTO ipq VALUES (1), (2)")
	admin.wantRows("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'QUEUE_ROWS'", nil, []string{"2"})
}

func mustAtoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// scrape fetches the exporter's /metrics and returns the samples by
// series (name with labels).
func scrape(t *testing.T, url string) (map[string]float64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m, sc.Err()
}

// Debian's prometheus-mysqld-exporter, with its default collectors, the
// processlist's and info_schema.tables (a queue's depth), scrapes q4mproxy without errors (and, in the suite's
// upstream mode, q4mproxy in front of MariaDB): mysql_up 1, no collector
// error, the status counters, Queue_* included, move when rows are
// inserted, and a consumer blocked in queue_wait shows by its state.
func TestMysqldExporter(t *testing.T) {
	requireClients(t, "prometheus-mysqld-exporter")
	dir := t.TempDir()
	users := filepath.Join(dir, "users")
	// The same account MariaDB has, for the upstream mode.
	if err := os.WriteFile(users, []byte("gotest:gotest\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--users-file", users)
	cnf := filepath.Join(dir, "my.cnf")
	if err := os.WriteFile(cnf, []byte(fmt.Sprintf("[client]\nuser=gotest\npassword=gotest\nhost=127.0.0.1\nport=%s\n", s.port)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Port 0: the exporter logs the port it was given ("Listening on"),
	// where a port picked free beforehand could be taken meanwhile.
	cmd := exec.Command("prometheus-mysqld-exporter", "--config.my-cnf="+cnf, "--web.listen-address=127.0.0.1:0",
		"--collect.info_schema.processlist", "--collect.info_schema.processlist.processes_by_user",
		"--collect.info_schema.processlist.processes_by_host", "--collect.info_schema.tables")
	var stderr lockedBuffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setPdeathsig(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("exporter log:\n%s", stderr.String())
		}
	})
	var addr string
	eventually(t, time.Minute, "the exporter to log the address it listens on", func() bool {
		select {
		case <-exited:
			t.Fatalf("the exporter exited:\n%s", stderr.String())
		default:
		}
		if m := exporterListening.FindStringSubmatch(stderr.String()); m != nil {
			addr = m[1]
		}
		return addr != ""
	})
	url := "http://" + addr + "/metrics"
	var m map[string]float64
	eventually(t, 60*time.Second, "the exporter to serve /metrics", func() bool {
		var err error
		m, err = scrape(t, url)
		return err == nil
	})
	check := func(m map[string]float64) {
		t.Helper()
		if m["mysql_up"] != 1 {
			t.Errorf("mysql_up = %v, want 1", m["mysql_up"])
		}
		if v, ok := m["mysql_exporter_last_scrape_error"]; !ok || v != 0 {
			t.Errorf("mysql_exporter_last_scrape_error = %v (present %v), want 0", v, ok)
		}
		for series, v := range m {
			if strings.HasPrefix(series, "mysql_exporter_scrape_errors_total") && v != 0 {
				t.Errorf("%s %v", series, v)
			}
			// mysqld_exporter 0.15 and later report each collector's
			// outcome.
			if strings.HasPrefix(series, "mysql_exporter_collector_success") && v != 1 {
				t.Errorf("%s %v", series, v)
			}
		}
	}
	check(m)
	if v, ok := m["mysql_global_status_threads_connected"]; !ok || v < 1 {
		t.Errorf("mysql_global_status_threads_connected = %v (present %v), want >= 1", v, ok)
	}
	if _, ok := m["mysql_global_status_uptime"]; !ok {
		t.Error("no mysql_global_status_uptime")
	}
	if v := m[`mysql_global_variables_max_connections`]; v < 1 {
		t.Errorf("mysql_global_variables_max_connections = %v", v)
	}

	g := newGConn(t, s, driverModes[1])
	g.exec("CREATE TABLE exq (v INT) ENGINE=queue")
	g.exec("INSERT INTO exq VALUES (1), (2), (3)")
	g.exec("INSERT INTO exq VALUES (4)")
	m2, err := scrape(t, url)
	if err != nil {
		t.Fatal(err)
	}
	check(m2)
	for _, c := range []struct {
		series string
		min    float64
	}{
		{"mysql_global_status_queue_inserted", 4},
		{"mysql_global_status_queue_rows", 4},
		{`mysql_global_status_commands_total{command="insert"}`, 2},
		{`mysql_global_status_commands_total{command="create_table"}`, 1},
		{"mysql_global_status_questions", 3},
	} {
		if d := m2[c.series] - m[c.series]; d < c.min {
			t.Errorf("%s went from %v to %v, want it up by %v", c.series, m[c.series], m2[c.series], c.min)
		}
	}
	// info_schema.tables: a queue's depth per table (with --upstream
	// beside the upstream's tables: information_schema.TABLES is merged).
	if v := m2[`mysql_info_schema_table_rows{schema="test",table="exq"}`]; v != 4 {
		t.Errorf(`mysql_info_schema_table_rows{schema="test",table="exq"} = %v, want 4`, v)
	}
	if m2["mysql_global_status_queue_tables"] < 1 || m2["mysql_global_status_threads_connected"] < 2 {
		t.Errorf("queue_tables %v, threads_connected %v; want >= 1, >= 2",
			m2["mysql_global_status_queue_tables"], m2["mysql_global_status_threads_connected"])
	}

	// A consumer waiting on an empty queue: the processlist collector
	// counts it by state (GROUP BY over information_schema.PROCESSLIST).
	g.exec("CREATE TABLE exempty (v INT) ENGINE=queue")
	waiter := newGConn(t, s, driverModes[1])
	done := make(chan error, 1)
	go func() {
		_, err := waiter.c.ExecContext(context.Background(), "SELECT queue_wait('exempty', 60)")
		done <- err
	}()
	series := `mysql_info_schema_processlist_threads{command="query",state="waiting_in_queue_wait"}`
	var m3 map[string]float64
	// Both in one scrape: the exporter's collectors (the processlist's,
	// the global status') run at once, so one may read the server before
	// the waiter started waiting and the other after.
	eventually(t, time.Minute, "the exporter to see the consumer waiting in queue_wait", func() bool {
		var err error
		m3, err = scrape(t, url)
		return err == nil && m3[series] == 1 && m3["mysql_global_status_queue_waiters"] == 1
	})
	check(m3)
	if m3[`mysql_info_schema_processlist_processes_by_user{mysql_user="root"}`] < 2 ||
		m3[`mysql_info_schema_processlist_processes_by_host{client_host="127.0.0.1"}`] < 2 {
		t.Errorf("processes by user or host missing: %v", m3)
	}
	g.exec("INSERT INTO exempty VALUES (1)")
	if err := <-done; err != nil {
		t.Fatalf("the waiting consumer: %v", err)
	}
	if strings.Contains(stderr.String(), "level=error") {
		t.Errorf("the exporter logged errors:\n%s", stderr.String())
	}
}

// exporterListening matches the line of mysqld_exporter's (its exporter
// toolkit's) that gives the address it listens on.
var exporterListening = regexp.MustCompile(`msg="?Listening on"?.* address=(127\.0\.0\.1:[0-9]+)`)

// lockedBuffer is a bytes.Buffer a child process writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// With --upstream, SHOW GLOBAL STATUS lists q4mproxy's own counters for
// the names it keeps (its clients' connections and statements), the
// upstream's for the rest (InnoDB, handlers), and Queue_*.
func TestShowStatusUpstreamMerge(t *testing.T) {
	s := startServer(t, "--upstream", mariadbAddr(t))
	g := newGConn(t, s, driverModes[1])
	newGConn(t, s, driverModes[0])
	g.exec("CREATE TABLE smq (v INT) ENGINE=queue")
	g.exec("INSERT INTO smq VALUES (1), (2)")
	st := map[string]string{}
	for _, r := range g.rows("SHOW GLOBAL STATUS") {
		if _, dup := st[r[0]]; dup {
			t.Errorf("%s listed twice", r[0])
		}
		st[r[0]] = r[1]
	}
	for name, want := range map[string]string{"Threads_connected": "2", "Queue_rows": "2", "Queue_tables": "1"} {
		if st[name] != want {
			t.Errorf("%s = %q, want %q (q4mproxy's)", name, st[name], want)
		}
	}
	if _, ok := st["Handler_commit"]; !ok {
		t.Error("no Handler_commit: the upstream's variables are missing")
	}
	g.wantRows("SHOW GLOBAL STATUS LIKE 'Queue_rows'", nil, []string{"Queue_rows", "2"})
	// information_schema.GLOBAL_STATUS is q4mproxy's alone.
	g.wantRows("SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'THREADS_CONNECTED'", nil, []string{"2"})
	g.wantRows("SELECT COUNT(*) FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'HANDLER_COMMIT'", nil, []string{"0"})
}
