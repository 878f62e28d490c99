package integration

import (
	"bufio"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/crashtest"
)

// TestSoak runs a mixed load (8 producers, 8 consumers, aborts, reconnects,
// stats queries) against one server for the duration in Q4MPROXY_SOAK
// (e.g. "10m"), sampling the server's RSS and thread count every 10 s from
// /proc/<pid>/status (the server has no metrics endpoint). It is skipped
// unless Q4MPROXY_SOAK is set; run it without -race for figures that mean
// something, and with no test timeout:
//
//	Q4MPROXY_SOAK=10m go test -count=1 -timeout 0 -run Soak -v ./integration/
//
// It checks that the RSS at the end is within 1.5x of the RSS after the
// first minute (after half the run, for runs shorter than 2 minutes), that
// the thread count does not grow after that point, and that every
// acknowledged row was consumed exactly once.
func TestSoak(t *testing.T) {
	v := os.Getenv("Q4MPROXY_SOAK")
	if v == "" {
		t.Skip("set Q4MPROXY_SOAK to a duration (e.g. 10m) to run the soak test")
	}
	dur, err := time.ParseDuration(v)
	if err != nil || dur < 20*time.Second {
		t.Fatalf("Q4MPROXY_SOAK=%q: want a duration of at least 20s (%v)", v, err)
	}
	const (
		producers = 8
		consumers = 8
		backlog   = 2000 // rows the producers may be ahead of the consumers
		interval  = 10 * time.Second
	)
	seed := rand.Uint64()
	t.Logf("soak: %v, seed %d, race detector: %v", dur, seed, raceEnabled)
	s := startServer(t)
	pid := s.cmd.Process.Pid
	g := newGConn(t, s, defaultMode)
	tables := []string{"s1", "s2", "s3"}
	for _, tb := range tables {
		g.exec("CREATE TABLE " + tb + " (id BIGINT NOT NULL, pad VARCHAR(1024)) ENGINE=queue")
	}

	var (
		inserted, consumed, aborted, reconnects, statements atomic.Int64
		errMu                                               sync.Mutex
		errs                                                []string
	)
	fail := func(who string, err error) {
		errMu.Lock()
		errs = append(errs, fmt.Sprintf("%s: %v", who, err))
		errMu.Unlock()
	}
	// Clients stop at the top of their loops once stop is closed; their
	// statements are never cancelled, so every acknowledgement is counted.
	ctx := t.Context()
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	tokens := make(chan struct{}, backlog)
	for range backlog {
		tokens <- struct{}{}
	}
	openDB := func() (*sql.DB, *sql.Conn, error) {
		db, err := sql.Open("mysql", s.dsn("test", "interpolateParams=true", "readTimeout=60s"))
		if err != nil {
			return nil, nil, err
		}
		c, err := db.Conn(ctx)
		if err != nil {
			db.Close()
			return nil, nil, err
		}
		return db, c, nil
	}

	var wg sync.WaitGroup
	for p := range producers {
		rng := rand.New(rand.NewPCG(seed, uint64(p+1)))
		wg.Go(func() {
			db, c, err := openDB()
			if err != nil {
				fail("producer", err)
				return
			}
			defer db.Close()
			defer c.Close()
			var seq int64
			for !stopped() {
				n := 1 + rng.IntN(10)
				for range n {
					select {
					case <-tokens:
					case <-stop:
						return
					}
				}
				tb := tables[rng.IntN(len(tables))]
				var args []any
				for range n {
					seq++
					args = append(args, int64(p+1)*1_000_000_000+seq, strings.Repeat("x", rng.IntN(1024)))
				}
				q := "INSERT INTO " + tb + " (id, pad) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?),", n), ",")
				if _, err := c.ExecContext(ctx, q, args...); err != nil {
					fail("producer", err)
					return
				}
				inserted.Add(int64(n))
				statements.Add(1)
			}
		})
	}
	for k := range consumers {
		rng := rand.New(rand.NewPCG(seed, uint64(100+k)))
		wg.Go(func() {
			db, c, err := openDB()
			if err != nil {
				fail("consumer", err)
				return
			}
			defer func() { c.Close(); db.Close() }()
			order := append(append([]string(nil), tables[k%3:]...), tables[:k%3]...)
			wait := "SELECT queue_wait('" + strings.Join(order, "','") + "', 1)"
			owns := false
			consume := func() { // the owned row's consume was acknowledged
				consumed.Add(1)
				owns = false
				tokens <- struct{}{}
			}
			for !stopped() {
				idx, err := crashtest.One(ctx, c, wait)
				if err != nil {
					fail("consumer", err)
					return
				}
				statements.Add(1)
				if owns {
					consume()
				}
				if !idx.Valid || idx.Int64 < 0 || idx.Int64 > 3 {
					fail("consumer", fmt.Errorf("%s returned %v", wait, idx))
					return
				}
				if idx.Int64 == 0 {
					continue
				}
				owns = true
				tb := order[idx.Int64-1]
				rs, err := c.QueryContext(ctx, "SELECT id, pad FROM "+tb)
				if err == nil {
					_, err = scanStrings(rs)
				}
				if err != nil {
					fail("consumer", err)
					return
				}
				statements.Add(1)
				switch r := rng.IntN(100); {
				case r < 5: // give the row back: it is delivered again
					if _, err := crashtest.One(ctx, c, "SELECT queue_abort()"); err != nil {
						fail("consumer", err)
						return
					}
					aborted.Add(1)
					owns = false
				case r < 7: // reconnect while owning the row: the server releases it
					c.Close()
					db.Close()
					if db, c, err = openDB(); err != nil {
						fail("consumer", err)
						return
					}
					reconnects.Add(1)
					owns = false
				case r < 9:
					if _, err := crashtest.One(ctx, c, "SELECT COUNT(*) FROM "+tb); err != nil {
						fail("consumer", err)
						return
					}
				case r < 10:
					var st sql.NullString
					if err := c.QueryRowContext(ctx, "SELECT queue_stats('"+tb+"')").Scan(&st); err != nil {
						fail("consumer", err)
						return
					}
				}
			}
			if owns { // consume the last row, so that the count is exact
				if _, err := crashtest.One(ctx, c, "SELECT queue_end()"); err == nil {
					consume()
				} else {
					fail("consumer", err)
				}
			}
		})
	}

	type sample struct {
		at                 time.Duration
		rssKB, threads     int64
		inserted, consumed int64
	}
	read := func(at time.Duration) sample {
		rss, threads, err := soakProcStatus(pid)
		if err != nil {
			t.Fatalf("reading /proc/%d/status: %v", pid, err)
		}
		return sample{at, rss, threads, inserted.Load(), consumed.Load()}
	}
	start := time.Now()
	samples := []sample{read(0)}
	tick := time.NewTicker(interval)
	end := time.After(dur)
