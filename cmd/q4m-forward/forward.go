package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Log attribute keys.
const (
	keySide      = "side"
	keyErr       = "err"
	keyAddr      = "addr"
	keyRowID     = "rowid"
	keyForwarded = "forwarded"
	keyRate      = "rate"
	keyRetryIn   = "retry_in"
)

const (
	sideSource      = "source"
	sideDestination = "destination"
)

// Messages of Q4M's script for the errors retrying cannot fix.
const (
	msgSourceError = "received an error from source (table not found?)"
	msgBadRowID    = "unexpected response from source"
	msgSetSrcID    = "failed to set source id (sender index out of range?)"
)

// fatalError is an error that reconnecting would not fix: the forwarder
// stops with it.
type fatalError struct{ msg string }

func (e *fatalError) Error() string { return e.msg }

func fatalf(format string, args ...any) error {
	return &fatalError{msg: fmt.Sprintf(format, args...)}
}

// sideError is an error on one side's connection.
type sideError struct {
	side string
	op   string
	err  error
}

func (e *sideError) Error() string { return e.side + ": " + e.op + ": " + e.err.Error() }
func (e *sideError) Unwrap() error { return e.err }

// transientServerErrors are server errors worth reconnecting for.
var transientServerErrors = map[uint16]bool{
	1040: true, // ER_CON_COUNT_ERROR: too many connections
	1053: true, // ER_SERVER_SHUTDOWN
	1152: true, // ER_ABORTING_CONNECTION
	1159: true, // ER_NET_READ_INTERRUPTED
	1161: true, // ER_NET_WRITE_INTERRUPTED
	1205: true, // ER_LOCK_WAIT_TIMEOUT
	1213: true, // ER_LOCK_DEADLOCK
	1317: true, // ER_QUERY_INTERRUPTED (KILL QUERY)
	1927: true, // ER_CONNECTION_KILLED (MariaDB)
	4031: true, // ER_CLIENT_INTERACTION_TIMEOUT (MySQL 8)
}

// isTransient reports whether err calls for a reconnect rather than an
// exit: connection-level failures (refused, reset, EOF, timeouts, broken
// packets) and the server errors above are; the forwarder's own fatal
// errors and any other server error (no such table, bad column, access
// denied...) are not.
func isTransient(err error) bool {
	var fe *fatalError
	if errors.As(err, &fe) {
		return false
	}
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return transientServerErrors[me.Number]
	}
	return true
}

// message is one source row: its rowid and its columns by name.
type message struct {
	rowid   int64
	columns []string // sorted by name
	values  [][]byte // values[i] is columns[i]'s value; nil for NULL
}

func (m *message) size() int {
	n := 0
	for _, v := range m.values {
		n += len(v)
	}
	return n
}

// quoteIdent quotes a MySQL identifier with backquotes.
func quoteIdent(s string) string {
	return "`" + strings.ReplaceAll(s, "`", "``") + "`"
}

// quoteTable quotes "table" or "db.table" (split at the first '.', as
// queue_wait does).
func quoteTable(s string) string {
	if db, t, ok := strings.Cut(s, "."); ok {
		return quoteIdent(db) + "." + quoteIdent(t)
	}
	return quoteIdent(s)
}

// insertSQL is the INSERT statement for m into table, with one placeholder
// per column; args are its arguments. go-sql-driver interpolates them as
// _binary'...' strings (or NULL), byte for byte.
func (m *message) insertSQL(table string) (query string, args []any) {
	var b strings.Builder
	b.WriteString("INSERT INTO ")
	b.WriteString(quoteTable(table))
	b.WriteString(" (")
	for i, c := range m.columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(quoteIdent(c))
	}
	b.WriteString(") VALUES (")
	args = make([]any, len(m.values))
	for i, v := range m.values {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('?')
		if v != nil {
			args[i] = v
		}
	}
	b.WriteByte(')')
	return b.String(), args
}

