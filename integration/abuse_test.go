package integration

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- a tiny MySQL protocol client -----------------------------------------

// Capability flags of the protocol (what rawLogin announces).
const (
	capLongPassword = 0x1
	capLongFlag     = 0x4
	capConnectDB    = 0x8
	capProtocol41   = 0x200
	capTransactions = 0x2000
	capSecureConn   = 0x8000
	capPluginAuth   = 0x80000
)

// Command bytes used below.
const (
	comQuit        = 0x01
	comQuery       = 0x03
	comStatistics  = 0x09
	comStmtPrepare = 0x16
	comStmtExecute = 0x17
	comStmtClose   = 0x19
)

// rawConn is one TCP connection spoken to in raw MySQL protocol.
type rawConn struct {
	t testing.TB
	c net.Conn
	r *bufio.Reader
}

// rawErr is an ERR packet.
type rawErr struct {
	code  uint16
	state string
	msg   string
}

func (e *rawErr) Error() string { return fmt.Sprintf("ERROR %d (%s): %s", e.code, e.state, e.msg) }

// rawResult is the response to a command.
type rawResult struct {
	err  *rawErr    // an ERR packet
	ok   bool       // an OK (or, for COM_SET_OPTION, EOF) packet
	cols int        // a result set with this many columns
	rows [][]byte   // its row packets, undecoded
	text [][]string // its rows decoded as text protocol rows ("NULL" for NULL)
}

// ioTimeout bounds a raw read or write: long enough for a loaded machine
// running the race-instrumented server (a 50 MB result is read from the
// store before its first byte is sent), short enough to end a hang.
const ioTimeout = 60 * time.Second

func dialRaw(t testing.TB, s *server) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

// readPacket reads one packet (joining the chunks of one over 16 MB).
func (r *rawConn) readPacket() ([]byte, byte, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	var out []byte
	for {
		var hdr [4]byte
		if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
			return nil, 0, err
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(r.r, out[start:]); err != nil {
			return nil, 0, err
		}
		if n < 0xffffff {
			return out, hdr[3], nil
		}
	}
}

func (r *rawConn) mustRead() []byte {
	r.t.Helper()
	p, _, err := r.readPacket()
	if err != nil {
		r.t.Fatalf("reading a packet: %v", err)
	}
	return p
}

func (r *rawConn) writeRaw(b []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(ioTimeout))
	_, err := r.c.Write(b)
	return err
}

func packet(payload []byte, seq byte) []byte {
	n := len(payload)
	return append([]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}, payload...)
}

// send sends a command packet (sequence number 0).
func (r *rawConn) send(payload []byte) {
	r.t.Helper()
	if err := r.writeRaw(packet(payload, 0)); err != nil {
		r.t.Fatalf("sending a command: %v", err)
	}
}

func parseErr(p []byte) *rawErr {
	e := &rawErr{}
	if len(p) >= 3 {
		e.code = binary.LittleEndian.Uint16(p[1:3])
	}
	rest := p[min(3, len(p)):]
	if len(rest) >= 6 && rest[0] == '#' {
		e.state, rest = string(rest[1:6]), rest[6:]
	}
	e.msg = string(rest)
	return e
}

func isEOF(p []byte) bool { return len(p) > 0 && p[0] == 0xfe && len(p) < 9 }

// lenenc decodes a length-encoded integer.
func lenenc(b []byte) (v uint64, n int, null bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), 1, false
	case c == 0xfb:
		return 0, 1, true
	case c == 0xfc && len(b) >= 3:
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3, false
	case c == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, false
	case c == 0xfe && len(b) >= 9:
		return binary.LittleEndian.Uint64(b[1:]), 9, false
	}
	return 0, len(b), false
}

func textRow(p []byte) []string {
	var row []string
	for len(p) > 0 {
		v, n, null := lenenc(p)
		p = p[n:]
		if null {
			row = append(row, "NULL")
			continue
		}
		v = min(v, uint64(len(p)))
		row = append(row, string(p[:v]))
		p = p[v:]
	}
	return row
}

