package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	gms "github.com/go-mysql-org/go-mysql/server"

	"github.com/q4mproxy/q4mproxy/sqlfront"
	"github.com/q4mproxy/q4mproxy/upstream"
)

// The command loop is q4mproxy's own: go-mysql logs the client in and
// reads and writes packets, but each command is read here and either
// answered from a sqlfront session or relayed to the upstream, so that a
// forwarded command (a prepared statement's execution above all) reaches
// the upstream byte for byte.

// noReply is returned by a command that wrote its answer itself, or has
// none (COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA).
type noReplyT struct{}

var noReply any = noReplyT{}

// serveCommand reads one command and answers it. An error means the
// connection must be closed.
func (h *handler) serveCommand() error {
	// The command is read into the connection's own buffer: nothing keeps
	// a slice of it past the command (texts and parameters are copied).
	data, err := h.mc.ReadPacketReuseMem(h.rbuf[:0])
	if cap(data) <= maxKeptCommand {
		h.rbuf = data
	} else {
		h.rbuf = nil
	}
	if err != nil {
		h.mc.Close()
		return err
	}
	var v any
	st := &h.srv.status
	if len(data) == 0 {
		v = newError(mysql.ER_UNKNOWN_COM_ERROR, "Unknown command")
	} else {
		text := h.statementText(data)
		h.text = text
		h.count(data, text)
		if h.c != nil {
			h.c.act.begin(commandName(data[0]), text)
		}
		st.threadsRunning.Add(1)
		v, err = h.dispatch(data[0], data[1:])
		st.threadsRunning.Add(-1)
		if h.c != nil {
			h.c.act.end(h.sess.Database(), h.sess.Owned())
		}
		if err != nil {
			h.mc.Close()
			return err
		}
	}
	if v != noReply {
		st.countErrorValue(v)
		if rr, ok := v.(rowsResult); ok {
			err = h.writeRows(rr.r)
		} else {
			err = h.mc.WriteValue(v)
		}
	}
	h.mc.ResetSequence()
	if err != nil {
		h.mc.Close()
	}
	return err
}

// count counts a command (data, with text the statement it runs) in the
// status counters: Questions, and Com_* by command and by statement (a
// prepared statement's execution counts as Com_stmt_execute and as its
// statement's kind, as in mysqld).
func (h *handler) count(data []byte, text string) {
	st := &h.srv.status
	var own *stmtCounts
	if h.c != nil {
		own = &h.c.counts
	}
	kind, question := commandCom(data[0])
	if question {
		st.countQuestion(own)
	}
	st.countCom(own, kind)
	switch data[0] {
	case mysql.COM_QUERY:
		st.countCom(own, classify(text))
	case mysql.COM_STMT_EXECUTE:
		if p := h.stmt(data[1:]); p != nil {
			if !p.classified {
				p.kind, p.classified = classify(p.text), true
			}
			st.countCom(own, p.kind)
		}
	}
}

// statementText is the statement a command runs, for SHOW PROCESSLIST.
func (h *handler) statementText(data []byte) string {
	switch data[0] {
	case mysql.COM_QUERY, mysql.COM_STMT_PREPARE:
		return string(data[1:])
	case mysql.COM_STMT_EXECUTE:
		if p := h.stmt(data[1:]); p != nil {
			return p.text
		}
	}
	return ""
}

