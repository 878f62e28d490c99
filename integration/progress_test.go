package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestRecoveryProgressLog: a server restarted on a backlog logs the
// progress of loading it ("recovering the store" with the rows so far and
// their rate), then serves the backlog in order. --progress-interval 1ns
// makes every check (each 4096 rows) log, so a small backlog shows it.
func TestRecoveryProgressLog(t *testing.T) {
	const rows = 12000
	s := startServer(t, "--progress-interval", "1ns")
	db := s.open(t)
	if _, err := db.ExecContext(t.Context(), "CREATE TABLE backlog (v INT NOT NULL) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rows; i += 1000 {
		var vals []string
		for j := i; j < i+1000; j++ {
			vals = append(vals, fmt.Sprintf("(%d)", j))
		}
		if _, err := db.ExecContext(t.Context(), "INSERT INTO backlog (v) VALUES "+strings.Join(vals, ",")); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	s.restart()

	var last map[string]any
	n := 0
	for _, l := range strings.Split(s.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == "recovering the store" {
			n++
			last = rec
		}
	}
	if want := rows / 4096; n != want {
		t.Fatalf("%d progress lines at the restart, want %d; log:\n%s", n, want, s.logs)
	}
	if last["rows"] != float64(rows/4096*4096) || last["tables"] != "0/1" {
		t.Errorf("last progress line: %v, want rows=%d tables=0/1", last, rows/4096*4096)
	}
	if _, ok := last["rows_per_s"].(float64); !ok {
		t.Errorf("no rate in %v", last)
	}
	opened, ok := s.logs.waitFor(time.Second, func(l string) bool { return strings.Contains(l, `"msg":"store opened"`) })
	if !ok || !strings.Contains(opened, fmt.Sprintf(`"rows":%d`, rows)) {
		t.Errorf("store opened line %q, want rows=%d", opened, rows)
	}
	c := s.conn(t)
	var got int
	if err := c.QueryRowContext(t.Context(), "SELECT queue_wait('backlog', 1)").Scan(&got); err != nil || got != 1 {
		t.Fatalf("queue_wait after the restart: %d, %v", got, err)
	}
	var v int
	if err := c.QueryRowContext(t.Context(), "SELECT v FROM backlog").Scan(&v); err != nil || v != 0 {
		t.Errorf("first row after the restart: %d, %v; want 0", v, err)
	}
}
