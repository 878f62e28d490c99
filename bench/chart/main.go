// Command chart summarises the JSON results written by bench/compare: it
// prints a Markdown table of every workload on every server (q4mproxy and
// its anchors MariaDB, PostgreSQL and RabbitMQ), with messages per second,
// the ratio to q4mproxy, CPU time per message and latencies, then the
// targets, and draws a PNG bar chart of messages per second.
//
// Result files are named <workload>.<server>.r<N>.json, with server one of
// q4mproxy, mariadb, postgres, rabbitmq, rabbitmq-best; over several rounds
// the median is reported.
//
//	go run ./bench/chart -dir bench/results -md bench/results/latest.md -png bench/results/latest.png
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/q4mproxy/q4mproxy/bench/plot"
)

type summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

type result struct {
	Consume    string             `json:"consume"`
	Messages   int                `json:"messages"`
	PerSecond  float64            `json:"messages_per_second"`
	Latency    map[string]summary `json:"latency_ms"`
	Errors     int64              `json:"errors"`
	Duplicates int                `json:"duplicates"`
	Missing    int                `json:"missing"`
	ServerCPU  float64            `json:"server_cpu_us_per_message"`
	ClientCPU  float64            `json:"client_cpu_us_per_message"`
}

// workloads in display order.
var workloads = []struct{ key, title string }{
	{"mixed16", "mixed 16P+16C"},
	{"mixed1", "mixed 1P+1C"},
	{"drain16", "drain 16C"},
	{"insert16", "insert 16P"},
}

// servers in display order, with what each promises when it acknowledges
// (as bench/compare configures it).
var servers = []struct {
	key, name, produce, consume string
	color                       color.RGBA
}{
	{"q4mproxy", "q4mproxy", "INSERT's reply after its rows are synced (group commit)",
		"a row's removal is synced before the next row is handed to the same connection (queue_wait's first step); a crash redelivers owned rows",
		color.RGBA{0x2b, 0x6c, 0xb0, 0xff}},
	{"mariadb", "MariaDB", "COMMIT synced (innodb_flush_log_at_trx_commit=1)", "the DELETE's COMMIT synced", color.RGBA{0xe0, 0x7b, 0x24, 0xff}},
	{"postgres", "PostgreSQL", "INSERT's autocommit synced (fsync=on, synchronous_commit=on)", "the DELETE ... RETURNING autocommit synced", color.RGBA{0x33, 0x99, 0x66, 0xff}},
	{"rabbitmq", "RabbitMQ", "publisher confirm after the quorum queue's log is synced",
		"manual ack, not answered: settled later through the queue's log; a crash may redeliver", color.RGBA{0xb0, 0x3a, 0x2e, 0xff}},
	{"rabbitmq-best", "RabbitMQ, prefetch 200, confirm window 200", "as above, up to 200 unconfirmed per producer", "as above, up to 200 unacked per consumer", color.RGBA{0xe8, 0x9a, 0x90, 0xff}},
}

func serverName(key string) string {
	for _, s := range servers {
		if s.key == key {
			return s.name
		}
	}
	return key
}

