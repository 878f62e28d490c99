package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
)

var binPath string

// fastBin is a build without the race detector, for the tests that move a
// lot of data (everything else runs the race-enabled build when the tests
// do). Built on first use.
var fastBin = sync.OnceValues(func() (string, error) {
	if !raceEnabled {
		return binPath, nil
	}
	p := binPath + "-norace"
	out, err := exec.Command("go", "build", "-o", p, "../cmd/q4mproxy").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building q4mproxy without -race: %v\n%s", err, out)
	}
	return p, nil
})

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "q4mproxy-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "q4mproxy")
	args := []string{"build", "-o", binPath}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/q4mproxy")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building q4mproxy:", err)
		os.Exit(1)
	}
	code := m.Run()
	stopMariaDB() // the shared MariaDB, if a test started it (mariadb_test.go)
	os.RemoveAll(dir)
	os.Exit(code)
}

// server is a running q4mproxy process.
type server struct {
	t       testing.TB
	bin     string // the binary to run; binPath unless set
	dataDir string
	extra   []string
	addr    string
	port    string
	cmd     *exec.Cmd
	logs    *logBuf
	exited  chan struct{}
	waitErr error
}

// logBuf collects the server's log lines and lets tests wait for one.
type logBuf struct {
	mu    sync.Mutex
	lines []string
	cond  chan struct{}
}

func (l *logBuf) add(line string) {
	l.mu.Lock()
	l.lines = append(l.lines, line)
	close(l.cond)
	l.cond = make(chan struct{})
	l.mu.Unlock()
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// waitFor waits until a log line satisfies match, and returns it.
func (l *logBuf) waitFor(timeout time.Duration, match func(string) bool) (string, bool) {
	deadline := time.After(timeout)
	seen := 0
	for {
		l.mu.Lock()
		for ; seen < len(l.lines); seen++ {
			if match(l.lines[seen]) {
				s := l.lines[seen]
				l.mu.Unlock()
				return s, true
			}
		}
		c := l.cond
		l.mu.Unlock()
		select {
		case <-c:
		case <-deadline:
			return "", false
		}
	}
}

// standaloneOnly skips a test of what q4mproxy answers without an upstream
// when the suite runs with every server in front of MariaDB
// (Q4MPROXY_TEST_UPSTREAM=1), where the upstream answers it instead (its
// users, databases, engines, variables); why says what differs.
func standaloneOnly(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("Q4MPROXY_TEST_UPSTREAM") == "1" || os.Getenv("Q4MPROXY_TEST_QUEUE_STORE") == "upstream" {
		t.Skip("standalone behaviour; with an upstream: " + why)
	}
}

// startServer starts q4mproxy on a free port with a fresh data directory.
func startServer(t testing.TB, extra ...string) *server {
	t.Helper()
	return startServerBin(t, binPath, extra...)
}

// startFastServer is startServer with the build without the race detector,
// for tests that move a lot of data.
func startFastServer(t testing.TB, extra ...string) *server {
	t.Helper()
	bin, err := fastBin()
	if err != nil {
		t.Fatal(err)
	}
	return startServerBin(t, bin, extra...)
}

func startServerBin(t testing.TB, bin string, extra ...string) *server {
	t.Helper()
	if os.Getenv("Q4MPROXY_TEST_UPSTREAM") == "1" && !slices.Contains(extra, "--upstream") {
		// The whole suite in front of the shared MariaDB: queue behaviour
		// must not change with an upstream.
		extra = append([]string{"--upstream", mariadbAddr(t)}, extra...)
	}
	if os.Getenv("Q4MPROXY_TEST_QUEUE_STORE") == "upstream" && !slices.Contains(extra, "--queue-store") {
		// The whole suite with the queues in the shared MariaDB: a store
		// of the test's own, kept across restarts.
		if !slices.Contains(extra, "--upstream") {
			extra = append([]string{"--upstream", mariadbAddr(t)}, extra...)
		}
		extra = append(extra, "--queue-store", "upstream", "--queue-store-database", newStoreName(t))
	}
	s := &server{t: t, bin: bin, dataDir: t.TempDir(), extra: extra}
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.kill()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs)
		}
	})
	return s
}

