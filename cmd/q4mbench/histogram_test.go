package main

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
)

// TestDrawHistogram: the PNG decodes, has one panel per operation with
// samples, and shows bars and the percentile marks.
func TestDrawHistogram(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	samples := map[string][]float64{"insert": nil, "consume": nil, "delivery": {}}
	for range 5000 {
		samples["insert"] = append(samples["insert"], 800+rng.ExpFloat64()*400)
		samples["consume"] = append(samples["consume"], 150+rng.ExpFloat64()*100)
	}
	samples["consume"] = append(samples["consume"], 250000) // one slow outlier: 250 ms
	path := filepath.Join(t.TempDir(), "hist.png")
	if err := drawHistogram(path, "test run", samples); err != nil {
		t.Fatal(err)
	}
	img := testingutil.ReadPNG(t, path)
	if b := img.Bounds(); b.Dx() != histW || b.Dy() != histHeader+2*histPanelH {
		t.Errorf("image %v, want %dx%d (two panels: delivery has no samples)", b, histW, histHeader+2*histPanelH)
	}
	count := map[[3]uint32]int{}
	for y := img.Bounds().Min.Y; y < img.Bounds().Max.Y; y++ {
		for x := img.Bounds().Min.X; x < img.Bounds().Max.X; x++ {
			r, g, b, _ := img.At(x, y).RGBA()
			count[[3]uint32{r >> 8, g >> 8, b >> 8}]++
		}
	}
	key := func(r, g, b uint8) [3]uint32 { return [3]uint32{uint32(r), uint32(g), uint32(b)} }
	if n := count[key(colBar.R, colBar.G, colBar.B)]; n < 5000 {
		t.Errorf("%d bar pixels", n)
	}
	for name, c := range map[string][3]uint32{"p50": key(colP50.R, colP50.G, colP50.B), "p99": key(colP99.R, colP99.G, colP99.B)} {
		if count[c] < 2*(histPanelH-histPanelTop-histPanelBot) {
			t.Errorf("%s mark: %d pixels, want two lines in each panel", name, count[c])
		}
	}

	if err := drawHistogram(filepath.Join(t.TempDir(), "none.png"), "empty", map[string][]float64{"insert": nil}); err == nil {
		t.Error("a histogram of no samples: no error")
	}
}

func TestFmtUS(t *testing.T) {
	for us, want := range map[float64]string{1: "1us", 12.5: "12.5us", 1000: "1ms", 1530: "1.53ms", 250000: "250ms", 1e6: "1s", 2.5e6: "2.50s"} {
		if got := fmtUS(us); got != want {
			t.Errorf("fmtUS(%v) = %q, want %q", us, got, want)
		}
	}
}
