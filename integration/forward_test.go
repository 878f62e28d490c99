package integration

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of cmd/q4m-forward: the relay daemon, built once and run against
// q4mproxy servers.

var (
	forwardBuild   sync.Once
	forwardBinPath string
	forwardErr     error
)

// forwardBin builds cmd/q4m-forward (with -race when the tests run with it)
// next to the q4mproxy binary, whose directory TestMain removes.
func forwardBin(t testing.TB) string {
	t.Helper()
	forwardBuild.Do(func() {
		forwardBinPath = filepath.Join(filepath.Dir(binPath), "q4m-forward")
		args := []string{"build", "-o", forwardBinPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, "../cmd/q4m-forward")...).CombinedOutput()
		if err != nil {
			forwardErr = fmt.Errorf("building q4m-forward: %v\n%s", err, out)
		}
	})
	if forwardErr != nil {
		t.Fatal(forwardErr)
	}
	return forwardBinPath
}

// fwdEnv is the forwarder's environment: no DBI_USER/DBI_PASS from the
// caller, and no race-detector pause at exit.
func fwdEnv() []string {
	return append(envWithout("DBI_USER", "DBI_PASS", "GORACE"), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// fwdDSN is the q4m-forward operand for db.table on s.
func fwdDSN(s *server, db, table string) string {
	return fmt.Sprintf("dbi:mysql:database=%s;table=%s;host=127.0.0.1;port=%s;user=root", db, table, s.port)
}

// fwdProc is a running q4m-forward process.
type fwdProc struct {
	t       testing.TB
	cmd     *exec.Cmd
	logs    *logBuf
	exited  chan struct{}
	waitErr error
}

// fwdStart starts q4m-forward with JSON logs and args.
func fwdStart(t testing.TB, args ...string) *fwdProc {
	t.Helper()
	cmd := exec.Command(forwardBin(t), append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = fwdEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &fwdProc{t: t, cmd: cmd, logs: &logBuf{cond: make(chan struct{})}, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.logs.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("q4m-forward %q log:\n%s", args, p.logs)
		}
	})
	return p
}

// wait waits for the process to exit and returns its exit status.
func (p *fwdProc) wait(timeout time.Duration) int {
	p.t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		p.t.Fatalf("q4m-forward did not exit within %v; log:\n%s", timeout, p.logs)
	}
	var ee *exec.ExitError
	switch {
	case p.waitErr == nil:
		return 0
	case errors.As(p.waitErr, &ee) && ee.Exited():
		return ee.ExitCode()
	}
	p.t.Fatalf("q4m-forward: %v", p.waitErr)
	return -1
}

// wantExit waits for the process and checks its exit status.
func (p *fwdProc) wantExit(timeout time.Duration, want int) {
	p.t.Helper()
	if got := p.wait(timeout); got != want {
		p.t.Fatalf("q4m-forward exited with %d, want %d; log:\n%s", got, want, p.logs)
	}
}

// kill kills the forwarder with SIGKILL (kill -9).
func (p *fwdProc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// records returns the log records whose msg is msg.
func (p *fwdProc) records(msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(p.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// waitLog waits for a log record with this msg.
func (p *fwdProc) waitLog(timeout time.Duration, msg string) {
	p.t.Helper()
	if _, ok := p.logs.waitFor(timeout, func(l string) bool { return strings.Contains(l, `"msg":"`+msg+`"`) }); !ok {
		p.t.Fatalf("q4m-forward did not log %q within %v; log:\n%s", msg, timeout, p.logs)
	}
}

// fwdRun runs q4m-forward to completion (within 60 s).
func fwdRun(t testing.TB, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, forwardBin(t), args...)
	cmd.Env = fwdEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("q4m-forward %q did not exit within 60 s; output:\n%s%s", args, out.String(), errOut.String())
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("q4m-forward %q: %v", args, err)
	}
	return code, out.String(), errOut.String()
}

// fwdDrain forwards everything in src to dst and exits (--exit-when-empty).
func fwdDrain(t testing.TB, src, dst string, extra ...string) *fwdProc {
	t.Helper()
	p := fwdStart(t, append(extra, "--exit-when-empty", "--wait-timeout=0", src, dst)...)
	// Draining only needs to end: 20 MB of large rows took over a minute
	// in front of MariaDB on a loaded machine (race build).
	p.wantExit(5*time.Minute, 0)
	return p
}

// fwdCount is SELECT COUNT(*) FROM table, or -1 on an error (the server may
// be restarting).
func fwdCount(db *sql.DB, table string) int {
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM " + table).Scan(&n); err != nil {
		return -1
	}
	return n
}

