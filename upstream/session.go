package upstream

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/client"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/pingcap/tidb/pkg/parser/charset"
	"golang.org/x/sys/unix"

	"github.com/q4mproxy/q4mproxy/internal/netdial"
)

// Config says where the upstream server is.
type Config struct {
	// Addr is host:port, or the path of a unix socket (it contains a '/').
	Addr string
	// DialTimeout bounds connecting and logging in. Zero means 5 s.
	DialTimeout time.Duration
	// TLS, if set, encrypts every upstream connection (and the upstream
	// must offer TLS). Its ServerName defaults to Addr's host.
	TLS *tls.Config
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

func (c *Config) tlsConfig() *tls.Config {
	if c.TLS == nil {
		return nil
	}
	t := c.TLS.Clone()
	if t.ServerName == "" {
		if host, _, err := net.SplitHostPort(c.Addr); err == nil {
			t.ServerName = host
		}
	}
	return t
}

func (c *Config) network() string {
	if strings.Contains(c.Addr, "/") {
		return "unix"
	}
	return "tcp"
}

// Client is the client side of a relay: the connection the answer goes to.
type Client interface {
	// WritePacket writes one physical packet: pkt is the 4-byte header
	// (whose sequence number the implementation sets) and the payload.
	WritePacket(pkt []byte) error
	// ReadPacket reads one logical packet's payload from the client (the
	// contents of a LOAD DATA LOCAL INFILE file).
	ReadPacket() ([]byte, error)
}

// Login is what the upstream connection logs in with.
type Login struct {
	User, Password string
	// Capabilities are the client's, as negotiated with q4mproxy.
	Capabilities uint32
	// Collation is the client's handshake collation id (0: the default).
	Collation uint8
	// Attributes are the client's connection attributes, passed on.
	Attributes map[string]string
}

// Errors a relay returns besides the upstream's own error packets (which
// reach the client as they are and are not errors of the relay).
var (
	// ErrUnavailable: no connection to the upstream could be opened.
	ErrUnavailable = errors.New("upstream: unavailable")
	// ErrLost: the upstream connection broke during a command; what the
	// client was sent of the answer is incomplete, so its connection must
	// be closed (it sees 2013 Lost connection, as with a dying mysqld).
	ErrLost = errors.New("upstream: connection lost")
)

// UnavailableError carries the reason the upstream could not be reached.
type UnavailableError struct {
	Addr string
	Err  error
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("upstream %s: %v", e.Addr, e.Err)
}

func (e *UnavailableError) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Status flags the relay follows.
const (
	statusInTrans      = mysql.SERVER_STATUS_IN_TRANS
	statusMoreResults  = mysql.SERVER_MORE_RESULTS_EXISTS
	statusCursorExists = mysql.SERVER_STATUS_CURSOR_EXISTS
)

// optionalCaps are the client capabilities passed on to the upstream
// connection when the client negotiated them.
var optionalCaps = []uint32{
	mysql.CLIENT_FOUND_ROWS, mysql.CLIENT_IGNORE_SPACE, mysql.CLIENT_MULTI_STATEMENTS,
	mysql.CLIENT_MULTI_RESULTS, mysql.CLIENT_PS_MULTI_RESULTS, mysql.CLIENT_LOCAL_FILES,
	mysql.CLIENT_SESSION_TRACK,
}

// Session is one client's upstream connection. It is used by the client's
// connection goroutine only, except KillQuery.
type Session struct {
	cfg   *Config
	login Login
	log   *slog.Logger

	mu       sync.Mutex // guards conn and threadID for KillQuery
	conn     net.Conn   // nil until the first forwarded command
	threadID uint32

	raw syscall.RawConn // conn's, for alive (nil: not a plain socket)
	buf []byte          // commands as written
	// rbuf[rpos:rend] is what was read from the upstream and not yet
	// relayed: a read takes as much as the socket holds, so a small
	// answer arrives in one read and is relayed from here without a copy.
	rbuf       []byte
	rpos, rend int
	seq        byte // next sequence number towards the upstream
	status     uint16
	warnings   uint16

	// inFlight counts commands: odd while one runs (KillQuery reads it).
	inFlight atomic.Uint64

	peek      func(fd uintptr) bool // s.peekFD
	peekAlive bool

	sticky bool              // state a reconnect would lose (user variables, temporary tables, locks)
	replay []string          // session SETs to apply again on a reconnect
	stmts  map[uint32]uint32 // client-visible statement id -> upstream id
}

// NewSession returns a session that logs in as login on first use.
func NewSession(cfg *Config, login Login) *Session {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Session{cfg: cfg, login: login, log: log, status: mysql.SERVER_STATUS_AUTOCOMMIT, stmts: map[uint32]uint32{}}
	s.peek = s.peekFD
	return s
}

// SetLogin changes the credentials of later connections (COM_CHANGE_USER).
func (s *Session) SetLogin(l Login) { s.login = l }

// Login returns the credentials later connections use.
func (s *Session) Login() Login { return s.login }

// Reset closes the upstream connection and forgets the session's state
// (COM_CHANGE_USER): the next command logs in afresh.
func (s *Session) Reset() {
	s.Close()
	s.sticky, s.replay = false, nil
	s.status = mysql.SERVER_STATUS_AUTOCOMMIT
}

// Connect logs in to the upstream now, in database db, if no connection
// is open. A refusal is the upstream's own *mysql.MyError.
func (s *Session) Connect(ctx context.Context, db string) error { return s.ensure(ctx, db) }

// Connected reports whether an upstream connection is open.
func (s *Session) Connected() bool { return s.conn != nil }

// Status returns the status flags of the upstream's last answer.
func (s *Session) Status() uint16 { return s.status }

// InTransaction reports whether the upstream session is in a transaction.
func (s *Session) InTransaction() bool { return s.conn != nil && s.status&statusInTrans != 0 }

// ThreadID returns the upstream connection's id (0 if none).
func (s *Session) ThreadID() uint32 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.threadID
}

