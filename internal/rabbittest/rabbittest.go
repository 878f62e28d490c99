// Package rabbittest starts throwaway RabbitMQ nodes for tests, set up as
// bench/compare sets up its RabbitMQ anchor: a node of its own (a node name
// unique to the test, AMQP on a free loopback port, its distribution port
// and its own epmd on two more), its data, logs, config and Erlang cookie
// in a temp dir, no plugins, the user guest from loopback. Nothing is
// shared with a system node. The node is stopped with rabbitmqctl stop
// when the test ends, and the epmd it started is killed. When RabbitMQ is
// not installed the tests skip, or fail under Q4MPROXY_REQUIRE_CLIENTS=1.
package rabbittest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
	amqp "github.com/rabbitmq/amqp091-go"
)

// Dir holds Debian's rabbitmq-server and rabbitmqctl scripts (those in
// /usr/sbin switch to the user rabbitmq and its files).
const Dir = "/usr/lib/rabbitmq/bin"

// Server is a running RabbitMQ node.
type Server struct {
	// Addr is 127.0.0.1:PORT, the AMQP listener.
	Addr string
	// Node is the node's name.
	Node    string
	dir     string
	env     []string // the node's environment, for rabbitmqctl too
	epmd    int      // the port of its epmd
	cmd     *exec.Cmd
	exited  chan struct{}
	stopped atomic.Bool
	dog     *exec.Cmd // the watchdog (watch)
	dogPipe *os.File  // its stdin's other end
}

var nodes atomic.Int64

// Start starts a node for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return testingutil.Start(t, "RabbitMQ", "rabbitmq-server", start)
}

// URL is the amqp:// URL of the node as the user guest.
func (s *Server) URL() string { return "amqp://guest:guest@" + s.Addr + "/" }

// Pid is the process id of the start script, beam.smp's parent.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// Kill kills the node (the start script, beam.smp and its helpers) with
// SIGKILL, as a crash would, and waits until the script is gone. Its epmd
// lives on until Stop.
func (s *Server) Kill() {
	select {
	case <-s.exited:
		return // its pid may be another process's now
	default:
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL) // its process group
	<-s.exited
}

// Ctl runs rabbitmqctl against the node.
func (s *Server) Ctl(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(Dir, "rabbitmqctl"), append([]string{"-n", s.Node}, args...)...)
	cmd.Env = s.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// Stop stops the node (rabbitmqctl stop; SIGKILL if it is not gone within
// a minute), kills its epmd and removes its files. It may follow Kill.
func (s *Server) Stop() {
	if s.stopped.Swap(true) {
		return
	}
	s.unwatch()
	if s.cmd != nil {
		select {
		case <-s.exited:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			_, _ = s.Ctl(ctx, "stop")
			cancel()
			select {
			case <-s.exited:
			case <-time.After(time.Minute):
			}
		}
		s.Kill()
	}
	if s.epmd != 0 {
		kill := exec.Command("epmd", "-kill")
		kill.Env = s.env
		_ = kill.Run()
	}
	os.RemoveAll(s.dir)
}

