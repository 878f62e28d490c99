package server

import (
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// testTLSConfig is a server TLS configuration with a fresh self-signed
// certificate for 127.0.0.1.
func testTLSConfig(t *testing.T) *tls.Config {
	t.Helper()
	cert, err := tls.X509KeyPair(testingutil.SelfSigned(t))
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
}

// startTLSServer is startServer with TLS offered (and required), the
// password "secret" for root, and max_allowed_packet max.
func startTLSServer(t *testing.T, max int64) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, addr := serveTest(t, Config{
		Version: testVersion, Users: map[string]string{"root": "secret"}, Logger: log,
		TLS: testTLSConfig(t), RequireSecureTransport: true, MaxAllowedPacket: max,
		HandshakeTimeout: time.Minute, // not what ends a login in these tests
	}, func(srv *Server) sqlfront.Config {
		return sqlfront.Config{Version: testVersion, Kill: srv.Kill, Logger: log}
	})
	return addr
}

// openTLS opens a go-sql-driver pool over TLS (certificate not verified).
func openTLS(t *testing.T, addr, pw string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", "root:"+pw+"@tcp("+addr+")/test?tls=skip-verify")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// TestTLSLoginRefused: a wrong password over TLS gets ERROR 1045 (28000),
// as over plaintext; before, the error packet sat in watchConn's buffer
// when crypto/tls set a past write deadline and closed the connection, so
// the client saw it dropped.
func TestTLSLoginRefused(t *testing.T) {
	addr := startTLSServer(t, 0)
	for _, pw := range []string{"wrong", ""} {
		err := openTLS(t, addr, pw).PingContext(t.Context())
		if code, state := myErr(err); code != 1045 || state != "28000" {
			t.Errorf("password %q over TLS: %v; want 1045 (28000)", pw, err)
		}
	}
	if err := openTLS(t, addr, "secret").PingContext(t.Context()); err != nil {
		t.Errorf("right password over TLS: %v", err)
	}
}

// TestTLSPacketLimit: over TLS, a packet over max_allowed_packet gets
// ERROR 1153 (08S01) and ends its connection, as over plaintext: the limit
// is enforced on the decrypted stream. A packet at the limit passes.
func TestTLSPacketLimit(t *testing.T) {
	const max = 64 << 10
	addr := startTLSServer(t, max)
	ctx := t.Context()
	db := openTLS(t, addr, "secret")
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "CREATE TABLE big (s longblob) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	// COM_QUERY: 1 command byte + the statement = max.
	at := "INSERT INTO big VALUES ('" + strings.Repeat("a", max-1-len("INSERT INTO big VALUES ('')")) + "')"
	if _, err := db.ExecContext(ctx, at); err != nil {
		t.Fatalf("a packet of max_allowed_packet bytes: %v", err)
	}
	c := openTLS(t, addr, "secret")
	_, err := c.ExecContext(ctx, at+" ")
	if code, state := myErr(err); code != 1153 || state != "08S01" {
		t.Fatalf("a packet one byte over max_allowed_packet: %v; want 1153 (08S01)", err)
	}
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM big").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count %d, %v; want 1", n, err)
	}
}

// TestTLSLoginBudget: before its login is done, a TLS client cannot make
// the server read more than about max_allowed_packet (the handshake
// response is encrypted, so its packet header cannot be followed): one
// announcing an endless handshake response is cut off, with ERROR 1153 as
// over plaintext. Before, go-mysql read it all into memory until the
// handshake timeout.
func TestTLSLoginBudget(t *testing.T) {
	const max = 1 << 20
	addr := startTLSServer(t, max)
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(30 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(raw, hdr[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := io.CopyN(io.Discard, raw, int64(hdr[0])|int64(hdr[1])<<8|int64(hdr[2])<<16); err != nil {
		t.Fatal(err)
	}
	const (
		clientProtocol41 = 0x200
		clientSSL        = 0x800
		clientSecureConn = 0x8000
	)
	req := binary.LittleEndian.AppendUint32(nil, clientProtocol41|clientSSL|clientSecureConn)
	req = binary.LittleEndian.AppendUint32(req, 16<<20)
	req = append(req, 45)
	req = append(req, make([]byte, 23)...)
	if _, err := raw.Write(append([]byte{byte(len(req)), 0, 0, 1}, req...)); err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // test certificate
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	// A handshake response of four 16 MB chunks (and more to come), sent
	// until the server stops reading.
	piece := make([]byte, 1<<20)
	sent, cut := 0, false
send:
	for seq := byte(2); seq < 6; seq++ {
		if _, err := c.Write([]byte{0xff, 0xff, 0xff, seq}); err != nil {
			cut = true
			break
		}
		for i := range 16 { // 16 MB - 1 byte
			p := piece
			if i == 15 {
				p = p[1:]
			}
			if _, err := c.Write(p); err != nil {
				cut = true
				break send
			}
			sent += len(p)
		}
	}
	if !cut || sent > 32<<20 {
		t.Fatalf("the server read %.1f MB of a TLS handshake response (max_allowed_packet 1 MB)", float64(sent)/(1<<20))
	}
	// The client, done sending, reads ERROR 1153 as over plaintext.
	_ = raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(c)
	want := "\xff\x81\x04#08S01Got a packet bigger than 'max_allowed_packet' bytes"
	if len(reply) < 4 || string(reply[4:]) != want {
		t.Errorf("reply %q; want ERROR 1153 (08S01)", reply)
	}
	t.Logf("the server stopped reading after %.1f MB were sent", float64(sent)/(1<<20))
	// The server goes on serving.
	if err := openTLS(t, addr, "secret").PingContext(t.Context()); err != nil {
		t.Fatal(err)
	}
}
