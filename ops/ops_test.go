package ops_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/q4mproxy/q4mproxy/ops"
	"github.com/q4mproxy/q4mproxy/queue"
)

// get fetches url and returns the status code and body.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape fetches and parses /metrics.
func scrape(t *testing.T, base string) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mf, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mf
}

// value returns the value of the series of family name with the labels
// (name, value pairs); ok is false if there is none.
func value(mf map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	f := mf[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func want(t *testing.T, mf map[string]*dto.MetricFamily, v float64, name string, labels ...string) {
	t.Helper()
	got, ok := value(mf, name, labels...)
	if !ok {
		t.Errorf("%s%v: missing", name, labels)
	} else if got != v {
		t.Errorf("%s%v = %v, want %v", name, labels, got, v)
	}
}

// TestMetricsAndProbes drives the engine in process and reads it back
// through /metrics, /readyz and /api/status over HTTP.
func TestMetricsAndProbes(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0") // stands for an upstream
	if err != nil {
		t.Fatal(err)
	}
	s := ops.New(ops.Config{Version: "test", Upstream: up.Addr().String(), Logger: slog.New(slog.DiscardHandler)})
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()

	if code, body := get(t, hs.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before start: %d %s", code, body)
	}
	if code, body := get(t, hs.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Fatalf("/readyz before the store is open: %d %q", code, body)
	}

	db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), InitialDatabases: []string{"test"},
		Logger: slog.New(slog.DiscardHandler), Observer: s.Observer()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s.Attach(ops.Sources{Store: db})
	defer s.Shutdown(context.Background())

	code, body := get(t, hs.URL+"/readyz")
	if code != http.StatusOK || !strings.Contains(body, "store: open") || !strings.Contains(body, "upstream "+up.Addr().String()+": reachable") {
		t.Fatalf("/readyz once attached: %d %q", code, body)
	}

	for _, name := range []string{"jobs", "empty"} {
		if err := db.CreateTable("test", name, nil); err != nil {
			t.Fatal(err)
		}
	}
	jobs, _ := db.Table("test", "jobs")
	if _, err := db.Insert(jobs, [][]byte{[]byte("a"), []byte("bb"), []byte("ccc")}); err != nil {
		t.Fatal(err)
	}
	consumer := db.NewOwner()
	if idx, err := consumer.Wait(context.Background(), []queue.Sub{{Database: "test", Table: "jobs"}}, time.Second); err != nil || idx != 1 {
		t.Fatalf("Wait = %d, %v", idx, err)
	}
	if _, err := consumer.Abort(); err != nil {
		t.Fatal(err)
	}
	if idx, err := consumer.Wait(context.Background(), []queue.Sub{{Database: "test", Table: "jobs"}}, time.Second); err != nil || idx != 1 {
		t.Fatalf("Wait = %d, %v", idx, err)
	}
	// A consumer blocked on the empty table.
	blocked := db.NewOwner()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := blocked.Wait(ctx, []queue.Sub{{Database: "test", Table: "empty"}}, time.Minute)
		done <- err
	}()
	deadline := time.Now().Add(time.Minute)
	var mf map[string]*dto.MetricFamily
	for {
		mf = scrape(t, hs.URL)
		if v, _ := value(mf, "q4mproxy_queue_waiters", "table", "empty"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blocked queue_wait never showed in q4mproxy_queue_waiters")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	jl := []string{"db", "test", "table", "jobs"}
	want(t, mf, 3, "q4mproxy_queue_rows", jl...)
	want(t, mf, 1, "q4mproxy_queue_owned_rows", jl...)
	want(t, mf, 0, "q4mproxy_queue_waiters", jl...)
	want(t, mf, 3, "q4mproxy_queue_rows_inserted_total", jl...)
	want(t, mf, 0, "q4mproxy_queue_rows_consumed_total", jl...)
	want(t, mf, 1, "q4mproxy_queue_rows_aborted_total", jl...)
	want(t, mf, 0, "q4mproxy_queue_rows_restored_total", jl...)
	want(t, mf, 6, "q4mproxy_queue_bytes", jl...)
	want(t, mf, 2, "q4mproxy_queue_waits_total", "table", "jobs", "result", "immediate")
	want(t, mf, 0, "q4mproxy_queue_rows", "table", "empty")
	want(t, mf, 2, "q4mproxy_queue_wait_duration_seconds", "result", "row")
	if age, ok := value(mf, "q4mproxy_queue_oldest_row_age_seconds", jl...); !ok || age < 0 || age > 60 {
		t.Errorf("oldest row age %v, %v", age, ok)
	}
	// CREATE TABLE twice, INSERT: at least three commits, each synced.
	for _, name := range []string{"q4mproxy_commit_batch_ops", "q4mproxy_commit_sync_duration_seconds", "q4mproxy_commits_total", "q4mproxy_pebble_wal_fsync_duration_seconds"} {
		if v, ok := value(mf, name); !ok || v < 3 {
			t.Errorf("%s = %v, %v; want >= 3", name, v, ok)
		}
	}
	for _, name := range []string{"q4mproxy_pebble_disk_usage_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := value(mf, name); !ok || v <= 0 {
			t.Errorf("%s = %v, %v", name, v, ok)
		}
	}
	for name, f := range mf {
		if !strings.HasPrefix(name, "q4mproxy_") {
			continue
		}
		if f.GetType() == dto.MetricType_COUNTER && !strings.HasSuffix(name, "_total") {
			t.Errorf("counter %s does not end in _total", name)
		}
	}

	// Consuming the last row of "jobs" and a row for the blocked one.
	if err := consumer.End(); err != nil {
		t.Fatal(err)
	}
	empty, _ := db.Table("test", "empty")
	if _, err := db.Insert(empty, [][]byte{[]byte("x")}); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	cancel()
	mf = scrape(t, hs.URL)
	want(t, mf, 1, "q4mproxy_queue_rows_consumed_total", jl...)
	want(t, mf, 2, "q4mproxy_queue_rows", jl...)
	want(t, mf, 1, "q4mproxy_queue_owned_rows", "table", "empty")
	want(t, mf, 0, "q4mproxy_queue_waiters", "table", "empty")
	want(t, mf, 1, "q4mproxy_queue_waits_total", "table", "empty", "result", "delayed")
	want(t, mf, 3, "q4mproxy_queue_wait_duration_seconds", "result", "row")

	code, body = get(t, hs.URL+"/api/status")
	if code != http.StatusOK || !strings.Contains(body, `"table":"jobs","rows":2`) {
		t.Errorf("/api/status: %d %s", code, body)
	}
	code, body = get(t, hs.URL+"/")
	if code != http.StatusOK || !strings.Contains(body, "<title>q4mproxy status</title>") {
		t.Errorf("/: %d %.200s", code, body)
	}

	up.Close()
	if code, body := get(t, hs.URL+"/readyz"); code != http.StatusOK || !strings.Contains(body, "unreachable") {
		t.Errorf("/readyz with the upstream down: %d %q", code, body)
	}
	s.SetStopping()
	if code, body := get(t, hs.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping: %d %q", code, body)
	}
	if code, _ := get(t, hs.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while stopping: %d", code)
	}
}
