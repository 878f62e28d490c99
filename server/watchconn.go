package server

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// watchConn sits between go-mysql and the TCP connection. It
//   - buffers writes so that one response goes out in one write (flushed
//     before every read and after every command),
//   - can watch the socket while a statement blocks: the protocol is
//     half-duplex, so anything arriving then is either a pipelined byte
//     (kept for the next Read) or EOF, meaning the client is gone,
//   - records the first packet the client sends (the handshake response),
//     so that authentication can follow the plugin the client asked for.
type watchConn struct {
	net.Conn

	wbuf     bytes.Buffer
	override []byte // replaces the buffered response at the next flush

	first     []byte // bytes of the client's first packet, until complete
	firstDone bool

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
		_, err := w.Conn.Write(w.override)
		w.override = nil
		return err
	}
	if w.wbuf.Len() == 0 {
		return nil
	}
	_, err := w.Conn.Write(w.wbuf.Bytes())
	w.wbuf.Reset()
	if w.wbuf.Cap() > maxBuffered*4 {
		w.wbuf = bytes.Buffer{}
	}
	return err
}

// replaceResponse makes the next flush send pkt instead of what the library
// wrote for the current command.
func (w *watchConn) replaceResponse(pkt []byte) { w.override = pkt }

func (w *watchConn) Read(p []byte) (int, error) {
	if err := w.Flush(); err != nil {
		return 0, err
	}
	w.mu.Lock()
	if len(w.stash) > 0 {
		n := copy(p, w.stash)
		w.stash = w.stash[n:]
		w.mu.Unlock()
		return n, nil
	}
	if w.stashErr != nil {
		err := w.stashErr
		w.mu.Unlock()
		return 0, err
	}
	w.mu.Unlock()
	n, err := w.Conn.Read(p)
	if !w.firstDone && n > 0 {
		w.first = append(w.first, p[:n]...)
		if len(w.first) >= 4 {
			l := int(w.first[0]) | int(w.first[1])<<8 | int(w.first[2])<<16
			if len(w.first) >= 4+l {
				w.firstDone = true
			}
		}
	}
	return n, err
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
	w.mu.Lock()
	pending := len(w.stash) > 0 || w.stashErr != nil
	w.mu.Unlock()
	if pending {
		return // already have input (or an error) to deliver: nothing to watch
	}
	w.watching = true
	w.watchDone = make(chan struct{})
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
