package integration

// End-to-end tests of the server as Mvalve's queue (see the Mvalve spec,
// /work/shared/spec/mvalve.md):
//
//   - Mode A (no valve): Perl DBI scripts send Mvalve's exact statements
//     (S1-S13) with real Mvalve-framed BLOBs; TestMvalveModeA also checks,
//     in the server's statement log, that the statements arrived as the
//     spec says they do.
//   - Mode B (--config / --valve): the server's valve is the only consumer
//     of q_incoming and releases messages into q_timed at the throttled
//     rate; Go consumers (and one Perl consumer) block in
//     queue_wait('q_emerg','q_timed:ready<NOW','q_incoming',60).

import (
	"context"
	crand "crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---------------------------------------------------------------------------
// Mode A: the valve is off; the server is a plain Q4M for Perl's Mvalve.

// mvalveScripts are the Mode A scripts, with the statements each must have
// put on the wire (regular expressions over the server's debug statement
// log, each matching at least one statement; the log cuts statements at
// 200 bytes, so BLOB inserts are matched by their start).
var mvalveScripts = []struct {
	script string
	wire   []string
}{
	{"mvalve_pipe.pl", []string{
		`^INSERT INTO q_incoming \(destination, message\) VALUES \('test', '\^Storable\|\|\|hex\|Compress::Zlib\^789c[0-9a-f]`,
		`^INSERT INTO q_incoming \( destination, message\) VALUES \( 'test2', '\^Storable\|\|\|hex\|Compress::Zlib\^789c[0-9a-f]`,
		`^INSERT INTO q_emerg \( destination, message\) VALUES \( 'test', '\^Storable\|\|\|hex\|Compress::Zlib\^`,
		`^INSERT INTO q_emerg \(destination, message\) VALUES \('test2', '\^Storable\|\|\|hex\|Compress::Zlib\^`,
		`^INSERT INTO q_timed \( destination, message, ready\) VALUES \( 'test', '\^Storable\|\|\|hex\|Compress::Zlib\^`,
		`^INSERT INTO q_timed \(destination, message, ready\) VALUES \('test', '\^Storable\|\|\|hex\|Compress::Zlib\^`,
		`^INSERT INTO q_statslog \(action, destination, logged_on\) VALUES \('enqueue', 'test', CURRENT_TIMESTAMP\)$`,
		`^INSERT INTO q_statslog \( action, destination, logged_on\) VALUES \( 'enqueue', 'test2', CURRENT_TIMESTAMP \)$`,
		`^INSERT INTO q_statslog \( action, destination, logged_on\) VALUES \( 'dequeue', 'test', CURRENT_TIMESTAMP \)$`,
		`^SELECT queue_wait\('q_emerg','q_timed:ready<\d{15}','q_incoming','60'\)$`,
		`^SELECT queue_wait\('q_emerg','q_timed:ready<\d{15}','q_incoming','1'\)$`,
		`^SELECT \* FROM q_emerg$`, `^SELECT \* FROM q_timed$`, `^SELECT \* FROM q_incoming$`,
		`^select queue_end\(\)$`,
		`^SELECT queue_abort\(\)$`,
		`^SELECT COUNT\(\*\) FROM q_statslog WHERE action = 'enqueue'$`,
		`^DELETE FROM q_emerg$`, `^DELETE FROM q_timed$`, `^DELETE FROM q_incoming$`, `^DELETE FROM q_statslog$`,
	}},
	{"mvalve_timed.pl", []string{
		`^INSERT INTO q_timed \( destination, message, ready\) VALUES \( 'test', '\^Storable\|\|\|hex\|Compress::Zlib\^`,
		`^SELECT queue_wait\('q_emerg','q_timed:ready<\d{15}','q_incoming','1'\)$`,
		`^SELECT \* FROM q_timed$`,
	}},
	{"mvalve_trap.pl", []string{
		`^SELECT queue_wait\('q_emerg','q_timed:ready<\d{15}','q_incoming'\)$`,
		`^SELECT queue_wait\('q_emerg','q_timed:ready<\d{15}','q_incoming','60'\)$`,
	}},
	{"mvalve_stats.pl", []string{
		`^INSERT INTO q_statslog \( action, destination, logged_on\) VALUES \( 'enqueue', 'alpha', CURRENT_TIMESTAMP \)$`,
		`^INSERT INTO q_statslog \( action, destination, logged_on\) VALUES \( 'dequeue', 'beta', CURRENT_TIMESTAMP \)$`,
		`^SELECT COUNT\(\*\) FROM q_statslog WHERE action = 'enqueue'$`,
		`^SELECT COUNT\(\*\) FROM q_statslog WHERE action = 'dequeue'$`,
		`^SELECT COUNT\(\*\) FROM q_statslog WHERE action = 'dequeue' AND destination = 'alpha'$`,
		`^DELETE FROM q_statslog$`,
	}},
}

// mvalveCommonWire is what every Mode A script sends: Queue::Q4M's plugin
// check (S1, from a heredoc) and "mvalve create" (S13).
var mvalveCommonWire = []string{
	`^\n +SELECT PLUGIN_VERSION from information_schema\.plugins WHERE plugin_name = 'QUEUE'\n$`,
	`(?i)^set autocommit=0$`,
	`(?s)^CREATE TABLE q_emerg \(.*\) ENGINE=QUEUE DEFAULT CHARSET=utf8;$`,
	`(?s)^CREATE TABLE q_timed \(.*ready BIGINT NOT NULL.*\) ENGINE=QUEUE DEFAULT CHARSET=utf8;$`,
	`(?s)^CREATE TABLE q_incoming \(.*\) ENGINE=QUEUE DEFAULT CHARSET=utf8;$`,
	`(?s)^CREATE TABLE q_statslog \(.*\) ENGINE=QUEUE DEFAULT CHARSET=utf8;$`,
	`(?i)^commit$`,
	`(?i)^set autocommit=1$`,
}

// TestMvalveModeA runs the Mode A scripts with both Perl drivers, each on a
// fresh server without a valve.
func TestMvalveModeA(t *testing.T) {
	for _, sc := range mvalveScripts {
		t.Run(strings.TrimSuffix(sc.script, ".pl"), func(t *testing.T) {
			t.Parallel()
			for _, d := range perlDrivers {
				t.Run(d, func(t *testing.T) {
					t.Parallel()
					requireClients(t, "perl", "DBI", "DBD::"+d, "Compress::Zlib", "Digest::SHA")
					s := startServer(t, "--log-level", "debug")
					start := time.Now()
					out := s.perl(t, d, sc.script)
					if !tapPlan.MatchString(out) || tapNotOK.MatchString(out) {
						t.Fatalf("perl %s (%s): incomplete or failing TAP:\n%s", sc.script, d, out)
					}
					t.Logf("%s with DBD::%s: %s, %v", sc.script, d, tapPlan.FindString(out), time.Since(start).Round(time.Millisecond))
					// Without a valve, SHOW VALVE STATUS is empty.
					rows, err := s.open(t).Query("SHOW VALVE STATUS")
					if err != nil {
						t.Fatal(err)
					}
					got, err := scanStrings(rows)
					if err != nil || len(got) != 0 {
						t.Errorf("SHOW VALVE STATUS without a valve: %q, %v; want no rows", got, err)
					}
					s.stop() // so that every statement it logged has been read from its pipe
					stmts := mvStatements(t, s)
					for _, w := range append(slices.Clone(mvalveCommonWire), sc.wire...) {
						re := regexp.MustCompile(w)
						if !slices.ContainsFunc(stmts, re.MatchString) {
							t.Errorf("no statement on the wire matches %s", w)
						}
					}
					// Every INSERT carries quoted literals only (DBD's
					// client-side placeholders quote numbers too).
					vals := regexp.MustCompile(`(?s)VALUES \( ?(.*?) ?\)$`)
					item := regexp.MustCompile(`^('(?:[^'\\]|\\.)*'|CURRENT_TIMESTAMP)$`)
					for _, st := range stmts {
						if !strings.HasPrefix(st, "INSERT INTO q_") || strings.HasSuffix(st, "...") {
							continue
						}
						m := vals.FindStringSubmatch(st)
						if m == nil {
							t.Errorf("INSERT without a VALUES list: %q", st)
							continue
						}
						for _, v := range strings.Split(m[1], ", ") {
							if !item.MatchString(v) {
								t.Errorf("INSERT value %q is not a quoted literal: %q", v, st)
							}
						}
					}
				})
			}
		})
	}
}

// mvStatements returns the statements of the server's debug log.
func mvStatements(t testing.TB, s *server) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if !strings.Contains(l, `"msg":"statement"`) {
			continue
		}
		var rec struct{ Stmt string }
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("bad log line %q: %v", l, err)
		}
		out = append(out, rec.Stmt)
	}
	return out
}

