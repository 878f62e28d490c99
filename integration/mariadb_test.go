package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// A throwaway MariaDB server for the tests that compare q4mproxy with the real
// thing or use it as q4mproxy's upstream. One server is shared by the whole
// package: it is started on first use (sharedMariaDB) and stopped by TestMain
// (stopMariaDB). It listens on 127.0.0.1 on a free port, with the grant tables
// in force, and has these accounts (all from any host, so from 127.0.0.1):
//
//	root    empty password, ALL WITH GRANT OPTION
//	gotest  password gotest, ALL on *.*
//
// and the database test. It serves TLS with a self-signed certificate
// (mariadb.certFile, mariadb.keyFile: also usable as q4mproxy's --tls-cert,
// --tls-key). Tests that need their own database create it; the server lives
// as long as the test binary, so leave nothing behind that others could trip
// on.

// mariadb is the shared MariaDB server.
type mariadb struct {
	addr     string // 127.0.0.1:PORT
	port     string
	dir      string // temporary directory: data/, sock, error log, cert
	sock     string
	certFile string
	keyFile  string
	errLog   string

	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error // set before exited is closed
}

var mdbShared struct {
	once sync.Once
	m    *mariadb
	err  error
	// missing is set when the server programs are not installed: the tests
	// skip (or fail under Q4MPROXY_REQUIRE_CLIENTS=1) rather than fail.
	missing bool

	mu      sync.Mutex // guards stopped against a start racing TestMain's stop
	stopped bool
}

const mariadbInstallHint = "install: apt-get install mariadb-server; or run ./test.sh as root"

// sharedMariaDB returns the package's MariaDB server, starting it on the first
// call. When mariadbd is not installed the test is skipped, or failed under
// Q4MPROXY_REQUIRE_CLIENTS=1; when it does not start, the test fails.
func sharedMariaDB(t testing.TB) *mariadb {
	t.Helper()
	mdbShared.once.Do(func() {
		start := time.Now()
		mdbShared.m, mdbShared.err = startMariaDB()
		if mdbShared.err == nil {
			fmt.Fprintf(os.Stderr, "integration: MariaDB started on %s in %v (%s)\n", mdbShared.m.addr, time.Since(start).Round(time.Millisecond), mdbShared.m.dir)
		}
	})
	if mdbShared.err != nil {
		if mdbShared.missing && os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") != "1" {
			t.Skip(mdbShared.err)
		}
		t.Fatal(mdbShared.err)
	}
	return mdbShared.m
}

// mariadbAddr returns the shared MariaDB's address, "127.0.0.1:PORT".
func mariadbAddr(t testing.TB) string {
	t.Helper()
	return sharedMariaDB(t).addr
}

// openMariaDB opens a go-sql-driver/mysql pool straight to the shared MariaDB
// as user with password, on database db ("" for none), with extra DSN params
// ("parseTime=true", ...), checks it with a ping, and closes it when the test
// ends.
func openMariaDB(t testing.TB, user, password, db string, params ...string) *sql.DB {
	t.Helper()
	return sharedMariaDB(t).open(t, user, password, db, params...)
}

func (m *mariadb) dsn(user, password, db string, params ...string) string {
	d := user
	if password != "" {
		d += ":" + password
	}
	d += "@tcp(" + m.addr + ")/" + db
	if len(params) > 0 {
		d += "?" + strings.Join(params, "&")
	}
	return d
}

