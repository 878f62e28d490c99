package main

import (
	"fmt"
	"image"
	"image/color"
	"math"
	"slices"

	"github.com/q4mproxy/q4mproxy/bench/plot"
)

// histOps are the timed operations, in the order of the panels.
var histOps = []string{"insert", "consume", "delivery", "wake"}

var (
	colBar = color.RGBA{0x2b, 0x6c, 0xb0, 0xff}
	colP50 = color.RGBA{0x33, 0x99, 0x66, 0xff}
	colP99 = color.RGBA{0xb0, 0x3a, 0x2e, 0xff}
)

// Histogram geometry, in pixels.
const (
	histW        = 900
	histHeader   = 34
	histPanelH   = 190
	histLeft     = 70
	histRight    = 20
	histPanelTop = 28 // the panel's title above its plot
	histPanelBot = 30 // the latency axis below
	binsPerDec   = 10
)

// drawHistogram writes a PNG of the latency histograms of a run: one panel
// per timed operation with how many operations took each latency, on a
// logarithmic latency axis (10 bins per decade), the median and the 99th
// percentile marked. samples are in µs, by operation.
func drawHistogram(path, title string, samples map[string][]float64) error {
	var ops []string
	for _, op := range histOps {
		if len(samples[op]) > 0 {
			ops = append(ops, op)
		}
	}
	if len(ops) == 0 {
		return fmt.Errorf("no latencies to draw")
	}
	h := histHeader + len(ops)*histPanelH
	img := image.NewRGBA(image.Rect(0, 0, histW, h))
	plot.Fill(img, img.Bounds(), color.White)
	plot.Text(img, histLeft, 20, title, plot.ColText)
	for i, op := range ops {
		drawPanel(img, histHeader+i*histPanelH, op, samples[op])
	}
	return plot.SavePNG(path, img)
}

// drawPanel draws one operation's histogram in the band starting at y0.
func drawPanel(img *image.RGBA, y0 int, op string, us []float64) {
	v := slices.Clone(us)
	slices.Sort(v)
	pct := func(p float64) float64 { return v[min(len(v)-1, int(p*float64(len(v))))] }
	p50, p99 := pct(0.50), pct(0.99)
	plot.Text(img, histLeft, y0+16, fmt.Sprintf("%s: n=%d  p50 %s  p99 %s  max %s", op, len(v), fmtUS(p50), fmtUS(p99), fmtUS(v[len(v)-1])), plot.ColText)

	// Bins: 10 per decade of µs, from the decade of the fastest to that
	// of the slowest (latencies below 1 µs count as 1 µs).
	lg := func(x float64) float64 { return math.Log10(max(x, 1)) }
	d0, d1 := math.Floor(lg(v[0])), math.Ceil(lg(v[len(v)-1]))
	if d1 <= d0 {
		d1 = d0 + 1
	}
	nbins := int(d1-d0) * binsPerDec
	counts := make([]int, nbins)
	for _, x := range v {
		b := int((lg(x) - d0) * binsPerDec)
		counts[min(max(b, 0), nbins-1)]++
	}
	top, bottom := y0+histPanelTop, y0+histPanelH-histPanelBot
	plotW := histW - histLeft - histRight
	xOf := func(logUS float64) int { return histLeft + int((logUS-d0)/(d1-d0)*float64(plotW)) }
	axisMax := plot.NiceMax(float64(slices.Max(counts)))
	yOf := func(n float64) int { return bottom - int(n/axisMax*float64(bottom-top)) }
	for i := 0; i <= 4; i++ {
		n := axisMax * float64(i) / 4
		y := yOf(n)
		plot.Fill(img, image.Rect(histLeft, y, histW-histRight, y+1), plot.ColGrid)
		s := fmt.Sprintf("%.0f", n)
		plot.Text(img, histLeft-6-len(s)*plot.CharW, y+4, s, plot.ColText)
	}
	for b, n := range counts {
		if n == 0 {
			continue
		}
		x0 := xOf(d0 + float64(b)/binsPerDec)
		x1 := xOf(d0 + float64(b+1)/binsPerDec)
		y := min(yOf(float64(n)), bottom-2) // a lone outlier stays visible
		plot.Fill(img, image.Rect(x0+1, y, max(x1-1, x0+2), bottom), colBar)
	}
	plot.Fill(img, image.Rect(histLeft, bottom, histW-histRight, bottom+1), plot.ColText)
	for d := d0; d <= d1; d++ {
		x := xOf(d)
		plot.Fill(img, image.Rect(x, bottom, x+1, bottom+4), plot.ColText)
		plot.TextCentered(img, x, bottom+16, fmtUS(math.Pow(10, d)), plot.ColText)
	}
	for _, m := range []struct {
		name string
		us   float64
		c    color.Color
	}{{"p50", p50, colP50}, {"p99", p99, colP99}} {
		x := xOf(lg(m.us))
		plot.Fill(img, image.Rect(x, top, x+2, bottom), m.c)
		plot.Text(img, x+4, top+10, m.name, m.c)
	}
}

// fmtUS writes a latency in µs with a unit (ASCII: "us", the font has no µ).
func fmtUS(us float64) string {
	switch {
	case us >= 1e6:
		return trim(us/1e6) + "s"
	case us >= 1e3:
		return trim(us/1e3) + "ms"
	}
	return trim(us) + "us"
}

func trim(x float64) string {
	if x >= 100 || x == math.Trunc(x) {
		return fmt.Sprintf("%.0f", x)
	}
	if x >= 10 {
		return fmt.Sprintf("%.1f", x)
	}
	return fmt.Sprintf("%.2f", x)
}
