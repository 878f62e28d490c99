package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/q4mproxy/q4mproxy/internal/metricstest"
)

// The operations listener (--http-listen) of the real binary: /metricstest.Metrics
// scraped with net/http and parsed as Prometheus parses it, the probes,
// and the status page loaded in headless Chromium.

// httpBase returns the base URL of s's operations listener, from its log.
func (s *server) httpBase(t testing.TB) string {
	t.Helper()
	line, ok := s.logs.waitFor(time.Minute, func(l string) bool { return strings.Contains(l, `"msg":"http listening"`) })
	if !ok {
		t.Fatalf("q4mproxy did not report its HTTP listener; log:\n%s", s.logs)
	}
	var rec struct{ Addr string }
	if err := json.Unmarshal([]byte(line), &rec); err != nil || rec.Addr == "" {
		t.Fatalf("bad http listening line %q: %v", line, err)
	}
	return "http://" + rec.Addr
}

// TestMetricsEndpoint drives q4mproxy with go-sql-driver/mysql and reads
// the effects back from /metrics: depth, owned rows, a consumer blocked in
// queue_wait, the totals, the histograms, statements and errors by code;
// and the probes.
func TestMetricsEndpoint(t *testing.T) {
	s := startServer(t, "--http-listen", "127.0.0.1:0")
	base := s.httpBase(t)
	if code, body := metricstest.Get(t, base+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	code, body := metricstest.Get(t, base+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "store: open") {
		t.Fatalf("/readyz: %d %q", code, body)
	}
	if os.Getenv("Q4MPROXY_TEST_UPSTREAM") == "1" && !strings.Contains(body, ": reachable") {
		t.Errorf("/readyz with --upstream does not say the upstream is reachable: %q", body)
	}

	m := driverModes[1]
	admin := newGConn(t, s, m)
	admin.exec("CREATE TABLE mjobs (v INT) ENGINE=queue")
	admin.exec("CREATE TABLE mempty (v INT) ENGINE=queue")
	admin.exec("INSERT INTO mjobs VALUES (1), (2), (3)")
	admin.exec("INSERT INTO mjobs VALUES (4)")
	if _, err := admin.execErr("SELECT * FROM no_such_table"); err == nil {
		t.Fatal("no error selecting from a missing table")
	}
	consumer := newGConn(t, s, m)
	consumer.wantValue("1", "SELECT queue_wait('mjobs', 5)")
	consumer.wantValue("1", "SELECT queue_abort()")
	consumer.wantValue("1", "SELECT queue_wait('mjobs', 5)")
	consumer.wantValue("1", "SELECT queue_wait('mjobs', 5)") // consumes the first

	waiter := newGConn(t, s, m)
	done := make(chan error, 1)
	go func() {
		_, err := waiter.c.ExecContext(context.Background(), "SELECT queue_wait('mempty', 60)")
		done <- err
	}()
	var mf metricstest.Metrics
	jl := []string{"db", "test", "table", "mjobs"}
	eventually(t, time.Minute, "the blocked queue_wait in q4mproxy_queue_waiters", func() bool {
		mf = metricstest.Scrape(t, base)
		v, _ := mf.Value("q4mproxy_queue_waiters", "table", "mempty")
		rows, _ := mf.Value("q4mproxy_queue_rows", jl...) // the upstream store's count: up to a second old
		return v == 1 && rows == 3
	})
	mf.Want(t, 3, "q4mproxy_queue_rows", jl...)
	mf.Want(t, 1, "q4mproxy_queue_owned_rows", jl...)
	mf.Want(t, 4, "q4mproxy_queue_rows_inserted_total", jl...)
	mf.Want(t, 1, "q4mproxy_queue_rows_consumed_total", jl...)
	mf.Want(t, 1, "q4mproxy_queue_rows_aborted_total", jl...)
	mf.Want(t, 0, "q4mproxy_queue_rows", "table", "mempty")
	mf.Want(t, 3, "q4mproxy_queue_wait_duration_seconds", "result", "row")
	mf.Want(t, 3, "q4mproxy_queue_waits_total", "table", "mjobs", "result", "immediate")
	mf.Want(t, 3, "q4mproxy_connections")
	mf.Want(t, 1, "q4mproxy_errors_total", "code", "1146")
	if v, ok := mf.Value("q4mproxy_statements_total", "kind", "insert"); !ok || v < 2 {
		t.Errorf("q4mproxy_statements_total{kind=insert} = %v, %v; want >= 2", v, ok)
	}
	if v, ok := mf.Value("q4mproxy_queue_oldest_row_age_seconds", jl...); !ok || v < 0 || v > 600 {
		t.Errorf("oldest row age %v, %v", v, ok)
	}
	positive := []string{"q4mproxy_connections_total", "go_goroutines", "process_open_fds"}
	if os.Getenv("Q4MPROXY_TEST_QUEUE_STORE") != "upstream" { // Pebble's and its group commit's
		positive = append(positive, "q4mproxy_commit_batch_ops", "q4mproxy_commit_sync_duration_seconds",
			"q4mproxy_pebble_wal_fsync_duration_seconds", "q4mproxy_pebble_disk_usage_bytes")
	}
	for _, name := range positive {
		if v, ok := mf.Value(name); !ok || v <= 0 {
			t.Errorf("%s = %v, %v; want > 0", name, v, ok)
		}
	}

	// A row for the waiter: it gets it, and the gauges follow.
	admin.exec("INSERT INTO mempty VALUES (9)")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	mf = metricstest.Scrape(t, base)
	mf.Want(t, 0, "q4mproxy_queue_waiters", "table", "mempty")
	mf.Want(t, 1, "q4mproxy_queue_owned_rows", "table", "mempty")
	mf.Want(t, 1, "q4mproxy_queue_waits_total", "table", "mempty", "result", "delayed")
}

// chromium returns the path of Debian's chromium, skipping the test (or
// failing it under Q4MPROXY_REQUIRE_CLIENTS=1) when it is missing.
func chromium(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("chromium")
	if err == nil {
		return p
	}
	msg := "chromium is not available (install: apt-get install chromium; or run ./test.sh)"
	if os.Getenv("Q4MPROXY_REQUIRE_CLIENTS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// browser starts headless Chromium and returns a context driving one tab.
// If the test fails, a screenshot of the tab is written to a temporary
// directory that is kept, and its path logged.
func browser(t *testing.T) context.Context {
	t.Helper()
	path := chromium(t)
	profile, err := os.MkdirTemp("", "q4mproxy-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(profile) })
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(1300, 900),
	)
	t.Cleanup(cancelAlloc)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("starting chromium: %v", err)
	}
	t.Cleanup(func() { // runs before the cancels above
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "q4mproxy-status-page-")
		if err != nil {
			t.Log(err)
			return
		}
		sctx, scancel := context.WithTimeout(ctx, 20*time.Second)
		defer scancel()
		png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("no screenshot: %v", err)
			return
		}
		f := filepath.Join(dir, "status-page.png")
		if err := os.WriteFile(f, png, 0o644); err == nil {
			t.Logf("screenshot of the status page at failure: %s", f)
		}
	})
	return ctx
}

