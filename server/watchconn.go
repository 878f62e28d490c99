package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// watchConn sits between go-mysql and the TCP connection. It
//   - buffers writes so that one response goes out in one write (flushed
//     before every read and after every command),
//   - can watch the socket while a statement blocks: the protocol is
//     half-duplex, so anything arriving then is either a pipelined byte
//     (kept for the next Read) or EOF, meaning the client is gone,
//   - records the first packet the client sends (the handshake response),
//     so that authentication can follow the plugin the client asked for,
//   - enforces max_allowed_packet on what the client sends: on a plaintext
//     connection by following the packet headers here; on a TLS connection
//     (where only TLS records pass here) on the decrypted stream, in
//     tlsSide above the TLS layer, once the client has logged in (until
//     then, by bounding the raw bytes of the login).
type watchConn struct {
	net.Conn

	wbuf     bytes.Buffer
	override []byte // replaces the buffered response at the next flush

	first     []byte // bytes of the client's first packet, until complete
	firstDone bool

	limit packetLimit // max_allowed_packet for what the client sends

	// TLS: the raw bytes a client may still send before its login is
	// done (loginBudget), and the decrypted side once it is (tls).
	tlsLogin    bool
	loginBudget int64
	tls         *tlsSide

	// greetingCaps are capability flags added to the server greeting, the
	// first packet written (go-mysql lets only a few be configured).
	greetingCaps uint32
	greeted      bool
	// salt is the greeting's 20-byte scramble (COM_CHANGE_USER's answer
	// is computed from it).
	salt []byte

	// global and session count the bytes read and written (Bytes_received,
	// Bytes_sent); session is set once the client has logged in.
	global, session *stmtCounts

	// Background watch; only the connection goroutine touches these, the
	// watcher goroutine communicates through watchDone.
	watching  bool
	watchDone chan struct{}
	stash     []byte
	stashErr  error
	mu        sync.Mutex // guards stash/stashErr between watcher and owner
}

const maxBuffered = 256 << 10

func newWatchConn(c net.Conn) *watchConn { return &watchConn{Conn: c} }

