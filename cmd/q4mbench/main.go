// Command q4mbench is a load tool for MySQL-protocol queue servers: P
// producer and C consumer connections move messages through a table, and
// it reports throughput, per-operation latency percentiles and the delay
// from INSERT to delivery. It speaks the text protocol, as DBD::mysql does.
//
// Against q4mproxy (or a Q4M server) it consumes with queue_wait, in one of
// two styles; against a plain MySQL/MariaDB it consumes from an InnoDB table
// with SELECT ... FOR UPDATE SKIP LOCKED, for comparison:
//
//	q4mbench --dsn 'root@tcp(127.0.0.1:3306)/test' --producers 16 --consumers 16 --messages 100000
//	q4mbench --dsn 'root:secret@tcp(127.0.0.1:33306)/test' --consume skip-locked --phase drain
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Config is the command line.
type Config struct {
	DSN        string
	Producers  int
	Consumers  int
	Messages   int
	Payload    int
	Phase      string // insert, drain, mixed, wake
	Consume    string // wait-select, where-wait, skip-locked
	Table      string
	Batch      int // rows per INSERT
	Backlog    int // messages queued before the timed phase
	WakeGap    time.Duration
	Settle     time.Duration // pause between the backlog and the timed phase
	CPUProfile string
	JSON       string
	Progress   time.Duration
	Label      string
}

// Result is what a run reports (and writes as JSON).
type Result struct {
	Label      string             `json:"label"`
	Phase      string             `json:"phase"`
	Consume    string             `json:"consume"`
	Producers  int                `json:"producers"`
	Consumers  int                `json:"consumers"`
	Messages   int                `json:"messages"`
	Backlog    int                `json:"backlog,omitempty"`
	Payload    int                `json:"payload_bytes"`
	Seconds    float64            `json:"seconds"`
	PerSecond  float64            `json:"messages_per_second"`
	Latency    map[string]Summary `json:"latency_ms"` // per operation
	Errors     int64              `json:"errors"`
	Duplicates int                `json:"duplicates"`
	Missing    int                `json:"missing"`
}

// Summary are latency percentiles in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "q4mbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.CPUProfile != "" {
		f, err := os.Create(cfg.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "q4mbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	res, err := run(ctx, cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "q4mbench:", err)
		os.Exit(1)
	}
	printResult(os.Stdout, res)
	if cfg.JSON != "" {
		b, _ := json.MarshalIndent(res, "", "  ")
		if err := os.WriteFile(cfg.JSON, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "q4mbench:", err)
			os.Exit(1)
		}
	}
}

func parseFlags(args []string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("q4mbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.DSN, "dsn", "root@tcp(127.0.0.1:3306)/test", "go-sql-driver `DSN` of the server")
	fs.IntVar(&c.Producers, "producers", 16, "producer connections")
	fs.IntVar(&c.Consumers, "consumers", 16, "consumer connections")
	fs.IntVar(&c.Messages, "messages", 20000, "messages to move")
	fs.IntVar(&c.Payload, "payload", 100, "payload bytes per message")
	fs.StringVar(&c.Phase, "phase", "mixed", "insert (producers only), drain (fill, then consumers only), mixed, or wake (one message at a time to idle consumers: the delay from the INSERT's reply to delivery)")
	fs.StringVar(&c.Consume, "consume", "wait-select", "wait-select (queue_wait, then SELECT), where-wait (SELECT * FROM t WHERE queue_wait(t)) or skip-locked (InnoDB transaction)")
	fs.StringVar(&c.Table, "table", "q4mbench", "table to use (dropped and created)")
	fs.IntVar(&c.Batch, "batch", 1, "rows per INSERT")
	fs.IntVar(&c.Backlog, "backlog", 0, "messages queued (in INSERTs of 500 rows) before the timed phase, which consumes from behind them")
	fs.DurationVar(&c.Settle, "settle", 0, "pause this long after queuing the backlog, before the timed phase (lets the server finish the background work the fill caused)")
	fs.DurationVar(&c.WakeGap, "wake-gap", 2*time.Millisecond, "wake phase: pause after each delivery, so that consumers are idle in their wait again")
	fs.StringVar(&c.JSON, "json", "", "also write the result as JSON to `file`")
	fs.DurationVar(&c.Progress, "progress", 2*time.Second, "interval of progress lines on stderr (0: none)")
	fs.StringVar(&c.Label, "label", "", "label for the result (e.g. the server's name)")
	fs.StringVar(&c.CPUProfile, "cpu-profile", "", "write a CPU profile of q4mbench itself to `file`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	switch {
	case c.Phase != "insert" && c.Phase != "drain" && c.Phase != "mixed" && c.Phase != "wake":
		return nil, fmt.Errorf("--phase must be insert, drain, mixed or wake")
	case c.Consume != "wait-select" && c.Consume != "where-wait" && c.Consume != "skip-locked":
		return nil, fmt.Errorf("--consume must be wait-select, where-wait or skip-locked")
	case c.Messages < 1 || c.Payload < 16 || c.Batch < 1 || c.Backlog < 0:
		return nil, fmt.Errorf("--messages, --batch must be positive, --backlog not negative, --payload at least 16")
	case c.Phase == "insert" && c.Backlog > 0:
		return nil, fmt.Errorf("--backlog needs consumers (phase drain, mixed or wake)")
	case c.Phase == "wake" && c.Batch != 1:
		return nil, fmt.Errorf("the wake phase sends single-row INSERTs")
	case (c.Phase != "drain" && c.Producers < 1) || (c.Phase != "insert" && c.Consumers < 1):
		return nil, fmt.Errorf("the phase needs producers and/or consumers")
	}
	return c, nil
}

// recorder keeps latencies of one operation, in µs.
type recorder struct {
	mu sync.Mutex
	v  []float64
}

func (r *recorder) add(d time.Duration) {
	r.mu.Lock()
	r.v = append(r.v, float64(d.Microseconds()))
	r.mu.Unlock()
}

func (r *recorder) summary() Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.v) == 0 {
		return Summary{}
	}
	v := slices.Clone(r.v)
	slices.Sort(v)
	pct := func(p float64) float64 { return v[int(math.Min(float64(len(v)-1), p*float64(len(v))))] / 1000 }
	return Summary{Count: len(v), P50: pct(0.50), P99: pct(0.99), Max: v[len(v)-1] / 1000}
}