// Close closes the upstream connection, if any.
func (s *Session) Close() {
	s.mu.Lock()
	c := s.conn
	s.conn, s.threadID = nil, 0
	s.mu.Unlock()
	if c != nil {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte{1, 0, 0, 0, mysql.COM_QUIT})
		_ = c.Close()
	}
	clear(s.stmts)
}

func (s *Session) dialTimeout() time.Duration {
	if s.cfg.DialTimeout > 0 {
		return s.cfg.DialTimeout
	}
	return 5 * time.Second
}

// connect opens the upstream connection and logs in, in database db.
func (s *Session) connect(ctx context.Context, db string) error {
	timeout := s.dialTimeout()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var raw net.Conn
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := netdial.DialContext(ctx, network, addr, timeout) // keepalive: a vanished upstream is noticed
		if err == nil {
			_ = c.SetDeadline(time.Now().Add(timeout)) // the login, too, is bounded
			raw = c
		}
		return c, err
	}
	opt := func(c *client.Conn) error {
		c.UnsetCapability(mysql.CLIENT_DEPRECATE_EOF)
		c.UnsetCapability(mysql.CLIENT_QUERY_ATTRIBUTES)
		for _, f := range optionalCaps {
			if s.login.Capabilities&f != 0 {
				if err := c.SetCapability(f); err != nil {
					return err
				}
			} else {
				c.UnsetCapability(f)
			}
		}
		if name, ok := collationName(s.login.Collation); ok {
			_ = c.SetCollation(name)
		}
		if t := s.cfg.tlsConfig(); t != nil {
			c.SetTLSConfig(t)
		}
		if len(s.login.Attributes) > 0 {
			c.SetAttributes(s.login.Attributes)
			c.SetAttributes(map[string]string{"_proxy": "q4mproxy"})
		}
		return nil
	}
	cc, err := client.ConnectWithDialer(ctx, s.cfg.network(), s.cfg.Addr, s.login.User, s.login.Password, db, dialer, opt)
	if err != nil {
		if raw != nil {
			_ = raw.Close()
		}
		var me *mysql.MyError
		if errors.As(err, &me) {
			return me // the upstream's own refusal (1045, 1049, ...)
		}
		return &UnavailableError{Addr: s.cfg.Addr, Err: err}
	}
	c := cc.Conn.Conn
	_ = c.SetDeadline(time.Time{})
	s.mu.Lock()
	s.conn, s.threadID = c, cc.GetConnectionID()
	s.mu.Unlock()
	s.raw = nil
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			s.raw = rc
		}
	}
	s.rpos, s.rend = 0, 0
	s.status = mysql.SERVER_STATUS_AUTOCOMMIT
	clear(s.stmts)
	for _, q := range s.replay {
		if err := s.simple(mysql.COM_QUERY, []byte(q)); err != nil {
			s.Close()
			var me *mysql.MyError
			if errors.As(err, &me) {
				return me
			}
			return &UnavailableError{Addr: s.cfg.Addr, Err: err}
		}
	}
	s.log.Debug("upstream connected", "thread_id", s.threadID)
	return nil
}

