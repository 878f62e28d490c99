package integration

import (
	"os/exec"
	"strings"
	"testing"
)

// TestCLIQuickStart runs the README's quick start through the mysql CLI.
func TestCLIQuickStart(t *testing.T) {
	s := startServer(t)
	out, err := s.mysqlCLI(t, `
CREATE TABLE my_queue (v1 int not null, v2 varchar(255)) ENGINE=queue;
INSERT INTO my_queue (v1, v2) VALUES (3, "hello world!");
SELECT queue_wait('my_queue');
SELECT * FROM my_queue;
SELECT queue_end();
SELECT COUNT(*) FROM my_queue;
`, "test")
	if err != nil {
		t.Fatalf("mysql: %v\n%s", err, out)
	}
	want := "queue_wait('my_queue')\n1\nv1\tv2\n3\thello world!\nqueue_end()\n1\nCOUNT(*)\n0\n"
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
}

// TestCLIErrors checks that errors reach the CLI with MySQL's codes and
// SQLSTATEs, and that the connection stays usable after each.
func TestCLIErrors(t *testing.T) {
	s := startServer(t)
	if out, err := s.mysqlCLI(t, "CREATE TABLE q (v int not null, s varchar(3)) ENGINE=queue;", "test"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	tests := []struct{ sql, want string }{
		{"SELECT * FROM nosuch", "ERROR 1146 (42S02) at line 1: Table 'test.nosuch' doesn't exist"},
		{"SELEC 1", "ERROR 1064 (42000) at line 1: You have an error in your SQL syntax"},
		{"INSERT INTO q VALUES (1)", "ERROR 1136 (21S01) at line 1: Column count doesn't match value count at row 1"},
		{"INSERT INTO q (v) VALUES (NULL)", "ERROR 1048 (23000) at line 1: Column 'v' cannot be null"},
		{"INSERT INTO q (v, s) VALUES (1, 'abcd')", "ERROR 1406 (22001) at line 1: Data too long for column 's' at row 1"},
		{"INSERT INTO q (v) VALUES ('x')", "ERROR 1366 (HY000) at line 1: Incorrect integer value: 'x' for column 'v' at row 1"},
		{"INSERT INTO q (nope) VALUES (1)", "ERROR 1054 (42S22) at line 1: Unknown column 'nope' in 'field list'"},
		{"INSERT INTO q (v) VALUES (1), (2), (NULL)", "ERROR 1048 (23000) at line 1: Column 'v' cannot be null"},
		{"SELECT queue_abort()", "ERROR 1123 (HY000) at line 1: Can't initialize function 'queue_abort'; queue_abort(): not in owner mode"},
		{"SELECT queue_rowid()", "ERROR 1123 (HY000) at line 1: Can't initialize function 'queue_rowid'; queue_rowid(): not in owner mode"},
		{"SELECT queue_wait()", "ERROR 1123 (HY000) at line 1: Can't initialize function 'queue_wait'; queue_wait(table_name[,timeout]): argument error"},
		{"CREATE TABLE t2 (a int) ENGINE=InnoDB", "ERROR 1286 (42000) at line 1: Unknown storage engine 'InnoDB'"},
		{"CREATE TABLE t2 (a int primary key) ENGINE=queue", "ERROR 1069 (42000) at line 1: Too many keys specified; max 0 keys allowed"},
		{"CREATE TABLE q (a int) ENGINE=queue", "ERROR 1050 (42S01) at line 1: Table 'q' already exists"},
		{"USE nosuch", "ERROR 1049 (42000) at line 1: Unknown database 'nosuch'"},
		{"GRANT ALL ON *.* TO x", "ERROR 1235 (42000) at line 1:"},
	}
	for _, tc := range tests {
		t.Run(tc.sql, func(t *testing.T) {
			if strings.Contains(tc.sql, "InnoDB") || strings.HasPrefix(tc.sql, "GRANT") {
				standaloneOnly(t, "the upstream runs it")
			}
			// --force: the client goes on after an error, on the same connection.
			out, _ := s.mysqlCLI(t, tc.sql+";\nSELECT 'still alive';\n", "--force", "test")
			if !strings.Contains(out, tc.want) {
				t.Errorf("output %q does not contain %q", out, tc.want)
			}
			if !strings.Contains(out, "still alive") {
				t.Errorf("connection not usable after the error: %q", out)
			}
		})
	}
	// Nothing acknowledged was lost and the atomic multi-row insert left nothing.
	out, err := s.mysqlCLI(t, "SELECT COUNT(*) FROM q;", "test")
	if err != nil || out != "COUNT(*)\n0\n" {
		t.Errorf("count after errors: %q %v", out, err)
	}
}

// TestCLIInteractive drives the interactive client through a pseudo-terminal
// (script(1)): prompt, auto-rehash (COM_FIELD_LIST), the status command.
func TestCLIInteractive(t *testing.T) {
	requireClients(t, "mysql", "script")
	s := startServer(t)
	if out, err := s.mysqlCLI(t, "CREATE TABLE iq (v int) ENGINE=queue;", "test"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	cmd := exec.Command("script", "-qec", "mysql --no-defaults -h127.0.0.1 -P"+s.port+" -uroot test", "/dev/null")
	cmd.Stdin = strings.NewReader("status\nSELECT 40+2 AS answer;\nuse test\nexit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("interactive mysql: %v\n%s", err, out)
	}
	for _, want := range []string{"Server version:\t\t5.7.99-q4mproxy", "Uptime:", "MySQL [test]>", "| answer |", "|     42 |", "Database changed", "Bye"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("interactive output lacks %q:\n%s", want, out)
		}
	}
}
