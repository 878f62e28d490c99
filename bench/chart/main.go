// Command chart summarises the JSON results written by bench/compare: it
// prints a side-by-side Markdown table (q4mproxy vs MariaDB) and draws a PNG
// bar chart of messages per second per workload.
//
// Result files are named <workload>.<server>.r<N>.json, with server
// "q4mproxy" or "mariadb"; over several rounds the median is reported.
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
	"image/png"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
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
}

// workloads in display order.
var workloads = []struct{ key, title string }{
	{"mixed16", "mixed 16P+16C"},
	{"mixed1", "mixed 1P+1C"},
	{"drain16", "drain 16C"},
	{"insert16", "insert 16P"},
}

// agg is the median over rounds of one workload on one server.
type agg struct {
	n        int
	messages int
	consume  string
	rate     float64
	lat      map[string][2]float64 // op -> p50, p99
	bad      int64                 // errors + missing + duplicates, summed
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
	var rates []float64
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
		for op, s := range r.Latency {
			l := lat[op]
			l[0] = append(l[0], s.P50)
			l[1] = append(l[1], s.P99)
			lat[op] = l
		}
	}
	a.rate = median(rates)
	for op, l := range lat {
		a.lat[op] = [2]float64{median(l[0]), median(l[1])}
	}
	return a, nil
}

func lat(a *agg, op string) string {
	if a == nil {
		return "–"
	}
	l, ok := a.lat[op]
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f / %.2f", l[0], l[1])
}

func rate(a *agg) string {
	if a == nil {
		return "–"
	}
	return fmt.Sprintf("%.0f", a.rate)
}

func count(a *agg) string {
	if a == nil {
		return "–"
	}
	return fmt.Sprint(a.messages)
}

type row struct {
	title    string
	q, m     *agg
	ratio    float64 // q/m, 0 if unknown
	ratioStr string
}

func main() {
	dir := flag.String("dir", "bench/results", "directory of the JSON results")
	md := flag.String("md", "", "also write the Markdown table to `file`")
	pngOut := flag.String("png", "", "draw the bar chart to `file`")
	header := flag.String("header", "", "text put above the table")
	flag.Parse()

	var rows []row
	for _, w := range workloads {
		q, err := load(*dir, w.key, "q4mproxy")
		if err != nil {
			fail(err)
		}
		m, err := load(*dir, w.key, "mariadb")
		if err != nil {
			fail(err)
		}
		r := row{title: w.title, q: q, m: m, ratioStr: "–"}
		if q != nil && m != nil && m.rate > 0 {
			r.ratio = q.rate / m.rate
			r.ratioStr = fmt.Sprintf("%.2fx", r.ratio)
		}
		rows = append(rows, r)
	}
	nosync, err := load(*dir, "mixed16-nosync", "q4mproxy")
	if err != nil {
		fail(err)
	}
	other, err := load(*dir, "mixed16-other", "q4mproxy")
	if err != nil {
		fail(err)
	}

	var out strings.Builder
	if *header != "" {
		out.WriteString(*header + "\n\n")
	}
	out.WriteString("| workload | q4mproxy msg/s | MariaDB msg/s | ratio | q4m insert p50/p99 ms | q4m consume p50/p99 ms | MariaDB insert p50/p99 ms | MariaDB consume p50/p99 ms | messages q4m / MariaDB |\n")
	out.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |\n", r.title, rate(r.q), rate(r.m), r.ratioStr,
			lat(r.q, "insert"), lat(r.q, "consume"), lat(r.m, "insert"), lat(r.m, "consume"), count(r.q), count(r.m))
	}
	if other != nil {
		r := row{title: "mixed 16P+16C, " + other.consume, q: other, m: rows[0].m, ratioStr: "–"}
		if r.m != nil && r.m.rate > 0 {
			r.ratio = other.rate / r.m.rate
			r.ratioStr = fmt.Sprintf("%.2fx", r.ratio)
		}
		fmt.Fprintf(&out, "| %s | %s | %s | %s | %s | %s | – | – | %s / – |\n", r.title, rate(other), rate(r.m), r.ratioStr,
			lat(other, "insert"), lat(other, "consume"), count(other))
	}
	if nosync != nil {
		fmt.Fprintf(&out, "| mixed 16P+16C, q4mproxy --sync off | %s | – | – | %s | %s | – | – | %s / – |\n",
			rate(nosync), lat(nosync, "insert"), lat(nosync, "consume"), count(nosync))
		if rows[0].q != nil && nosync.rate > 0 {
			fmt.Fprintf(&out, "\nq4mproxy durable / no-sync (mixed 16P+16C): %.0f / %.0f msg/s = %.2f\n", rows[0].q.rate, nosync.rate, rows[0].q.rate/nosync.rate)
		}
	}
	var bad []string
	for _, r := range rows {
		for _, x := range []struct {
			n string
			a *agg
		}{{"q4mproxy", r.q}, {"MariaDB", r.m}} {
			if x.a != nil && x.a.bad > 0 {
				bad = append(bad, fmt.Sprintf("%s on %s: %d errors/missing/duplicates", r.title, x.n, x.a.bad))
			}
		}
	}
	if len(bad) > 0 {
		out.WriteString("\nWARNING: " + strings.Join(bad, "; ") + "\n")
	}
	if err := writeTargets(&out, *dir, rows[0], rows[1].q, nosync); err != nil {
		fail(err)
	}
	io.WriteString(os.Stdout, out.String())
	if *md != "" {
		if err := os.WriteFile(*md, []byte(out.String()), 0o644); err != nil {
			fail(err)
		}
	}
	if *pngOut != "" {
		if other != nil {
			rows = append(rows, row{title: "16+16 " + other.consume, q: other, ratioStr: ""})
		}
		if nosync != nil {
			rows = append(rows, row{title: "16+16 --sync off", q: nosync, ratioStr: ""})
		}
		if err := draw_(*pngOut, rows); err != nil {
			fail(err)
		}
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "chart:", err)
	os.Exit(1)
}

