package integration

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// COM_CHANGE_USER through MariaDB Connector/C's mysql_change_user (the C
// API that PHP's mysqli, connection pools and C programs use): a line
// client built from testdata/mariadbc.c.

// cClientBin builds testdata/mariadbc.c once.
var cClientBin = sync.OnceValues(func() (string, error) {
	flags, err := exec.Command("pkg-config", "--cflags", "--libs", "libmariadb").Output()
	if err != nil {
		return "", fmt.Errorf("pkg-config libmariadb: %v (install libmariadb-dev)", err)
	}
	out := filepath.Join(filepath.Dir(binPath), "mariadbc")
	args := append([]string{"-O", "-o", out, "testdata/mariadbc.c"}, strings.Fields(string(flags))...)
	if b, err := exec.Command("gcc", args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gcc: %v\n%s", err, b)
	}
	return out, nil
})

// cClient is one connection of the Connector/C line client.
type cClient struct {
	t   testing.TB
	in  io.WriteCloser
	out *bufio.Reader
}

// connectC connects the C client to s; pw and db "-" mean none.
func connectC(t testing.TB, s *server, user, pw, db string) *cClient {
	t.Helper()
	requireClients(t, "gcc", "pkg-config")
	bin, err := cClientBin()
	if err != nil {
		if os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	cmd := exec.Command(bin, "127.0.0.1", s.port, user, pw, db)
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		_ = cmd.Wait()
	})
	c := &cClient{t: t, in: in, out: bufio.NewReader(stdout)}
	if got := c.read(); len(got) != 1 || got[0] != "connected" {
		t.Fatalf("C client connect: %q", got)
	}
	return c
}

func (c *cClient) read() []string {
	c.t.Helper()
	var lines []string
	for {
		l, err := c.out.ReadString('\n')
		if err != nil {
			c.t.Fatalf("C client: %v (read so far %q)", err, lines)
		}
		l = strings.TrimSuffix(l, "\n")
		if l == "." {
			return lines
		}
		lines = append(lines, l)
	}
}

// do sends one line and returns the answer's lines.
func (c *cClient) do(line string) []string {
	c.t.Helper()
	if _, err := fmt.Fprintln(c.in, line); err != nil {
		c.t.Fatal(err)
	}
	return c.read()
}

// want sends a line and checks the answer (its lines joined by "|").
func (c *cClient) want(line, want string) {
	c.t.Helper()
	if got := strings.Join(c.do(line), "|"); got != want {
		c.t.Errorf("%s: got %q, want %q", line, got, want)
	}
}

// wantPrefix checks the answer's start.
func (c *cClient) wantPrefix(line, prefix string) {
	c.t.Helper()
	if got := strings.Join(c.do(line), "|"); !strings.HasPrefix(got, prefix) {
		c.t.Errorf("%s: got %q, want %q...", line, got, prefix)
	}
}

