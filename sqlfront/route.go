package sqlfront

import (
	"sort"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	"github.com/pingcap/tidb/pkg/parser/opcode"
)

// Route says where a statement runs when q4mproxy stands in front of an
// upstream server (Config.Upstream).
type Route int

// The routes.
const (
	// RouteLocal: q4mproxy executes it (queue tables, queue functions,
	// KILL, CONNECTION_ID(), SHOW ENGINE QUEUE STATUS).
	RouteLocal Route = iota
	// RouteUpstream: the upstream executes the text as the client sent it.
	RouteUpstream
	// RouteBoth: session state (USE, SET): the upstream first, then, if it
	// accepted the statement, q4mproxy applies it too.
	RouteBoth
	// RouteLastSide: answered by the side that ran the previous statement
	// (ROW_COUNT(), FOUND_ROWS(), SHOW WARNINGS).
	RouteLastSide
	// RouteMerge: catalog statements (SHOW TABLES, SHOW TABLE STATUS) whose
	// answer lists both sides: the upstream's rows and the local ones,
	// merged with MergeRows; or, for a SELECT that CatalogRowsQuery
	// accepts (COUNT(*) of information_schema.TABLES), evaluated here over
	// both sides' rows (ExecCatalog).
	RouteMerge
	// RouteInsertSelect: INSERT INTO queue_table SELECT ... FROM tables of
	// the upstream: the upstream runs the SELECT (see InsertSelect), the
	// rows go into the queue table in one atomic insert.
	RouteInsertSelect
	// RouteUpstreamPart: a statement naming queue tables beside tables of
	// the upstream that each side can take its part of (LOCK TABLES, as
	// mysqldump sends it for a database holding both): the upstream runs
	// the text UpstreamPart returns, q4mproxy accepts the queue tables.
	RouteUpstreamPart
)

func (r Route) String() string {
	return [...]string{"local", "upstream", "both", "last-side", "merge", "insert-select", "upstream-part"}[r]
}

// Route decides where sql runs. It is the one place that decision is made;
// an error is the answer to a statement that mixes the two sides (1235) or
// would create a table that exists on the other side (1050). Without an
// upstream everything is local.
func (s *Session) Route(sql string) (Route, error) {
	if !s.eng.cfg.Upstream {
		return RouteLocal, nil
	}
	if isLocalShow(sql) {
		return RouteLocal, nil
	}
	if s.fastUpstream(sql) {
		return RouteUpstream, nil
	}
	return s.routeParsed(sql)
}

// routeParsed is Route after the fast path: it parses sql.
func (s *Session) routeParsed(sql string) (Route, error) {
	if st, ok := s.insertShapeStmt(sql); ok {
		return s.routeStmt(st)
	}
	st, err := s.parseOne(sql)
	if err != nil {
		// Syntax q4mproxy does not know (or several statements): the
		// upstream reads it as the client sent it.
		return RouteUpstream, nil
	}
	return s.routeStmt(st)
}

// RoutePrepared decides where a statement to prepare runs, as Route does.
// RouteLastSide means: prepared on both sides, each execution run by the
// side that ran the statement before it.
func (s *Session) RoutePrepared(sql string) (Route, error) {
	r, err := s.Route(sql)
	if r == RouteUpstreamPart && err == nil {
		// LOCK TABLES, which MySQL does not prepare either.
		return RouteLocal, errorf(ErrCodeUnsupportedPS, "This command is not supported in the prepared statement protocol yet")
	}
	return r, err
}

