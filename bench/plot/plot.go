// Package plot holds the few drawing helpers the benchmark tools share to
// write their PNG charts (bench/chart's bar chart, q4mbench's latency
// histogram): text in a fixed 7x13 font, a round axis maximum, and saving
// an image as PNG. Standard library and golang.org/x/image only.
package plot

import (
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Colours of text and grid lines.
var (
	ColText = color.RGBA{0x20, 0x20, 0x20, 0xff}
	ColGrid = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
)

// CharW is the width in pixels of a character of the font Text uses.
const CharW = 7

// Text draws s with its baseline starting at (x, y).
func Text(img draw.Image, x, y int, s string, c color.Color) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}

// TextCentered draws s centred on cx, baseline at y.
func TextCentered(img draw.Image, cx, y int, s string, c color.Color) {
	Text(img, cx-len(s)*CharW/2, y, s, c)
}

// Fill paints r with c.
func Fill(img draw.Image, r image.Rectangle, c color.Color) {
	draw.Draw(img, r, image.NewUniform(c), image.Point{}, draw.Src)
}

// NiceMax is a round axis maximum above v (with 10% of headroom): 1 to 10
// times a power of ten.
func NiceMax(v float64) float64 {
	v = max(v, 1)
	step := 1.0
	for step*10 < v {
		step *= 10
	}
	for _, f := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if f*step >= v*1.1 {
			return f * step
		}
	}
	return 10 * step * 1.5
}

// SavePNG writes img to path as PNG.
func SavePNG(path string, img image.Image) error {
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