func writeUsers(t testing.TB, lines ...string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestChangeUser: mysql_change_user resets the session (the owned row goes
// back, user variables are gone) whatever the outcome; a wrong password
// gets 1045 and the connection stays usable as the old user; a right one
// continues as the new user in the database asked for; after three
// failures the command is refused (1047, 08S01), as on MariaDB.
func TestChangeUser(t *testing.T) {
	s := startServer(t, "--users-file", writeUsers(t, "gotest:gotest"))
	c := connectC(t, s, "root", "-", "test")
	q := uniqueName(t, "cu")
	c.want("CREATE TABLE "+q+" (v INT) ENGINE=queue", "OK 0")
	c.want("INSERT INTO "+q+" VALUES (1), (2)", "OK 2")
	c.want("SELECT queue_wait('"+q+"', 5)", "1")
	c.want("SELECT v FROM "+q, "1") // owns row 1
	c.want("SET @x = 5", "OK 0")
	id := strings.Join(c.do("SELECT CONNECTION_ID()"), "")

	c.want("CHANGE gotest wrong test", "ERROR 1045 (28000): Access denied for user 'gotest'@'127.0.0.1' (using password: YES)")
	// Reset even so: the owned row is back at the head of the queue.
	other := s.open(t)
	var v int
	if err := other.QueryRow("SELECT queue_wait('test." + q + "', 5)").Scan(&v); err != nil || v != 1 {
		t.Fatalf("queue_wait after the failed change user: %d, %v", v, err)
	}
	if err := other.QueryRow("SELECT v FROM test." + q).Scan(&v); err != nil || v != 1 {
		t.Fatalf("the row owned before the change user: %d, %v; want 1 back at its place", v, err)
	}
	if _, err := other.Exec("SELECT queue_abort()"); err != nil {
		t.Fatal(err)
	}
	c.wantPrefix("SELECT USER()", "root@")
	c.want("SELECT @x", "NULL")
	c.want("SELECT DATABASE()", "test")

	c.want("CHANGE gotest gotest test", "OK")
	c.wantPrefix("SELECT USER()", "gotest@")
	c.want("SELECT DATABASE()", "test")
	c.want("SELECT CONNECTION_ID()", id)
	eventually(t, time.Minute, "SHOW PROCESSLIST lists the new user", func() bool {
		rows, err := other.Query("SHOW PROCESSLIST")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		for rows.Next() {
			var pid, user string
			var rest [6]any
			if err := rows.Scan(&pid, &user, &rest[0], &rest[1], &rest[2], &rest[3], &rest[4], &rest[5]); err != nil {
				t.Fatal(err)
			}
			if pid == id {
				return user == "gotest"
			}
		}
		return false
	})
	// The new user's session is a fresh one: it consumes as usual.
	c.want("SELECT queue_wait('"+q+"', 5)", "1")
	c.want("SELECT v FROM "+q, "1")
	c.want("SELECT queue_end()", "1")

	c.want("CHANGE root - -", "OK")
	c.wantPrefix("SELECT USER()", "root@")
	c.want("SELECT DATABASE()", "NULL")
	c.want("SELECT COUNT(*) FROM test."+q, "1")

	// Failures count per connection: the first was above.
	c.want("CHANGE gotest nope -", "ERROR 1045 (28000): Access denied for user 'gotest'@'127.0.0.1' (using password: YES)")
	c.want("CHANGE nobody nope -", "ERROR 1045 (28000): Access denied for user 'nobody'@'127.0.0.1' (using password: YES)")
	c.want("CHANGE gotest gotest -", "ERROR 1047 (08S01): Unknown command")
	c.wantPrefix("SELECT USER()", "root@") // still usable, as the old user

	c2 := connectC(t, s, "root", "-", "-")
	c2.want("CHANGE gotest - -", "ERROR 1045 (28000): Access denied for user 'gotest'@'127.0.0.1' (using password: NO)")
	c2.want("CHANGE gotest gotest -", "OK")
	c2.wantPrefix("SELECT USER()", "gotest@")
}

// TestUpstreamChangeUser: with --upstream the upstream session is reset
// too (its transaction rolled back, temporary tables gone) and logs in as
// the new user; a user the upstream refuses fails the change with the
// upstream's own error and the connection stays the old user's.
func TestUpstreamChangeUser(t *testing.T) {
	s := startUpstreamServer(t, "--users-file", writeUsers(t, "gotest:gotest", "ghost:boo"))
	c := connectC(t, s, "root", "-", "test")
	tbl := uniqueName(t, "cu_inno")
	c.want("CREATE TABLE "+tbl+" (id INT PRIMARY KEY) ENGINE=InnoDB", "OK 0")
	t.Cleanup(func() { openMariaDB(t, "root", "", "test").Exec("DROP TABLE IF EXISTS " + tbl) })
	c.want("CREATE TEMPORARY TABLE tmp_cu (a INT)", "OK 0")
	c.want("BEGIN", "OK 0")
	c.want("INSERT INTO "+tbl+" VALUES (1)", "OK 1")
	c.wantPrefix("SELECT CURRENT_USER()", "root@")

	c.wantPrefix("CHANGE ghost boo test", "ERROR 1045 (28000): Access denied for user 'ghost'@")
	c.wantPrefix("SELECT CURRENT_USER()", "root@")
	c.want("SELECT COUNT(*) FROM "+tbl, "0") // rolled back by the reset
	c.wantPrefix("SELECT * FROM tmp_cu", "ERROR 1146 (42S02)")

	c.want("CHANGE gotest gotest test", "OK")
	c.wantPrefix("SELECT CURRENT_USER()", "gotest@")
	c.want("SELECT DATABASE()", "test")
	c.want("INSERT INTO "+tbl+" VALUES (2)", "OK 1")
	c.want("SELECT COUNT(*) FROM "+tbl, "1")
}