// ---------------------------------------------------------------------------
// Mode B: the valve runs in the server.

// mvDDL is "mvalve create"'s DDL.
var mvDDL = []string{
	"CREATE TABLE q_emerg (destination VARCHAR(40) NOT NULL, message BLOB NOT NULL) ENGINE=QUEUE DEFAULT CHARSET=utf8;",
	"CREATE TABLE q_timed (destination VARCHAR(40) NOT NULL, ready BIGINT NOT NULL, message BLOB NOT NULL) ENGINE=QUEUE DEFAULT CHARSET=utf8;",
	"CREATE TABLE q_incoming (destination VARCHAR(40) NOT NULL, message BLOB NOT NULL) ENGINE=QUEUE DEFAULT CHARSET=utf8;",
	"CREATE TABLE q_statslog (action VARCHAR(40) NOT NULL, destination VARCHAR(40) NOT NULL, logged_on TIMESTAMP NOT NULL) ENGINE=QUEUE DEFAULT CHARSET=utf8;",
}

// mvTables are the queue_wait arguments' tables, by 1-based index.
var mvTables = []string{"q_emerg", "q_timed", "q_incoming"}

// mvRateConfig is the valve of the Mode B tests: at most 2 messages per
// destination in any 1 s; "vip" has a 2 s interval (so its emergency drop
// window, which has Mvalve's whole-second resolution, lasts at least 1 s).
const mvRateConfig = `# Mode B valve of the integration tests
[[valve]]
max_items = 2
interval = 1.0
drop_on_emergency = true

[[valve.destination]]
name = "vip"
interval = 2.0
`

const (
	mvMax      = 2
	mvInterval = time.Second
	// mvTolerance is how much closer than the interval two arrivals
	// max_items apart may be: none. The valve counts a released row
	// against its destination from its release (before any consumer can
	// take it) until its consume, and for one interval after; a consumer
	// times an arrival between its queue_wait returning and its
	// queue_end, on the same (wall) clock as the server. So max_items+1
	// arrivals are always more than an interval apart, whatever the
	// delays (they only spread arrivals out).
	mvTolerance = 0
)

// mvStartValve starts a server with the valve configuration (written to a
// TOML file) and creates Mvalve's four tables.
func mvStartValve(t testing.TB, config string, extra ...string) *server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "valve.toml")
	if err := os.WriteFile(path, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, append([]string{"--config", path}, extra...)...)
	mvCreateTables(t, s)
	return s
}

func mvCreateTables(t testing.TB, s *server) {
	t.Helper()
	db := s.open(t)
	for _, q := range mvDDL {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// mvSent is a message the test put into q_incoming (or q_emerg).
type mvSent struct {
	dest    string
	seq     int
	payload []byte
}

// mvPayload returns a BLOB of random bytes holding every byte value.
func mvPayload() []byte {
	p := make([]byte, 24, 24+256)
	_, _ = crand.Read(p)
	for _, b := range rand.Perm(256) {
		p = append(p, byte(b))
	}
	return p
}

// mvMessages returns n messages for each destination, interleaved in the
// order they are to be inserted.
func mvMessages(dests []string, n int) []mvSent {
	var out []mvSent
	for seq := 1; seq <= n; seq++ {
		for _, d := range dests {
			out = append(out, mvSent{dest: d, seq: seq, payload: mvPayload()})
		}
	}
	return out
}

// mvInserter inserts messages, alternating go-sql-driver's two ways of
// sending a BLOB: COM_STMT_EXECUTE with a binary parameter, and COM_QUERY
// with the value interpolated as an escaped literal.
type mvInserter struct {
	prepared, interpolated *sql.DB
	n                      int
}

func (s *server) mvInserter(t testing.TB) *mvInserter {
	return &mvInserter{prepared: s.open(t), interpolated: s.open(t, "interpolateParams=true")}
}

func (in *mvInserter) insert(ctx context.Context, table string, m mvSent) error {
	db := in.prepared
	if in.n%2 == 1 {
		db = in.interpolated
	}
	in.n++
	res, err := db.ExecContext(ctx, "INSERT INTO "+table+" (destination, message) VALUES (?, ?)", m.dest, m.payload)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("insert into %s: %d rows affected (%v)", table, n, err)
	}
	return nil
}

func (in *mvInserter) mustInsert(t testing.TB, table string, ms ...mvSent) {
	t.Helper()
	for _, m := range ms {
		if err := in.insert(t.Context(), table, m); err != nil {
			t.Fatalf("insert %s #%d into %s: %v", m.dest, m.seq, table, err)
		}
	}
}

// mvGot is one message a consumer received.
type mvGot struct {
	table    string
	dest     string
	ready    int64
	payload  []byte
	at       time.Time // when queue_wait returned
	rowid    int64     // queue_rowid(): its position in its table
	consumer int
	// confirmed: queue_end() returned, so its consume is durable. A message
	// whose queue_end failed (the server went away) may come again.
	confirmed bool
}

// mvCollector gathers what the consumers receive.
type mvCollector struct {
	mu  sync.Mutex
	got []mvGot
}

func (c *mvCollector) add(g mvGot) {
	c.mu.Lock()
	c.got = append(c.got, g)
	c.mu.Unlock()
}

func (c *mvCollector) snapshot() []mvGot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.got)
}

