package sqlfront

import (
	"errors"
	"strings"
	"time"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/q4mproxy/q4mproxy/queue"
)

// DefaultWaitTimeout is queue_wait's timeout when none is given.
const DefaultWaitTimeout = 60 * time.Second

func isQueueFunc(name string) bool {
	switch name {
	case "queue_wait", "queue_end", "queue_abort", "queue_rowid",
		"queue_set_srcid", "queue_compact", "queue_stats", "queue_backup":
		return true
	}
	return false
}

// queueFuncColumn is the result column of a queue function: Q4M declares
// queue_stats as STRING and the others as INT (BIGINT).
func queueFuncColumn(name, text string) Column {
	if name == "queue_stats" || name == "queue_backup" {
		return textCol(text)
	}
	c := intCol(text)
	c.Length = 21
	return c
}

// initQueueFuncs runs the checks MySQL makes when it initialises a UDF,
// before any function of the statement is evaluated: a failing check fails
// the whole statement with ERROR 1123.
func (s *Session) initQueueFuncs(nodes ...ast.Node) error {
	v := &queueFuncFinder{}
	for _, n := range nodes {
		if n != nil {
			n.Accept(v)
		}
	}
	for _, fc := range v.found {
		if err := s.initQueueFunc(fc); err != nil {
			return err
		}
	}
	return nil
}

type queueFuncFinder struct{ found []*ast.FuncCallExpr }

func (v *queueFuncFinder) Enter(n ast.Node) (ast.Node, bool) {
	if fc, ok := n.(*ast.FuncCallExpr); ok && isQueueFunc(fc.FnName.L) {
		v.found = append(v.found, fc)
	}
	return n, false
}

func (v *queueFuncFinder) Leave(n ast.Node) (ast.Node, bool) { return n, true }

func (s *Session) initQueueFunc(fc *ast.FuncCallExpr) error {
	n := len(fc.Args)
	switch fc.FnName.L {
	case "queue_wait":
		if n == 0 {
			return udfInitError(fc.FnName.O, "queue_wait(table_name[,timeout]): argument error")
		}
	case "queue_abort":
		if !s.owner.InOwnerMode() {
			return udfInitError(fc.FnName.O, "queue_abort(): not in owner mode")
		}
	case "queue_rowid":
		if n != 0 {
			return udfInitError(fc.FnName.O, "queue_rowid(): argument error")
		}
		if !s.owner.InOwnerMode() {
			return udfInitError(fc.FnName.O, "queue_rowid(): not in owner mode")
		}
	case "queue_set_srcid":
		if n != 3 {
			return udfInitError(fc.FnName.O, "queue_set_srcid(source,mode,rowid): argument error")
		}
	case "queue_compact":
		if n != 1 {
			return udfInitError(fc.FnName.O, "queue_compact(table_name): argument error")
		}
	case "queue_stats":
		if n != 1 {
			return udfInitError(fc.FnName.O, "queue_stats(table_name): argument error")
		}
	case "queue_backup":
		if n != 1 {
			return udfInitError(fc.FnName.O, "queue_backup(name): argument error")
		}
	}
	return nil
}

// queueFunc evaluates one of Q4M's functions. Init checks have run.
func (s *Session) queueFunc(env *evalEnv, fc *ast.FuncCallExpr) (any, error) {
	if err := s.initQueueFunc(fc); err != nil {
		return nil, err
	}
	c := &s.eng.counters
	switch fc.FnName.L {
	case "queue_wait":
		c.queueWait.Add(1)
		return s.queueWait(env, fc)
	case "queue_end":
		c.queueEnd.Add(1)
		if err := s.owner.End(); err != nil {
			return nil, err
		}
		return int64(1), nil
	case "queue_abort":
		c.queueAbort.Add(1)
		if _, err := s.owner.Abort(); err != nil {
			return nil, err
		}
		return int64(1), nil
	case "queue_rowid":
		c.queueRowID.Add(1)
		rowid, ok, err := s.owner.RowID()
		if err != nil || !ok {
			return nil, err
		}
		return int64(rowid), nil
	case "queue_set_srcid":
		c.queueSetSrcID.Add(1)
		return s.queueSetSrcID(env, fc)
	case "queue_compact":
		return s.queueCompact(env, fc)
	case "queue_stats":
		return s.queueStats(env, fc)
	case "queue_backup":
		return s.queueBackup(env, fc)
	}
	return nil, notSupported(fc.FnName.O + "()")
}

func (s *Session) queueWait(env *evalEnv, fc *ast.FuncCallExpr) (any, error) {
	args, err := env.args(fc)
	if err != nil {
		return nil, err
	}
	timeout := DefaultWaitTimeout
	conds := args
	if len(args) >= 2 {
		// The last argument is always the timeout, coerced to an integer
		// the way MySQL coerces a UDF's INT argument ('10' -> 10, 't2' -> 0).
		conds = args[:len(args)-1]
		secs := coerceInt(args[len(args)-1])
		timeout = time.Duration(min(max(secs, -1), int64(queue.MaxWait/time.Second))) * time.Second
	}
	subs := make([]queue.Sub, 0, len(conds))
	for _, a := range conds {
		if a == nil {
			return nil, s.failWait() // Q4M dereferences NULL here; we return NULL
		}
		table, expr, hasCond := strings.Cut(toString(a), ":")
		db, name, qualified := strings.Cut(table, ".")
		if !qualified {
			db, name = s.db, table
		}
		sub := queue.Sub{Database: db, Table: name}
		if hasCond {
			sub.Compile = func(t queue.Table) (queue.Filter, error) { return s.eng.compileCond(t, expr) }
		}
		subs = append(subs, sub)
	}
	idx, err := s.owner.Wait(env.ctx, subs, timeout)
	if errors.Is(err, queue.ErrNoSuchTable) || errors.Is(err, errBadCondition) {
		return nil, nil // Q4M: a run-time error makes queue_wait return NULL
	}
	if err != nil {
		return nil, err
	}
	return int64(idx), nil
}

// failWait is queue_wait's NULL result: the owned row is consumed and the
// connection leaves owner mode.
func (s *Session) failWait() error {
	return s.owner.End()
}

// coerceInt converts a value to an integer as MySQL coerces a UDF argument
// declared INT: numbers truncate, strings by their numeric prefix.
func coerceInt(v any) int64 {
	switch x := v.(type) {
	case nil:
		return 0
	case int64:
		return x
	case uint64:
		if x > 1<<62 {
			return 1 << 62
		}
		return int64(x)
	}
	f := toFloat(v)
	switch {
	case f > 1<<62:
		return 1 << 62
	case f < -(1 << 62):
		return -(1 << 62)
	}
	return int64(f)
}
