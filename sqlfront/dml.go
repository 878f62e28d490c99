package sqlfront

import (
	"context"
	"errors"
	"time"

	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
)

// errTableChanged makes execStmt run an INSERT again: the table was
// altered between reading its definition and writing the rows.
var errTableChanged = errors.New("sqlfront: table changed; retry")

func (s *Session) insert(ctx context.Context, ins *ast.InsertStmt, params []any) (*Result, error) {
	if ins.Select != nil {
		return nil, notSupported("INSERT ... SELECT")
	}
	return s.insertRows(ctx, ins, params)
}

// insertRows inserts the rows of ins.Lists.
func (s *Session) insertRows(ctx context.Context, ins *ast.InsertStmt, params []any) (*Result, error) {
	t, sch, targets, err := s.resolveInsert(ins)
	if err != nil {
		return nil, err
	}
	env := &evalEnv{ctx: ctx, s: s, params: params, sch: sch, clause: "field list"}
	now := time.Now()
	payloads := make([][]byte, 0, len(ins.Lists))
	for r, list := range ins.Lists {
		rowNum := r + 1
		if len(list) != len(targets) && !(len(list) == 0 && len(ins.Columns) == 0) {
			return nil, errorf(ErrCodeWrongValueCount, "Column count doesn't match value count at row %d", rowNum)
		}
		vals := make([]any, len(sch.Columns))
		set := make([]bool, len(sch.Columns))
		for k := range list {
			i := targets[k]
			c := sch.Columns[i]
			var v any
			if _, isDefault := list[k].(*ast.DefaultExpr); isDefault {
				dv, err := defaultValue(c, rowNum, now)
				if err != nil {
					return nil, err
				}
				vals[i], set[i] = dv, true
				continue
			} else {
				env.row = vals
				if v, err = env.eval(list[k]); err != nil {
					return nil, err
				}
			}
			if v == nil {
				if c.NotNull {
					return nil, errorf(ErrCodeBadNull, "Column '%s' cannot be null", c.Name)
				}
				vals[i], set[i] = nil, true
				continue
			}
			cv, err := convertValue(c, v, rowNum)
			if err != nil {
				return nil, err
			}
			vals[i], set[i] = cv, true
		}
		if err := fillDefaults(sch, vals, set, rowNum, now); err != nil {
			return nil, err
		}
		payloads = append(payloads, encodeRow(vals))
	}
	return s.insertPayloads(t, payloads)
}

// insertPayloads writes encoded rows into t in one insert, with the
// pending relay source; errTableChanged when t's definition changed.
func (s *Session) insertPayloads(t queue.Table, payloads [][]byte) (*Result, error) {
	if len(payloads) == 0 {
		return &Result{}, nil
	}
	src := s.pendingSrc
	_, skipped, err := s.eng.db.InsertFrom(t, payloads, src)
	if errors.Is(err, queue.ErrTableChanged) {
		return nil, errTableChanged
	}
	s.pendingSrc = nil // the statement reached the table: the source is used up
	if err != nil {
		return nil, &TableError{Database: t.Database(), Table: t.Name(), Err: err}
	}
	if skipped {
		s.eng.log.Info("skipping forwarded duplicates", "table", t.Name(), "sender", src.Sender, "source_rowid", src.RowID)
	}
	s.lastRowCount = int64(len(payloads))
	return &Result{AffectedRows: uint64(len(payloads))}, nil
}

// resolveInsert resolves the table ins inserts into (not one of a system
// schema) and the schema columns its values go to.
func (s *Session) resolveInsert(ins *ast.InsertStmt) (queue.Table, *tableSchema, []int, error) {
	tn, err := singleTable(ins.Table.TableRefs)
	if err != nil {
		return queue.Table{}, nil, nil, err
	}
	if isSystemSchema(tn.Schema.L) {
		return queue.Table{}, nil, nil, notSupported("writes to " + tn.Schema.O)
	}
	t, sch, err := s.resolve(tn)
	if err != nil {
		return queue.Table{}, nil, nil, err
	}
	targets, err := insertTargets(ins, sch)
	if err != nil {
		return queue.Table{}, nil, nil, err
	}
	return t, sch, targets, nil
}

// insertTargets returns the indexes of an INSERT's target columns, in
// statement order.
func insertTargets(ins *ast.InsertStmt, sch *tableSchema) ([]int, error) {
	targets := make([]int, 0, len(sch.Columns))
	if len(ins.Columns) == 0 && !ins.Setlist {
		for i := range sch.Columns {
			targets = append(targets, i)
		}
		return targets, nil
	}
	seen := make(map[int]bool, len(ins.Columns))
	for _, cn := range ins.Columns {
		i, _ := sch.column(cn.Name.O)
		if i < 0 {
			return nil, errorf(ErrCodeBadField, "Unknown column '%s' in 'field list'", cn.Name.O)
		}
		if seen[i] {
			return nil, errorf(ErrCodeFieldSpecified, "Column '%s' specified twice", cn.Name.O)
		}
		seen[i] = true
		targets = append(targets, i)
	}
	return targets, nil
}