// has reports whether every payload of want was received.
func (c *mvCollector) has(want []mvSent) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	seen := make(map[string]bool, len(c.got))
	for _, g := range c.got {
		seen[string(g.payload)] = true
	}
	for _, w := range want {
		if !seen[string(w.payload)] {
			return false
		}
	}
	return true
}

// mvPool is a set of consumer connections to one server process.
type mvPool struct {
	col     *mvCollector
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	stopped bool
	errs    []error
}

// mvConsume starts n consumers, each on its own connection, looping on
//
//	SELECT queue_wait('q_emerg','q_timed:ready<NOW','q_incoming',60)
//	SELECT * FROM <table>; SELECT queue_rowid(); SELECT queue_end()
//
// Each consumes its row at once (queue_end), so it owns a row only between
// queue_wait and queue_end.
func (s *server) mvConsume(t testing.TB, col *mvCollector, n int) *mvPool {
	t.Helper()
	db := s.open(t)
	db.SetMaxOpenConns(n + 1)
	ctx, cancel := context.WithCancel(context.Background())
	p := &mvPool{col: col, cancel: cancel}
	for i := range n {
		conn, err := db.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer conn.Close()
			if err := mvConsumeLoop(ctx, conn, i, col); err != nil {
				p.mu.Lock()
				if !p.stopped {
					p.errs = append(p.errs, fmt.Errorf("consumer %d: %w", i, err))
				}
				p.mu.Unlock()
			}
		}()
	}
	t.Cleanup(p.stop)
	return p
}

func mvConsumeLoop(ctx context.Context, conn *sql.Conn, id int, col *mvCollector) error {
	for {
		q := fmt.Sprintf("SELECT queue_wait('q_emerg','q_timed:ready<%d','q_incoming',60)", time.Now().UnixMicro()/10)
		var idx sql.NullInt64
		if err := conn.QueryRowContext(ctx, q).Scan(&idx); err != nil {
			return err
		}
		// On the wall clock, as the valve keeps its windows (the
		// monotonic clock moved up to 62 µs against it in 150 s here,
		// and arrivals compared on it were once 999.9 ms apart).
		at := time.Now().Round(0)
		if !idx.Valid || idx.Int64 < 0 || idx.Int64 > 3 {
			return fmt.Errorf("queue_wait returned %v", idx)
		}
		if idx.Int64 == 0 {
			continue
		}
		g := mvGot{table: mvTables[idx.Int64-1], at: at, consumer: id}
		rows, err := conn.QueryContext(ctx, "SELECT * FROM "+g.table)
		if err != nil {
			return err
		}
		cols, _ := rows.Columns()
		n := 0
		for rows.Next() {
			vals := make([]sql.RawBytes, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				rows.Close()
				return err
			}
			for i, c := range cols {
				switch c {
				case "destination":
					g.dest = string(vals[i])
				case "ready":
					g.ready, _ = strconv.ParseInt(string(vals[i]), 10, 64)
				case "message":
					g.payload = slices.Clone([]byte(vals[i]))
				}
			}
			n++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if n != 1 {
			return fmt.Errorf("SELECT * FROM %s in owner mode returned %d rows", g.table, n)
		}
		if err := conn.QueryRowContext(ctx, "SELECT queue_rowid()").Scan(&g.rowid); err != nil {
			col.add(g) // received, not consumed: it may come again
			return err
		}
		var one sql.NullInt64
		err = conn.QueryRowContext(ctx, "SELECT queue_end()").Scan(&one)
		g.confirmed = err == nil
		col.add(g)
		if err != nil {
			return err
		}
	}
}

// stop ends the consumers (closing their connections) and waits for them.
func (p *mvPool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	p.wg.Wait()
}

// errors returns the consumers' errors before stop.
func (p *mvPool) errors() []error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.errs)
}

// mvStatus is one row of SHOW VALVE STATUS.
type mvStatus struct {
	valve, dest                                       string
	admitted, throttled, dropped, released, scheduled int
	nextRelease, dropUntil                            time.Time // zero when NULL
	bucketFill                                        string
}

const mvStamp = "2006-01-02 15:04:05.000000"

// mvValveStatus reads SHOW VALVE STATUS, by destination.
func mvValveStatus(t testing.TB, db *sql.DB) map[string]mvStatus {
	t.Helper()
	rows, err := db.Query("SHOW VALVE STATUS")
	if err != nil {
		t.Fatalf("SHOW VALVE STATUS: %v", err)
	}
	cols, _ := rows.Columns()
	want := []string{"Valve", "Destination", "Admitted", "Throttled", "Dropped", "Released", "Scheduled", "Next_release", "Bucket_fill", "Drop_until"}
	if !slices.Equal(cols, want) {
		rows.Close()
		t.Fatalf("SHOW VALVE STATUS columns %q, want %q", cols, want)
	}
	recs, err := scanStrings(rows)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mvStatus{}
	num := func(s string) int {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("SHOW VALVE STATUS: bad number %q", s)
		}
		return n
	}
	stamp := func(s string) time.Time {
		if s == "NULL" {
			return time.Time{}
		}
		tm, err := time.ParseInLocation(mvStamp, s, time.Local)
		if err != nil {
			t.Fatalf("SHOW VALVE STATUS: bad time %q: %v", s, err)
		}
		return tm
	}
	for _, r := range recs {
		out[r[1]] = mvStatus{
			valve: r[0], dest: r[1],
			admitted: num(r[2]), throttled: num(r[3]), dropped: num(r[4]), released: num(r[5]), scheduled: num(r[6]),
			nextRelease: stamp(r[7]), bucketFill: r[8], dropUntil: stamp(r[9]),
		}
	}
	return out
}

func mvCount(t testing.TB, db *sql.DB, q string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(q, args...).Scan(&n); err != nil {
		t.Fatalf("%s %v: %v", q, args, err)
	}
	return n
}