func (w *watchConn) Write(p []byte) (int, error) {
	w.wbuf.Write(p)
	if w.wbuf.Len() >= maxBuffered && w.override == nil {
		if err := w.Flush(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes what is buffered (or the override) in one write.
func (w *watchConn) Flush() error {
	if w.override != nil {
		w.wbuf.Reset()
		n, err := w.Conn.Write(w.override)
		w.override = nil
		w.countSent(n)
		return err
	}
	if w.wbuf.Len() == 0 {
		return nil
	}
	if !w.greeted {
		w.greeted = true
		addGreetingCaps(w.wbuf.Bytes(), w.greetingCaps)
		w.salt = greetingSalt(w.wbuf.Bytes())
	}
	n, err := w.Conn.Write(w.wbuf.Bytes())
	w.countSent(n)
	w.wbuf.Reset()
	if w.wbuf.Cap() > maxBuffered*4 {
		w.wbuf = bytes.Buffer{}
	}
	return err
}

// addGreetingCaps sets caps in a protocol-10 greeting packet (header
// included): after the version string, the connection id and the first 8
// bytes of the scramble and a filler come the lower 2 capability bytes,
// then charset and status, then the upper 2.
func addGreetingCaps(pkt []byte, caps uint32) {
	if caps == 0 || len(pkt) < 5 || pkt[4] != 10 {
		return
	}
	end := bytes.IndexByte(pkt[5:], 0)
	if end < 0 {
		return
	}
	pos := 5 + end + 1 + 4 + 8 + 1
	if len(pkt) < pos+7 {
		return
	}
	pkt[pos] |= byte(caps)
	pkt[pos+1] |= byte(caps >> 8)
	pkt[pos+5] |= byte(caps >> 16)
	pkt[pos+6] |= byte(caps >> 24)
}

// greetingSalt returns the 20-byte scramble of a protocol-10 greeting
// packet (header included), or nil: its first 8 bytes follow the
// connection id, the other 12 come after the capabilities, charset,
// status, scramble length and 10 reserved bytes.
func greetingSalt(pkt []byte) []byte {
	if len(pkt) < 5 || pkt[4] != 10 {
		return nil
	}
	end := bytes.IndexByte(pkt[5:], 0)
	if end < 0 {
		return nil
	}
	part1 := 5 + end + 1 + 4
	part2 := part1 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10
	if len(pkt) < part2+12 {
		return nil
	}
	return append(append([]byte(nil), pkt[part1:part1+8]...), pkt[part2:part2+12]...)
}

// SetWriteDeadline sends what is buffered under the deadline in force,
// then sets the new one: a deadline is for the writes that follow it.
// crypto/tls relies on that when it closes a connection: it writes its
// close_notify alert, sets the write deadline to now (any later write
// fails) and closes the connection below; the buffered error packet of a
// refused login would otherwise go nowhere.
func (w *watchConn) SetWriteDeadline(t time.Time) error {
	_ = w.Flush()
	return w.Conn.SetWriteDeadline(t)
}

// SetDeadline is SetWriteDeadline for both directions.
func (w *watchConn) SetDeadline(t time.Time) error {
	_ = w.Flush()
	return w.Conn.SetDeadline(t)
}

// replaceResponse makes the next flush send pkt instead of what the library
// wrote for the current command. Over TLS, pkt replaces the next write of
// the decrypted side (the library writes one packet for the command).
func (w *watchConn) replaceResponse(pkt []byte) {
	if w.tls != nil {
		w.tls.override = pkt
		return
	}
	w.override = pkt
}

func (w *watchConn) Read(p []byte) (int, error) {
	if err := w.Flush(); err != nil {
		return 0, err
	}
	w.mu.Lock()
	if len(w.stash) > 0 {
		n := copy(p, w.stash)
		w.stash = w.stash[n:]
		w.mu.Unlock()
		w.countReceived(n)
		return n, w.checkLimit(p[:n])
	}
	if w.stashErr != nil {
		err := w.stashErr
		w.mu.Unlock()
		return 0, err
	}
	w.mu.Unlock()
	n, err := w.Conn.Read(p)
	w.countReceived(n)
	if lerr := w.checkLimit(p[:n]); lerr != nil {
		return n, lerr
	}
	if w.tlsLogin {
		if w.loginBudget -= int64(n); w.loginBudget < 0 {
			return n, errPacketTooLarge
		}
	}
	if !w.firstDone && n > 0 {
		w.first = append(w.first, p[:n]...)
		if len(w.first) >= 4 {
			l := int(w.first[0]) | int(w.first[1])<<8 | int(w.first[2])<<16
			if len(w.first) >= 4+l {
				w.firstDone = true
				if w.tlsRequested() {
					// What follows is TLS records: packet headers cannot be
					// followed below them. Until the login is done, the
					// raw bytes are bounded (the TLS handshake, the
					// handshake response and the auth exchange: what a
					// plaintext client may send, with room for TLS); then
					// tlsSide enforces the limit on the decrypted stream.
					if w.limit.max > 0 {
						w.tlsLogin = true
						w.loginBudget = w.limit.max + w.limit.max/64 + 1<<20
					}
					w.limit.max = 0
				} else if handshakeOverflows(w.first[4 : 4+l]) {
					// go-mysql v1.16.0 would slice the auth data past the
					// packet's end (within its buffer's capacity) and panic
					// further on: answer as MySQL does instead.
					w.wbuf.Reset()
					_, _ = w.Conn.Write(errorPacket(mysql.ER_HANDSHAKE_ERROR, "Bad handshake", w.first[3]+1))
					return 0, errBadHandshake
				}
			}
		}
	}
	return n, err
}

// countReceived and countSent count n bytes read from or written to the
// client (the bytes on the wire, TLS records included).
func (w *watchConn) countReceived(n int) {
	if n <= 0 || w.global == nil {
		return
	}
	w.global.bytesReceived.Add(uint64(n))
	if w.session != nil {
		w.session.bytesReceived.Add(uint64(n))
	}
}

func (w *watchConn) countSent(n int) {
	if n <= 0 || w.global == nil {
		return
	}
	w.global.bytesSent.Add(uint64(n))
	if w.session != nil {
		w.session.bytesSent.Add(uint64(n))
	}
}

// errBadHandshake ends a connection whose handshake response is malformed.
var errBadHandshake = errors.New("server: bad handshake")

// tlsRequested reports whether the client's first packet was an SSL
// request (CLIENT_SSL set in a 32-byte handshake response).
func (w *watchConn) tlsRequested() bool {
	if !w.firstDone || len(w.first) < 8 {
		return false
	}
	l := int(w.first[0]) | int(w.first[1])<<8 | int(w.first[2])<<16
	const clientSSL = 0x800
	return l == 32 && w.first[4+1]&(clientSSL>>8) != 0
}

// clientPlugin returns the auth plugin named in the client's handshake
// response, or "" if it cannot tell.
func (w *watchConn) clientPlugin() string {
	if !w.firstDone || len(w.first) < 4+32 {
		return ""
	}
	l := int(w.first[0]) | int(w.first[1])<<8 | int(w.first[2])<<16
	pkt := w.first[4 : 4+l]
	if len(pkt) < 32 {
		return ""
	}
	capab := uint32(pkt[0]) | uint32(pkt[1])<<8 | uint32(pkt[2])<<16 | uint32(pkt[3])<<24
	const (
		clientConnectWithDB = 0x8
		clientSecureConn    = 0x8000
		clientPluginAuth    = 0x80000
		clientLenencAuth    = 0x200000
	)
	pos := 32
	i := bytes.IndexByte(pkt[pos:], 0) // user
	if i < 0 {
		return ""
	}
	pos += i + 1
	switch {
	case capab&clientLenencAuth != 0:
		if pos >= len(pkt) {
			return ""
		}
		n, k := lenencInt(pkt[pos:])
		if n > uint64(len(pkt)) {
			return ""
		}
		pos += k + int(n)
	case capab&clientSecureConn != 0:
		if pos >= len(pkt) {
			return ""
		}
		pos += 1 + int(pkt[pos])
	default:
		i := bytes.IndexByte(pkt[pos:], 0)
		if i < 0 {
			return ""
		}
		pos += i + 1
	}
	if capab&clientConnectWithDB != 0 {
		if pos > len(pkt) {
			return ""
		}
		i := bytes.IndexByte(pkt[pos:], 0)
		if i < 0 {
			return ""
		}
		pos += i + 1
	}
	if capab&clientPluginAuth == 0 || pos > len(pkt) {
		return ""
	}
	end := bytes.IndexByte(pkt[pos:], 0)
	if end < 0 {
		end = len(pkt) - pos
	}
	return string(pkt[pos : pos+end])
}

func lenencInt(b []byte) (uint64, int) {
	switch {
	case b[0] < 0xfb:
		return uint64(b[0]), 1
	case b[0] == 0xfc && len(b) >= 3:
		return uint64(b[1]) | uint64(b[2])<<8, 3
	case b[0] == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4
	case b[0] == 0xfe && len(b) >= 9:
		var v uint64
		for i := 8; i >= 1; i-- {
			v = v<<8 | uint64(b[i])
		}
		return v, 9
	}
	return 0, 1
}

// startWatch reads the socket in the background until stopWatch; if the
// client closes the connection meanwhile, cancel is called with
// errClientGone.
func (w *watchConn) startWatch(cancel context.CancelCauseFunc) {
	if w.watching {
		return
	}
	w.mu.Lock()
	pending := len(w.stash) > 0 || w.stashErr != nil
	w.mu.Unlock()
	if pending {
		return // already have input (or an error) to deliver: nothing to watch
	}
	w.watching = true
	w.watchDone = make(chan struct{})
	_ = w.Conn.SetReadDeadline(time.Time{}) // a statement is running: the idle timeout does not apply
	go func() {
		defer close(w.watchDone)
		var b [1]byte
		n, err := w.Conn.Read(b[:])
		w.mu.Lock()
		defer w.mu.Unlock()
		if n > 0 {
			w.stash = append(w.stash, b[0])
		}
		if err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
			w.stashErr = err
			cancel(errClientGone)
		}
	}()
}

// stopWatch ends the background read and waits for it.
func (w *watchConn) stopWatch() {
	if !w.watching {
		return
	}
	w.watching = false
	_ = w.Conn.SetReadDeadline(time.Unix(1, 0))
	<-w.watchDone
	_ = w.Conn.SetReadDeadline(time.Time{})
}

// Close sends what is buffered (an error packet, say) before closing.
func (w *watchConn) Close() error {
	_ = w.Flush()
	return w.Conn.Close()
}

// RemoteAddr reports the client's address without its port, so that
// "Access denied for user 'u'@'host'" names the host as MySQL does.
func (w *watchConn) RemoteAddr() net.Addr {
	a := w.Conn.RemoteAddr()
	if host, _, err := net.SplitHostPort(a.String()); err == nil {
		return hostAddr(host)
	}
	return a
}

type hostAddr string

func (h hostAddr) Network() string { return "tcp" }
func (h hostAddr) String() string  { return string(h) }

// packetLimit follows the packet headers of the client's byte stream and
// notices a packet (possibly split in 16 MB chunks) larger than max.
type packetLimit struct {
	max    int64 // 0: no limit
	hdr    [4]byte
	hn     int    // header bytes seen
	remain int    // payload bytes left in the current chunk
	chunk  int    // size of the current chunk
	total  int64  // size of the logical packet so far
	empty  bool   // the last packet read was empty (go-mysql cannot dispatch it)
	head   []byte // the first bytes of the last packet's payload
	first  bool   // the current chunk is a packet's first
}

// headLen is how much of each packet's payload packetLimit keeps.
const headLen = 64

// errPacketTooLarge ends a connection that sent a packet over the limit.
var errPacketTooLarge = errors.New("server: packet bigger than max_allowed_packet")

// feed accounts for b and reports whether the packet being read is over
// the limit, with the sequence number of its current chunk. Bytes of b
// after that chunk's header count as read.
func (l *packetLimit) feed(b []byte) (bool, byte) {
	over := false
	for len(b) > 0 {
		if l.remain > 0 {
			n := min(l.remain, len(b))
			if k := min(n, headLen-len(l.head)); k > 0 && l.first {
				l.head = append(l.head, b[:k]...)
			}
			l.remain -= n
			b = b[n:]
			continue
		}
		if over {
			break // the rest belongs to what discardPacket reads
		}
		l.hdr[l.hn] = b[0]
		l.hn++
		b = b[1:]
		if l.hn < 4 {
			continue
		}
		l.hn = 0
		l.chunk = int(l.hdr[0]) | int(l.hdr[1])<<8 | int(l.hdr[2])<<16
		l.remain = l.chunk
		l.empty = l.chunk == 0 && l.total == 0
		l.first = l.total == 0
		if l.first {
			l.head = l.head[:0]
		}
		l.total += int64(l.chunk)
		if l.max > 0 && l.total > l.max {
			over = true
			continue
		}
		if l.chunk < 0xffffff { // the last chunk of this packet
			l.total = 0
		}
	}
	return over, l.hdr[3]
}

// checkLimit answers a packet over max_allowed_packet as MySQL does, with
// ERROR 1153, and ends the connection.
func (w *watchConn) checkLimit(b []byte) error {
	if w.limit.max == 0 {
		return nil
	}
	over, seq := w.limit.feed(b)
	if !over {
		return nil
	}
	seq = w.limit.discard(w.Conn, seq)
	w.wbuf.Reset()
	_, _ = w.Conn.Write(errTooLargePacket(seq))
	return errPacketTooLarge
}

func errTooLargePacket(seq byte) []byte {
	return errorPacket(mysql.ER_NET_PACKET_TOO_LARGE, "Got a packet bigger than 'max_allowed_packet' bytes", seq+1)
}

// discard reads from c and drops the rest of an oversized packet, so that
// the client, done sending, reads the error rather than a reset
// connection. It gives up after 256 MB or 10 s. It returns the sequence
// number of the last chunk.
func (l *packetLimit) discard(c net.Conn, seq byte) byte {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	buf := make([]byte, 64<<10)
	for dropped := 0; dropped < 256<<20; {
		if l.remain == 0 {
			if l.chunk < 0xffffff {
				return seq
			}
			var hdr [4]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return seq
			}
			l.chunk = int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
			l.remain, seq = l.chunk, hdr[3]
			continue
		}
		n, err := c.Read(buf[:min(len(buf), l.remain)])
		l.remain -= n
		dropped += n
		if err != nil {
			return seq
		}
	}
	return seq
}

// loggedIn returns the connection go-mysql is to read and write once the
// client has logged in, given the one it used for the login: that one
// itself, or for a TLS connection its decrypted side, where
// max_allowed_packet (max) is enforced from then on.
func (w *watchConn) loggedIn(c net.Conn, max int64) net.Conn {
	w.tlsLogin = false
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c
	}
	w.tls = &tlsSide{Conn: tc, wc: w, limit: packetLimit{max: max}}
	return w.tls
}