// result reads the response to a command: OK, ERR or a result set.
func (r *rawConn) result() (rawResult, error) {
	p, _, err := r.readPacket()
	if err != nil {
		return rawResult{}, err
	}
	switch {
	case len(p) == 0:
		return rawResult{}, errors.New("empty response packet")
	case p[0] == 0x00:
		return rawResult{ok: true}, nil
	case p[0] == 0xff:
		return rawResult{err: parseErr(p)}, nil
	case isEOF(p):
		return rawResult{ok: true}, nil
	}
	cols, _, _ := lenenc(p)
	res := rawResult{cols: int(cols)}
	for i := 0; i <= int(cols); i++ { // column definitions, then EOF
		if p, _, err = r.readPacket(); err != nil {
			return res, err
		}
	}
	if !isEOF(p) {
		return res, fmt.Errorf("no EOF after %d column definitions: %q", cols, p)
	}
	for {
		if p, _, err = r.readPacket(); err != nil {
			return res, err
		}
		switch {
		case isEOF(p):
			return res, nil
		case p[0] == 0xff:
			res.err = parseErr(p)
			return res, nil
		}
		res.rows = append(res.rows, p)
		res.text = append(res.text, textRow(p))
	}
}

func (r *rawConn) mustResult() rawResult {
	r.t.Helper()
	res, err := r.result()
	if err != nil {
		r.t.Fatalf("reading a response: %v", err)
	}
	return res
}

// query sends COM_QUERY and reads the response.
func (r *rawConn) query(q string) rawResult {
	r.t.Helper()
	r.send(append([]byte{comQuery}, q...))
	return r.mustResult()
}

// value runs a query that must return one value.
func (r *rawConn) value(q string) string {
	r.t.Helper()
	res := r.query(q)
	if res.err != nil || len(res.text) != 1 || len(res.text[0]) != 1 {
		r.t.Fatalf("%s: %v %q", q, res.err, res.text)
	}
	return res.text[0][0]
}

// alive checks that the connection still answers SELECT 1.
func (r *rawConn) alive(after string) {
	r.t.Helper()
	r.send(append([]byte{comQuery}, "SELECT 1"...))
	res, err := r.result()
	if err != nil || res.err != nil || len(res.text) != 1 || res.text[0][0] != "1" {
		r.t.Fatalf("connection unusable after %s: %v %v %q", after, err, res.err, res.text)
	}
}

// handshakeResponse is a HandshakeResponse41 for user with an empty
// password, database test, mysql_native_password.
func handshakeResponse(user string) []byte {
	capab := uint32(capLongPassword | capLongFlag | capConnectDB | capProtocol41 | capTransactions | capSecureConn | capPluginAuth)
	p := binary.LittleEndian.AppendUint32(nil, capab)
	p = binary.LittleEndian.AppendUint32(p, 16<<20)
	p = append(p, 45) // utf8mb4_general_ci
	p = append(p, make([]byte, 23)...)
	p = append(append(p, user...), 0)
	p = append(p, 0) // auth response: empty (empty password)
	p = append(append(p, "test"...), 0)
	return append(append(p, "mysql_native_password"...), 0)
}

// readGreeting reads the server's initial handshake and checks it.
func (r *rawConn) readGreeting() {
	r.t.Helper()
	g := r.mustRead()
	if len(g) == 0 || g[0] != 10 {
		if len(g) > 0 && g[0] == 0xff {
			r.t.Fatalf("greeting: %v", parseErr(g))
		}
		r.t.Fatalf("not a protocol 10 greeting: %q", g)
	}
}

// rawLogin connects and logs in as root with the empty password.
func rawLogin(t testing.TB, s *server) *rawConn {
	t.Helper()
	r := dialRaw(t, s)
	r.readGreeting()
	if err := r.writeRaw(packet(handshakeResponse("root"), 1)); err != nil {
		t.Fatal(err)
	}
	for {
		p, seq, err := r.readPacket()
		if err != nil {
			t.Fatalf("login: %v", err)
		}
		switch {
		case len(p) > 0 && p[0] == 0x00:
			return r
		case len(p) > 0 && p[0] == 0xfe: // auth switch: the empty password's answer is empty
			if err := r.writeRaw(packet(nil, seq+1)); err != nil {
				t.Fatal(err)
			}
		case len(p) > 0 && p[0] == 0xff:
			t.Fatalf("login: %v", parseErr(p))
		default:
			t.Fatalf("login: unexpected packet %q", p)
		}
	}
}

// prepare sends COM_STMT_PREPARE and returns the statement id and its
// parameter count.
func (r *rawConn) prepare(q string) (uint32, int) {
	r.t.Helper()
	r.send(append([]byte{comStmtPrepare}, q...))
	p := r.mustRead()
	if p[0] == 0xff {
		r.t.Fatalf("prepare %s: %v", q, parseErr(p))
	}
	if p[0] != 0 || len(p) < 12 {
		r.t.Fatalf("prepare %s: bad response %q", q, p)
	}
	id := binary.LittleEndian.Uint32(p[1:])
	cols := int(binary.LittleEndian.Uint16(p[5:]))
	params := int(binary.LittleEndian.Uint16(p[7:]))
	for _, n := range []int{params, cols} {
		if n == 0 {
			continue
		}
		for range n {
			r.mustRead()
		}
		if p := r.mustRead(); !isEOF(p) {
			r.t.Fatalf("prepare %s: no EOF after definitions: %q", q, p)
		}
	}
	return id, params
}

