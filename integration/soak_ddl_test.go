package integration

import (
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/crashtest"
)

// TestSoakDDL churns table definitions for Q4MPROXY_SOAK_DDL cycles (e.g.
// 5000) under traffic, sampling the server's RSS and threads from
// /proc/<pid>/status. Each cycle creates a table of 24 columns, inserts into
// it, adds a column, reads it, truncates it, drops a column, consumes a
// row and drops it; and it alters (adds or drops a column) and every tenth
// cycle truncates a long-lived table that a producer and a consumer use
// meanwhile. Two producers and two consumers move rows through another
// table all along, checked for exactly-once delivery. It is skipped unless
// Q4MPROXY_SOAK_DDL is set; run it with no test timeout:
//
//	Q4MPROXY_SOAK_DDL=5000 go test -count=1 -timeout 0 -run SoakDDL -v ./integration/
//
// It checks that the RSS at the end is within 1.25x of the RSS after
// min(half the cycles, 1000) cycles (the store's caches warm up until
// then), and that threads do not grow. (Before the parsed-
// schema cache was bounded, each CREATE, ALTER and TRUNCATE left an entry
// behind for good.)
func TestSoakDDL(t *testing.T) {
	v := os.Getenv("Q4MPROXY_SOAK_DDL")
	if v == "" {
		t.Skip("set Q4MPROXY_SOAK_DDL to a number of DDL cycles (e.g. 5000) to run the DDL soak test")
	}
	cycles, err := strconv.Atoi(v)
	if err != nil || cycles < 100 {
		t.Fatalf("Q4MPROXY_SOAK_DDL=%q: want a number of cycles, at least 100", v)
	}
	s := startFastServer(t)
	pid := s.cmd.Process.Pid
	g := newGConn(t, s, driverModes[1])
	g.exec("CREATE TABLE traffic (id BIGINT NOT NULL, pad VARCHAR(255)) ENGINE=queue")
	var cols []string
	for i := range 24 {
		cols = append(cols, fmt.Sprintf("a_rather_long_column_name_%02d VARCHAR(64) DEFAULT 'some default value'", i))
	}
	def := "(id INT NOT NULL, " + strings.Join(cols, ", ") + ") ENGINE=queue"
	g.exec("CREATE TABLE hot " + def)

	ctx := t.Context()
	var (
		inserted, consumed, hotIn, hotOut atomic.Int64
		errMu                             sync.Mutex
		errs                              []string
	)
	fail := func(who string, err error) {
		errMu.Lock()
		errs = append(errs, fmt.Sprintf("%s: %v", who, err))
		errMu.Unlock()
	}
	stop := make(chan struct{})
	stopped := func() bool {
		select {
		case <-stop:
			return true
		default:
			return false
		}
	}
	conn := func() (*sql.Conn, error) {
		db, err := sql.Open("mysql", s.dsn("test", "interpolateParams=true", "readTimeout=60s"))
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { db.Close() })
		return db.Conn(ctx)
	}
	tokens := make(chan struct{}, 500) // rows producers may be ahead
	for range cap(tokens) {
		tokens <- struct{}{}
	}
	var wg sync.WaitGroup
	for p := range 2 {
		wg.Go(func() {
			c, err := conn()
			if err != nil {
				fail("producer", err)
				return
			}
			defer c.Close()
			for seq := int64(1); !stopped(); seq++ {
				select {
				case <-tokens:
				case <-stop:
					return
				}
				if _, err := c.ExecContext(ctx, "INSERT INTO traffic (id, pad) VALUES (?, ?)", int64(p+1)<<32|seq, "x"); err != nil {
					fail("producer", err)
					return
				}
				inserted.Add(1)
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			c, err := conn()
			if err != nil {
				fail("consumer", err)
				return
			}
			defer c.Close()
			owns := false
			for !stopped() {
				idx, err := crashtest.One(ctx, c, "SELECT queue_wait('traffic', 1)")
				if err != nil {
					fail("consumer", err)
					return
				}
				if owns {
					consumed.Add(1)
					tokens <- struct{}{}
				}
				owns = idx.Int64 == 1
			}
			if owns {
				if _, err := c.ExecContext(ctx, "SELECT queue_end()"); err != nil {
					fail("consumer", err)
					return
				}
				consumed.Add(1)
			}
		})
	}
	// A producer (five rows per cycle) and a consumer on the table being
	// altered and truncated.
	hotTick := make(chan struct{}, 1)
	wg.Go(func() {
		c, err := conn()
		if err != nil {
			fail("hot producer", err)
			return
		}
		defer c.Close()
		for i := 0; ; i += 5 {
			select {
			case <-hotTick:
			case <-stop:
				return
			}
			if _, err := c.ExecContext(ctx, "INSERT INTO hot (id) VALUES (?), (?), (?), (?), (?)", i, i+1, i+2, i+3, i+4); err != nil {
				fail("hot producer", err)
				return
			}
			hotIn.Add(5)
		}
	})
	wg.Go(func() {
		c, err := conn()
		if err != nil {
			fail("hot consumer", err)
			return
		}
		defer c.Close()
		for !stopped() {
			idx, err := crashtest.One(ctx, c, "SELECT queue_wait('hot', 1)")
			if err != nil {
				fail("hot consumer", err)
				return
			}
			if idx.Int64 == 1 {
				rs, err := c.QueryContext(ctx, "SELECT * FROM hot")
				if err == nil {
					_, err = scanStrings(rs)
				}
				if err != nil {
					fail("hot consumer", err)
					return
				}
				hotOut.Add(1)
			}
		}
		_, _ = c.ExecContext(ctx, "SELECT queue_end()")
	})

	type sample struct {
		cycle          int
		at             time.Duration
		rssKB, threads int64
	}
	start := time.Now()
	read := func(cycle int) sample {
		rss, threads, err := soakProcStatus(pid)
		if err != nil {
			t.Fatalf("reading /proc/%d/status: %v", pid, err)
		}
		return sample{cycle, time.Since(start).Round(time.Second), rss, threads}
	}
	samples := []sample{read(0)}
	every := max(cycles/20, 1)
	ddl := newGConn(t, s, driverModes[1])
	hotCols := 0
	for i := 1; i <= cycles && !t.Failed(); i++ {
		name := fmt.Sprintf("churn%d", i)
		ddl.exec("CREATE TABLE " + name + " " + def)
		ddl.exec("INSERT INTO " + name + " (id) VALUES (1), (2), (3)")
		ddl.exec("ALTER TABLE " + name + " ADD COLUMN extra INT")
		ddl.rows("SELECT * FROM " + name)
		ddl.exec("TRUNCATE TABLE " + name)
		ddl.exec("INSERT INTO " + name + " (id, extra) VALUES (4, 4)")
		ddl.exec("ALTER TABLE " + name + " DROP COLUMN a_rather_long_column_name_00")
		ddl.wantValue("1", "SELECT queue_wait('"+name+"', 0)")
		ddl.wantValue("1", "SELECT queue_end()")
		ddl.exec("DROP TABLE " + name)
		if i%2 == 1 {
			ddl.exec(fmt.Sprintf("ALTER TABLE hot ADD COLUMN h%d INT", hotCols))
			hotCols++
		} else {
			hotCols--
			ddl.exec(fmt.Sprintf("ALTER TABLE hot DROP COLUMN h%d", hotCols))
		}
		if i%10 == 0 {
			ddl.exec("TRUNCATE TABLE hot")
		}
		select {
		case hotTick <- struct{}{}:
		default:
		}
		if i%every == 0 {
			samples = append(samples, read(i))
		}
	}
	close(stop)
	wg.Wait()

	// Every acknowledged row of the steady table is consumed exactly once.
	left := 0
	for g.value("SELECT queue_wait('traffic', 0)") == "1" {
		left++
	}
	g.wantValue("1", "SELECT queue_end()")
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %8s %10s %8s\n", "cycle", "t", "RSS(MiB)", "threads")
	for _, sm := range samples {
		fmt.Fprintf(&b, "%8d %8v %10.1f %8d\n", sm.cycle, sm.at, float64(sm.rssKB)/1024, sm.threads)
	}
	t.Logf("DDL soak samples (server pid %d):\n%s", pid, b.String())
	t.Logf("DDL soak: %d cycles (%d statements of DDL) in %v; traffic: %d rows inserted, %d consumed + %d drained; hot table: %d inserted, %d consumed",
		cycles, cycles*6+cycles/10, time.Since(start).Round(time.Second), inserted.Load(), consumed.Load(), left, hotIn.Load(), hotOut.Load())
	for _, e := range errs {
		t.Errorf("client error during the DDL soak: %s", e)
	}
	if got, want := consumed.Load()+int64(left), inserted.Load(); got != want {
		t.Errorf("%d rows consumed, %d acknowledged", got, want)
	}
	ref := samples[len(samples)-1]
	for _, sm := range samples {
		if sm.cycle >= min(cycles/2, 1000) {
			ref = sm
			break
		}
	}
	final := samples[len(samples)-1]
	if float64(final.rssKB) > 1.25*float64(ref.rssKB) {
		t.Errorf("RSS grew from %d kB at cycle %d to %d kB at cycle %d (more than 1.25x)", ref.rssKB, ref.cycle, final.rssKB, final.cycle)
	}
	if final.threads > ref.threads+4 {
		t.Errorf("threads grew from %d to %d", ref.threads, final.threads)
	}
	t.Logf("DDL soak: RSS %d kB at cycle %d, %d kB at cycle %d (x%.2f); threads %d -> %d",
		ref.rssKB, ref.cycle, final.rssKB, final.cycle, float64(final.rssKB)/float64(ref.rssKB), ref.threads, final.threads)
}