// forwarderConfig configures a forwarder; see Main for the meanings.
type forwarderConfig struct {
	Src, Dst        endpoint
	Sender          int
	Reset           bool
	WaitTimeout     int
	LogEvery        int
	ProgressEvery   time.Duration
	ExitWhenEmpty   bool
	ShutdownTimeout time.Duration
	DialTimeout     time.Duration
	MinBackoff      time.Duration
	MaxBackoff      time.Duration
	Logger          *slog.Logger
}

// side is one end of the relay with its single dedicated connection.
type side struct {
	name      string
	ep        endpoint
	db        *sql.DB
	conn      *sql.Conn // nil while disconnected
	connected bool      // has been connected before (for the log message)
}

// forwarder runs the relay loop. It is used from one goroutine.
type forwarder struct {
	cfg      forwarderConfig
	log      *slog.Logger
	src, dst *side

	resetDone bool // an INSERT made with mode 'w' has returned
	forwarded int64
	started   time.Time
	lastCount int64
	lastTime  time.Time
}

func newForwarder(cfg forwarderConfig) (*forwarder, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	f := &forwarder{cfg: cfg, log: cfg.Logger}
	// Reads must outlast the longest queue_wait; the margin covers a slow
	// server. A dead peer usually shows as a reset or EOF long before.
	readTimeout := time.Duration(cfg.WaitTimeout)*time.Second + 60*time.Second
	for _, s := range []*side{{name: sideSource, ep: cfg.Src}, {name: sideDestination, ep: cfg.Dst}} {
		conn, err := mysql.NewConnector(s.ep.config(cfg.DialTimeout, readTimeout, 60*time.Second, f.log.With(keySide, s.name)))
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		s.db = sql.OpenDB(conn)
		// No idle pool: closing the dedicated connection closes it on the
		// server too, which releases any row it owns.
		s.db.SetMaxIdleConns(0)
		if s.name == sideSource {
			f.src = s
		} else {
			f.dst = s
		}
	}
	return f, nil
}

// Close closes both sides' connections.
func (f *forwarder) Close() error {
	var errs []error
	for _, s := range []*side{f.src, f.dst} {
		if s == nil {
			continue
		}
		s.drop()
		if s.db != nil {
			errs = append(errs, s.db.Close())
		}
	}
	return errors.Join(errs...)
}

// open opens s's dedicated connection unless it is open.
func (s *side) open(ctx context.Context, log *slog.Logger) error {
	if s.conn != nil {
		return nil
	}
	c, err := s.db.Conn(ctx)
	if err != nil {
		return &sideError{side: s.name, op: "connect to " + s.ep.Addr(), err: err}
	}
	s.conn = c
	msg := "connected"
	if s.connected {
		msg = "reconnected"
	}
	s.connected = true
	log.Info(msg, keySide, s.name, keyAddr, s.ep.Addr())
	return nil
}

// drop closes s's connection; the server releases the row it owned.
func (s *side) drop() {
	if s.conn != nil {
		_ = s.conn.Close()
		s.conn = nil
	}
}

