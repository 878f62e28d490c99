package sqlfront

import (
	"context"
	"sort"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
)

// The information_schema tables of operations: PROCESSLIST (the
// connections, from the same source as SHOW PROCESSLIST), GLOBAL_STATUS and
// SESSION_STATUS (the status variables of SHOW STATUS, names upper-cased
// as MySQL 5.7 and MariaDB list them there), GLOBAL_VARIABLES and
// SESSION_VARIABLES, and the InnoDB compression tables monitoring tools
// read (empty: there is no InnoDB here).

// opsTable returns the columns and rows of one of those tables; ok is
// false for another name.
func (s *Session) opsTable(name string) (cols []*columnDef, rows [][]any, ok bool) {
	str := func(name string, n int) *columnDef {
		return &columnDef{Name: name, Type: pmysql.TypeVarchar, Flen: n, TypeStr: "varchar(" + itoa(n) + ")"}
	}
	switch name {
	case "PROCESSLIST":
		cols = []*columnDef{
			{Name: "ID", Type: pmysql.TypeLonglong, Unsigned: true, NotNull: true, TypeStr: "bigint(21) unsigned"},
			str("USER", 32), str("HOST", 64), str("DB", 64), str("COMMAND", 16),
			{Name: "TIME", Type: pmysql.TypeLong, NotNull: true, TypeStr: "int(7)"},
			str("STATE", 64),
			{Name: "INFO", Type: pmysql.TypeLongBlob, TypeStr: "longtext"},
		}
		if s.eng.cfg.ProcessList != nil {
			for _, r := range s.eng.cfg.ProcessList(true) {
				row := append([]any(nil), r...)
				if id, ok := row[0].(int64); ok {
					row[0] = uint64(id)
				}
				rows = append(rows, row)
			}
		}
	case "GLOBAL_STATUS", "SESSION_STATUS", "GLOBAL_VARIABLES", "SESSION_VARIABLES":
		cols = []*columnDef{str("VARIABLE_NAME", 64), str("VARIABLE_VALUE", 1024)}
		var src [][]any
		switch name {
		case "GLOBAL_STATUS", "SESSION_STATUS":
			src = s.statusRows(name == "GLOBAL_STATUS")
		default:
			src = s.variableRows("", false)
		}
		for _, r := range src {
			rows = append(rows, []any{strings.ToUpper(toString(r[0])), r[1]})
		}
	case "INNODB_CMP", "INNODB_CMP_RESET":
		for _, n := range []string{"page_size", "compress_ops", "compress_ops_ok", "compress_time", "uncompress_ops", "uncompress_time"} {
			cols = append(cols, &columnDef{Name: n, Type: pmysql.TypeLong, TypeStr: "int(11)"})
		}
	case "INNODB_CMPMEM", "INNODB_CMPMEM_RESET":
		for _, n := range []string{"page_size", "buffer_pool_instance", "pages_used", "pages_free", "relocation_ops", "relocation_time"} {
			cols = append(cols, &columnDef{Name: n, Type: pmysql.TypeLong, TypeStr: "int(11)"})
		}
	default:
		return nil, nil, false
	}
	return cols, rows, true
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	return string(b[i:])
}

// localSystemSelect reports whether a SELECT reads only information_schema
// tables whose rows are q4mproxy's own even in front of an upstream: the
// processlist (one thread-id space) and the status tables (a projection
// of them cannot be merged with the upstream's by name; SHOW STATUS
// merges).
func localSystemSelect(v *routeVisitor) bool {
	if len(v.tables) == 0 {
		return false
	}
	for _, tn := range v.tables {
		if !strings.EqualFold(tn.Schema.O, "information_schema") {
			return false
		}
		switch strings.ToUpper(tn.Name.O) {
		case "PROCESSLIST", "GLOBAL_STATUS", "SESSION_STATUS":
		default:
			return false
		}
	}
	return true
}