loop:
	for {
		select {
		case <-tick.C:
			samples = append(samples, read(time.Since(start).Round(time.Second)))
		case <-end:
			break loop
		}
	}
	tick.Stop()
	last := read(time.Since(start).Round(time.Second))
	if samples[len(samples)-1].at < last.at-time.Second {
		samples = append(samples, last)
	}
	close(stop)
	wg.Wait()

	// Drain what is left: every acknowledged row is consumed exactly once.
	g = newGConn(t, s, defaultMode)
	left := 0
	for {
		v := g.value("SELECT queue_wait('s1','s2','s3', 0)")
		if v == "0" {
			break
		}
		left++
	}
	g.wantValue("1", "SELECT queue_end()")
	for _, tb := range tables {
		g.wantValue("0", "SELECT COUNT(*) FROM "+tb)
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%8s %10s %8s %12s %12s %10s\n", "t", "RSS(MiB)", "threads", "inserted", "consumed", "rows/s")
	for i, sm := range samples {
		rate := 0.0
		if i > 0 {
			rate = float64(sm.consumed-samples[i-1].consumed) / (sm.at - samples[i-1].at).Seconds()
		}
		fmt.Fprintf(&b, "%8v %10.1f %8d %12d %12d %10.0f\n", sm.at, float64(sm.rssKB)/1024, sm.threads, sm.inserted, sm.consumed, rate)
	}
	t.Logf("soak samples (server pid %d):\n%s", pid, b.String())
	t.Logf("soak: %d rows inserted; %d INSERT, queue_wait and SELECT statements; %d rows consumed during the load + %d drained; %d aborts, %d reconnects while owning a row",
		inserted.Load(), statements.Load(), consumed.Load(), left, aborted.Load(), reconnects.Load())
	for _, e := range errs {
		t.Errorf("client error during the soak: %s", e)
	}
	if got, want := consumed.Load()+int64(left), inserted.Load(); got != want {
		t.Errorf("%d rows consumed (%d during the load, %d drained), %d acknowledged INSERTed rows", got, consumed.Load(), left, want)
	}

	refAt := min(time.Minute, dur/2)
	ref := samples[0]
	for _, sm := range samples {
		if sm.at >= refAt {
			ref = sm
			break
		}
	}
	final := samples[len(samples)-1]
	if float64(final.rssKB) > 1.5*float64(ref.rssKB) {
		t.Errorf("RSS grew from %d kB at %v to %d kB at %v (more than 1.5x)", ref.rssKB, ref.at, final.rssKB, final.at)
	}
	// OS threads, not goroutines: the Go runtime adds a thread now and then
	// for blocking system calls (fsync), so a small, bounded rise is not a
	// leak; a leak grows with the load's length.
	if final.threads > ref.threads+4 {
		t.Errorf("threads grew from %d at %v to %d at %v", ref.threads, ref.at, final.threads, final.at)
	}
	t.Logf("soak: RSS %d kB at %v, %d kB at %v (x%.2f); threads %d -> %d", ref.rssKB, ref.at, final.rssKB, final.at,
		float64(final.rssKB)/float64(ref.rssKB), ref.threads, final.threads)
}

// soakProcStatus reads VmRSS (kB) and Threads of a process.
func soakProcStatus(pid int) (rssKB, threads int64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			rssKB, err = strconv.ParseInt(f[0], 10, 64)
		case "Threads":
			threads, err = strconv.ParseInt(f[0], 10, 64)
		}
		if err != nil {
			return 0, 0, err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if rssKB == 0 || threads == 0 {
		return 0, 0, fmt.Errorf("no VmRSS or Threads line")
	}
	return rssKB, threads, nil
}
