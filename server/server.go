package server

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gms "github.com/go-mysql-org/go-mysql/server"

	"github.com/q4mproxy/q4mproxy/sqlfront"
	"github.com/q4mproxy/q4mproxy/upstream"
)

// Config configures a Server.
type Config struct {
	// Version is the server version sent in the handshake.
	Version string
	// Users maps user names to passwords ("" for none).
	Users map[string]string
	// DefaultAuth is the auth plugin the handshake proposes:
	// mysql_native_password (default) or caching_sha2_password. Either way a
	// client that answers with the other plugin is served with it.
	DefaultAuth string
	// RSAKey serves caching_sha2_password's full authentication over
	// plaintext connections (clients fetch the public key).
	RSAKey *rsa.PrivateKey
	// TLS, if set, is offered to clients (CLIENT_SSL).
	TLS *tls.Config
	// RequireSecureTransport refuses logins over plaintext (ERROR 3159).
	RequireSecureTransport bool
	// HandshakeTimeout bounds the connection phase. Zero means 10 s.
	HandshakeTimeout time.Duration
	// MaxAllowedPacket bounds what a client may send in one packet (1153
	// and the connection is closed beyond it). Zero means 64 MB.
	MaxAllowedPacket int64
	// MaxConnections bounds the open connections; one more gets ERROR 1040.
	// Zero means 151 (MySQL's default).
	MaxConnections int
	// Upstream, if set, is the MySQL/MariaDB server that runs every
	// statement that is not about queue tables.
	Upstream *upstream.Config
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("server: closed")

// Server accepts MySQL connections and serves them from a sqlfront.Engine.
type Server struct {
	eng *sqlfront.Engine
	cfg Config
	log *slog.Logger

	shutting atomic.Bool
	accts    atomic.Pointer[accounts] // cfg.Users, then SetUsers'
	wg       sync.WaitGroup
	open     atomic.Int64 // connections being served
	refused  refuseLog    // limits the log lines about refused connections
	status   status       // SHOW STATUS counters (status.go)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[uint32]*conn // by connection id
}

// New returns a Server for eng. Use SetEngine if the engine needs the
// server (for KILL) and is built after it.
func New(eng *sqlfront.Engine, cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.MaxConnections == 0 {
		cfg.MaxConnections = 151
	}
	if cfg.MaxAllowedPacket == 0 {
		cfg.MaxAllowedPacket = 64 << 20
	}
	if cfg.DefaultAuth == "" {
		cfg.DefaultAuth = mysql.AUTH_NATIVE_PASSWORD
	}
	srv := &Server{
		eng:       eng,
		cfg:       cfg,
		log:       cfg.Logger.With("component", "server"),
		listeners: map[net.Listener]struct{}{},
		conns:     map[uint32]*conn{},
	}
	srv.status.started = time.Now()
	srv.SetUsers(cfg.Users)
	return srv
}

// accounts is what a login checks: the users and passwords, and the
// go-mysql server that runs the handshake against them. Each SetUsers
// makes a new one, so the go-mysql server's caching_sha2_password cache
// (the hashes of passwords that logged in, keyed by user, which its fast
// path accepts without asking for the password again) starts empty: an
// old password or a removed user cannot log in through it, as MySQL
// empties it on ALTER USER and FLUSH PRIVILEGES. A connection takes one
// accounts when it is accepted and logs in against it alone.
type accounts struct {
	users map[string]string
	mysrv *gms.Server
}

// password returns a user's password and whether the user exists.
func (a *accounts) password(user string) (string, bool) {
	pw, ok := a.users[user]
	return pw, ok
}

// SetEngine sets the engine (before Serve).
func (s *Server) SetEngine(eng *sqlfront.Engine) { s.eng = eng }

// SetUsers replaces the users and passwords (a reload). Logins from now on
// check the new ones; established sessions are not affected. users must
// not be modified afterwards. It is safe to call at any time.
func (s *Server) SetUsers(users map[string]string) {
	a := &accounts{users: users}
	a.mysrv = gms.NewServerWithAuth(s.cfg.Version, mysql.DEFAULT_COLLATION_ID, s.cfg.DefaultAuth, s.cfg.RSAKey, s.cfg.TLS,
		&authProvider{accts: a})
	if s.cfg.Upstream != nil {
		// LOAD DATA LOCAL INFILE, relayed to the upstream.
		_ = a.mysrv.SetCapability(mysql.CLIENT_LOCAL_FILES)
	}
	s.accts.Store(a)
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTemporary(err)) {
				delay = min(max(delay*2, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		s.wg.Add(1)
		s.status.connections.Add(1)
		if s.open.Add(1) > int64(s.cfg.MaxConnections) {
			go s.refuse(c)
			continue
		}
		go s.handle(c)
	}
}

// refuse answers a connection over --max-connections with ERROR 1040 in
// place of the greeting, as MySQL does, and closes it. The log tells of the
// first refusal and then of at most one per 10 s, with the number held back
// since ("suppressed").
func (s *Server) refuse(c net.Conn) {
	defer s.wg.Done()
	defer s.open.Add(-1)
	// Counted before the client can see the error, so that a status
	// read after it includes this refusal.
	s.status.maxConnErrors.Add(1)
	s.status.countError(mysql.ER_CON_COUNT_ERROR)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Write(errorPacket(mysql.ER_CON_COUNT_ERROR, "Too many connections", 0))
	_ = c.Close()
	if ok, n := s.refused.allow(time.Now()); ok {
		s.log.Warn("connection refused: too many connections", "remote", c.RemoteAddr().String(), "max_connections", s.cfg.MaxConnections, "suppressed", n)
	}
}

func errTemporary(err error) error {
	if strings.Contains(err.Error(), "too many open files") {
		return err
	}
	return errors.New("not temporary")
}

// conn is the server's record of one connection.
type conn struct {
	id     uint32
	user   string
	raw    net.Conn
	cancel context.CancelCauseFunc // ends the connection's context

	mu          sync.Mutex
	cancelQuery context.CancelCauseFunc // the running statement, if any

	act    activity   // for SHOW PROCESSLIST
	counts stmtCounts // for SHOW SESSION STATUS
}

func (s *Server) handle(raw net.Conn) {
	defer s.wg.Done()
	defer s.open.Add(-1)
	log := s.log.With("remote", raw.RemoteAddr().String())
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic in connection; closing it", "panic", r, "stack", string(debug.Stack()))
			_ = raw.Close()
		}
	}()
	host, _, _ := net.SplitHostPort(raw.RemoteAddr().String())
	wc := newWatchConn(raw)
	wc.limit.max = s.cfg.MaxAllowedPacket
	wc.greetingCaps = s.extraCaps()
	wc.global = &s.status.stmtCounts
	sess := s.eng.NewSession(0, "", host)
	defer sess.Close()

	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	h := &handler{srv: s, sess: sess, wc: wc, ctx: ctx}
	_ = raw.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	accts := s.accts.Load()
	ah := &authHandler{srv: s, accts: accts, wc: wc, log: log}
	mc, err := login(accts.mysrv, wc, ah, h)
	if err != nil {
		if !ah.aborted { // counted before the client sees the error
			s.status.abortedConnects.Add(1)
		}
		_ = wc.Flush()
		log.Debug("handshake failed", "err", err)
		_ = raw.Close()
		return
	}
	_ = raw.SetDeadline(time.Time{})
	// Over TLS, max_allowed_packet is enforced on the decrypted stream from
	// now on.
	mc.Conn.Conn = wc.loggedIn(mc.Conn.Conn, s.cfg.MaxAllowedPacket)
	h.mc = mc
	h.stmts = map[uint32]*pstmt{}
	if s.cfg.Upstream != nil {
		h.up = upstream.NewSession(s.cfg.Upstream, upstream.Login{
			User:         mc.GetUser(),
			Password:     ah.pw, // the one it logged in with, whatever a reload did since
			Capabilities: mc.Capability() & (accts.mysrv.Capability() | s.extraCaps()),
			Attributes:   mc.Attributes(),
			Collation:    mc.Charset(),
		})
		h.killFn = h.killUpstream
		defer h.up.Close()
		defer h.kills.Wait() // before the upstream connection closes
		sess.SetCreateCheck(h.createCheck)
	}
	id := mc.ConnectionID()
	sess.SetConnID(id)
	sess.SetUser(mc.GetUser(), host)
	c := &conn{id: id, user: mc.GetUser(), raw: raw, cancel: cancel}
	c.act.host = raw.RemoteAddr().String()
	c.act.end(sess.Database(), "")
	h.c = c
	h.log = log.With("conn_id", id, "user", mc.GetUser())
	wc.session = &c.counts
	s.mu.Lock()
	s.conns[id] = c
	n := len(s.conns)
	s.mu.Unlock()
	s.status.connected(n)
	defer func() {
		s.mu.Lock()
		delete(s.conns, id)
		s.mu.Unlock()
	}()
	// The login's OK is still buffered: the client sees it only now that the
	// connection counts in Threads_connected and SHOW PROCESSLIST, as on
	// mysqld, where a connection is counted before it is answered.
	if err := wc.Flush(); err != nil {
		h.log.Debug("login reply not sent", "err", err)
		return
	}
	h.log.Debug("connected")
	h.syncStatus()
	var lastErr error
	var idleDeadline time.Time
	for !s.shutting.Load() && ctx.Err() == nil {
		// An idle client is disconnected after wait_timeout, as by MySQL;
		// its owned row goes back to the queue.
		idleDeadline = time.Now().Add(sess.WaitTimeout())
		_ = raw.SetReadDeadline(idleDeadline)
		err := h.serveCommand()
		if ferr := wc.Flush(); ferr != nil && err == nil {
			err = ferr
		}
		if err != nil || mc.Closed() {
			lastErr = err
			break
		}
	}
	if lastErr != nil && !idleDeadline.IsZero() && !time.Now().Before(idleDeadline) && !s.shutting.Load() && ctx.Err() == nil {
		h.log.Info("idle connection closed after wait_timeout", "wait_timeout", sess.WaitTimeout())
	}
	_ = raw.Close() // go-mysql may already have closed and dropped its conn
	if !h.quit {
		s.status.abortedClients.Add(1)
	}
	if sess.Close() {
		h.log.Debug("owned row released on close")
	}
	h.log.Debug("disconnected")
}

