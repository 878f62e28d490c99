// Package pgtest starts throwaway PostgreSQL servers for tests: initdb into
// a temp dir, the postmaster on a free loopback port with the settings
// bench/compare runs its PostgreSQL anchor with (Settings), trust
// authentication for the user postgres, stopped when the test ends. As
// root the server runs as an unprivileged user (postgres, which Debian's
// package creates, or nobody), since PostgreSQL refuses to run as root.
// When the server programs are not installed the tests skip, or fail under
// Q4MPROXY_REQUIRE_CLIENTS=1.
package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/q4mproxy/q4mproxy/internal/testingutil"
)

// Settings are the server settings of bench/compare's PostgreSQL (its
// postgres -c options; TestSettingsMatchBenchCompare holds the two
// together): durable commits (fsync, synchronous_commit, full_page_writes)
// and no checkpoint within a run.
var Settings = []string{
	"fsync=on", "synchronous_commit=on", "full_page_writes=on",
	"max_wal_size=16GB", "checkpoint_timeout=1h", "max_connections=200", "shared_buffers=128MB",
}

// Server is a running PostgreSQL.
type Server struct {
	// Addr is 127.0.0.1:PORT.
	Addr   string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start starts a server for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return testingutil.Start(t, "PostgreSQL", "postgresql", start)
}

// DSN is the postgres:// URL of the database postgres as the user postgres.
func (s *Server) DSN() string {
	return "postgres://postgres@" + s.Addr + "/postgres?sslmode=disable"
}

// Pid is the postmaster's process id.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Kill kills the postmaster and its children (backends, background
// workers) with SIGKILL, as a crash would, and waits until they are dead.
// The children are in sessions of their own, so not in the postmaster's
// process group: Kill stops the postmaster (no more forks), kills each
// child by its pid, then the postmaster.
func (s *Server) Kill() {
	select {
	case <-s.exited:
		return // its pid may be another process's now
	default:
	}
	pid := s.cmd.Process.Pid
	_ = syscall.Kill(pid, syscall.SIGSTOP)
	kids := children(pid)
	for _, child := range kids {
		_ = syscall.Kill(child, syscall.SIGKILL)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	<-s.exited
	// The children are no longer ours to wait for: their new parent reaps
	// them. Wait until each is dead.
	deadline := time.Now().Add(30 * time.Second)
	for _, child := range kids {
		for alive(child) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond) // polling /proc until SIGKILL took effect
		}
	}
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || !bytes.HasPrefix(b[i:], []byte(") Z"))
}

// children are the pids of the processes whose parent is pid.
func children(pid int) []int {
	var pids []int
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(string(b[i+1:])); len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		if child, err := strconv.Atoi(filepath.Base(filepath.Dir(p))); err == nil {
			pids = append(pids, child)
		}
	}
	return pids
}

// Stop shuts the server down (fast shutdown: SIGINT; Kill after 30 s) and
// removes its files. It may follow Kill.
func (s *Server) Stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Signal(syscall.SIGINT)
			select {
			case <-s.exited:
			case <-time.After(30 * time.Second):
				s.Kill()
			}
		}
	}
	os.RemoveAll(s.dir)
}

// binDir finds the server programs: Debian's PostgreSQL 15 (what
// bench/compare runs), else its newest installed version, else initdb in
// PATH.
func binDir() (string, error) {
	dirs := []string{"/usr/lib/postgresql/15/bin"}
	more, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(more, func(a, b string) int { return version(b) - version(a) })
	dirs = append(dirs, more...)
	if p, err := exec.LookPath("initdb"); err == nil {
		dirs = append(dirs, filepath.Dir(p))
	}
	for _, d := range dirs {
		if isExec(filepath.Join(d, "initdb")) && isExec(filepath.Join(d, "postgres")) {
			return d, nil
		}
	}
	return "", fmt.Errorf("initdb and postgres: %w", testingutil.ErrMissing)
}

// version is the major version in /usr/lib/postgresql/N/bin.
func version(dir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
	return n
}

func isExec(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// runAs is the credential the server programs run with: an unprivileged
// user when we are root, else none (ourselves).
func runAs() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, err1 := strconv.Atoi(u.Uid)
		gid, err2 := strconv.Atoi(u.Gid)
		if err1 == nil && err2 == nil && uid != 0 {
			return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
		}
	}
	return nil, errors.New("running as root, and neither the user postgres nor nobody exists to run PostgreSQL as")
}

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	cred, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "q4m-pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	data, sock := filepath.Join(dir, "data"), filepath.Join(dir, "sock")
	for _, d := range []string{data, sock} {
		if err := os.Mkdir(d, 0o700); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if cred != nil {
		// The server's user must reach its directories through ours.
		err := os.Chmod(dir, 0o711)
		for _, d := range []string{data, sock} {
			err = errors.Join(err, os.Chown(d, int(cred.Uid), int(cred.Gid)))
		}
		if err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	initdb := exec.CommandContext(ctx, filepath.Join(bin, "initdb"), "-D", data, "-U", "postgres",
		"--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v\n%s", err, out)
	}
	for attempt := 1; ; attempt++ {
		port, err := testingutil.FreePort()
		if err == nil {
			err = s.run(bin, cred, data, sock, port)
		}
		if err == nil {
			return s, nil
		}
		if attempt >= 3 {
			s.Stop()
			return nil, err
		}
	}
}

// run starts the postmaster on port and waits until it answers a query.
func (s *Server) run(bin string, cred *syscall.Credential, data, sock string, port int) error {
	args := []string{"-D", data, "-k", sock, "-p", strconv.Itoa(port), "-c", "listen_addresses=127.0.0.1"}
	for _, kv := range Settings {
		args = append(args, "-c", kv)
	}
	logPath := filepath.Join(s.dir, "postgres.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(bin, "postgres"), args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed if the test binary dies (its backends then exit as they see
	// the postmaster gone).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	s.Addr = "127.0.0.1:" + strconv.Itoa(port)
	err = testingutil.AwaitReady(s.ping, exited, 3*time.Minute)
	if errors.Is(err, testingutil.ErrExited) {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("postgres exited at startup: %s", log)
	}
	if err != nil {
		s.Kill()
		return fmt.Errorf("postgres (3 minutes): %w", err)
	}
	return nil
}

func (s *Server) ping() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	return conn.Ping(ctx)
}
