package queue

import (
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// op is one write submitted to the commit loop.
type op struct {
	// prepare runs on the commit loop, in submission order, and writes the
	// operation into the shared batch. It must either write nothing and
	// return an error, or succeed.
	prepare func(b *pebble.Batch) error
	// apply runs under DB.mu once the batch is durable. It publishes the
	// effect to the in-memory index (and so to readers and waiters).
	apply func()
	// undo, if set, runs under DB.mu when the commit failed.
	undo func()
	// exclusive ops are committed in a batch of their own, after every op
	// submitted before them is committed.
	exclusive bool
	// kind marks what the op writes, for the counters.
	inserts, removes bool

	err  error
	done chan struct{}
}

// submit hands o to the commit loop and waits until its batch is durable
// (or failed).
//
// While the disk is full it refuses o with ErrDiskFull at once (also if o
// was queued before the disk filled): o's prepare never ran and nothing of
// it reached the store, so the caller undoes what it changed before
// submitting, as for ErrClosed.
func (db *DB) submit(o *op) error {
	if db.guard.full.Load() {
		db.guard.refuse()
		return ErrDiskFull
	}
	o.done = make(chan struct{})
	db.submitMu.RLock()
	if db.closing {
		db.submitMu.RUnlock()
		return ErrClosed
	}
	db.writeCh <- o
	db.submitMu.RUnlock()
	<-o.done
	return o.err
}

// commitLoop is the group commit: it takes every operation queued while the
// previous commit was syncing, writes them as one batch and syncs once.
func (db *DB) commitLoop() {
	defer close(db.loopDone)
	ops := make([]*op, 0, 64)
	var carry *op // an exclusive op met while gathering
	for {
		first := carry
		carry = nil
		if first == nil {
			var ok bool
			if first, ok = <-db.writeCh; !ok {
				return
			}
		}
		ops = append(ops[:0], first)
	gather:
		for len(ops) < db.maxOps && !first.exclusive {
			select {
			case o, ok := <-db.writeCh:
				if !ok {
					break gather
				}
				if o.exclusive {
					carry = o
					break gather
				}
				ops = append(ops, o)
			default:
				break gather
			}
		}
		db.commit(ops)
	}
}

func (db *DB) commit(ops []*op) {
	db.mu.Lock()
	failed := db.failed
	db.mu.Unlock()
	full := failed == nil && db.guard.full.Load()

	b := db.pdb.NewBatch()
	for _, o := range ops {
		switch {
		case failed != nil:
			o.err = failed
		case full:
			o.err = ErrDiskFull
			db.guard.refuse()
		default:
			o.err = o.prepare(b)
		}
	}
	var cerr error
	if failed == nil && !full && !b.Empty() {
		start := time.Now()
		cerr = commitBatch(b, db.writeOpts)
		if db.obs.Commit != nil && cerr == nil {
			db.obs.Commit(len(ops), db.writeOpts.Sync, time.Since(start))
		}
		c := &db.counters
		c.commits.Add(1)
		if db.writeOpts.Sync {
			c.syncs.Add(1)
		}
		c.ops.Add(uint64(len(ops)))
		var ins, rem bool
		for _, o := range ops {
			ins = ins || (o.inserts && o.err == nil)
			rem = rem || (o.removes && o.err == nil)
		}
		if ins {
			c.appends.Add(1)
		}
		if rem {
			c.removes.Add(1)
		}
	}
	_ = b.Close()

	db.mu.Lock()
	if cerr != nil {
		db.failed = fmt.Errorf("%w: %v", ErrStorage, cerr)
		db.log.Error("commit failed; refusing further writes until restart", "err", cerr)
	}
	for _, o := range ops {
		switch {
		case o.err != nil:
		case cerr != nil:
			o.err = db.failed
			if o.undo != nil {
				o.undo()
			}
		case o.apply != nil:
			o.apply()
		}
	}
	db.mu.Unlock()
	for _, o := range ops {
		close(o.done)
	}
}

// commitBatch commits b, turning Pebble's fatal commit errors (reported by
// panicking through pebbleLogger.Fatalf) into an error.
func commitBatch(b *pebble.Batch, opts *pebble.WriteOptions) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatalError)
			if !ok {
				panic(r)
			}
			err = fe
		}
	}()
	return b.Commit(opts)
}
