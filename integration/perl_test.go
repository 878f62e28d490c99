package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// perlScripts are the Test::More scripts in testdata, each run against a
// fresh server with every driver in perlDrivers.
var perlScripts = []string{
	"basic.pl",       // FIFO, consume-on-next-wait, queue_end, INSERT forms
	"owner_views.pl", // owner vs non-owner views, abort, COUNT(*), timeouts, rowids
	"multi_table.pl", // prioritised multi-table waits, blocked waiter woken
	"delete.pl",      // DELETE forms, in and against owner mode
	"ddl.pl",         // TRUNCATE and DROP with owners and waiters
	"blob.pl",        // large MEDIUMTEXT and binary MEDIUMBLOB values
	"multireader.pl", // 32 concurrent readers, 32 insert-then-consume workers
	"multiwait.pl",   // semi-starvation: 8 rows circulating among 32 workers
	"errors.pl",      // error codes, SQLSTATEs and messages
}

var (
	tapPlan  = regexp.MustCompile(`(?m)^1\.\.[1-9][0-9]*$`)
	tapNotOK = regexp.MustCompile(`(?m)^not ok`)
)

// TestPerl runs the Perl DBI scripts in testdata.
func TestPerl(t *testing.T) {
	for _, script := range perlScripts {
		t.Run(strings.TrimSuffix(script, ".pl"), func(t *testing.T) {
			for _, d := range perlDrivers {
				t.Run(d, func(t *testing.T) {
					s := startServer(t)
					out := s.perl(t, d, script)
					// s.perl fails on a non-zero exit; also insist that the
					// script ran to done_testing and printed no failure.
					if !tapPlan.MatchString(out) || tapNotOK.MatchString(out) {
						t.Fatalf("perl %s (%s): incomplete or failing TAP:\n%s", script, d, out)
					}
					for _, l := range strings.Split(out, "\n") {
						if strings.HasPrefix(l, "#") {
							t.Log(l)
						}
					}
				})
			}
		})
	}
}

// TestPerlKilledOwner kills a Perl client with SIGKILL while it owns a row:
// the server must notice the closed socket and give the row back.
func TestPerlKilledOwner(t *testing.T) {
	for _, d := range perlDrivers {
		t.Run(d, func(t *testing.T) {
			requireClients(t, "perl", "DBD::"+d) // DBD::* loads DBI
			s := startServer(t)
			c := s.conn(t)
			connExec(t, c, "CREATE TABLE kq (v INT NOT NULL) ENGINE=queue")
			connExec(t, c, "INSERT INTO kq (v) VALUES (1), (2), (3)")

			p := s.startPerl(t, d, "own_and_sleep.pl", "kq", "10")
			if line := p.waitLine(t, time.Minute, "OWNED ", "RESULT "); line != "OWNED 1" {
				t.Fatalf("helper printed %q, want %q", line, "OWNED 1")
			}
			if got := connInts(t, c, "SELECT v FROM kq"); !slices.Equal(got, []int64{2, 3}) {
				t.Fatalf("while owned by the Perl client: SELECT v = %v, want [2 3]", got)
			}
			if got := connInts(t, c, "SELECT COUNT(*) FROM kq"); !slices.Equal(got, []int64{3}) {
				t.Errorf("COUNT(*) while row 1 is owned = %v, want [3]", got)
			}

			p.kill(t)
			eventually(t, time.Minute, "row 1 of the killed client to come back", func() bool {
				return slices.Equal(connInts(t, c, "SELECT v FROM kq"), []int64{1, 2, 3})
			})
			if got := connInts(t, c, "SELECT queue_wait('kq', 5)"); !slices.Equal(got, []int64{1}) {
				t.Fatalf("queue_wait('kq', 5) = %v, want [1]", got)
			}
			if got := connInts(t, c, "SELECT v FROM kq"); !slices.Equal(got, []int64{1}) {
				t.Fatalf("owner view = %v, want [1] (the released row, at the head)", got)
			}
			if got := connInts(t, c, "SELECT queue_rowid()"); !slices.Equal(got, []int64{1}) {
				t.Errorf("queue_rowid() = %v, want [1]", got)
			}
			connExec(t, c, "SELECT queue_end()")
			if got := connInts(t, c, "SELECT v FROM kq"); !slices.Equal(got, []int64{2, 3}) {
				t.Errorf("after consuming the released row: SELECT v = %v, want [2 3]", got)
			}
		})
	}
}

