package main

// The drivers of bench/compare's anchors against the real servers, started
// by internal/pgtest and internal/rabbittest as bench/compare starts them
// (and MariaDB by internal/mariadbtest):
// a small mixed load moves every message exactly once with its payload
// intact (--verify, and the server's own count afterwards), the servers
// run with the durability the README's table states, and q4mbench ends
// with an error, not a hang, when its server goes away mid-run.

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/q4mproxy/q4mproxy/internal/mariadbtest"
	"github.com/q4mproxy/q4mproxy/internal/pgtest"
	"github.com/q4mproxy/q4mproxy/internal/rabbittest"
)

// TestMain runs q4mbench's main instead of the tests when the tests start
// this binary as q4mbench (benchCmd): the real command line, exit status
// and output, with the race detector of the test build.
func TestMain(m *testing.M) {
	if os.Getenv("Q4MBENCH_TEST_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	code := m.Run()
	mariadbtest.Stop()
	os.Exit(code)
}

// benchCmd is q4mbench with args.
func benchCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), "Q4MBENCH_TEST_MAIN=1")
	return cmd
}

// runVerified runs q4mbench --verify with args and checks what it reports:
// success, every message consumed once with its own payload, no errors.
func runVerified(t *testing.T, messages int, args ...string) Result {
	t.Helper()
	out := filepath.Join(t.TempDir(), "result.json")
	args = append(args, "--verify", "--progress", "0", "--json", out, "--messages", strconv.Itoa(messages))
	if b, err := benchCmd(t, args...).CombinedOutput(); err != nil {
		t.Fatalf("q4mbench %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if !r.Verified || r.Messages != messages || r.Errors != 0 || r.Missing != 0 || r.Duplicates != 0 {
		t.Errorf("q4mbench %s: %s", strings.Join(args, " "), b)
	}
	if n := r.Latency["consume"].Count; n != messages {
		t.Errorf("%d messages consumed, want %d", n, messages)
	}
	if n := r.Latency["delivery"].Count; n != messages {
		t.Errorf("%d deliveries timed, want %d", n, messages)
	}
	return r
}

// stderrWatch collects q4mbench's stderr and notes its first progress line
// with a message consumed.
type stderrWatch struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	running chan struct{} // closed at the first progress line with consumed > 0
	once    sync.Once
}

var consumedRE = regexp.MustCompile(`consumed [1-9]`)

func (w *stderrWatch) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if consumedRE.Match(w.buf.Bytes()) {
		w.once.Do(func() { close(w.running) })
	}
	return len(p), nil
}

func (w *stderrWatch) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// goesAway starts a long q4mbench run with args, waits until messages are
// being consumed, calls cut (which takes the server, or part of it, away)
// and checks that q4mbench then exits with status 1 and an error message,
// within a deadline that only a hang exceeds. It returns q4mbench's stderr.
func goesAway(t *testing.T, cut func(), args ...string) string {
	t.Helper()
	w := &stderrWatch{running: make(chan struct{})}
	cmd := benchCmd(t, append(args, "--messages", "1000000", "--progress", "100ms")...)
	cmd.Stderr = w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // a hung run: by its pid
		<-exited
	})
	select {
	case <-w.running:
	case err := <-exited:
		t.Fatalf("q4mbench exited before consuming: %v\n%s", err, w)
	case <-time.After(3 * time.Minute):
		t.Fatalf("q4mbench consumed nothing within 3 minutes:\n%s", w)
	}
	cut()
	var err error
	select {
	case err = <-exited:
		exited <- err // for the cleanup
	case <-time.After(2 * time.Minute):
		t.Fatalf("q4mbench still runs 2 minutes after its server went away (a hang):\n%s", lastLines(w.String(), 5))
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("q4mbench exited with %v, want status 1:\n%s", err, lastLines(w.String(), 5))
	}
	msg := ""
	for _, line := range strings.Split(w.String(), "\n") {
		if strings.HasPrefix(line, "q4mbench: ") {
			msg = line
		}
	}
	if msg == "" {
		t.Fatalf("q4mbench exited 1 without an error message:\n%s", lastLines(w.String(), 5))
	}
	t.Logf("%s", msg)
	return msg
}