func run(ctx context.Context, c *Config, logw io.Writer) (*Result, error) {
	dsn, err := mysql.ParseDSN(c.DSN)
	if err != nil {
		return nil, err
	}
	dsn.InterpolateParams = true // text protocol, as DBD::mysql
	db, err := sql.Open("mysql", dsn.FormatDSN())
	if err != nil {
		return nil, err
	}
	defer db.Close()
	db.SetMaxOpenConns(c.Producers + c.Consumers + 2)
	db.SetMaxIdleConns(c.Producers + c.Consumers + 2)
	if err := setup(ctx, db, c); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	rec := map[string]*recorder{"insert": {}, "consume": {}, "delivery": {}, "wake": {}}
	var produced, consumed, errs atomic.Int64
	// The clock stops when the last message is consumed; consumers still
	// blocked in a wait are then cancelled (they would add their timeout).
	consCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	var endOnce sync.Once
	var end time.Time
	seen := make([]atomic.Int32, c.Messages+c.Backlog)
	payload := strings.Repeat("x", c.Payload-16)

	// insertRows inserts the messages with ids [base, base+limit) taken from
	// next, batch rows per INSERT; rec, if set, gets each INSERT's latency
	// and after, if set, is called after each acknowledged INSERT.
	insertRows := func(ctx context.Context, next *atomic.Int64, base, limit int64, batch int, rec *recorder, after func(id int64)) error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		var q strings.Builder
		for {
			start := next.Add(int64(batch)) - int64(batch)
			if start >= limit || ctx.Err() != nil {
				return nil
			}
			n := min(int64(batch), limit-start)
			q.Reset()
			fmt.Fprintf(&q, "INSERT INTO %s (id, ts, payload) VALUES ", c.Table)
			now := time.Now().UnixMicro()
			for i := int64(0); i < n; i++ {
				if i > 0 {
					q.WriteString(",")
				}
				fmt.Fprintf(&q, "(%d, %d, '%s')", base+start+i, now, payload)
			}
			t0 := time.Now()
			if _, err := conn.ExecContext(stmtCtx, q.String()); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				errs.Add(1)
				return err
			}
			if rec != nil {
				rec.add(time.Since(t0))
			}
			if after != nil {
				after(base + start)
			}
		}
	}
	produce := func(ctx context.Context, _ int) error {
		return insertRows(ctx, &produced, 0, int64(c.Messages), c.Batch, rec["insert"], nil)
	}
	// The wake phase: one INSERT at a time, the next only after the
	// previous was delivered and consumers had WakeGap to block again.
	replied := make([]atomic.Int64, c.Messages) // unix ns of the INSERT's reply
	received := make([]atomic.Int64, c.Messages)
	delivered := make(chan struct{}, c.Messages)
	wakeProduce := func(ctx context.Context, _ int) error {
		return insertRows(ctx, &produced, 0, int64(c.Messages), 1, rec["insert"], func(id int64) {
			replied[id].Store(time.Now().UnixNano())
			select {
			case <-delivered:
			case <-ctx.Done():
				return
			}
			select { // part of the workload: consumers go idle
			case <-time.After(c.WakeGap):
			case <-ctx.Done():
			}
		})
	}
	consume := func(ctx context.Context) error {
		conn, err := db.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		defer func() {
			if c.Consume != "skip-locked" {
				_, _ = conn.ExecContext(context.Background(), "SELECT queue_end()")
			}
		}()
		for consumed.Load() < int64(c.Messages) && ctx.Err() == nil {
			t0 := time.Now()
			id, ts, ok, err := consumeOne(ctx, conn, c)
			if err != nil {
				if ctx.Err() != nil || consumed.Load() >= int64(c.Messages) {
					return nil
				}
				errs.Add(1)
				return err
			}
			if !ok {
				continue
			}
			now := time.Now()
			if id >= 0 && id < int64(len(seen)) {
				seen[id].Add(1)
			}
			n := consumed.Add(1)
			if n > int64(c.Messages) {
				// Taken from a backlog after the run's last message: not timed.
				return nil
			}
			rec["consume"].add(now.Sub(t0))
			if id >= 0 && id < int64(c.Messages) { // not a backlog message
				rec["delivery"].add(now.Sub(time.UnixMicro(ts)))
				if c.Phase == "wake" {
					received[id].Store(now.UnixNano())
					delivered <- struct{}{}
				}
			}
			if n == int64(c.Messages) {
				endOnce.Do(func() { end = time.Now() })
				stopConsumers()
			}
		}
		return nil
	}

	var wg sync.WaitGroup
	errc := make(chan error, c.Producers+c.Consumers)
	runAll := func(n int, f func(context.Context, int) error) {
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := f(ctx, i); err != nil {
					errc <- err
				}
			}()
		}
	}
	if c.Backlog > 0 {
		var next atomic.Int64
		fillers := min(4, max(1, c.Producers))
		for range fillers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := insertRows(ctx, &next, int64(c.Messages), int64(c.Backlog), 500, nil, nil); err != nil {
					errc <- err
				}
			}()
		}
		wg.Wait()
		fmt.Fprintf(logw, "queued a backlog of %d messages\n", c.Backlog)
		select {
		case <-time.After(c.Settle):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if c.Phase == "drain" {
		runAll(c.Producers, produce)
		wg.Wait()
		fmt.Fprintf(logw, "filled %d messages\n", c.Messages)
	}
	start := time.Now()
	stopProgress := make(chan struct{})
	if c.Progress > 0 {
		go func() {
			t := time.NewTicker(c.Progress)
			defer t.Stop()
			for {
				select {
				case <-stopProgress:
					return
				case <-t.C:
					fmt.Fprintf(logw, "%6.1fs produced %d consumed %d (%.0f msg/s)\n", time.Since(start).Seconds(),
						min(produced.Load(), int64(c.Messages)), consumed.Load(), float64(max(consumed.Load(), min(produced.Load(), int64(c.Messages))))/time.Since(start).Seconds())
				}
			}
		}()
	}
	switch c.Phase {
	case "insert", "mixed":
		runAll(c.Producers, produce)
	case "wake":
		runAll(1, wakeProduce)
	}
	if c.Phase != "insert" {
		runAll(c.Consumers, func(context.Context, int) error { return consume(consCtx) })
	}
	wg.Wait()
	endOnce.Do(func() { end = time.Now() })
	elapsed := end.Sub(start)
	close(stopProgress)
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	res := &Result{
		Label: c.Label, Phase: c.Phase, Consume: c.Consume, Producers: c.Producers, Consumers: c.Consumers,
		Messages: c.Messages, Backlog: c.Backlog, Payload: c.Payload, Seconds: elapsed.Seconds(),
		PerSecond: float64(c.Messages) / elapsed.Seconds(), Latency: map[string]Summary{}, Errors: errs.Load(),
	}
	if c.Phase == "insert" {
		res.Consumers = 0
	}
	if c.Phase == "drain" {
		res.Producers = 0
	}
	if c.Phase == "wake" {
		res.Producers = 1
		for i := range replied {
			r, g := replied[i].Load(), received[i].Load()
			if r != 0 && g != 0 {
				// Delivered before the producer saw its reply counts as 0.
				rec["wake"].add(time.Duration(max(0, g-r)))
			}
		}
	}
	for name, r := range rec {
		if s := r.summary(); s.Count > 0 {
			res.Latency[name] = s
		}
	}
	if c.Phase != "insert" {
		for i := range seen {
			switch n := seen[i].Load(); {
			case n == 0 && c.Backlog == 0: // with a backlog, the run consumes some of it instead
				res.Missing++
			case n > 1:
				res.Duplicates += int(n - 1)
			}
		}
	}
	return res, nil
}