func collationName(id uint8) (string, bool) {
	if id == 0 {
		return "", false
	}
	c, err := charset.GetCollationByID(int(id))
	if err != nil {
		return "", false
	}
	return c.Name, true
}

// ensure makes sure a usable connection is open before a command.
func (s *Session) ensure(ctx context.Context, db string) error {
	// Before each command, a check that costs one non-blocking read: has
	// the server closed the connection meanwhile (restart, wait_timeout,
	// KILL)? Then a session with nothing to lose reconnects quietly.
	if s.conn != nil && !s.alive() {
		s.log.Info("upstream connection was closed by the server", "thread_id", s.threadID)
		lost := s.sticky || s.status&statusInTrans != 0
		s.Close()
		if lost {
			// A transaction, user variables or temporary tables are gone:
			// the client must learn it, as it would from its own mysqld.
			return ErrLost
		}
	}
	if s.conn == nil {
		return s.connect(ctx, db)
	}
	return nil
}

// alive checks without blocking that the server has not closed the
// connection: it sends nothing unasked, so pending bytes (a goodbye error
// packet) or EOF mean it is gone. A peek on the socket costs one syscall;
// a deadline in the past would not even read.
func (s *Session) alive() bool {
	if s.rend > s.rpos {
		return false
	}
	if s.raw == nil {
		return true // TLS or another wrapper: the command itself will tell
	}
	s.peekAlive = true
	_ = s.raw.Read(s.peek)
	return s.peekAlive
}

// peek is alive's look at the socket (a method value made once, so that
// the check allocates nothing).
func (s *Session) peekFD(fd uintptr) bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	s.peekAlive = n < 0 && (err == unix.EAGAIN || err == unix.EWOULDBLOCK)
	return true // never wait for readiness
}

// ErrUnknownStmt: a prepared statement id the upstream connection does not
// know (it was prepared on a connection since lost); the client gets 1243.
var ErrUnknownStmt = errors.New("upstream: unknown prepared statement")

func isStmtCommand(cmd byte) bool {
	switch cmd {
	case mysql.COM_STMT_EXECUTE, mysql.COM_STMT_SEND_LONG_DATA, mysql.COM_STMT_CLOSE, mysql.COM_STMT_RESET, mysql.COM_STMT_FETCH:
		return true
	}
	return false
}

// Prepare forwards COM_STMT_PREPARE and relays the answer with the
// statement id replaced by id, the one the client will use.
func (s *Session) Prepare(ctx context.Context, c Client, db string, id uint32, query []byte) (Result, error) {
	if err := s.ensure(ctx, db); err != nil {
		return Result{}, err
	}
	seq := s.inFlight.Add(1)
	defer s.inFlight.CompareAndSwap(seq, seq+1)
	if err := s.writeCommand(mysql.COM_STMT_PREPARE, query); err != nil {
		return Result{}, s.lost(err)
	}
	r, err := s.relayPrepare(c, id)
	if err != nil {
		return r, s.lost(err)
	}
	return r, nil
}