// dispatch answers one command: it returns what go-mysql is to write
// (a result, an error, nil for OK, or noReply), or an error that ends the
// connection.
func (h *handler) dispatch(cmd byte, data []byte) (any, error) {
	switch cmd {
	case mysql.COM_QUIT:
		h.quit = true
		h.mc.Close()
		return noReply, nil
	case mysql.COM_QUERY:
		return h.query(data)
	case mysql.COM_PING:
		return nil, nil
	case mysql.COM_INIT_DB:
		return h.initDB(data)
	case mysql.COM_FIELD_LIST:
		table, wildcard, _ := bytes.Cut(data, []byte{0})
		if h.up != nil && !h.sess.IsQueueTable(string(table)) {
			return h.forward(cmd, data)
		}
		return h.fieldList(string(table), string(wildcard)), nil
	case mysql.COM_STMT_PREPARE:
		return h.prepare(data)
	case mysql.COM_STMT_EXECUTE:
		return h.execute(data)
	case mysql.COM_STMT_SEND_LONG_DATA:
		if p := h.stmt(data); p != nil {
			if p.local == nil {
				return h.forward(cmd, data)
			}
			p.addLongData(data[4:])
		}
		return noReply, nil
	case mysql.COM_STMT_CLOSE:
		if p := h.stmt(data); p != nil {
			delete(h.stmts, binary.LittleEndian.Uint32(data))
			if p.local == nil {
				return h.forward(cmd, data)
			}
		}
		return noReply, nil
	case mysql.COM_STMT_RESET:
		p := h.stmt(data)
		switch {
		case p == nil:
			return unknownStmt(data, "mysqld_stmt_reset"), nil
		case p.local == nil:
			return h.forward(cmd, data)
		}
		p.long = nil
		return nil, nil
	case mysql.COM_STMT_FETCH:
		p := h.stmt(data)
		switch {
		case p == nil:
			return unknownStmt(data, "mysqld_stmt_fetch"), nil
		case p.local == nil:
			return h.forward(cmd, data)
		}
		return newError(mysql.ER_STMT_HAS_NO_OPEN_CURSOR, fmt.Sprintf("The statement (%d) has no open cursor.", binary.LittleEndian.Uint32(data))), nil
	case mysql.COM_SET_OPTION:
		if h.up != nil && h.up.Connected() {
			return h.forward(cmd, data)
		}
		return noReply, h.writeEOF()
	case mysql.COM_REFRESH:
		// mysql_refresh (mysqldump --flush-logs, mysqladmin flush-tables):
		// the upstream's to do; here every write is in the store when it
		// is acknowledged and there are no logs to rotate.
		if h.up != nil {
			return h.forward(cmd, data)
		}
		return nil, nil
	case mysql.COM_RESET_CONNECTION:
		h.sess.Reset()
		clear(h.stmts)
		h.lastUpstream = false
		if h.up != nil && h.up.Connected() {
			v, err := h.forward(cmd, data)
			h.syncStatus()
			return v, err
		}
		h.syncStatus()
		return nil, nil
	case mysql.COM_CHANGE_USER:
		return h.changeUser(data)
	case mysql.COM_STATISTICS:
		h.wc.replaceResponse(statisticsPacket(h.srv))
		return nil, nil
	}
	return newError(mysql.ER_UNKNOWN_COM_ERROR, "Unknown command"), nil
}

// query runs COM_QUERY where Route says.
func (h *handler) query(data []byte) (any, error) {
	q := h.text // the command's text, already a string (serveCommand)
	if q != string(data) {
		q = string(data)
	}
	route, err := h.sess.Route(q)
	if err != nil {
		return h.toError(err), nil
	}
	if route == sqlfront.RouteLastSide {
		route = sqlfront.RouteLocal
		if h.lastUpstream {
			route = sqlfront.RouteUpstream
		}
	}
	if route != sqlfront.RouteLocal && h.log.Enabled(h.ctx, slog.LevelDebug) {
		h.log.Debug("statement", "stmt", truncate(q, 200), "route", route.String())
	}
	switch route {
	case sqlfront.RouteUpstream:
		if h.queueWriteInTxn && sqlfront.IsRollback(q) {
			return h.rollback(data)
		}
		return h.forward(mysql.COM_QUERY, data)
	case sqlfront.RouteMerge:
		return h.merge(q, false)
	case sqlfront.RouteInsertSelect:
		return h.insertSelect(q, nil)
	case sqlfront.RouteUpstreamPart:
		up, err := h.sess.UpstreamPart(q)
		if err != nil {
			return h.toError(err), nil
		}
		return h.forward(mysql.COM_QUERY, []byte(up))
	case sqlfront.RouteBoth:
		v, res, err := h.forwardResult(mysql.COM_QUERY, data)
		if h.upDown {
			break // the upstream cannot be reached: session state applies here at least
		}
		if err == nil && v == noReply && res.Err == nil {
			// The upstream accepted it: apply it here too. What only the
			// upstream knows (its own variables) is not an error here.
			if _, lerr := h.run(q, func(ctx context.Context) (*sqlfront.Result, error) { return h.sess.Exec(ctx, q) }); lerr != nil {
				h.log.Debug("session statement not applied locally", "err", lerr)
			}
			h.syncStatus()
		}
		return v, err
	}
	h.lastUpstream = false
	if h.up != nil && h.up.InTransaction() && sqlfront.ChangesQueue(q) {
		h.queueWriteInTxn = true
	}
	r, err := h.run(q, func(ctx context.Context) (*sqlfront.Result, error) {
		return h.sess.Exec(ctx, q)
	})
	h.syncStatus()
	if err != nil {
		return h.toError(err), nil
	}
	if r != nil && r.HasRows() {
		return rowsResult{r}, nil
	}
	return toResult(r, false), nil
}