func (s *server) start() {
	s.t.Helper()
	args := append([]string{"--listen", "127.0.0.1:0", "--data-dir", s.dataDir, "--log-format", "json"}, s.extra...)
	bin := s.bin
	if bin == "" {
		bin = binPath
	}
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.cmd, s.logs, s.exited = cmd, &logBuf{cond: make(chan struct{})}, make(chan struct{})
	logs, exited := s.logs, s.exited
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			logs.add(sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.waitErr = cmd.Wait()
		close(exited)
	}()
	line, ok := s.logs.waitFor(60*time.Second, func(l string) bool { return strings.Contains(l, `"msg":"listening"`) })
	if !ok {
		s.t.Fatalf("q4mproxy did not report listening; log:\n%s", s.logs)
	}
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Addr == "" {
		s.t.Fatalf("bad listening line %q: %v", line, err)
	}
	s.addr = rec.Addr
	s.port = rec.Addr[strings.LastIndexByte(rec.Addr, ':')+1:]
}

// stop sends SIGTERM and expects a clean exit.
func (s *server) stop() {
	s.t.Helper()
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(30 * time.Second):
		s.t.Fatalf("q4mproxy did not exit after SIGTERM; log:\n%s", s.logs)
	}
	if s.waitErr != nil {
		s.t.Errorf("q4mproxy exited with %v; log:\n%s", s.waitErr, s.logs)
	}
	s.cmd = nil
}

// kill kills the server with SIGKILL (kill -9).
func (s *server) kill() {
	_ = s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
}

// restart starts the server again on the same data directory (new port).
func (s *server) restart() {
	s.t.Helper()
	if s.cmd != nil {
		s.stop()
	}
	s.start()
}

// dsn is a go-sql-driver DSN for database db.
func (s *server) dsn(db string, params ...string) string {
	d := "root@tcp(" + s.addr + ")/" + db
	if len(params) > 0 {
		d += "?" + strings.Join(params, "&")
	}
	return d
}

// open connects with go-sql-driver/mysql and checks the connection.
func (s *server) open(t testing.TB, params ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", s.dsn("test", params...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.PingContext(context.Background()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	return db
}

// conn returns one dedicated connection (queue ownership is per connection).
func (s *server) conn(t testing.TB, params ...string) *sql.Conn {
	t.Helper()
	c, err := s.open(t, params...).Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// requireClients skips (or, under Q4MPROXY_REQUIRE_CLIENTS=1, fails) when a
// client program or Perl module is missing.
func requireClients(t testing.TB, what ...string) {
	t.Helper()
	for _, w := range what {
		var err error
		if strings.Contains(w, "::") || w == "DBI" { // a Perl module
			err = exec.Command("perl", "-M"+w, "-e1").Run()
		} else {
			_, err = exec.LookPath(w)
		}
		if err == nil {
			continue
		}
		msg := fmt.Sprintf("%s is not available (install: apt-get install mariadb-client libdbd-mysql-perl libdbd-mariadb-perl; or run ./test.sh)", w)
		if os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// mysqlCLI runs the mysql command-line client in batch mode.
func (s *server) mysqlCLI(t testing.TB, stdin string, args ...string) (string, error) {
	t.Helper()
	requireClients(t, "mysql")
	host, port := "127.0.0.1", s.port
	full := append([]string{"--no-defaults", "-h" + host, "-P" + port, "-uroot", "--connect-timeout=10"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "mysql", full...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// perlDSN is a DBI DSN for driver ("mysql" or "MariaDB").
func (s *server) perlDSN(driver string) string {
	return fmt.Sprintf("dbi:%s:database=test;host=127.0.0.1;port=%s", driver, s.port)
}

var perlDrivers = []string{"mysql", "MariaDB"}

// perl runs testdata/<script> with the DBI environment the scripts read
// (Q4M's own convention: DBI, DBI_USER, DBI_PASSWORD), and fails the test
// if the script fails. Scripts print TAP through Test::More.
func (s *server) perl(t testing.TB, driver, script string, env ...string) string {
	t.Helper()
	requireClients(t, "perl", "DBI", "DBD::"+driver)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute) // longer than the scripts' own alarm (Q4MTest.pm)
	defer cancel()
	cmd := exec.CommandContext(ctx, "perl", filepath.Join("testdata", script))
	cmd.Env = append(os.Environ(), append([]string{"DBI=" + s.perlDSN(driver), "DBI_USER=root", "DBI_PASSWORD="}, env...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("perl %s (%s): %v\n%s", script, driver, err, out.String())
	}
	return out.String()
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
}