// execute builds a COM_STMT_EXECUTE: types are the parameter types sent
// (two bytes each), values their encoded values, nulls the NULL bitmap
// (sized for the statement's real parameter count by the caller).
func execute(id uint32, nulls []byte, types []byte, values []byte) []byte {
	p := []byte{comStmtExecute}
	p = binary.LittleEndian.AppendUint32(p, id)
	p = append(p, 0)                                   // CURSOR_TYPE_NO_CURSOR
	p = binary.LittleEndian.AppendUint32(p, 1)         // iteration count
	if nulls == nil && types == nil && values == nil { // no parameter block at all
		return p
	}
	p = append(p, nulls...)
	p = append(p, 1) // new params bound
	p = append(p, types...)
	return append(p, values...)
}

var threadsRE = regexp.MustCompile(`Threads: (\d+)`)

// statThreads asks COM_STATISTICS how many connections the server serves.
func (r *rawConn) statThreads() int {
	r.t.Helper()
	r.send([]byte{comStatistics})
	p := r.mustRead()
	m := threadsRE.FindSubmatch(p)
	if m == nil {
		r.t.Fatalf("COM_STATISTICS: %q", p)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// ---- checks shared by the tests -------------------------------------------

// serverHealthy checks that the server process still runs, logged no
// recovered panic, and serves a new connection: SELECT 1 and SHOW ENGINE
// QUEUE STATUS.
func serverHealthy(t *testing.T, s *server) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("q4mproxy exited: %v", s.waitErr)
	default:
	}
	if strings.Contains(s.logs.String(), "panic in connection") {
		t.Errorf("the server recovered from a panic:\n%s", grepLines(s.logs.String(), "panic"))
	}
	db, err := sql.Open("mysql", s.dsn("test"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	var one int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("a new connection: SELECT 1 = %d, %v", one, err)
	}
	rows, err := db.QueryContext(ctx, "SHOW ENGINE QUEUE STATUS")
	if err != nil {
		t.Fatalf("SHOW ENGINE QUEUE STATUS: %v", err)
	}
	out, err := scanStrings(rows)
	if err != nil || len(out) != 1 || len(out[0]) != 3 || out[0][0] != "QUEUE" {
		t.Fatalf("SHOW ENGINE QUEUE STATUS: %q, %v", out, err)
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// testRand is seeded from Q4MPROXY_TEST_SEED, or else the clock; the seed
// is logged so that a failure can be replayed.
func testRand(t *testing.T) *rand.Rand {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("Q4MPROXY_TEST_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	t.Logf("random seed %d (set Q4MPROXY_TEST_SEED to replay)", seed)
	return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// waitConns waits until the server serves exactly want connections
// (counted by COM_STATISTICS on r, which is one of them).
func waitConns(t *testing.T, r *rawConn, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		n := r.statThreads()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the server still serves %d connections, want %d", what, n, want)
		}
		time.Sleep(10 * time.Millisecond) // polling interval
	}
}

// ---- the tests --------------------------------------------------------------

// TestAbuseGarbageCommands: after login, packets with command bytes MySQL
// does not define, carrying random bytes, each get one ERR packet (1047
// Unknown command, 08S01) and the connection goes on; defined commands
// with random payloads get whatever answer and the connection goes on
// too; an empty packet is answered as MySQL answers it (COM_SLEEP: 1047).
func TestAbuseGarbageCommands(t *testing.T) {
	s := startServer(t)
	rng := testRand(t)
	r := rawLogin(t, s)
	r.alive("login")

	t.Run("unknown command bytes", func(t *testing.T) {
		r.t = t
		for cmd := 0x22; cmd <= 0xff; cmd++ {
			payload := append([]byte{byte(cmd)}, randBytes(rng, rng.IntN(300))...)
			r.send(payload)
			res := r.mustResult()
			if res.err == nil || res.err.code != 1047 || res.err.state != "08S01" {
				t.Fatalf("command 0x%02x: %+v, want ERR 1047 (08S01)", cmd, res)
			}
			r.alive(fmt.Sprintf("command 0x%02x", cmd))
		}
	})

	t.Run("defined commands with random payloads", func(t *testing.T) {
		r.t = t
		// Every command MySQL defines but COM_QUIT, with random bytes: the
		// answer may be an error, OK, or nothing (COM_STMT_CLOSE,
		// COM_STMT_SEND_LONG_DATA); what matters is that the connection
		// goes on. A marker query after each finds the response stream's
		// end.
		for round := range 3 {
			for cmd := 0x00; cmd <= 0x21; cmd++ {
				if cmd == comQuit {
					continue
				}
				r.send(append([]byte{byte(cmd)}, randBytes(rng, 1+rng.IntN(64))...))
				marker := 100000 + round*1000 + cmd
				r.send(append([]byte{comQuery}, fmt.Sprintf("SELECT %d AS m", marker)...))
				want := textRowBytes(strconv.Itoa(marker))
				for {
					p, _, err := r.readPacket()
					if err != nil {
						t.Fatalf("command 0x%02x with random bytes: connection lost: %v", cmd, err)
					}
					if bytes.Equal(p, want) {
						if p := r.mustRead(); !isEOF(p) {
							t.Fatalf("command 0x%02x: no EOF after the marker row: %q", cmd, p)
						}
						break
					}
				}
			}
		}
		r.alive("random payloads")
	})

	t.Run("empty packet", func(t *testing.T) {
		r.t = t
		// MySQL reads an empty command packet as COM_SLEEP and answers
		// ERROR 1047 (08S01) Unknown command; the connection stays.
		if err := r.writeRaw(packet(nil, 0)); err != nil {
			t.Fatal(err)
		}
		res, err := r.result()
		if err != nil {
			t.Fatalf("empty command packet: connection lost (%v); want ERR 1047 and a usable connection", err)
		}
		if res.err == nil || res.err.code != 1047 {
			t.Errorf("empty command packet: %+v, want ERR 1047", res)
		}
		r.alive("an empty packet")
	})
	serverHealthy(t, s)
}

func textRowBytes(vals ...string) []byte {
	var b []byte
	for _, v := range vals {
		b = append(append(b, byte(len(v))), v...)
	}
	return b
}

// TestAbuseTruncatedPacket: a packet whose header announces 100 bytes, of
// which 10 arrive before the client closes, does not hurt the server; nor
// does the same from a client that owns a row, whose row goes back to the
// queue at its place.
func TestAbuseTruncatedPacket(t *testing.T) {
	s := startServer(t)
	obs := rawLogin(t, s)

	r := rawLogin(t, s)
	if err := r.writeRaw(append([]byte{100, 0, 0, 0, comQuery}, "SELECT 1"...)); err != nil {
		t.Fatal(err)
	}
	r.c.Close()
	waitConns(t, obs, 1, "after the truncated packet")
	serverHealthy(t, s)

	// A client that owns a row disconnects in the middle of its next packet.
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE mp (v INT) ENGINE=queue")
	g.exec("INSERT INTO mp VALUES (1), (2)")
	r = rawLogin(t, s)
	if v := r.value("SELECT queue_wait('mp', 0)"); v != "1" {
		t.Fatalf("queue_wait = %s", v)
	}
	if v := r.value("SELECT queue_rowid()"); v != "1" {
		t.Fatalf("queue_rowid = %s", v)
	}
	if err := r.writeRaw(append([]byte{0x40, 0, 0, 0, comQuery}, "SELECT queue_e"...)); err != nil {
		t.Fatal(err)
	}
	r.c.Close()
	// Once the server has dropped the connection, its row is back at its
	// place: rowid 1, before row 2.
	waitConns(t, obs, 2, "after the owner's truncated packet") // obs and g
	g.wantValue("1", "SELECT queue_wait('mp', 0)")
	g.wantValue("1", "SELECT queue_rowid()")
	g.wantRows("SELECT v FROM mp", nil, []string{"1"})
	g.wantValue("1", "SELECT queue_end()")
	g.wantValue("1", "SELECT COUNT(*) FROM mp")
	serverHealthy(t, s)
}

// TestAbuseGarbageHandshake: random bytes instead of the handshake
// response end that connection (at the latest after --handshake-timeout)
// without hurting the server.
func TestAbuseGarbageHandshake(t *testing.T) {
	// The timeout runs from the accept and covers the greeting too: with
	// 1 s, on a loaded machine a greeting to one of these 36 concurrent
	// connections was not written in time, and the client read EOF.
	s := startServer(t, "--handshake-timeout", "5s")
	rng := testRand(t)
	type attempt struct {
		name string
		data []byte
	}
	var attempts []attempt
	// 4 KB of random bytes, as they come: the first three announce a
	// packet length (usually more than 4 KB: the server waits for it).
	for i := range 4 {
		attempts = append(attempts, attempt{fmt.Sprintf("random 4KB #%d", i), randBytes(rng, 4096)})
	}
	// The same with the right sequence number (1), so that the server
	// reads on: the announced length is usually more than was sent, and
	// only the handshake timeout ends the wait.
	for i := range 4 {
		b := randBytes(rng, 4096)
		b[2], b[3] = max(b[2], 1), 1 // at least 64 KB announced
		attempts = append(attempts, attempt{fmt.Sprintf("random 4KB, sequence 1 #%d", i), b})
	}
	// A header that frames exactly 4 KB of random bytes, with the right
	// sequence number: a complete, garbage handshake response.
	for i := range 16 {
		attempts = append(attempts, attempt{fmt.Sprintf("framed random #%d", i), packet(randBytes(rng, 4092), 1)})
	}
	// Responses that look almost right: valid capability flags, then
	// random bytes or truncations.
	good := handshakeResponse("root")
	for i := range 16 {
		p := append([]byte(nil), good[:4+rng.IntN(len(good)-4)]...)
		p = append(p, randBytes(rng, rng.IntN(64))...)
		attempts = append(attempts, attempt{fmt.Sprintf("mangled response #%d", i), packet(p, 1)})
	}
	// The auth data length 2^63 (CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA):
	// see FuzzClientPlugin.
	huge := append([]byte{0x00, 0x80, 0x28, 0x00}, make([]byte, 28)...)
	huge = append(huge, 'r', 0, 0xfe, 0, 0, 0, 0, 0, 0, 0, 0x80)
	attempts = append(attempts, attempt{"lenenc auth length 2^63", packet(huge, 1)})

	var wg sync.WaitGroup
	errs := make([]string, len(attempts))
	took := make([]time.Duration, len(attempts))
	for i, a := range attempts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", s.addr, ioTimeout)
			if err != nil {
				errs[i] = err.Error()
				return
			}
			defer c.Close()
			start := time.Now()
			_ = c.SetDeadline(start.Add(ioTimeout))
			br := bufio.NewReader(c)
			var hdr [4]byte
			if _, err := io.ReadFull(br, hdr[:]); err != nil { // the greeting
				errs[i] = "no greeting: " + err.Error()
				return
			}
			if _, err := io.CopyN(io.Discard, br, int64(hdr[0])|int64(hdr[1])<<8|int64(hdr[2])<<16); err != nil {
				errs[i] = "greeting: " + err.Error()
				return
			}
			if _, err := c.Write(a.data); err != nil {
				return // the server may already have closed: fine
			}
			// Whatever the server answers, it must close the connection
			// within the handshake timeout (5 s; 15 s of slack, still well
			// under the client's own deadline).
			_, err = io.Copy(io.Discard, br)
			d := time.Since(start)
			if err != nil && !isReset(err) || d > 20*time.Second {
				errs[i] = fmt.Sprintf("connection not closed by the server: %v after %v", err, d)
			}
			took[i] = d
		}()
	}
	wg.Wait()
	for i, e := range errs {
		if e != "" {
			t.Errorf("%s: %s", attempts[i].name, e)
		} else if took[i] > 500*time.Millisecond {
			t.Logf("%s: closed by the server after %v", attempts[i].name, took[i].Round(time.Millisecond))
		}
	}
	serverHealthy(t, s)
}

func isReset(err error) bool {
	return errors.Is(err, net.ErrClosed) || strings.Contains(err.Error(), "connection reset")
}

// TestAbuseStmtExecute: COM_STMT_EXECUTE for a statement id that was never
// prepared (or was closed) gets ERROR 1243; one whose parameter block does
// not match the statement's parameter count gets an ERR packet and stores
// nothing; the connection stays usable after each.
func TestAbuseStmtExecute(t *testing.T) {
	s := startServer(t)
	g := newGConn(t, s, defaultMode)
	g.exec("CREATE TABLE se (a INT NOT NULL, b INT) ENGINE=queue")
	r := rawLogin(t, s)

	for _, id := range []uint32{0, 1, 0xdeadbeef} {
		r.send(execute(id, nil, nil, nil))
		res := r.mustResult()
		if res.err == nil || res.err.code != 1243 || res.err.state != "HY000" {
			t.Errorf("execute unknown statement %d: %+v, want ERR 1243 (HY000)", id, res)
		}
		r.alive("an unknown statement id")
	}

	id, params := r.prepare("INSERT INTO se (a, b) VALUES (?, ?)")
	if params != 2 {
		t.Fatalf("prepared statement has %d parameters, want 2", params)
	}
	// The right parameters work (and prove the encoding below).
	long := func(v int64) []byte { return binary.LittleEndian.AppendUint64(nil, uint64(v)) }
	r.send(execute(id, []byte{0}, []byte{0x08, 0, 0x08, 0}, append(long(1), long(2)...)))
	if res := r.mustResult(); !res.ok {
		t.Fatalf("execute with two parameters: %+v", res)
	}

	bad := []struct {
		name                 string
		nulls, types, values []byte
	}{
		{"no parameter block", nil, nil, nil},
		{"one typed parameter, 8-byte value", []byte{0}, []byte{0x08, 0}, long(7)},
		{"one typed parameter, 1-byte value", []byte{0}, []byte{0x01, 0}, []byte{7}},
		{"types but no values", []byte{0}, []byte{0x08, 0, 0x08, 0}, nil},
		{"second value cut short", []byte{0}, []byte{0x08, 0, 0x08, 0}, append(long(7), 1, 2, 3)},
		{"unknown parameter type", []byte{0}, []byte{0x08, 0, 0xee, 0}, append(long(7), long(8)...)},
	}
	for _, tc := range bad {
		r.send(execute(id, tc.nulls, tc.types, tc.values))
		res := r.mustResult()
		if res.err == nil {
			t.Errorf("%s: %+v, want an ERR packet", tc.name, res)
		} else {
			t.Logf("%s: %v", tc.name, res.err)
		}
		r.alive(tc.name)
	}
	// A closed statement is unknown.
	r.send(binary.LittleEndian.AppendUint32([]byte{comStmtClose}, id))
	r.send(execute(id, []byte{0}, []byte{0x08, 0, 0x08, 0}, append(long(1), long(2)...)))
	if res := r.mustResult(); res.err == nil || res.err.code != 1243 {
		t.Errorf("execute a closed statement: %+v, want ERR 1243", res)
	}
	r.alive("a closed statement")
	// Only the one good execute stored a row.
	g.wantRows("SELECT a, b FROM se", nil, []string{"1", "2"})
	serverHealthy(t, s)
}

// TestAbuseDisconnectMidResult: clients that close while a large result is
// being sent (50 rows of 1 MB; and the 1 MB row a client owns) do not
// disturb others; the owned row goes back to the queue at its place.
func TestAbuseDisconnectMidResult(t *testing.T) {
	s := startServer(t)
	g := newGConn(t, s, driverModes[0])
	g.exec("CREATE TABLE big (n INT, s LONGBLOB) ENGINE=queue")
	for i := 0; i < 50; i += 10 {
		var vals []string
		for j := i; j < i+10; j++ {
			vals = append(vals, fmt.Sprintf("(%d, REPEAT('x', 1048576))", j))
		}
		g.exec("INSERT INTO big VALUES " + strings.Join(vals, ", "))
	}
	obs := rawLogin(t, s)
	base := obs.statThreads() // g and obs

	// Not an owner: SELECT * of 50 MB, read 100 bytes, close.
	r := rawLogin(t, s)
	r.send(append([]byte{comQuery}, "SELECT * FROM big"...))
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(r.r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	r.c.Close()
	waitConns(t, obs, base, "after the dropped result")
	g.wantValue("50", "SELECT COUNT(*) FROM big")

	// An owner: it owns row 0 (1 MB) and drops the connection while the
	// row is sent.
	r = rawLogin(t, s)
	if v := r.value("SELECT queue_wait('big', 0)"); v != "1" {
		t.Fatalf("queue_wait = %s", v)
	}
	r.send(append([]byte{comQuery}, "SELECT * FROM big"...))
	_ = r.c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(r.r, make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	r.c.Close()
	// Once the server has dropped the connection, the row is back at its
	// place, the head of the queue.
	waitConns(t, obs, base, "after the dropped owner")
	g.wantValue("1", "SELECT queue_wait('big', 0)")
	g.wantValue("1", "SELECT queue_rowid()")
	g.wantValue("0", "SELECT n FROM big")
	g.wantValue("1", "SELECT queue_abort()")
	g.wantValue("50", "SELECT COUNT(*) FROM big")
	serverHealthy(t, s)
}

// tcpQueues returns the receive and send queue sizes of the TCP socket
// local -> remote, from /proc/net/tcp (IPv4 loopback).
func tcpQueues(t *testing.T, local, remote string) (rx, tx int64, ok bool) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	hexAddr := func(a string) string {
		ap, err := netipAddrPort(a)
		if err != nil {
			t.Fatal(err)
		}
		ip := ap.ip
		return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ap.port)
	}
	l, r := hexAddr(local), hexAddr(remote)
	for _, line := range strings.Split(string(data), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 5 || f[1] != l || f[2] != r {
			continue
		}
		txs, rxs, _ := strings.Cut(f[4], ":")
		tx, _ = strconv.ParseInt(txs, 16, 64)
		rx, _ = strconv.ParseInt(rxs, 16, 64)
		return rx, tx, true
	}
	return 0, 0, false
}

type addrPort struct {
	ip   [4]byte
	port int
}

func netipAddrPort(a string) (addrPort, error) {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return addrPort{}, err
	}
	ip := net.ParseIP(host).To4()
	if ip == nil {
		return addrPort{}, fmt.Errorf("not IPv4: %s", a)
	}
	p, err := strconv.Atoi(port)
	return addrPort{ip: [4]byte(ip), port: p}, err
}