func start() (*Server, error) {
	server := filepath.Join(Dir, "rabbitmq-server")
	if _, err := os.Stat(server); err != nil {
		return nil, fmt.Errorf("%s: %w", server, testingutil.ErrMissing)
	}
	if _, err := exec.LookPath("epmd"); err != nil {
		return nil, fmt.Errorf("epmd (erlang-base): %w", testingutil.ErrMissing)
	}
	dir, err := os.MkdirTemp("", "q4m-rabbittest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, Node: fmt.Sprintf("q4mtest%dn%d@localhost", os.Getpid(), nodes.Add(1))}
	for attempt := 1; ; attempt++ {
		err := s.run(server)
		if err == nil {
			return s, nil
		}
		if attempt >= 3 {
			s.Stop()
			return nil, err
		}
		if s.epmd != 0 { // the next attempt has other ports
			kill := exec.Command("epmd", "-kill")
			kill.Env = s.env
			_ = kill.Run()
		}
	}
}

// run starts the node on free ports and waits until AMQP logins work.
func (s *Server) run(server string) error {
	ports, err := testingutil.FreePorts(3)
	if err != nil {
		return err
	}
	amqpPort, distPort, epmdPort := ports[0], ports[1], ports[2]
	d := s.dir
	for _, sub := range []string{"mnesia", "log", "home"} {
		if err := os.MkdirAll(filepath.Join(d, sub), 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{
		"rabbitmq.conf":     fmt.Sprintf(config, amqpPort),
		"enabled_plugins":   plugins + "\n",
		"rabbitmq-env.conf": "", // instead of /etc/rabbitmq's
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(d, name), []byte(text), 0o600); err != nil {
			return err
		}
	}
	s.Addr = "127.0.0.1:" + strconv.Itoa(amqpPort)
	s.epmd = epmdPort
	s.env = append(os.Environ(), nodeEnv(d, s.Node, amqpPort, distPort, epmdPort)...)
	logPath := filepath.Join(d, "server.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(server)
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group (Kill kills beam.smp with the script); the
	// script is killed if the test binary dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	if err := s.watch(); err != nil {
		s.Kill()
		return err
	}
	err = testingutil.AwaitReady(func() error {
		conn, err := amqp.DialConfig(s.URL(), amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
		if err == nil {
			conn.Close()
		}
		return err
	}, exited, 3*time.Minute)
	if errors.Is(err, testingutil.ErrExited) {
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("rabbitmq-server exited at startup: %s", log)
	}
	if err != nil {
		s.Kill()
		log, _ := os.ReadFile(logPath)
		return fmt.Errorf("RabbitMQ (3 minutes): %w\n%s", err, log)
	}
	return nil
}

// watch starts a watchdog for the node: a shell that waits for the end of
// a pipe only the test binary holds. If the binary dies without Stop (a
// test timeout), the pipe closes and the watchdog kills the node's process
// group and its epmd, which would otherwise run on (the start script's
// Pdeathsig alone would leave beam.smp behind), and removes its files.
func (s *Server) watch() error {
	s.unwatch() // a previous attempt's
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	// beam.smp's helpers (erl_child_setup, inet_gethost) have sessions of
	// their own and exit with it; epmd refuses -kill while the node is
	// still registered.
	dog := exec.Command("sh", "-c", `read -r _; kill -9 -"$1"
		for i in 1 2 3 4 5 6 7 8 9 10; do epmd -kill | grep -q Killed && break; sleep 0.5; done
		rm -rf "$2"`, "watchdog", strconv.Itoa(s.cmd.Process.Pid), s.dir)
	dog.Env, dog.Stdin = s.env, r
	if err := dog.Start(); err != nil {
		w.Close()
		return err
	}
	s.dog, s.dogPipe = dog, w
	return nil
}

// unwatch ends the watchdog without letting it act.
func (s *Server) unwatch() {
	if s.dog == nil {
		return
	}
	_ = s.dog.Process.Kill()
	_ = s.dog.Wait()
	s.dogPipe.Close()
	s.dog, s.dogPipe = nil, nil
}

// config is the node's rabbitmq.conf (a format of the AMQP port), and
// plugins its enabled_plugins: bench/compare's
// (TestSetupMatchesBenchCompare).
const (
	config  = "listeners.tcp.default = 127.0.0.1:%d\nloopback_users.guest = true\n"
	plugins = "[]."
)

// nodeEnv is the environment of a node with its files in dir.
func nodeEnv(dir, node string, amqpPort, distPort, epmdPort int) []string {
	return []string{
		"HOME=" + filepath.Join(dir, "home"), // the Erlang cookie
		"RABBITMQ_NODENAME=" + node,
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT=" + strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT=" + strconv.Itoa(distPort),
		"ERL_EPMD_PORT=" + strconv.Itoa(epmdPort),
		"RABBITMQ_MNESIA_BASE=" + filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE=" + filepath.Join(dir, "log"),
		"RABBITMQ_CONFIG_FILE=" + filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_CONF_ENV_FILE=" + filepath.Join(dir, "rabbitmq-env.conf"),
		"RABBITMQ_ENABLED_PLUGINS_FILE=" + filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_PID_FILE=" + filepath.Join(dir, "pid"),
	}
}