// pollJS waits until the JavaScript expression is true in the page.
func pollJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	ok, err := chromedp.Run(pctx, chromedp.Poll[bool](expr,
		chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(time.Minute)))
	if err != nil || !ok {
		tctx, tcancel := context.WithTimeout(ctx, 5*time.Second)
		defer tcancel()
		text, _ := chromedp.Run(tctx, chromedp.Evaluate[string](`document.body.innerText`))
		t.Fatalf("the page never showed %s (%v); it shows:\n%s", what, err, text)
	}
}

// cellText is a JS expression: the trimmed text of the first element
// matching the CSS selector, or "".
func cellText(selector string) string {
	return fmt.Sprintf(`((document.querySelector(%q) || {}).textContent || "").trim()`, selector)
}

// TestStatusPageBrowser loads the status page in headless Chromium: the
// queue's row shows its depth, which follows an INSERT without a reload;
// the processlist shows a consumer waiting in queue_wait; the charts are
// drawn.
func TestStatusPageBrowser(t *testing.T) {
	ctx := browser(t)
	s := startServer(t, "--http-listen", "127.0.0.1:0")
	base := s.httpBase(t)
	m := driverModes[1]
	admin := newGConn(t, s, m)
	admin.exec("CREATE TABLE pjobs (v INT) ENGINE=queue")
	admin.exec("CREATE TABLE pidle (v INT) ENGINE=queue")
	admin.exec("INSERT INTO pjobs VALUES (1), (2), (3)")

	nctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(nctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatalf("loading %s/: %v", base, err)
	}
	depth := cellText(`tr[data-queue="test.pjobs"] td.depth`)
	pollJS(t, ctx, "test.pjobs with depth 3", depth+` === "3"`)
	pollJS(t, ctx, "the ready badge", cellText("#state")+` === "ready"`)
	// The page must update itself: mark this document, insert, and see the
	// new depth in the same document.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.q4mMark = 42`)); err != nil {
		t.Fatal(err)
	}
	admin.exec("INSERT INTO pjobs VALUES (4), (5)")
	pollJS(t, ctx, "test.pjobs with depth 5 after the INSERT", depth+` === "5"`)
	if mark, err := chromedp.Run(ctx, chromedp.Evaluate[int](`window.q4mMark || 0`)); err != nil || mark != 42 {
		t.Fatalf("the page was reloaded (mark %d, %v): it must refresh by itself", mark, err)
	}

	// A consumer blocked in queue_wait shows in the processlist.
	waiter := newGConn(t, s, m)
	waiterID := waiter.value("SELECT CONNECTION_ID()")
	done := make(chan error, 1)
	go func() {
		// Longer than the page checks made while it waits can take.
		_, err := waiter.c.ExecContext(context.Background(), "SELECT queue_wait('pidle', 600)")
		done <- err
	}()
	row := fmt.Sprintf(`#conn-table tr[data-conn="%s"]`, waiterID)
	pollJS(t, ctx, "the waiting consumer in the processlist",
		cellText(row+" td.state")+` === "Waiting in queue_wait" && `+cellText(row+" td.info")+` === "SELECT queue_wait('pidle', 600)"`)
	pollJS(t, ctx, "one waiter on test.pidle", cellText(`tr[data-queue="test.pidle"] td.waiters`)+` === "1"`)

	// The charts: an SVG per queue for the depth and one for the rates,
	// with a line drawn once samples exist.
	pollJS(t, ctx, "the depth chart of test.pjobs with its line",
		`document.querySelectorAll('tr[data-queue="test.pjobs"] svg.chart.depth path').length > 0 && `+
			`document.querySelectorAll('tr[data-queue="test.pjobs"] svg.chart.rates').length === 1`)

	admin.exec("INSERT INTO pidle VALUES (1)")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, "test.pidle with no waiter and its row owned",
		cellText(`tr[data-queue="test.pidle"] td.waiters`)+` === "0" && `+cellText(`tr[data-queue="test.pidle"] td.owned`)+` === "1"`)
}

