// Command q4mbench is a load tool for queue servers: P producer and C
// consumer connections move messages through a table (or a broker's
// queue), and it reports throughput, per-operation latency percentiles, the
// delay from INSERT to delivery and, given the server's pid, the server's
// CPU time per message.
//
// With --driver mysql (the default) it speaks the MySQL text protocol, as
// DBD::mysql does. Against q4mproxy (or a Q4M server) it consumes with
// queue_wait, in one of two styles; against a plain MySQL/MariaDB it
// consumes from an InnoDB table with SELECT ... FOR UPDATE SKIP LOCKED. For
// comparison it also drives PostgreSQL (--driver postgres: INSERT, and
// DELETE ... SKIP LOCKED ... RETURNING) and a RabbitMQ quorum queue
// (--driver amqp: publisher confirms, manual acks):
//
//	q4mbench --dsn 'root@tcp(127.0.0.1:3306)/test' --producers 16 --consumers 16 --messages 100000
//	q4mbench --dsn 'root:secret@tcp(127.0.0.1:33306)/test' --consume skip-locked --phase drain
//	q4mbench --driver postgres --dsn 'postgres://postgres@127.0.0.1:35432/postgres?sslmode=disable'
//	q4mbench --driver amqp --dsn 'amqp://guest:guest@127.0.0.1:35672/' --prefetch 200 --confirm-window 200
package main

import (
	"context"
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
)

// Config is the command line.
type Config struct {
	Driver     string // mysql, postgres, amqp
	DSN        string
	AlsoDSN    string // mysql: further servers (comma-separated DSNs) sharing the connections
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
	// HistogramPNG, if set, is where the latency histogram is drawn.
	HistogramPNG string
	// ServerPID, if set, is the server's process: its CPU time (and its
	// descendants') is sampled when the clock starts and stops.
	ServerPID     int
	Prefetch      int // amqp: unacknowledged deliveries per consumer
	ConfirmWindow int // amqp: unconfirmed messages per producer
	// Verify gives each message a payload of its own, checks it on
	// delivery, and makes a run with a message missing or delivered twice
	// fail.
	Verify bool
}

// Result is what a run reports (and writes as JSON).
type Result struct {
	Label      string             `json:"label"`
	Driver     string             `json:"driver"`
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
	// CPU time per message over the timed phase, in µs: the server's (and
	// its descendants'), if --server-pid was given, and q4mbench's own.
	ServerCPUPerMessage float64 `json:"server_cpu_us_per_message,omitempty"`
	ClientCPUPerMessage float64 `json:"client_cpu_us_per_message"`
	Prefetch            int     `json:"prefetch,omitempty"`
	ConfirmWindow       int     `json:"confirm_window,omitempty"`
	Verified            bool    `json:"verified,omitempty"` // --verify: payloads checked

	samples map[string][]float64 // every latency in µs, by operation (for --histogram-png)
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
	if cfg.Verify && (res.Missing > 0 || res.Duplicates > 0) {
		fmt.Fprintf(os.Stderr, "q4mbench: --verify: %d messages missing, %d delivered more than once\n", res.Missing, res.Duplicates)
		os.Exit(1)
	}
	if cfg.HistogramPNG != "" {
		if err := drawHistogram(cfg.HistogramPNG, histogramTitle(res), res.samples); err != nil {
			fmt.Fprintln(os.Stderr, "q4mbench: --histogram-png:", err)
			os.Exit(1)
		}
	}
}

