package sqlfront

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/q4mproxy/q4mproxy/queue"
)

// counters are the engine-wide counters SHOW ENGINE QUEUE STATUS reports
// besides the store's.
type counters struct {
	queueWait, queueEnd, queueAbort, queueRowID, queueSetSrcID atomic.Uint64
	evaluation, compile, compileCacheHit                       atomic.Uint64
}

// queueSetSrcID is queue_set_srcid(sender, mode, rowid): it sets the
// relay source that the connection's next INSERT into a queue table
// carries. Mode 'a' skips rows the destination has already received from
// that sender; 'w' writes them regardless (to rewind a relay).
func (s *Session) queueSetSrcID(env *evalEnv, fc *ast.FuncCallExpr) (any, error) {
	args, err := env.args(fc)
	if err != nil {
		return nil, err
	}
	if args[0] == nil || args[1] == nil || args[2] == nil {
		return nil, nil
	}
	sender := coerceInt(args[0])
	mode := toString(args[1])
	rowid := coerceInt(args[2])
	if sender < 0 || sender >= queue.MaxSenders || (mode != "a" && mode != "w") || rowid < 0 {
		return nil, nil // Q4M: a run-time error, so NULL
	}
	s.pendingSrc = &queue.Source{Sender: int(sender), RowID: uint64(rowid), Force: mode == "w"}
	return int64(1), nil
}

// tableArg evaluates and resolves the argument of queue_stats and
// queue_compact, 'table' or 'db.table'; ok is false when it names no table.
func (s *Session) tableArg(env *evalEnv, fc *ast.FuncCallExpr) (t queue.Table, ok bool, err error) {
	args, err := env.args(fc)
	if err != nil {
		return queue.Table{}, false, err
	}
	v := args[0]
	if v == nil {
		return queue.Table{}, false, nil
	}
	name := toString(v)
	db, table, qualified := strings.Cut(name, ".")
	if !qualified {
		db, table = s.db, name
	}
	t, err = s.eng.db.Table(db, table)
	return t, err == nil, nil
}

func (s *Session) queueCompact(env *evalEnv, fc *ast.FuncCallExpr) (any, error) {
	t, ok, err := s.tableArg(env, fc)
	if err != nil || !ok {
		return nil, err
	}
	if err := s.eng.db.Compact(env.ctx, t); err != nil {
		if errors.Is(err, context.Canceled) || env.ctx.Err() != nil {
			return nil, err
		}
		s.eng.log.Error("queue_compact failed", "table", t.Name(), "err", err)
		return nil, nil
	}
	return int64(1), nil
}

func (s *Session) queueStats(env *evalEnv, fc *ast.FuncCallExpr) (any, error) {
	t, ok, err := s.tableArg(env, fc)
	if err != nil || !ok {
		return nil, err
	}
	st := s.eng.db.TableStats(t)
	return fmt.Sprintf("rows_written: %d\nrows_removed: %d\nwait_immediate: %d\nwait_delayed: %d\nwait_timeout: %d\nrestored_by_abort: %d\nrestored_by_close: %d\nbytes_total: %d\nbytes_removed: %d\n",
		st.RowsWritten, st.RowsRemoved, st.WaitImmediate, st.WaitDelayed, st.WaitTimeout,
		st.RestoredByAbort, st.RestoredByClose, st.BytesTotal, st.BytesRemoved), nil
}

// QueueStats returns the queue store's counters (for SHOW STATUS's
// Queue_* variables). Safe for concurrent use.
func (e *Engine) QueueStats() queue.Stats { return e.db.Stats() }

// engineStatus renders SHOW ENGINE QUEUE STATUS's text in Q4M's layout,
// which Perl's Queue::Q4M::Status parses line by line. Once the store's
// disk has filled it adds a section of its own, "Storage": disk_full (1
// while writes are refused), disk_full_events, writes_refused and
// writes_waiting.
func (e *Engine) engineStatus() string {
	st := e.db.Stats()
	c := &e.counters
	var b strings.Builder
	section := func(title string, kv ...any) {
		fmt.Fprintf(&b, "\n%s\n%s\n", title, strings.Repeat("-", 36))
		for i := 0; i < len(kv); i += 2 {
			fmt.Fprintf(&b, "%-16s %20d\n", kv[i], kv[i+1])
		}
	}
	section("I/O calls", "sys_read", st.Reads, "sys_write", st.Commits, "sys_sync", st.Syncs, "read_cachehit", uint64(0))
	section("Writer thread", "append", st.Appends, "remove", st.Removes)
	section("Conditional subscription", "evaluation", c.evaluation.Load(), "compile", c.compile.Load(), "compile_cachehit", c.compileCacheHit.Load())
	section("High-level stats", "rows_written", st.RowsWritten, "rows_removed", st.RowsRemoved,
		"queue_wait", c.queueWait.Load(), "queue_end", c.queueEnd.Load(), "queue_abort", c.queueAbort.Load(),
		"queue_rowid", c.queueRowID.Load(), "queue_set_srcid", c.queueSetSrcID.Load())
	if st.DiskFullEvents > 0 { // not Q4M's: shown once the disk has filled
		full := uint64(0)
		if st.DiskFull {
			full = 1
		}
		section("Storage", "disk_full", full, "disk_full_events", st.DiskFullEvents,
			"writes_refused", st.WritesRefused, "writes_waiting", uint64(max(st.WritesWaiting, 0)))
	}
	return b.String()
}