func (s *Session) relayPrepare(c Client, id uint32) (Result, error) {
	pkt, err := s.readPhys()
	if err != nil {
		return Result{}, err
	}
	p := pkt[4:]
	if len(p) > 0 && p[0] == 0xff {
		e := parseErr(p, len(p))
		if err := c.WritePacket(pkt); err != nil {
			return Result{}, &clientError{err}
		}
		return Result{Err: e}, nil
	}
	if len(p) < 12 || p[0] != 0 {
		return Result{}, fmt.Errorf("unexpected prepare answer (%d bytes)", len(p))
	}
	up := binary.LittleEndian.Uint32(p[1:])
	cols := binary.LittleEndian.Uint16(p[5:])
	params := binary.LittleEndian.Uint16(p[7:])
	s.warnings = binary.LittleEndian.Uint16(p[10:])
	binary.LittleEndian.PutUint32(p[1:], id)
	if err := c.WritePacket(pkt); err != nil {
		return Result{}, &clientError{err}
	}
	s.stmts[id] = up
	r := Result{Params: int(params)}
	var head []byte
	for _, n := range []uint16{params, cols} {
		if n == 0 {
			continue
		}
		for i := 0; i < int(n)+1; i++ { // definitions, then EOF
			if _, err := s.packet(c, &head); err != nil {
				return Result{}, err
			}
		}
	}
	return r, nil
}

// Result is how a relayed command ended.
type Result struct {
	// Err is the upstream's error packet, if the command failed there
	// (already relayed to the client).
	Err *mysql.MyError
	// AffectedRows and InsertID are those of the last OK packet.
	AffectedRows, InsertID uint64
	// Params is a prepared statement's parameter count (Prepare).
	Params int
}

// Forward sends one command (cmd and its payload, as the client sent it)
// to the upstream and relays the answer to c. db is the database a new
// connection starts in; ctx bounds connecting (the command itself is ended
// by KillQuery, which the caller arranges for KILL QUERY and shutdown). Errors are ErrUnavailable (nothing was sent; the
// client connection is fine), ErrLost, or an upstream refusal of the login
// (*mysql.MyError, to be sent to the client).
func (s *Session) Forward(ctx context.Context, c Client, db string, cmd byte, payload []byte) (Result, error) {
	if err := s.ensure(ctx, db); err != nil {
		return Result{}, err
	}
	stmt := int64(noStmt)
	if isStmtCommand(cmd) {
		if len(payload) < 4 {
			return Result{}, ErrUnknownStmt
		}
		id := binary.LittleEndian.Uint32(payload)
		up, ok := s.stmts[id]
		if !ok {
			return Result{}, ErrUnknownStmt
		}
		stmt = int64(up) // written in place of id (the client's payload stays as it is)
		if cmd == mysql.COM_STMT_CLOSE {
			delete(s.stmts, id)
		}
	}
	seq := s.inFlight.Add(1)
	defer s.inFlight.CompareAndSwap(seq, seq+1) // odd while a command runs
	if err := s.writeCommandStmt(cmd, payload, stmt); err != nil {
		return Result{}, s.lost(err)
	}
	var r Result
	var err error
	switch cmd {
	case mysql.COM_QUERY, mysql.COM_STMT_EXECUTE:
		r, err = s.relayResult(c, true)
	case mysql.COM_STMT_FETCH:
		r, err = s.relayRows(c)
	case mysql.COM_FIELD_LIST:
		r, err = s.relayFields(c)
	case mysql.COM_STMT_SEND_LONG_DATA, mysql.COM_STMT_CLOSE:
		// no answer
	default: // COM_INIT_DB, COM_STMT_RESET, COM_RESET_CONNECTION, COM_SET_OPTION, ...
		r, err = s.relayResult(c, false)
	}
	if err != nil {
		return r, s.lost(err)
	}
	if cmd == mysql.COM_QUERY && r.Err == nil {
		s.noteQuery(string(payload))
	}
	if cmd == mysql.COM_RESET_CONNECTION && r.Err == nil {
		s.sticky, s.replay = false, nil
		clear(s.stmts)
	}
	return r, nil
}

func (s *Session) lost(err error) error {
	s.log.Warn("upstream connection lost during a command", "thread_id", s.ThreadID(), "err", err)
	s.Close()
	return fmt.Errorf("%w: %w", ErrLost, err)
}