// TestPerlKilledWaiter kills a Perl client with SIGKILL while it is blocked
// in queue_wait: a row inserted afterwards must reach a live waiter, not be
// swallowed by the dead one.
func TestPerlKilledWaiter(t *testing.T) {
	for _, d := range perlDrivers {
		t.Run(d, func(t *testing.T) {
			requireClients(t, "perl", "DBD::"+d) // DBD::* loads DBI
			s := startServer(t)
			c := s.conn(t)
			connExec(t, c, "CREATE TABLE kw (v INT NOT NULL) ENGINE=queue")
			connExec(t, c, "CREATE TABLE ksig (v INT NOT NULL) ENGINE=queue")
			connExec(t, c, "INSERT INTO ksig (v) VALUES (1)")

			p := s.startPerl(t, d, "own_and_sleep.pl", "kw", "60", "ksig")
			p.waitLine(t, time.Minute, "WAITING")
			// The helper owns the ksig row; its queue_wait('kw', 60) consumes
			// that row before blocking, so COUNT(*) = 0 means the wait started.
			eventually(t, time.Minute, "the Perl client to be inside queue_wait('kw', 60)", func() bool {
				return slices.Equal(connInts(t, c, "SELECT COUNT(*) FROM ksig"), []int64{0})
			})
			p.kill(t)

			connExec(t, c, "INSERT INTO kw (v) VALUES (42)")
			start := time.Now()
			if got := connInts(t, c, "SELECT queue_wait('kw', 30)"); !slices.Equal(got, []int64{1}) {
				t.Fatalf("queue_wait('kw', 30) after the waiter was killed = %v (after %v), want [1]", got, time.Since(start))
			}
			if got := connInts(t, c, "SELECT v FROM kw"); !slices.Equal(got, []int64{42}) {
				t.Fatalf("owner view = %v, want [42]", got)
			}
			connExec(t, c, "SELECT queue_end()")
			if got := connInts(t, c, "SELECT COUNT(*) FROM kw"); !slices.Equal(got, []int64{0}) {
				t.Errorf("COUNT(*) after queue_end = %v, want [0]", got)
			}
		})
	}
}

// perlProc is a Perl helper process whose stdout is read line by line.
type perlProc struct {
	cmd    *exec.Cmd
	lines  chan string
	stderr *perlOutBuf
	done   chan struct{}
}

type perlOutBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *perlOutBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *perlOutBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// startPerl starts testdata/<script> with the DBI environment and leaves it
// running; it is killed at the end of the test if still alive.
func (s *server) startPerl(t testing.TB, driver, script string, args ...string) *perlProc {
	t.Helper()
	cmd := exec.Command("perl", append([]string{filepath.Join("testdata", script)}, args...)...)
	cmd.Env = append(os.Environ(), "DBI="+s.perlDSN(driver), "DBI_USER=root", "DBI_PASSWORD=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &perlProc{cmd: cmd, lines: make(chan string, 16), stderr: &perlOutBuf{}, done: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		_ = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// waitLine returns the first output line starting with one of prefixes.
func (p *perlProc) waitLine(t testing.TB, timeout time.Duration, prefixes ...string) string {
	t.Helper()
	deadline := time.After(timeout)
	var seen []string
	for {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("perl helper exited before printing %q; stdout %q; stderr:\n%s", prefixes, seen, p.stderr)
			}
			for _, pre := range prefixes {
				if strings.HasPrefix(l, pre) {
					return l
				}
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("perl helper did not print %q within %v; stdout %q; stderr:\n%s", prefixes, timeout, seen, p.stderr)
		}
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *perlProc) kill(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill perl helper: %v", err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("perl helper did not exit after SIGKILL")
	}
}

func connExec(t testing.TB, c *sql.Conn, query string) {
	t.Helper()
	rows, err := c.QueryContext(context.Background(), query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	for rows.Next() {
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	rows.Close()
}

// connInts returns the first column of every row (NULL fails the test).
func connInts(t testing.TB, c *sql.Conn, query string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := c.QueryContext(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		t.Fatal(err)
	}
	out := []int64{}
	for rows.Next() {
		vals := make([]any, len(cols))
		var v sql.NullInt64
		vals[0] = &v
		for i := 1; i < len(vals); i++ {
			vals[i] = new(sql.RawBytes)
		}
		if err := rows.Scan(vals...); err != nil {
			t.Fatalf("%s: %v", query, err)
		}
		if !v.Valid {
			t.Fatalf("%s: unexpected NULL", query)
		}
		out = append(out, v.Int64)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}