// mvDrained waits until nothing is left anywhere in the pipe: no row in
// q_incoming or q_timed (COUNT(*) counts owned rows too) and nothing
// scheduled.
func mvDrained(t testing.TB, db *sql.DB, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "the pipe to drain", func() bool {
		if mvCount(t, db, "SELECT COUNT(*) FROM q_incoming") != 0 || mvCount(t, db, "SELECT COUNT(*) FROM q_timed") != 0 {
			return false
		}
		for _, st := range mvValveStatus(t, db) {
			if st.scheduled != 0 {
				return false
			}
		}
		return true
	})
}

// mvCheckDelivery checks the messages received against those sent: each
// delivered once, byte for byte, from q_timed with ready = 0, with the
// destination column kept, in per-destination order (by q_timed rowid,
// i.e. release order). maybe are messages whose insert is in doubt (it
// failed as the server died): each came at most once. A second copy of a
// message is allowed only when the first copy's consume was in doubt
// (queue_end failed because the server went away, so q4m gave the owned
// row back) and came before it. It returns one copy of each message by
// destination, in release order.
func mvCheckDelivery(t testing.TB, got []mvGot, want, maybe []mvSent) map[string][]mvGot {
	t.Helper()
	type info struct {
		sent   mvSent
		copies []mvGot
		maybe  bool
	}
	byPayload := map[string]*info{}
	for _, w := range want {
		byPayload[string(w.payload)] = &info{sent: w}
	}
	for _, w := range maybe {
		byPayload[string(w.payload)] = &info{sent: w, maybe: true}
	}
	for _, g := range got {
		in := byPayload[string(g.payload)]
		if in == nil {
			t.Errorf("received an unknown message from %s (destination %q, %d bytes)", g.table, g.dest, len(g.payload))
			continue
		}
		in.copies = append(in.copies, g)
	}
	first := map[string][]mvGot{}
	lost, dups := 0, 0
	for _, in := range byPayload {
		switch {
		case len(in.copies) == 0 && !in.maybe:
			lost++
			t.Errorf("lost: %s #%d", in.sent.dest, in.sent.seq)
			continue
		case len(in.copies) == 0:
			continue
		}
		sort.Slice(in.copies, func(i, j int) bool { return in.copies[i].at.Before(in.copies[j].at) })
		for i, c := range in.copies[1:] {
			prev := in.copies[i]
			if prev.confirmed || prev.rowid != 0 && c.rowid != prev.rowid {
				dups++
				t.Errorf("duplicate: %s #%d received %d times (copy %d: consumer %d, rowid %d, confirmed %v; previous: rowid %d, confirmed %v)",
					in.sent.dest, in.sent.seq, len(in.copies), i+2, c.consumer, c.rowid, c.confirmed, prev.rowid, prev.confirmed)
			} else {
				t.Logf("%s #%d came again after its consume was cut off by the server going away (q4m gives an owned row back)", in.sent.dest, in.sent.seq)
			}
		}
		for _, c := range in.copies {
			if c.table != "q_timed" || c.ready != 0 || c.dest != in.sent.dest {
				t.Errorf("%s #%d came from %s with destination %q, ready %d; want q_timed, %q, 0", in.sent.dest, in.sent.seq, c.table, c.dest, c.ready, in.sent.dest)
			}
		}
		// For the order, the first copy whose rowid is known (a copy
		// cut off before queue_rowid() answered has none).
		c := in.copies[0]
		if i := slices.IndexFunc(in.copies, func(g mvGot) bool { return g.rowid != 0 }); i >= 0 {
			c = in.copies[i]
		}
		first[in.sent.dest] = append(first[in.sent.dest], c)
	}
	// Order by release (rowid in q_timed) must be order by seq.
	for d, gs := range first {
		sort.Slice(gs, func(i, j int) bool { return gs[i].rowid < gs[j].rowid })
		first[d] = gs
		var seqs []int
		for _, g := range gs {
			seqs = append(seqs, byPayload[string(g.payload)].sent.seq)
		}
		if !slices.IsSorted(seqs) {
			var detail []string
			for _, g := range gs {
				detail = append(detail, fmt.Sprintf("#%d rowid %d at %s (consumer %d, confirmed %v)",
					byPayload[string(g.payload)].sent.seq, g.rowid, g.at.Format("15:04:05.000000"), g.consumer, g.confirmed))
			}
			t.Errorf("destination %s released out of order: seqs by q_timed rowid %v: %s", d, seqs, strings.Join(detail, "; "))
		}
	}
	if lost > 0 || dups > 0 {
		t.Errorf("%d lost, %d duplicated of %d sent", lost, dups, len(want))
	}
	return first
}

// mvCheckRate checks that no window of mvInterval-mvTolerance holds more
// than mvMax arrivals of one destination (arrivals mvMax apart are more
// than that apart), and returns the smallest distance between arrivals
// mvMax apart.
func mvCheckRate(t testing.TB, dest string, gs []mvGot) time.Duration {
	t.Helper()
	gs = slices.Clone(gs)
	slices.SortFunc(gs, func(a, b mvGot) int { return a.at.Compare(b.at) })
	minGap := time.Duration(1 << 62)
	bad := false
	for i := mvMax; i < len(gs); i++ {
		gap := gs[i].at.Sub(gs[i-mvMax].at)
		minGap = min(minGap, gap)
		if gap <= mvInterval-mvTolerance {
			bad = true
			t.Errorf("destination %s: arrivals %d and %d are %v apart: %d arrivals within %v (limit %d per %v, tolerance %v)",
				dest, i-mvMax+1, i+1, gap.Round(time.Microsecond), mvMax+1, gap.Round(time.Millisecond), mvMax, mvInterval, mvTolerance)
		}
	}
	if bad { // so that a failure shows what arrived when
		for i, g := range gs {
			t.Logf("  %s arrival %d: +%v from %s rowid %d, consumer %d, confirmed %v", dest, i+1,
				g.at.Sub(gs[0].at).Round(time.Microsecond), g.table, g.rowid, g.consumer, g.confirmed)
		}
	}
	return minGap
}

func mvWantStatus(t testing.TB, st map[string]mvStatus, dest string, admitted, throttled, dropped, released, scheduled int) {
	t.Helper()
	s, ok := st[dest]
	if !ok {
		t.Errorf("SHOW VALVE STATUS has no row for %s", dest)
		return
	}
	if s.valve != "mvalve" || s.admitted != admitted || s.throttled != throttled || s.dropped != dropped || s.released != released || s.scheduled != scheduled {
		t.Errorf("SHOW VALVE STATUS %s: valve %s admitted %d throttled %d dropped %d released %d scheduled %d; want mvalve %d %d %d %d %d",
			dest, s.valve, s.admitted, s.throttled, s.dropped, s.released, s.scheduled, admitted, throttled, dropped, released, scheduled)
	}
	if scheduled == 0 && !s.nextRelease.IsZero() {
		t.Errorf("SHOW VALVE STATUS %s: Next_release %v with nothing scheduled", dest, s.nextRelease)
	}
}