// TestStatusPageScreenshot writes the screenshot of the status page shown
// in README.md, taken from a run with a few queues under a little load:
//
//	Q4MPROXY_STATUS_SCREENSHOT=$PWD/docs/status-page.png go test -run TestStatusPageScreenshot ./integration
func TestStatusPageScreenshot(t *testing.T) {
	out := os.Getenv("Q4MPROXY_STATUS_SCREENSHOT")
	if out == "" {
		t.Skip("set Q4MPROXY_STATUS_SCREENSHOT=file.png to take the README's screenshot")
	}
	ctx := browser(t)
	// A valve too, throttling to 2 messages a second per destination.
	s := mvStartValve(t, mvRateConfig, "--http-listen", "127.0.0.1:0")
	base := s.httpBase(t)
	m := driverModes[1]
	admin := newGConn(t, s, m)
	for _, q := range []string{"orders", "emails", "thumbnails"} {
		admin.exec("CREATE TABLE " + q + " (id INT, body VARCHAR(255)) ENGINE=queue")
	}
	lctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	// Producers at different paces; consumers that keep up with orders,
	// fall behind on emails and are absent for thumbnails.
	produce := func(table string, every time.Duration, n int) {
		defer wg.Done()
		c := newGConn(t, s, m)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			vals := make([]string, n)
			for j := range vals {
				vals[j] = fmt.Sprintf("(%d, 'job %d')", i*n+j, i*n+j)
			}
			_, _ = c.c.ExecContext(lctx, "INSERT INTO "+table+" VALUES "+strings.Join(vals, ","))
		}
	}
	consume := func(table string, pause time.Duration) {
		defer wg.Done()
		c := newGConn(t, s, m)
		for lctx.Err() == nil {
			if _, err := c.c.ExecContext(lctx, "SELECT queue_wait('"+table+"', 1)"); err != nil {
				return
			}
			select {
			case <-lctx.Done():
			case <-time.After(pause): // simulated work
			}
		}
	}
	// Messages for three destinations, one over the valve's limit; a
	// reader takes what the valve releases.
	send := func(dest string, every time.Duration) {
		defer wg.Done()
		c := newGConn(t, s, m)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
			}
			_, _ = c.c.ExecContext(lctx, "INSERT INTO q_incoming (destination, message) VALUES (?, 'hello')", dest)
		}
	}
	wg.Add(10)
	go send("mail.example.com", 300*time.Millisecond)
	go send("sms.example.com", time.Second)
	go send("push.example.com", 600*time.Millisecond)
	go consume("q_timed", 0)
	go produce("orders", 100*time.Millisecond, 2)
	go produce("emails", 200*time.Millisecond, 3)
	go produce("thumbnails", time.Second, 1)
	go consume("orders", 20*time.Millisecond)
	go consume("orders", 20*time.Millisecond)
	go consume("emails", 100*time.Millisecond)
	defer func() { stop(); wg.Wait() }()

	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/")); err != nil {
		t.Fatal(err)
	}
	pollJS(t, ctx, "seven queues", `document.querySelectorAll('tr[data-queue]').length === 7`)
	// A minute of load for the charts.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(time.Second) // letting the load run; nothing to synchronise with
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(out, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", out, len(png))
}

