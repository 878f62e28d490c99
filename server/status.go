package server

import (
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// Server status variables, as SHOW STATUS names them. Counters are atomics
// bumped where the connection does the thing counted (reads, writes,
// commands); gauges are read when asked. A connection keeps its own copy of
// the per-statement counters for SHOW SESSION STATUS.

// StatusVar is one status variable: its MySQL name and value.
type StatusVar struct {
	Name  string
	Value int64
}

// comNames are the Com_* statement counters, in SHOW STATUS order. The
// index of a name is its com kind.
var comNames = [...]string{
	"Com_admin_commands",
	"Com_alter_db",
	"Com_alter_table",
	"Com_analyze",
	"Com_begin",
	"Com_call_procedure",
	"Com_change_db",
	"Com_check",
	"Com_commit",
	"Com_create_db",
	"Com_create_index",
	"Com_create_table",
	"Com_create_view",
	"Com_delete",
	"Com_delete_multi",
	"Com_do",
	"Com_drop_db",
	"Com_drop_index",
	"Com_drop_table",
	"Com_drop_view",
	"Com_flush",
	"Com_grant",
	"Com_insert",
	"Com_insert_select",
	"Com_kill",
	"Com_load",
	"Com_lock_tables",
	"Com_optimize",
	"Com_release_savepoint",
	"Com_rename_table",
	"Com_replace",
	"Com_replace_select",
	"Com_rollback",
	"Com_rollback_to_savepoint",
	"Com_savepoint",
	"Com_select",
	"Com_set_option",
	"Com_show_binlogs",
	"Com_show_charsets",
	"Com_show_collations",
	"Com_show_create_db",
	"Com_show_create_table",
	"Com_show_databases",
	"Com_show_engine_status",
	"Com_show_errors",
	"Com_show_fields",
	"Com_show_grants",
	"Com_show_keys",
	"Com_show_master_status",
	"Com_show_plugins",
	"Com_show_processlist",
	"Com_show_slave_status",
	"Com_show_status",
	"Com_show_storage_engines",
	"Com_show_table_status",
	"Com_show_tables",
	"Com_show_triggers",
	"Com_show_variables",
	"Com_show_warnings",
	"Com_stmt_close",
	"Com_stmt_execute",
	"Com_stmt_fetch",
	"Com_stmt_prepare",
	"Com_stmt_reset",
	"Com_stmt_send_long_data",
	"Com_truncate",
	"Com_unlock_tables",
	"Com_update",
	"Com_update_multi",
}

// comIndex maps a Com_ name without its prefix ("select") to its kind.
var comIndex = func() map[string]int {
	m := make(map[string]int, len(comNames))
	for i, n := range comNames {
		m[strings.TrimPrefix(n, "Com_")] = i
	}
	return m
}()

// com returns the kind of a Com_ counter named without its prefix; it
// panics on a name not in comNames (a programming error caught by tests).
func com(name string) int {
	i, ok := comIndex[name]
	if !ok {
		panic("server: no status variable Com_" + name)
	}
	return i
}

// noCom is the kind of a statement no Com_ counter counts.
const noCom = -1

// stmtCounts are the counters a connection keeps for itself as well as
// for the server: SHOW SESSION STATUS shows the connection's.
type stmtCounts struct {
	com                      [len(comNames)]atomic.Uint64
	questions                atomic.Uint64
	bytesReceived, bytesSent atomic.Uint64
}

// status holds the server-wide counters. Safe for concurrent use.
type status struct {
	started time.Time
	stmtCounts

	connections     atomic.Uint64 // connection attempts
	abortedConnects atomic.Uint64 // attempts that did not log in
	abortedClients  atomic.Uint64 // logged-in connections that ended without COM_QUIT
	maxConnErrors   atomic.Uint64 // refused over --max-connections
	threadsCreated  atomic.Uint64
	threadsRunning  atomic.Int64
	maxUsed         atomic.Int64
	maxUsedTime     atomic.Int64 // unix seconds
	flushed         atomic.Int64 // unix nanoseconds of the last FLUSH STATUS; 0 for none
	errMu           sync.Mutex
	errs            map[uint16]uint64 // errors sent to clients, by code; guarded by errMu
}

// countCom counts one statement of kind k for the server and, if c is not
// nil, for the connection.
func (st *status) countCom(c *stmtCounts, k int) {
	if k < 0 {
		return
	}
	st.com[k].Add(1)
	if c != nil {
		c.com[k].Add(1)
	}
}

// countQuestion counts one statement a client sent (Questions, Queries).
func (st *status) countQuestion(c *stmtCounts) {
	st.questions.Add(1)
	if c != nil {
		c.questions.Add(1)
	}
}

// countError counts an error sent to a client.
func (st *status) countError(code uint16) {
	st.errMu.Lock()
	if st.errs == nil {
		st.errs = map[uint16]uint64{}
	}
	st.errs[code]++
	st.errMu.Unlock()
}

// countErrorValue counts v if it is an error go-mysql is to send: its
// code, or 1105 for an error it sends as unknown.
func (st *status) countErrorValue(v any) {
	err, ok := v.(error)
	if !ok || err == nil {
		return
	}
	var me *mysql.MyError
	if errors.As(err, &me) {
		st.countError(me.Code)
		return
	}
	st.countError(mysql.ER_UNKNOWN_ERROR)
}

// connected records a connection that logged in, with n the connections
// logged in now.
func (st *status) connected(n int) {
	st.threadsCreated.Add(1)
	for {
		cur := st.maxUsed.Load()
		if int64(n) <= cur {
			return
		}
		if st.maxUsed.CompareAndSwap(cur, int64(n)) {
			st.maxUsedTime.Store(time.Now().Unix())
			return
		}
	}
}

// ErrorCounts returns how many errors the server has sent to clients, by
// MySQL error code: answers to statements and commands (its own and those
// relayed from the upstream), refused logins and refused connections.
// Safe for concurrent use; the map is a copy.
func (s *Server) ErrorCounts() map[uint16]uint64 {
	st := &s.status
	st.errMu.Lock()
	defer st.errMu.Unlock()
	m := make(map[uint16]uint64, len(st.errs))
	for k, v := range st.errs {
		m[k] = v
	}
	return m
}

// StatusVars returns the server's status variables (the global values of
// SHOW GLOBAL STATUS, Com_* and Queue_* included) sorted by name as SHOW
// STATUS lists them. Safe for concurrent use.
func (s *Server) StatusVars() []StatusVar {
	return s.statusVars(nil)
}

// statusVars returns the status variables with the per-statement counters
// of c (SHOW SESSION STATUS) or, for nil, of the server.
func (s *Server) statusVars(c *stmtCounts) []StatusVar {
	st := &s.status
	own := &st.stmtCounts
	if c != nil {
		own = c
	}
	s.mu.Lock()
	connected := len(s.conns)
	s.mu.Unlock()
	u := func(a *atomic.Uint64) int64 { return int64(a.Load()) }
	vars := make([]StatusVar, 0, len(comNames)+40)
	add := func(name string, v int64) { vars = append(vars, StatusVar{name, v}) }
	add("Aborted_clients", u(&st.abortedClients))
	add("Aborted_connects", u(&st.abortedConnects))
	add("Bytes_received", u(&own.bytesReceived))
	add("Bytes_sent", u(&own.bytesSent))
	for i, n := range comNames {
		add(n, u(&own.com[i]))
	}
	add("Connection_errors_max_connections", u(&st.maxConnErrors))
	add("Connections", u(&st.connections))
	add("Max_used_connections", st.maxUsed.Load())
	add("Queries", u(&own.questions))
	add("Questions", u(&own.questions))
	if s.eng != nil {
		q := s.eng.QueueStats()
		b := func(v bool) int64 {
			if v {
				return 1
			}
			return 0
		}
		add("Queue_aborted", int64(q.RestoredByAbort))
		add("Queue_commits", int64(q.Commits))
		add("Queue_consumed", int64(q.RowsRemoved))
		add("Queue_disk_full", b(q.DiskFull))
		add("Queue_inserted", int64(q.RowsWritten))
		add("Queue_owned", q.Owned)
		add("Queue_restored", int64(q.RestoredByClose))
		add("Queue_rows", q.Rows)
		add("Queue_syncs", int64(q.Syncs))
		add("Queue_tables", q.Tables)
		add("Queue_wait_delayed", int64(q.WaitDelayed))
		add("Queue_wait_immediate", int64(q.WaitImmediate))
		add("Queue_wait_timeouts", int64(q.WaitTimeout))
		add("Queue_waiters", q.Waiters)
	}
	add("Slow_queries", 0)
	add("Threads_cached", 0)
	add("Threads_connected", int64(connected))
	add("Threads_created", u(&st.threadsCreated))
	add("Threads_running", st.threadsRunning.Load())
	up := int64(time.Since(st.started) / time.Second)
	add("Uptime", up)
	if f := st.flushed.Load(); f != 0 {
		up = int64(time.Since(time.Unix(0, f)) / time.Second)
	}
	add("Uptime_since_flush_status", up)
	sort.Slice(vars, func(i, j int) bool { return strings.ToLower(vars[i].Name) < strings.ToLower(vars[j].Name) })
	return vars
}

// FlushStatus carries out FLUSH STATUS for connection connID, as MySQL
// does: the connection's own counters (Com_*, Questions, Bytes_*) restart
// from zero (the global ones keep counting), Max_used_connections from the
// connections open now, and Uptime_since_flush_status from now. Safe for
// concurrent use.
func (s *Server) FlushStatus(connID uint32) {
	st := &s.status
	s.mu.Lock()
	c := s.conns[connID]
	n := int64(len(s.conns))
	s.mu.Unlock()
	if c != nil {
		for i := range c.counts.com {
			c.counts.com[i].Store(0)
		}
		c.counts.questions.Store(0)
		c.counts.bytesReceived.Store(0)
		c.counts.bytesSent.Store(0)
	}
	st.maxUsed.Store(n)
	st.maxUsedTime.Store(time.Now().Unix())
	st.flushed.Store(time.Now().UnixNano())
}

// StatusRows answers SHOW [GLOBAL|SESSION] STATUS: (Variable_name, Value)
// rows sorted by name, with the per-statement counters of connection
// connID unless global. Safe for concurrent use.
func (s *Server) StatusRows(connID uint32, global bool) [][]any {
	var own *stmtCounts
	if !global {
		s.mu.Lock()
		if c := s.conns[connID]; c != nil {
			own = &c.counts
		}
		s.mu.Unlock()
	}
	vars := s.statusVars(own)
	rows := make([][]any, 0, len(vars)+1)
	for _, v := range vars {
		rows = append(rows, []any{v.Name, strconv.FormatInt(v.Value, 10)})
		if v.Name == "Max_used_connections" {
			var at any = ""
			if t := s.status.maxUsedTime.Load(); t != 0 {
				at = time.Unix(t, 0).Format(time.DateTime)
			}
			rows = append(rows, []any{"Max_used_connections_time", at})
		}
	}
	return rows
}

// classify returns the Com_ kind of a statement text, from its first words
// (after comments; a /*!...*/ comment's text counts, as mysqld runs it).
//
// It runs for every statement, so it allocates nothing for the usual ones
// (BenchmarkClassify): the words go into an array on the stack and
// keywords are lower-cased by lookup.
func classify(q string) int {
	var buf [4]string
	w := words(buf[:0], q)
	if len(w) == 0 {
		return noCom
	}
	at := func(i int) string {
		if i < len(w) {
			return w[i]
		}
		return ""
	}
	switch w[0] {
	case "select", "with", "table", "values":
		return com("select")
	case "insert", "replace":
		if containsFold(q, "select") && !containsFold(q, "values") {
			return com(w[0] + "_select")
		}
		return com(w[0])
	case "update":
		return com("update")
	case "delete":
		return com("delete")
	case "set":
		return com("set_option")
	case "use":
		return com("change_db")
	case "begin", "start":
		if w[0] == "start" && at(1) != "transaction" {
			return noCom
		}
		return com("begin")
	case "commit":
		return com("commit")
	case "rollback":
		if at(1) == "to" || at(2) == "to" {
			return com("rollback_to_savepoint")
		}
		return com("rollback")
	case "savepoint":
		return com("savepoint")
	case "release":
		return com("release_savepoint")
	case "kill":
		return com("kill")
	case "call":
		return com("call_procedure")
	case "do":
		return com("do")
	case "truncate":
		return com("truncate")
	case "flush":
		return com("flush")
	case "grant":
		return com("grant")
	case "load":
		return com("load")
	case "lock":
		return com("lock_tables")
	case "unlock":
		return com("unlock_tables")
	case "analyze":
		return com("analyze")
	case "check":
		return com("check")
	case "optimize":
		return com("optimize")
	case "rename":
		return com("rename_table")
	case "describe", "desc", "explain":
		if at(1) == "select" || at(1) == "insert" || at(1) == "update" || at(1) == "delete" || at(1) == "format" || at(1) == "analyze" {
			return com("select")
		}
		return com("show_fields")
	case "create", "drop", "alter":
		obj := at(1)
		for _, skip := range []string{"temporary", "or", "replace", "unique", "algorithm", "definer", "online", "offline", "ignore"} {
			if obj == skip {
				obj = at(2)
				if obj == "replace" || obj == "unique" {
					obj = at(3)
				}
				break
			}
		}
		switch obj {
		case "table":
			return com(w[0] + "_table")
		case "database", "schema":
			return com(w[0] + "_db")
		case "index":
			if w[0] == "alter" {
				return noCom
			}
			return com(w[0] + "_index")
		case "view":
			if w[0] == "alter" {
				return noCom
			}
			return com(w[0] + "_view")
		}
		return noCom
	case "show":
		return classifyShow(w[1:])
	}
	return noCom
}

// classifyShow returns the Com_show_ kind of SHOW's words after SHOW.
func classifyShow(w []string) int {
	for len(w) > 0 && (w[0] == "global" || w[0] == "session" || w[0] == "local" || w[0] == "full" || w[0] == "extended") {
		w = w[1:]
	}
	if len(w) == 0 {
		return noCom
	}
	next := ""
	if len(w) > 1 {
		next = w[1]
	}
	switch w[0] {
	case "status":
		return com("show_status")
	case "variables":
		return com("show_variables")
	case "processlist":
		return com("show_processlist")
	case "tables":
		return com("show_tables")
	case "databases", "schemas":
		return com("show_databases")
	case "table":
		return com("show_table_status")
	case "columns", "fields":
		return com("show_fields")
	case "index", "indexes", "keys":
		return com("show_keys")
	case "warnings":
		return com("show_warnings")
	case "errors":
		return com("show_errors")
	case "engine":
		return com("show_engine_status")
	case "engines", "storage":
		return com("show_storage_engines")
	case "plugins":
		return com("show_plugins")
	case "grants":
		return com("show_grants")
	case "charset", "character":
		return com("show_charsets")
	case "collation":
		return com("show_collations")
	case "triggers":
		return com("show_triggers")
	case "binary", "master":
		if next == "logs" {
			return com("show_binlogs")
		}
		return com("show_master_status")
	case "slave", "replica", "all":
		return com("show_slave_status")
	case "create":
		if next == "database" || next == "schema" {
			return com("show_create_db")
		}
		if next == "table" {
			return com("show_create_table")
		}
	}
	return noCom
}

// words appends to out, up to its capacity, the lower-cased leading words
// of a statement text, skipping whitespace, comments and opening
// parentheses; the text of a /*! ... */ comment is read, as mysqld executes
// it.
func words(out []string, q string) []string {
	i := 0
	for i < len(q) && len(out) < cap(out) {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '(' || c == ';':
			i++
		case c == '#' || c == '-' && i+2 < len(q) && q[i+1] == '-' && (q[i+2] == ' ' || q[i+2] == '\t'):
			for i < len(q) && q[i] != '\n' {
				i++
			}
		case c == '/' && i+1 < len(q) && q[i+1] == '*':
			if i+2 < len(q) && q[i+2] == '!' {
				i += 3
				for i < len(q) && q[i] >= '0' && q[i] <= '9' {
					i++
				}
				continue
			}
			if i+3 < len(q) && q[i+2] == 'M' && q[i+3] == '!' { // MariaDB's /*M! */
				i += 4
				for i < len(q) && q[i] >= '0' && q[i] <= '9' {
					i++
				}
				continue
			}
			end := strings.Index(q[i+2:], "*/")
			if end < 0 {
				return out
			}
			i += 2 + end + 2
		case c == '*' && i+1 < len(q) && q[i+1] == '/':
			i += 2 // the end of a /*! comment
		case isWordByte(c):
			j := i
			for j < len(q) && isWordByte(q[j]) {
				j++
			}
			out = append(out, lowerWord(q[i:j]))
			i = j
		default:
			if len(out) == 0 {
				return out // not a statement that starts with a word
			}
			i++
		}
	}
	return out
}