// UpstreamPart returns the text the upstream runs for a statement routed
// RouteUpstreamPart: LOCK TABLES of the tables that are not queue tables.
func (s *Session) UpstreamPart(sql string) (string, error) {
	st, err := s.parseOne(sql)
	if err != nil {
		return "", err
	}
	lt, ok := st.(*ast.LockTablesStmt)
	if !ok {
		return "", errorf(ErrCodeUnknown, "no upstream part in this statement")
	}
	up := &ast.LockTablesStmt{}
	for _, tl := range lt.TableLocks {
		if _, remote := s.splitTables([]*ast.TableName{tl.Table}); len(remote) > 0 {
			up.TableLocks = append(up.TableLocks, tl)
		}
	}
	var sb strings.Builder
	if err := up.Restore(format.NewRestoreCtx(format.DefaultRestoreFlags, &sb)); err != nil {
		return "", errorf(ErrCodeUnknown, "LOCK TABLES: %v", err)
	}
	return sb.String(), nil
}

// routeLockTables: LOCK TABLES of queue tables only is q4mproxy's, of
// upstream tables only the upstream's; a mix is split (mysqldump locks all
// the tables of a database at once).
func (s *Session) routeLockTables(lt *ast.LockTablesStmt) (Route, error) {
	tables := make([]*ast.TableName, len(lt.TableLocks))
	for i, tl := range lt.TableLocks {
		tables[i] = tl.Table
	}
	local, remote := s.splitTables(tables)
	switch {
	case len(local) == 0:
		return RouteUpstream, nil
	case len(remote) == 0:
		return RouteLocal, nil
	}
	return RouteUpstreamPart, nil
}

// isLocalShow matches the SHOW statements only q4mproxy knows.
func isLocalShow(sql string) bool {
	t := strings.TrimLeft(sql, " \t\r\n")
	if len(t) < 4 || !strings.EqualFold(t[:4], "show") {
		return false
	}
	f := strings.Fields(strings.ToLower(strings.TrimRight(strings.TrimSpace(sql), "; \t\n")))
	return len(f) == 4 && f[1] == "engine" && f[2] == "queue" ||
		len(f) == 3 && f[1] == "valve" && f[2] == "status"
}

func (s *Session) routeStmt(stmt ast.StmtNode) (Route, error) {
	switch x := stmt.(type) {
	case *ast.UseStmt:
		return RouteBoth, nil
	case *ast.SetStmt:
		v := &routeVisitor{}
		x.Accept(v)
		if len(v.tables) > 0 || v.queueFuncs {
			return RouteUpstream, nil // SET @a = (SELECT ...): the upstream's value
		}
		return RouteBoth, nil
	case *ast.FlushStmt:
		if x.Tp == ast.FlushStatus {
			return RouteBoth, nil // both sides' counters
		}
	case *ast.KillStmt:
		return RouteLocal, nil // one thread-id space: q4mproxy's
	case *ast.LockTablesStmt:
		return s.routeLockTables(x)
	case *ast.CreateTableStmt:
		return s.routeCreate(x)
	case *ast.CreateDatabaseStmt:
		return RouteUpstream, nil
	case *ast.DropDatabaseStmt:
		return RouteBoth, nil
	case *ast.ShowStmt:
		return s.routeShow(x)
	case *ast.ExplainStmt:
		if sh, ok := x.Stmt.(*ast.ShowStmt); ok { // DESCRIBE t
			return s.routeShow(sh)
		}
	case *ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt, *ast.SavepointStmt, *ast.ReleaseSavepointStmt:
		return RouteUpstream, nil
	case *ast.InsertStmt:
		if x.Select != nil {
			return s.routeInsertSelect(x)
		}
	}
	v := &routeVisitor{}
	stmt.Accept(v)
	if sel, ok := stmt.(*ast.SelectStmt); ok && s.catalogOfQueueTable(sel, v) {
		return RouteLocal, nil
	}
	if sel, ok := stmt.(*ast.SelectStmt); ok && (mergeableCatalogSelect(sel, v) || s.catalogEvalSelect(sel, v)) {
		return RouteMerge, nil // catalogeval.go for the second
	}
	if _, ok := stmt.(*ast.SelectStmt); ok && localSystemSelect(v) {
		return RouteLocal, nil // q4mproxy's processlist and status (opsinfo.go)
	}
	local, remote := s.splitTables(v.tables)
	switch {
	case len(local) > 0 && len(remote) == 0:
		return RouteLocal, nil
	case len(local) > 0:
		return RouteLocal, errorf(ErrCodeNotSupported,
			"This version of q4mproxy doesn't yet support statements that mix queue tables (%s) with tables of the upstream server (%s)",
			strings.Join(local, ", "), strings.Join(remote, ", "))
	case len(remote) > 0 && v.queueFuncs:
		return RouteLocal, errorf(ErrCodeNotSupported,
			"This version of q4mproxy doesn't yet support queue functions in statements on tables of the upstream server (%s)",
			strings.Join(remote, ", "))
	case len(remote) > 0:
		return RouteUpstream, nil
	case v.queueFuncs || v.connID || v.queueVar:
		return RouteLocal, nil
	case v.lastSide:
		return RouteLastSide, nil
	}
	return RouteUpstream, nil
}

