package queue

import (
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// slowSyncFS is an in-memory filesystem whose syncs take as long as a
// disk's, so that the commit loop has something to amortise.
type slowSyncFS struct {
	vfs.FS
	delay time.Duration
}

type slowSyncFile struct {
	vfs.File
	delay time.Duration
}

func (f slowSyncFile) Sync() error     { time.Sleep(f.delay); return f.File.Sync() }
func (f slowSyncFile) SyncData() error { time.Sleep(f.delay); return f.File.SyncData() }
func (f slowSyncFile) SyncTo(n int64) (bool, error) {
	time.Sleep(f.delay)
	return f.File.SyncTo(n)
}

func (fs slowSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, fs.delay}, nil
}

func (fs slowSyncFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return nil, err
	}
	return slowSyncFile{f, fs.delay}, nil
}

// TestGroupCommit: concurrent inserters share synced commits, and every
// acknowledged row is there, in per-writer order.
func TestGroupCommit(t *testing.T) {
	fs := slowSyncFS{FS: vfs.NewMem(), delay: 2 * time.Millisecond}
	db, err := Open("db", &Options{FS: fs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), InitialDatabases: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateTable("test", "g", nil); err != nil {
		t.Fatal(err)
	}
	h, err := db.Table("test", "g")
	if err != nil {
		t.Fatal(err)
	}
	before := db.Stats()
	const writers, each = 16, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := db.Insert(h, [][]byte{[]byte(fmt.Sprintf("%d/%d", w, i))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := db.Stats()
	commits, ops := st.Commits-before.Commits, st.Ops-before.Ops
	if ops != writers*each {
		t.Fatalf("ops = %d, want %d", ops, writers*each)
	}
	// Without sharing there would be one commit per insert.
	if commits*3 > ops {
		t.Errorf("%d commits for %d inserts: syncs are not shared", commits, ops)
	}
	t.Logf("%d inserts in %d synced commits (%.1f per commit)", ops, commits, float64(ops)/float64(commits))
	if n := db.Count(h); n != writers*each {
		t.Errorf("Count = %d", n)
	}
	last := make(map[int]int)
	o := db.NewOwner()
	if err := o.Scan(h, func(_ uint64, p []byte) bool {
		var w, i int
		fmt.Sscanf(string(p), "%d/%d", &w, &i)
		if prev, ok := last[w]; ok && i != prev+1 {
			t.Errorf("writer %d: row %d after %d", w, i, prev)
		}
		last[w] = i
		return true
	}); err != nil {
		t.Fatal(err)
	}
}