// LocalWins reports whether a catalog statement that Route answers with
// RouteMerge lists q4mproxy's own rows in place of the upstream's rows of
// the same name (MergeRowsLocalFirst): SHOW STATUS, where q4mproxy's
// connection and statement counters describe what its clients see.
func (s *Session) LocalWins(sql string) bool {
	st, err := s.parseOne(sql)
	if err != nil {
		return false
	}
	sh, ok := st.(*ast.ShowStmt)
	return ok && sh.Tp == ast.ShowStatus
}

// MergeRowsLocalFirst merges a catalog answer of the upstream with the
// local one as MergeRows does, except that where both list a row of the
// same first value, the local row is kept; rows are ordered by their
// first column.
func MergeRowsLocalFirst(upCols []string, upRows [][]any, local *Result) *Result {
	if !local.HasRows() {
		return MergeRows(upCols, upRows, local, true)
	}
	idx := make([]int, len(upCols))
	for i, name := range upCols {
		idx[i] = -1
		for j, c := range local.Columns {
			if strings.EqualFold(c.Name, name) {
				idx[i] = j
			}
		}
	}
	mine := make(map[string]bool, len(local.Rows))
	rows := make([][]any, 0, len(upRows)+len(local.Rows))
	for _, lr := range local.Rows {
		if k, ok := lr[0].(string); ok {
			mine[strings.ToLower(k)] = true
		}
		row := make([]any, len(upCols))
		for i, j := range idx {
			if j >= 0 {
				row[i] = lr[j]
			}
		}
		rows = append(rows, row)
	}
	for _, ur := range upRows {
		if k, ok := ur[0].(string); ok && mine[strings.ToLower(k)] {
			continue
		}
		rows = append(rows, ur)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		return strings.ToLower(toString(rows[i][0])) < strings.ToLower(toString(rows[j][0]))
	})
	return &Result{Columns: textColumns(upCols...), Rows: rows}
}

// showWhere answers SHOW [GLOBAL|SESSION] STATUS / VARIABLES WHERE cond:
// cond is evaluated on each (Variable_name, Value) row, as mysqld does.
func (s *Session) showWhere(sh *ast.ShowStmt) (*Result, error) {
	var rows [][]any
	if sh.Tp == ast.ShowStatus {
		rows = s.statusRows(sh.GlobalScope)
	} else {
		rows = s.variableRows("", false)
	}
	sch := &tableSchema{Columns: []*columnDef{
		{Name: "Variable_name", Type: pmysql.TypeVarchar, Flen: 64, TypeStr: "varchar(64)"},
		{Name: "Value", Type: pmysql.TypeVarchar, Flen: 1024, TypeStr: "varchar(1024)"},
	}}
	if err := checkColumns(sch, sh.Where, "where clause"); err != nil {
		return nil, err
	}
	env := &evalEnv{ctx: context.Background(), s: s, sch: sch, clause: "where clause"}
	res := &Result{Columns: textColumns("Variable_name", "Value")}
	for _, r := range rows {
		env.row = r
		v, err := env.eval(sh.Where)
		if err != nil {
			return nil, err
		}
		if v != nil && truth(v) {
			res.Rows = append(res.Rows, r)
		}
	}
	return res, nil
}

// substringIndex is SUBSTRING_INDEX(str, delim, count): str before the
// count-th delim from the left (count > 0) or after the count-th from
// the right (count < 0).
func substringIndex(str, delim string, count int64) string {
	if delim == "" || count == 0 {
		return ""
	}
	if count > 0 {
		i := 0
		for n := int64(0); n < count; n++ {
			j := strings.Index(str[i:], delim)
			if j < 0 {
				return str
			}
			i += j + len(delim)
		}
		return str[:i-len(delim)]
	}
	end := len(str)
	for n := int64(0); n < -count; n++ {
		j := strings.LastIndex(str[:end], delim)
		if j < 0 {
			return str
		}
		end = j
	}
	return str[end+len(delim):]
}

