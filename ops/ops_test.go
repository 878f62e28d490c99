package ops_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	dto "github.com/prometheus/client_model/go"

	"github.com/q4mproxy/q4mproxy/internal/metricstest"
	"github.com/q4mproxy/q4mproxy/ops"
	"github.com/q4mproxy/q4mproxy/queue"
)

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

	if code, body := metricstest.Get(t, hs.URL+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz before start: %d %s", code, body)
	}
	if code, body := metricstest.Get(t, hs.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
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

	code, body := metricstest.Get(t, hs.URL+"/readyz")
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
	var mf metricstest.Metrics
	for {
		mf = metricstest.Scrape(t, hs.URL)
		if v, _ := mf.Value("q4mproxy_queue_waiters", "table", "empty"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the blocked queue_wait never showed in q4mproxy_queue_waiters")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	jl := []string{"db", "test", "table", "jobs"}
	mf.Want(t, 3, "q4mproxy_queue_rows", jl...)
	mf.Want(t, 1, "q4mproxy_queue_owned_rows", jl...)
	mf.Want(t, 0, "q4mproxy_queue_waiters", jl...)
	mf.Want(t, 3, "q4mproxy_queue_rows_inserted_total", jl...)
	mf.Want(t, 0, "q4mproxy_queue_rows_consumed_total", jl...)
	mf.Want(t, 1, "q4mproxy_queue_rows_aborted_total", jl...)
	mf.Want(t, 0, "q4mproxy_queue_rows_restored_total", jl...)
	mf.Want(t, 6, "q4mproxy_queue_bytes", jl...)
	mf.Want(t, 2, "q4mproxy_queue_waits_total", "table", "jobs", "result", "immediate")
	mf.Want(t, 0, "q4mproxy_queue_rows", "table", "empty")
	mf.Want(t, 2, "q4mproxy_queue_wait_duration_seconds", "result", "row")
	if age, ok := mf.Value("q4mproxy_queue_oldest_row_age_seconds", jl...); !ok || age < 0 || age > 60 {
		t.Errorf("oldest row age %v, %v", age, ok)
	}
	// CREATE TABLE twice, INSERT: at least three commits, each synced.
	for _, name := range []string{"q4mproxy_commit_batch_ops", "q4mproxy_commit_sync_duration_seconds", "q4mproxy_commits_total", "q4mproxy_pebble_wal_fsync_duration_seconds"} {
		if v, ok := mf.Value(name); !ok || v < 3 {
			t.Errorf("%s = %v, %v; want >= 3", name, v, ok)
		}
	}
	for _, name := range []string{"q4mproxy_pebble_disk_usage_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if v, ok := mf.Value(name); !ok || v <= 0 {
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
	mf = metricstest.Scrape(t, hs.URL)
	mf.Want(t, 1, "q4mproxy_queue_rows_consumed_total", jl...)
	mf.Want(t, 2, "q4mproxy_queue_rows", jl...)
	mf.Want(t, 1, "q4mproxy_queue_owned_rows", "table", "empty")
	mf.Want(t, 0, "q4mproxy_queue_waiters", "table", "empty")
	mf.Want(t, 1, "q4mproxy_queue_waits_total", "table", "empty", "result", "delayed")
	mf.Want(t, 3, "q4mproxy_queue_wait_duration_seconds", "result", "row")

	code, body = metricstest.Get(t, hs.URL+"/api/status")
	if code != http.StatusOK || !strings.Contains(body, `"table":"jobs","rows":2`) {
		t.Errorf("/api/status: %d %s", code, body)
	}
	code, body = metricstest.Get(t, hs.URL+"/")
	if code != http.StatusOK || !strings.Contains(body, "<title>q4mproxy status</title>") {
		t.Errorf("/: %d %.200s", code, body)
	}

	up.Close()
	if code, body := metricstest.Get(t, hs.URL+"/readyz"); code != http.StatusOK || !strings.Contains(body, "unreachable") {
		t.Errorf("/readyz with the upstream down: %d %q", code, body)
	}
	s.SetStopping()
	if code, body := metricstest.Get(t, hs.URL+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Errorf("/readyz while stopping: %d %q", code, body)
	}
	if code, _ := metricstest.Get(t, hs.URL+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz while stopping: %d", code)
	}
}