// gone checks that q4mbench, started against a server that is gone,
// exits 1 with an error message.
func gone(t *testing.T, args ...string) {
	t.Helper()
	cmd := benchCmd(t, append(args, "--messages", "10", "--progress", "0")...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.HasPrefix(string(out), "q4mbench: ") {
		t.Errorf("q4mbench against a server that is gone: %v\n%s", err, out)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func TestPostgresDriver(t *testing.T) {
	s := pgtest.Start(t)
	ctx := t.Context()
	db, err := pgx.Connect(ctx, s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(context.Background())
	queued := func(t *testing.T) {
		t.Helper()
		var n int64
		if err := db.QueryRow(ctx, "SELECT COUNT(*) FROM q4mbench").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("%d rows left in the table after the run, want 0", n)
		}
	}
	pg := []string{"--driver", "postgres", "--dsn", s.DSN(), "--phase", "mixed", "--producers", "2", "--consumers", "2"}

	// What the README's table of anchors says PostgreSQL promises: every
	// autocommit synced.
	t.Run("DurableSettings", func(t *testing.T) {
		for name, want := range map[string]string{"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"} {
			var got string
			if err := db.QueryRow(ctx, "SHOW "+name).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("SHOW %s = %s, want %s", name, got, want)
			}
		}
	})

	t.Run("ExactlyOnce", func(t *testing.T) {
		r := runVerified(t, 2000, pg...)
		if n := r.Latency["insert"].Count; n != 2000 {
			t.Errorf("%d INSERTs timed, want 2000", n)
		}
		queued(t)
		// The server's own count: 2,000 rows inserted and 2,000 deleted.
		// The backends report at their exit, which follows q4mbench's.
		var ins, del int64
		deadline := time.Now().Add(time.Minute)
		for {
			if err := db.QueryRow(ctx, "SELECT n_tup_ins, n_tup_del FROM pg_stat_user_tables WHERE relname = 'q4mbench'").Scan(&ins, &del); err != nil {
				t.Fatal(err)
			}
			if (ins == 2000 && del == 2000) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // polling the statistics until the backends' reports arrive
		}
		if ins != 2000 || del != 2000 {
			t.Errorf("the server counts %d rows inserted and %d deleted, want 2000 and 2000", ins, del)
		}
	})

	t.Run("Batches", func(t *testing.T) {
		r := runVerified(t, 700, append(pg, "--batch", "7")...)
		if n := r.Latency["insert"].Count; n != 100 {
			t.Errorf("%d INSERTs timed, want 100 of 7 rows", n)
		}
		queued(t)
	})

	// The producers' connections end (pg_terminate_backend): the run stops
	// with their error, though its consumers (and a producer not found)
	// could go on.
	t.Run("ProducersTerminated", func(t *testing.T) {
		goesAway(t, func() {
			var n int
			err := db.QueryRow(ctx, `SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity
				WHERE pid <> pg_backend_pid() AND query LIKE 'INSERT INTO q4mbench%'`).Scan(&n)
			if err != nil || n < 1 { // a producer that has not sent yet is not found
				t.Errorf("terminated %d producers (%v), want 1 or 2", n, err)
			}
		}, pg...)
	})

	t.Run("ServerKilled", func(t *testing.T) {
		goesAway(t, s.Kill, pg...)
		gone(t, pg...)
	})
}

func TestAMQPDriver(t *testing.T) {
	s := rabbittest.Start(t)
	ctx := t.Context()
	rmq := []string{"--driver", "amqp", "--dsn", s.URL(), "--phase", "mixed", "--producers", "2", "--consumers", "2"}
	// declare declares the run's queue on a connection of its own (a
	// refused declaration closes the channel).
	declare := func(passive, durable bool, args amqp.Table) (amqp.Queue, error) {
		conn, err := amqp.Dial(s.URL())
		if err != nil {
			return amqp.Queue{}, err
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			return amqp.Queue{}, err
		}
		if passive {
			return ch.QueueDeclarePassive("q4mbench", durable, false, false, false, args)
		}
		return ch.QueueDeclare("q4mbench", durable, false, false, false, args)
	}
	// drained checks that the queue holds no message once its consumers
	// are gone, but messages that come back after their acks: a consumer
	// channel of a quorum queue (RabbitMQ 3.10) may close with settlements
	// it had not yet sent to the queue (rabbit_fifo_client holds them back
	// while quorum_commands_soft_limit, 32, commands are unanswered), and
	// those messages are then delivered
	// again, as at-least-once allows. They may number at most what the
	// consumers held (prefetch each), each flagged redelivered, with its
	// payload, and from the run.
	drained := func(t *testing.T, messages, consumers, prefetch int) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for {
			q, err := declare(true, true, nil)
			if err != nil {
				t.Fatal(err)
			}
			if q.Consumers == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the queue still has %d consumers a minute after the run", q.Consumers)
			}
			time.Sleep(50 * time.Millisecond) // polling until the broker has seen the consumers go
		}
		conn, err := amqp.Dial(s.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		back := 0
		verify := &Config{Payload: 100, Verify: true}
		for {
			m, ok, err := ch.Get("q4mbench", false)
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			back++
			id, _, err := decodeBody(m.Body)
			if err == nil {
				err = checkFiller(verify, id, m.Body[16:])
			}
			if err != nil || id < 0 || id >= int64(messages) || !m.Redelivered {
				t.Errorf("left in the queue after the run: message %d (%v), redelivered %v", id, err, m.Redelivered)
			}
			if err := m.Ack(false); err != nil {
				t.Fatal(err)
			}
		}
		if back > consumers*prefetch {
			t.Errorf("%d acknowledged messages came back to the queue, more than the %d the consumers could hold", back, consumers*prefetch)
		} else if back > 0 {
			t.Logf("%d acknowledged messages came back to the queue after the run (redelivered)", back)
		}
	}

	t.Run("ExactlyOnce", func(t *testing.T) {
		r := runVerified(t, 2000, rmq...)
		if n := r.Latency["insert"].Count; n != 2000 {
			t.Errorf("%d publisher confirms timed, want 2000", n)
		}
		drained(t, 2000, 2, 1)
	})

	// bench/compare's "at its best" row: confirms and acks in flight.
	t.Run("Windows", func(t *testing.T) {
		r := runVerified(t, 2000, append(rmq, "--prefetch", "50", "--confirm-window", "50")...)
		if n := r.Latency["insert"].Count; n != 2000 || r.Prefetch != 50 || r.ConfirmWindow != 50 {
			t.Errorf("%d publisher confirms timed (want 2000), prefetch %d, confirm window %d", n, r.Prefetch, r.ConfirmWindow)
		}
		drained(t, 2000, 2, 50)
	})

	// The queue the driver declared is the durable quorum queue of the
	// README's table: declaring it durable and quorum is accepted, as
	// anything else is refused as inequivalent (406), and rabbitmqctl
	// lists it so.
	t.Run("QuorumQueue", func(t *testing.T) {
		if _, err := declare(false, true, amqp.Table{"x-queue-type": "quorum"}); err != nil {
			t.Errorf("declaring the queue durable and quorum: %v", err)
		}
		for _, tc := range []struct {
			durable bool
			args    amqp.Table
		}{{true, amqp.Table{"x-queue-type": "classic"}}, {false, amqp.Table{"x-queue-type": "quorum"}}} {
			_, err := declare(false, tc.durable, tc.args)
			var aerr *amqp.Error
			if !errors.As(err, &aerr) || aerr.Code != amqp.PreconditionFailed {
				t.Errorf("declaring the queue durable=%v %v: %v, want PRECONDITION_FAILED", tc.durable, tc.args, err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := s.Ctl(cctx, "list_queues", "--quiet", "--no-table-headers", "name", "type", "durable", "messages")
		if err != nil {
			t.Fatalf("rabbitmqctl list_queues: %v\n%s", err, out)
		}
		if got := strings.Join(strings.Fields(out), " "); got != "q4mbench quorum true 0" {
			t.Errorf("rabbitmqctl list_queues name type durable messages: %q, want \"q4mbench quorum true 0\"", out)
		}
	})

	t.Run("ServerKilled", func(t *testing.T) {
		goesAway(t, s.Kill, rmq...)
		gone(t, rmq...)
	})
}

// The MariaDB anchor's consume style: an InnoDB table, SELECT ... FOR
// UPDATE SKIP LOCKED and DELETE in a transaction per message. (The test
// binary's MariaDB runs with innodb_flush_log_at_trx_commit=0, not
// bench/compare's 1: what is checked here is the driver.)
func TestMySQLDriverSkipLocked(t *testing.T) {
	m := mariadbtest.Start(t)
	db, err := sql.Open("mysql", m.DSN("", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("CREATE DATABASE IF NOT EXISTS q4mbench_test"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		messages, inserts int
		args              []string
	}{
		{2000, 2000, []string{"--phase", "mixed", "--producers", "2", "--consumers", "2"}},
		{600, 100, []string{"--phase", "drain", "--producers", "2", "--consumers", "3", "--batch", "6"}},
	} {
		r := runVerified(t, tc.messages, append([]string{"--dsn", m.DSN("q4mbench_test", ""), "--consume", "skip-locked"}, tc.args...)...)
		if n := r.Latency["insert"].Count; n != tc.inserts {
			t.Errorf("%v: %d INSERTs timed, want %d", tc.args, n, tc.inserts)
		}
		var n, engine string
		if err := db.QueryRow("SELECT COUNT(*), (SELECT ENGINE FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'q4mbench_test' AND TABLE_NAME = 'q4mbench') FROM q4mbench_test.q4mbench").Scan(&n, &engine); err != nil {
			t.Fatal(err)
		}
		if n != "0" || engine != "InnoDB" {
			t.Errorf("%v: after the run the %s table holds %s rows, want an InnoDB table with 0", tc.args, engine, n)
		}
	}
}