// fillDefaults gives the columns of a row that the statement did not set
// (set[i] false) their default values.
func fillDefaults(sch *tableSchema, vals []any, set []bool, rowNum int, now time.Time) error {
	for i, c := range sch.Columns {
		if set[i] {
			continue
		}
		dv, err := defaultValue(c, rowNum, now)
		if err != nil {
			return err
		}
		vals[i] = dv
	}
	return nil
}

// defaultValue is the value of an omitted column, with strict mode's error
// for a NOT NULL column without a default.
func defaultValue(c *columnDef, row int, now time.Time) (any, error) {
	switch {
	case c.DefaultNow:
		return formatDatetime(pmysql.TypeDatetime, now, c.Decimal), nil
	case c.HasDefault:
		if s, ok := c.Default.(string); ok && c.Binary {
			return []byte(s), nil
		}
		return c.Default, nil
	case !c.NotNull:
		return nil, nil
	}
	return nil, errorf(ErrCodeNoDefault, "Field '%s' doesn't have a default value", c.Name)
}

func (s *Session) delete(ctx context.Context, del *ast.DeleteStmt, params []any) (*Result, error) {
	if del.IsMultiTable {
		return nil, notSupported("multi-table DELETE")
	}
	tn, err := singleTable(del.TableRefs.TableRefs)
	if err != nil {
		return nil, err
	}
	t, sch, err := s.resolve(tn)
	if err != nil {
		return nil, err
	}
	offset, count, err := s.limit(del.Limit, params)
	if err != nil {
		return nil, err
	}
	if err := checkColumns(sch, del.Where, "where clause"); err != nil {
		return nil, err
	}
	if del.Order != nil {
		for _, it := range del.Order.Items {
			if err := checkColumns(sch, it.Expr, "order clause"); err != nil {
				return nil, err
			}
		}
	}
	env := &evalEnv{ctx: ctx, s: s, params: params, sch: sch, clause: "where clause"}
	type cand struct {
		rowid uint64
		row   []any
	}
	var cands []cand
	ordered := del.Order != nil
	err = s.scanWhere(s.tableSource(t, sch), env, del.Where, func(rowid uint64, row []any) (bool, error) {
		cands = append(cands, cand{rowid, row})
		return ordered || count < 0 || int64(len(cands)) < offset+count, nil
	})
	if err != nil {
		return nil, err
	}
	if ordered {
		rows := make([][]any, len(cands))
		for i, c := range cands {
			rows[i] = c.row
		}
		perm, err := s.sortRows(env, rows, del.Order.Items)
		if err != nil {
			return nil, err
		}
		sorted := make([]cand, len(cands))
		for i, j := range perm {
			sorted[i] = cands[j]
		}
		cands = sorted
	}
	ids := make([]uint64, 0, len(cands))
	for _, c := range cands {
		ids = append(ids, c.rowid)
	}
	if count >= 0 && int64(len(ids)) > count {
		ids = ids[:count]
	}
	n, err := s.owner.DeleteRows(t, ids)
	if err != nil {
		return nil, &TableError{Database: t.Database(), Table: t.Name(), Err: err}
	}
	s.lastRowCount = int64(n)
	return &Result{AffectedRows: uint64(n)}, nil
}

// update refuses as Q4M does: the engine has no UPDATE, so MySQL reports
// 1031 as soon as a row matches; with no match the statement succeeds.
func (s *Session) update(ctx context.Context, up *ast.UpdateStmt, params []any) (*Result, error) {
	if up.MultipleTable {
		return nil, notSupported("multi-table UPDATE")
	}
	tn, err := singleTable(up.TableRefs.TableRefs)
	if err != nil {
		return nil, err
	}
	t, sch, err := s.resolve(tn)
	if err != nil {
		return nil, err
	}
	for _, a := range up.List {
		if i, _ := sch.column(a.Column.Name.O); i < 0 {
			return nil, errorf(ErrCodeBadField, "Unknown column '%s' in 'field list'", a.Column.Name.O)
		}
	}
	if err := checkColumns(sch, up.Where, "where clause"); err != nil {
		return nil, err
	}
	env := &evalEnv{ctx: ctx, s: s, params: params, sch: sch, clause: "where clause"}
	matched := false
	err = s.scanWhere(s.tableSource(t, sch), env, up.Where, func(uint64, []any) (bool, error) {
		matched = true
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if matched {
		return nil, errorf(ErrCodeTableNoOption, "Table storage engine for '%s' doesn't have this option", t.Name())
	}
	return &Result{}, nil
}
