package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// benchBin is cmd/q4mbench, built (with the race detector when the tests
// have it) on first use.
var benchBin = sync.OnceValues(func() (string, error) {
	p := binPath + "-q4mbench"
	args := []string{"build", "-o", p}
	if raceEnabled {
		args = append(args, "-race")
	}
	out, err := exec.Command("go", append(args, "../cmd/q4mbench")...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("building q4mbench: %v\n%s", err, out)
	}
	return p, nil
})

// benchResult is the part of q4mbench's JSON the tests check.
type benchResult struct {
	Phase      string  `json:"phase"`
	Consume    string  `json:"consume"`
	Messages   int     `json:"messages"`
	Backlog    int     `json:"backlog"`
	PerSecond  float64 `json:"messages_per_second"`
	Errors     int64   `json:"errors"`
	Duplicates int     `json:"duplicates"`
	Missing    int     `json:"missing"`
	Latency    map[string]struct {
		Count int     `json:"count"`
		P50   float64 `json:"p50"`
		P99   float64 `json:"p99"`
	} `json:"latency_ms"`
}

func runBench(t *testing.T, s *server, args ...string) benchResult {
	t.Helper()
	bin, err := benchBin()
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "result.json")
	cmd := exec.Command(bin, append([]string{"--dsn", s.dsn("test"), "--progress", "0", "--verify", "--json", out}, args...)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("q4mbench %s: %v\n%s", strings.Join(args, " "), err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var r benchResult
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Errors != 0 || r.Duplicates != 0 || r.Missing != 0 {
		t.Errorf("q4mbench %s: errors %d, duplicates %d, missing %d", strings.Join(args, " "), r.Errors, r.Duplicates, r.Missing)
	}
	if r.PerSecond <= 0 {
		t.Errorf("q4mbench %s: %v messages/s", strings.Join(args, " "), r.PerSecond)
	}
	return r
}

// TestQ4mbench runs the load tool's phases and consume styles against the
// server: every message delivered exactly once, every operation timed.
func TestQ4mbench(t *testing.T) {
	s := startFastServer(t)
	db := s.open(t)
	count := func() int {
		var n int
		if err := db.QueryRow("SELECT COUNT(*) FROM q4mbench").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for _, tc := range []struct {
		args             []string
		insert, consume  int // latency samples expected
		wake, queuedLeft int
	}{
		{args: []string{"--phase", "mixed", "--consume", "where-wait", "--producers", "8", "--consumers", "8", "--messages", "1500"}, insert: 1500, consume: 1500},
		{args: []string{"--phase", "mixed", "--consume", "wait-select", "--producers", "3", "--consumers", "5", "--messages", "700"}, insert: 700, consume: 700},
		{args: []string{"--phase", "drain", "--consume", "where-wait", "--producers", "2", "--consumers", "4", "--messages", "600", "--batch", "7"}, insert: 86, consume: 600},
		{args: []string{"--phase", "insert", "--producers", "4", "--messages", "1000", "--batch", "10"}, insert: 100, queuedLeft: 1000},
		{args: []string{"--phase", "wake", "--consume", "where-wait", "--consumers", "2", "--messages", "40"}, insert: 40, consume: 40, wake: 40},
	} {
		r := runBench(t, s, tc.args...)
		if got := r.Latency["insert"].Count; got != tc.insert {
			t.Errorf("%v: %d INSERTs timed, want %d", tc.args, got, tc.insert)
		}
		if got := r.Latency["consume"].Count; got != tc.consume {
			t.Errorf("%v: %d consumes timed, want %d", tc.args, got, tc.consume)
		}
		if got := r.Latency["wake"].Count; got != tc.wake {
			t.Errorf("%v: %d wakes timed, want %d", tc.args, got, tc.wake)
		}
		if tc.queuedLeft > 0 {
			if n := count(); n != tc.queuedLeft {
				t.Errorf("%v: %d rows left in the queue, want %d", tc.args, n, tc.queuedLeft)
			}
		}
	}

	// With a backlog, the timed run consumes from behind it: as many
	// messages as the run moves, none twice, the backlog still queued.
	r := runBench(t, s, "--phase", "mixed", "--consume", "where-wait", "--producers", "4", "--consumers", "4", "--messages", "500", "--backlog", "3000")
	if r.Backlog != 3000 || r.Latency["consume"].Count != 500 || r.Latency["insert"].Count != 500 {
		t.Errorf("backlog run: %+v", r)
	}
	// Consumers in a wait when the run ends may take one more message each
	// from the backlog (not timed).
	if n := count(); n < 3000-4 || n > 3000 {
		t.Errorf("after the backlog run %d rows are queued, want 3000 (- up to 4)", n)
	}
}