// TestValveRate: 3 destinations x 10 messages through a valve of 2 per
// second. Per destination: at most 2 arrivals in any 1 s, order kept,
// nothing lost or duplicated, BLOBs intact; q_statslog and SHOW VALVE
// STATUS count 2 admitted and 8 throttled (and released) messages.
func TestValveRate(t *testing.T) {
	s := mvStartValve(t, mvRateConfig)
	db := s.open(t)
	col := &mvCollector{}
	pool := s.mvConsume(t, col, 3)
	dests := []string{"alpha", "beta", "gamma"}
	msgs := mvMessages(dests, 10)
	start := time.Now()
	s.mvInserter(t).mustInsert(t, "q_incoming", msgs...)
	t.Logf("inserted %d messages in %v", len(msgs), time.Since(start).Round(time.Millisecond))
	decided := mvDecided(t, db, dests, 10, start)
	eventually(t, time.Minute, "all 30 messages to arrive", func() bool { return col.has(msgs) })
	mvDrained(t, db, time.Minute)
	pool.stop()
	if errs := pool.errors(); len(errs) > 0 {
		t.Errorf("consumer errors: %v", errs)
	}
	byDest := mvCheckDelivery(t, col.snapshot(), msgs, nil)
	for _, d := range dests {
		gs := byDest[d]
		if len(gs) != 10 {
			continue // reported
		}
		gap := mvCheckRate(t, d, gs)
		first, last := gs[0].at, gs[0].at
		for _, g := range gs {
			first, last = minTime(first, g.at), maxTime(last, g.at)
		}
		// 2 at once, then 2 per second once the previous ones were
		// consumed: the 9th arrives more than 4 s after the 1st (the rate
		// check implies it), and (a generous bound) well within 8 s of
		// the valve's last decision.
		span := last.Sub(first)
		if span <= 4*mvInterval || span > 8*mvInterval+decided {
			t.Errorf("destination %s: arrivals span %v, want a little over 4 s (decisions took %v)", d, span, decided)
		}
		t.Logf("destination %s: arrivals span %v; smallest distance between arrivals 2 apart %v", d, span.Round(time.Millisecond), gap.Round(time.Microsecond))
	}
	st := mvValveStatus(t, db)
	throttled := 0
	for _, d := range dests {
		mvWantSplit(t, st, d, 2, 8, decided)
		throttled += st[d].throttled
		if n := mvCount(t, db, "SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle' AND destination = ?", d); n != st[d].throttled {
			t.Errorf("q_statslog: %d throttle rows for %s, want %d", n, d, st[d].throttled)
		}
	}
	if n := mvCount(t, db, "SELECT COUNT(*) FROM q_statslog"); n != throttled {
		t.Errorf("q_statslog has %d rows, want %d (the throttle rows)", n, throttled)
	}
	if len(st) != len(dests) {
		t.Errorf("SHOW VALVE STATUS has %d rows, want %d", len(st), len(dests))
	}
}

// mvDecided waits until the valve has decided on n messages of each of
// dests, and returns how long after start it saw that: at most that long
// after start the valve decided on the last of them (it counts a decision
// once it is durable).
func mvDecided(t testing.TB, db *sql.DB, dests []string, n int, start time.Time) time.Duration {
	t.Helper()
	var took time.Duration
	eventually(t, time.Minute, fmt.Sprintf("the valve to decide on %d messages of each destination", n), func() bool {
		st := mvValveStatus(t, db)
		for _, d := range dests {
			if st[d].admitted+st[d].throttled < n {
				return false
			}
		}
		took = time.Since(start)
		return true
	})
	return took
}

