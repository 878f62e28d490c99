package server

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"
)

// ---- FuzzPacketLimit ----------------------------------------------------

// A fuzzed client byte stream is "virtual": it may be far longer than the
// fuzz input (a packet split in 16 MB chunks needs more than 16 MB), so it
// is described as a length and the pieces of it that are not zero bytes.
// packetLimit.feed only looks at header bytes and counts payload bytes, so
// payload bytes can all be zero without loss.
type virtualStream struct {
	length int64
	pieces []streamPiece // sorted by off, not overlapping
}

type streamPiece struct {
	off  int64
	data []byte
}

func (v *virtualStream) byteAt(off int64) byte {
	for _, p := range v.pieces {
		if off >= p.off && off < p.off+int64(len(p.data)) {
			return p.data[off-p.off]
		}
	}
	return 0
}

// maxRead bounds one simulated read; reads are materialised in a shared
// zeroed buffer of that size.
const maxRead = 1 << 25

var zeroScratch = make([]byte, maxRead)

// materialize writes the non-zero bytes of [a, b) into zeroScratch and
// returns the read and a function that zeroes the scratch again.
func (v *virtualStream) materialize(a, b int64) ([]byte, func()) {
	buf := zeroScratch[:b-a]
	var touched [][2]int64
	for _, p := range v.pieces {
		lo, hi := max(a, p.off), min(b, p.off+int64(len(p.data)))
		if lo >= hi {
			continue
		}
		copy(buf[lo-a:hi-a], p.data[lo-p.off:hi-p.off])
		touched = append(touched, [2]int64{lo - a, hi - a})
	}
	return buf, func() {
		for _, r := range touched {
			clear(buf[r[0]:r[1]])
		}
	}
}

// refVerdict is what the reference parser says about a whole stream.
type refVerdict struct {
	over    bool
	seq     byte  // sequence number of the chunk that went over the limit
	overEnd int64 // offset just past that chunk's header
	// The parser's state at the end of the stream, when not over.
	hn     int   // header bytes of an incomplete header at the end
	remain int64 // payload bytes still expected for the last chunk
	total  int64 // size of the unfinished logical packet so far
}

// refPacketLimit parses the whole stream at once: packets are headers
// (3-byte little-endian length, sequence number) followed by that many
// payload bytes; a chunk of 0xffffff bytes continues the logical packet in
// the next chunk. The stream is over the limit at the first header that
// takes its logical packet past max (max 0: no limit).
func refPacketLimit(v *virtualStream, max int64) refVerdict {
	var r refVerdict
	pos := int64(0)
	for {
		if v.length-pos < 4 {
			r.hn = int(v.length - pos)
			return r
		}
		chunk := int64(v.byteAt(pos)) | int64(v.byteAt(pos+1))<<8 | int64(v.byteAt(pos+2))<<16
		seq := v.byteAt(pos + 3)
		pos += 4
		r.total += chunk
		if max > 0 && r.total > max {
			return refVerdict{over: true, seq: seq, overEnd: pos}
		}
		if chunk < 0xffffff {
			r.total = 0
		}
		if v.length-pos < chunk {
			r.remain = chunk - (v.length - pos)
			return r
		}
		pos += chunk
	}
}

// buildStream turns fuzz input into a virtual stream. Literal mode: the
// bytes are the stream. Header mode: every 4 bytes are a packet header,
// followed by the payload it announces (zero bytes); the last header may
// be cut short, and the last payload too (by trunc bytes).
func buildStream(data []byte, headers bool, trunc uint32) *virtualStream {
	if !headers {
		return &virtualStream{length: int64(len(data)), pieces: []streamPiece{{0, data}}}
	}
	if len(data) > 64*4 {
		data = data[:64*4]
	}
	v := &virtualStream{}
	pos := int64(0)
	for i := 0; i < len(data); i += 4 {
		h := data[i:min(i+4, len(data))]
		v.pieces = append(v.pieces, streamPiece{pos, h})
		pos += int64(len(h))
		if len(h) == 4 {
			pos += int64(h[0]) | int64(h[1])<<8 | int64(h[2])<<16
		}
	}
	// Cut the end of the last payload, so that the stream can stop in the
	// middle of a chunk.
	last := v.pieces[len(v.pieces)-1]
	if end := last.off + int64(len(last.data)); pos > end {
		pos -= min(pos-end, int64(trunc))
	}
	v.length = pos
	return v
}

// readSize maps a fuzz byte to the size of one read: small reads (1..64
// bytes) split headers anywhere; large ones (powers of two up to 32 MB)
// cross chunks of 16 MB.
func readSize(c byte) int64 {
	if c < 0xc0 {
		return int64(c&0x3f) + 1
	}
	return min(int64(1)<<(c&0x1f), maxRead)
}