// fwdInsertIDs inserts rows (id, pad) with ids from..to-1, 100 per INSERT.
func fwdInsertIDs(t testing.TB, g *gconn, table string, from, to int) {
	t.Helper()
	for lo := from; lo < to; lo += 100 {
		hi := min(lo+100, to)
		var args []any
		for id := lo; id < hi; id++ {
			args = append(args, id, fmt.Sprintf("pad-%d", id))
		}
		g.exec("INSERT INTO "+table+" (id, pad) VALUES "+strings.TrimSuffix(strings.Repeat("(?, ?),", hi-lo), ","), args...)
	}
}

// fwdWantIDs checks that table holds exactly the ids from..to-1, in order:
// nothing lost, nothing twice, FIFO kept.
func fwdWantIDs(t testing.TB, g *gconn, table string, from, to int) {
	t.Helper()
	rows := g.rows("SELECT id, pad FROM " + table)
	seen := map[int]int{}
	var got []int
	for _, r := range rows {
		id, err := strconv.Atoi(r[0])
		if err != nil {
			t.Fatalf("bad id %q", r[0])
		}
		if r[1] != fmt.Sprintf("pad-%d", id) {
			t.Errorf("row %d: pad %q", id, r[1])
		}
		seen[id]++
		got = append(got, id)
	}
	var lost, dups []int
	for id := from; id < to; id++ {
		switch n := seen[id]; {
		case n == 0:
			lost = append(lost, id)
		case n > 1:
			dups = append(dups, id)
		}
		delete(seen, id)
	}
	if len(lost) > 0 || len(dups) > 0 || len(seen) > 0 {
		t.Fatalf("%s: %d rows; lost %d %v, duplicated %d %v, unexpected %v", table, len(rows), len(lost), fwdHead(lost), len(dups), fwdHead(dups), seen)
	}
	if !slices.IsSorted(got) {
		t.Errorf("%s: rows out of FIFO order: %v", table, fwdHead(got))
	}
}

func fwdHead(s []int) []int { return s[:min(len(s), 20)] }

// fwdWaitBetween polls table's count on db until it reaches lo, and checks it
// did not pass hi by then.
func fwdWaitBetween(t testing.TB, db *sql.DB, table string, lo, hi int) int {
	t.Helper()
	var n int
	eventually(t, 60*time.Second, fmt.Sprintf("%s to reach %d rows", table, lo), func() bool {
		n = fwdCount(db, table)
		return n >= lo
	})
	if n > hi {
		t.Fatalf("%s already has %d rows (want at most %d when interrupting)", table, n, hi)
	}
	return n
}