// rollback forwards a ROLLBACK after the transaction changed a queue
// table, which no rollback undoes: the OK gets one more warning, and SHOW
// WARNINGS lists 1196, as mysqld answers for a non-transactional table.
func (h *handler) rollback(data []byte) (any, error) {
	w := &warnOK{h: h}
	v, res, err := h.forwardResult(mysql.COM_QUERY, data, w)
	if err == nil && v == noReply && res.Err == nil && w.patched {
		h.sess.SetWarning(mysql.ER_WARNING_NOT_COMPLETE_ROLLBACK, "Some non-transactional changed tables couldn't be rolled back")
		h.lastUpstream = false // SHOW WARNINGS is answered here
	}
	return v, err
}

// warnOK relays an answer with one more warning in its OK packet.
type warnOK struct {
	h       *handler
	patched bool
}

func (w *warnOK) WritePacket(pkt []byte) error {
	p := pkt[4:]
	if len(p) >= 7 && p[0] == 0x00 && !w.patched {
		_, _, n1 := mysql.LengthEncodedInt(p[1:])
		_, _, n2 := mysql.LengthEncodedInt(p[1+n1:])
		if pos := 1 + n1 + n2 + 2; len(p) >= pos+2 {
			binary.LittleEndian.PutUint16(p[pos:], binary.LittleEndian.Uint16(p[pos:])+1)
			w.patched = true
		}
	}
	return w.h.WritePacket(pkt)
}

func (w *warnOK) ReadPacket() ([]byte, error) { return w.h.ReadPacket() }

// insertSelect runs INSERT INTO queue_table SELECT ... FROM upstream
// tables: the upstream's rows are encoded as they arrive and go into the
// queue table in one insert (see sqlfront.SelectedRows). args are a
// prepared statement's parameters, written into the SELECT's text.
func (h *handler) insertSelect(q string, args []any) (any, error) {
	is, err := h.sess.PrepareInsertSelect(q)
	if err == nil && args != nil {
		is, err = is.Bind(args)
	}
	if err != nil {
		return h.toError(err), nil
	}
	if h.srv.shutting.Load() {
		return h.toError(errShutdown), nil
	}
	rows, err := h.sess.StartInsertSelect(is)
	if err != nil {
		return h.toError(err), nil
	}
	h.setCancel(h.killFn)
	err = h.up.QueryRows(h.ctx, h.sess.Database(), is.Select, rows.Columns, rows.Row)
	h.setCancel(nil)
	h.syncStatus()
	var upErr *mysql.MyError
	switch {
	case errors.As(err, &upErr) || errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrLost):
		h.lastUpstream = true
		return h.upstreamFailure(err)
	case err != nil: // a row the queue table does not take
		h.lastUpstream = false
		return h.toError(err), nil
	}
	h.lastUpstream = false
	if h.up.InTransaction() {
		h.queueWriteInTxn = true
	}
	r, err := h.run(q, func(context.Context) (*sqlfront.Result, error) {
		return rows.Insert()
	})
	if err != nil {
		return h.toError(err), nil
	}
	return toResult(r, false), nil
}

// merge answers a catalog statement with the rows of both sides, in the
// text or (executing a prepared statement) the binary protocol.
func (h *handler) merge(q string, binaryProto bool) (any, error) {
	if h.srv.shutting.Load() {
		return h.toError(errShutdown), nil
	}
	h.setCancel(h.killFn)
	defer h.setCancel(nil)
	if rq, ok := h.sess.CatalogRowsQuery(q); ok {
		return h.mergeEval(q, rq, nil, binaryProto)
	}
	cols, rows, err := h.up.Query(h.ctx, h.sess.Database(), q)
	h.lastUpstream = true
	h.syncStatus()
	switch {
	case err != nil:
		return h.upstreamFailure(err)
	case cols == nil:
		return nil, nil
	}
	local, lerr := h.sess.Exec(h.ctx, q)
	if lerr != nil {
		local = nil // no queue tables in that database
	}
	if h.sess.LocalWins(q) {
		// SHOW STATUS: q4mproxy's counters for the names it keeps (its
		// clients' connections and statements, Queue_*), the upstream's
		// for the rest.
		return toResult(sqlfront.MergeRowsLocalFirst(cols, rows, local), binaryProto), nil
	}
	lq := strings.ToLower(q)
	sorted := strings.Contains(lq, "tables") || strings.Contains(lq, "table status") ||
		strings.Contains(lq, "variables") || strings.Contains(lq, "status")
	return toResult(sqlfront.MergeRows(cols, rows, local, sorted), binaryProto), nil
}