// TestAbuseSlowClient: a client runs SELECT * FROM big (200 rows of 1 MB)
// and never reads. While the server is stuck writing to it, another
// connection inserts and consumes normally (100 queue operations within
// 10 s), also on the big table.
func TestAbuseSlowClient(t *testing.T) {
	s := startServer(t)
	g := newGConn(t, s, driverModes[0])
	g.exec("CREATE TABLE big (n INT, s LONGBLOB) ENGINE=queue")
	g.exec("CREATE TABLE fast (n INT) ENGINE=queue")
	loadStart := time.Now()
	for i := 0; i < 200; i += 20 {
		// The rows are made by the server (REPEAT): 1 MB packets through
		// the race-instrumented driver would take most of the test's time.
		var vals []string
		for j := i; j < i+20; j++ {
			vals = append(vals, fmt.Sprintf("(%d, REPEAT('y', 1048576))", j))
		}
		g.exec("INSERT INTO big VALUES " + strings.Join(vals, ", "))
	}

	t.Logf("loaded 200 MB in %v", time.Since(loadStart))
	slow := rawLogin(t, s)
	if tc, ok := slow.c.(*net.TCPConn); ok {
		_ = tc.SetReadBuffer(4096)
	}
	slow.send(append([]byte{comQuery}, "SELECT * FROM big"...))
	// Wait until the server is stuck: the client's receive queue and the
	// server's send queue for this connection are both non-empty.
	local, remote := slow.c.LocalAddr().String(), slow.c.RemoteAddr().String()
	stuck := func() bool {
		crx, _, ok1 := tcpQueues(t, local, remote)
		_, stx, ok2 := tcpQueues(t, remote, local)
		return ok1 && ok2 && crx > 0 && stx > 0
	}
	stuckStart := time.Now()
	eventually(t, 2*time.Minute, "the server to block on the slow client", stuck)
	t.Logf("server blocked on the slow client after %v", time.Since(stuckStart))

	start := time.Now()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c := g.c
	for i := range 50 {
		if _, err := c.ExecContext(ctx, "INSERT INTO fast VALUES (?)", i); err != nil {
			t.Fatalf("insert %d after %v: %v", i, time.Since(start), err)
		}
		var idx sql.NullInt64
		if err := c.QueryRowContext(ctx, "SELECT queue_wait('fast', 1)").Scan(&idx); err != nil || idx.Int64 != 1 {
			t.Fatalf("queue_wait %d after %v: %v %v", i, time.Since(start), idx, err)
		}
	}
	if _, err := c.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	// The table being sent to the slow client is not locked either.
	var idx, n sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT queue_wait('big', 1)").Scan(&idx); err != nil || idx.Int64 != 1 {
		t.Fatalf("queue_wait on big: %v %v", idx, err)
	}
	if err := c.QueryRowContext(ctx, "SELECT n FROM big").Scan(&n); err != nil || n.Int64 != 0 {
		t.Fatalf("owned row of big: %v %v", n, err)
	}
	if _, err := c.ExecContext(ctx, "SELECT queue_abort()"); err != nil {
		t.Fatal(err)
	}
	t.Logf("100 queue operations (plus 3 on big) in %v while the server was blocked on the slow client", time.Since(start))
	if !stuck() {
		t.Error("the slow client's connection was no longer stuck: the test did not test what it meant to")
	}
	if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM fast").Scan(&n); err != nil || n.Int64 != 0 {
		t.Errorf("fast has %v rows left, %v", n, err)
	}

	// The slow client goes away: its connection is cleaned up.
	obs := rawLogin(t, s)
	slow.c.Close()
	waitConns(t, obs, 2, "after the slow client closed") // g and obs
	serverHealthy(t, s)
}

