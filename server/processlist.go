package server

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// activity is what SHOW PROCESSLIST shows of a connection. The connection's
// goroutine writes it around each command; ProcessList reads it.
type activity struct {
	mu      sync.Mutex
	host    string // client host:port
	db      string
	command string // Sleep, Query, Execute, ...
	state   string
	info    string // the statement running, if any
	since   time.Time
}

// begin records the start of a command.
func (a *activity) begin(command, info string) {
	a.mu.Lock()
	a.command, a.info, a.state, a.since = command, info, "", time.Now()
	a.mu.Unlock()
}

// end records that the connection is idle again, in database db; state
// says what it holds meanwhile (an owned row).
func (a *activity) end(db, state string) {
	a.mu.Lock()
	a.command, a.info, a.state, a.db, a.since = "Sleep", "", state, db, time.Now()
	a.mu.Unlock()
}

// blocked records that the running statement waits: in queue_wait for rows
// (its tables are in the statement), or in SLEEP.
func (a *activity) blocked() {
	a.mu.Lock()
	a.state = "User sleep"
	if strings.Contains(strings.ToLower(a.info), "queue_wait") {
		a.state = "Waiting in queue_wait"
	}
	a.mu.Unlock()
}

// commandName is the Command column for a protocol command, as mysqld
// names them.
func commandName(cmd byte) string {
	switch cmd {
	case mysql.COM_QUERY:
		return "Query"
	case mysql.COM_STMT_PREPARE:
		return "Prepare"
	case mysql.COM_STMT_EXECUTE:
		return "Execute"
	case mysql.COM_STMT_FETCH:
		return "Fetch"
	case mysql.COM_INIT_DB:
		return "Init DB"
	case mysql.COM_FIELD_LIST:
		return "Field List"
	case mysql.COM_PING:
		return "Ping"
	case mysql.COM_STATISTICS:
		return "Statistics"
	case mysql.COM_RESET_CONNECTION:
		return "Reset connection"
	case mysql.COM_STMT_CLOSE:
		return "Close stmt"
	case mysql.COM_STMT_RESET:
		return "Reset stmt"
	case mysql.COM_STMT_SEND_LONG_DATA:
		return "Long Data"
	case mysql.COM_QUIT:
		return "Quit"
	}
	return "Query"
}

// ProcessRow is one connection as SHOW PROCESSLIST shows it.
type ProcessRow struct {
	ID      uint32
	User    string
	Host    string // client host:port
	DB      string // "" for none
	Command string // Sleep, Query, Execute, ...
	// Time is how long the connection has been in its command (or idle).
	Time  time.Duration
	State string // "Waiting in queue_wait", "User sleep", an owned row, ...
	Info  string // the statement running, whole; "" for none
}

// ProcessRows returns one row per logged-in connection, by id. Safe for
// concurrent use.
func (s *Server) ProcessRows() []ProcessRow {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	sort.Slice(conns, func(i, j int) bool { return conns[i].id < conns[j].id })
	now := time.Now()
	rows := make([]ProcessRow, 0, len(conns))
	for _, c := range conns {
		a := &c.act
		a.mu.Lock()
		rows = append(rows, ProcessRow{ID: c.id, User: c.userName(), Host: a.host, DB: a.db, Command: a.command,
			Time: now.Sub(a.since), State: a.state, Info: a.info})
		a.mu.Unlock()
	}
	return rows
}

// ProcessList returns one row per logged-in connection for SHOW
// PROCESSLIST (Id, User, Host, db, Command, Time, State, Info), by id; Info
// is cut to 100 characters unless full, as mysqld does. Safe for
// concurrent use.
func (s *Server) ProcessList(full bool) [][]any {
	prs := s.ProcessRows()
	rows := make([][]any, 0, len(prs))
	for _, p := range prs {
		var db, info any
		if p.DB != "" {
			db = p.DB
		}
		if p.Info != "" {
			in := p.Info
			if !full && len(in) > 100 {
				in = in[:100]
			}
			info = in
		}
		rows = append(rows, []any{int64(p.ID), p.User, p.Host, db, p.Command, int64(p.Time / time.Second), p.State, info})
	}
	return rows
}