// agg is the median over rounds of one workload on one server.
type agg struct {
	n          int
	messages   int
	consume    string
	rate       float64
	scpu, ccpu float64               // CPU µs per message: server, q4mbench
	lat        map[string][2]float64 // op -> p50, p99
	bad        int64                 // errors + missing + duplicates, summed
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func load(dir, wl, server string) (*agg, error) {
	files, _ := filepath.Glob(filepath.Join(dir, wl+"."+server+".r*.json"))
	if len(files) == 0 {
		return nil, nil
	}
	a := &agg{lat: map[string][2]float64{}}
	var rates, scpu, ccpu []float64
	lat := map[string][2][]float64{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var r result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		a.n++
		a.messages = r.Messages
		a.consume = r.Consume
		a.bad += r.Errors + int64(r.Missing) + int64(r.Duplicates)
		rates = append(rates, r.PerSecond)
		if r.ServerCPU > 0 {
			scpu = append(scpu, r.ServerCPU)
		}
		if r.ClientCPU > 0 {
			ccpu = append(ccpu, r.ClientCPU)
		}
		for op, s := range r.Latency {
			l := lat[op]
			l[0] = append(l[0], s.P50)
			l[1] = append(l[1], s.P99)
			lat[op] = l
		}
	}
	a.rate = median(rates)
	a.scpu, a.ccpu = median(scpu), median(ccpu)
	for op, l := range lat {
		a.lat[op] = [2]float64{median(l[0]), median(l[1])}
	}
	return a, nil
}

func lat(a *agg, op string) string {
	l, ok := a.latIf(op)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f / %.2f", l[0], l[1])
}

func cpu(v float64) string {
	if v <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

// results holds every aggregate, by workload and server.
type results map[string]map[string]*agg

func (r results) get(wl, server string) *agg { return r[wl][server] }

// ratio is q4mproxy's rate over server's on wl, 0 if either is missing.
func (r results) ratio(wl, server string) float64 {
	q, m := r.get(wl, "q4mproxy"), r.get(wl, server)
	if q == nil || m == nil || m.rate <= 0 {
		return 0
	}
	return q.rate / m.rate
}

func loadAll(dir string) (results, error) {
	r := results{}
	for _, wl := range []string{"mixed16", "mixed1", "drain16", "insert16", "mixed16-other", "mixed16-nosync", "wake", "backlog-small", "backlog-large"} {
		for _, s := range servers {
			a, err := load(dir, wl, s.key)
			if err != nil {
				return nil, err
			}
			if a != nil {
				if r[wl] == nil {
					r[wl] = map[string]*agg{}
				}
				r[wl][s.key] = a
			}
		}
	}
	return r, nil
}

func main() {
	dir := flag.String("dir", "bench/results", "directory of the JSON results")
	md := flag.String("md", "", "also write the Markdown table to `file`")
	pngOut := flag.String("png", "", "draw the bar chart to `file`")
	header := flag.String("header", "", "text put above the table")
	flag.Parse()

	res, err := loadAll(*dir)
	if err != nil {
		fail(err)
	}
	var out strings.Builder
	if *header != "" {
		out.WriteString(*header + "\n\n")
	}
	writeTable(&out, res)
	if err := writeTargets(&out, *dir, res); err != nil {
		fail(err)
	}
	out.WriteString("\nWhat each server promises when it acknowledges:\n\n| server | a produce (INSERT, publish) | a consume |\n|---|---|---|\n")
	for _, s := range servers {
		if s.key != "rabbitmq-best" {
			fmt.Fprintf(&out, "| %s | %s | %s |\n", s.name, s.produce, s.consume)
		}
	}
	io.WriteString(os.Stdout, out.String())
	if *md != "" {
		if err := os.WriteFile(*md, []byte(out.String()), 0o644); err != nil {
			fail(err)
		}
	}
	if *pngOut != "" {
		if err := drawChart(*pngOut, res); err != nil {
			fail(err)
		}
	}
}

// writeTable writes one row per workload and server.
func writeTable(out *strings.Builder, res results) {
	out.WriteString("| workload | server | msg/s | q4mproxy ÷ it | server CPU µs/msg | q4mbench CPU µs/msg | insert p50 / p99 ms | consume p50 / p99 ms | messages |\n")
	out.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|\n")
	row := func(title, name string, a *agg, ratio float64) {
		r := "–"
		if ratio > 0 {
			r = fmt.Sprintf("%.2f×", ratio)
		}
		fmt.Fprintf(out, "| %s | %s | %.0f | %s | %s | %s | %s | %s | %d |\n", title, name, a.rate, r, cpu(a.scpu), cpu(a.ccpu),
			lat(a, "insert"), lat(a, "consume"), a.messages)
	}
	var bad []string
	for _, w := range workloads {
		for _, s := range servers {
			a := res.get(w.key, s.key)
			if a == nil {
				continue
			}
			ratio := 0.0
			if s.key != "q4mproxy" {
				ratio = res.ratio(w.key, s.key)
			}
			row(w.title, s.name, a, ratio)
			if a.bad > 0 {
				bad = append(bad, fmt.Sprintf("%s on %s: %d errors/missing/duplicates", w.title, s.name, a.bad))
			}
		}
		if w.key == "mixed16" {
			if a := res.get("mixed16-other", "q4mproxy"); a != nil {
				row(w.title, "q4mproxy, consume "+a.consume, a, 0)
			}
			if a := res.get("mixed16-nosync", "q4mproxy"); a != nil {
				row(w.title, "q4mproxy --sync off", a, 0)
			}
		}
	}
	if len(bad) > 0 {
		out.WriteString("\nWARNING: " + strings.Join(bad, "; ") + "\n")
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chart:", err)
	os.Exit(1)
}

type bar struct {
	a *agg
	c color.Color
}

// drawChart draws messages/s per workload, one bar per server, and
// q4mproxy's other consume style and --sync off as bars of their own.
func drawChart(path string, res results) error {
	type group struct {
		title string
		bars  []bar
	}
	var groups []group
	for _, w := range workloads {
		g := group{title: w.title}
		for _, s := range servers {
			if a := res.get(w.key, s.key); a != nil {
				g.bars = append(g.bars, bar{a, s.color})
			}
		}
		if len(g.bars) > 0 {
			groups = append(groups, g)
		}
	}
	if a := res.get("mixed16-other", "q4mproxy"); a != nil {
		groups = append(groups, group{"16+16 " + a.consume, []bar{{a, servers[0].color}}})
	}
	if a := res.get("mixed16-nosync", "q4mproxy"); a != nil {
		groups = append(groups, group{"16+16 --sync off", []bar{{a, servers[0].color}}})
	}
	if len(groups) == 0 {
		return fmt.Errorf("no results to draw")
	}
	const (
		W, H           = 1100, 500
		left, right    = 70, 20
		top, bottom    = 60, 50
		barW, innerGap = 28, 4
	)
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	maxRate := 1.0
	for _, g := range groups {
		for _, b := range g.bars {
			maxRate = max(maxRate, b.a.rate)
		}
	}
	axisMax := plot.NiceMax(maxRate)
	plotH := H - top - bottom
	yOf := func(v float64) int { return H - bottom - int(v/axisMax*float64(plotH)) }
	for i := 0; i <= 5; i++ {
		v := axisMax * float64(i) / 5
		y := yOf(v)
		draw.Draw(img, image.Rect(left, y, W-right, y+1), image.NewUniform(plot.ColGrid), image.Point{}, draw.Src)
		s := fmt.Sprintf("%.0f", v)
		plot.Text(img, left-8-len(s)*7, y+4, s, plot.ColText)
	}
	plot.Text(img, left, 18, "q4mproxy against MariaDB, PostgreSQL (SKIP LOCKED) and RabbitMQ (quorum queue): messages/s, higher is better", plot.ColText)
	x := left
	for _, s := range servers {
		draw.Draw(img, image.Rect(x, 28, x+12, 40), image.NewUniform(s.color), image.Point{}, draw.Src)
		plot.Text(img, x+16, 38, s.name, plot.ColText)
		x += 16 + len(s.name)*7 + 16
	}
	groupW := (W - left - right) / len(groups)
	for i, g := range groups {
		cx := left + groupW*i + groupW/2
		total := len(g.bars)*barW + (len(g.bars)-1)*innerGap
		x := cx - total/2
		for _, b := range g.bars {
			y := yOf(b.a.rate)
			draw.Draw(img, image.Rect(x, y, x+barW, H-bottom), image.NewUniform(b.c), image.Point{}, draw.Src)
			label := fmt.Sprintf("%.0f", b.a.rate)
			if b.a.rate >= 1000 {
				label = fmt.Sprintf("%.1fk", b.a.rate/1000)
			}
			plot.TextCentered(img, x+barW/2, y-4, label, plot.ColText)
			x += barW + innerGap
		}
		plot.TextCentered(img, cx, H-bottom+18, g.title, plot.ColText)
	}
	draw.Draw(img, image.Rect(left, H-bottom, W-right, H-bottom+1), image.NewUniform(plot.ColText), image.Point{}, draw.Src)
	return plot.SavePNG(path, img)
}

// writeTargets adds the targets, each with what this run measured.
func writeTargets(out *strings.Builder, dir string, res results) error {
	var fsync struct {
		AppendP50    float64 `json:"append_p50_ms"`
		OverwriteP50 float64 `json:"overwrite_p50_ms"`
	}
	var backlog struct {
		RSSKB     int `json:"rss_kb"`
		RestartMS int `json:"restart_ms"`
		Rows      int `json:"rows_after_restart"`
	}
	haveFsync, err := readJSON(filepath.Join(dir, "fsync.json"), &fsync)
	if err != nil {
		return err
	}
	haveBacklog, err := readJSON(filepath.Join(dir, "backlog.json"), &backlog)
	if err != nil {
		return err
	}
	out.WriteString("\n| target | goal | measured | met |\n|---|---|---|---|\n")
	line := func(target, goal, measured string, met bool) {
		m := "no"
		if met {
			m = "yes"
		}
		fmt.Fprintf(out, "| %s | %s | %s | %s |\n", target, goal, measured, m)
	}
	for _, t := range []struct {
		server string
		goal   float64
	}{{"mariadb", 20}, {"postgres", 3}, {"rabbitmq", 3}, {"rabbitmq-best", 2}} {
		if r := res.ratio("mixed16", t.server); r > 0 {
			line("mixed 16P+16C vs "+serverName(t.server), fmt.Sprintf("≥ %g×", t.goal), fmt.Sprintf("%.1f×", r), r >= t.goal)
		}
	}
	mixed := res.get("mixed16", "q4mproxy")
	if mixed != nil && mixed.scpu > 0 {
		line("q4mproxy server CPU per message, mixed 16P+16C", "≤ 30 µs", fmt.Sprintf("%.0f µs", mixed.scpu), mixed.scpu <= 30)
	}
	if nosync := res.get("mixed16-nosync", "q4mproxy"); mixed != nil && nosync != nil && nosync.rate > 0 {
		f := mixed.rate / nosync.rate
		line("durable vs --sync off (mixed 16P+16C)", "≥ 0.70", fmt.Sprintf("%.0f / %.0f msg/s = %.2f", mixed.rate, nosync.rate, f), f >= 0.70)
	}
	if l, ok := res.get("mixed1", "q4mproxy").latIf("insert"); ok && haveFsync && fsync.AppendP50 > 0 {
		line("1P+1C insert p50 / fsync p50", "≤ 1.5×", fmt.Sprintf("%.2f ms / %.3f ms = %.1f× (overwriting fsync %.3f ms: %.1f×)",
			l[0], fsync.AppendP50, l[0]/fsync.AppendP50, fsync.OverwriteP50, l[0]/fsync.OverwriteP50), l[0] <= 1.5*fsync.AppendP50)
	}
	if l, ok := res.get("wake", "q4mproxy").latIf("wake"); ok {
		line("idle consumer woken, INSERT reply → delivery, p99", "≤ 2 ms", fmt.Sprintf("%.3f ms (p50 %.3f ms)", l[1], l[0]), l[1] <= 2)
	}
	if small, large := res.get("backlog-small", "q4mproxy"), res.get("backlog-large", "q4mproxy"); small != nil && large != nil && small.rate > 0 {
		f := large.rate / small.rate
		line("mixed 16P+16C behind 1,000,000 vs behind 1,000 queued", "≥ 0.80", fmt.Sprintf("%.0f / %.0f msg/s = %.2f", large.rate, small.rate, f), f >= 0.8)
	}
	if haveBacklog {
		line("RSS with the 1,000,000 backlog", "≤ 300 MB", fmt.Sprintf("%.0f MB", float64(backlog.RSSKB)/1024), backlog.RSSKB <= 300*1024)
		line("restart after kill -9 with the backlog (until listening)", "≤ 5 s", fmt.Sprintf("%.2f s, %d rows", float64(backlog.RestartMS)/1000, backlog.Rows), backlog.RestartMS <= 5000)
	}
	var p50s []string
	for _, s := range servers {
		if l, ok := res.get("mixed1", s.key).latIf("consume"); ok {
			p50s = append(p50s, fmt.Sprintf("%s %.2f ms", s.name, l[0]))
		}
	}
	if len(p50s) > 0 {
		fmt.Fprintf(out, "\n1P+1C consume p50: %s.\n", strings.Join(p50s, ", "))
	}
	return nil
}

// latIf is the p50/p99 of op, if a has it.
func (a *agg) latIf(op string) ([2]float64, bool) {
	if a == nil {
		return [2]float64{}, false
	}
	l, ok := a.lat[op]
	return l, ok
}

// readJSON decodes file into v; a missing file is not an error.
func readJSON(file string, v any) (bool, error) {
	b, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("%s: %w", file, err)
	}
	return true, nil
}
