package integration

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// mountTmpfs mounts a tmpfs of the given size (as mount -o size=) in a
// temporary directory, unmounted when the test ends; it skips the test
// when it cannot (not root, or no permission to mount).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs (run as root, e.g. through ./test.sh in CI)")
	}
	mnt := filepath.Join(t.TempDir(), "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "q4mproxy-test", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (%v: %s); skipping the full-disk test", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { // after the server's cleanup (cleanups run last first)
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	})
	return mnt
}

// engineStatusValue reads one counter of SHOW ENGINE QUEUE STATUS (-1 if
// it is not shown).
func engineStatusValue(g *gconn, name string) int64 {
	g.t.Helper()
	text := g.rows("SHOW ENGINE QUEUE STATUS")[0][2]
	m := regexp.MustCompile(`(?m)^` + name + `\s+(\d+)$`).FindStringSubmatch(text)
	if m == nil {
		return -1
	}
	n, _ := strconv.ParseInt(m[1], 10, 64)
	return n
}

// TestDiskFull runs the server on a 48 MB tmpfs, with 16 MB of it taken by
// another file, and a producer inserting incompressible rows until the
// disk is full. The INSERT that finds the disk full is answered at once
// with ERROR 1114 (as InnoDB answers), also through the mysql CLI; reads
// and queue_wait's take go on; queue_end is refused and the connection
// keeps its row; SHOW ENGINE QUEUE STATUS shows disk_full 1; the log holds
// a few lines, not one per retry. Once the other file is deleted the
// server accepts writes again without a restart, and after a restart every
// acknowledged row is there, in order, and no refused one.
func TestDiskFull(t *testing.T) {
	mnt := mountTmpfs(t, "48m")
	filler := filepath.Join(mnt, "other-program")
	if err := os.WriteFile(filler, make([]byte, 16<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	bin, err := fastBin()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, bin: bin, dataDir: filepath.Join(mnt, "data")}
	s.start()
	t.Cleanup(func() {
		if s.cmd != nil {
			s.kill()
		}
		if t.Failed() {
			t.Logf("server log:\n%s", s.logs)
		}
	})
	start := time.Now()

	g := &gconn{t: t, c: s.conn(t, "interpolateParams=true", "readTimeout=60s"), m: driverModes[1]}
	g.exec("CREATE TABLE q (id BIGINT NOT NULL, pad BLOB) ENGINE=queue")
	// Producers insert until each is refused: the disk fills under
	// several writes in flight, which are either acknowledged or refused.
	const producers, perInsert = 4, 16
	q := "INSERT INTO q (id, pad) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?),", perInsert), ",")
	var (
		mu        sync.Mutex
		acked     = map[int64]bool{}
		refusedIn []time.Duration
		wg        sync.WaitGroup
	)
	for p := range producers {
		c := s.conn(t, "interpolateParams=true", "readTimeout=60s")
		wg.Go(func() {
			for i := 0; ; i++ {
				if i > 2000 {
					t.Error("the disk never filled")
					return
				}
				args := make([]any, 0, 2*perInsert)
				first := int64(p+1)*1_000_000 + int64(i*perInsert)
				for k := range perInsert {
					pad := make([]byte, 4000)
					_, _ = rand.Read(pad) // incompressible
					args = append(args, first+int64(k), pad)
				}
				t0 := time.Now()
				_, err := c.ExecContext(t.Context(), q, args...)
				if err != nil {
					d := time.Since(t0)
					wantMySQLError(t, err, 1114, "HY000", "The table 'q' is full", false)
					mu.Lock()
					refusedIn = append(refusedIn, d)
					mu.Unlock()
					return
				}
				mu.Lock()
				for k := range perInsert {
					acked[first+int64(k)] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("disk full after %d acknowledged rows (%.1f MB); the refused INSERTs were answered in %v",
		len(acked), float64(len(acked)*4000)/(1<<20), refusedIn)
	next := int64(9_000_000)

	// Writes refused, reads served.
	_, err = g.execErr("INSERT INTO q (id, pad) VALUES (?, ?)", next, "x")
	wantMySQLError(t, err, 1114, "HY000", "The table 'q' is full", false)
	out, _ := s.mysqlCLI(t, "INSERT INTO q (id, pad) VALUES (0, 'cli');\n", "test")
	if !strings.Contains(out, "ERROR 1114 (HY000)") || !strings.Contains(out, "The table 'q' is full") {
		t.Errorf("mysql CLI while the disk is full: %q; want ERROR 1114 (HY000) ... The table 'q' is full", out)
	}
	g.wantValue(strconv.Itoa(len(acked)), "SELECT COUNT(*) FROM q")
	g.wantValue("1", "SELECT queue_wait('q', 0)")
	consumed, _ := strconv.ParseInt(g.value("SELECT id FROM q"), 10, 64)
	if !acked[consumed] {
		t.Errorf("queue_wait took row %d, not an acknowledged one", consumed)
	}
	_, err = g.execErr("SELECT queue_end()")
	wantMySQLError(t, err, 1114, "HY000", "The table 'q' is full", false)
	g.wantValue("1", "SELECT queue_rowid()") // still owned
	if v := engineStatusValue(g, "disk_full"); v != 1 {
		t.Errorf("SHOW ENGINE QUEUE STATUS: disk_full %d, want 1", v)
	}

	// Space is freed: writes are accepted again, without a restart.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	eventually(t, time.Minute, "an INSERT to be accepted after space was freed", func() bool {
		_, err := g.execErr("INSERT INTO q (id, pad) VALUES (?, ?)", next, "after")
		if err != nil && !strings.Contains(err.Error(), "1114") {
			t.Fatalf("INSERT after freeing space: %v", err)
		}
		return err == nil
	})
	acked[next] = true
	resumed := time.Since(freed)
	g.wantValue("1", "SELECT queue_end()")
	delete(acked, consumed)
	if v := engineStatusValue(g, "disk_full"); v != 0 {
		t.Errorf("SHOW ENGINE QUEUE STATUS after recovery: disk_full %d, want 0", v)
	}
	if v := engineStatusValue(g, "disk_full_events"); v != 1 {
		t.Errorf("SHOW ENGINE QUEUE STATUS: disk_full_events %d, want 1", v)
	}
	elapsed := time.Since(start)
	loud := 0
	for _, l := range strings.Split(s.logs.String(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) || strings.Contains(l, `"level":"WARN"`) {
			loud++
		}
	}
	if most := 6 + 2*int(elapsed/(10*time.Second)); loud > most {
		t.Errorf("%d ERROR and WARN lines in %v; want at most %d (rate-limited)", loud, elapsed.Round(time.Second), most)
	}
	t.Logf("writes accepted %v after the other file was deleted; %d ERROR/WARN log lines in %v; row %d consumed",
		resumed.Round(time.Millisecond), loud, elapsed.Round(time.Millisecond), consumed)

	// Nothing acknowledged lost, nothing refused stored, each producer's
	// rows in its order.
	s.restart()
	g = newGConn(t, s, driverModes[1])
	var got []int64
	last := map[int64]int64{}
	for g.value("SELECT queue_wait('q', 0)") == "1" {
		id, _ := strconv.ParseInt(g.value("SELECT id FROM q"), 10, 64)
		got = append(got, id)
		if p := id / 1_000_000; id <= last[p] {
			t.Errorf("row %d after row %d of the same producer", id, last[p])
		} else {
			last[p] = id
		}
	}
	g.wantValue("1", "SELECT queue_end()")
	lost, extra := 0, 0
	seen := map[int64]bool{}
	for _, id := range got {
		seen[id] = true
		if !acked[id] {
			extra++
		}
	}
	for id := range acked {
		if !seen[id] {
			lost++
		}
	}
	if lost != 0 || extra != 0 || len(got) != len(acked) {
		t.Errorf("after a restart: %d rows; %d acknowledged rows missing, %d rows not acknowledged", len(got), lost, extra)
	}
}