// TestForwardSimple relays between two tables of one server whose columns
// are in a different order and of several types, with NULLs, empty
// strings, quotes, backslashes and UTF-8: every value arrives unchanged.
func TestForwardSimple(t *testing.T) {
	s := startServer(t)
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE src (v INT, s VARCHAR(255), d DOUBLE, f FLOAT, ts DATETIME, amount DECIMAL(10,3), big BIGINT UNSIGNED) ENGINE=queue")
	g.exec("CREATE TABLE dst (big BIGINT UNSIGNED, amount DECIMAL(10,3), ts DATETIME, f FLOAT, d DOUBLE, s VARCHAR(255), v INT) ENGINE=queue")
	rows := [][]any{
		{1, "hello", 0.1, 0.1, "2024-01-02 03:04:05", "1.500", uint64(18446744073709551615)},
		{2, nil, nil, nil, nil, nil, nil},
		{nil, "", 1e300, -2.5, "1999-12-31 23:59:59", "-0.001", 0},
		{-4, `it's a \ "quote" ? ` + "`tick` \x00 nul\n", -1.25e-7, 3.0e10, "2000-02-29 00:00:00", "9999999.999", 42},
		{5, "ünïcødé ✓ 日本 😀", 123456789.125, 1.5, nil, "0.000", 1},
	}
	for _, r := range rows {
		g.exec("INSERT INTO src (v, s, d, f, ts, amount, big) VALUES (?, ?, ?, ?, ?, ?, ?)", r...)
	}
	const cols = "v, s, d, f, ts, amount, big"
	want := g.rows("SELECT " + cols + " FROM src")
	if len(want) != len(rows) {
		t.Fatalf("source has %d rows", len(want))
	}

	p := fwdDrain(t, fwdDSN(s, "test", "src"), fwdDSN(s, "test", "dst"))
	g.wantRows("SELECT "+cols+" FROM dst", nil, want...)
	g.wantValue("0", "SELECT COUNT(*) FROM src")
	if recs := p.records("stopped"); len(recs) != 1 || recs[0]["forwarded"] != float64(len(rows)) {
		t.Errorf("stopped records: %v", recs)
	}
}

// TestForwardTwoServers relays between two servers, into another database,
// with the forwarder started first and rows arriving while it waits.
func TestForwardTwoServers(t *testing.T) {
	standaloneOnly(t, "two servers in front of one upstream share its databases")
	const n = 300
	a, b := startServer(t), startServer(t)
	ga, gb := newGConn(t, a, defaultMode), newGConn(t, b, defaultMode)
	ga.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	gb.exec("CREATE DATABASE db2")
	gb.exec("CREATE TABLE db2.q (pad VARCHAR(32), id INT NOT NULL) ENGINE=queue")

	p := fwdStart(t, "--wait-timeout=60", fwdDSN(a, "test", "q"), fwdDSN(b, "db2", "q"))
	p.waitLog(time.Minute, "connected")
	dbA, dbB := a.open(t), b.open(t)
	for i := 0; i < n; i += 100 {
		fwdInsertIDs(t, ga, "q", i, i+100)
	}
	eventually(t, 60*time.Second, "all rows at the destination", func() bool { return fwdCount(dbB, "db2.q") == n })
	eventually(t, time.Minute, "the source to be drained", func() bool { return fwdCount(dbA, "q") == 0 })
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wantExit(time.Minute, 0)
	fwdWantIDs(t, gb, "db2.q", 0, n)
}