// mvWantSplit checks SHOW VALVE STATUS for dest once every message of
// a burst was delivered: admitted at once and throttled (each then
// released; none dropped or still scheduled). The split is exact when
// the valve decided on the whole burst within an interval of its first
// message (decided): the first max_items are admitted, and each later
// one finds them still counted, or others of its destination waiting.
// Slower, as on a machine whose fsyncs take a tenth of a second, a later
// message may find its destination's window empty again and be admitted:
// then only the totals are checked (the rate is, in any case, by the
// arrivals).
func mvWantSplit(t testing.TB, st map[string]mvStatus, dest string, admitted, throttled int, decided time.Duration) {
	t.Helper()
	if decided < mvInterval {
		mvWantStatus(t, st, dest, admitted, throttled, 0, throttled, 0)
		return
	}
	s := st[dest]
	t.Logf("the valve decided on the burst in %v, more than the interval: %s's admitted/throttled split (%d/%d) depends on timing", decided, dest, s.admitted, s.throttled)
	if s.admitted < admitted || s.admitted+s.throttled != admitted+throttled || s.released != s.throttled || s.dropped != 0 || s.scheduled != 0 {
		t.Errorf("SHOW VALVE STATUS %s: admitted %d throttled %d dropped %d released %d scheduled %d; want at least %d admitted, %d in all, every throttled one released",
			dest, s.admitted, s.throttled, s.dropped, s.released, s.scheduled, admitted, admitted+throttled)
	}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// TestValveEmergency: an emergency message overtakes normal messages the
// valve already released into q_timed and those still scheduled; with
// drop_on_emergency, a normal message for the emergency's destination
// that arrives right after the emergency row is consumed is dropped.
func TestValveEmergency(t *testing.T) {
	s := mvStartValve(t, mvRateConfig)
	db := s.open(t)
	in := s.mvInserter(t)

	// 6 normal messages for bulk: 2 released at once, 4 scheduled.
	bulk := mvMessages([]string{"bulk"}, 6)
	in.mustInsert(t, "q_incoming", bulk...)
	eventually(t, time.Minute, "the valve to decide on the bulk messages", func() bool {
		st := mvValveStatus(t, db)["bulk"]
		return st.admitted+st.throttled == 6
	})
	if st := mvValveStatus(t, db)["bulk"]; st.admitted != 2 || st.throttled != 4 || st.scheduled != 4 {
		t.Fatalf("bulk before the emergency: %+v, want 2 admitted, 4 throttled and scheduled", st)
	}
	eventually(t, time.Minute, "the 2 admitted rows waiting in q_timed", func() bool {
		return mvCount(t, db, "SELECT COUNT(*) FROM q_timed") >= 2
	})
	emerg := mvSent{dest: "bulk", seq: 0, payload: mvPayload()}
	in.mustInsert(t, "q_emerg", emerg)

	col := &mvCollector{}
	pool := s.mvConsume(t, col, 1)
	eventually(t, time.Minute, "the emergency and the bulk messages", func() bool {
		return col.has(append([]mvSent{emerg}, bulk...))
	})
	got := col.snapshot()
	if string(got[0].payload) != string(emerg.payload) || got[0].table != "q_emerg" {
		t.Errorf("the first message received is not the emergency one (it came from %s)", got[0].table)
	}
	if got[0].dest != "bulk" {
		t.Errorf("emergency destination column %q, want bulk", got[0].dest)
	}
	mvCheckDelivery(t, got[1:], bulk, nil)
	// The scheduled bulk messages were decided before the emergency: they
	// are not dropped.
	mvWantStatus(t, mvValveStatus(t, db), "bulk", 2, 4, 0, 4, 0)

	// The drop window of vip (interval 2 s): a normal message inserted as
	// soon as the emergency row is consumed is dropped...
	vipEmerg := mvSent{dest: "vip", seq: 0, payload: mvPayload()}
	in.mustInsert(t, "q_emerg", vipEmerg)
	eventually(t, time.Minute, "the vip emergency to be consumed", func() bool { return col.has([]mvSent{vipEmerg}) })
	consumed := time.Now()
	dropped := mvSent{dest: "vip", seq: 1, payload: mvPayload()}
	in.mustInsert(t, "q_incoming", dropped)
	inserted := time.Now()
	eventually(t, time.Minute, "the valve to decide on the vip message", func() bool {
		st := mvValveStatus(t, db)["vip"]
		return st.admitted+st.throttled+st.dropped > 0
	})
	st := mvValveStatus(t, db)["vip"]
	t.Logf("vip: emergency consumed at %s, normal message inserted %v later; Drop_until %s",
		consumed.Format(mvStamp), inserted.Sub(consumed).Round(time.Microsecond), st.dropUntil.Format(mvStamp))
	mvWantStatus(t, map[string]mvStatus{"vip": st}, "vip", 0, 0, 1, 0, 0)
	if st.dropUntil.IsZero() || st.dropUntil.Before(inserted) {
		t.Errorf("vip Drop_until %v, want a time after the insert (%v)", st.dropUntil, inserted.Format(mvStamp))
	}
	// ...and once the window is over, the next one passes.
	eventually(t, time.Minute, "the vip drop window to close", func() bool {
		return mvValveStatus(t, db)["vip"].dropUntil.IsZero()
	})
	passed := mvSent{dest: "vip", seq: 2, payload: mvPayload()}
	in.mustInsert(t, "q_incoming", passed)
	eventually(t, time.Minute, "the vip message after the window", func() bool { return col.has([]mvSent{passed}) })
	mvDrained(t, db, time.Minute)
	pool.stop()
	if errs := pool.errors(); len(errs) > 0 {
		t.Errorf("consumer errors: %v", errs)
	}
	for _, g := range col.snapshot() {
		if string(g.payload) == string(dropped.payload) {
			t.Errorf("the dropped vip message was delivered (from %s)", g.table)
		}
	}
	mvWantStatus(t, mvValveStatus(t, db), "vip", 1, 0, 1, 0, 0)
	if n := mvCount(t, db, "SELECT COUNT(*) FROM q_emerg"); n != 0 {
		t.Errorf("%d rows left in q_emerg", n)
	}
}

// mvRestartRun is the common part of the restart tests: 3 destinations x
// 10 messages, 3 consumers; once at least 12 messages arrived, down is
// called 100 ms before the next scheduled release, and the server (unless
// down killed it, stopped with SIGTERM) stays down until 100 ms after that
// release was due: so the valve restarts with messages overdue, and more
// scheduled. New consumers take over, and everything must arrive. It
// returns the messages sent and received, and the server.
func mvRestartRun(t *testing.T, down func(s *server)) ([]mvSent, []mvGot, *server) {
	s := mvStartValve(t, mvRateConfig)
	db := s.open(t)
	col := &mvCollector{}
	pool := s.mvConsume(t, col, 3)
	dests := []string{"alpha", "beta", "gamma"}
	msgs := mvMessages(dests, 10)
	start := time.Now()
	s.mvInserter(t).mustInsert(t, "q_incoming", msgs...)
	decided := mvDecided(t, db, dests, 10, start)
	eventually(t, time.Minute, "12 messages to arrive", func() bool { return len(col.snapshot()) >= 12 })

	// Go down 100 ms before the next scheduled release.
	var next time.Time
	for _, st := range mvValveStatus(t, db) {
		if !st.nextRelease.IsZero() && (next.IsZero() || st.nextRelease.Before(next)) {
			next = st.nextRelease
		}
	}
	if next.IsZero() {
		t.Fatal("nothing scheduled after 12 arrivals")
	}
	eventually(t, 3*time.Second, "100 ms before the next release", func() bool { return time.Until(next) < 100*time.Millisecond })
	before := len(col.snapshot())
	downAt := time.Now()
	down(s)
	if s.cmd != nil {
		s.stop() // SIGTERM
	}
	// Polling the clock: the outage is part of the scenario.
	eventually(t, 3*time.Second, "100 ms after the release was due", func() bool { return time.Since(next) > 100*time.Millisecond })
	s.restart() // starts the server again (the harness's restart of a stopped server)
	pool.stop()
	t.Logf("consumers cut off: %v", pool.errors())
	t.Logf("server down at %s (next release due %s) for %v; %d of 30 messages had arrived",
		downAt.Format(mvStamp), next.Format(mvStamp), time.Since(downAt).Round(time.Millisecond), before)
	if _, ok := s.logs.waitFor(time.Minute, func(l string) bool { return strings.Contains(l, `"msg":"waiting messages restored"`) }); !ok {
		t.Errorf("the valve did not report restoring its schedule")
	}
	db = s.open(t)
	pool = s.mvConsume(t, col, 3)
	eventually(t, time.Minute, "all 30 messages to arrive after the restart", func() bool { return col.has(msgs) })
	mvDrained(t, db, time.Minute)
	pool.stop()
	if errs := pool.errors(); len(errs) > 0 {
		t.Errorf("consumer errors after the restart: %v", errs)
	}
	for _, d := range dests {
		// 8 when the valve decided on the burst within an interval (see
		// mvWantSplit); else some may have been admitted at once.
		if n := mvCount(t, db, "SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle' AND destination = ?", d); n != 8 && (decided < mvInterval || n > 8) {
			t.Errorf("q_statslog: %d throttle rows for %s, want 8 (the valve decided on the burst in %v)", n, d, decided)
		}
	}
	return msgs, col.snapshot(), s
}

// TestValveRestart restarts the server (SIGTERM) while messages are
// scheduled: the schedule resumes after the restart, nothing is lost or
// duplicated, and the rate still holds across the restart.
func TestValveRestart(t *testing.T) {
	msgs, got, _ := mvRestartRun(t, func(s *server) {})
	byDest := mvCheckDelivery(t, got, msgs, nil)
	for d, gs := range byDest {
		gap := mvCheckRate(t, d, gs)
		var ats []string
		for _, g := range gs {
			ats = append(ats, g.at.Format("15:04:05.000"))
		}
		t.Logf("destination %s: arrivals %v; smallest distance between arrivals 2 apart %v", d, ats, gap.Round(time.Millisecond))
	}
}

// TestValveKill9 kills the server (kill -9) while messages are scheduled
// and released-but-unconsumed, and while a producer is inserting: after it
// starts again on the same data directory, every acknowledged message is
// delivered exactly once. An insert cut off by the kill may be there or
// not; a consumer's row whose queue_end was cut off may come again (q4m
// gives an owned row back), and only such a row. No destination gets more
// than 2 messages in any second, across the kill.
func TestValveKill9(t *testing.T) {
	var (
		wave2   = mvMessages([]string{"w1", "w2", "w3", "w4", "w5", "w6"}, 3)
		mu      sync.Mutex
		acked   []mvSent
		doubt   []mvSent
		pending []mvSent
	)
	msgs, got, s := mvRestartRun(t, func(s *server) {
		// A producer inserts a second wave while the server is killed.
		in := s.mvInserter(t)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i, m := range wave2 {
				err := in.insert(context.Background(), "q_incoming", m)
				mu.Lock()
				if err != nil {
					doubt = append(doubt, m)
					pending = wave2[i+1:]
					mu.Unlock()
					return
				}
				acked = append(acked, m)
				mu.Unlock()
			}
		}()
		eventually(t, time.Minute, "6 inserts of the second wave", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(acked) >= 6 || len(doubt) > 0
		})
		s.kill()
		<-done
	})
	// Insert what the producer did not get to, now that the server is up.
	in := s.mvInserter(t)
	mu.Lock()
	in.mustInsert(t, "q_incoming", pending...)
	want := append(append(slices.Clone(msgs), acked...), pending...)
	t.Logf("second wave: %d acknowledged before the kill, %d in doubt, %d inserted after the restart", len(acked), len(doubt), len(pending))
	mu.Unlock()
	col := &mvCollector{got: got}
	pool := s.mvConsume(t, col, 2)
	eventually(t, time.Minute, "every acknowledged message", func() bool { return col.has(want) })
	mvDrained(t, s.open(t), time.Minute)
	pool.stop()
	if errs := pool.errors(); len(errs) > 0 {
		t.Errorf("consumer errors: %v", errs)
	}
	all := col.snapshot()
	unconfirmed := 0
	for _, g := range all {
		if !g.confirmed {
			unconfirmed++
		}
	}
	t.Logf("%d messages received, %d of them with their consume cut off by the kill", len(all), unconfirmed)
	byDest := mvCheckDelivery(t, all, want, doubt)
	// The rate holds across the kill too: rows released before it were
	// stored as in flight with their release, and those consumed before
	// it count as consumed when the valve finds them gone at the restart.
	for d, gs := range byDest {
		if gap := mvCheckRate(t, d, gs); len(gs) > mvMax {
			t.Logf("destination %s: smallest distance between arrivals 2 apart across the kill: %v", d, gap.Round(time.Millisecond))
		}
	}
}

