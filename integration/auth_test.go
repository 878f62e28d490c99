package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// loginResult is the outcome of a login attempt: code 0 means the client
// logged in and SELECT 1 returned 1; otherwise the server's error.
type loginResult struct {
	code  int
	state string
	msg   string
}

// loginClient logs in to s as user with password pw.
type loginClient struct {
	name  string
	login func(t *testing.T, s *server, user, pw string) loginResult
}

func goLogin(t *testing.T, addr, user, pw string) loginResult {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pw, "tcp", addr, "test"
	cfg.Timeout = 10 * time.Second
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	defer db.Close()
	var v int
	err = db.QueryRowContext(t.Context(), "SELECT 1").Scan(&v)
	var me *mysql.MySQLError
	switch {
	case err == nil && v == 1:
		return loginResult{}
	case errors.As(err, &me):
		return loginResult{code: int(me.Number), state: string(me.SQLState[:]), msg: me.Message}
	}
	t.Fatalf("go-sql-driver login as %s: SELECT 1 = %d, %v", user, v, err)
	return loginResult{}
}

var perlOutRE = regexp.MustCompile(`(?m)^(result|err|state|errstr|select_err)=(.*)$`)

func perlLogin(driver string) func(t *testing.T, s *server, user, pw string) loginResult {
	return func(t *testing.T, s *server, user, pw string) loginResult {
		t.Helper()
		// DBI_USER=root and DBI_PASSWORD= come first in the environment:
		// os/exec uses the last value of a duplicated variable, so these win.
		return perlConnect(t, s, driver, user, "DBI_USER="+user, "DBI_PASSWORD="+pw)
	}
}

// perlConnect logs in as user with connect.pl through DBD::driver, with
// env added to its environment, and returns what it reports.
func perlConnect(t *testing.T, s *server, driver, user string, env ...string) loginResult {
	t.Helper()
	out := s.perl(t, driver, "connect.pl", env...)
	kv := map[string]string{}
	for _, m := range perlOutRE.FindAllStringSubmatch(out, -1) {
		kv[m[1]] = m[2]
	}
	if kv["result"] == "1" {
		return loginResult{}
	}
	code, err := strconv.Atoi(kv["err"])
	if err != nil {
		t.Fatalf("DBD::%s login as %s: unexpected output:\n%s", driver, user, out)
	}
	// DBI's errstr is the server's message (DBD::mysql may add nothing).
	return loginResult{code: code, state: kv["state"], msg: kv["errstr"]}
}

var cliErrorRE = regexp.MustCompile(`(?m)^ERROR (\d+) \((\w{5})\)(?: at line \d+)?: (.*)$`)

func cliLogin(extra ...string) func(t *testing.T, s *server, user, pw string) loginResult {
	return func(t *testing.T, s *server, user, pw string) loginResult {
		t.Helper()
		args := append([]string{"-u" + user, "--password=" + pw}, extra...)
		out, err := s.mysqlCLI(t, "SELECT 1 AS one;\n", append(args, "test")...)
		if err == nil && out == "one\n1\n" {
			return loginResult{}
		}
		m := cliErrorRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("mysql CLI login as %s: %v\n%s", user, err, out)
		}
		code, _ := strconv.Atoi(m[1])
		return loginResult{code: code, state: m[2], msg: m[3]}
	}
}

func loginClients(cliExtra ...string) []loginClient {
	return []loginClient{
		{"go-sql-driver", func(t *testing.T, s *server, user, pw string) loginResult { return goLogin(t, s.addr, user, pw) }},
		{"DBD::mysql", perlLogin("mysql")},
		{"DBD::MariaDB", perlLogin("MariaDB")},
		{"mysql CLI", cliLogin(cliExtra...)},
	}
}

func denied(user string, withPassword bool) loginResult {
	using := "NO"
	if withPassword {
		using = "YES"
	}
	return loginResult{code: 1045, state: "28000", msg: "Access denied for user '" + user + "'@'127.0.0.1' (using password: " + using + ")"}
}

func checkLogin(t *testing.T, got, want loginResult) {
	t.Helper()
	if got != want {
		t.Errorf("login: got %+v, want %+v", got, want)
	}
}

// TestAuthPassword logs in to a server started with --password, with each
// client: right and wrong passwords, no password, an unknown user.
func TestAuthPassword(t *testing.T) {
	standaloneOnly(t, "its users log in upstream too, and MariaDB has other users")
	s := startServer(t, "--password", "secret")
	for _, c := range loginClients() {
		t.Run(c.name, func(t *testing.T) { checkPasswords(t, c, s) })
	}
}