func (m *mariadb) open(t testing.TB, user, password, db string, params ...string) *sql.DB {
	t.Helper()
	pool, err := sql.Open("mysql", m.dsn(user, password, db, params...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pool.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := pool.PingContext(ctx); err != nil {
		t.Fatalf("ping MariaDB at %s as %s: %v", m.addr, user, err)
	}
	return pool
}

// lookMariaDB finds a server program: in $PATH, else in the sbin directories
// that are often not in a non-root user's $PATH.
func lookMariaDB(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/local/mysql/bin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (%s)", name, mariadbInstallHint)
}

func startMariaDB() (*mariadb, error) {
	server, err := lookMariaDB("mariadbd")
	if err != nil {
		mdbShared.missing = true
		return nil, err
	}
	installDB, err := lookMariaDB("mariadb-install-db")
	if err != nil {
		mdbShared.missing = true
		return nil, err
	}
	mdbShared.mu.Lock()
	stopped := mdbShared.stopped
	mdbShared.mu.Unlock()
	if stopped {
		return nil, errors.New("MariaDB requested after TestMain stopped it")
	}

	// A short path: the socket's must fit in sockaddr_un (108 bytes).
	dir, err := os.MkdirTemp("", "q4m-mariadb-")
	if err != nil {
		return nil, err
	}
	m := &mariadb{
		dir:      dir,
		sock:     filepath.Join(dir, "sock"),
		certFile: filepath.Join(dir, "cert.pem"),
		keyFile:  filepath.Join(dir, "key.pem"),
		errLog:   filepath.Join(dir, "error.log"),
	}
	fail := func(err error) (*mariadb, error) {
		m.stop()
		os.RemoveAll(dir)
		return nil, err
	}
	if err := writeSelfSignedCert(m.certFile, m.keyFile); err != nil {
		return fail(err)
	}

	// Options shared by mariadb-install-db (which passes them on to its
	// bootstrap mariadbd) and the server, for a small, quick server:
	// durability is not what these tests are about.
	// A temp dir of its own: mariadb-install-db's bootstrap and the
	// server make temporary tables under --tmpdir, and servers of other
	// tests sharing /tmp have failed to remove each other's.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return fail(err)
	}
	common := []string{
		"--tmpdir=" + tmp,
		"--skip-name-resolve",
		"--skip-log-bin",
		"--innodb-buffer-pool-size=64M",
		"--innodb-log-file-size=16M",
		"--innodb-flush-log-at-trx-commit=0",
		"--innodb-doublewrite=0",
	}
	asRoot := []string{}
	if os.Geteuid() == 0 { // mariadbd refuses to run as root without it
		asRoot = []string{"--user=root"}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, installDB, append(append([]string{
		"--no-defaults", "--datadir=" + filepath.Join(dir, "data"),
		"--auth-root-authentication-method=normal", "--skip-test-db",
	}, asRoot...), common...)...)
	if out, err := install.CombinedOutput(); err != nil {
		return fail(fmt.Errorf("mariadb-install-db: %v\n%s", err, out))
	}

	// The port is picked free here and may be taken by someone else before
	// mariadbd binds it: then mariadbd exits and we try another.
	for attempt := 1; ; attempt++ {
		port, err := freeLoopbackPort()
		if err != nil {
			return fail(err)
		}
		m.port = strconv.Itoa(port)
		m.addr = "127.0.0.1:" + m.port
		err = m.startServer(server, append(append([]string{
			"--no-defaults", "--datadir=" + filepath.Join(dir, "data"),
			"--socket=" + m.sock, "--port=" + m.port, "--bind-address=127.0.0.1",
			"--pid-file=" + filepath.Join(dir, "mariadbd.pid"), "--log-error=" + m.errLog,
			"--ssl-cert=" + m.certFile, "--ssl-key=" + m.keyFile,
			"--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
			"--max-connections=300", "--max-allowed-packet=16M", "--local-infile=1",
			// go-sql-driver's TestConnectionAttributes reads
			// performance_schema.session_account_connect_attrs (about 100 MB
			// more memory).
			"--performance-schema=ON",
		}, asRoot...), common...))
		if err == nil {
			break
		}
		if attempt < 3 && strings.Contains(m.errorLog(), "Address already in use") {
			continue
		}
		return fail(err)
	}

	if err := m.setup(); err != nil {
		return fail(err)
	}
	return m, nil
}

// startServer starts mariadbd and waits until it answers on its socket.
func (m *mariadb) startServer(bin string, args []string) error {
	_ = os.Remove(m.errLog)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	setPdeathsig(cmd.SysProcAttr)
	if err := cmd.Start(); err != nil {
		return err
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	exited := m.exited
	go func() {
		m.waitErr = cmd.Wait()
		close(exited)
	}()

	// Ready when root can log in over the socket (not over TCP: if someone
	// else took the port, that would be someone else's server).
	pool, err := sql.Open("mysql", "root@unix("+m.sock+")/?timeout=5s")
	if err != nil {
		return err
	}
	defer pool.Close()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = pool.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return fmt.Errorf("mariadbd did not accept connections within 60s (%v); error log:\n%s", err, m.errorLog())
		}
		select {
		case <-exited:
			m.cmd = nil
			return fmt.Errorf("mariadbd exited at startup (%v); error log:\n%s", m.waitErr, m.errorLog())
		case <-time.After(20 * time.Millisecond): // polling interval
		}
	}
}