func (s *Session) routeInsertSelect(ins *ast.InsertStmt) (Route, error) {
	tn, err := singleTable(ins.Table.TableRefs)
	if err != nil {
		return RouteUpstream, nil
	}
	target, _ := s.splitTables([]*ast.TableName{tn})
	v := &routeVisitor{}
	ins.Select.Accept(v)
	local, remote := s.splitTables(v.tables)
	switch {
	case len(target) == 0 && len(local) == 0 && !v.queueFuncs:
		return RouteUpstream, nil
	case len(target) > 0 && len(local) == 0 && !v.queueFuncs && len(ins.OnDuplicate) == 0:
		return RouteInsertSelect, nil
	}
	names := append(append(append([]string{}, target...), local...), remote...)
	return RouteLocal, errorf(ErrCodeNotSupported,
		"This version of q4mproxy doesn't yet support INSERT ... SELECT between these tables (%s): only from tables of the upstream server into a queue table",
		strings.Join(names, ", "))
}

func (s *Session) routeCreate(ct *ast.CreateTableStmt) (Route, error) {
	queueEngine := false
	for _, opt := range ct.Options {
		if opt.Tp == ast.TableOptionEngine && strings.EqualFold(opt.StrValue, "queue") {
			queueEngine = true
		}
	}
	if queueEngine {
		return RouteLocal, nil
	}
	db := ct.Table.Schema.O
	if db == "" {
		db = s.db
	}
	if _, err := s.eng.db.Table(db, ct.Table.Name.O); err == nil && ct.TemporaryKeyword == ast.TemporaryNone {
		if ct.IfNotExists {
			return RouteLocal, nil // a note, as for any existing table
		}
		return RouteLocal, errorf(ErrCodeTableExists, "Table '%s' already exists", ct.Table.Name.O)
	}
	return RouteUpstream, nil
}

func (s *Session) routeShow(sh *ast.ShowStmt) (Route, error) {
	switch sh.Tp {
	case ast.ShowWarnings, ast.ShowErrors:
		return RouteLastSide, nil
	case ast.ShowProcessList:
		return RouteLocal, nil // q4mproxy's clients, with one thread-id space
	case ast.ShowTables, ast.ShowTableStatus, ast.ShowEngines, ast.ShowPlugins, ast.ShowVariables, ast.ShowStatus:
		return RouteMerge, nil
	}
	if sh.Table != nil {
		if local, _ := s.splitTables([]*ast.TableName{sh.Table}); len(local) > 0 {
			return RouteLocal, nil
		}
	}
	return RouteUpstream, nil
}

// splitTables sorts names into local queue tables and the rest.
func (s *Session) splitTables(tables []*ast.TableName) (local, remote []string) {
	for _, tn := range tables {
		db := tn.Schema.O
		if db == "" {
			db = s.db
		}
		name := tn.Name.O
		if _, err := s.eng.db.Table(db, name); err == nil {
			local = append(local, name)
			continue
		}
		remote = append(remote, name)
	}
	return local, remote
}