// Run relays until ctx is done, the source is empty (with ExitWhenEmpty) or
// a fatal error. It returns nil in the first two cases.
func (f *forwarder) Run(ctx context.Context) error {
	// work runs the statements that finish a row once it was taken: they
	// outlive ctx by at most ShutdownTimeout.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	stopGrace := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(f.cfg.ShutdownTimeout, cancelWork)
		context.AfterFunc(work, func() { t.Stop() })
	})
	defer stopGrace()

	f.log.Info("forwarding", "src", f.cfg.Src.String(), "dst", f.cfg.Dst.String(),
		"sender", f.cfg.Sender, "reset", f.cfg.Reset, "wait_timeout", f.cfg.WaitTimeout)
	f.started = time.Now()
	f.lastTime = f.started

	var (
		msg       *message // taken from the source; its INSERT has not returned
		delivered bool     // the row the source connection owns was inserted
		backoff   = f.cfg.MinBackoff
	)
	for {
		if ctx.Err() != nil {
			return f.stop(work, delivered)
		}
		err := f.src.open(ctx, f.log)
		if err == nil && msg == nil {
			delivered = false // queue_wait consumes it, or the connection dies
			msg, err = f.receive(ctx, work)
			if err == nil && msg == nil {
				backoff = f.cfg.MinBackoff
				if f.cfg.ExitWhenEmpty {
					f.log.Info("the source is empty; exiting (--exit-when-empty)")
					return f.stop(work, false)
				}
				continue
			}
			if err == nil && ctx.Err() != nil {
				msg = nil // abandon it: the source gets it back
				return f.stop(work, false)
			}
		}
		if err == nil {
			if err = f.dst.open(ctx, f.log); err == nil {
				err = f.deliver(work, msg)
			}
		}
		if err == nil {
			msg, delivered = nil, true
			backoff = f.cfg.MinBackoff
			continue
		}

		// Something failed. Nothing this process owns was delivered.
		if !isTransient(err) {
			return err
		}
		if ctx.Err() != nil { // a signal interrupted a wait or a connect
			return f.stop(work, false)
		}
		var se *sideError
		if errors.As(err, &se) && se.side == sideDestination {
			f.dst.drop() // the source keeps its row: it is written again
		} else {
			f.src.drop() // the source gets its row back and delivers it again
			msg, delivered = nil, false
		}
		f.log.Warn("connection failed; reconnecting", keyErr, err, keyRetryIn, backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return f.stop(work, false)
		case <-t.C:
		}
		backoff = min(backoff*2, f.cfg.MaxBackoff)
	}
}

// stop ends Run: the source's row is consumed if it was delivered, and the
// connections are closed (releasing a row that was not).
func (f *forwarder) stop(work context.Context, delivered bool) error {
	if delivered && f.src.conn != nil {
		var one sql.NullInt64
		if err := f.src.conn.QueryRowContext(work, "SELECT queue_end()").Scan(&one); err != nil {
			// Harmless: the row comes back and the destination drops it.
			f.log.Warn("could not consume the last delivered row; it will be delivered again and dropped as a duplicate",
				keySide, sideSource, keyErr, err)
		}
	}
	f.src.drop()
	f.dst.drop()
	elapsed := time.Since(f.started)
	f.log.Info("stopped", keyForwarded, f.forwarded, "duration", elapsed.Round(time.Millisecond),
		keyRate, rate(f.forwarded, elapsed))
	return nil
}

