package queue

import (
	"fmt"
	"io/fs"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Checkpointer is a Store that can write an online, consistent copy of
// itself that a server can open; *DB is one. The contract is Checkpoint's.
type Checkpointer interface {
	Checkpoint(dir string) error
}

var _ Checkpointer = (*DB)(nil)

// Checkpoint writes a consistent copy of the whole store to dir, online:
// writers and waiters go on meanwhile. The copy holds every write
// acknowledged before Checkpoint was called (the WAL is synced first) and
// nothing of a write begun after it returned; it is one point in time of
// the store, so each row is either in it or consumed. Rows owned at that
// point are in it, not consumed: ownership is not stored, as after a
// restart. Open(dir) serves the copy.
//
// Pebble hard-links the immutable table files when dir is on the store's
// filesystem (so a checkpoint costs little space at first, then the files
// the store compacts away stay with the copy) and copies them otherwise;
// the WAL, MANIFEST and OPTIONS are copied. The copy is made in dir +
// ".partial" and renamed to dir when complete, so dir never names a
// half-written copy. Checkpoint fails with an error matching fs.ErrExist
// when dir exists, and with ErrClosed after Close. Checkpoints are made
// one at a time.
func (db *DB) Checkpoint(dir string) error {
	db.checkpointMu.Lock()
	defer db.checkpointMu.Unlock()
	db.readMu.RLock()
	defer db.readMu.RUnlock()
	if db.isClosed() {
		return ErrClosed
	}
	if _, err := db.guard.Stat(dir); err == nil {
		return fmt.Errorf("queue: checkpoint %s: %w", dir, fs.ErrExist)
	}
	start := time.Now()
	tmp := dir + ".partial"
	if err := db.guard.RemoveAll(tmp); err != nil { // left by a crash
		return fmt.Errorf("queue: checkpoint %s: %w", dir, err)
	}
	if err := db.pdb.Checkpoint(tmp, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("queue: checkpoint %s: %w", dir, err)
	}
	if err := db.guard.Rename(tmp, dir); err != nil {
		_ = db.guard.RemoveAll(tmp)
		return fmt.Errorf("queue: checkpoint %s: %w", dir, err)
	}
	parent, err := db.guard.OpenDir(db.guard.PathDir(dir))
	if err == nil {
		err = parent.Sync()
		_ = parent.Close()
	}
	if err != nil {
		return fmt.Errorf("queue: checkpoint %s: sync its directory: %w", dir, err)
	}
	db.log.Info("checkpoint written", "dir", dir, "duration", time.Since(start).Round(time.Millisecond))
	return nil
}
