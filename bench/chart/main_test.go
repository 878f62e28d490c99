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
	writeFile(t, dir, "mixed16.q4mproxy.r1.json", `{"consume":"where-wait","messages":100,"messages_per_second":1000,"latency_ms":{"insert":{"p50":1,"p99":2}},"server_cpu_us_per_message":40}`)
	writeFile(t, dir, "mixed16.q4mproxy.r2.json", `{"consume":"where-wait","messages":100,"messages_per_second":3000,"latency_ms":{"insert":{"p50":3,"p99":4}},"server_cpu_us_per_message":20}`)
	writeFile(t, dir, "mixed16.q4mproxy.r3.json", `{"consume":"where-wait","messages":100,"messages_per_second":2000,"latency_ms":{"insert":{"p50":2,"p99":9}},"missing":1,"server_cpu_us_per_message":25}`)
	writeFile(t, dir, "mixed16.mariadb.r1.json", `{"messages":100,"messages_per_second":100}`)
	writeFile(t, dir, "mixed16.postgres.r1.json", `{"messages":100,"messages_per_second":1000,"server_cpu_us_per_message":250}`)
	writeFile(t, dir, "mixed16.rabbitmq.r1.json", `{"messages":100,"messages_per_second":500}`)
	writeFile(t, dir, "mixed16.rabbitmq-best.r1.json", `{"messages":100,"messages_per_second":1500}`)
	writeFile(t, dir, "mixed1.postgres.r1.json", `{"messages":10,"messages_per_second":10,"latency_ms":{"consume":{"p50":0.7,"p99":1}}}`)
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
	if a.n != 3 || a.rate != 2000 || a.lat["insert"] != [2]float64{2, 4} || a.bad != 1 || a.scpu != 25 {
		t.Fatalf("median over rounds: %+v", a)
	}
	if a, err := load(dir, "drain16", "q4mproxy"); a != nil || err != nil {
		t.Fatalf("no files: %v %v", a, err)
	}
	res, err := loadAll(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	writeTable(&out, res)
	if err := writeTargets(&out, dir, res); err != nil {
		t.Fatal(err)
	}
	if err := drawChart(filepath.Join(dir, "chart.png"), res); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| mixed 16P+16C | PostgreSQL | 1000 | 2.00× | 250 | – |",
		"WARNING: mixed 16P+16C on q4mproxy: 1 errors/missing/duplicates",
		"| mixed 16P+16C vs MariaDB | ≥ 20× | 20.0× | yes |",
		"| mixed 16P+16C vs PostgreSQL | ≥ 3× | 2.0× | no |",
		"| mixed 16P+16C vs RabbitMQ | ≥ 3× | 4.0× | yes |",
		"| mixed 16P+16C vs RabbitMQ, prefetch 200, confirm window 200 | ≥ 2× | 1.3× | no |",
		"| q4mproxy server CPU per message, mixed 16P+16C | ≤ 30 µs | 25 µs | yes |",
		"| durable vs --sync off (mixed 16P+16C) | ≥ 0.70 | 2000 / 2500 msg/s = 0.80 | yes |",
		"1P+1C consume p50: PostgreSQL 0.70 ms.",
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
