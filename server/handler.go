package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gms "github.com/go-mysql-org/go-mysql/server"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
	"github.com/q4mproxy/q4mproxy/upstream"
)

// handler implements go-mysql's Handler for one connection. Its methods are
// called serially on the connection's goroutine, so it needs no lock.
type handler struct {
	srv  *Server
	sess *sqlfront.Session
	wc   *watchConn
	mc   *gms.Conn
	c    *conn
	ctx  context.Context // the connection's context
	log  *slog.Logger

	start time.Time

	up           *upstream.Session // nil without --upstream
	lastUpstream bool              // the upstream ran the last statement
	upDown       bool              // the last forwarded command found the upstream unreachable
	// queueWriteInTxn: a queue table changed during the upstream's open
	// transaction (a ROLLBACK then warns with 1196).
	queueWriteInTxn bool
	stmts           map[uint32]*pstmt       // prepared statements by id
	stmtSeq         uint32                  // the last statement id given out
	kills           sync.WaitGroup          // KILL QUERYs sent upstream (killUpstream)
	killFn          context.CancelCauseFunc // h.killUpstream, made once
	rbuf            []byte                  // the last command read, reused for the next
	quit            bool                    // the client sent COM_QUIT
	// changeUserFailures counts failed COM_CHANGE_USERs (changeUser).
	changeUserFailures int

	// the column definitions of the last text result set, as columns and
	// as packets, and the buffer it was written from (writeRows)
	text string // the statement text of the command being served (serveCommand)

	defCols []sqlfront.Column
	defs    [][]byte
	wbuf    []byte
}

var _ gms.Handler = (*handler)(nil)

func (h *handler) UseDB(name string) error {
	if err := h.sess.UseDB(name); err != nil {
		return h.toError(err)
	}
	return nil
}

// run executes fn with a statement context that KILL QUERY, shutdown and
// (for statements that may block) a client disconnect cancel.
func (h *handler) run(query string, fn func(ctx context.Context) (*sqlfront.Result, error)) (*sqlfront.Result, error) {
	if h.srv.shutting.Load() {
		return nil, errShutdown
	}
	ctx, cancel := context.WithCancelCause(h.ctx)
	defer cancel(nil)
	if h.c != nil {
		h.c.mu.Lock()
		h.c.cancelQuery = cancel
		h.c.mu.Unlock()
		defer func() {
			h.c.mu.Lock()
			h.c.cancelQuery = nil
			h.c.mu.Unlock()
		}()
	}
	// A statement that blocks watches the socket meanwhile, so that a
	// client that goes away ends it (and gives back what it took).
	ctx = queue.WithBlockHook(ctx, func() {
		h.wc.startWatch(cancel)
		if h.c != nil {
			h.c.act.blocked()
		}
	})
	defer h.wc.stopWatch()
	if h.log != nil && h.log.Enabled(ctx, slog.LevelDebug) {
		h.log.Debug("statement", "stmt", truncate(query, 200))
	}
	r, err := fn(ctx)
	if err != nil && ctx.Err() != nil {
		cause := context.Cause(ctx)
		if cause == errClientGone && h.log != nil {
			h.log.Info("client went away during a blocking statement")
		}
		if !errors.Is(err, cause) {
			err = fmt.Errorf("%w: %w", cause, err)
		}
	}
	return r, err
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// The rest of go-mysql's Handler: the command loop (dispatch.go) answers
// every command itself, so go-mysql calls only UseDB (for the database
// named in the handshake).

func (h *handler) HandleQuery(string) (*mysql.Result, error) { return nil, errNotDispatched }

func (h *handler) HandleFieldList(string, string) ([]*mysql.Field, error) {
	return nil, errNotDispatched
}

func (h *handler) HandleStmtPrepare(string) (int, int, any, error) {
	return 0, 0, nil, errNotDispatched
}

func (h *handler) HandleStmtExecute(any, string, []any) (*mysql.Result, error) {
	return nil, errNotDispatched
}

func (h *handler) HandleStmtClose(any) error { return errNotDispatched }

func (h *handler) HandleOtherCommand(byte, []byte) error { return errNotDispatched }

var errNotDispatched = errors.New("server: command not dispatched by go-mysql")

// statisticsPacket answers COM_STATISTICS (mysqladmin status) from the
// status counters.
func statisticsPacket(s *Server) []byte {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	up := time.Since(s.status.started).Seconds()
	q := s.status.questions.Load()
	qps := 0.0
	if up >= 1 {
		qps = float64(q) / up
	}
	tables := int64(0)
	if s.eng != nil {
		tables = s.eng.QueueStats().Tables
	}
	msg := fmt.Sprintf("Uptime: %d  Threads: %d  Questions: %d  Slow queries: 0  Opens: %d  Open tables: %d  Queries per second avg: %.3f",
		int(up), n, q, tables, tables, qps)
	pkt := []byte{byte(len(msg)), byte(len(msg) >> 8), byte(len(msg) >> 16), 1}
	return append(pkt, msg...)
}

// syncStatus mirrors the session's autocommit setting, and the upstream
// session's transaction, in the status flags of local answers.
func (h *handler) syncStatus() {
	if h.mc == nil {
		return
	}
	if h.sess.AutoCommit() {
		h.mc.SetStatus(mysql.SERVER_STATUS_AUTOCOMMIT)
	} else {
		h.mc.UnsetStatus(mysql.SERVER_STATUS_AUTOCOMMIT)
	}
	if h.up != nil && h.up.InTransaction() {
		h.mc.SetStatus(mysql.SERVER_STATUS_IN_TRANS)
	} else {
		h.mc.UnsetStatus(mysql.SERVER_STATUS_IN_TRANS)
	}
}

func (h *handler) toError(err error) error {
	log := h.log
	if log == nil {
		log = h.srv.log
	}
	return toMyError(err, log)
}