// FuzzPacketLimit feeds a byte stream to packetLimit.feed in random reads
// and compares its verdict with refPacketLimit's on the whole stream: the
// read in which the header that goes over the limit completes is the one
// that reports it, with that header's sequence number; without an
// overflow, feed's state at the end is the reference's.
func FuzzPacketLimit(f *testing.F) {
	hdr := func(size int, seq byte) []byte { return []byte{byte(size), byte(size >> 8), byte(size >> 16), seq} }
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	// max, stream, header mode, reads, truncation of the last payload.
	f.Add(uint32(100), cat(hdr(3, 0), []byte("abc"), hdr(2, 0), []byte("xy")), false, []byte{1, 2, 3}, uint32(0))
	f.Add(uint32(5), cat(hdr(6, 0), []byte("abcdef")), false, []byte{0, 0, 0, 0, 5}, uint32(0))
	f.Add(uint32(5), cat(hdr(5, 0), []byte("abcde"), hdr(5, 1), []byte("ab")), false, []byte{7}, uint32(0))
	f.Add(uint32(0), cat(hdr(0xffffff, 0)), false, []byte{}, uint32(0))
	f.Add(uint32(0xffffff+10), cat(hdr(0xffffff, 0), hdr(11, 1)), true, []byte{3, 0xd8, 0xd8, 2}, uint32(0))
	f.Add(uint32(0xffffff+10), cat(hdr(0xffffff, 0), hdr(10, 1), hdr(0xffffff, 0)), true, []byte{0xff}, uint32(100))
	f.Add(uint32(0xffffff), cat(hdr(0xffffff, 0), hdr(0, 1), hdr(1, 0)), true, []byte{0xc4, 0xd9}, uint32(0))
	f.Add(uint32(64<<20), cat(hdr(0xffffff, 0), hdr(0xffffff, 1), hdr(0xffffff, 2), hdr(0xffffff, 3), hdr(5, 4)), true, []byte{}, uint32(0))
	f.Add(uint32(1), cat(hdr(0, 0), hdr(1, 1), hdr(2, 2)), true, []byte{0, 0, 0, 0, 0, 0}, uint32(0))
	f.Fuzz(func(t *testing.T, max uint32, data []byte, headers bool, reads []byte, trunc uint32) {
		if len(data) == 0 {
			return
		}
		v := buildStream(data, headers, trunc)
		want := refPacketLimit(v, int64(max))
		l := &packetLimit{max: int64(max)}
		pos := int64(0)
		for call := 0; pos < v.length; call++ {
			n := min(v.length-pos, maxRead)
			if call < len(reads) {
				n = min(n, readSize(reads[call]))
			}
			b, reset := v.materialize(pos, pos+n)
			over, seq := l.feed(b)
			reset()
			end := pos + n
			switch {
			case over && !want.over:
				t.Fatalf("read [%d,%d): feed reports a packet over %d; the reference does not", pos, end, max)
			case over && (want.overEnd <= pos || want.overEnd > end):
				t.Fatalf("read [%d,%d): feed reports over; the reference's offending header ends at %d", pos, end, want.overEnd)
			case !over && want.over && want.overEnd > pos && want.overEnd <= end:
				t.Fatalf("read [%d,%d): the header ending at %d goes over %d, feed does not report it", pos, end, want.overEnd, max)
			case over:
				if seq != want.seq {
					t.Fatalf("over with sequence number %d, want %d", seq, want.seq)
				}
				return // the connection ends here: discardPacket takes over
			}
			pos = end
		}
		if want.over {
			t.Fatalf("stream of %d bytes never reported over; the reference's header ends at %d", v.length, want.overEnd)
		}
		if l.hn != want.hn || int64(l.remain) != want.remain || l.total != want.total {
			t.Fatalf("end state hn=%d remain=%d total=%d; reference hn=%d remain=%d total=%d",
				l.hn, l.remain, l.total, want.hn, want.remain, want.total)
		}
	})
}

// ---- FuzzClientPlugin ---------------------------------------------------

// chunkConn is a net.Conn whose reads return data in pieces of given sizes.
type chunkConn struct {
	data  []byte
	sizes []byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.sizes) > 0 {
		n = min(n, int(c.sizes[0])+1)
		c.sizes = c.sizes[1:]
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *chunkConn) Close() error                     { return nil }
func (c *chunkConn) LocalAddr() net.Addr              { return hostAddr("127.0.0.1") }
func (c *chunkConn) RemoteAddr() net.Addr             { return hostAddr("127.0.0.1") }
func (c *chunkConn) SetDeadline(time.Time) error      { return nil }
func (c *chunkConn) SetReadDeadline(time.Time) error  { return nil }
func (c *chunkConn) SetWriteDeadline(time.Time) error { return nil }
func (c *chunkConn) String() string                   { return "chunkConn" }
func (c *chunkConn) remaining() int                   { return len(c.data) }
func (c *chunkConn) readAll(w *watchConn, buf []byte) { // as go-mysql reads: header, then payload
	for c.remaining() > 0 {
		if _, err := w.Read(buf); err != nil {
			return
		}
	}
}