var (
	colQ    = color.RGBA{0x2b, 0x6c, 0xb0, 0xff}
	colM    = color.RGBA{0xe0, 0x7b, 0x24, 0xff}
	colText = color.RGBA{0x20, 0x20, 0x20, 0xff}
	colGrid = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

func text(img draw.Image, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

func textCentered(img draw.Image, cx, y int, s string, c color.Color) {
	text(img, cx-len(s)*7/2, y, s, c)
}

func draw_(path string, rows []row) error {
	const (
		W, H           = 900, 480
		left, right    = 70, 20
		top, bottom    = 50, 70
		barW, innerGap = 40, 6
	)
	img := image.NewRGBA(image.Rect(0, 0, W, H))
	draw.Draw(img, img.Bounds(), image.White, image.Point{}, draw.Src)
	maxRate := 1.0
	for _, r := range rows {
		for _, a := range []*agg{r.q, r.m} {
			if a != nil && a.rate > maxRate {
				maxRate = a.rate
			}
		}
	}
	// a round axis maximum: 1, 2 or 5 times a power of ten
	step := 1.0
	for step*10 < maxRate {
		step *= 10
	}
	axisMax := step
	for _, f := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if f*step >= maxRate*1.1 {
			axisMax = f * step
			break
		}
	}
	plotH := H - top - bottom
	yOf := func(v float64) int { return H - bottom - int(v/axisMax*float64(plotH)) }
	for i := 0; i <= 5; i++ {
		v := axisMax * float64(i) / 5
		y := yOf(v)
		draw.Draw(img, image.Rect(left, y, W-right, y+1), image.NewUniform(colGrid), image.Point{}, draw.Src)
		s := fmt.Sprintf("%.0f", v)
		text(img, left-8-len(s)*7, y+4, s, colText)
	}
	text(img, left, 20, "q4mproxy vs MariaDB (InnoDB, SKIP LOCKED): messages/s, higher is better", colText)
	draw.Draw(img, image.Rect(W-260, 28, W-248, 40), image.NewUniform(colQ), image.Point{}, draw.Src)
	text(img, W-244, 38, "q4mproxy", colText)
	draw.Draw(img, image.Rect(W-170, 28, W-158, 40), image.NewUniform(colM), image.Point{}, draw.Src)
	text(img, W-154, 38, "MariaDB", colText)

	groupW := (W - left - right) / len(rows)
	for i, r := range rows {
		cx := left + groupW*i + groupW/2
		bars := []struct {
			a *agg
			c color.Color
		}{{r.q, colQ}, {r.m, colM}}
		if r.m == nil && r.ratioStr == "" {
			bars = bars[:1]
		}
		total := len(bars)*barW + (len(bars)-1)*innerGap
		x := cx - total/2
		for _, b := range bars {
			if b.a != nil {
				y := yOf(b.a.rate)
				draw.Draw(img, image.Rect(x, y, x+barW, H-bottom), image.NewUniform(b.c), image.Point{}, draw.Src)
				textCentered(img, x+barW/2, y-4, fmt.Sprintf("%.0f", b.a.rate), colText)
			} else {
				textCentered(img, x+barW/2, H-bottom-4, "n/a", colText)
			}
			x += barW + innerGap
		}
		textCentered(img, cx, H-bottom+18, r.title, colText)
		if r.ratioStr != "" && r.ratioStr != "–" {
			textCentered(img, cx, H-bottom+36, "ratio "+r.ratioStr, colText)
		} else if r.m == nil {
			textCentered(img, cx, H-bottom+36, "(q4mproxy only)", colText)
		}
	}
	draw.Draw(img, image.Rect(left, H-bottom, W-right, H-bottom+1), image.NewUniform(colText), image.Point{}, draw.Src)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// writeTargets adds the targets, each with what this run measured.
func writeTargets(out *strings.Builder, dir string, mixed row, oneOne, nosync *agg) error {
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
	wake, err := load(dir, "wake", "q4mproxy")
	if err != nil {
		return err
	}
	small, err := load(dir, "backlog-small", "q4mproxy")
	if err != nil {
		return err
	}
	large, err := load(dir, "backlog-large", "q4mproxy")
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
	if mixed.ratio > 0 {
		line("mixed 16P+16C vs MariaDB", "≥ 20×", fmt.Sprintf("%.1f×", mixed.ratio), mixed.ratio >= 20)
	}
	if mixed.q != nil && nosync != nil && nosync.rate > 0 {
		f := mixed.q.rate / nosync.rate
		line("durable vs --sync off (mixed 16P+16C)", "≥ 0.70", fmt.Sprintf("%.2f", f), f >= 0.70)
	}
	if l, ok := oneOne.latIf("insert"); ok && haveFsync && fsync.AppendP50 > 0 {
		line("1P+1C insert p50 / fsync p50", "≤ 1.5×", fmt.Sprintf("%.2f ms / %.3f ms = %.1f× (overwriting fsync %.3f ms: %.1f×)",
			l[0], fsync.AppendP50, l[0]/fsync.AppendP50, fsync.OverwriteP50, l[0]/fsync.OverwriteP50), l[0] <= 1.5*fsync.AppendP50)
	}
	if l, ok := wake.latIf("wake"); ok {
		line("idle consumer woken, INSERT reply → delivery, p99", "≤ 2 ms", fmt.Sprintf("%.3f ms (p50 %.3f ms)", l[1], l[0]), l[1] <= 2)
	}
	if small != nil && large != nil && small.rate > 0 {
		f := large.rate / small.rate
		line("mixed 16P+16C behind 1,000,000 vs behind 1,000 queued", "≥ 0.80", fmt.Sprintf("%.0f / %.0f msg/s = %.2f", large.rate, small.rate, f), f >= 0.8)
	}
	if haveBacklog {
		line("RSS with the 1,000,000 backlog", "≤ 300 MB", fmt.Sprintf("%.0f MB", float64(backlog.RSSKB)/1024), backlog.RSSKB <= 300*1024)
		line("restart after kill -9 with the backlog (until listening)", "≤ 5 s", fmt.Sprintf("%.2f s, %d rows", float64(backlog.RestartMS)/1000, backlog.Rows), backlog.RestartMS <= 5000)
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