// routeVisitor collects what routing looks at: tables, queue functions,
// and functions whose answer belongs to one side.
type routeVisitor struct {
	tables     []*ast.TableName
	queueFuncs bool
	connID     bool
	lastSide   bool
	aggregate  bool
	queueVar   bool // @@queue_*: Q4M's variables are q4mproxy's
}

func (v *routeVisitor) Enter(n ast.Node) (ast.Node, bool) {
	switch x := n.(type) {
	case *ast.TableName:
		v.tables = append(v.tables, x)
	case *ast.AggregateFuncExpr, *ast.WindowFuncExpr:
		v.aggregate = true
	case *ast.VariableExpr:
		if x.IsSystem && strings.HasPrefix(strings.ToLower(x.Name), "queue_") {
			v.queueVar = true
		}
	case *ast.FuncCallExpr:
		switch name := x.FnName.L; {
		case isQueueFunc(name):
			v.queueFuncs = true
		case name == "connection_id":
			v.connID = true
		case name == "row_count" || name == "found_rows":
			// LAST_INSERT_ID() is not among them: a queue table generates
			// no id, so the session's last one is the upstream's.
			v.lastSide = true
		}
	}
	return n, false
}

func (v *routeVisitor) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// catalogOfQueueTable: a SELECT of information_schema's TABLES, COLUMNS or
// TRIGGERS whose WHERE names one queue table (TABLE_NAME = 'jobs' or
// EVENT_OBJECT_TABLE = 'jobs', ANDed with anything), as mysqldump asks
// about each table it dumps: only q4mproxy knows the answer, and the
// question may order or group it as it likes.
func (s *Session) catalogOfQueueTable(sel *ast.SelectStmt, v *routeVisitor) bool {
	db, table := s.catalogNamedTable(sel, v)
	if table == "" {
		return false
	}
	_, err := s.eng.db.Table(db, table)
	return err == nil
}

// catalogNamedTable returns the table that the WHERE of a SELECT of
// information_schema's TABLES, COLUMNS or TRIGGERS names (TABLE_NAME =
// 'jobs', ANDed with anything), and its database; "" when it names none.
func (s *Session) catalogNamedTable(sel *ast.SelectStmt, v *routeVisitor) (db, table string) {
	if len(v.tables) != 1 || v.queueFuncs || sel.Where == nil || !strings.EqualFold(v.tables[0].Schema.O, "information_schema") {
		return "", ""
	}
	var nameCol, schemaCol string
	switch strings.ToUpper(v.tables[0].Name.O) {
	case "TABLES", "COLUMNS":
		nameCol, schemaCol = "table_name", "table_schema"
	case "TRIGGERS":
		nameCol, schemaCol = "event_object_table", "event_object_schema"
	default:
		return "", ""
	}
	db = s.db
	var walk func(e ast.ExprNode)
	walk = func(e ast.ExprNode) {
		switch x := e.(type) {
		case *ast.ParenthesesExpr:
			walk(x.Expr)
		case *ast.BinaryOperationExpr:
			switch x.Op {
			case opcode.LogicAnd:
				walk(x.L)
				walk(x.R)
			case opcode.EQ:
				col, ok := x.L.(*ast.ColumnNameExpr)
				val, isStr := x.R.(ast.ValueExpr)
				if !ok || !isStr {
					return
				}
				str, isStr := val.GetValue().(string)
				if !isStr {
					return
				}
				switch col.Name.Name.L {
				case nameCol:
					table = str
				case schemaCol:
					db = str
				}
			}
		}
	}
	walk(sel.Where)
	return db, table
}