// checkPasswords tries with c the logins a server started with --password
// secret takes or refuses, a subtest each: the right password, a wrong
// one, none, an unknown user.
func checkPasswords(t *testing.T, c loginClient, s *server) {
	for _, tc := range []struct {
		name     string
		user, pw string
		want     loginResult
	}{
		{"right password", "root", "secret", loginResult{}},
		{"wrong password", "root", "wrong", denied("root", true)},
		{"no password", "root", "", denied("root", false)},
		{"unknown user", "bob", "secret", denied("bob", true)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkLogin(t, c.login(t, s, tc.user, tc.pw), tc.want)
		})
	}
}

// TestAuthNativeDefault: with no --password, root logs in without one with
// mysql_native_password, and a password it does not have is refused.
func TestAuthNativeDefault(t *testing.T) {
	s := startServer(t)
	for _, c := range loginClients() {
		t.Run(c.name, func(t *testing.T) {
			checkLogin(t, c.login(t, s, "root", ""), loginResult{})
		})
	}
	checkLogin(t, goLogin(t, s.addr, "root", "x"), denied("root", true))
}

// TestAuthCachingSHA2 logs in with caching_sha2_password, each client on a
// fresh server so that its first login is a full authentication (the
// password RSA-encrypted with the server's public key, over plaintext) and
// its second one the fast path. The mysql CLI needs --skip-ssl, else it
// sends the password in a form only a TLS server accepts.
func TestAuthCachingSHA2(t *testing.T) {
	standaloneOnly(t, "its users log in upstream too, and MariaDB has other users")
	for _, c := range loginClients("--skip-ssl") {
		t.Run(c.name, func(t *testing.T) {
			s := startServer(t, "--default-auth", "caching_sha2_password", "--password", "secret")
			checkLogin(t, c.login(t, s, "root", "wrong"), denied("root", true))
			checkLogin(t, c.login(t, s, "root", "secret"), loginResult{}) // full auth
			checkLogin(t, c.login(t, s, "root", "secret"), loginResult{}) // fast auth
			checkLogin(t, c.login(t, s, "nobody", "secret"), denied("nobody", true))
		})
	}
}

// envWithout is os.Environ() without the named variables.
func envWithout(names ...string) []string {
	var env []string
outer:
	for _, kv := range os.Environ() {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue outer
			}
		}
		env = append(env, kv)
	}
	return env
}

// binaryEnv is the environment for running q4mproxy directly: without
// Q4MPROXY_PASSWORD, and without the race detector's one-second pause at
// exit (the binary is built with -race when the tests are).
func binaryEnv() []string {
	return append(envWithout("Q4MPROXY_PASSWORD", "GORACE"), "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
}

// startWithEnv starts q4mproxy with extra environment variables and
// returns its address; the server is stopped (SIGTERM) at cleanup.
func startWithEnv(t *testing.T, env []string, args ...string) string {
	t.Helper()
	args = append([]string{"--listen", "127.0.0.1:0", "--data-dir", t.TempDir(), "--log-format", "json"}, args...)
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(binaryEnv(), env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "listening" {
				addrc <- rec.Addr
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("q4mproxy exited with %v", err)
			}
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("q4mproxy did not exit after SIGTERM")
		}
	})
	select {
	case addr := <-addrc:
		return addr
	case err := <-exited:
		t.Fatalf("q4mproxy exited before listening: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("q4mproxy did not report listening")
	}
	return ""
}

// TestAuthEnvPassword: Q4MPROXY_PASSWORD sets the password; --password
// overrides it.
func TestAuthEnvPassword(t *testing.T) {
	t.Run("env", func(t *testing.T) {
		addr := startWithEnv(t, []string{"Q4MPROXY_PASSWORD=envsecret"})
		checkLogin(t, goLogin(t, addr, "root", "envsecret"), loginResult{})
		checkLogin(t, goLogin(t, addr, "root", ""), denied("root", false))
		checkLogin(t, goLogin(t, addr, "root", "wrong"), denied("root", true))
	})
	t.Run("flag wins", func(t *testing.T) {
		addr := startWithEnv(t, []string{"Q4MPROXY_PASSWORD=envsecret"}, "--password", "flagsecret")
		checkLogin(t, goLogin(t, addr, "root", "flagsecret"), loginResult{})
		checkLogin(t, goLogin(t, addr, "root", "envsecret"), denied("root", true))
	})
}

// runBinary runs q4mproxy with args (and no Q4MPROXY_PASSWORD) and returns
// its exit code and combined output. It must exit within 30 s.
func runBinary(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binPath, args...)
	cmd.Env = binaryEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("q4mproxy %q did not exit within 30 s; output:\n%s", args, out.String())
	}
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("q4mproxy %q: %v", args, err)
	return 0, ""
}

