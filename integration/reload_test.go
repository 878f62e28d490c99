package integration

import (
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// reloadAndWait sends SIGHUP and waits for the n-th (from 1) log line
// with message msg ("reloaded" or "reload failed"), which it returns.
func (s *server) reloadAndWait(t *testing.T, msg string, n int) map[string]any {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	seen := 0
	line, ok := s.logs.waitFor(time.Minute, func(l string) bool {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			seen++
		}
		return seen == n
	})
	if !ok {
		t.Fatalf("no log line %q number %d after SIGHUP; log:\n%s", msg, n, s.logs)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(line), &rec); err != nil {
		t.Fatalf("log line %q: %v", line, err)
	}
	return rec
}

// mysqlErrno is the MySQL error number of err, or 0.
func mysqlErrno(err error) uint16 {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number
	}
	return 0
}

// TestReloadUsers: SIGHUP re-reads --users-file. A session logged in
// before goes on; new logins check the new passwords (the old one gets
// 1045); a users file that cannot be read or parsed keeps the previous
// users and logs an error.
func TestReloadUsers(t *testing.T) {
	dir := t.TempDir()
	users := dir + "/users"
	if err := os.WriteFile(users, []byte("alice:old-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--users-file", users)
	login := func(user, pw string) error {
		db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/test", user, pw, s.addr))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v sql.NullInt64
		return db.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&v)
	}
	cli := func(user, pw string) string {
		out, _ := s.mysqlCLI(t, "SELECT 'cli logged in';", "-u"+user, "-p"+pw, "test")
		return out
	}

	// A session that stays open across the reloads.
	db, err := sql.Open("mysql", fmt.Sprintf("alice:old-pw@tcp(%s)/test", s.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	var id1, id2 int64
	if err := old.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&id1); err != nil {
		t.Fatal(err)
	}

	if err := os.WriteFile(users, []byte("# rotated\nalice:new-pw\nbob:bob-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rec := s.reloadAndWait(t, "reloaded", 1)
	if rec["users"] != float64(3) { // root, alice, bob
		t.Errorf("reloaded line says %v users, want 3: %v", rec["users"], rec)
	}
	if err := old.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&id2); err != nil || id2 != id1 {
		t.Errorf("the session opened before the reload: %v (id %d, was %d)", err, id2, id1)
	}
	if err := login("alice", "new-pw"); err != nil {
		t.Errorf("alice with the new password: %v", err)
	}
	if err := login("bob", "bob-pw"); err != nil {
		t.Errorf("bob, added by the reload: %v", err)
	}
	if err := login("alice", "old-pw"); mysqlErrno(err) != 1045 {
		t.Errorf("alice with the old password: %v, want ERROR 1045", err)
	}
	if out := cli("alice", "new-pw"); !strings.Contains(out, "cli logged in") {
		t.Errorf("mysql CLI, alice with the new password:\n%s", out)
	}
	if out := cli("alice", "old-pw"); !strings.Contains(out, "ERROR 1045 (28000)") {
		t.Errorf("mysql CLI, alice with the old password:\n%s", out)
	}

	// Failed reloads change nothing.
	for i, bad := range []func(){
		func() { _ = os.WriteFile(users, []byte("alice:third-pw\nno colon here\n"), 0o600) },
		func() { _ = os.Remove(users) },
	} {
		bad()
		rec := s.reloadAndWait(t, "reload failed", i+1)
		if rec["level"] != "ERROR" {
			t.Errorf("failed reload logged as %v, want ERROR", rec["level"])
		}
		if err := login("alice", "new-pw"); err != nil {
			t.Errorf("after failed reload %d, alice with the kept password: %v", i+1, err)
		}
		if err := login("alice", "third-pw"); mysqlErrno(err) != 1045 {
			t.Errorf("after failed reload %d, alice with the password of the bad file: %v, want 1045", i+1, err)
		}
	}
	if err := old.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&id2); err != nil || id2 != id1 {
		t.Errorf("the session opened before the reloads: %v", err)
	}
	if strings.Contains(s.logs.String(), "new-pw") || strings.Contains(s.logs.String(), "old-pw") {
		t.Errorf("a password reached the log:\n%s", s.logs)
	}
}

// TestReloadUsersTLS: over TLS the mysql CLI logs in with
// caching_sha2_password, whose fast path checks a cache of the passwords
// that logged in before. A reload must empty it (as MySQL's ALTER USER and
// FLUSH PRIVILEGES do): after it the old password, and a user removed
// from the file, get 1045 over TLS as over plaintext.
func TestReloadUsersTLS(t *testing.T) {
	dir := t.TempDir()
	users := dir + "/users"
	if err := os.WriteFile(users, []byte("alice:old-pw\nbob:bob-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, key := selfSigned(t)
	s := startServer(t, "--users-file", users, "--tls-cert", cert, "--tls-key", key)
	cli := func(user, pw string) string {
		out, _ := s.mysqlCLI(t, "SELECT 'cli logged in';", "--ssl", "-u"+user, "-p"+pw, "test")
		return out
	}
	// Twice each: the second login takes the fast path of the cache.
	for range 2 {
		for _, u := range [][2]string{{"alice", "old-pw"}, {"bob", "bob-pw"}} {
			if out := cli(u[0], u[1]); !strings.Contains(out, "cli logged in") {
				t.Fatalf("mysql CLI --ssl, %s before the reload:\n%s", u[0], out)
			}
		}
	}
	if err := os.WriteFile(users, []byte("alice:new-pw\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reloadAndWait(t, "reloaded", 1)
	if out := cli("alice", "old-pw"); !strings.Contains(out, "ERROR 1045 (28000)") {
		t.Errorf("mysql CLI --ssl, alice with the old password after the reload:\n%s", out)
	}
	if out := cli("bob", "bob-pw"); !strings.Contains(out, "ERROR 1045 (28000)") {
		t.Errorf("mysql CLI --ssl, bob removed by the reload:\n%s", out)
	}
	for range 2 {
		if out := cli("alice", "new-pw"); !strings.Contains(out, "cli logged in") {
			t.Errorf("mysql CLI --ssl, alice with the new password:\n%s", out)
		}
	}
}

// TestReloadTLS: SIGHUP re-reads --tls-cert and --tls-key. New TLS
// connections get the new certificate (its fingerprint, read through the
// MySQL protocol's TLS upgrade), a TLS session opened before goes on, and
// a bad PEM keeps the previous certificate.
func TestReloadTLS(t *testing.T) {
	cert, key := selfSigned(t)
	s := startServer(t, "--tls-cert", cert, "--tls-key", key)
	fp1 := serverCertFingerprint(t, s.addr)
	if want := fileCertFingerprint(t, cert); fp1 != want {
		t.Fatalf("served certificate %s, want the file's %s", fp1, want)
	}

	db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(%s)/test?tls=skip-verify", s.addr))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	old, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	ping := func() error {
		var v sql.NullInt64
		return old.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&v)
	}
	if err := ping(); err != nil {
		t.Fatal(err)
	}

	// Rotate: a new key pair written over the old files.
	cert2, key2 := selfSigned(t)
	copyFile(t, cert2, cert)
	copyFile(t, key2, key)
	fp2 := fileCertFingerprint(t, cert)
	if fp2 == fp1 {
		t.Fatal("the new certificate is the old one")
	}
	rec := s.reloadAndWait(t, "reloaded", 1)
	if rec["tls_cert_sha256"] != fp2 {
		t.Errorf("reloaded line: tls_cert_sha256 %v, want %s", rec["tls_cert_sha256"], fp2)
	}
	if got := serverCertFingerprint(t, s.addr); got != fp2 {
		t.Errorf("after the reload a new connection gets certificate %s, want the new %s (old %s)", got, fp2, fp1)
	}
	if err := ping(); err != nil {
		t.Errorf("the TLS session opened before the reload: %v", err)
	}
	out, err := s.mysqlCLI(t, "SELECT CONNECTION_ID() AS over_tls;", "--ssl", "test")
	if err != nil || !strings.Contains(out, "over_tls") {
		t.Errorf("mysql CLI --ssl after the reload: %v\n%s", err, out)
	}

	// A bad PEM: the certificate stays.
	if err := os.WriteFile(cert, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.reloadAndWait(t, "reload failed", 1)
	if got := serverCertFingerprint(t, s.addr); got != fp2 {
		t.Errorf("after a failed reload a new connection gets certificate %s, want the kept %s", got, fp2)
	}
	if err := ping(); err != nil {
		t.Errorf("the TLS session after a failed reload: %v", err)
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fileCertFingerprint is the SHA-256 of the first certificate of a PEM file.
func fileCertFingerprint(t *testing.T, path string) string {
	t.Helper()
	c, err := tls.LoadX509KeyPair(path, strings.TrimSuffix(path, "cert.pem")+"key.pem")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.Certificate[0])
	return hex.EncodeToString(sum[:])
}

// serverCertFingerprint connects to a MySQL server, asks for TLS as a
// client does (an SSLRequest packet after the server's greeting), and
// returns the SHA-256 of the certificate the server presents.
func serverCertFingerprint(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	greeting := make([]byte, int(hdr[0])|int(hdr[1])<<8|int(hdr[2])<<16)
	if _, err := io.ReadFull(c, greeting); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	const (
		clientProtocol41 = 0x00000200
		clientSSL        = 0x00000800
		clientSecureConn = 0x00008000
	)
	req := make([]byte, 4+32)
	req[0], req[3] = 32, 1 // length 32, sequence 1
	binary.LittleEndian.PutUint32(req[4:], clientProtocol41|clientSSL|clientSecureConn)
	binary.LittleEndian.PutUint32(req[8:], 1<<24)
	req[12] = 45 // utf8mb4_general_ci
	if _, err := c.Write(req); err != nil {
		t.Fatalf("SSLRequest: %v", err)
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // we want the certificate, whatever it is
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	sum := sha256.Sum256(tc.ConnectionState().PeerCertificates[0].Raw)
	return hex.EncodeToString(sum[:])
}