// setup creates the accounts and the database the tests use, then checks
// that gotest logs in over TCP.
func (m *mariadb) setup() error {
	pool, err := sql.Open("mysql", "root@unix("+m.sock+")/?timeout=10s")
	if err != nil {
		return err
	}
	defer pool.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS test",
		"CREATE USER IF NOT EXISTS 'root'@'%'",
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION",
		"CREATE USER IF NOT EXISTS 'gotest'@'%' IDENTIFIED BY 'gotest'",
		"GRANT ALL PRIVILEGES ON *.* TO 'gotest'@'%'",
	} {
		if _, err := pool.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("MariaDB setup: %s: %v", q, err)
		}
	}
	for _, who := range []string{"root", "gotest:gotest"} {
		tcp, err := sql.Open("mysql", who+"@tcp("+m.addr+")/test?timeout=10s")
		if err != nil {
			return err
		}
		var user string
		err = tcp.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user)
		tcp.Close()
		if err != nil {
			return fmt.Errorf("MariaDB setup: logging in as %s over TCP: %v", who, err)
		}
	}
	return nil
}

func (m *mariadb) errorLog() string {
	b, err := os.ReadFile(m.errLog)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	// The end is what matters; the start is InnoDB's notes.
	const max = 8 << 10
	if len(b) > max {
		b = append([]byte("...\n"), b[len(b)-max:]...)
	}
	return string(b)
}

// stop shuts mariadbd down (SIGTERM: a clean shutdown, quick when idle),
// killing it if it takes too long.
func (m *mariadb) stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(30 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// stopMariaDB stops the shared MariaDB, if it was started, and removes its
// files. Called by TestMain after the tests.
func stopMariaDB() {
	mdbShared.mu.Lock()
	mdbShared.stopped = true
	mdbShared.mu.Unlock()
	// Wait for a start in progress (a test that timed out in it), so that
	// its server is stopped too.
	mdbShared.once.Do(func() { mdbShared.err = errors.New("MariaDB requested after TestMain stopped it") })
	if mdbShared.m != nil {
		mdbShared.m.stop()
		os.RemoveAll(mdbShared.m.dir)
	}
}

// setPdeathsig asks Linux to kill mariadbd if the test binary dies without
// stopping it (a test timeout's panic skips TestMain's cleanup). The field
// exists only on Linux; elsewhere this does nothing.
func setPdeathsig(attr *syscall.SysProcAttr) {
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.CanSet() {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
}

// freeLoopbackPort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeSelfSignedCert writes a fresh self-signed certificate for localhost
// and 127.0.0.1, with its key, as PEM files.
func writeSelfSignedCert(certFile, keyFile string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(7 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600)
}

// TestMariaDBHelper checks the shared MariaDB as the tests use it: the
// accounts log in over TCP, wrong passwords do not (the grant tables are in
// force), the test database exists and TLS is served.
func TestMariaDBHelper(t *testing.T) {
	m := sharedMariaDB(t)
	if !strings.HasPrefix(m.addr, "127.0.0.1:") || m.addr != mariadbAddr(t) {
		t.Fatalf("address %q", m.addr)
	}
	ctx := t.Context()
	for _, acct := range []struct{ user, password, want string }{
		{"root", "", "root@%"},
		{"gotest", "gotest", "gotest@%"},
	} {
		db := openMariaDB(t, acct.user, acct.password, "test", "tls=skip-verify")
		var who, cipher, name, value string
		if err := db.QueryRowContext(ctx, "SELECT CURRENT_USER(), DATABASE()").Scan(&who, &name); err != nil {
			t.Fatal(err)
		}
		// root@127.0.0.1 (made by mariadb-install-db) is more specific than root@%.
		if who != acct.want && who != acct.user+"@127.0.0.1" || name != "test" {
			t.Errorf("%s: CURRENT_USER() %q, DATABASE() %q", acct.user, who, name)
		}
		if err := db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&cipher, &value); err != nil {
			t.Fatal(err)
		}
		if value == "" {
			t.Errorf("%s: the connection is not encrypted", acct.user)
		}
		if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS helper_check (i int)"); err != nil {
			t.Errorf("%s cannot create a table: %v", acct.user, err)
		}
		if _, err := db.ExecContext(ctx, "DROP TABLE helper_check"); err != nil {
			t.Error(err)
		}
	}
	bad, err := sql.Open("mysql", m.dsn("gotest", "wrong", "test"))
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.PingContext(ctx); err == nil || !strings.Contains(err.Error(), "1045") {
		t.Errorf("gotest with a wrong password: %v, want ERROR 1045", err)
	}
}