func parseFlags(args []string, out io.Writer) (*Config, error) {
	c := &Config{}
	fs := flag.NewFlagSet("q4mbench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&c.Driver, "driver", "mysql", "mysql (MySQL protocol: q4mproxy, Q4M, MySQL/MariaDB), postgres (pgx) or amqp (RabbitMQ quorum queue)")
	fs.StringVar(&c.DSN, "dsn", "root@tcp(127.0.0.1:3306)/test", "`DSN` of the server: go-sql-driver's, a postgres:// or an amqp:// URL")
	fs.StringVar(&c.AlsoDSN, "also-dsn", "", "mysql: further `DSN`s (comma-separated) of servers serving the same queues (q4mproxy --queue-store upstream nodes): producers and consumers are spread over --dsn and these in turn")
	fs.IntVar(&c.ServerPID, "server-pid", 0, "`pid` of the server: report its CPU time per message (its descendants' included)")
	fs.IntVar(&c.Prefetch, "prefetch", 1, "amqp: deliveries a consumer may hold unacknowledged")
	fs.IntVar(&c.ConfirmWindow, "confirm-window", 1, "amqp: messages a producer may have unconfirmed (1: await each confirm)")
	fs.IntVar(&c.Producers, "producers", 16, "producer connections")
	fs.IntVar(&c.Consumers, "consumers", 16, "consumer connections")
	fs.IntVar(&c.Messages, "messages", 20000, "messages to move")
	fs.IntVar(&c.Payload, "payload", 100, "payload bytes per message")
	fs.StringVar(&c.Phase, "phase", "mixed", "insert (producers only), drain (fill, then consumers only), mixed, or wake (one message at a time to idle consumers: the delay from the INSERT's reply to delivery)")
	fs.StringVar(&c.Consume, "consume", "", "mysql driver: wait-select (queue_wait, then SELECT; the default), where-wait (SELECT * FROM t WHERE queue_wait(t)) or skip-locked (InnoDB transaction); postgres: delete-skip-locked; amqp: ack")
	fs.StringVar(&c.Table, "table", "q4mbench", "table to use (dropped and created)")
	fs.IntVar(&c.Batch, "batch", 1, "rows per INSERT")
	fs.IntVar(&c.Backlog, "backlog", 0, "messages queued (in INSERTs of 500 rows) before the timed phase, which consumes from behind them")
	fs.DurationVar(&c.Settle, "settle", 0, "pause this long after queuing the backlog, before the timed phase (lets the server finish the background work the fill caused)")
	fs.DurationVar(&c.WakeGap, "wake-gap", 2*time.Millisecond, "wake phase: pause after each delivery, so that consumers are idle in their wait again")
	fs.StringVar(&c.JSON, "json", "", "also write the result as JSON to `file`")
	fs.StringVar(&c.HistogramPNG, "histogram-png", "", "also draw the latency histogram of each timed operation as a PNG `file`")
	fs.DurationVar(&c.Progress, "progress", 2*time.Second, "interval of progress lines on stderr (0: none)")
	fs.StringVar(&c.Label, "label", "", "label for the result (e.g. the server's name)")
	fs.BoolVar(&c.Verify, "verify", false, "give each message a payload of its own and check it on delivery (and, for amqp, that it is persistent); exit 1 if a message is missing or delivered twice")
	fs.StringVar(&c.CPUProfile, "cpu-profile", "", "write a CPU profile of q4mbench itself to `file`")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	consumes := map[string][]string{"mysql": {"wait-select", "where-wait", "skip-locked"}, "postgres": {"delete-skip-locked"}, "amqp": {"ack"}}
	styles, ok := consumes[c.Driver]
	if !ok {
		return nil, fmt.Errorf("--driver must be mysql, postgres or amqp")
	}
	if c.Consume == "" {
		c.Consume = styles[0]
	}
	switch {
	case !slices.Contains(styles, c.Consume):
		return nil, fmt.Errorf("--consume of driver %s must be one of %s", c.Driver, strings.Join(styles, ", "))
	case c.Prefetch < 1 || c.ConfirmWindow < 1:
		return nil, fmt.Errorf("--prefetch and --confirm-window must be positive")
	case c.Phase != "insert" && c.Phase != "drain" && c.Phase != "mixed" && c.Phase != "wake":
		return nil, fmt.Errorf("--phase must be insert, drain, mixed or wake")
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
	d, err := newDriver(c)
	if err != nil {
		return nil, err
	}
	defer d.close()
	if err := d.setup(ctx); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	rec := map[string]*recorder{"insert": {}, "consume": {}, "delivery": {}, "wake": {}}
	var produced, consumed, errs atomic.Int64
	// The first error ends the run: the other producers and consumers stop
	// (consumers would otherwise wait for messages that never come).
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var failMu sync.Mutex
	var failure error
	fail := func(err error) {
		failMu.Lock()
		if failure == nil {
			failure = err
		}
		failMu.Unlock()
		cancelRun()
	}
	failed := func() error {
		failMu.Lock()
		defer failMu.Unlock()
		return failure
	}
	// The clock stops when the last message is consumed; consumers still
	// blocked in a wait are then cancelled (they would add their timeout).
	consCtx, stopConsumers := context.WithCancel(ctx)
	defer stopConsumers()
	var endOnce sync.Once
	var end time.Time
	var endServerCPU, endClientCPU time.Duration
	stopClock := func() {
		endOnce.Do(func() {
			end = time.Now()
			endClientCPU = selfCPU()
			if c.ServerPID > 0 {
				endServerCPU, _ = treeCPU(c.ServerPID)
			}
		})
	}
	seen := make([]atomic.Int32, c.Messages+c.Backlog)

	// produceRows sends the messages with ids [base, base+limit) taken from
	// next, batch per send; rec, if set, gets each acknowledgement's
	// latency and after, if set, is called after each acknowledgement.
	produceRows := func(ctx context.Context, p producer, next *atomic.Int64, base, limit int64, batch int, rec *recorder, after func(id int64)) error {
		acked := func(id int64, lat time.Duration) {
			if rec != nil {
				rec.add(lat)
			}
			if after != nil {
				after(id)
			}
		}
		for {
			start := next.Add(int64(batch)) - int64(batch)
			if start >= limit || ctx.Err() != nil {
				break
			}
			n := min(int64(batch), limit-start)
			if err := p.send(ctx, base+start, int(n), time.Now().UnixMicro(), acked); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				errs.Add(1)
				return err
			}
		}
		if err := p.flush(ctx, acked); err != nil && ctx.Err() == nil {
			errs.Add(1)
			return err
		}
		return nil
	}
	// The wake phase: one INSERT at a time, the next only after the
	// previous was delivered and consumers had WakeGap to block again.
	replied := make([]atomic.Int64, c.Messages) // unix ns of the INSERT's reply
	received := make([]atomic.Int64, c.Messages)
	delivered := make(chan struct{}, c.Messages)
	afterWake := func(id int64) {
		replied[id].Store(time.Now().UnixNano())
		select {
		case <-delivered:
		case <-ctx.Done():
			return
		}
		idle(ctx, c.WakeGap) // part of the workload: consumers go idle
	}
	consume := func(ctx context.Context, cons consumer) error {
		for consumed.Load() < int64(c.Messages) && ctx.Err() == nil {
			t0 := time.Now()
			id, ts, ok, err := cons.take(ctx)
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
				stopClock()
				stopConsumers()
			}
		}
		return nil
	}

	var wg sync.WaitGroup
	if c.Backlog > 0 {
		var next atomic.Int64
		fillers := min(4, max(1, c.Producers))
		for range fillers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p, err := d.producer(ctx)
				if err == nil {
					err = produceRows(ctx, p, &next, int64(c.Messages), int64(c.Backlog), 500, nil, nil)
					p.close()
				}
				if err != nil {
					fail(err)
				}
			}()
		}
		wg.Wait()
		if err := failed(); err != nil {
			return nil, err
		}
		fmt.Fprintf(logw, "queued a backlog of %d messages\n", c.Backlog)
		idle(ctx, c.Settle)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}

	// Every connection is open before the clock starts and stays open
	// until the server's CPU time was sampled at its end.
	nProducers := c.Producers
	switch c.Phase {
	case "drain":
		nProducers = 0
	case "wake":
		nProducers = 1
	}
	var producers []producer
	var consumers []consumer
	defer func() {
		for _, p := range producers {
			p.close()
		}
		for _, k := range consumers {
			k.close()
		}
	}()
	if c.Phase == "drain" {
		for range c.Producers {
			p, err := d.producer(ctx)
			if err != nil {
				return nil, err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer p.close()
				if err := produceRows(ctx, p, &produced, 0, int64(c.Messages), c.Batch, rec["insert"], nil); err != nil {
					fail(err)
				}
			}()
		}
		wg.Wait()
		if err := failed(); err != nil {
			return nil, err
		}
		fmt.Fprintf(logw, "filled %d messages\n", c.Messages)
	}
	for range nProducers {
		p, err := d.producer(ctx)
		if err != nil {
			return nil, err
		}
		producers = append(producers, p)
	}
	if c.Phase != "insert" {
		for range c.Consumers {
			k, err := d.consumer(ctx)
			if err != nil {
				return nil, err
			}
			consumers = append(consumers, k)
		}
	}

	var startServerCPU time.Duration
	if c.ServerPID > 0 {
		if startServerCPU, err = treeCPU(c.ServerPID); err != nil {
			return nil, fmt.Errorf("--server-pid: %w", err)
		}
	}
	startClientCPU := selfCPU()
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
	for _, p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var after func(int64)
			if c.Phase == "wake" {
				after = afterWake
			}
			batch := c.Batch
			if c.Phase == "wake" {
				batch = 1
			}
			if err := produceRows(ctx, p, &produced, 0, int64(c.Messages), batch, rec["insert"], after); err != nil {
				fail(err)
			}
		}()
	}
	for _, k := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := consume(consCtx, k); err != nil {
				fail(err)
			}
		}()
	}
	wg.Wait()
	stopClock()
	elapsed := end.Sub(start)
	close(stopProgress)
	if err := failed(); err != nil {
		return nil, err
	}
	res := &Result{
		Label: c.Label, Driver: c.Driver, Phase: c.Phase, Consume: c.Consume, Producers: c.Producers, Consumers: c.Consumers,
		Messages: c.Messages, Backlog: c.Backlog, Payload: c.Payload, Seconds: elapsed.Seconds(),
		PerSecond: float64(c.Messages) / elapsed.Seconds(), Latency: map[string]Summary{}, Errors: errs.Load(),
		ClientCPUPerMessage: float64((endClientCPU - startClientCPU).Microseconds()) / float64(c.Messages),
	}
	if c.Driver == "amqp" {
		res.Prefetch, res.ConfirmWindow = c.Prefetch, c.ConfirmWindow
	}
	res.Verified = c.Verify
	if c.ServerPID > 0 {
		res.ServerCPUPerMessage = float64((endServerCPU - startServerCPU).Microseconds()) / float64(c.Messages)
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
	res.samples = map[string][]float64{}
	for name, r := range rec {
		if s := r.summary(); s.Count > 0 {
			res.Latency[name] = s
			r.mu.Lock()
			res.samples[name] = r.v
			r.mu.Unlock()
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

// histogramTitle describes the run above the histogram.
func histogramTitle(r *Result) string {
	s := fmt.Sprintf("q4mbench %s: phase %s, consume %s, %d producers, %d consumers, %d messages, %.0f messages/s",
		r.Driver, r.Phase, r.Consume, r.Producers, r.Consumers, r.Messages, r.PerSecond)
	if r.Label != "" {
		s = r.Label + " - " + s
	}
	return s
}

func printResult(w io.Writer, r *Result) {
	fmt.Fprintf(w, "%s phase=%s consume=%s producers=%d consumers=%d messages=%d backlog=%d payload=%dB\n",
		r.Label, r.Phase, r.Consume, r.Producers, r.Consumers, r.Messages, r.Backlog, r.Payload)
	fmt.Fprintf(w, "  %.2f s, %.0f messages/s, errors %d, missing %d, duplicates %d\n", r.Seconds, r.PerSecond, r.Errors, r.Missing, r.Duplicates)
	if r.ServerCPUPerMessage > 0 {
		fmt.Fprintf(w, "  CPU per message: server %.1f µs, q4mbench %.1f µs\n", r.ServerCPUPerMessage, r.ClientCPUPerMessage)
	} else {
		fmt.Fprintf(w, "  CPU per message: q4mbench %.1f µs\n", r.ClientCPUPerMessage)
	}
	for _, op := range []string{"insert", "consume", "delivery", "wake"} {
		if s, ok := r.Latency[op]; ok {
			fmt.Fprintf(w, "  %-8s n=%-8d p50 %8.3f ms  p99 %8.3f ms  max %8.3f ms\n", op, s.Count, s.P50, s.P99, s.Max)
		}
	}
}