// mergeEval answers a catalog SELECT that a concatenation of both sides'
// answers would answer wrongly (COUNT(*) of information_schema.TABLES):
// the upstream's rows of the table (rq) and q4mproxy's, with the
// statement evaluated here over both.
func (h *handler) mergeEval(q, rq string, args []any, binaryProto bool) (any, error) {
	cols, rows, err := h.up.Query(h.ctx, h.sess.Database(), rq)
	h.syncStatus()
	if err != nil {
		h.lastUpstream = true
		return h.upstreamFailure(err)
	}
	h.lastUpstream = false
	r, err := h.sess.ExecCatalog(h.ctx, q, args, cols, rows)
	if err != nil {
		return h.toError(err), nil
	}
	return toResult(r, binaryProto), nil
}

func (h *handler) initDB(data []byte) (any, error) {
	name := string(data)
	if h.up == nil {
		if err := h.sess.UseDB(name); err != nil {
			return h.toError(err), nil
		}
		return nil, nil
	}
	v, res, err := h.forwardResult(mysql.COM_INIT_DB, data)
	if err == nil && v == noReply && res.Err == nil {
		_ = h.sess.UseDB(name)
	}
	return v, err
}

func (h *handler) fieldList(table, wildcard string) any {
	cols, err := h.sess.FieldList(table, wildcard)
	if err != nil {
		return h.toError(err)
	}
	return fieldList(cols)
}

// forward relays a command to the upstream; see forwardResult.
func (h *handler) forward(cmd byte, data []byte) (any, error) {
	v, _, err := h.forwardResult(cmd, data)
	return v, err
}

// forwardResult relays a command to the upstream and reports how it
// ended there. A lost upstream connection ends the client's connection
// too (its owned row goes back, and it sees a lost connection, as when
// its mysqld dies).
func (h *handler) forwardResult(cmd byte, data []byte, client ...upstream.Client) (any, upstream.Result, error) {
	var c upstream.Client = h
	if len(client) > 0 {
		c = client[0]
	}
	if h.up == nil {
		return newError(mysql.ER_NOT_SUPPORTED_YET, "This version of q4mproxy doesn't yet support this command without --upstream"), upstream.Result{}, nil
	}
	if h.srv.shutting.Load() {
		return h.toError(errShutdown), upstream.Result{}, nil
	}
	h.setCancel(h.killFn)
	defer h.setCancel(nil)
	var res upstream.Result
	var err error
	h.upDown = false
	if cmd == mysql.COM_STMT_PREPARE {
		res, err = h.up.Prepare(h.ctx, c, h.sess.Database(), h.stmtSeq, data)
	} else {
		res, err = h.up.Forward(h.ctx, c, h.sess.Database(), cmd, data)
	}
	if cmd == mysql.COM_QUERY || cmd == mysql.COM_STMT_EXECUTE {
		h.lastUpstream = true // a statement ran there (preparing or closing one does not count)
	}
	h.syncStatus()
	if !h.up.InTransaction() {
		h.queueWriteInTxn = false
	}
	switch {
	case err == nil:
		if res.Err != nil {
			h.srv.status.countError(res.Err.Code)
		}
		return noReply, res, nil
	case errors.Is(err, upstream.ErrUnknownStmt):
		return unknownStmt(data, "mysqld_stmt_execute"), res, nil
	}
	v, err := h.upstreamFailure(err)
	return v, res, err
}

// upstreamFailure turns a relay's error into the client's answer: the
// upstream's own refusal of the login, 2003 when it cannot be reached
// (the connection goes on), or an error that ends the connection (the
// upstream connection broke mid-answer).
func (h *handler) upstreamFailure(err error) (any, error) {
	var me *mysql.MyError
	switch {
	case errors.As(err, &me):
		return me, nil
	case errors.Is(err, upstream.ErrUnavailable):
		h.upDown = true
		h.log.Warn("upstream unavailable", "err", err)
		return newError(sqlfront.ErrCodeConnHostError, fmt.Sprintf("Can't connect to MySQL server on '%s' (upstream of q4mproxy)", h.srv.cfg.Upstream.Addr)), nil
	}
	return nil, err
}

// maxKeptCommand is the largest command buffer a connection keeps for the
// next command.
const maxKeptCommand = 64 << 10

