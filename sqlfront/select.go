package sqlfront

import (
	"context"
	"slices"
	"sort"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/q4mproxy/q4mproxy/queue"
)

func (s *Session) selectStmt(ctx context.Context, sel *ast.SelectStmt, params []any) (*Result, error) {
	if sel.Kind != ast.SelectStmtKindSelect {
		return nil, notSupported("UNION, VALUES and TABLE statements")
	}
	if sel.From == nil {
		return s.selectNoTable(ctx, sel, params)
	}
	tn, err := singleTable(sel.From.TableRefs)
	if err != nil {
		return nil, err
	}
	var src *source
	if isSystemSchema(tn.Schema.L) || (tn.Schema.L == "" && isSystemSchema(strings.ToLower(s.db))) {
		if src, err = s.systemTable(tn); err != nil {
			return nil, err
		}
		if src.empty && emptyInEmptyOut(sel) {
			// mysqldump's tablespace queries (GROUP BY, DISTINCT and
			// subqueries over FILES): whatever they filter or group,
			// no rows in means no rows out.
			return s.emptyResult(sel, src)
		}
	}
	if src != nil && sel.GroupBy != nil && sel.Having == nil && !sel.Distinct && sel.OrderBy == nil && sel.Limit == nil {
		return s.groupedSelect(ctx, sel, src, params) // opsinfo.go: monitoring's counts by state
	}
	if sel.GroupBy != nil || sel.Having != nil || sel.Distinct {
		return nil, notSupported("GROUP BY, HAVING and DISTINCT")
	}
	if sel.LockInfo != nil && sel.LockInfo.LockType != ast.SelectLockNone {
		return nil, notSupported("SELECT ... FOR UPDATE / LOCK IN SHARE MODE on queue tables")
	}
	fromTable := src == nil
	if src == nil {
		t, sch, err := s.resolve(tn)
		if err != nil {
			return nil, err
		}
		src = s.tableSource(t, sch)
	}
	env := &evalEnv{ctx: ctx, s: s, params: params, sch: src.sch}
	where := sel.Where
	pc := s.lastProj
	known := fromTable && pc != nil && pc.sel == sel && pc.sch == src.sch && pc.db == src.db && pc.name == src.name
	if !known { // a statement and schema seen last time passed these checks
		if err := checkColumns(src.sch, sel.Where, "where clause"); err != nil {
			return nil, err
		}
		if sel.OrderBy != nil {
			for _, it := range sel.OrderBy.Items {
				if err := checkColumns(src.sch, it.Expr, "order clause"); err != nil {
					return nil, err
				}
			}
		}
		for _, f := range sel.Fields.Fields {
			if f.Expr != nil {
				if err := checkColumns(src.sch, f.Expr, "field list"); err != nil {
					return nil, err
				}
			}
		}
	}

	// The one-statement consume form of MySQL 5.1/5.5:
	// SELECT ... FROM t WHERE queue_wait('t'). queue_wait runs first, once;
	// the scan then runs in the mode it left.
	if fc := queueWaitCall(where); fc != nil {
		if err := s.initQueueFuncs(fc); err != nil {
			return nil, err
		}
		v, err := s.queueFunc(env, fc)
		if err != nil {
			return nil, err
		}
		if v == nil || !truth(v) {
			return s.emptyResult(sel, src)
		}
		where = nil
	} else {
		for _, f := range sel.Fields.Fields {
			if f.Expr != nil && containsQueueFunc(f.Expr) {
				return nil, udfInitError("queue_wait", "queue functions cannot be evaluated per row of a table; use SELECT queue_wait(...) or SELECT * FROM t WHERE queue_wait(...)")
			}
		}
		if where != nil && containsQueueFunc(where) {
			return nil, udfInitError("queue_wait", "as of MySQL 5.6, the function cannot be used within a WHERE clause")
		}
	}

	// COUNT(*) or COUNT(expr) alone.
	if agg, star := countAgg(sel); agg != nil {
		var n int64
		switch {
		case star && where == nil && src.count != nil:
			n = src.count()
		default:
			err := s.scanWhere(src, env, where, func(_ uint64, row []any) (bool, error) {
				if !star {
					env.row, env.clause = row, "field list"
					v, err := env.eval(agg.Args[0])
					if err != nil || v == nil {
						return true, err
					}
				}
				n++
				return true, nil
			})
			if err != nil {
				return nil, err
			}
		}
		col := intCol(fieldName(sel.Fields.Fields[0]))
		col.Flags |= flagNotNull
		s.lastFoundRows = 1
		return &Result{Columns: []Column{col}, Rows: [][]any{{n}}}, nil
	}

	var cols []Column
	var proj []projItem
	if known {
		cols, proj = slices.Clone(pc.cols), pc.proj
	} else {
		var err error
		if cols, proj, err = s.projection(sel, src); err != nil {
			return nil, err
		}
		if fromTable && !slices.ContainsFunc(proj, func(p projItem) bool { return p.expr != nil }) {
			// Only columns: the result's columns do not depend on the rows.
			s.lastProj = &projCache{sel: sel, sch: src.sch, db: src.db, name: src.name, cols: slices.Clone(cols), proj: proj}
		}
	}
	offset, count, err := s.limit(sel.Limit, params)
	if err != nil {
		return nil, err
	}
	var matches [][]any
	ordered := sel.OrderBy != nil
	err = s.scanWhere(src, env, where, func(_ uint64, row []any) (bool, error) {
		matches = append(matches, row)
		return ordered || count < 0 || int64(len(matches)) < offset+count, nil
	})
	if err != nil {
		return nil, err
	}
	if ordered {
		if _, err := s.sortRows(env, matches, sel.OrderBy.Items); err != nil {
			return nil, err
		}
	}
	matches = applyLimit(matches, offset, count)
	res := &Result{Columns: cols, Rows: make([][]any, 0, len(matches))}
	env.clause = "field list"
	for _, row := range matches {
		out := make([]any, 0, len(cols))
		for _, p := range proj {
			if p.expr == nil {
				out = append(out, row[p.col])
				continue
			}
			env.row = row
			v, err := env.eval(p.expr)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		res.Rows = append(res.Rows, out)
	}
	fixExprColumnTypes(res, proj)
	s.lastFoundRows = int64(len(res.Rows))
	return res, nil
}

func isSystemSchema(name string) bool {
	switch name {
	case "information_schema", "mysql", "performance_schema", "sys":
		return true
	}
	return false
}

// source is what a SELECT reads: a queue table, or a system table made up
// on the spot.
// projCache is the checked projection of the session's last SELECT of
// table columns: a consumer repeats one statement (SELECT ... FROM t WHERE
// queue_wait('t')), so its column checks and result columns are kept while
// the statement's parsed node (the session's parse cache hands out the same
// one for the same text), its table's schema and the names it resolved to
// stay the same.
type projCache struct {
	sel      *ast.SelectStmt
	sch      *tableSchema
	db, name string
	cols     []Column
	proj     []projItem
}

type source struct {
	db, name string
	sch      *tableSchema
	// scan calls fn with each row in order; fn returns false to stop.
	scan func(fn func(rowid uint64, row []any) bool) error
	// count, if set, answers COUNT(*) without WHERE.
	count func() int64
	// empty says scan yields no row (a catalog table that is empty here).
	empty bool
}

// emptyInEmptyOut reports whether sel answers no rows when its table has
// none: unless an aggregate without GROUP BY makes one row of nothing.
func emptyInEmptyOut(sel *ast.SelectStmt) bool {
	if sel.GroupBy != nil {
		return true
	}
	v := &routeVisitor{}
	sel.Fields.Accept(v)
	return !v.aggregate
}

// tableSource reads a queue table with the session's visibility.
func (s *Session) tableSource(t queue.Table, sch *tableSchema) *source {
	return &source{
		db: t.Database(), name: t.Name(), sch: sch,
		scan: func(fn func(uint64, []any) bool) error { return s.scan(t, sch, fn) },
		count: func() int64 {
			if s.owner.InOwnerMode() {
				if s.owner.OwnsRowIn(t) {
					return 1
				}
				return 0
			}
			return int64(s.eng.db.Count(t)) // Q4M: counts rows owned by others too
		},
	}
}

// scan decodes the rows the session can see.
func (s *Session) scan(t queue.Table, sch *tableSchema, fn func(rowid uint64, row []any) bool) error {
	d := &s.rows
	if d.fn != nil { // a scan within a scan: a decoder of its own
		d = &rowDecoder{}
		defer d.reset()
		return d.scan(s.owner, t, sch, fn, d.row)
	}
	defer d.reset()
	return d.scan(s.owner, t, sch, fn, s.scanRow)
}

// rowDecoder decodes the payloads of one scan into rows for its fn.
type rowDecoder struct {
	fn    func(rowid uint64, row []any) bool
	ncols int
	err   error
}

func (d *rowDecoder) scan(c queue.Conn, t queue.Table, sch *tableSchema, fn func(uint64, []any) bool, row func(uint64, []byte) bool) error {
	d.fn, d.ncols, d.err = fn, len(sch.Columns), nil
	err := c.Scan(t, row)
	if d.err != nil {
		return d.err
	}
	return err
}

func (d *rowDecoder) reset() { d.fn, d.err = nil, nil }

func (d *rowDecoder) row(rowid uint64, payload []byte) bool {
	row, err := decodeRow(payload, nil)
	if err != nil {
		d.err = err
		return false
	}
	for len(row) < d.ncols {
		row = append(row, nil)
	}
	return d.fn(rowid, row)
}

// checkColumns reports the first column n refers to that the table lacks,
// as MySQL does before reading any row.
func checkColumns(sch *tableSchema, n ast.Node, clause string) error {
	if n == nil {
		return nil
	}
	v := &columnFinder{}
	n.Accept(v)
	for _, c := range v.cols {
		if i, _ := sch.column(c.Name.O); i < 0 {
			name := c.Name.O
			if c.Table.O != "" {
				name = c.Table.O + "." + name
			}
			return errorf(ErrCodeBadField, "Unknown column '%s' in '%s'", name, clause)
		}
	}
	return nil
}

type columnFinder struct{ cols []*ast.ColumnName }

func (v *columnFinder) Enter(n ast.Node) (ast.Node, bool) {
	if c, ok := n.(*ast.ColumnNameExpr); ok {
		v.cols = append(v.cols, c.Name)
	}
	return n, false
}

func (v *columnFinder) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// scanWhere calls fn for each row the session can see that satisfies where
// (nil: every row), in rowid order. fn returns false to stop; an error from
// where or fn ends the scan and is returned.
func (s *Session) scanWhere(src *source, env *evalEnv, where ast.ExprNode, fn func(rowid uint64, row []any) (bool, error)) error {
	var ferr error
	err := src.scan(func(rowid uint64, row []any) bool {
		if where != nil {
			env.row, env.clause = row, "where clause"
			v, err := env.eval(where)
			if err != nil {
				ferr = err
				return false
			}
			if v == nil || !truth(v) {
				return true
			}
		}
		more, err := fn(rowid, row)
		if err != nil {
			ferr = err
			return false
		}
		return more
	})
	if ferr != nil {
		return ferr
	}
	return err
}

func singleTable(refs *ast.Join) (*ast.TableName, error) {
	if refs == nil || refs.Right != nil {
		return nil, notSupported("joins")
	}
	ts, ok := refs.Left.(*ast.TableSource)
	if !ok {
		return nil, notSupported("joins and subqueries")
	}
	tn, ok := ts.Source.(*ast.TableName)
	if !ok {
		return nil, notSupported("subqueries in FROM")
	}
	return tn, nil
}

// queueWaitCall returns the queue_wait call if where is exactly one.
func queueWaitCall(where ast.ExprNode) *ast.FuncCallExpr {
	for {
		p, ok := where.(*ast.ParenthesesExpr)
		if !ok {
			break
		}
		where = p.Expr
	}
	if fc, ok := where.(*ast.FuncCallExpr); ok && fc.FnName.L == "queue_wait" {
		return fc
	}
	return nil
}

func containsQueueFunc(n ast.Node) bool {
	v := &queueFuncFinder{}
	n.Accept(v)
	return len(v.found) > 0
}

// countAgg returns the COUNT(...) call if it is the only field, and whether
// it is COUNT(*) (parsed as COUNT(1)).
func countAgg(sel *ast.SelectStmt) (*ast.AggregateFuncExpr, bool) {
	if len(sel.Fields.Fields) != 1 {
		return nil, false
	}
	agg, ok := sel.Fields.Fields[0].Expr.(*ast.AggregateFuncExpr)
	if !ok || !strings.EqualFold(agg.F, "count") || agg.Distinct || len(agg.Args) != 1 {
		return nil, false
	}
	v, isConst := agg.Args[0].(*test_driver.ValueExpr)
	return agg, isConst && v.GetValue() != nil
}

func fieldName(f *ast.SelectField) string {
	if f.AsName.O != "" {
		return f.AsName.O
	}
	if cn, ok := f.Expr.(*ast.ColumnNameExpr); ok {
		return cn.Name.Name.O
	}
	return f.Text()
}

// projItem is one output column: a table column (col) or an expression.
type projItem struct {
	col  int
	expr ast.ExprNode
}

func (s *Session) projection(sel *ast.SelectStmt, src *source) ([]Column, []projItem, error) {
	sch := src.sch
	var cols []Column
	var proj []projItem
	for _, f := range sel.Fields.Fields {
		if f.WildCard != nil {
			for i, c := range sch.Columns {
				cols = append(cols, c.resultColumn(src.db, src.name))
				proj = append(proj, projItem{col: i})
			}
			continue
		}
		if _, ok := f.Expr.(*ast.AggregateFuncExpr); ok {
			return nil, nil, notSupported("aggregate functions other than COUNT(*) alone")
		}
		if cn, ok := f.Expr.(*ast.ColumnNameExpr); ok {
			i, c := sch.column(cn.Name.Name.O)
			if c == nil {
				return nil, nil, errorf(ErrCodeBadField, "Unknown column '%s' in 'field list'", cn.Name.Name.O)
			}
			col := c.resultColumn(src.db, src.name)
			col.Name = fieldName(f)
			cols = append(cols, col)
			proj = append(proj, projItem{col: i})
			continue
		}
		cols = append(cols, textCol(fieldName(f)))
		proj = append(proj, projItem{col: -1, expr: f.Expr})
	}
	return cols, proj, nil
}

func (s *Session) emptyResult(sel *ast.SelectStmt, src *source) (*Result, error) {
	if agg, _ := countAgg(sel); agg != nil {
		return &Result{Columns: []Column{intCol(fieldName(sel.Fields.Fields[0]))}, Rows: [][]any{{int64(0)}}}, nil
	}
	cols, _, err := s.projection(sel, src)
	if err != nil {
		return nil, err
	}
	s.lastFoundRows = 0
	return &Result{Columns: cols, Rows: [][]any{}}, nil
}

// limit evaluates LIMIT [offset,] count; count < 0 means none.
func (s *Session) limit(l *ast.Limit, params []any) (int64, int64, error) {
	if l == nil {
		return 0, -1, nil
	}
	env := &evalEnv{s: s, params: params, clause: "limit clause"}
	get := func(e ast.ExprNode) (int64, error) {
		if e == nil {
			return 0, nil
		}
		v, err := env.eval(e)
		if err != nil {
			return 0, err
		}
		n, ok := asInt(v)
		if !ok || n < 0 {
			if u, isU := v.(uint64); isU {
				return int64(min(u, 1<<62)), nil
			}
			return 0, errorf(ErrCodeWrongArguments, "Incorrect arguments to LIMIT")
		}
		return n, nil
	}
	off, err := get(l.Offset)
	if err != nil {
		return 0, 0, err
	}
	cnt, err := get(l.Count)
	return off, cnt, err
}

func applyLimit(rows [][]any, offset, count int64) [][]any {
	if offset >= int64(len(rows)) {
		return rows[:0]
	}
	rows = rows[offset:]
	if count >= 0 && count < int64(len(rows)) {
		rows = rows[:count]
	}
	return rows
}

// sortRows sorts rows by ORDER BY items, stably, and returns the
// permutation applied: sorted position i holds the row that was at perm[i].
func (s *Session) sortRows(env *evalEnv, rows [][]any, items []*ast.ByItem) ([]int, error) {
	keys := make([][]any, len(rows))
	env.clause = "order clause"
	for i, row := range rows {
		env.row = row
		k := make([]any, len(items))
		for j, it := range items {
			if v, ok := it.Expr.(*test_driver.ValueExpr); ok { // ORDER BY 2
				if n, ok := asInt(v.GetValue()); ok && n >= 1 && int(n) <= len(row) {
					k[j] = row[n-1]
					continue
				}
			}
			v, err := env.eval(it.Expr)
			if err != nil {
				return nil, err
			}
			k[j] = v
		}
		keys[i] = k
	}
	idx := make([]int, len(rows))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		ka, kb := keys[idx[a]], keys[idx[b]]
		for j, it := range items {
			c := compareNullsFirst(ka[j], kb[j])
			if it.Desc {
				c = -c
			}
			if c != 0 {
				return c < 0
			}
		}
		return false
	})
	sorted := make([][]any, len(rows))
	for i, j := range idx {
		sorted[i] = rows[j]
	}
	copy(rows, sorted)
	return idx, nil
}