// TestValvePerlReader: an unchanged Mvalve Reader loop in Perl (DBD::mysql),
// blocked in queue_wait('q_emerg','q_timed:ready<NOW','q_incoming','60'),
// receives every message, in order, never 3 of a destination within 1 s,
// and each throttled one no earlier than its slot time (SHOW VALVE
// STATUS's Next_release, once the reader consumed the destination's first
// two); it decodes the Mvalve BLOBs a Perl Writer framed, byte for byte
// through the valve.
func TestValvePerlReader(t *testing.T) {
	requireClients(t, "perl", "DBI", "DBD::mysql", "Compress::Zlib", "Digest::SHA")
	s := mvStartValve(t, mvRateConfig, "--log-level", "debug")
	db := s.open(t)

	// 8 destinations x 3 Perl-framed messages: per destination 2 pass at
	// once and the third is throttled to its own slot.
	var specs []string
	for i := 1; i <= 8; i++ {
		specs = append(specs, fmt.Sprintf("p%d:3", i))
	}
	out, err := exec.Command("perl", append([]string{filepath.Join("testdata", "mvalve_frame.pl")}, specs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mvalve_frame.pl: %v\n%s", err, out)
	}
	type framed struct{ dest, id, blob string }
	var msgs []framed
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "MSG" || !strings.HasPrefix(f[3], "^Storable|||hex|Compress::Zlib^") {
			t.Fatalf("mvalve_frame.pl printed %q", l)
		}
		msgs = append(msgs, framed{f[1], f[2], f[3]})
	}
	// Insert seq 1 of every destination, then seq 2, then seq 3.
	order := make([]framed, 0, len(msgs))
	for seq := 0; seq < 3; seq++ {
		for d := 0; d < 8; d++ {
			order = append(order, msgs[d*3+seq])
		}
	}

	p := s.startPerl(t, "mysql", "mvalve_reader.pl", strconv.Itoa(len(order)))
	p.waitLine(t, time.Minute, "READY")
	if _, ok := s.logs.waitFor(time.Minute, func(l string) bool {
		return strings.Contains(l, `"msg":"statement"`) && strings.Contains(l, `q_timed:ready<`) && strings.Contains(l, `'q_incoming','60')`)
	}); !ok {
		t.Fatal("the Perl reader's queue_wait did not reach the server")
	}
	ins := s.open(t)
	start := time.Now()
	for _, m := range order {
		if _, err := ins.Exec("INSERT INTO q_incoming (destination, message) VALUES (?, ?)", m.dest, m.blob); err != nil {
			t.Fatal(err)
		}
	}
	var pdests []string
	for d := 1; d <= 8; d++ {
		pdests = append(pdests, fmt.Sprintf("p%d", d))
	}
	decided := mvDecided(t, db, pdests, 3, start)
	// Record each destination's slot (Next_release) as soon as it is
	// known: once the reader consumed the destination's first two
	// messages, until its third is released.
	slots := map[string]time.Time{}
	var slotsMu sync.Mutex
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(2 * time.Millisecond): // polling interval
			}
			rows, err := db.Query("SHOW VALVE STATUS")
			if err != nil {
				continue
			}
			recs, err := scanStrings(rows)
			if err != nil {
				continue
			}
			slotsMu.Lock()
			for _, r := range recs {
				if r[6] == "1" && r[7] != "NULL" {
					if tm, err := time.ParseInLocation(mvStamp, r[7], time.Local); err == nil {
						slots[r[1]] = tm
					}
				}
			}
			slotsMu.Unlock()
		}
	}()

	arrivals := map[string]time.Time{} // by message id
	tables := map[string]string{}
	dests := map[string]string{}
	var seen []string
	deadline := time.After(60 * time.Second)
	for done := false; !done; {
		select {
		case l, ok := <-p.lines:
			if !ok {
				t.Fatalf("mvalve_reader.pl exited early; output %q; stderr:\n%s", seen, p.stderr)
			}
			seen = append(seen, l)
			switch f := strings.Fields(l); {
			case l == "DONE":
				done = true
			case len(f) == 6 && f[0] == "GOT":
				sec, err := strconv.ParseFloat(f[3], 64)
				if err != nil {
					t.Fatalf("bad line %q", l)
				}
				if _, dup := arrivals[f[5]]; dup {
					t.Errorf("message %s received twice", f[5])
				}
				arrivals[f[5]] = time.Unix(0, int64(sec*1e9))
				tables[f[5]], dests[f[5]] = f[2], f[4]
			case l == "TIMEOUT":
			default:
				t.Errorf("unexpected line from mvalve_reader.pl: %q", l)
			}
		case <-deadline:
			t.Fatalf("mvalve_reader.pl did not finish; output %q; stderr:\n%s", seen, p.stderr)
		}
	}
	close(stopPoll)
	<-polled
	var deltas []time.Duration
	for d := 0; d < 8; d++ {
		var ats []time.Time
		for seq := 0; seq < 3; seq++ {
			m := msgs[d*3+seq]
			at, ok := arrivals[m.id]
			if !ok {
				t.Errorf("%s message %d (%s) not received (or not decoded) by the Perl reader", m.dest, seq+1, m.id)
				continue
			}
			ats = append(ats, at)
			if tables[m.id] != "q_timed" || dests[m.id] != m.dest {
				t.Errorf("%s message %d came from %s for %s", m.dest, seq+1, tables[m.id], dests[m.id])
			}
		}
		if len(ats) != 3 {
			continue
		}
		dest := msgs[d*3].dest
		if !ats[0].Before(ats[1]) || !ats[1].Before(ats[2]) {
			t.Errorf("%s: arrivals out of order: %v", dest, ats)
		}
		// The Perl clock prints microseconds: allow 1 µs of rounding.
		if gap := ats[2].Sub(ats[0]); gap <= mvInterval-time.Microsecond {
			t.Errorf("%s: 3 messages within %v (limit 2 per %v)", dest, gap, mvInterval)
		}
		if slot, ok := slots[dest]; ok {
			delta := ats[2].Sub(slot)
			deltas = append(deltas, delta)
			if delta < -time.Microsecond {
				t.Errorf("%s: throttled message arrived %v before its slot %s", dest, -delta, slot.Format(mvStamp))
			}
		}
	}
	slices.Sort(deltas)
	if len(deltas) > 0 {
		t.Logf("Perl reader: arrival - slot over %d throttled messages (slots seen): min %v, median %v, max %v",
			len(deltas), deltas[0].Round(10*time.Microsecond), deltas[len(deltas)/2].Round(10*time.Microsecond), deltas[len(deltas)-1].Round(10*time.Microsecond))
	}
	st := mvValveStatus(t, db)
	for _, d := range pdests {
		mvWantSplit(t, st, d, 2, 1, decided)
	}
}

