package server

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// maxChangeUserFailures is how many failed COM_CHANGE_USERs a connection
// may make; after that the command is refused as unknown (08S01), as
// MariaDB does against password guessing.
const maxChangeUserFailures = 3

// changeUserRequest is a decoded COM_CHANGE_USER.
type changeUserRequest struct {
	user      string
	auth      []byte // the auth response, computed from the greeting's scramble
	db        string
	collation uint16
	plugin    string // the auth plugin the response is for
}

// parseChangeUser decodes COM_CHANGE_USER's payload (after the command
// byte) as the client's capabilities shape it; the connection attributes
// at its end are not used.
func parseChangeUser(data []byte, caps uint32) (changeUserRequest, bool) {
	var r changeUserRequest
	user, rest, ok := bytes.Cut(data, []byte{0})
	if !ok {
		return r, false
	}
	r.user = string(user)
	if caps&mysql.CLIENT_SECURE_CONNECTION != 0 {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return r, false
		}
		r.auth, rest = rest[1:1+int(rest[0])], rest[1+int(rest[0]):]
	} else if r.auth, rest, ok = bytes.Cut(rest, []byte{0}); !ok {
		return r, false
	}
	// The database may end the packet without its NUL: then Cut returns
	// all of it.
	db, rest, _ := bytes.Cut(rest, []byte{0})
	r.db = string(db)
	if len(rest) >= 2 {
		r.collation = binary.LittleEndian.Uint16(rest)
		rest = rest[2:]
	}
	r.plugin = mysql.AUTH_NATIVE_PASSWORD
	if caps&mysql.CLIENT_PLUGIN_AUTH != 0 && len(rest) > 0 {
		name, _, _ := bytes.Cut(rest, []byte{0})
		r.plugin = string(name)
	}
	return r, true
}

// changeUser answers COM_CHANGE_USER: the session is reset as by a new
// login whatever the outcome (owned row back, variables and prepared
// statements gone, the upstream connection closed); then the client's
// answer is checked against the new user's password, and on success the connection continues as that user, in
// the database asked for. A failure keeps the old user (the client gets
// 1045 and the connection stays usable, as on MySQL); after three
// failures the command is refused for the rest of the connection.
func (h *handler) changeUser(data []byte) (any, error) {
	if h.changeUserFailures >= maxChangeUserFailures {
		return newError(mysql.ER_UNKNOWN_COM_ERROR, "Unknown command"), nil
	}
	req, ok := parseChangeUser(data, h.mc.Capability())
	if !ok {
		return newError(mysql.ER_UNKNOWN_COM_ERROR, "Malformed communication packet"), nil
	}
	// Reset as COM_RESET_CONNECTION does, whatever the outcome.
	h.sess.Reset()
	clear(h.stmts)
	h.lastUpstream, h.queueWriteInTxn = false, false
	if h.up != nil {
		h.up.Reset()
	}
	h.syncStatus()

	// The answer is computed from the greeting's scramble, with the
	// plugin the client names. For a plugin q4mproxy does not check, the
	// client is asked to switch to mysql_native_password with a fresh
	// scramble.
	salt, resp, plugin := h.wc.salt, req.auth, req.plugin
	if plugin != mysql.AUTH_NATIVE_PASSWORD && plugin != mysql.AUTH_CACHING_SHA2_PASSWORD || len(salt) != 20 {
		if !h.mc.HasCapability(mysql.CLIENT_PLUGIN_AUTH) {
			return newError(mysql.ER_NOT_SUPPORTED_AUTH_MODE, "Client does not support authentication protocol requested by server; consider upgrading MySQL client"), nil
		}
		var err error
		salt = newScramble()
		if resp, err = h.authSwitch(salt); err != nil {
			return nil, err
		}
		plugin = mysql.AUTH_NATIVE_PASSWORD
	}
	host := h.sess.Host()
	pw, known := h.srv.password(req.user)
	if !known || !scrambleOK(plugin, resp, salt, pw) {
		h.changeUserFailures++
		h.log.Warn("change user refused", "to_user", req.user)
		using := "NO"
		if len(resp) > 0 {
			using = "YES"
		}
		return newError(mysql.ER_ACCESS_DENIED_ERROR, fmt.Sprintf("Access denied for user '%s'@'%s' (using password: %s)", req.user, host, using)), nil
	}

	if h.up != nil {
		old := h.up.Login()
		l := old
		l.User, l.Password = req.user, pw
		if req.collation != 0 {
			l.Collation = uint8(req.collation)
		}
		h.up.SetLogin(l)
		// Log in upstream now, so that a user or database the upstream
		// refuses fails here, as on one mysqld. An upstream that cannot
		// be reached is not a refusal: the session goes on and connects
		// at its first forwarded statement.
		if err := h.up.Connect(h.ctx, req.db); err != nil {
			var me *mysql.MyError
			if errors.As(err, &me) {
				h.up.SetLogin(old)
				h.changeUserFailures++
				return me, nil
			}
			h.log.Warn("upstream unreachable at change user; connecting later", "err", err)
		}
	}
	if req.db != "" {
		if err := h.sess.UseDB(req.db); err != nil {
			if h.up != nil {
				h.up.Reset()
			}
			return h.toError(err), nil
		}
	} else {
		h.sess.ClearDB()
	}
	h.sess.SetUser(req.user, host)
	h.c.setUser(req.user)
	h.log = h.srv.log.With("remote", h.c.act.host, "conn_id", h.c.id, "user", req.user)
	h.log.Debug("changed user")
	h.syncStatus()
	return nil, nil
}

