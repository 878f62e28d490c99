package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Medians over rounds, and the targets table from the runs it names.
func TestLoadAndTargets(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "mixed16.q4mproxy.r1.json", `{"consume":"where-wait","messages":100,"messages_per_second":1000,"latency_ms":{"insert":{"p50":1,"p99":2}}}`)
	writeFile(t, dir, "mixed16.q4mproxy.r2.json", `{"consume":"where-wait","messages":100,"messages_per_second":3000,"latency_ms":{"insert":{"p50":3,"p99":4}}}`)
	writeFile(t, dir, "mixed16.q4mproxy.r3.json", `{"consume":"where-wait","messages":100,"messages_per_second":2000,"latency_ms":{"insert":{"p50":2,"p99":9}},"missing":1}`)
	writeFile(t, dir, "mixed16.mariadb.r1.json", `{"messages":100,"messages_per_second":100}`)
	writeFile(t, dir, "mixed1.q4mproxy.r1.json", `{"messages":10,"messages_per_second":10,"latency_ms":{"insert":{"p50":0.3,"p99":1}}}`)
	writeFile(t, dir, "mixed16-nosync.q4mproxy.r1.json", `{"messages":100,"messages_per_second":2500}`)
	writeFile(t, dir, "wake.q4mproxy.r1.json", `{"messages":10,"messages_per_second":1,"latency_ms":{"wake":{"p50":0.01,"p99":2.5}}}`)
	writeFile(t, dir, "backlog-small.q4mproxy.r1.json", `{"messages":10,"messages_per_second":1000}`)
	writeFile(t, dir, "backlog-large.q4mproxy.r1.json", `{"messages":10,"messages_per_second":900}`)
	writeFile(t, dir, "fsync.json", `{"append_p50_ms":0.2,"overwrite_p50_ms":0.1}`)
	writeFile(t, dir, "backlog.json", `{"rss_kb":102400,"restart_ms":6000,"rows_after_restart":5}`)

	a, err := load(dir, "mixed16", "q4mproxy")
	if err != nil {
		t.Fatal(err)
	}
	if a.n != 3 || a.rate != 2000 || a.lat["insert"] != [2]float64{2, 4} || a.bad != 1 {
		t.Fatalf("median over rounds: %+v", a)
	}
	if a, err := load(dir, "drain16", "q4mproxy"); a != nil || err != nil {
		t.Fatalf("no files: %v %v", a, err)
	}
	m, _ := load(dir, "mixed16", "mariadb")
	one, _ := load(dir, "mixed1", "q4mproxy")
	nosync, _ := load(dir, "mixed16-nosync", "q4mproxy")
	var out strings.Builder
	if err := writeTargets(&out, dir, row{q: a, m: m, ratio: a.rate / m.rate}, one, nosync); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| mixed 16P+16C vs MariaDB | ≥ 20× | 20.0× | yes |",
		"| durable vs --sync off (mixed 16P+16C) | ≥ 0.70 | 0.80 | yes |",
		"| 1P+1C insert p50 / fsync p50 | ≤ 1.5× | 0.30 ms / 0.200 ms = 1.5× (overwriting fsync 0.100 ms: 3.0×) | yes |",
		"0.010 ms) | no |", // wake p99 2.5 ms
		"900 / 1000 msg/s = 0.90 | yes |",
		"| RSS with the 1,000,000 backlog | ≤ 300 MB | 100 MB | yes |",
		"6.00 s, 5 rows | no |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("targets lack %q:\n%s", want, out.String())
		}
	}
}