// loginFailed returns the connection go-mysql is to write its refusal of a
// login to (seq is the packet's sequence number): c itself, or, when a TLS
// client went over the bound on the raw bytes of its login, a side of it
// that answers ERROR 1153 as a plaintext client gets (go-mysql would write
// 1105 with its read error).
func (w *watchConn) loginFailed(c net.Conn, seq byte) net.Conn {
	tc, ok := c.(*tls.Conn)
	if !ok || !w.tlsLogin || w.loginBudget >= 0 {
		return c
	}
	return &tlsSide{Conn: tc, wc: w, override: errTooLargePacket(seq - 1)}
}

// tlsSide is the decrypted side of a TLS connection (go-mysql's transport
// after the login): it follows the packets the client sends, as watchConn
// does on a plaintext connection, and answers one over max_allowed_packet
// with ERROR 1153, encrypted like everything else.
type tlsSide struct {
	*tls.Conn
	wc       *watchConn
	limit    packetLimit
	override []byte // replaces the next write (see replaceResponse)
}

func (s *tlsSide) Read(p []byte) (int, error) {
	n, err := s.Conn.Read(p)
	if s.limit.max == 0 || n == 0 {
		return n, err
	}
	over, seq := s.limit.feed(p[:n])
	if !over {
		return n, err
	}
	if err == nil {
		seq = s.limit.discard(s.Conn, seq)
	}
	// What TLS has encrypted cannot be taken back (a plaintext connection
	// drops a pending response): the error follows it.
	_, _ = s.Conn.Write(errTooLargePacket(seq))
	_ = s.wc.Flush()
	return n, errPacketTooLarge
}

func (s *tlsSide) Write(p []byte) (int, error) {
	if s.override != nil {
		pkt := s.override
		s.override = nil
		if _, err := s.Conn.Write(pkt); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return s.Conn.Write(p)
}
