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

// ProcessList returns one row per logged-in connection for SHOW
// PROCESSLIST (Id, User, Host, db, Command, Time, State, Info), by id; Info
// is cut to 100 characters unless full, as mysqld does. Safe for
// concurrent use.
func (s *Server) ProcessList(full bool) [][]any {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	sort.Slice(conns, func(i, j int) bool { return conns[i].id < conns[j].id })
	now := time.Now()
	rows := make([][]any, 0, len(conns))
	for _, c := range conns {
		a := &c.act
		a.mu.Lock()
		var db, info any
		if a.db != "" {
			db = a.db
		}
		if a.info != "" {
			in := a.info
			if !full && len(in) > 100 {
				in = in[:100]
			}
			info = in
		}
		rows = append(rows, []any{int64(c.id), c.user, a.host, db, a.command,
			int64(now.Sub(a.since) / time.Second), a.state, info})
		a.mu.Unlock()
	}
	return rows
}
