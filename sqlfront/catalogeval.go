package sqlfront

import (
	"context"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
)

// Catalog SELECTs evaluated over both sides. A SELECT of one of the
// information_schema tables that both sides describe (PLUGINS, ENGINES,
// TABLES, COLUMNS) with an aggregate, grouping, order, limit or DISTINCT
// cannot be answered by putting the two sides' answers together (COUNT(*)
// would give two counts). q4mproxy answers it itself: it asks the
// upstream for the table's rows (CatalogRowsQuery), adds its own, and
// evaluates the statement over all of them (ExecCatalog), with its own
// evaluator: what that cannot evaluate is refused with 1235.

// catalogEvalSelect reports whether sel is such a SELECT.
func (s *Session) catalogEvalSelect(sel *ast.SelectStmt, v *routeVisitor) bool {
	if len(v.tables) != 1 || v.queueFuncs || sel.SelectIntoOpt != nil {
		return false
	}
	if !v.aggregate && sel.GroupBy == nil && sel.Having == nil && sel.OrderBy == nil && sel.Limit == nil && !sel.Distinct {
		return false // a plain SELECT: mergeableCatalogSelect's
	}
	tn := v.tables[0]
	if !strings.EqualFold(tn.Schema.O, "information_schema") {
		return false
	}
	switch strings.ToUpper(tn.Name.O) {
	case "PLUGINS", "ENGINES":
		return true // the QUEUE engine is always here
	case "TABLES", "COLUMNS":
		// Without a queue table the upstream's answer is the whole one,
		// as it is when the WHERE names a table of the upstream (one of
		// q4mproxy goes to catalogOfQueueTable).
		if _, table := s.catalogNamedTable(sel, v); table != "" {
			return false
		}
		for _, d := range s.eng.db.Databases() {
			if names, _ := s.eng.db.Tables(d); len(names) > 0 {
				return true
			}
		}
	}
	return false
}

// CatalogRowsQuery returns, for a statement that Route answers with
// RouteMerge and that q4mproxy evaluates itself over both sides' rows
// (see above), the statement that reads the upstream's rows of its
// table; ok is false for the other merges.
func (s *Session) CatalogRowsQuery(sql string) (query string, ok bool) {
	st, err := s.parseOne(sql)
	if err != nil {
		return "", false
	}
	sel, isSel := st.(*ast.SelectStmt)
	if !isSel {
		return "", false
	}
	v := &routeVisitor{}
	sel.Accept(v)
	if !s.catalogEvalSelect(sel, v) {
		return "", false
	}
	return "SELECT * FROM information_schema." + strings.ToUpper(v.tables[0].Name.O), true
}

// upstreamCatalog is the upstream's rows of an information_schema table,
// for ExecCatalog.
type upstreamCatalog struct {
	table string // upper case
	cols  []string
	rows  [][]any
}

// ExecCatalog runs sql, a statement CatalogRowsQuery accepted, over the
// local rows of its table and the upstream's (cols and rows, the answer
// to CatalogRowsQuery's statement), with a prepared statement's params.
// An upstream row replaces a local one of the same name (engine, plugin,
// table or column).
func (s *Session) ExecCatalog(ctx context.Context, sql string, params []any, cols []string, rows [][]any) (*Result, error) {
	st, err := s.parseOne(sql)
	if err != nil {
		return nil, err
	}
	v := &routeVisitor{}
	st.Accept(v)
	if len(v.tables) != 1 {
		return nil, errorf(ErrCodeUnknown, "not a catalog SELECT")
	}
	s.upCatalog = &upstreamCatalog{table: strings.ToUpper(v.tables[0].Name.O), cols: cols, rows: rows}
	defer func() { s.upCatalog = nil }()
	r, err := s.execStmt(ctx, st, params)
	if e, ok := err.(*Error); ok && e.Code == ErrCodeNotSupported {
		return nil, errorf(ErrCodeNotSupported,
			"This version of q4mproxy doesn't yet support this SELECT of information_schema.%s in front of an upstream server (%s)",
			s.upCatalog.table, e.Message)
	}
	return r, err
}

// catalogKeys are the columns that name a row of a catalog table.
var catalogKeys = map[string][]string{
	"PLUGINS": {"PLUGIN_NAME"},
	"ENGINES": {"ENGINE"},
	"TABLES":  {"TABLE_SCHEMA", "TABLE_NAME"},
	"COLUMNS": {"TABLE_SCHEMA", "TABLE_NAME", "COLUMN_NAME"},
}

// withUpstreamRows returns the rows of an information_schema table (local
// columns cols, local rows) with the upstream's rows of ExecCatalog added:
// their values placed by column name (NULL where the upstream has no such
// column; numbers as numbers), and local rows the upstream also names
// left out.
func (s *Session) withUpstreamRows(table string, cols []*columnDef, rows [][]any) [][]any {
	up := s.upCatalog
	if up == nil || up.table != table {
		return rows
	}
	idx := make([]int, len(cols))
	for i, c := range cols {
		idx[i] = -1
		for j, name := range up.cols {
			if strings.EqualFold(c.Name, name) {
				idx[i] = j
				break
			}
		}
	}
	var keys []int
	for _, k := range catalogKeys[table] {
		for i, c := range cols {
			if c.Name == k {
				keys = append(keys, i)
			}
		}
	}
	key := func(r []any) string {
		var b strings.Builder
		for _, i := range keys {
			b.WriteString(strings.ToLower(toString(r[i])))
			b.WriteByte(0)
		}
		return b.String()
	}
	merged := make([][]any, 0, len(rows)+len(up.rows))
	named := make(map[string]bool, len(up.rows))
	for _, ur := range up.rows {
		r := make([]any, len(cols))
		for i, j := range idx {
			if j < 0 || j >= len(ur) || ur[j] == nil {
				continue
			}
			r[i] = ur[j]
			if cols[i].kind() == kindInt {
				if n, err := strconv.ParseUint(toString(ur[j]), 10, 64); err == nil {
					r[i] = n
				}
			}
		}
		named[key(r)] = true
		merged = append(merged, r)
	}
	for _, r := range rows {
		if !named[key(r)] {
			merged = append(merged, r)
		}
	}
	return merged
}