// noteQuery records what a reconnect would lose or must replay.
func (s *Session) noteQuery(q string) {
	t := strings.ToLower(strings.TrimSpace(stripComments(q)))
	switch {
	case strings.Contains(t, "@") && (strings.HasPrefix(t, "set") || strings.Contains(t, ":=") || strings.Contains(t, "into")),
		strings.HasPrefix(t, "create temporary"), strings.HasPrefix(t, "lock"),
		strings.Contains(t, "get_lock"), strings.HasPrefix(t, "prepare"):
		s.sticky = true
	case strings.HasPrefix(t, "set "):
		for _, r := range s.replay {
			if r == q {
				return
			}
		}
		if len(s.replay) < 64 {
			s.replay = append(s.replay, q)
		}
	}
}

func stripComments(q string) string {
	for {
		t := strings.TrimSpace(q)
		if strings.HasPrefix(t, "/*") && !strings.HasPrefix(t, "/*!") {
			if i := strings.Index(t, "*/"); i >= 0 {
				q = t[i+2:]
				continue
			}
		}
		return t
	}
}

// Sticky reports whether the session holds state a reconnect would lose.
func (s *Session) Sticky() bool { return s.sticky || s.InTransaction() }

// writeCommand writes cmd+payload as packets with sequence numbers from 0.
func (s *Session) writeCommand(cmd byte, payload []byte) error {
	return s.writeCommandStmt(cmd, payload, noStmt)
}

// noStmt: a command that names no prepared statement.
const noStmt = -1

// writeCommandStmt is writeCommand with the statement id that begins the
// payload replaced by stmt, unless that is noStmt.
func (s *Session) writeCommandStmt(cmd byte, payload []byte, stmt int64) error {
	s.seq = 0
	n := 1 + len(payload)
	if n < maxPayload {
		pkt := s.grow(4 + n)
		putHeader(pkt, n, 0)
		pkt[4] = cmd
		copy(pkt[5:], payload)
		if stmt != noStmt {
			binary.LittleEndian.PutUint32(pkt[5:], uint32(stmt))
		}
		s.seq = 1
		_, err := s.conn.Write(pkt)
		return err
	}
	data := make([]byte, 0, n)
	data = append(append(data, cmd), payload...)
	if stmt != noStmt {
		binary.LittleEndian.PutUint32(data[1:], uint32(stmt))
	}
	return s.writePayload(data)
}

// writePayload writes one logical packet, split as the protocol requires.
func (s *Session) writePayload(data []byte) error {
	for {
		n := min(len(data), maxPayload)
		var h [4]byte
		putHeader(h[:], n, s.seq)
		s.seq++
		if _, err := s.conn.Write(h[:]); err != nil {
			return err
		}
		if n > 0 {
			if _, err := s.conn.Write(data[:n]); err != nil {
				return err
			}
		}
		data = data[n:]
		if n < maxPayload {
			return nil
		}
	}
}

const maxPayload = 1<<24 - 1

func putHeader(b []byte, n int, seq byte) {
	b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), seq
}

func (s *Session) grow(n int) []byte {
	if cap(s.buf) < n {
		s.buf = make([]byte, n, max(n, 16<<10))
	}
	return s.buf[:n]
}

// readPhys reads one physical packet (header and payload). It is a slice
// of the read buffer, valid until the next read.
func (s *Session) readPhys() ([]byte, error) {
	if err := s.fill(4); err != nil {
		return nil, err
	}
	h := s.rbuf[s.rpos:]
	n := 4 + (int(h[0]) | int(h[1])<<8 | int(h[2])<<16)
	if err := s.fill(n); err != nil {
		return nil, err
	}
	pkt := s.rbuf[s.rpos : s.rpos+n : s.rpos+n]
	s.rpos += n
	s.seq = pkt[3] + 1
	return pkt, nil
}

// Read buffer sizes: what one read may take, and what a buffer grown for
// a larger packet is given back for once it is relayed.
const (
	readBufSize = 64 << 10
	readBufKeep = 1 << 20
)

