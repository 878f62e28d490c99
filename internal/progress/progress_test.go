package progress

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func records(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if l == "" {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		out = append(out, rec)
	}
	return out
}

// TestMeter: a line per stride when the interval is shorter than a step,
// with the count, the rate, and with a total the percentage and the time
// left; none with a negative interval or before the interval passes.
func TestMeter(t *testing.T) {
	var b bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&b, nil))
	m := New(log, Config{Msg: "copying", Unit: "rows", Total: 100, Interval: time.Nanosecond, Stride: 25,
		Attrs: func() []any { return []any{"phase", "one"} }})
	for range 100 {
		m.Add(1)
	}
	recs := records(t, &b)
	if len(recs) != 4 || m.Lines() != 4 || m.Count() != 100 {
		t.Fatalf("%d lines (Lines %d, Count %d), want 4: %v", len(recs), m.Lines(), m.Count(), recs)
	}
	for i, r := range recs {
		if r["msg"] != "copying" || r["rows"] != float64(25*(i+1)) || r["percent"] != float64(25*(i+1)) || r["total"] != float64(100) || r["phase"] != "one" {
			t.Errorf("line %d: %v", i, r)
		}
		if _, ok := r["rows_per_s"].(float64); !ok {
			t.Errorf("line %d has no rate: %v", i, r)
		}
	}
	if _, ok := recs[0]["eta"]; !ok {
		t.Errorf("no eta with a total: %v", recs[0])
	}
	if _, ok := recs[3]["eta"]; ok {
		t.Errorf("an eta once done: %v", recs[3])
	}

	b.Reset()
	m = New(log, Config{Msg: "never", Unit: "rows", Interval: -1})
	m.Add(1 << 20)
	m = New(log, Config{Msg: "later", Unit: "rows", Interval: time.Hour})
	m.Add(1 << 20)
	if b.Len() != 0 {
		t.Errorf("logged: %s", b.String())
	}
}

func TestRate(t *testing.T) {
	for _, c := range []struct {
		n    int64
		d    time.Duration
		want float64
	}{{10, time.Second, 10}, {1, 3 * time.Second, 0.3}, {5, 0, 0}} {
		if got := Rate(c.n, c.d); got != c.want {
			t.Errorf("Rate(%d, %v) = %v, want %v", c.n, c.d, got, c.want)
		}
	}
}