// mergeableCatalogSelect: a plain SELECT (no aggregate, grouping, order or
// limit, which a concatenation of rows would answer wrongly) of one of the
// information_schema tables that describe both sides: the engines and
// plugins (Q4M clients look for the QUEUE plugin), tables and columns.
func mergeableCatalogSelect(sel *ast.SelectStmt, v *routeVisitor) bool {
	if len(v.tables) != 1 || v.queueFuncs || v.aggregate || sel.GroupBy != nil || sel.Having != nil ||
		sel.OrderBy != nil || sel.Limit != nil || sel.Distinct || sel.SelectIntoOpt != nil {
		return false
	}
	tn := v.tables[0]
	if !strings.EqualFold(tn.Schema.O, "information_schema") {
		return false
	}
	switch strings.ToUpper(tn.Name.O) {
	case "PLUGINS", "ENGINES", "TABLES", "COLUMNS":
		return true
	}
	return false
}

// MergeRows merges a catalog answer of the upstream (column names and rows)
// with the local one: the upstream's columns, local values placed by column
// name (NULL where the local answer has no such column), local rows whose
// first value the upstream already listed left out (a variable both sides
// have is the upstream's); with sorted, rows ordered by their first column,
// as a server lists tables and variables.
func MergeRows(upCols []string, upRows [][]any, local *Result, sorted bool) *Result {
	r := &Result{Columns: textColumns(upCols...), Rows: upRows}
	if local.HasRows() {
		idx := make([]int, len(upCols))
		for i, name := range upCols {
			idx[i] = -1
			for j, c := range local.Columns {
				if strings.EqualFold(c.Name, name) {
					idx[i] = j
				}
			}
		}
		seen := make(map[string]bool, len(upRows))
		for _, ur := range upRows {
			if k, ok := ur[0].(string); ok {
				seen[strings.ToLower(k)] = true
			}
		}
		for _, lr := range local.Rows {
			if k, ok := lr[0].(string); ok && seen[strings.ToLower(k)] {
				continue
			}
			row := make([]any, len(upCols))
			for i, j := range idx {
				if j >= 0 {
					row[i] = lr[j]
				}
			}
			r.Rows = append(r.Rows, row)
		}
	}
	if !sorted {
		return r
	}
	sort.SliceStable(r.Rows, func(i, j int) bool {
		a, _ := r.Rows[i][0].(string)
		b, _ := r.Rows[j][0].(string)
		return a < b
	})
	return r
}

// IsRollback reports whether sql is a ROLLBACK (of a transaction or to a
// savepoint).
func IsRollback(sql string) bool {
	t := strings.TrimLeft(sql, " \t\r\n")
	return len(t) >= 8 && strings.EqualFold(t[:8], "rollback")
}

// ChangesQueue reports whether a statement q4mproxy runs may change a
// queue table (an INSERT, DELETE, TRUNCATE or a queue function that takes
// or consumes rows): such a change is not undone by a ROLLBACK.
func ChangesQueue(sql string) bool {
	t := strings.ToLower(strings.TrimLeft(sql, " \t\r\n("))
	for _, w := range []string{"insert", "replace", "delete", "update", "truncate"} {
		if strings.HasPrefix(t, w) {
			return true
		}
	}
	return strings.Contains(t, "queue_wait") || strings.Contains(t, "queue_end") || strings.Contains(t, "queue_abort")
}

// InsertSelect is an INSERT INTO queue_table SELECT ... whose SELECT the
// upstream runs.
type InsertSelect struct {
	ins *ast.InsertStmt
	// Select is the SELECT part, as the client wrote it.
	Select string
}

// PrepareInsertSelect splits an INSERT ... SELECT routed RouteInsertSelect.
func (s *Session) PrepareInsertSelect(sql string) (*InsertSelect, error) {
	st, err := s.parseOne(sql)
	if err != nil {
		return nil, err
	}
	ins, ok := st.(*ast.InsertStmt)
	if !ok || ins.Select == nil {
		return nil, errorf(ErrCodeUnknown, "not an INSERT ... SELECT")
	}
	sel, ok := selectPart(sql)
	if !ok {
		return nil, notSupported("this form of INSERT ... SELECT")
	}
	return &InsertSelect{ins: ins, Select: sel}, nil
}

