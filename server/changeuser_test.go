package server

import (
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

func TestParseChangeUser(t *testing.T) {
	caps := uint32(mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH)
	full := []byte("bob\x00\x03abcshop\x00\x21\x00caching_sha2_password\x00")
	r, ok := parseChangeUser(full, caps)
	if !ok || r.user != "bob" || string(r.auth) != "abc" || r.db != "shop" || r.collation != 33 || r.plugin != mysql.AUTH_CACHING_SHA2_PASSWORD {
		t.Fatalf("parse: %+v %v", r, ok)
	}
	// Without CLIENT_PLUGIN_AUTH the plugin is mysql_native_password.
	if r, ok := parseChangeUser(full, caps&^mysql.CLIENT_PLUGIN_AUTH); !ok || r.plugin != mysql.AUTH_NATIVE_PASSWORD {
		t.Fatalf("no plugin auth: %+v %v", r, ok)
	}
	// A database may end the packet without its NUL.
	if r, ok := parseChangeUser([]byte("bob\x00\x00shop"), caps); !ok || r.db != "shop" || len(r.auth) != 0 {
		t.Fatalf("short: %+v %v", r, ok)
	}
	// Every truncation is refused or parsed, never a panic.
	for i := range full {
		parseChangeUser(full[:i], caps)
	}
	for _, bad := range []string{"", "bob", "bob\x00\x09ab"} {
		if _, ok := parseChangeUser([]byte(bad), caps); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

func TestScrambleOK(t *testing.T) {
	salt := newScramble()
	for _, b := range salt {
		if b == 0 || b == '$' || b > 127 {
			t.Fatalf("scramble byte %d", b)
		}
	}
	for _, plugin := range []string{mysql.AUTH_NATIVE_PASSWORD, mysql.AUTH_CACHING_SHA2_PASSWORD} {
		var resp []byte
		if plugin == mysql.AUTH_NATIVE_PASSWORD {
			resp = mysql.CalcNativePassword(salt, []byte("pw"))
		} else {
			resp = mysql.CalcCachingSha2Password(salt, []byte("pw"))
		}
		if !scrambleOK(plugin, resp, salt, "pw") {
			t.Errorf("%s: right password refused", plugin)
		}
		if scrambleOK(plugin, resp, salt, "other") || scrambleOK(plugin, nil, salt, "pw") {
			t.Errorf("%s: wrong answer accepted", plugin)
		}
	}
	if !scrambleOK(mysql.AUTH_NATIVE_PASSWORD, nil, salt, "") || scrambleOK(mysql.AUTH_NATIVE_PASSWORD, []byte{1}, salt, "") {
		t.Error("empty password")
	}
	if scrambleOK("client_ed25519", []byte("x"), salt, "pw") {
		t.Error("unknown plugin accepted")
	}
}
