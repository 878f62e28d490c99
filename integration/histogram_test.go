package integration

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
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
	// mixed times inserts, consumes and deliveries.
	if b := testingutil.ReadPNG(t, path).Bounds(); b.Dx() != 900 || b.Dy() != 34+3*190 {
		t.Errorf("PNG %dx%d, want 900x%d", b.Dx(), b.Dy(), 34+3*190)
	}
}