// selectPart returns the text of an INSERT's SELECT: from the first SELECT,
// WITH or TABLE keyword outside quotes and comments (with the parentheses
// that enclose it, if any).
func selectPart(sql string) (string, bool) {
	var open []int // positions of unclosed '('
	for i := 0; i < len(sql); i++ {
		switch c := sql[i]; {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(sql) && sql[j] != c {
				if sql[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			i = j
		case c == '#' || c == '-' && strings.HasPrefix(sql[i:], "-- "):
			for i < len(sql) && sql[i] != '\n' {
				i++
			}
		case c == '/' && strings.HasPrefix(sql[i:], "/*"):
			j := strings.Index(sql[i+2:], "*/")
			if j < 0 {
				return "", false
			}
			i += j + 3
		case c == '(':
			open = append(open, i)
		case c == ')':
			if len(open) > 0 {
				open = open[:len(open)-1]
			}
		case isWordStart(c) && (i == 0 || !isWordByte(sql[i-1])):
			j := i
			for j < len(sql) && isWordByte(sql[j]) {
				j++
			}
			switch strings.ToLower(sql[i:j]) {
			case "select", "with", "table":
				start := i
				if len(open) > 0 {
					start = open[0]
				}
				return strings.TrimSpace(sql[start:]), true
			}
			i = j - 1
		}
	}
	return "", false
}

func isWordStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }

func isWordByte(c byte) bool { return isWordStart(c) || c >= '0' && c <= '9' || c == '$' }

// fastUpstream reports, without parsing, that a text can only go upstream
// (most forwarded texts: the parse would be most of their cost here): its
// first word is none that changes session state or asks for processes or
// the catalog, and none of its words is a queue table's name, a queue
// function or variable, or a function q4mproxy answers. It may say no to a
// text that goes upstream all the same (then Route parses it); it never
// says yes to one that does not.
func (s *Session) fastUpstream(sql string) bool {
	names := s.eng.queueNameSet()
	first := true
	for i := 0; i < len(sql); {
		c := sql[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '/' && i+1 < len(sql) && sql[i+1] == '*', c == '#', c == '-' && i+1 < len(sql) && sql[i+1] == '-':
			return false // comments (and optimizer hints, /*! ... */): parse
		case c == '\'':
			j := i + 1
			for j < len(sql) && sql[j] != '\'' {
				if sql[j] == '\\' {
					j++
				}
				j++
			}
			i = j + 1
			first = false
		case c == '"' || c == '`' || isWordByte(c) || c >= 0x80:
			var w string
			if c == '"' || c == '`' {
				j := strings.IndexByte(sql[i+1:], c)
				if j < 0 {
					return false
				}
				w, i = sql[i+1:i+1+j], i+j+2
			} else {
				j := i
				for j < len(sql) && (isWordByte(sql[j]) || sql[j] >= 0x80) {
					j++
				}
				w, i = sql[i:j], j
			}
			w = strings.ToLower(w)
			if first {
				switch w {
				case "set", "use", "show", "kill", "drop", "describe", "desc", "explain", "create", "alter", "truncate", "rename", "lock", "handler", "flush":
					return false
				}
				first = false
			}
			if strings.HasPrefix(w, "queue") || names[w] {
				return false
			}
			switch w {
			case "connection_id", "row_count", "found_rows", "information_schema", "processlist":
				return false
			}
		default:
			i++
			first = false
		}
	}
	return true
}

// queueNameSet returns the lower-cased names of the queue tables, rebuilt
// after DDL.
func (e *Engine) queueNameSet() map[string]bool {
	v := e.db.CatalogVersion()
	if m := e.queueNames.Load(); m != nil && m.version == v {
		return m.names
	}
	m := map[string]bool{}
	for _, db := range e.db.Databases() {
		names, err := e.db.Tables(db)
		if err != nil {
			continue
		}
		for _, n := range names {
			m[strings.ToLower(n)] = true
		}
	}
	e.queueNames.Store(&queueNameSet{version: v, names: m})
	return m
}