// killUpstream is the running statement's cancel function while a command
// runs upstream (KILL QUERY, KILL, shutdown): a KILL QUERY of its own on a
// side connection, in a goroutine that the connection waits for when it
// closes (the caller holds a lock).
func (h *handler) killUpstream(error) {
	h.kills.Add(1)
	go func() {
		defer h.kills.Done()
		h.up.KillQuery()
	}()
}

func (h *handler) setCancel(cancel context.CancelCauseFunc) {
	if h.c == nil {
		return
	}
	h.c.mu.Lock()
	h.c.cancelQuery = cancel
	h.c.mu.Unlock()
}

// WritePacket writes a packet relayed from the upstream (upstream.Client):
// the header's sequence number is the client connection's.
func (h *handler) WritePacket(pkt []byte) error {
	pkt[3] = h.mc.Sequence
	h.mc.Sequence++
	_, err := h.mc.Conn.Conn.Write(pkt)
	return err
}

// ReadPacket reads a packet the client sends during a relayed command
// (upstream.Client).
func (h *handler) ReadPacket() ([]byte, error) { return h.mc.ReadPacket() }

var _ upstream.Client = (*handler)(nil)

func (h *handler) writeEOF() error {
	return h.mc.WritePacket(h.appendEOF(make([]byte, 4, 9)))
}

// appendEOF appends an EOF packet's payload (no warnings, the session's
// status) to b.
func (h *handler) appendEOF(b []byte) []byte {
	st := uint16(0)
	if h.sess.AutoCommit() {
		st |= mysql.SERVER_STATUS_AUTOCOMMIT
	}
	if h.up != nil && h.up.InTransaction() {
		st |= mysql.SERVER_STATUS_IN_TRANS
	}
	return append(b, mysql.EOF_HEADER, 0, 0, byte(st), byte(st>>8))
}

// pstmt is a prepared statement of the connection: local (a sqlfront
// statement) or forwarded (the upstream knows it by the same id).
type pstmt struct {
	text  string // as prepared
	local *sqlfront.Stmt
	both  string // a forwarded statement of session state (USE, SET), applied here too
	merge bool   // a catalog statement answered with both sides' rows
	// lastSide: a statement asking the last side (LAST_INSERT_ID(), ...),
	// prepared on both; executed here after a local statement
	lastSide *sqlfront.Stmt
	// insertSelect: INSERT INTO a queue table SELECT from upstream tables
	insertSelect bool
	params       int
	kind         int            // its Com_ kind (status.go), once classified
	classified   bool           // kind is set
	types        []byte         // parameter types of the last execution that sent them
	long         map[int][]byte // COM_STMT_SEND_LONG_DATA, by parameter
}

func (p *pstmt) addLongData(data []byte) {
	if len(data) < 2 {
		return
	}
	i := int(binary.LittleEndian.Uint16(data))
	if i >= p.params {
		return
	}
	if p.long == nil {
		p.long = map[int][]byte{}
	}
	p.long[i] = append(p.long[i], data[2:]...)
}

func (h *handler) stmt(data []byte) *pstmt {
	if len(data) < 4 {
		return nil
	}
	return h.stmts[binary.LittleEndian.Uint32(data)]
}

func unknownStmt(data []byte, where string) error {
	var id uint32
	if len(data) >= 4 {
		id = binary.LittleEndian.Uint32(data)
	}
	return newError(mysql.ER_UNKNOWN_STMT_HANDLER, fmt.Sprintf("Unknown prepared statement handler (%d) given to %s", id, where))
}

func (h *handler) prepare(data []byte) (any, error) {
	q := string(data)
	route, err := h.sess.RoutePrepared(q)
	if err != nil {
		return h.toError(err), nil
	}
	h.stmtSeq++
	id := h.stmtSeq
	if route == sqlfront.RouteUpstream || route == sqlfront.RouteBoth || route == sqlfront.RouteLastSide {
		v, res, err := h.forwardResult(mysql.COM_STMT_PREPARE, data)
		if err == nil && v == noReply && res.Err == nil {
			p := &pstmt{text: q, params: res.Params}
			switch route {
			case sqlfront.RouteBoth:
				p.both = q // session state: applied here too after each execution
			case sqlfront.RouteLastSide:
				if st, err := h.sess.Prepare(q); err == nil && st.NumParams() == res.Params {
					p.lastSide = st // executed here after a local statement
				}
			}
			h.stmts[id] = p
		}
		return v, err
	}
	st, err := h.sess.Prepare(q)
	if err != nil {
		return h.toError(err), nil
	}
	h.stmts[id] = &pstmt{text: q, local: st, params: st.NumParams(), merge: route == sqlfront.RouteMerge, insertSelect: route == sqlfront.RouteInsertSelect}
	return &gms.Stmt{Query: q, PreparedStmt: preparedStmt(id, st.NumParams())}, nil
}

