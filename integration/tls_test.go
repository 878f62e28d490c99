package integration

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
)

// TLS is not a weaker door: what holds over plaintext holds over TLS.
// Each test runs the same checks over plaintext (a server offering no TLS)
// and over TLS (a server with --require-secure-transport, so that a client
// falling back to plaintext would be refused with 3159, not pass).

// transport is how the tests reach a server: plaintext or TLS.
type transport struct {
	name string
	// server starts a server; with TLS, it returns its certificate file.
	server func(t *testing.T, extra ...string) (*server, string)
	goTLS  string   // go-sql-driver's tls parameter
	cli    []string // mysql CLI options
	// perl are the DSN options of each DBD driver, given the certificate.
	perl func(driver, cert string) string
}

var transports = []transport{
	{
		name:   "plaintext",
		server: func(t *testing.T, extra ...string) (*server, string) { return startServer(t, extra...), "" },
		goTLS:  "false",
		cli:    []string{"--skip-ssl"},
		perl:   func(string, string) string { return "" },
	},
	{
		name: "tls",
		server: func(t *testing.T, extra ...string) (*server, string) {
			cert, key := selfSigned(t)
			return startServer(t, append([]string{"--tls-cert", cert, "--tls-key", key, "--require-secure-transport"}, extra...)...), cert
		},
		goTLS: "skip-verify",
		cli:   []string{"--ssl"},
		perl: func(driver, cert string) string {
			if driver == "mysql" {
				// DBD::mysql 4.050 cannot enforce TLS with libmariadb; it
				// still uses it, and --require-secure-transport refuses
				// a plaintext login.
				return ";mysql_ssl=1;mysql_ssl_optional=1"
			}
			return ";mariadb_ssl=1;mariadb_ssl_verify_server_cert=1;mariadb_ssl_ca_file=" + cert
		},
	},
}

// goOpen opens a go-sql-driver pool to s over tr.
func (tr transport) goOpen(t *testing.T, s *server, user, pw string) *sql.DB {
	t.Helper()
	cfg := mysql.NewConfig()
	cfg.User, cfg.Passwd, cfg.Net, cfg.Addr, cfg.DBName = user, pw, "tcp", s.addr, "test"
	cfg.Timeout = 10 * time.Second
	cfg.TLSConfig = tr.goTLS
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db := sql.OpenDB(conn)
	t.Cleanup(func() { db.Close() })
	return db
}

// clients are the login clients of auth_test.go, over tr.
func (tr transport) clients(cert string) []loginClient {
	return []loginClient{
		{"go-sql-driver", func(t *testing.T, s *server, user, pw string) loginResult {
			t.Helper()
			var v int
			err := tr.goOpen(t, s, user, pw).QueryRowContext(t.Context(), "SELECT 1").Scan(&v)
			var me *mysql.MySQLError
			switch {
			case err == nil && v == 1:
				return loginResult{}
			case errors.As(err, &me):
				return loginResult{code: int(me.Number), state: string(me.SQLState[:]), msg: me.Message}
			}
			t.Fatalf("go-sql-driver (tls=%s) login as %s: SELECT 1 = %d, %v", tr.goTLS, user, v, err)
			return loginResult{}
		}},
		{"DBD::mysql", tr.perlLogin("mysql", cert)},
		{"DBD::MariaDB", tr.perlLogin("MariaDB", cert)},
		{"mysql CLI", cliLogin(tr.cli...)},
	}
}

// perlLogin is auth_test.go's perlLogin with tr's DSN options.
func (tr transport) perlLogin(driver, cert string) func(t *testing.T, s *server, user, pw string) loginResult {
	return func(t *testing.T, s *server, user, pw string) loginResult {
		t.Helper()
		// The last DBI= of the environment wins (see perlLogin).
		return perlConnect(t, s, driver, user, "DBI="+s.perlDSN(driver)+tr.perl(driver, cert), "DBI_USER="+user, "DBI_PASSWORD="+pw)
	}
}

// TestTLSRefusedLogin: a refused login over TLS gets ERROR 1045 (28000)
// with MySQL's message, as over plaintext, in every client (before, the
// TLS client saw a dropped connection: the error packet, buffered below
// TLS, was discarded when the TLS layer closed).
func TestTLSRefusedLogin(t *testing.T) {
	standaloneOnly(t, "its users log in upstream too, and MariaDB has other users")
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			s, cert := tr.server(t, "--password", "secret")
			for _, c := range tr.clients(cert) {
				t.Run(c.name, func(t *testing.T) { checkPasswords(t, c, s) })
			}
			// A client may see its refusal before the test has read the
			// server's log line about it from the pipe.
			eventually(t, time.Minute, "12 refused logins logged", func() bool {
				return strings.Count(s.logs.String(), "login failed") >= 12
			})
		})
	}
}

