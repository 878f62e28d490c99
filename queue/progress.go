package queue

import (
	"time"

	"github.com/q4mproxy/q4mproxy/internal/progress"
)

// watchCompaction logs a line every progress interval while a compaction
// of table runs (Pebble's Compact is one blocking call: the lines say how
// long it has run and what Pebble's compactions are writing), until the
// returned function is called; it returns the compaction's duration.
func (db *DB) watchCompaction(table string, before uint64) (stop func() time.Duration) {
	start := time.Now()
	every := db.progress
	if every == 0 {
		every = progress.DefaultInterval
	}
	if every < 0 {
		return func() time.Duration { return time.Since(start) }
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(max(every, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case now := <-t.C:
				m := db.pdb.Metrics()
				db.log.Info("compacting", "table", table, "elapsed", now.Sub(start).Round(time.Millisecond),
					"bytes_before", before, "compactions_running", m.Compact.NumInProgress,
					"compaction_bytes_in_progress", m.Compact.InProgressBytes)
			}
		}
	}()
	return func() time.Duration {
		close(done)
		<-finished
		return time.Since(start)
	}
}