// procThreads reads the server process's thread count.
func procThreads(t *testing.T, s *server) int {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	m := regexp.MustCompile(`(?m)^Threads:\s+(\d+)$`).FindSubmatch(data)
	if m == nil {
		t.Fatalf("no Threads line in /proc/%d/status", s.cmd.Process.Pid)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// TestAbuseThousandsOfTables: 3000 queue tables, 200 of them with a row:
// the server's thread count stays low and does not grow with the number
// of tables; queue_wait over 10 tables works, also blocking.
func TestAbuseThousandsOfTables(t *testing.T) {
	standaloneOnly(t, "COUNT(*) over information_schema.TABLES counts the shared MariaDB's tables of other tests too")
	const tables, withRows, maxThreads = 3000, 200, 64
	s := startServer(t)
	g := newGConn(t, s, driverModes[1]) // interpolated: one round trip per statement
	name := func(i int) string { return fmt.Sprintf("t%04d", i) }
	start := time.Now()
	threads := map[int]int{0: procThreads(t, s)}
	for i := range tables {
		g.exec("CREATE TABLE " + name(i) + " (v INT, s VARCHAR(20)) ENGINE=queue")
		if i+1 == 100 || i+1 == 1000 {
			threads[i+1] = procThreads(t, s)
		}
	}
	threads[tables] = procThreads(t, s)
	t.Logf("created %d tables in %v", tables, time.Since(start))
	// A row in every 15th table.
	for i := 0; i < tables; i += tables / withRows {
		g.exec(fmt.Sprintf("INSERT INTO %s VALUES (%d, 'row')", name(i), i))
	}
	after := procThreads(t, s)
	t.Logf("server threads: %v; after %d inserts: %d", threads, withRows, after)
	for n, th := range threads {
		if th >= maxThreads {
			t.Errorf("%d threads with %d tables; want fewer than %d", th, n, maxThreads)
		}
	}
	if after >= maxThreads {
		t.Errorf("%d threads after the inserts; want fewer than %d", after, maxThreads)
	}
	if grow := threads[tables] - threads[100]; grow > 8 {
		t.Errorf("threads grew by %d from 100 to %d tables", grow, tables)
	}
	g.wantValue(strconv.Itoa(tables), "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'test'")

	// queue_wait over 10 tables: t0001..t0009 are empty, t0015 has a row.
	list := func(idx ...int) string {
		var q []string
		for _, i := range idx {
			q = append(q, "'"+name(i)+"'")
		}
		return strings.Join(q, ", ")
	}
	ten := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 15}
	g.wantValue("10", "SELECT queue_wait("+list(ten...)+", 5)")
	g.wantRows("SELECT v, s FROM "+name(15), nil, []string{"15", "row"})
	g.wantValue("1", "SELECT queue_end()")
	// Earlier tables win: t0000 and t0030 both have rows.
	g.wantValue("1", "SELECT queue_wait("+list(0, 1, 2, 3, 4, 5, 6, 7, 8, 30)+", 5)")
	g.wantValue("1", "SELECT queue_end()")
	// Blocking on 10 empty tables, woken by an insert into the last.
	other := newGConn(t, s, driverModes[1])
	calls := queueWaitCalls(other)
	done := make(chan string, 1)
	go func() {
		var v sql.NullString
		err := g.c.QueryRowContext(t.Context(), "SELECT queue_wait("+list(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)+", 20)").Scan(&v)
		done <- fmt.Sprint(v.String, err)
	}()
	// Insert once the call has started (the server's queue_wait counter
	// moved); should it not be asleep yet, its second pass finds the row.
	eventually(t, time.Minute, "queue_wait to start", func() bool { return queueWaitCalls(other) > calls })
	other.exec("INSERT INTO " + name(10) + " VALUES (10, 'late')")
	select {
	case got := <-done:
		if got != "10<nil>" {
			t.Errorf("blocking queue_wait over 10 tables: %s, want 10", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queue_wait over 10 tables not woken by the insert")
	}
	g.wantValue("1", "SELECT queue_end()")
	if th := procThreads(t, s); th >= maxThreads {
		t.Errorf("%d threads at the end; want fewer than %d", th, maxThreads)
	}
	serverHealthy(t, s)
}

// queueWaitCalls is the queue_wait counter of SHOW ENGINE QUEUE STATUS
// (counted when a call starts).
func queueWaitCalls(g *gconn) int {
	g.t.Helper()
	status := g.rows("SHOW ENGINE QUEUE STATUS")[0][2]
	m := regexp.MustCompile(`(?m)^queue_wait\s+(\d+)$`).FindStringSubmatch(status)
	if m == nil {
		g.t.Fatalf("no queue_wait counter in:\n%s", status)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}
