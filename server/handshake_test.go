package server

import (
	"bytes"
	"testing"
)

func TestHandshakeOverflows(t *testing.T) {
	head := func(caps uint32) []byte {
		b := make([]byte, 32)
		b[0], b[1], b[2], b[3] = byte(caps), byte(caps>>8), byte(caps>>16), byte(caps>>24)
		return b
	}
	const base = 0x200 | capSecureConn | capPluginAuth // PROTOCOL_41
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	auth := append([]byte{20}, bytes.Repeat([]byte{'a'}, 20)...)
	plugin := []byte("mysql_native_password\x00")
	attrs := []byte{0x0a, 4, 'n', 'a', 'm', 'e', 4, 'p', 'e', 'r', 'l'}
	for _, tc := range []struct {
		name string
		pkt  []byte
		want bool
	}{
		{"valid, secure auth", join(head(base), []byte("root\x00"), auth, plugin), false},
		{"valid, lenenc auth, db, attributes", join(head(base|capLenencAuth|capConnectWithDB|capConnectAttrs),
			[]byte("root\x00"), auth, []byte("test\x00"), plugin, attrs), false},
		{"auth past the end", join(head(base), []byte("root\x00"), []byte{200, 'a'}), true},
		{"lenenc auth past the end", join(head(base|capLenencAuth), []byte("root\x00"), []byte{0xfc, 0xff, 0xff, 'a'}), true},
		{"attribute length of 2^63 and more", join(head(base|capConnectAttrs), []byte("root\x00"), auth, plugin,
			[]byte{0x0a, 0xfe, 0x27, 0xf2, 0xc5, 0x7f, 0xa5, 0x73, 0x63, 0xb0}), true},
		{"truncated attribute length", join(head(base|capConnectAttrs), []byte("root\x00"), auth, plugin, []byte{0x03, 0xfd, 1}), true},
		{"attributes total past the end", join(head(base|capConnectAttrs), []byte("root\x00"), auth, plugin, []byte{0x40, 1, 'a'}), true},
		{"SSL request", head(base | 0x800), false},
	} {
		if got := handshakeOverflows(tc.pkt); got != tc.want {
			t.Errorf("%s: handshakeOverflows = %v, want %v", tc.name, got, tc.want)
		}
	}
}