// keywords are the lower-case words classify compares with, so that
// lowerWord finds an upper-case keyword's lower case without allocating.
var keywords = map[string]string{}

func init() {
	for _, k := range strings.Fields(`select with table values insert replace update delete set use begin start
		transaction commit rollback to savepoint release kill call do truncate flush grant load lock unlock
		analyze check optimize rename describe desc explain format create drop alter temporary or unique
		algorithm definer online offline ignore database schema index view show global session local full
		extended status variables processlist tables databases schemas columns fields indexes keys warnings
		errors engine engines storage plugins grants charset character collation triggers binary master logs
		slave replica all into from query`) {
		keywords[k] = k
	}
}

// lowerWord is w in lower case; for a keyword it does not allocate.
func lowerWord(w string) string {
	var b [16]byte
	if len(w) > len(b) {
		return strings.ToLower(w)
	}
	for i := 0; i < len(w); i++ {
		c := w[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	if k, ok := keywords[string(b[:len(w)])]; ok {
		return k
	}
	return strings.ToLower(w)
}

// containsFold reports whether sub (lower-case ASCII) is within s, ignoring
// ASCII case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

func isWordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

// commandCom returns the Com_ kind a protocol command counts under by
// itself (COM_QUERY's statements are classified by their text), and
// whether it counts among Questions.
func commandCom(cmd byte) (kind int, question bool) {
	switch cmd {
	case mysql.COM_QUERY:
		return noCom, true
	case mysql.COM_INIT_DB:
		return com("change_db"), true
	case mysql.COM_FIELD_LIST:
		return com("show_fields"), true
	case mysql.COM_STMT_PREPARE:
		return com("stmt_prepare"), false
	case mysql.COM_STMT_EXECUTE:
		return com("stmt_execute"), true
	case mysql.COM_STMT_FETCH:
		return com("stmt_fetch"), true
	case mysql.COM_STMT_CLOSE:
		return com("stmt_close"), false
	case mysql.COM_STMT_RESET:
		return com("stmt_reset"), false
	case mysql.COM_STMT_SEND_LONG_DATA:
		return com("stmt_send_long_data"), false
	case mysql.COM_SET_OPTION:
		return com("set_option"), false
	case mysql.COM_PING, mysql.COM_STATISTICS, mysql.COM_RESET_CONNECTION,
		mysql.COM_DEBUG, mysql.COM_PROCESS_INFO, mysql.COM_CHANGE_USER:
		return com("admin_commands"), false
	case mysql.COM_QUIT:
		return noCom, false
	}
	return noCom, true
}