// groupedSelect answers SELECT ... FROM an information_schema table WHERE
// ... GROUP BY ...: what monitoring sends to count connections by user,
// host, command and state (mysqld_exporter's info_schema.processlist).
// The fields are expressions of the group's first row, or COUNT, SUM, MIN
// or MAX over its rows; groups come in the order they first appear.
func (s *Session) groupedSelect(ctx context.Context, sel *ast.SelectStmt, src *source, params []any) (*Result, error) {
	env := &evalEnv{ctx: ctx, s: s, params: params, sch: src.sch}
	if err := checkColumns(src.sch, sel.Where, "where clause"); err != nil {
		return nil, err
	}
	for _, it := range sel.GroupBy.Items {
		if err := checkColumns(src.sch, it.Expr, "group statement"); err != nil {
			return nil, err
		}
	}
	var cols []Column
	for _, f := range sel.Fields.Fields {
		if f.WildCard != nil {
			return nil, notSupported("SELECT * with GROUP BY")
		}
		if err := checkColumns(src.sch, f.Expr, "field list"); err != nil {
			return nil, err
		}
		if agg, ok := f.Expr.(*ast.AggregateFuncExpr); ok {
			switch strings.ToLower(agg.F) {
			case "count", "sum", "min", "max":
			default:
				return nil, notSupported(agg.F + "() with GROUP BY")
			}
			if agg.Distinct || len(agg.Args) != 1 {
				return nil, notSupported("this aggregate with GROUP BY")
			}
			c := intCol(fieldName(f))
			if strings.EqualFold(agg.F, "count") {
				c.Flags |= flagNotNull
			}
			cols = append(cols, c)
			continue
		}
		cols = append(cols, textCol(fieldName(f)))
	}
	type group struct{ rows [][]any }
	var order []string
	groups := map[string]*group{}
	err := s.scanWhere(src, env, sel.Where, func(_ uint64, row []any) (bool, error) {
		env.row, env.clause = row, "group statement"
		var key strings.Builder
		for _, it := range sel.GroupBy.Items {
			v, err := env.eval(it.Expr)
			if err != nil {
				return false, err
			}
			if v == nil {
				key.WriteString("\x01")
			} else {
				key.WriteString(strings.ToLower(toString(v)))
			}
			key.WriteByte(0)
		}
		k := key.String()
		g := groups[k]
		if g == nil {
			g = &group{}
			groups[k] = g
			order = append(order, k)
		}
		g.rows = append(g.rows, row)
		return true, nil
	})
	if err != nil {
		return nil, err
	}
	res := &Result{Columns: cols}
	env.clause = "field list"
	for _, k := range order {
		g := groups[k]
		out := make([]any, 0, len(cols))
		for _, f := range sel.Fields.Fields {
			agg, ok := f.Expr.(*ast.AggregateFuncExpr)
			if !ok {
				env.row = g.rows[0]
				v, err := env.eval(f.Expr)
				if err != nil {
					return nil, err
				}
				out = append(out, v)
				continue
			}
			v, err := s.aggregate(env, agg, g.rows)
			if err != nil {
				return nil, err
			}
			out = append(out, v)
		}
		res.Rows = append(res.Rows, out)
	}
	s.lastFoundRows = int64(len(res.Rows))
	return res, nil
}

// aggregate evaluates COUNT, SUM, MIN or MAX of agg's argument over rows
// (integers; NULLs skipped; NULL for SUM, MIN, MAX of no value).
func (s *Session) aggregate(env *evalEnv, agg *ast.AggregateFuncExpr, rows [][]any) (any, error) {
	name := strings.ToLower(agg.F)
	var n, acc int64
	for _, row := range rows {
		env.row = row
		v, err := env.eval(agg.Args[0])
		if err != nil {
			return nil, err
		}
		if v == nil {
			continue
		}
		x := coerceInt(v)
		switch {
		case name == "sum":
			acc += x
		case n == 0:
			acc = x
		case name == "min":
			acc = min(acc, x)
		case name == "max":
			acc = max(acc, x)
		}
		n++
	}
	switch {
	case name == "count":
		return n, nil
	case n == 0:
		return nil, nil
	}
	return acc, nil
}