// TestValveDefaultFlag: --valve alone runs a valve with Mvalve's defaults
// (tables q_emerg, q_timed, q_incoming, q_statslog in database test; 10
// messages per 20 s), which is the only consumer of q_incoming.
func TestValveDefaultFlag(t *testing.T) {
	s := startServer(t, "--valve", "--log-level", "debug")
	if _, ok := s.logs.waitFor(time.Minute, func(l string) bool {
		return strings.Contains(l, `"msg":"valve started"`) && strings.Contains(l, `"max_items":10`) && strings.Contains(l, `"interval":20`)
	}); !ok {
		t.Fatalf("no valve started with max_items 10, interval 20; log:\n%s", s.logs)
	}
	mvCreateTables(t, s)
	db := s.open(t)
	// A connection waiting on q_incoming alone never gets its rows.
	other := s.conn(t)
	type res struct {
		idx int64
		err error
	}
	waited := make(chan res, 1)
	go func() {
		var r res
		r.err = other.QueryRowContext(context.Background(), "SELECT queue_wait('q_incoming', 2)").Scan(&r.idx)
		waited <- r
	}()
	if _, ok := s.logs.waitFor(time.Minute, func(l string) bool {
		return strings.Contains(l, `"msg":"statement"`) && strings.Contains(l, `queue_wait('q_incoming', 2)`)
	}); !ok {
		t.Fatal("the other connection's queue_wait did not reach the server")
	}
	msgs := mvMessages([]string{"test"}, 11)
	s.mvInserter(t).mustInsert(t, "q_incoming", msgs...)
	eventually(t, time.Minute, "the valve to decide on 11 messages", func() bool {
		st := mvValveStatus(t, db)["test"]
		return st.admitted+st.throttled == 11
	})
	st := mvValveStatus(t, db)
	mvWantStatus(t, st, "test", 10, 1, 0, 0, 1)
	// The 10 released rows are not consumed: the 11th waits for them.
	if nr := st["test"].nextRelease; !nr.IsZero() {
		t.Errorf("Next_release %s while the 10 released rows are unconsumed, want NULL", nr.Format(mvStamp))
	}
	if st["test"].bucketFill != "10/10" {
		t.Errorf("Bucket_fill %q, want 10/10", st["test"].bucketFill)
	}
	if n := mvCount(t, db, "SELECT COUNT(*) FROM q_timed"); n != 10 {
		t.Errorf("q_timed has %d rows, want the 10 admitted", n)
	}
	if n := mvCount(t, db, "SELECT COUNT(*) FROM q_incoming"); n != 0 {
		t.Errorf("q_incoming has %d rows, want 0", n)
	}
	if n := mvCount(t, db, "SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle' AND destination = 'test'"); n != 1 {
		t.Errorf("q_statslog: %d throttle rows, want 1", n)
	}
	r := <-waited
	if r.err != nil || r.idx != 0 {
		t.Errorf("queue_wait('q_incoming', 2) on another connection = %d, %v; want 0 (the valve owns q_incoming)", r.idx, r.err)
	}
	// The 10 admitted ones are in q_timed with ready = 0, in order.
	col := &mvCollector{}
	pool := s.mvConsume(t, col, 1)
	eventually(t, time.Minute, "the 10 admitted messages", func() bool { return col.has(msgs[:10]) })
	pool.stop()
	if errs := pool.errors(); len(errs) > 0 {
		t.Errorf("consumer errors: %v", errs)
	}
	mvCheckDelivery(t, col.snapshot(), msgs[:10], nil)
}
