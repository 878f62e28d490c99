package server

import "bytes"

// Capability bits read from a client's handshake response.
const (
	capConnectWithDB = 0x8
	capSecureConn    = 0x8000
	capPluginAuth    = 0x80000
	capConnectAttrs  = 0x100000
	capLenencAuth    = 0x200000
)

// handshakeOverflows reports whether a handshake response (payload, after the
// TLS request if any) announces more data than it holds: a length-prefixed
// auth response or connection attribute running past the packet's end, or
// a truncated length. go-mysql v1.16.0 slices such data without checking
// (past the packet within its buffer's capacity for the auth data, with a
// negative bound for an attribute length of 2^63 and more) and panics, so
// such a packet is answered with MySQL's ERROR 1043 before go-mysql reads
// it. Real clients never send one.
func handshakeOverflows(pkt []byte) bool {
	if len(pkt) < 32 {
		return false // the SSL request, or too short for go-mysql to read
	}
	caps := uint32(pkt[0]) | uint32(pkt[1])<<8 | uint32(pkt[2])<<16 | uint32(pkt[3])<<24
	pos := 32
	i := bytes.IndexByte(pkt[pos:], 0) // user
	if i < 0 {
		return false // go-mysql refuses it cleanly
	}
	pos += i + 1
	switch {
	case caps&capLenencAuth != 0:
		n, ok := lenencSpan(pkt[pos:])
		if !ok {
			return true
		}
		pos += n
	case caps&capSecureConn != 0:
		if pos >= len(pkt) || pos+1+int(pkt[pos]) > len(pkt) {
			return pos < len(pkt) // nothing at all is refused cleanly
		}
		pos += 1 + int(pkt[pos])
	default:
		return false // go-mysql requires CLIENT_SECURE_CONNECTION
	}
	if caps&capConnectWithDB != 0 && pos < len(pkt) {
		i := bytes.IndexByte(pkt[pos:], 0)
		if i < 0 {
			return false // refused cleanly
		}
		pos += i + 1
	}
	if caps&capPluginAuth != 0 && pos <= len(pkt) {
		i := bytes.IndexByte(pkt[pos:], 0)
		if i < 0 {
			return false
		}
		pos += i + 1
	}
	if caps&capConnectAttrs == 0 || pos >= len(pkt) {
		return false
	}
	// The attributes: a total length, then length-prefixed keys and
	// values, read by go-mysql up to the packet's end.
	total, n, ok := lenencHead(pkt[pos:])
	if !ok || total > uint64(len(pkt)-pos-n) {
		return true
	}
	for pos += n; pos < len(pkt) && pkt[pos] != 0xfb; {
		n, ok := lenencSpan(pkt[pos:])
		if !ok {
			return true
		}
		pos += n
	}
	return false
}

// lenencHead decodes a length-encoded integer: its value and size; ok is
// false when b is too short for it.
func lenencHead(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xfb:
		return 0, 1, true
	case 0xfc:
		n = 3
	case 0xfd:
		n = 4
	case 0xfe:
		n = 9
	default:
		return uint64(b[0]), 1, true
	}
	if len(b) < n {
		return 0, 0, false
	}
	for i := n - 1; i >= 1; i-- {
		v = v<<8 | uint64(b[i])
	}
	return v, n, true
}

// lenencSpan is the size of a length-encoded string at the start of b
// (prefix and data); ok is false when it runs past b's end.
func lenencSpan(b []byte) (int, bool) {
	v, n, ok := lenencHead(b)
	if !ok || v > uint64(len(b)-n) {
		return 0, false
	}
	return n + int(v), true
}
