package sqlfront

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	"github.com/pingcap/tidb/pkg/parser/test_driver"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Config configures an Engine.
type Config struct {
	// Version is the server version (VERSION(), @@version).
	Version string
	// VersionComment is @@version_comment.
	VersionComment string
	// MaxAllowedPacket is reported as @@max_allowed_packet.
	MaxAllowedPacket int64
	// Port and Hostname are reported as @@port and @@hostname.
	Port     int
	Hostname string
	// ValveStatus, if set, answers SHOW VALVE STATUS (column names, rows).
	ValveStatus func() ([]string, [][]any)
	// ProcessList, if set, answers SHOW [FULL] PROCESSLIST: one row per
	// connection (Id, User, Host, db, Command, Time, State, Info), Info
	// cut to 100 characters unless full.
	ProcessList func(full bool) [][]any
	// Status, if set, answers SHOW [GLOBAL|SESSION] STATUS and
	// information_schema.GLOBAL_STATUS / SESSION_STATUS: (Variable_name,
	// Value) rows sorted by name, with the statement counters of
	// connection connID unless global.
	Status func(connID uint32, global bool) [][]any
	// FlushStatus, if set, carries out FLUSH STATUS for connection connID
	// (its session counters restart from zero).
	FlushStatus func(connID uint32)
	// Kill, if set, carries out KILL [QUERY] id for a session of user.
	Kill func(ctx context.Context, id uint64, query bool, user string) error
	// BackupDir is where queue_backup('name') writes its copies of the
	// store (each in BackupDir/name); "" refuses queue_backup.
	BackupDir string
	// Upstream says that q4mproxy stands in front of an upstream server,
	// which owns databases and every table that is not a queue table:
	// Route sends statements there, a database need not exist here to be
	// used, and a queue table's database is created here on demand.
	Upstream bool
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// Engine holds what all sessions share: the queue store and configuration.
type Engine struct {
	db  queue.Store
	cfg Config
	log *slog.Logger

	schemas  schemaCache // see schemacache.go
	counters counters
	conds    condCache

	// queueNames holds the lower-cased names of every queue table, for
	// routing without a parse (see fastUpstream); nil after DDL until the
	// next use rebuilds it, and rebuilt when the store's catalog version
	// moves (DDL by another process on a shared store).
	queueNames atomic.Pointer[queueNameSet]
}

type queueNameSet struct {
	version uint64 // the store's CatalogVersion when built
	names   map[string]bool
}

// NewEngine returns an Engine serving the queues of db.
func NewEngine(db queue.Store, cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxAllowedPacket == 0 {
		cfg.MaxAllowedPacket = 64 << 20
	}
	return &Engine{db: db, cfg: cfg, log: cfg.Logger.With("component", "sqlfront")}
}

// Session is one connection's SQL state: current database, variables and
// Q4M owner mode. It is not safe for concurrent use.
type Session struct {
	eng    *Engine
	owner  queue.Conn
	p      *parser.Parser
	db     string
	connID uint32
	user   string
	host   string

	// upCatalog is the upstream's rows of an information_schema table
	// while ExecCatalog runs (catalogeval.go).
	upCatalog *upstreamCatalog

	autocommit bool
	// inTxn is set by BEGIN and cleared by COMMIT and ROLLBACK; savepoints
	// are the names SAVEPOINT set in it (see transaction).
	inTxn      bool
	savepoints []string
	vars       map[string]any // session system variables that were SET
	userVars   map[string]any

	lastInsertID  uint64
	lastRowCount  int64
	lastFoundRows int64
	lastProj      *projCache // the last SELECT's projection (selectStmt)

	// warnings are the last statement's (Level, Code, Message), for SHOW
	// WARNINGS; set by SetWarning.
	warnings [][]any

	// createCheck, with an upstream, asks it whether a queue table may be
	// created: its database must exist there and the name be free.
	createCheck func(ctx context.Context, db, table string) error

	// pendingSrc is the relay source set by queue_set_srcid, carried by the
	// next INSERT into a queue table.
	pendingSrc *queue.Source

	// parsed caches the statements of short texts the session sent before:
	// a consumer loop repeats the same few statements, and parsing is the
	// largest CPU cost of a statement. Executing never modifies a tree.
	parsed map[string]ast.StmtNode

	// shapes caches parsed INSERT shapes (see insertshape.go); shapeBuf
	// and shapeArgs are scratch space for splitting a text.
	shapes    map[string]*Stmt
	shapeBuf  []byte
	shapeArgs []any

	// rows decodes the rows of a scan, and scanRow is its method value,
	// made once: a callback made per scan would be allocated, as anything
	// passed through the queue.Conn interface is.
	rows    rowDecoder
	scanRow func(rowid uint64, payload []byte) bool
}

// Bounds of the per-session parse cache.
const (
	maxCachedStmts   = 32
	maxCachedStmtLen = 512
)

// NewSession returns a session for connection connID of user@host.
func (e *Engine) NewSession(connID uint32, user, host string) *Session {
	s := &Session{
		eng:        e,
		owner:      e.db.NewConn(),
		p:          parser.New(),
		connID:     connID,
		user:       user,
		host:       host,
		autocommit: true,
		vars:       map[string]any{},
		userVars:   map[string]any{},
	}
	s.scanRow = s.rows.row
	return s
}

// SetCreateCheck sets the check CREATE TABLE ... ENGINE=queue makes with
// the upstream (Config.Upstream): the database must exist there (else 1049)
// and hold no table of that name (else 1050). Its error is returned as it is.
func (s *Session) SetCreateCheck(f func(ctx context.Context, db, table string) error) {
	s.createCheck = f
}

// SetConnID sets the connection id (known only after the handshake).
func (s *Session) SetConnID(id uint32) { s.connID = id }

// SetUser sets the authenticated user and client host.
func (s *Session) SetUser(user, host string) { s.user, s.host = user, host }

// Database returns the current database ("" if none).
func (s *Session) Database() string { return s.db }

// ClearDB leaves the session without a current database (COM_CHANGE_USER
// without one).
func (s *Session) ClearDB() { s.db = "" }

// Host is the client's host, as logged in.
func (s *Session) Host() string { return s.host }

// WaitTimeout is how long the connection may stay idle (@@wait_timeout,
// which SET SESSION wait_timeout changes).
func (s *Session) WaitTimeout() time.Duration {
	v, _ := s.sysVarValue("wait_timeout")
	n := coerceInt(v)
	if n <= 0 {
		n = 28800
	}
	return time.Duration(min(n, 31536000)) * time.Second
}

// AutoCommit reports the session's autocommit setting.
func (s *Session) AutoCommit() bool { return s.autocommit }

// Close releases the row the session owns, if any, back to its queue (the
// connection went away). It reports whether a row was released.
func (s *Session) Close() bool { return s.owner.Close() }

// Reset returns the session to the state of a new connection
// (COM_RESET_CONNECTION): the owned row is released, owner mode ends,
// variables are forgotten. The current database is kept, as MySQL keeps it.
func (s *Session) Reset() {
	s.owner.Close()
	s.pendingSrc = nil
	s.autocommit = true
	s.inTxn, s.savepoints = false, nil
	s.vars = map[string]any{}
	s.userVars = map[string]any{}
	s.lastInsertID, s.lastRowCount, s.lastFoundRows = 0, 0, 0
}

// UseDB makes name the current database (COM_INIT_DB and USE).
func (s *Session) UseDB(name string) error {
	if strings.EqualFold(name, "information_schema") {
		s.db = "information_schema"
		return nil
	}
	if !s.eng.cfg.Upstream && !s.eng.db.HasDatabase(name) {
		return errorf(ErrCodeBadDB, "Unknown database '%s'", name)
	}
	s.db = name
	return nil
}

// Owned describes the row the session owns ("db.table rowid N"), or "".
func (s *Session) Owned() string {
	db, table, rowid, ok := s.owner.Owned()
	if !ok {
		return ""
	}
	return fmt.Sprintf("owns %s.%s rowid %d", db, table, rowid)
}

// IsQueueTable reports whether name is a queue table of the current
// database.
func (s *Session) IsQueueTable(name string) bool {
	_, err := s.eng.db.Table(s.db, name)
	return err == nil
}

// Exec parses and executes one statement.
func (s *Session) Exec(ctx context.Context, sql string) (*Result, error) {
	if r, ok, err := s.preRoute(ctx, sql); ok {
		return r, err
	}
	if r, ok, err := s.execInsertShape(ctx, sql); ok {
		return r, err
	}
	stmt, err := s.parseOne(sql)
	if err != nil {
		return nil, err
	}
	return s.execStmt(ctx, stmt, nil)
}

func (s *Session) parseOne(sql string) (ast.StmtNode, error) {
	if st, ok := s.parsed[sql]; ok {
		return st, nil
	}
	st, err := s.parse(sql)
	if err != nil || len(sql) > maxCachedStmtLen {
		return st, err
	}
	if _, isInsert := st.(*ast.InsertStmt); isInsert {
		return st, nil // values differ from one INSERT to the next
	}
	if s.parsed == nil || len(s.parsed) >= maxCachedStmts {
		s.parsed = make(map[string]ast.StmtNode, maxCachedStmts)
	}
	s.parsed[sql] = st
	return st, nil
}

func (s *Session) parse(sql string) (ast.StmtNode, error) {
	stmts, _, err := s.p.Parse(sql, "", "")
	if err != nil {
		return nil, parseError(sql, err)
	}
	switch len(stmts) {
	case 0:
		return nil, errorf(ErrCodeEmptyQuery, "Query was empty")
	case 1:
		return stmts[0], nil
	}
	// Multiple statements are not advertised (CLIENT_MULTI_STATEMENTS), so
	// a real server reports a syntax error at the second one.
	return nil, errorf(ErrCodeParse, "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '%s' at line 1", strings.TrimSpace(stmts[1].Text()))
}

// Stmt is a prepared statement.
type Stmt struct {
	node   ast.StmtNode
	params int
}

// Text returns the statement's text as prepared.
func (st *Stmt) Text() string { return st.node.Text() }

// NumParams returns the number of ? placeholders.
func (st *Stmt) NumParams() int { return st.params }

// Prepare parses a statement with ? placeholders for Execute.
func (s *Session) Prepare(sql string) (*Stmt, error) {
	stmt, err := s.parse(sql)
	if err != nil {
		return nil, err
	}
	v := &paramCounter{}
	stmt.Accept(v)
	// The parser leaves Order at 0: number the markers by their position.
	sort.Slice(v.markers, func(i, j int) bool { return v.markers[i].Offset < v.markers[j].Offset })
	for i, m := range v.markers {
		m.Order = i
	}
	return &Stmt{node: stmt, params: len(v.markers)}, nil
}

// Execute runs a prepared statement with args bound to its placeholders.
// Args are nil, int64, uint64, float64, string or []byte.
func (s *Session) Execute(ctx context.Context, st *Stmt, args []any) (*Result, error) {
	if len(args) != st.params {
		return nil, errorf(ErrCodeWrongArguments, "Incorrect arguments to mysqld_stmt_execute")
	}
	return s.execStmt(ctx, st.node, args)
}

type paramCounter struct {
	markers []*test_driver.ParamMarkerExpr
}

func (v *paramCounter) Enter(n ast.Node) (ast.Node, bool) {
	if m, ok := n.(*test_driver.ParamMarkerExpr); ok {
		v.markers = append(v.markers, m)
	}
	return n, false
}

func (v *paramCounter) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// SetWarning makes a warning the one SHOW WARNINGS lists (until the next
// statement other than SHOW WARNINGS / SHOW ERRORS).
func (s *Session) SetWarning(code uint16, msg string) {
	s.warnings = [][]any{{"Warning", int64(code), msg}}
}

// execStmt is the routing point: every statement passes here.
func (s *Session) execStmt(ctx context.Context, stmt ast.StmtNode, params []any) (*Result, error) {
	if sh, ok := stmt.(*ast.ShowStmt); !ok || sh.Tp != ast.ShowWarnings && sh.Tp != ast.ShowErrors {
		s.warnings = nil
	}
	switch x := stmt.(type) {
	case *ast.SelectStmt:
		return s.selectStmt(ctx, x, params)
	case *ast.InsertStmt:
		for try := 0; ; try++ {
			r, err := s.insert(ctx, x, params)
			if !errors.Is(err, errTableChanged) {
				return r, err
			}
			if try == 3 {
				return nil, errorf(ErrCodeTableDefChanged, "Table definition has changed, please retry transaction")
			}
		}
	case *ast.DeleteStmt:
		return s.delete(ctx, x, params)
	case *ast.UpdateStmt:
		return s.update(ctx, x, params)
	case *ast.SetStmt:
		return s.set(x, params)
	case *ast.ShowStmt:
		return s.show(x)
	case *ast.ExplainStmt:
		if sh, ok := x.Stmt.(*ast.ShowStmt); ok { // DESCRIBE t
			return s.show(sh)
		}
		return nil, notSupported("EXPLAIN")
	case *ast.UseStmt:
		if err := s.UseDB(x.DBName); err != nil {
			return nil, err
		}
		return &Result{}, nil
	case *ast.BeginStmt, *ast.CommitStmt, *ast.RollbackStmt, *ast.SavepointStmt, *ast.ReleaseSavepointStmt:
		return s.transaction(stmt) // Q4M is not transactional: every statement takes effect at once
	case *ast.LockTablesStmt:
		return s.lockTables(x)
	case *ast.UnlockTablesStmt:
		return &Result{}, nil
	case *ast.FlushStmt:
		return s.flush(x)
	case *ast.CreateTableStmt:
		return s.createTable(ctx, x)
	case *ast.DropTableStmt:
		return s.dropTable(x)
	case *ast.AlterTableStmt:
		if r, ok, err := s.keysNoop(x); ok {
			return r, err
		}
		return s.alterTable(x)
	case *ast.TruncateTableStmt:
		return s.truncate(x)
	case *ast.CreateDatabaseStmt:
		return s.createDatabase(x)
	case *ast.DropDatabaseStmt:
		return s.dropDatabase(x)
	case *ast.DoStmt:
		env := &evalEnv{ctx: ctx, s: s, params: params, clause: "field list"}
		for _, e := range x.Exprs {
			if _, err := env.eval(e); err != nil {
				return nil, err
			}
		}
		return &Result{}, nil
	case *ast.KillStmt:
		if s.eng.cfg.Kill == nil {
			return nil, notSupported("KILL")
		}
		return &Result{}, s.eng.cfg.Kill(ctx, x.ConnectionID, x.Query, s.user)
	}
	return nil, notSupported(stmtName(stmt))
}

func stmtName(stmt ast.StmtNode) string {
	name := fmt.Sprintf("%T", stmt)
	name = strings.TrimPrefix(strings.TrimSuffix(name, "Stmt"), "*ast.")
	return name + " statements"
}

// preRoute handles statements the TiDB parser does not know, so that they
// get a clear "not supported" rather than a syntax error.
func (s *Session) preRoute(_ context.Context, sql string) (*Result, bool, error) {
	if t := strings.TrimLeft(sql, " \t\r\n"); len(t) < 4 || !strings.EqualFold(t[:4], "show") {
		return nil, false, nil
	}
	f := strings.Fields(strings.ToLower(strings.TrimRight(strings.TrimSpace(sql), "; \t\n")))
	if len(f) == 4 && f[0] == "show" && f[1] == "engine" && (f[3] == "status" || f[3] == "mutex") {
		if f[2] != "queue" {
			return nil, true, errorf(ErrCodeUnknownEngine, "Unknown storage engine '%s'", f[2])
		}
		if f[3] == "mutex" {
			return &Result{Columns: textColumns("Type", "Name", "Status")}, true, nil
		}
		return &Result{Columns: textColumns("Type", "Name", "Status"), Rows: [][]any{{"QUEUE", "", s.eng.engineStatus()}}}, true, nil
	}
	if len(f) == 3 && f[0] == "show" && f[1] == "valve" && f[2] == "status" {
		if s.eng.cfg.ValveStatus == nil {
			return &Result{Columns: textColumns("Valve", "Destination")}, true, nil
		}
		cols, rows := s.eng.cfg.ValveStatus()
		return &Result{Columns: textColumns(cols...), Rows: rows}, true, nil
	}
	return nil, false, nil
}

// resolve finds a queue table and its schema.
func (s *Session) resolve(tn *ast.TableName) (queue.Table, *tableSchema, error) {
	db := tn.Schema.O
	if db == "" {
		db = s.db
	}
	if db == "" {
		return queue.Table{}, nil, errorf(ErrCodeNoDB, "No database selected")
	}
	return s.resolveName(db, tn.Name.O)
}

func (s *Session) resolveName(db, name string) (queue.Table, *tableSchema, error) {
	t, err := s.eng.db.Table(db, name)
	if err != nil {
		return queue.Table{}, nil, &TableError{Database: db, Table: name, Err: err}
	}
	sch, err := s.eng.schema(t)
	return t, sch, err
}

func restoreExpr(e ast.Node) string {
	var sb strings.Builder
	if err := e.Restore(format.NewRestoreCtx(format.DefaultRestoreFlags, &sb)); err != nil {
		return "?"
	}
	return sb.String()
}

func (s *Session) createTable(ctx context.Context, ct *ast.CreateTableStmt) (*Result, error) {
	db := ct.Table.Schema.O
	if db == "" {
		db = s.db
	}
	if db == "" {
		return nil, errorf(ErrCodeNoDB, "No database selected")
	}
	name := ct.Table.Name.O
	if err := checkName(name, ErrCodeWrongTableName, "table"); err != nil {
		return nil, err
	}
	sch, err := s.buildSchema(ct)
	if err != nil {
		return nil, err
	}
	if _, err := s.eng.db.Table(db, name); err != nil && s.createCheck != nil {
		if err := s.createCheck(ctx, db, name); err != nil {
			var e *Error
			if ct.IfNotExists && errors.As(err, &e) && e.Code == ErrCodeTableExists {
				return &Result{}, nil
			}
			return nil, err
		}
	}
	if s.eng.cfg.Upstream && !s.eng.db.HasDatabase(db) {
		// The upstream owns databases (createCheck found this one there);
		// the queue store keeps a namespace of its own.
		if err := s.eng.db.CreateDatabase(db); err != nil && !errors.Is(err, queue.ErrDatabaseExists) {
			return nil, &DatabaseError{Database: db, Err: err}
		}
	}
	err = s.eng.db.CreateTable(db, name, encodeSchema(sch))
	s.eng.queueNames.Store(nil)
	switch {
	case errors.Is(err, queue.ErrTableExists) && ct.IfNotExists:
		return &Result{}, nil
	case errors.Is(err, queue.ErrNoSuchDatabase):
		return nil, &DatabaseError{Database: db, Err: err}
	case err != nil:
		return nil, &TableError{Database: db, Table: name, Err: err}
	}
	return &Result{}, nil
}

func checkName(name string, code uint16, what string) error {
	if name == "" || strings.HasSuffix(name, " ") || strings.ContainsRune(name, 0) || strings.ContainsAny(name, "/\\") {
		return errorf(code, "Incorrect %s name '%s'", what, name)
	}
	if len(name) > 64 {
		return errorf(ErrCodeTooLongIdent, "Identifier name '%s' is too long", name)
	}
	return nil
}

func (s *Session) dropTable(dt *ast.DropTableStmt) (*Result, error) {
	if dt.IsView {
		return nil, notSupported("DROP VIEW")
	}
	var missing []string
	for _, tn := range dt.Tables {
		db := tn.Schema.O
		if db == "" {
			db = s.db
		}
		if db == "" {
			return nil, errorf(ErrCodeNoDB, "No database selected")
		}
		err := s.eng.db.DropTable(db, tn.Name.O)
		s.eng.queueNames.Store(nil)
		if errors.Is(err, queue.ErrNoSuchTable) {
			missing = append(missing, db+"."+tn.Name.O)
			continue
		}
		if err != nil {
			return nil, &TableError{Database: db, Table: tn.Name.O, Err: err}
		}
	}
	if len(missing) > 0 && !dt.IfExists {
		return nil, errorf(ErrCodeBadTable, "Unknown table '%s'", strings.Join(missing, ","))
	}
	return &Result{}, nil
}

func (s *Session) truncate(tt *ast.TruncateTableStmt) (*Result, error) {
	t, _, err := s.resolve(tt.Table)
	if err != nil {
		return nil, err
	}
	if err := s.eng.db.TruncateTable(t.Database(), t.Name()); err != nil {
		return nil, &TableError{Database: t.Database(), Table: t.Name(), Err: err}
	}
	return &Result{}, nil
}

func (s *Session) createDatabase(cd *ast.CreateDatabaseStmt) (*Result, error) {
	if err := checkName(cd.Name.O, ErrCodeWrongDBName, "database"); err != nil {
		return nil, err
	}
	err := s.eng.db.CreateDatabase(cd.Name.O)
	if errors.Is(err, queue.ErrDatabaseExists) {
		if cd.IfNotExists {
			return &Result{}, nil
		}
		return nil, errorf(ErrCodeDBCreateExists, "Can't create database '%s'; database exists", cd.Name.O)
	}
	if err != nil {
		return nil, err
	}
	return &Result{AffectedRows: 1}, nil
}

func (s *Session) dropDatabase(dd *ast.DropDatabaseStmt) (*Result, error) {
	n, err := s.eng.db.DropDatabase(dd.Name.O)
	s.eng.queueNames.Store(nil)
	if errors.Is(err, queue.ErrNoSuchDatabase) {
		if dd.IfExists {
			return &Result{}, nil
		}
		return nil, errorf(ErrCodeDBDropExists, "Can't drop database '%s'; database doesn't exist", dd.Name.O)
	}
	if err != nil {
		return nil, err
	}
	if s.db == dd.Name.O {
		s.db = ""
	}
	return &Result{AffectedRows: uint64(n)}, nil
}
