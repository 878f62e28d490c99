package testingutil

import (
	"bytes"
	"image"
	"image/png"
	"os"
	"testing"
)

// ReadPNG decodes the PNG file at path (a latency histogram q4mbench
// drew), ending t if it is not one, and reports an error unless the file
// is of a plausible size, 2 kB to 1 MB.
func ReadPNG(t testing.TB, path string) image.Image {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 2000 || len(b) > 1<<20 {
		t.Errorf("PNG of %d bytes", len(b))
	}
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	return img
}
