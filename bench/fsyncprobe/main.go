// Command fsyncprobe measures what one durable write costs on a disk: the
// latency of a small write followed by fdatasync, appending to a growing file
// (the file's size changes, so the filesystem journals too) and overwriting a
// file written before (as a recycled WAL file is). bench/compare runs it in
// the directory that holds q4mproxy's data, as the yardstick for insert
// latency.
//
//	go run ./bench/fsyncprobe -dir /tmp -n 2000 -json fsync.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

// Result is the probe's output, in milliseconds.
type Result struct {
	Writes       int     `json:"writes"`
	Bytes        int     `json:"bytes_per_write"`
	AppendP50    float64 `json:"append_p50_ms"`
	AppendP99    float64 `json:"append_p99_ms"`
	OverwriteP50 float64 `json:"overwrite_p50_ms"`
	OverwriteP99 float64 `json:"overwrite_p99_ms"`
}

func main() {
	dir := flag.String("dir", os.TempDir(), "directory on the disk to probe")
	n := flag.Int("n", 2000, "synced writes per mode")
	size := flag.Int("size", 200, "bytes per write")
	out := flag.String("json", "", "also write the result as JSON to `file`")
	flag.Parse()
	if *n < 1 || *size < 1 {
		fail(fmt.Errorf("-n and -size must be positive"))
	}
	r := Result{Writes: *n, Bytes: *size}
	var err error
	if r.AppendP50, r.AppendP99, err = probe(*dir, *n, *size, false); err != nil {
		fail(err)
	}
	if r.OverwriteP50, r.OverwriteP99, err = probe(*dir, *n, *size, true); err != nil {
		fail(err)
	}
	fmt.Printf("write %d B + fdatasync: appending p50 %.3f ms p99 %.3f ms; overwriting p50 %.3f ms p99 %.3f ms\n",
		*size, r.AppendP50, r.AppendP99, r.OverwriteP50, r.OverwriteP99)
	if *out != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		if err := os.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			fail(err)
		}
	}
}

// probe returns the p50 and p99 in ms of n synced writes of size bytes.
func probe(dir string, n, size int, overwrite bool) (p50, p99 float64, err error) {
	f, err := os.CreateTemp(dir, "fsyncprobe-*")
	if err != nil {
		return 0, 0, err
	}
	defer os.Remove(filepath.Clean(f.Name()))
	defer f.Close()
	buf := make([]byte, size)
	if overwrite {
		if _, err := f.Write(make([]byte, n*size)); err != nil {
			return 0, 0, err
		}
		if err := f.Sync(); err != nil {
			return 0, 0, err
		}
		if _, err := f.Seek(0, 0); err != nil {
			return 0, 0, err
		}
	}
	d := make([]float64, 0, n)
	for range n {
		t0 := time.Now()
		if _, err := f.Write(buf); err != nil {
			return 0, 0, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return 0, 0, err
		}
		d = append(d, float64(time.Since(t0).Microseconds())/1000)
	}
	slices.Sort(d)
	return d[len(d)/2], d[min(len(d)-1, len(d)*99/100)], nil
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "fsyncprobe:", err)
	os.Exit(1)
}