// handshakeResponse41 builds a HandshakeResponse41 packet (with header).
func handshakeResponse41(capab uint32, user string, auth []byte, db, plugin string) []byte {
	const (
		connectWithDB = 0x8
		secureConn    = 0x8000
		pluginAuth    = 0x80000
		lenencAuth    = 0x200000
	)
	p := binary.LittleEndian.AppendUint32(nil, capab)
	p = binary.LittleEndian.AppendUint32(p, 16<<20)
	p = append(p, 45)
	p = append(p, make([]byte, 23)...)
	p = append(append(p, user...), 0)
	switch {
	case capab&lenencAuth != 0:
		switch n := len(auth); {
		case n < 0xfb:
			p = append(p, byte(n))
		default:
			p = append(p, 0xfc, byte(n), byte(n>>8))
		}
		p = append(p, auth...)
	case capab&secureConn != 0:
		p = append(append(p, byte(len(auth))), auth...)
	default:
		p = append(append(p, auth...), 0)
	}
	if capab&connectWithDB != 0 {
		p = append(append(p, db...), 0)
	}
	if capab&pluginAuth != 0 {
		p = append(append(p, plugin...), 0)
	}
	return append([]byte{byte(len(p)), byte(len(p) >> 8), byte(len(p) >> 16), 1}, p...)
}

// pluginOf calls clientPlugin and turns a panic into a test failure (a
// panic would end the whole test binary, hiding the other tests).
func pluginOf(t *testing.T, w *watchConn, how string) (plugin string) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("clientPlugin (%s) panicked: %v\nfirst packet: %q", how, r, w.first)
			plugin = "<panic>"
		}
	}()
	return w.clientPlugin()
}

// FuzzClientPlugin: clientPlugin never panics on whatever the client sent
// as its first packet, whether the recorded bytes are set directly or
// gathered by Read from arbitrary reads; both ways agree. For a
// well-formed HandshakeResponse41 built from the same input it names the
// plugin the packet carries.
func FuzzClientPlugin(f *testing.F) {
	native := handshakeResponse41(0x0008a20d, "root", nil, "test", "mysql_native_password")
	sha2 := handshakeResponse41(0x002ea20d, "root", bytes.Repeat([]byte{7}, 32), "", "caching_sha2_password")
	noDB := handshakeResponse41(0x0008a205, "u", []byte{1, 2, 3}, "", "mysql_native_password")
	f.Add(native, []byte{3, 9, 200}, uint32(0x0008a20d), "root", []byte(nil), "test", "mysql_native_password")
	f.Add(sha2, []byte{}, uint32(0x002ea20d), "root", bytes.Repeat([]byte{7}, 32), "", "caching_sha2_password")
	f.Add(noDB, []byte{0, 0, 0, 0}, uint32(0x0008a205), "u", []byte{1, 2, 3}, "", "mysql_native_password")
	f.Add(native[:40], []byte{}, uint32(0x0000a205), "", []byte{0}, "", "")
	f.Add([]byte{0x20, 0, 0, 1, 0xff, 0xff, 0xff, 0xff}, []byte{1}, uint32(0xffffffff), "x", bytes.Repeat([]byte{0xfe}, 300), "d", "p")
	f.Add(append([]byte{0x2a, 0, 0, 1, 0x00, 0x80, 0x28, 0}, append(make([]byte, 28), 'r', 0, 0xfe, 0xff)...), []byte{}, uint32(0x00288000), "", []byte{}, "", "")
	f.Fuzz(func(t *testing.T, first []byte, reads []byte, capab uint32, user string, auth []byte, db, plugin string) {
		// 1. The first packet's bytes recorded as Read records them:
		// complete once the header's length is there.
		w := &watchConn{first: first}
		if len(first) >= 4 {
			l := int(first[0]) | int(first[1])<<8 | int(first[2])<<16
			w.firstDone = len(first) >= 4+l
		}
		direct := pluginOf(t, w, "fields set directly")

		// 2. The same bytes through Read, in pieces.
		cc := &chunkConn{data: first, sizes: reads}
		r := newWatchConn(cc)
		cc.readAll(r, make([]byte, 4096))
		viaRead := pluginOf(t, r, "bytes gathered by Read")
		if r.firstDone != w.firstDone || direct != viaRead {
			t.Fatalf("direct: done=%v %q; via Read: done=%v %q", w.firstDone, direct, r.firstDone, viaRead)
		}

		// 3. A well-formed packet: the plugin it names is found.
		const secureConn, pluginAuth, lenencAuth = 0x8000, 0x80000, 0x200000
		noNUL := func(s string) bool { return !bytes.ContainsRune([]byte(s), 0) }
		if !noNUL(user) || !noNUL(db) || !noNUL(plugin) || len(auth) > 0xffff ||
			capab&(secureConn|lenencAuth) == 0 && bytes.IndexByte(auth, 0) >= 0 ||
			capab&lenencAuth == 0 && capab&secureConn != 0 && len(auth) > 0xff ||
			len(user)+len(auth)+len(db)+len(plugin) > 0xff0000 {
			return
		}
		pkt := handshakeResponse41(capab, user, auth, db, plugin)
		w = &watchConn{first: pkt, firstDone: true}
		want := ""
		if capab&pluginAuth != 0 {
			want = plugin
		}
		if got := pluginOf(t, w, "well-formed"); got != want {
			t.Fatalf("well-formed response (capabilities %#x): clientPlugin = %q, want %q", capab, got, want)
		}
	})
}
