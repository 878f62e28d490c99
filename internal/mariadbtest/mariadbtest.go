// Package mariadbtest starts a throwaway MariaDB server for the tests of a
// package that needs one (the upstream queue store's): one server per test
// binary, on a free loopback port and a private socket, with root able to
// log in without a password over the socket, stopped by Stop (call it from
// TestMain). When the server programs are not installed the tests skip, or
// fail under Q4MPROXY_REQUIRE_CLIENTS=1.
package mariadbtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver the DSNs are for
	"github.com/q4mproxy/q4mproxy/internal/testingutil"
)

// Server is a running MariaDB.
type Server struct {
	// Addr is 127.0.0.1:PORT; Sock the unix socket.
	Addr, Sock string
	dir        string
	cmd        *exec.Cmd
	exited     chan struct{}
}

var shared struct {
	once    sync.Once
	s       *Server
	err     error
	missing bool
}

// Start returns the test binary's server, starting it on first use.
func Start(t testing.TB) *Server {
	t.Helper()
	shared.once.Do(func() { shared.s, shared.err = start() })
	if shared.missing {
		testingutil.Missing(t, "MariaDB", "mariadb-server", shared.err)
	}
	if shared.err != nil {
		t.Fatalf("MariaDB: %v", shared.err)
	}
	return shared.s
}

// Stop stops the server if it was started.
func Stop() {
	if shared.s != nil {
		shared.s.stop()
	}
}

// DSN returns a go-sql-driver DSN for root over TCP, database db ("" for
// none), with extra parameters params ("a=b&c=d").
func (s *Server) DSN(db, params string) string {
	dsn := "root@tcp(" + s.Addr + ")/" + db
	if params != "" {
		dsn += "?" + params
	}
	return dsn
}

func look(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin"} {
		if p := filepath.Join(d, name); fileExists(p) {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func start() (*Server, error) {
	server, err := look("mariadbd")
	if err != nil {
		shared.missing = true
		return nil, err
	}
	install, err := look("mariadb-install-db")
	if err != nil {
		shared.missing = true
		return nil, err
	}
	dir, err := os.MkdirTemp("", "q4m-mdbt-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, Sock: filepath.Join(dir, "sock")}
	// A temp dir of its own: mariadb-install-db's bootstrap and the
	// server make temporary tables under --tmpdir, and servers of other
	// tests sharing /tmp have failed to remove each other's.
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	common := []string{
		"--tmpdir=" + tmp,
		"--skip-name-resolve", "--skip-log-bin",
		"--innodb-buffer-pool-size=64M", "--innodb-log-file-size=16M",
		"--innodb-flush-log-at-trx-commit=0", "--innodb-doublewrite=0",
	}
	if os.Geteuid() == 0 {
		common = append(common, "--user=root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	data := filepath.Join(dir, "data")
	cmd := exec.CommandContext(ctx, install, append([]string{"--no-defaults", "--datadir=" + data,
		"--auth-root-authentication-method=normal", "--skip-test-db"}, common...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	for attempt := 1; ; attempt++ {
		port, err := testingutil.FreePort()
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.Addr = "127.0.0.1:" + strconv.Itoa(port)
		err = s.run(server, append([]string{"--no-defaults", "--datadir=" + data,
			"--socket=" + s.Sock, "--port=" + strconv.Itoa(port), "--bind-address=127.0.0.1",
			"--pid-file=" + filepath.Join(dir, "pid"), "--log-error=" + filepath.Join(dir, "error.log"),
			"--max-connections=500", "--max-allowed-packet=16M",
			"--character-set-server=utf8mb4", "--collation-server=utf8mb4_general_ci",
		}, common...))
		if err == nil {
			break
		}
		if attempt >= 3 {
			s.stop()
			return nil, err
		}
	}
	pool, err := sql.Open("mysql", "root@unix("+s.Sock+")/")
	if err != nil {
		s.stop()
		return nil, err
	}
	defer pool.Close()
	for _, q := range []string{"CREATE USER IF NOT EXISTS 'root'@'%'", "GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION"} {
		if _, err := pool.Exec(q); err != nil {
			s.stop()
			return nil, fmt.Errorf("%s: %v", q, err)
		}
	}
	return s, nil
}

// run starts mariadbd and waits until root logs in over its socket.
func (s *Server) run(bin string, args []string) error {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	exited := s.exited
	go func() { _ = cmd.Wait(); close(exited) }()
	pool, err := sql.Open("mysql", "root@unix("+s.Sock+")/?timeout=2s")
	if err != nil {
		return err
	}
	defer pool.Close()
	err = testingutil.AwaitReady(pool.Ping, exited, 2*time.Minute)
	if errors.Is(err, testingutil.ErrExited) {
		log, _ := os.ReadFile(filepath.Join(s.dir, "error.log"))
		return fmt.Errorf("mariadbd exited: %s", log)
	}
	if err != nil {
		return fmt.Errorf("mariadbd (2 minutes): %w", err)
	}
	return nil
}

func (s *Server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.dir)
}
