package queue

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncBuffer is a bytes.Buffer safe for the store's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) lines(msg string) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	for _, l := range strings.Split(s.b.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(l), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestRecoveryProgress: reopening a store with a backlog logs the
// recovery's progress (rows so far, their rate, tables done), and the
// counts add up to the backlog; with a negative interval it logs none.
func TestRecoveryProgress(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	const tables, perTable = 3, 7000
	for i := range tables {
		h := createTable(t, db, fmt.Sprintf("q%d", i))
		rows := make([][]byte, perTable)
		for j := range rows {
			rows[j] = []byte(fmt.Sprintf("row %d", j))
		}
		if _, err := db.Insert(h, rows); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	open := func(interval time.Duration) []map[string]any {
		t.Helper()
		var logs syncBuffer
		o := testOptions(fs)
		o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
		o.ProgressInterval = interval
		db, err := Open("db", o)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		return logs.lines("recovering the store")
	}
	// An interval shorter than any load step: a line at every check, so
	// every 4096 rows.
	lines := open(time.Nanosecond)
	if want := tables * perTable / 4096; len(lines) != want {
		t.Fatalf("%d progress lines, want %d: %v", len(lines), want, lines)
	}
	prev := 0.0
	for i, l := range lines {
		rows, _ := l["rows"].(float64)
		if rows != float64((i+1)*4096) || rows <= prev {
			t.Errorf("line %d: rows %v, want %d", i, l["rows"], (i+1)*4096)
		}
		prev = rows
		if _, ok := l["rows_per_s"].(float64); !ok {
			t.Errorf("line %d has no rate: %v", i, l)
		}
		if tb, _ := l["tables"].(string); !strings.HasSuffix(tb, fmt.Sprintf("/%d", tables)) {
			t.Errorf("line %d: tables %q, want n/%d", i, l["tables"], tables)
		}
	}
	if last := lines[len(lines)-1]["tables"]; last != "2/3" {
		t.Errorf("last line at rows %v says tables %v, want 2/3 done", lines[len(lines)-1]["rows"], last)
	}
	if lines := open(-1); len(lines) != 0 {
		t.Errorf("progress logged with a negative interval: %v", lines)
	}
}

// TestCompactLog: Compact logs what it freed ("compacted" with the table's
// estimated bytes on disk before and after, and the duration).
func TestCompactLog(t *testing.T) {
	var logs syncBuffer
	o := testOptions(vfs.NewMem())
	o.Logger = slog.New(slog.NewJSONHandler(&logs, nil))
	o.ProgressInterval = 10 * time.Millisecond
	db, err := Open("db", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := createTable(t, db, "q")
	const n = 20000
	rows := make([][]byte, n)
	ids := make([]uint64, n)
	for i := range rows {
		rows[i] = bytes.Repeat([]byte{byte(i)}, 200)
		ids[i] = uint64(i + 1)
	}
	if _, err := db.Insert(h, rows); err != nil {
		t.Fatal(err)
	}
	if err := db.pdb.Flush(); err != nil {
		t.Fatal(err)
	}
	if got, err := db.NewOwner().DeleteRows(h, ids); err != nil || got != n {
		t.Fatalf("DeleteRows: %d, %v", got, err)
	}
	if err := db.Compact(t.Context(), h); err != nil {
		t.Fatal(err)
	}
	lines := logs.lines("compacted")
	if len(lines) != 1 {
		t.Fatalf("%d compacted lines, want 1", len(lines))
	}
	l := lines[0]
	before, _ := l["bytes_before"].(float64)
	after, _ := l["bytes_after"].(float64)
	if l["table"] != "test.q" || before <= 0 || after >= before/10 {
		t.Errorf("compacted line %v: want table test.q, bytes_before > 0, bytes_after < a tenth of it", l)
	}
	if _, ok := l["duration"]; !ok {
		t.Errorf("no duration: %v", l)
	}
}