// TestValveMetrics checks a valve's destinations in /metrics and in the
// status page's JSON: 5 messages for one destination with no reader, a
// limit of 2 per second: 2 admitted (in flight, counting against the
// window), 3 throttled and waiting.
func TestValveMetrics(t *testing.T) {
	s := mvStartValve(t, mvRateConfig, "--http-listen", "127.0.0.1:0")
	base := s.httpBase(t)
	s.mvInserter(t).mustInsert(t, "q_incoming", mvMessages([]string{"alpha"}, 5)...)
	vl := []string{"valve", "mvalve", "destination", "alpha"}
	var mf metricstest.Metrics
	// The counters move as the valve decides, the tables as its writes
	// commit: wait for both (through an upstream the commits come later,
	// and the upstream store's row counts are up to a second old).
	eventually(t, time.Minute, "the valve to take the 5 messages into q_timed and its backlog", func() bool {
		mf = metricstest.Scrape(t, base)
		a, _ := mf.Value("q4mproxy_valve_messages_total", append(vl, "action", "admitted")...)
		th, _ := mf.Value("q4mproxy_valve_messages_total", append(vl, "action", "throttled")...)
		in, _ := mf.Value("q4mproxy_queue_rows", "table", "q_incoming")
		tm, _ := mf.Value("q4mproxy_queue_rows", "table", "q_timed")
		return a+th == 5 && in == 0 && tm == 2
	})
	mf.Want(t, 2, "q4mproxy_valve_messages_total", append(vl, "action", "admitted")...)
	mf.Want(t, 3, "q4mproxy_valve_messages_total", append(vl, "action", "throttled")...)
	mf.Want(t, 0, "q4mproxy_valve_messages_total", append(vl, "action", "released")...)
	mf.Want(t, 3, "q4mproxy_valve_waiting", vl...)
	mf.Want(t, 2, "q4mproxy_valve_window", vl...)
	mf.Want(t, 2, "q4mproxy_valve_window_limit", vl...)
	mf.Want(t, 2, "q4mproxy_queue_rows", "table", "q_timed")
	mf.Want(t, 0, "q4mproxy_queue_rows", "table", "q_incoming")

	code, body := metricstest.Get(t, base+"/api/status")
	var st struct {
		Valves []struct {
			Valve, Destination     string
			Admitted, Throttled    uint64
			Waiting, Window, Limit int
		}
		Tables []struct {
			Table    string
			Reserved bool
		}
	}
	if err := json.Unmarshal([]byte(body), &st); code != http.StatusOK || err != nil {
		t.Fatalf("/api/status: %d %v %s", code, err, body)
	}
	if len(st.Valves) != 1 || st.Valves[0].Destination != "alpha" || st.Valves[0].Admitted != 2 ||
		st.Valves[0].Throttled != 3 || st.Valves[0].Waiting != 3 || st.Valves[0].Window != 2 || st.Valves[0].Limit != 2 {
		t.Errorf("/api/status valves: %+v", st.Valves)
	}
	for _, tb := range st.Tables {
		if want := tb.Table == "q_incoming"; tb.Reserved != want {
			t.Errorf("table %s: reserved %v, want %v (the valve's normal table)", tb.Table, tb.Reserved, want)
		}
	}
}
