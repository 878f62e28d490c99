package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gms "github.com/go-mysql-org/go-mysql/server"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
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
}

var _ gms.Handler = (*handler)(nil)

// alreadyWritten is returned from HandleStmtExecute after the handler wrote
// the response itself: go-mysql writes nothing for it.
func alreadyWritten() *mysql.Result {
	return &mysql.Result{Resultset: &mysql.Resultset{
		Fields:        []*mysql.Field{{}},
		Streaming:     mysql.StreamingMultiple,
		StreamingDone: true,
	}}
}

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
	ctx = queue.WithBlockHook(ctx, func() { h.wc.startWatch(cancel) })
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

func (h *handler) HandleQuery(query string) (*mysql.Result, error) {
	r, err := h.run(query, func(ctx context.Context) (*sqlfront.Result, error) {
		return h.sess.Exec(ctx, query)
	})
	h.syncStatus()
	if err != nil {
		return nil, h.toError(err)
	}
	return toResult(r, false), nil
}

func (h *handler) HandleFieldList(table, wildcard string) ([]*mysql.Field, error) {
	cols, err := h.sess.FieldList(table, wildcard)
	if err != nil {
		return nil, h.toError(err)
	}
	return fieldList(cols), nil
}

type prepared struct {
	query string
	stmt  *sqlfront.Stmt
}

func (h *handler) HandleStmtPrepare(query string) (int, int, any, error) {
	st, err := h.sess.Prepare(query)
	if err != nil {
		return 0, 0, nil, h.toError(err)
	}
	return st.NumParams(), 0, &prepared{query: query, stmt: st}, nil
}

func (h *handler) HandleStmtExecute(ctx any, query string, args []any) (*mysql.Result, error) {
	p, ok := ctx.(*prepared)
	if !ok {
		return nil, newError(mysql.ER_UNKNOWN_STMT_HANDLER, "Unknown prepared statement handler given to mysqld_stmt_execute")
	}
	if n := p.stmt.NumParams(); n > 0 && h.paramsNotResent(n, args) {
		// The client relies on types sent with an earlier execution;
		// the protocol library then reads every parameter as NULL. Refuse
		// rather than store NULLs.
		if werr := h.mc.WriteValue(newError(mysql.ER_WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_execute: parameter types must be sent with every execution (DBD::mysql: leave mysql_server_prepare off)")); werr != nil {
			return nil, werr
		}
		return alreadyWritten(), nil
	}
	vals := make([]any, len(args))
	for i, a := range args {
		vals[i] = argValue(a)
	}
	r, err := h.run(query, func(ctx context.Context) (*sqlfront.Result, error) {
		return h.sess.Execute(ctx, p.stmt, vals)
	})
	h.syncStatus()
	if err != nil {
		// go-mysql wraps errors returned from here, which loses their code:
		// write the error packet ourselves.
		if werr := h.mc.WriteValue(h.toError(err)); werr != nil {
			return nil, werr
		}
		return alreadyWritten(), nil
	}
	return toResult(r, true), nil
}

// argValue converts a bound parameter from go-mysql to sqlfront's values.
func argValue(a any) any {
	switch x := a.(type) {
	case nil:
		return nil
	case int8:
		return int64(x)
	case int16:
		return int64(x)
	case int32:
		return int64(x)
	case int64:
		return x
	case uint8:
		return int64(x)
	case uint16:
		return int64(x)
	case uint32:
		return int64(x)
	case uint64:
		return x
	case float32:
		return float64(x)
	case float64:
		return x
	case []byte:
		return x
	case string:
		return x
	case mysql.TypedBytes:
		switch x.Type {
		case mysql.MYSQL_TYPE_TINY_BLOB, mysql.MYSQL_TYPE_MEDIUM_BLOB, mysql.MYSQL_TYPE_LONG_BLOB, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_GEOMETRY:
			return append([]byte(nil), x.Bytes...)
		}
		return string(x.Bytes)
	}
	return fmt.Sprint(a)
}

// paramsNotResent reports whether the COM_STMT_EXECUTE just read had its
// new-params-bound flag clear (types omitted), which go-mysql does not
// support: it leaves every argument nil.
func (h *handler) paramsNotResent(n int, args []any) bool {
	for _, a := range args {
		if a != nil {
			return false
		}
	}
	head := h.wc.limit.head
	pos := 1 + 4 + 1 + 4 + (n+7)/8 // command, statement id, flags, iteration count, NULL bitmap
	return len(head) > pos && head[0] == mysql.COM_STMT_EXECUTE && head[pos] == 0
}

func (h *handler) HandleStmtClose(any) error { return nil }

func (h *handler) HandleOtherCommand(cmd byte, data []byte) error {
	switch cmd {
	case mysql.COM_STATISTICS:
		h.wc.replaceResponse(statisticsPacket(h.srv))
		return nil
	case mysql.COM_SET_OPTION:
		return nil
	case mysql.COM_RESET_CONNECTION:
		h.sess.Reset()
		h.syncStatus()
		return nil
	}
	return newError(mysql.ER_UNKNOWN_COM_ERROR, "Unknown command")
}

func statisticsPacket(s *Server) []byte {
	s.mu.Lock()
	n := len(s.conns)
	s.mu.Unlock()
	msg := fmt.Sprintf("Uptime: %d  Threads: %d  Questions: 0  Slow queries: 0  Opens: 0  Open tables: 0  Queries per second avg: 0.000",
		int(time.Since(startTime).Seconds()), n)
	pkt := []byte{byte(len(msg)), byte(len(msg) >> 8), byte(len(msg) >> 16), 1}
	return append(pkt, msg...)
}

var startTime = time.Now()

// syncStatus mirrors the session's autocommit setting in the status flags.
func (h *handler) syncStatus() {
	if h.mc == nil {
		return
	}
	if h.sess.AutoCommit() {
		h.mc.SetStatus(mysql.SERVER_STATUS_AUTOCOMMIT)
	} else {
		h.mc.UnsetStatus(mysql.SERVER_STATUS_AUTOCOMMIT)
	}
}

func (h *handler) toError(err error) error {
	log := h.log
	if log == nil {
		log = h.srv.log
	}
	return toMyError(err, log)
}