// login runs go-mysql's handshake on wc. go-mysql v1.16.0 panics on some
// malformed handshake responses (auth data announced longer than sent but
// within its read buffer's capacity, attribute lengths past the packet):
// on a plaintext connection watchConn answers those with ERROR 1043 before
// go-mysql reads them (handshakeOverflows). Over TLS it sees only records,
// so the panic comes, and ends here as a failed handshake: a client's
// malformed packet, not a fault of the server. The TLS session is
// go-mysql's, so no error packet can be sent: the connection is closed.
func login(srv *gms.Server, wc *watchConn, ah *authHandler, h *handler) (mc *gms.Conn, err error) {
	defer func() {
		if r := recover(); r != nil {
			mc, err = nil, fmt.Errorf("%w: %v", errBadHandshake, r)
		}
	}()
	return srv.NewCustomizedConn(wc, ah, h)
}

// extraCaps are the capabilities a MySQL server offers that go-mysql does
// not let q4mproxy configure, added to the greeting: with an upstream,
// multiple statements (forwarded whole), and the client's choice of
// affected rows (CLIENT_FOUND_ROWS, which the upstream honours).
func (s *Server) extraCaps() uint32 {
	if s.cfg.Upstream == nil {
		return 0
	}
	return mysql.CLIENT_MULTI_STATEMENTS | mysql.CLIENT_FOUND_ROWS
}