// fill makes sure the read buffer holds at least n bytes not yet relayed,
// reading as much as the socket has.
func (s *Session) fill(n int) error {
	if s.rend-s.rpos >= n {
		return nil
	}
	left := s.rend - s.rpos
	switch {
	case len(s.rbuf) < n || left == 0 && len(s.rbuf) > readBufKeep:
		b := make([]byte, max(n, readBufSize))
		copy(b, s.rbuf[s.rpos:s.rend])
		s.rbuf = b
	case s.rpos > 0:
		copy(s.rbuf, s.rbuf[s.rpos:s.rend])
	}
	s.rpos, s.rend = 0, left
	for s.rend < n {
		k, err := s.conn.Read(s.rbuf[s.rend:])
		s.rend += k
		if err != nil {
			if s.rend >= n {
				return nil
			}
			if err == io.EOF && s.rend > 0 {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}

// packet reads one logical packet and relays it to c. It returns the first
// bytes of its payload (at most 64, a copy) and the payload's length.
func (s *Session) packet(c Client, head *[]byte) (int, error) {
	total := 0
	first := true
	for {
		pkt, err := s.readPhys()
		if err != nil {
			return 0, err
		}
		n := len(pkt) - 4
		total += n
		if first {
			*head = append((*head)[:0], pkt[4:4+min(n, 64)]...)
			first = false
		}
		if c != nil {
			if err := c.WritePacket(pkt); err != nil {
				return 0, &clientError{err}
			}
		}
		if n < maxPayload {
			return total, nil
		}
	}
}

// clientError is a failure to write to the client, not an upstream one.
type clientError struct{ err error }

func (e *clientError) Error() string { return "client: " + e.err.Error() }
func (e *clientError) Unwrap() error { return e.err }

// ErrClient reports whether err came from writing to the client.
func ErrClient(err error) bool {
	var ce *clientError
	return errors.As(err, &ce)
}

// relayResult relays the answer to a command that may return result sets
// (results) or only OK/ERR.
func (s *Session) relayResult(c Client, results bool) (Result, error) {
	var head []byte
	var r Result
	for {
		n, err := s.packet(c, &head)
		if err != nil {
			return r, err
		}
		if n == 0 {
			return r, errors.New("empty packet")
		}
		switch {
		case head[0] == 0x00 && n >= 7 || head[0] == 0xfe && n < 9 && !results:
			r.Err = nil
			if head[0] == 0x00 {
				s.readOK(head, &r)
			} else {
				s.readEOF(head)
			}
			if s.status&statusMoreResults == 0 {
				return r, nil
			}
		case head[0] == 0xff:
			r.Err = parseErr(head, n)
			return r, nil
		case head[0] == 0xfb && results:
			if err := s.localInfile(c); err != nil {
				return r, err
			}
		case results:
			cols, _, _ := mysql.LengthEncodedInt(head)
			for i := uint64(0); i < cols; i++ {
				if _, err := s.packet(c, &head); err != nil {
					return r, err
				}
			}
			if n, err = s.packet(c, &head); err != nil { // EOF after the definitions
				return r, err
			}
			if head[0] == 0xfe && n < 9 {
				s.readEOF(head)
				if s.status&statusCursorExists != 0 {
					return r, nil // rows come with COM_STMT_FETCH
				}
			}
			rr, err := s.relayRows(c)
			if err != nil || rr.Err != nil {
				return rr, err
			}
			if s.status&statusMoreResults == 0 {
				return r, nil
			}
		default:
			return r, fmt.Errorf("unexpected packet 0x%02x", head[0])
		}
	}
}

// relayRows relays rows up to their EOF or error packet.
func (s *Session) relayRows(c Client) (Result, error) {
	var head []byte
	for {
		n, err := s.packet(c, &head)
		if err != nil {
			return Result{}, err
		}
		switch {
		case n > 0 && head[0] == 0xfe && n < 9:
			s.readEOF(head)
			return Result{}, nil
		case n > 0 && head[0] == 0xff:
			return Result{Err: parseErr(head, n)}, nil
		}
	}
}

// relayFields relays COM_FIELD_LIST's definitions up to their EOF.
func (s *Session) relayFields(c Client) (Result, error) {
	return s.relayRows(c)
}

// localInfile sends the client's file (packets up to an empty one) to
// the upstream after its LOCAL INFILE request.
func (s *Session) localInfile(c Client) error {
	for {
		data, err := c.ReadPacket()
		if err != nil {
			// The client went away: end the upstream's wait with an empty
			// packet (the statement loads nothing), then report it.
			_ = s.writePayload(nil)
			return &clientError{err}
		}
		if err := s.writePayload(data); err != nil {
			return err
		}
		if len(data) == 0 {
			return nil
		}
	}
}

func (s *Session) readOK(p []byte, r *Result) {
	pos := 1
	a, _, n := mysql.LengthEncodedInt(p[pos:])
	pos += n
	id, _, n := mysql.LengthEncodedInt(p[pos:])
	pos += n
	r.AffectedRows, r.InsertID = a, id
	if len(p) >= pos+4 {
		s.status = binary.LittleEndian.Uint16(p[pos:])
		s.warnings = binary.LittleEndian.Uint16(p[pos+2:])
	}
}

func (s *Session) readEOF(p []byte) {
	if len(p) >= 5 {
		s.warnings = binary.LittleEndian.Uint16(p[1:])
		s.status = binary.LittleEndian.Uint16(p[3:])
	}
}

// Warnings returns the warning count of the upstream's last answer.
func (s *Session) Warnings() uint16 { return s.warnings }

func parseErr(p []byte, n int) *mysql.MyError {
	e := &mysql.MyError{}
	if len(p) >= 3 {
		e.Code = binary.LittleEndian.Uint16(p[1:])
	}
	rest := p[min(3, len(p)):]
	if len(rest) >= 6 && rest[0] == '#' {
		e.State = string(rest[1:6])
		rest = rest[6:]
	}
	e.Message = string(rest)
	_ = n
	return e
}

// simple runs a command whose answer is OK or ERR, without a client.
func (s *Session) simple(cmd byte, payload []byte) error {
	if err := s.writeCommand(cmd, payload); err != nil {
		return err
	}
	r, err := s.relayResult(nil, true)
	if err != nil {
		return err
	}
	if r.Err != nil {
		return r.Err
	}
	return nil
}

// KillQuery ends the command the upstream connection is running, from
// another connection (KILL QUERY, as mysqld's own KILL does), so that a
// KILL QUERY or a shutdown reaches forwarded statements too. It returns
// when the KILL has been answered (or failed); it may be called from any
// goroutine. The KILL is not sent if the command running when KillQuery was
// called has ended meanwhile (the next one could be hit; a small window
// between that check and the KILL remains, as with any proxy).
func (s *Session) KillQuery() {
	seq := s.inFlight.Load()
	if seq%2 == 0 {
		return // nothing runs
	}
	id := s.ThreadID()
	if id == 0 {
		return
	}
	func() {
		timeout := s.dialTimeout()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		d := func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := netdial.DialContext(ctx, network, addr, timeout)
			if err == nil {
				_ = c.SetDeadline(time.Now().Add(timeout))
			}
			return c, err
		}
		tlsOpt := func(c *client.Conn) error {
			if t := s.cfg.tlsConfig(); t != nil {
				c.SetTLSConfig(t)
			}
			return nil
		}
		kc, err := client.ConnectWithDialer(ctx, s.cfg.network(), s.cfg.Addr, s.login.User, s.login.Password, "", d, tlsOpt)
		if err != nil {
			s.log.Warn("upstream KILL QUERY: cannot connect", "err", err)
			return
		}
		defer kc.Close()
		if s.inFlight.Load() != seq {
			return // that command ended while connecting
		}
		if _, err := kc.Execute(fmt.Sprintf("KILL QUERY %d", id)); err != nil {
			s.log.Debug("upstream KILL QUERY", "thread_id", id, "err", err)
		}
	}()
}

// Query runs a statement upstream for q4mproxy itself (no client sees the
// packets) and returns its first result set in the text protocol: column
// names (nil when the statement returned no result set) and rows of nil or
// string values. An upstream error is returned as its *mysql.MyError.
func (s *Session) Query(ctx context.Context, db, query string) ([]string, [][]any, error) {
	var names []string
	var rows [][]any
	err := s.QueryRows(ctx, db, query,
		func(c []string) error { names = c; return nil },
		func(vals [][]byte) error {
			row := make([]any, len(vals))
			for i, v := range vals {
				if v != nil {
					row[i] = string(v)
				}
			}
			rows = append(rows, row)
			return nil
		})
	if err != nil {
		return nil, nil, err
	}
	return names, rows, nil
}

// QueryRows runs a statement upstream for q4mproxy itself and hands its
// first result set (text protocol) over as it arrives: cols once, with
// the column names, then row for each row, NULL as nil. The values are
// only valid during the call (they point into the read buffer), so
// nothing is kept here and memory does not grow with the result. When a
// callback fails, the rest of the answer is read and dropped, so the
// connection stays in step, and the callback's error is returned. An
// upstream error is returned as its *mysql.MyError.
func (s *Session) QueryRows(ctx context.Context, db, query string, cols func([]string) error, row func([][]byte) error) error {
	st := &rowStream{cols: cols, row: row}
	r, err := s.Forward(ctx, st, db, mysql.COM_QUERY, []byte(query))
	switch {
	case err != nil:
		return err
	case r.Err != nil:
		return r.Err
	}
	return st.err
}

// rowStream is a Client that decodes a relayed result set packet by
// packet, for QueryRows.
type rowStream struct {
	cols  func([]string) error
	row   func([][]byte) error
	err   error    // the first failure; the rest is dropped
	state int      // what the next logical packet is (stream*)
	left  uint64   // column definitions still to come
	names []string // column names
	vals  [][]byte // a row's values, reused
	long  []byte   // a logical packet of several physical ones, so far
}

const (
	streamHead = iota // column count, OK or ERR
	streamDefs        // column definitions
	streamEOF         // EOF after the definitions
	streamRows        // rows up to EOF or ERR
	streamDone        // anything after the first result set
)

func (st *rowStream) WritePacket(pkt []byte) error {
	p := pkt[4:]
	if len(p) == maxPayload || st.long != nil {
		st.long = append(st.long, p...)
		if len(p) == maxPayload {
			return nil // more of it comes
		}
		p, st.long = st.long, nil
	}
	if st.err == nil && st.state != streamDone {
		st.err = st.packet(p)
		if st.err != nil {
			st.state = streamDone
		}
	}
	return nil
}

// packet takes one logical packet's payload.
func (st *rowStream) packet(p []byte) error {
	if len(p) == 0 {
		return errors.New("upstream: empty packet in a result set")
	}
	switch st.state {
	case streamHead:
		if p[0] == 0x00 || p[0] == 0xff {
			st.state = streamDone // no result set (or an error: Forward has it)
			return nil
		}
		n, _, _ := mysql.LengthEncodedInt(p)
		st.left, st.names = n, make([]string, 0, n)
		st.state = streamDefs
		if n == 0 {
			st.state = streamEOF
		}
	case streamDefs:
		f := &mysql.Field{}
		if err := f.Parse(p); err != nil {
			return err
		}
		st.names = append(st.names, string(f.Name))
		if st.left--; st.left == 0 {
			st.state = streamEOF
		}
	case streamEOF:
		st.state = streamRows
		st.vals = make([][]byte, len(st.names))
		return st.cols(st.names)
	case streamRows:
		if p[0] == 0xff || p[0] == 0xfe && len(p) < 9 {
			st.state = streamDone
			return nil
		}
		pos := 0
		for i := range st.vals {
			v, isNull, k, err := mysql.LengthEncodedString(p[pos:])
			if err != nil {
				return err
			}
			pos += k
			if isNull {
				v = nil
			}
			st.vals[i] = v // an empty value is not nil
		}
		return st.row(st.vals)
	}
	return nil
}

func (st *rowStream) ReadPacket() ([]byte, error) {
	return nil, errors.New("upstream: no client file")
}