func compareNullsFirst(a, b any) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return -1
	case b == nil:
		return 1
	}
	return compare(a, b)
}

// selectNoTable evaluates a SELECT without FROM.
func (s *Session) selectNoTable(ctx context.Context, sel *ast.SelectStmt, params []any) (*Result, error) {
	var nodes []ast.Node
	for _, f := range sel.Fields.Fields {
		if f.WildCard != nil {
			return nil, errorf(ErrCodeNoTablesUsed, "No tables used")
		}
		nodes = append(nodes, f.Expr)
	}
	if err := s.initQueueFuncs(nodes...); err != nil {
		return nil, err
	}
	env := &evalEnv{ctx: ctx, s: s, params: params, clause: "field list"}
	if sel.Where != nil {
		v, err := env.eval(sel.Where)
		if err != nil {
			return nil, err
		}
		if v == nil || !truth(v) {
			return s.noTableResult(sel, nil), nil
		}
	}
	row := make([]any, len(sel.Fields.Fields))
	for i, f := range sel.Fields.Fields {
		v, err := env.eval(f.Expr)
		if err != nil {
			return nil, err
		}
		row[i] = v
	}
	offset, count, err := s.limit(sel.Limit, params)
	if err != nil {
		return nil, err
	}
	if offset > 0 || count == 0 {
		return s.noTableResult(sel, row), nil
	}
	res := s.noTableResult(sel, row)
	res.Rows = [][]any{row}
	s.lastFoundRows = 1
	return res, nil
}