func TestFlags(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		args     []string
		wantCode int
		want     []string // substrings of the output
	}{
		{"help", []string{"--help"}, 0, []string{"Usage: q4mproxy", "-listen", "-data-dir", "-password", "-default-auth", "-handshake-timeout"}},
		{"version", []string{"--version"}, 0, []string{"q4mproxy "}},
		{"public without password", []string{"--listen", "0.0.0.0:0", "--data-dir", dir}, 2, []string{"refusing to listen on 0.0.0.0:0 without a password", "--password"}},
		{"all interfaces without password", []string{"--listen", ":0", "--data-dir", dir}, 2, []string{"without a password"}},
		{"bad sync", []string{"--sync", "maybe"}, 2, []string{"--sync must be on or off"}},
		{"bad auth plugin", []string{"--default-auth", "sha256_password"}, 2, []string{"--default-auth must be"}},
		{"bad queue store", []string{"--queue-store", "cloud"}, 2, []string{"--queue-store must be embedded or upstream"}},
		{"queue store without upstream", []string{"--queue-store", "upstream"}, 2, []string{"--queue-store upstream needs --upstream"}},
		{"unknown flag", []string{"--nope"}, 2, []string{"flag provided but not defined: -nope"}},
		{"stray argument", []string{"--listen", "127.0.0.1:0", "extra"}, 2, []string{"unexpected arguments: extra"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runBinary(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit code %d, want %d; output:\n%s", code, tc.wantCode, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	t.Run("version line", func(t *testing.T) {
		_, out := runBinary(t, "--version")
		if !regexp.MustCompile(`^q4mproxy \S+\n$`).MatchString(out) {
			t.Errorf("--version printed %q, want one line \"q4mproxy <version>\"", out)
		}
	})
}

// TestHandshakeTimeout opens a TCP connection and sends nothing: the server
// sends its greeting and closes the connection after --handshake-timeout.
// A client that logged in is not affected by the timeout.
func TestHandshakeTimeout(t *testing.T) {
	// Not shorter: the timeout covers the greeting too, which a loaded
	// machine may take a while to write, and the login of the client
	// below (a storm test on a loaded machine saw handshakes of 4.7 s).
	s := startServer(t, "--handshake-timeout", "5s")
	// Before the dial: the server's timer starts after it, however long
	// this goroutine waits for a CPU once connected.
	start := time.Now()
	c, err := net.DialTimeout("tcp", s.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetReadDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(c)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("reading until the server closes: %v after %v (read %d bytes)", err, elapsed, len(data))
	}
	if elapsed < 5*time.Second || elapsed > 30*time.Second {
		t.Errorf("the server closed the silent connection after %v, want about 5 s", elapsed)
	}
	// The greeting: a packet with sequence number 0, protocol version 10,
	// then the server version.
	if len(data) < 5 {
		t.Fatalf("read %q, want a greeting", data)
	}
	n := int(binary.LittleEndian.Uint32(append(data[:3:3], 0)))
	if data[3] != 0 || data[4] != 10 || len(data) < 4+n {
		t.Fatalf("not a handshake packet: %q", data)
	}
	if v, _, _ := bytes.Cut(data[5:4+n], []byte{0}); !strings.HasPrefix(string(v), "5.7.99-q4mproxy-") {
		t.Errorf("greeting server version %q", v)
	}

	// Logged-in connections have no deadline: this one stays idle on the
	// server side (a one-second queue_wait) and then goes on working.
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE ht (v INT) ENGINE=queue")
	g.wantValue("0", "SELECT queue_wait('ht', 1)")
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("ok", "SELECT 'ok'")
}

// TestPingKeepsOwnerMode: COM_PING does not change a connection's owner
// mode or its owned row.
func TestPingKeepsOwnerMode(t *testing.T) {
	s := startServer(t)
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE pq (v INT) ENGINE=queue")
	g.exec("INSERT INTO pq (v) VALUES (1), (2)")
	g.wantValue("1", "SELECT queue_wait('pq', 0)")
	for range 3 {
		if err := g.c.PingContext(t.Context()); err != nil {
			t.Fatalf("ping: %v", err)
		}
	}
	g.wantRows("SELECT v FROM pq", nil, []string{"1"})
	g.wantValue("1", "SELECT queue_rowid()")
	g.wantValue("1", "SELECT queue_end()")
	g.wantRows("SELECT v FROM pq", nil, []string{"2"})
	if err := g.c.PingContext(t.Context()); err != nil {
		t.Fatalf("ping: %v", err)
	}
	// Not in owner mode any more, ping or not.
	_, err := g.execErr("SELECT queue_rowid()")
	wantMySQLError(t, err, 1123, "HY000", "Can't initialize function 'queue_rowid'; queue_rowid(): not in owner mode", false)
}