// running reports whether any connection is executing a statement (tests).
func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.mu.Lock()
		busy := c.cancelQuery != nil
		c.mu.Unlock()
		if busy {
			return true
		}
	}
	return false
}

// Kill carries out KILL [QUERY] id on behalf of user.
func (s *Server) Kill(_ context.Context, id uint64, query bool, user string) error {
	s.mu.Lock()
	c := s.conns[uint32(id)]
	s.mu.Unlock()
	if c == nil || uint64(c.id) != id {
		return newError(mysql.ER_NO_SUCH_THREAD, fmt.Sprintf("Unknown thread id: %d", id))
	}
	if c.userName() != user {
		return newError(mysql.ER_KILL_DENIED_ERROR, fmt.Sprintf("You are not owner of thread %d", id))
	}
	c.mu.Lock()
	if c.cancelQuery != nil {
		c.cancelQuery(errKilled)
	}
	c.mu.Unlock()
	if !query {
		c.cancel(errKilled)
		_ = c.raw.SetReadDeadline(time.Unix(1, 0))
	}
	return nil
}

// Shutdown stops accepting connections, ends waits and idle connections,
// and waits for busy ones until ctx is done; then it closes the rest.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.mu.Lock()
	for l := range s.listeners {
		_ = l.Close()
	}
	conns := make([]*conn, 0, len(s.conns))
	for _, c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	// First end every statement, then wake the idle connections: an idle
	// one that closes gives its owned row back, and a wait not yet ended
	// could take it.
	for _, c := range conns {
		c.cancel(errShutdown)
		c.mu.Lock()
		if c.cancelQuery != nil {
			c.cancelQuery(errShutdown)
		}
		c.mu.Unlock()
	}
	for _, c := range conns {
		_ = c.raw.SetReadDeadline(time.Unix(1, 0)) // idle ones return from their read
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for _, c := range s.conns {
			_ = c.raw.Close()
		}
		s.mu.Unlock()
		<-done
		return ctx.Err()
	}
}