// TestForwardLargeRows relays 40 rows of 500 KB of random bytes, plus rows
// with every byte value, an empty value and NULL: all byte for byte.
func TestForwardLargeRows(t *testing.T) {
	const (
		big  = 40
		size = 500 << 10
	)
	a, b := startServer(t), startServer(t)
	ga, gb := newGConn(t, a, defaultMode), newGConn(t, b, defaultMode)
	ga.exec("CREATE TABLE blobs (id INT NOT NULL, b MEDIUMBLOB) ENGINE=queue")
	gb.exec("CREATE TABLE blobs (b MEDIUMBLOB, id INT NOT NULL) ENGINE=queue")
	var payloads [][]byte
	for i := range big {
		p := make([]byte, size)
		_, _ = rand.Read(p)
		payloads = append(payloads, p)
		ga.exec("INSERT INTO blobs (id, b) VALUES (?, ?)", i, p)
	}
	all := make([]byte, 0, 512)
	for i := range 256 {
		all = append(all, byte(i))
	}
	all = append(all, []byte(`\'"`+"\\0\x00\x1a_binary'")...)
	payloads = append(payloads, all, []byte{}, nil)
	ga.exec("INSERT INTO blobs (id, b) VALUES (?, ?)", big, all)
	ga.exec("INSERT INTO blobs (id, b) VALUES (?, ?)", big+1, []byte{})
	ga.exec("INSERT INTO blobs (id, b) VALUES (?, NULL)", big+2)

	start := time.Now()
	fwdDrain(t, fwdDSN(a, "test", "blobs"), fwdDSN(b, "test", "blobs"))
	t.Logf("relayed %d rows of %d KB in %v", big, size>>10, time.Since(start).Round(time.Millisecond))

	rs, err := b.open(t).Query("SELECT id, b FROM blobs")
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	i := 0
	for ; rs.Next(); i++ {
		var id int
		var got []byte
		if err := rs.Scan(&id, &got); err != nil {
			t.Fatal(err)
		}
		if id != i || i >= len(payloads) {
			t.Fatalf("row %d has id %d", i, id)
		}
		switch want := payloads[i]; {
		case want == nil && got != nil:
			t.Errorf("row %d: got %d bytes, want NULL", i, len(got))
		case want != nil && got == nil:
			t.Errorf("row %d: got NULL, want %d bytes", i, len(want))
		case !bytes.Equal(got, want):
			t.Errorf("row %d: %d bytes differ from the %d sent", i, len(got), len(want))
		}
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	if i != len(payloads) {
		t.Fatalf("%d rows at the destination, want %d", i, len(payloads))
	}
	ga.wantValue("0", "SELECT COUNT(*) FROM blobs")
}

// TestForwardKillForwarder kills the forwarder with SIGKILL mid-stream and
// runs it again: no row is lost and none is delivered twice.
func TestForwardKillForwarder(t *testing.T) {
	const n = 2000
	a, b := startServer(t), startServer(t)
	ga, gb := newGConn(t, a, defaultMode), newGConn(t, b, defaultMode)
	ga.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	gb.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	fwdInsertIDs(t, ga, "q", 0, n)
	src, dst := fwdDSN(a, "test", "q"), fwdDSN(b, "test", "q")
	dbB := b.open(t)
	dbB.SetMaxOpenConns(1)
	base := fwdThreads(t, dbB)

	p := fwdStart(t, "--log-every=500", src, dst)
	fwdWaitBetween(t, dbB, "q", n/5, n*4/5)
	p.kill()
	// An INSERT the forwarder sent just before it died may still commit:
	// count the destination once the server has seen its connection close.
	eventually(t, time.Minute, "the destination to see the forwarder go", func() bool { return fwdThreads(t, dbB) <= base })
	at := fwdCount(dbB, "q")
	t.Logf("killed the forwarder with %d rows at the destination", at)

	start := time.Now()
	p2 := fwdDrain(t, src, dst)
	t.Logf("second forwarder: %v; %d duplicate(s) dropped by the destination", time.Since(start).Round(time.Millisecond),
		strings.Count(b.logs.String(), "skipping forwarded duplicates"))
	fwdWantIDs(t, gb, "q", 0, n)
	ga.wantValue("0", "SELECT COUNT(*) FROM q")
	if recs := p2.records("stopped"); len(recs) != 1 || recs[0]["forwarded"].(float64) < float64(n-at) {
		t.Errorf("second forwarder's stopped records: %v (at least %d expected)", recs, n-at)
	}
}

// fwdThreads returns the server's Threads_connected.
func fwdThreads(t testing.TB, db *sql.DB) int {
	t.Helper()
	var name string
	var n int
	if err := db.QueryRow("SHOW GLOBAL STATUS LIKE 'Threads_connected'").Scan(&name, &n); err != nil {
		t.Fatal(err)
	}
	return n
}

// fwdFreePort returns a port that was free a moment ago, so that a server can
// be restarted at the same address.
func fwdFreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// TestForwardServerKill kills one server with SIGKILL mid-stream and
// restarts it on the same port: the forwarder reconnects by itself and
// nothing is lost or duplicated.
func TestForwardServerKill(t *testing.T) {
	for _, victim := range []string{"destination", "source"} {
		t.Run(victim, func(t *testing.T) {
			const n = 1000
			// The victim listens on a fixed port (a later --listen wins over
			// the harness's 127.0.0.1:0), so a restart keeps its address.
			var a, b *server
			if victim == "source" {
				a, b = startServer(t, "--listen", "127.0.0.1:"+fwdFreePort(t)), startServer(t)
			} else {
				a, b = startServer(t), startServer(t, "--listen", "127.0.0.1:"+fwdFreePort(t))
			}
			ga, gb := newGConn(t, a, defaultMode), newGConn(t, b, defaultMode)
			ga.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
			gb.exec("CREATE TABLE q (pad VARCHAR(32), id INT NOT NULL) ENGINE=queue")
			fwdInsertIDs(t, ga, "q", 0, n)

			p := fwdStart(t, "--exit-when-empty", "--wait-timeout=1", fwdDSN(a, "test", "q"), fwdDSN(b, "test", "q"))
			at := fwdWaitBetween(t, b.open(t), "q", n/5, n*4/5)
			s := map[string]*server{"source": a, "destination": b}[victim]
			addr := s.addr
			s.kill()
			p.waitLog(time.Minute, "connection failed; reconnecting")
			s.restart()
			if s.addr != addr {
				t.Fatalf("restarted at %s, not %s", s.addr, addr)
			}
			p.wantExit(5*time.Minute, 0)
			t.Logf("killed the %s with %d rows at the destination; %d duplicate(s) dropped", victim, at,
				strings.Count(b.logs.String(), "skipping forwarded duplicates"))
			if len(p.records("reconnected")) == 0 {
				t.Errorf("the forwarder did not log a reconnection")
			}
			gb = newGConn(t, b, defaultMode)
			fwdWantIDs(t, gb, "q", 0, n)
			newGConn(t, a, defaultMode).wantValue("0", "SELECT COUNT(*) FROM q")
		})
	}
}

// TestForwardReset: after TRUNCATE of the source its rowids restart at 1,
// so the destination drops the new rows as duplicates (the source is still
// drained) until a forwarder runs with --reset; its 'w' mode applies to the
// first row only.
func TestForwardReset(t *testing.T) {
	a, b := startServer(t), startServer(t)
	ga, gb := newGConn(t, a, defaultMode), newGConn(t, b, defaultMode)
	ga.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	gb.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	src, dst := fwdDSN(a, "test", "q"), fwdDSN(b, "test", "q")
	// The destination logs a skipped row before it answers the INSERT, but
	// the test reads its log from a pipe: wait for the lines expected
	// (then there must be no more).
	skipped := func(want int) int {
		n := 0
		eventually(t, time.Minute, fmt.Sprintf("%d 'skipping forwarded duplicates' lines", want), func() bool {
			n = strings.Count(b.logs.String(), "skipping forwarded duplicates")
			return n >= want
		})
		return n
	}

	fwdInsertIDs(t, ga, "q", 0, 10) // rowids 1..10
	fwdDrain(t, src, dst)
	gb.wantValue("10", "SELECT COUNT(*) FROM q")
	if n := skipped(0); n != 0 {
		t.Errorf("%d rows skipped in the first run", n)
	}

	ga.exec("TRUNCATE TABLE q")
	fwdInsertIDs(t, ga, "q", 100, 103) // rowids 1..3: below the mark 10
	fwdDrain(t, src, dst)
	gb.wantValue("10", "SELECT COUNT(*) FROM q")
	ga.wantValue("0", "SELECT COUNT(*) FROM q")
	if n := skipped(3); n != 3 {
		t.Errorf("destination skipped %d rows as duplicates, want 3", n)
	}

	fwdInsertIDs(t, ga, "q", 200, 203) // rowids 4..6
	p := fwdDrain(t, src, dst, "--reset")
	if recs := p.records("reset the destination's duplicate check"); len(recs) != 1 {
		t.Errorf("reset logged %d times, want once", len(recs))
	}
	fwdInsertIDs(t, ga, "q", 300, 302) // rowids 7, 8: above the new mark 6
	fwdDrain(t, src, dst)
	ga.wantValue("0", "SELECT COUNT(*) FROM q")
	var ids []string
	for _, r := range gb.rows("SELECT id FROM q") {
		ids = append(ids, r[0])
	}
	want := strings.Fields("0 1 2 3 4 5 6 7 8 9 200 201 202 300 301")
	if !slices.Equal(ids, want) {
		t.Errorf("destination ids %v, want %v", ids, want)
	}
	if n := skipped(3); n != 3 {
		t.Errorf("destination skipped %d rows in all, want 3", n)
	}
}

// TestForwardProgressAndSIGTERM checks the progress lines (count and rate)
// and that SIGTERM ends a forwarder blocked in a 60 s queue_wait at once,
// with status 0.
func TestForwardProgressAndSIGTERM(t *testing.T) {
	a := startServer(t)
	g := newGConn(t, a, defaultMode)
	g.exec("CREATE TABLE src (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	g.exec("CREATE TABLE dst (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	db := a.open(t)
	p := fwdStart(t, "--log-every=10", "--progress-interval=0", "--wait-timeout=60", fwdDSN(a, "test", "src"), fwdDSN(a, "test", "dst"))
	fwdInsertIDs(t, g, "src", 0, 25)
	eventually(t, time.Minute, "25 rows at the destination", func() bool { return fwdCount(db, "dst") == 25 })
	// Only queue_wait consumes a source row: the last one is gone once the
	// forwarder is blocked waiting for the next.
	eventually(t, time.Minute, "the forwarder to wait for more", func() bool { return fwdCount(db, "src") == 0 })

	sigterm := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	p.wantExit(time.Minute, 0)
	// Well under the 60 s wait it was blocked in.
	if d := time.Since(sigterm); d > 30*time.Second {
		t.Errorf("q4m-forward took %v to exit after SIGTERM", d)
	}
	// Read once it has exited: every line it wrote has been read from the
	// pipe (before, the last could still be in it).
	recs := p.records("progress")
	if len(recs) != 2 {
		t.Fatalf("%d progress lines, want 2: %v", len(recs), recs)
	}
	for i, r := range recs {
		if r["forwarded"] != float64(10*(i+1)) || r["level"] != "INFO" {
			t.Errorf("progress line %d: %v", i, r)
		}
		if rate, ok := r["rate"].(float64); !ok || rate <= 0 {
			t.Errorf("progress line %d has no positive rate: %v", i, r)
		}
	}
	if recs := p.records("stopped"); len(recs) != 1 || recs[0]["forwarded"] != float64(25) {
		t.Errorf("stopped records: %v", recs)
	}
	fwdWantIDs(t, g, "dst", 0, 25)
}

// TestForwardCatchUpProgress: a forwarder started on a backlog says how
// far it has caught up: each progress line has the rows left at the source
// (its COUNT(*), less the row being relayed), the percentage done and the
// time left.
func TestForwardCatchUpProgress(t *testing.T) {
	a := startServer(t)
	g := newGConn(t, a, defaultMode)
	g.exec("CREATE TABLE src (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	g.exec("CREATE TABLE dst (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	fwdInsertIDs(t, g, "src", 0, 300)
	p := fwdDrain(t, fwdDSN(a, "test", "src"), fwdDSN(a, "test", "dst"), "--log-every=100", "--progress-interval=0")
	recs := p.records("progress")
	if len(recs) != 3 {
		t.Fatalf("%d progress lines, want 3: %v", len(recs), recs)
	}
	for i, r := range recs {
		wantBacklog, wantPct := float64(200-100*i), []float64{33.3, 66.7, 100}[i]
		if r["forwarded"] != float64(100*(i+1)) || r["backlog"] != wantBacklog || r["percent"] != wantPct {
			t.Errorf("progress line %d: %v; want forwarded=%d backlog=%v percent=%v", i, r, 100*(i+1), wantBacklog, wantPct)
		}
		if _, ok := r["eta"]; ok != (wantBacklog > 0) {
			t.Errorf("progress line %d: eta present %v, want %v: %v", i, ok, wantBacklog > 0, r)
		}
	}
	fwdWantIDs(t, g, "dst", 0, 300)
}

// TestForwardErrors covers the exits: fatal errors (status 1) leave the
// source row in place, usage errors give status 2, --help 0, and an
// unreachable server is retried until a signal.
func TestForwardErrors(t *testing.T) {
	a := startServer(t)
	g := newGConn(t, a, defaultMode)
	g.exec("CREATE TABLE q (id INT NOT NULL, pad VARCHAR(32)) ENGINE=queue")
	g.exec("INSERT INTO q (id, pad) VALUES (1, 'pad-1')")

	t.Run("no source table", func(t *testing.T) {
		code, _, stderr := fwdRun(t, fwdDSN(a, "test", "nosuch"), fwdDSN(a, "test", "q"))
		if code != 1 || !strings.Contains(stderr, "received an error from source (table not found?)") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("no destination table", func(t *testing.T) {
		code, _, stderr := fwdRun(t, fwdDSN(a, "test", "q"), fwdDSN(a, "test", "nosuch"))
		if code != 1 || !strings.Contains(stderr, "doesn't exist") {
			t.Errorf("exit %d, stderr:\n%s", code, stderr)
		}
		// The INSERT failed, so the row was not consumed: it is back once
		// the server has seen the forwarder's connection close.
		eventually(t, time.Minute, "the row back in q", func() bool {
			return reflect.DeepEqual(g.rows("SELECT id, pad FROM q"), [][]string{{"1", "pad-1"}})
		})
	})
	t.Run("usage", func(t *testing.T) {
		for _, tc := range []struct {
			args []string
			want string
		}{
			{nil, "want 2 operands"},
			{[]string{"dbi:mysql:database=test", fwdDSN(a, "test", "q")}, "table name missing in operand"},
			{[]string{"--sender=64", fwdDSN(a, "test", "q"), fwdDSN(a, "test", "q")}, "--sender must be 0..63"},
			{[]string{"--bogus", fwdDSN(a, "test", "q"), fwdDSN(a, "test", "q")}, "flag provided but not defined"},
		} {
			code, _, stderr := fwdRun(t, tc.args...)
			if code != 2 || !strings.Contains(stderr, tc.want) {
				t.Errorf("%q: exit %d, stderr %q, want 2 and %q", tc.args, code, stderr, tc.want)
			}
		}
		code, stdout, _ := fwdRun(t, "--help")
		if code != 0 || !strings.Contains(stdout, "Usage: q4m-forward [options] SRC DST") {
			t.Errorf("--help: exit %d, stdout %q", code, stdout)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		_, port, _ := net.SplitHostPort(closedAddr(t))
		dead := fmt.Sprintf("dbi:mysql:database=test;table=q;host=127.0.0.1;port=%s;user=root", port)
		p := fwdStart(t, dead, fwdDSN(a, "test", "q"))
		p.waitLog(time.Minute, "connection failed; reconnecting")
		_ = p.cmd.Process.Signal(syscall.SIGINT)
		p.wantExit(time.Minute, 0)
	})
	g.wantValue("1", "SELECT COUNT(*) FROM q")
}