// receive waits for the next source row (steps 1 to 3 of Q4M's script).
// It returns nil, nil when queue_wait timed out. The wait itself runs on
// ctx, so a signal abandons it; the rest runs on work.
func (f *forwarder) receive(ctx, work context.Context) (*message, error) {
	c := f.src.conn
	srcErr := func(op string, err error) error {
		return &sideError{side: sideSource, op: op, err: err}
	}
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT queue_wait(?, ?)", f.cfg.Src.Table, f.cfg.WaitTimeout).Scan(&got); err != nil {
		return nil, srcErr("queue_wait", err)
	}
	if !got.Valid {
		return nil, fatalf("%s: %s", msgSourceError, f.cfg.Src.Table)
	}
	if got.Int64 == 0 {
		f.log.Debug("queue_wait timed out", keySide, sideSource)
		return nil, nil
	}

	var rowid sql.NullInt64
	if err := c.QueryRowContext(work, "SELECT queue_rowid()").Scan(&rowid); err != nil {
		return nil, srcErr("queue_rowid", err)
	}
	if !rowid.Valid || rowid.Int64 <= 0 {
		return nil, fatalf("%s: queue_rowid() returned %v", msgBadRowID, rowid)
	}

	rows, err := c.QueryContext(work, "SELECT * FROM "+quoteTable(f.cfg.Src.Table))
	if err != nil {
		return nil, srcErr("select", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, srcErr("select", err)
	}
	var msg *message
	n := 0
	for rows.Next() {
		n++
		raw := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range raw {
			ptrs[i] = &raw[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return nil, srcErr("select", err)
		}
		if n > 1 {
			continue
		}
		msg = &message{rowid: rowid.Int64}
		order := make([]int, len(cols))
		for i := range order {
			order[i] = i
		}
		slices.SortStableFunc(order, func(a, b int) int { return strings.Compare(cols[a], cols[b]) })
		for _, i := range order {
			msg.columns = append(msg.columns, cols[i])
			var v []byte
			if raw[i] != nil {
				v = bytes.Clone([]byte(raw[i]))
				if v == nil {
					v = []byte{}
				}
			}
			msg.values = append(msg.values, v)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, srcErr("select", err)
	}
	if n != 1 {
		return nil, fatalf("%s: SELECT in owner mode returned %d rows, want 1", msgBadRowID, n)
	}
	f.log.Debug("received", keySide, sideSource, keyRowID, msg.rowid, "bytes", msg.size())
	return msg, nil
}

// deliver writes msg to the destination (steps 4 and 5).
func (f *forwarder) deliver(work context.Context, msg *message) error {
	c := f.dst.conn
	mode := "a"
	if f.cfg.Reset && !f.resetDone {
		mode = "w"
	}
	var ok sql.NullInt64
	if err := c.QueryRowContext(work, "SELECT queue_set_srcid(?, ?, ?)", f.cfg.Sender, mode, msg.rowid).Scan(&ok); err != nil {
		return &sideError{side: sideDestination, op: "queue_set_srcid", err: err}
	}
	if !ok.Valid || ok.Int64 == 0 {
		return fatalf("%s: queue_set_srcid(%d, '%s', %d) returned %v", msgSetSrcID, f.cfg.Sender, mode, msg.rowid, ok)
	}
	q, args := msg.insertSQL(f.cfg.Dst.Table)
	if _, err := c.ExecContext(work, q, args...); err != nil {
		return &sideError{side: sideDestination, op: "insert", err: err}
	}
	if mode == "w" {
		f.resetDone = true
		f.log.Info("reset the destination's duplicate check", "sender", f.cfg.Sender, keyRowID, msg.rowid)
	}
	f.forwarded++
	f.log.Debug("forwarded", keyRowID, msg.rowid, "bytes", msg.size())
	now := time.Now()
	byCount := f.cfg.LogEvery > 0 && f.forwarded%int64(f.cfg.LogEvery) == 0
	byTime := f.cfg.ProgressEvery > 0 && now.Sub(f.lastTime) >= f.cfg.ProgressEvery
	if byCount || byTime {
		f.logProgress(work, now)
	}
	return nil
}

// logProgress logs the count, the rate since the last line and, if the
// source answers SELECT COUNT(*) (on a connection of its own: the relay's
// is in owner mode), the backlog: rows still to forward, the percentage of
// this run's work done (forwarded / (forwarded + backlog)) and, at the
// current rate, the time left.
func (f *forwarder) logProgress(work context.Context, now time.Time) {
	r := rate(f.forwarded-f.lastCount, now.Sub(f.lastTime))
	attrs := []any{keyForwarded, f.forwarded, keyRate, r}
	ctx, cancel := context.WithTimeout(work, 5*time.Second)
	defer cancel()
	var n int64
	if err := f.src.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+quoteTable(f.cfg.Src.Table)).Scan(&n); err != nil {
		f.log.Debug("no backlog count", keySide, sideSource, keyErr, err)
	} else {
		// COUNT(*) counts owned rows too (as Q4M's does): the row just
		// delivered is one, consumed by the next queue_wait.
		backlog := max(n-1, 0)
		pct := float64(int64(float64(f.forwarded)/float64(f.forwarded+backlog)*1000+0.5)) / 10
		attrs = append(attrs, "backlog", backlog, "percent", pct)
		if backlog > 0 && r > 0 {
			attrs = append(attrs, "eta", time.Duration(float64(backlog)/r*float64(time.Second)).Round(time.Second))
		}
	}
	f.log.Info("progress", attrs...)
	f.lastCount, f.lastTime = f.forwarded, now
}

// rate is n per d in messages per second, to one decimal.
func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	r := float64(n) / d.Seconds()
	return float64(int64(r*10+0.5)) / 10
}
