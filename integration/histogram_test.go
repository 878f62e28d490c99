package integration

import (
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestQ4mbenchHistogramPNG: q4mbench --histogram-png against the server
// writes a PNG of plausible size: 900 pixels wide, one 190-pixel panel per
// timed operation under a 34-pixel header.
func TestQ4mbenchHistogramPNG(t *testing.T) {
	s := startFastServer(t)
	bin, err := benchBin()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "latency.png")
	cmd := exec.Command(bin, "--dsn", s.dsn("test"), "--progress", "0", "--phase", "mixed", "--producers", "4", "--consumers", "4",
		"--messages", "2000", "--histogram-png", path)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("q4mbench: %v\n%s", err, out)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() < 2000 || st.Size() > 1<<20 {
		t.Errorf("PNG of %d bytes", st.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	// mixed times inserts, consumes and deliveries.
	if cfg.Width != 900 || cfg.Height != 34+3*190 {
		t.Errorf("PNG %dx%d, want 900x%d", cfg.Width, cfg.Height, 34+3*190)
	}
	if _, err := f.Seek(0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := png.Decode(f); err != nil {
		t.Errorf("the PNG does not decode: %v", err)
	}
}
