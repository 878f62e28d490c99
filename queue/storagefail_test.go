package queue

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// failSyncFS fails every sync once armed.
type failSyncFS struct {
	vfs.FS
	armed *atomic.Bool
}

type failSyncFile struct {
	vfs.File
	armed *atomic.Bool
}

var errInjected = errors.New("injected sync failure")

func (f failSyncFile) Sync() error {
	if f.armed.Load() {
		return errInjected
	}
	return f.File.Sync()
}

func (f failSyncFile) SyncData() error {
	if f.armed.Load() {
		return errInjected
	}
	return f.File.SyncData()
}

func (f failSyncFile) SyncTo(n int64) (bool, error) {
	if f.armed.Load() {
		return false, errInjected
	}
	return f.File.SyncTo(n)
}

func (fs failSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	return failSyncFile{f, fs.armed}, nil
}

func (fs failSyncFS) ReuseForWrite(o, n string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.FS.ReuseForWrite(o, n, c)
	if err != nil {
		return nil, err
	}
	return failSyncFile{f, fs.armed}, nil
}

// TestSyncFailureNotAcknowledged: a failed sync is reported to the writer,
// the row never becomes visible, and later writes are refused.
func TestSyncFailureNotAcknowledged(t *testing.T) {
	armed := new(atomic.Bool)
	db, err := Open("db", &Options{FS: failSyncFS{vfs.NewMem(), armed}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), InitialDatabases: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateTable("test", "f", nil); err != nil {
		t.Fatal(err)
	}
	h, _ := db.Table("test", "f")
	if _, err := db.Insert(h, [][]byte{[]byte("ok")}); err != nil {
		t.Fatal(err)
	}
	armed.Store(true)
	if _, err := db.Insert(h, [][]byte{[]byte("lost")}); !errors.Is(err, ErrStorage) {
		t.Fatalf("insert with a failing sync: %v; want ErrStorage", err)
	}
	if n := db.Count(h); n != 1 {
		t.Errorf("Count = %d after a failed insert; want 1", n)
	}
	armed.Store(false)
	if _, err := db.Insert(h, [][]byte{[]byte("after")}); !errors.Is(err, ErrStorage) {
		t.Errorf("insert after a failure: %v; want ErrStorage (writes refused)", err)
	}
	o := db.NewOwner()
	if idx, err := o.Wait(t.Context(), []Sub{{Database: "test", Table: "f"}}, 0); idx != 1 || err != nil {
		t.Fatalf("Wait = %d, %v", idx, err)
	}
	if err := o.End(); !errors.Is(err, ErrStorage) {
		t.Errorf("consume after a failure: %v; want ErrStorage", err)
	}
}