// authSwitch asks the client for a mysql_native_password answer to salt
// and returns it.
func (h *handler) authSwitch(salt []byte) ([]byte, error) {
	pkt := make([]byte, 4, 4+1+len(mysql.AUTH_NATIVE_PASSWORD)+1+len(salt)+1)
	pkt = append(pkt, mysql.EOF_HEADER)
	pkt = append(pkt, mysql.AUTH_NATIVE_PASSWORD...)
	pkt = append(pkt, 0)
	pkt = append(pkt, salt...)
	pkt = append(pkt, 0)
	n := len(pkt) - 4
	pkt[0], pkt[1], pkt[2] = byte(n), byte(n>>8), byte(n>>16)
	if err := h.WritePacket(pkt); err != nil {
		return nil, err
	}
	if err := h.wc.Flush(); err != nil {
		return nil, err
	}
	return h.mc.ReadPacket()
}

// newScramble returns 20 random bytes as MySQL scrambles are made: no NUL
// (the scramble is NUL-terminated on the wire) and no '$'.
func newScramble() []byte {
	b := make([]byte, 20)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = 1 + b[i]%126
		if b[i] == '$' {
			b[i]++
		}
	}
	return b
}

// scrambleOK checks an auth answer for plugin against salt and password.
func scrambleOK(plugin string, resp, salt []byte, password string) bool {
	if password == "" {
		return len(resp) == 0
	}
	var want []byte
	switch plugin {
	case mysql.AUTH_NATIVE_PASSWORD:
		want = mysql.CalcNativePassword(salt, []byte(password))
	case mysql.AUTH_CACHING_SHA2_PASSWORD:
		want = mysql.CalcCachingSha2Password(salt, []byte(password))
	default:
		return false
	}
	return len(resp) == len(want) && subtle.ConstantTimeCompare(resp, want) == 1
}

// password returns a user's password and whether the user exists, as
// the last SetUsers left them.
func (s *Server) password(user string) (string, bool) {
	return s.accts.Load().password(user)
}

// setUser changes the connection's user (COM_CHANGE_USER).
func (c *conn) setUser(user string) {
	c.mu.Lock()
	c.user = user
	c.mu.Unlock()
}

// userName returns the connection's user.
func (c *conn) userName() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.user
}