// TestTLSPacketLimit: over TLS as over plaintext, a statement over
// --max-allowed-packet gets ERROR 1153 (08S01) and its connection is
// closed, a statement under it goes through, and the server goes on
// serving (before, TLS connections had no limit at all).
func TestTLSPacketLimit(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			s, _ := tr.server(t, "--max-allowed-packet", "1M")
			db := tr.goOpen(t, s, "root", "")
			db.SetMaxOpenConns(1)
			ctx := t.Context()
			if _, err := db.ExecContext(ctx, "CREATE TABLE big (s longblob) ENGINE=queue"); err != nil {
				t.Fatal(err)
			}
			if _, err := db.ExecContext(ctx, "INSERT INTO big VALUES (?)", strings.Repeat("a", 900<<10)); err != nil {
				t.Fatalf("900 KB row under a 1 MB limit: %v", err)
			}
			over := "INSERT INTO big VALUES ('" + strings.Repeat("b", 2<<20) + "')"

			t.Run("go-sql-driver", func(t *testing.T) {
				for _, tc := range []struct {
					name string
					q    string
					args []any
				}{
					{"2 MB statement", over, nil},
					{"2 MB parameter of a prepared statement", "INSERT INTO big VALUES (?)", []any{strings.Repeat("c", 2<<20)}},
				} {
					// A connection of its own: the server closes it.
					_, err := tr.goOpen(t, s, "root", "").ExecContext(ctx, tc.q, tc.args...)
					var me *mysql.MySQLError
					if !errors.As(err, &me) || me.Number != 1153 || string(me.SQLState[:]) != "08S01" ||
						me.Message != "Got a packet bigger than 'max_allowed_packet' bytes" {
						t.Errorf("%s: %v; want 1153 (08S01)", tc.name, err)
					}
				}
			})
			t.Run("mysql CLI", func(t *testing.T) {
				out, _ := s.mysqlCLI(t, over+";\nSELECT 'not reached';\n", append([]string{"--password="}, append(tr.cli, "test")...)...)
				m := cliErrorRE.FindStringSubmatch(out)
				if m == nil || m[1] != "1153" || m[2] != "08S01" || m[3] != "Got a packet bigger than 'max_allowed_packet' bytes" {
					t.Fatalf("mysql CLI, 2 MB statement: %q; want ERROR 1153 (08S01)", truncateOut(out))
				}
				if strings.Contains(out, "not reached") {
					t.Errorf("the connection went on after 1153:\n%s", truncateOut(out))
				}
			})
			var n int
			if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM big").Scan(&n); err != nil || n != 1 {
				t.Fatalf("after the oversized packets: count %d, %v; want 1", n, err)
			}
			if got := strings.Count(s.logs.String(), "panic"); got != 0 {
				t.Errorf("server log has %d panics:\n%s", got, s.logs)
			}
		})
	}
}

// TestTLSStatistics: COM_STATISTICS (mysqladmin status) is answered over
// TLS as over plaintext (before, its answer went out in plaintext inside
// the TLS stream, and the client failed with "TLS/SSL error: wrong version
// number").
func TestTLSStatistics(t *testing.T) {
	requireClients(t, "mysqladmin")
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			s, _ := tr.server(t)
			args := append([]string{"--no-defaults", "-h127.0.0.1", "-P" + s.port, "-uroot", "--connect-timeout=10"}, tr.cli...)
			ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
			defer cancel()
			out, err := exec.CommandContext(ctx, "mysqladmin", append(args, "status")...).CombinedOutput()
			if err != nil || !strings.HasPrefix(string(out), "Uptime: ") || !strings.Contains(string(out), "Threads: 1 ") {
				t.Fatalf("mysqladmin status: %v\n%s", err, out)
			}
		})
	}
}

func truncateOut(s string) string {
	if len(s) > 500 {
		return s[:500] + fmt.Sprintf("... (%d bytes)", len(s))
	}
	return s
}

// TestTLSBadHandshake: a raw client sends handshake responses announcing
// more auth data than they hold. Over plaintext each gets ERROR 1043 (08S01)
// Bad handshake. Over TLS (crypto/tls, then the crafted packet) an overflow
// past go-mysql's read buffer gets 1043 too; one within it makes go-mysql
// panic on the decrypted packet, which q4mproxy cannot look at first: the
// connection is closed as a failed handshake, not as a server fault. Either
// way the server goes on serving.
func TestTLSBadHandshake(t *testing.T) {
	bad := append([]byte{0xff, 0x13, 0x04, '#'}, "08S01Bad handshake"...)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			s, _ := tr.server(t)
			for _, tc := range []struct {
				announced byte // auth data bytes announced; 2 are sent
				tlsReply  bool // over TLS: ERROR 1043 (else the connection is closed)
			}{{3, false}, {8, false}, {40, true}} {
				reply, err := testingutil.BadHandshake(t, s.addr, tr.name == "tls", tc.announced, ioTimeout)
				switch {
				case tr.name != "tls" || tc.tlsReply:
					if !bytes.Equal(reply, bad) {
						t.Errorf("%d bytes of auth data announced, 2 sent: %q, %v; want ERROR 1043 (08S01) Bad handshake", tc.announced, reply, err)
					}
				case err == nil:
					t.Errorf("%d bytes of auth data announced, 2 sent: %q; want the connection closed", tc.announced, reply)
				}
			}
			if strings.Contains(s.logs.String(), "panic in connection") {
				t.Errorf("a malformed handshake response was taken for a server fault:\n%s", grepLines(s.logs.String(), "panic"))
			}
			if err := tr.goOpen(t, s, "root", "").PingContext(t.Context()); err != nil {
				t.Errorf("a good login after the malformed ones: %v", err)
			}
		})
	}
}