func (h *handler) execute(data []byte) (any, error) {
	p := h.stmt(data)
	switch {
	case p == nil:
		return unknownStmt(data, "mysqld_stmt_execute"), nil
	case p.lastSide != nil && !h.lastUpstream:
		args, err := p.bind(data[4:])
		p.long = nil
		if err != nil {
			return newError(mysql.ER_WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_execute"), nil
		}
		r, err := h.run(p.lastSide.Text(), func(ctx context.Context) (*sqlfront.Result, error) {
			return h.sess.Execute(ctx, p.lastSide, args)
		})
		if err != nil {
			return h.toError(err), nil
		}
		return toResult(r, true), nil
	case p.local == nil && p.both == "":
		if p.lastSide != nil && p.params > 0 {
			_, _ = p.bind(data[4:]) // keeps the parameter types for a local execution
		}
		return h.forward(mysql.COM_STMT_EXECUTE, data)
	case p.local == nil:
		args, berr := p.bind(data[4:])
		p.long = nil
		v, res, err := h.forwardResult(mysql.COM_STMT_EXECUTE, data)
		if err == nil && v == noReply && res.Err == nil && berr == nil {
			if _, lerr := h.run(p.both, func(ctx context.Context) (*sqlfront.Result, error) {
				st, err := h.sess.Prepare(p.both)
				if err != nil {
					return nil, err
				}
				return h.sess.Execute(ctx, st, args)
			}); lerr != nil {
				h.log.Debug("session statement not applied locally", "err", lerr)
			}
			h.syncStatus()
		}
		return v, err
	}
	args, err := p.bind(data[4:])
	p.long = nil
	if err != nil {
		return newError(mysql.ER_WRONG_ARGUMENTS, "Incorrect arguments to mysqld_stmt_execute"), nil
	}
	if p.merge && p.params == 0 {
		return h.merge(p.local.Text(), true)
	}
	if p.merge {
		if rq, ok := h.sess.CatalogRowsQuery(p.local.Text()); ok {
			if h.srv.shutting.Load() {
				return h.toError(errShutdown), nil
			}
			h.setCancel(h.killFn)
			defer h.setCancel(nil)
			return h.mergeEval(p.local.Text(), rq, args, true)
		}
	}
	if p.insertSelect {
		return h.insertSelect(p.local.Text(), args)
	}
	h.lastUpstream = false
	if h.up != nil && h.up.InTransaction() && sqlfront.ChangesQueue(p.local.Text()) {
		h.queueWriteInTxn = true
	}
	r, err := h.run(p.local.Text(), func(ctx context.Context) (*sqlfront.Result, error) {
		return h.sess.Execute(ctx, p.local, args)
	})
	h.syncStatus()
	if err != nil {
		return h.toError(err), nil
	}
	return toResult(r, true), nil
}

// createCheck asks the upstream whether a queue table may be created:
// its database must exist there (else 1049, as mysqld answers) and hold
// no table of that name (else 1050). An unreachable upstream does not
// stop queue statements: the table is created.
func (h *handler) createCheck(ctx context.Context, db, table string) error {
	q := "SELECT (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = " + quote(db) +
		"), (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = " + quote(db) + " AND TABLE_NAME = " + quote(table) + ")"
	_, rows, err := h.up.Query(ctx, h.sess.Database(), q)
	if err != nil {
		if errors.Is(err, upstream.ErrUnavailable) {
			h.log.Warn("upstream unavailable: queue table created without checking its name there", "table", table)
			return nil
		}
		return err
	}
	if len(rows) != 1 || len(rows[0]) != 2 {
		return fmt.Errorf("server: unexpected answer to the catalog check")
	}
	switch {
	case rows[0][0] == "0":
		return &sqlfront.Error{Code: sqlfront.ErrCodeBadDB, Message: fmt.Sprintf("Unknown database '%s'", db)}
	case rows[0][1] != "0":
		return &sqlfront.Error{Code: sqlfront.ErrCodeTableExists, Message: fmt.Sprintf("Table '%s' already exists", table)}
	}
	return nil
}

// quote is a string literal of s for a statement q4mproxy sends itself.
func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)
	return "'" + r.Replace(s) + "'"
}
