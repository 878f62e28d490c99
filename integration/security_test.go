package integration

import (
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
)

// selfSigned writes a certificate and key for 127.0.0.1 and returns their paths.
func selfSigned(t *testing.T) (string, string) {
	t.Helper()
	certPEM, keyPEM := testingutil.SelfSigned(t)
	dir := t.TempDir()
	cert, keyPath := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	_ = os.WriteFile(cert, certPEM, 0o600)
	_ = os.WriteFile(keyPath, keyPEM, 0o600)
	return cert, keyPath
}

func init() {
	_ = mysql.RegisterTLSConfig("q4mtest", &tls.Config{InsecureSkipVerify: true})
}

// TestSecurityTLS: with a certificate, clients may use TLS; with
// --require-secure-transport, plaintext logins get ERROR 3159; further users
// come from --users-file.
func TestSecurityTLS(t *testing.T) {
	standaloneOnly(t, "its users log in upstream too, and MariaDB has other users")
	cert, key := selfSigned(t)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("# test users\nalice:wonder\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--tls-cert", cert, "--tls-key", key, "--require-secure-transport", "--password", "secret", "--users-file", users)
	login := func(user, pw, tlsMode string) error {
		db, err := sql.Open("mysql", fmt.Sprintf("%s:%s@tcp(%s)/test?tls=%s", user, pw, s.addr, tlsMode))
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var one int
		return db.QueryRowContext(t.Context(), "SELECT 1").Scan(&one)
	}
	code := func(err error) uint16 {
		var me *mysql.MySQLError
		if errors.As(err, &me) {
			return me.Number
		}
		return 0
	}
	for _, tc := range []struct {
		user, pw, mode string
		want           uint16 // 0: logs in
	}{
		{"root", "secret", "q4mtest", 0},
		{"alice", "wonder", "q4mtest", 0},
		{"alice", "wrong", "q4mtest", 1045}, // as over plaintext (TestTLSRefusedLogin)
		{"root", "secret", "false", 3159},
		{"alice", "wonder", "false", 3159},
	} {
		err := login(tc.user, tc.pw, tc.mode)
		if code(err) != tc.want || (tc.want == 0) != (err == nil) {
			t.Errorf("%s over tls=%s: %v; want %d", tc.user, tc.mode, err, tc.want)
		}
	}
	out, err := s.mysqlCLI(t, "SELECT 'over tls';", "-psecret", "--ssl", "test")
	if err != nil || !strings.Contains(out, "over tls") {
		t.Errorf("mysql CLI with --ssl: %v\n%s", err, out)
	}
	out, _ = s.mysqlCLI(t, "SELECT 1;", "-psecret", "--skip-ssl", "test")
	if !strings.Contains(out, "ERROR 3159") {
		t.Errorf("mysql CLI with --skip-ssl: %q; want ERROR 3159", out)
	}
	// A client may see its refusal before the test has read the server's
	// log line about it from the pipe.
	logged := func(what string) bool {
		_, ok := s.logs.waitFor(time.Minute, func(l string) bool { return strings.Contains(l, what) })
		return ok
	}
	if !logged("Access denied for user 'alice'") {
		t.Errorf("the refused TLS login was not logged as 1045:\n%s", s.logs)
	}
	if !logged("login refused: plaintext connection") || strings.Contains(s.logs.String(), "secret") || strings.Contains(s.logs.String(), "wonder") {
		t.Errorf("log: refusal missing, or a password leaked:\n%s", s.logs)
	}
}

// TestSecurityKillOtherUser: KILL applies to a user's own connections.
func TestSecurityKillOtherUser(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:wonder\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, "--users-file", users)
	root := s.conn(t)
	var id int64
	if err := root.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	alice, err := sql.Open("mysql", "alice:wonder@tcp("+s.addr+")/test")
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	_, err = alice.ExecContext(t.Context(), fmt.Sprintf("KILL %d", id))
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1095 {
		t.Fatalf("alice KILL root: %v; want 1095", err)
	}
	if _, err := root.ExecContext(t.Context(), "SELECT 1"); err != nil {
		t.Errorf("root's connection after a refused KILL: %v", err)
	}
}