// authHandler supplies credentials for one connection, with the auth
// plugin the client asked for (so MySQL 8/9 clients get
// caching_sha2_password and MariaDB clients mysql_native_password).
type authHandler struct {
	srv   *Server
	accts *accounts // the users this login is checked against
	wc    *watchConn
	log   *slog.Logger
	// aborted: the login was refused and counted in Aborted_connects
	// (before the refusal is sent, so a client that reads it sees it
	// counted).
	aborted bool
	pw      string // the password the login is checked against
}

func (a *authHandler) GetCredential(user string) (gms.Credential, bool, error) {
	pw, ok := a.accts.password(user)
	if !ok {
		// An unknown user fails like a wrong password (1045), as on MySQL,
		// rather than with go-mysql's "no such user" error.
		pw = unguessable
	}
	a.pw = pw
	plugin := a.srv.cfg.DefaultAuth
	if a.wc.tlsRequested() {
		// The handshake response is encrypted, so the client's plugin is not
		// known; every TLS-capable client speaks caching_sha2_password,
		// which sends the password in clear over TLS.
		plugin = mysql.AUTH_CACHING_SHA2_PASSWORD
	}
	switch p := a.wc.clientPlugin(); p {
	case mysql.AUTH_NATIVE_PASSWORD:
		plugin = p
	case mysql.AUTH_CACHING_SHA2_PASSWORD:
		if a.srv.cfg.RSAKey != nil {
			plugin = p
		}
	}
	return gms.Credential{Passwords: []string{pw}, AuthPluginName: plugin}, true, nil
}

// unguessable is a password nobody can present: 32 random bytes.
var unguessable = func() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}()

// authProvider wraps go-mysql's checks. go-mysql panics when a user whose
// password is empty logs in with a non-empty one; that is simply a wrong
// password.
type authProvider struct {
	gms.DefaultAuthenticationProvider
	accts *accounts
}

func (p *authProvider) Authenticate(c *gms.Conn, plugin string, data []byte) (err error) {
	defer func() {
		// The check below keeps go-mysql from its panic on an empty
		// password; should another path reach one, it is a refusal.
		if r := recover(); r != nil {
			err = gms.ErrAccessDenied
		}
	}()
	pw, known := p.accts.password(c.GetUser())
	if known && pw == "" && !(len(data) == 0 || len(data) == 1 && data[0] == 0) {
		return gms.ErrAccessDenied
	}
	return p.DefaultAuthenticationProvider.Authenticate(c, plugin, data)
}

// OnAuthSuccess runs before the handshake's OK packet: set the autocommit
// status flag a new session has, as MySQL does.
func (a *authHandler) OnAuthSuccess(c *gms.Conn) error {
	if a.srv.cfg.RequireSecureTransport {
		if _, secure := c.Conn.Conn.(*tls.Conn); !secure {
			a.log.Warn("login refused: plaintext connection while secure transport is required", "user", c.GetUser())
			a.srv.status.countError(sqlfront.ErrCodeSecureTransportRequired)
			a.srv.status.abortedConnects.Add(1)
			a.aborted = true
			return newError(sqlfront.ErrCodeSecureTransportRequired, "Connections using insecure transport are prohibited while --require_secure_transport=ON.")
		}
	}
	c.SetStatus(mysql.SERVER_STATUS_AUTOCOMMIT)
	return nil
}

func (a *authHandler) OnAuthFailure(c *gms.Conn, err error) {
	a.srv.status.abortedConnects.Add(1)
	a.aborted = true
	if abandoned(err) {
		// The client went away (or said nothing until the handshake
		// timeout) before it tried to log in: a probe or a storm, not a
		// failed login.
		a.log.Debug("handshake abandoned by the client", "user", c.GetUser(), "err", err)
	} else {
		a.log.Warn("login failed", "user", c.GetUser(), "err", err)
		a.srv.status.countErrorValue(err)
	}
	c.Conn.Conn = a.wc.loginFailed(c.Conn.Conn, c.Sequence)
}

// abandoned reports whether a handshake ended because the connection did
// (EOF, reset, timeout) rather than with a refused login.
func abandoned(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, mysql.ErrBadConn) ||
		errors.Is(err, syscall.ECONNRESET) || errors.As(err, &ne) && ne.Timeout()
}