// setup creates the table: a queue table, or an InnoDB table for
// skip-locked.
func setup(ctx context.Context, db *sql.DB, c *Config) error {
	if _, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS "+c.Table); err != nil {
		return err
	}
	ddl := fmt.Sprintf("CREATE TABLE %s (id BIGINT NOT NULL, ts BIGINT NOT NULL, payload VARCHAR(%d) NOT NULL) ENGINE=queue", c.Table, c.Payload)
	if c.Consume == "skip-locked" {
		ddl = fmt.Sprintf("CREATE TABLE %s (seq BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, id BIGINT NOT NULL, ts BIGINT NOT NULL, payload VARCHAR(%d) NOT NULL) ENGINE=InnoDB", c.Table, c.Payload)
	}
	_, err := db.ExecContext(ctx, ddl)
	return err
}

// stmtCtx is the context of the workload's statements. It is never
// cancelled: for a cancellable context go-sql-driver hands every statement
// to a watcher goroutine, which would cost the client (sharing the CPUs with
// the server) a goroutine switch per statement. Consumers wait at most 1 s
// per statement, and the loops check the run's context between statements.
var stmtCtx = context.Background()

// consumeOne takes one message; ok is false when none came in time.
func consumeOne(ctx context.Context, conn *sql.Conn, c *Config) (id, ts int64, ok bool, err error) {
	switch c.Consume {
	case "wait-select":
		var idx sql.NullInt64
		if err := conn.QueryRowContext(stmtCtx, fmt.Sprintf("SELECT queue_wait('%s', 1)", c.Table)).Scan(&idx); err != nil {
			return 0, 0, false, err
		}
		if idx.Int64 != 1 {
			return 0, 0, false, nil
		}
		err := conn.QueryRowContext(stmtCtx, "SELECT id, ts FROM "+c.Table).Scan(&id, &ts)
		return id, ts, err == nil, err
	case "where-wait":
		err := conn.QueryRowContext(stmtCtx, fmt.Sprintf("SELECT id, ts FROM %s WHERE queue_wait('%s', 1)", c.Table, c.Table)).Scan(&id, &ts)
		if errors.Is(err, sql.ErrNoRows) {
			return 0, 0, false, nil
		}
		return id, ts, err == nil, err
	}
	// skip-locked: one transaction per message, as an InnoDB queue does.
	tx, err := conn.BeginTx(stmtCtx, nil)
	if err != nil {
		return 0, 0, false, err
	}
	var seq int64
	err = tx.QueryRowContext(stmtCtx, fmt.Sprintf("SELECT seq, id, ts FROM %s ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED", c.Table)).Scan(&seq, &id, &ts)
	if errors.Is(err, sql.ErrNoRows) {
		_ = tx.Rollback()
		select { // nothing to take: InnoDB has no blocking wait
		case <-time.After(time.Millisecond):
		case <-ctx.Done():
		}
		return 0, 0, false, nil
	}
	if err != nil {
		_ = tx.Rollback()
		return 0, 0, false, err
	}
	if _, err := tx.ExecContext(stmtCtx, fmt.Sprintf("DELETE FROM %s WHERE seq = %d", c.Table, seq)); err != nil {
		_ = tx.Rollback()
		return 0, 0, false, err
	}
	return id, ts, true, tx.Commit()
}

func printResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%s phase=%s consume=%s producers=%d consumers=%d messages=%d backlog=%d payload=%dB\n",
		r.Label, r.Phase, r.Consume, r.Producers, r.Consumers, r.Messages, r.Backlog, r.Payload)
	fmt.Fprintf(w, "  %.2f s, %.0f messages/s, errors %d, missing %d, duplicates %d\n", r.Seconds, r.PerSecond, r.Errors, r.Missing, r.Duplicates)
	for _, op := range []string{"insert", "consume", "delivery", "wake"} {
		if s, ok := r.Latency[op]; ok {
			fmt.Fprintf(w, "  %-8s n=%-8d p50 %8.3f ms  p99 %8.3f ms  max %8.3f ms\n", op, s.Count, s.P50, s.P99, s.Max)
		}
	}
}