func (s *Session) noTableResult(sel *ast.SelectStmt, row []any) *Result {
	cols := make([]Column, len(sel.Fields.Fields))
	for i, f := range sel.Fields.Fields {
		name := fieldName(f)
		if fc, ok := f.Expr.(*ast.FuncCallExpr); ok && isQueueFunc(fc.FnName.L) {
			cols[i] = queueFuncColumn(fc.FnName.L, name)
			continue
		}
		var v any
		if row != nil {
			v = row[i]
		}
		cols[i] = valueColumn(name, v)
	}
	return &Result{Columns: cols, Rows: [][]any{}}
}

// valueColumn describes an expression's column by its value.
func valueColumn(name string, v any) Column {
	switch x := v.(type) {
	case int64:
		return intCol(name)
	case uint64:
		c := intCol(name)
		c.Flags |= flagUnsigned
		return c
	case float64:
		return Column{Name: name, Type: pmysql.TypeDouble, Length: 22, Decimals: 31, Charset: CollationBinary, Flags: flagBinary | flagNum}
	case []byte:
		return Column{Name: name, Type: pmysql.TypeVarString, Length: uint32(max(len(x), 1)), Charset: CollationBinary, Flags: flagBinary}
	case nil:
		return Column{Name: name, Type: pmysql.TypeNull, Charset: CollationBinary, Flags: flagBinary}
	}
	return textCol(name)
}

func fixExprColumnTypes(res *Result, proj []projItem) {
	if len(res.Rows) == 0 {
		return
	}
	for i, p := range proj {
		if p.expr != nil {
			res.Columns[i] = valueColumn(res.Columns[i].Name, res.Rows[0][i])
		}
	}
}
