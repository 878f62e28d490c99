package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// errNoTable is the operand error of Q4M's script for a DSN without table=.
var errNoTable = errors.New("table name missing in operand")

// endpoint is one side of the relay: where to connect and which queue
// table to read from or write to. It is parsed from a DBI data source name
// with an extra table= component.
type endpoint struct {
	Driver   string // DBI driver: "mysql" or "MariaDB"
	Table    string // queue table, "name" or "db.name"
	Database string // default database; empty for none
	Host     string
	Port     int
	User     string
	Password string
	// Ignored lists the keys the forwarder does not use (mysql_*, DBI
	// attributes, unknown keys), for a debug log.
	Ignored []string
}

// dsnDefaults holds what DBI and the MySQL client library fall back to
// when the DSN does not say.
type dsnDefaults struct {
	User     string // $DBI_USER, else the login name (root when euid is 0)
	Password string // $DBI_PASS, else empty
}

// defaultsFromEnv returns the defaults DBD::mysql would use: DBI->connect
// without a user takes $DBI_USER and $DBI_PASS, and libmysqlclient then
// falls back to the login name ("root" when running as root) and no
// password.
func defaultsFromEnv() dsnDefaults {
	d := dsnDefaults{User: os.Getenv("DBI_USER"), Password: os.Getenv("DBI_PASS")}
	if d.User == "" {
		d.User = loginName()
	}
	return d
}

// loginName is libmysqlclient's default user name on Unix.
func loginName() string {
	if os.Geteuid() == 0 {
		return "root"
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	for _, env := range []string{"USER", "LOGNAME", "LOGIN"} {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return "UNKNOWN_USER"
}

const (
	defaultHost = "127.0.0.1"
	defaultPort = 3306
)

// parseDSN parses a DBI data source name with a table= component, e.g.
//
//	dbi:mysql:database=db1;table=tbl1;host=127.0.0.1;port=3306;user=foo;password=XXX
//
// The prefix is "dbi:" (any case) and the driver "mysql" or "MariaDB",
// optionally followed by DBI attributes in parentheses, which are ignored.
// The rest is parsed the way DBD::mysql does: components are separated by
// ';' or ':', key=value pairs may come in any order ("db" and "dbname"
// mean "database", "hostname" means "host"), and bare values fill
// database, host and port in that order ("dbi:mysql:db1:host:3306"). The
// table= component is separated by ';' only, as in Q4M's script, so a
// table name may contain ':'. Keys the forwarder does not use (mysql_*,
// mariadb_*, anything unknown) are listed in Ignored.
func parseDSN(dsn string, def dsnDefaults) (endpoint, error) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || !strings.EqualFold(scheme, "dbi") {
		return endpoint{}, fmt.Errorf("not a DBI data source name (dbi:mysql:...): %q", redactDSN(dsn))
	}
	driver, rest, ok := strings.Cut(rest, ":")
	if !ok {
		return endpoint{}, fmt.Errorf("not a DBI data source name (dbi:mysql:...): %q", redactDSN(dsn))
	}
	var ep endpoint
	if i := strings.IndexByte(driver, '('); i >= 0 && strings.HasSuffix(driver, ")") {
		if attrs := driver[i+1 : len(driver)-1]; attrs != "" {
			ep.Ignored = append(ep.Ignored, "("+attrs+")")
		}
		driver = driver[:i]
	}
	switch driver {
	case "mysql", "MariaDB":
		ep.Driver = driver
	default:
		return endpoint{}, fmt.Errorf("unsupported DBI driver %q in %q: want mysql or MariaDB", driver, redactDSN(dsn))
	}

	// Take table= out first, splitting on ';' only, as Q4M's script does.
	var kept []string
	haveTable := false
	for _, part := range strings.Split(rest, ";") {
		if v, ok := strings.CutPrefix(part, "table="); ok {
			ep.Table, haveTable = v, true
			continue
		}
		kept = append(kept, part)
	}
	if !haveTable || ep.Table == "" {
		return endpoint{}, fmt.Errorf("%w: %s", errNoTable, redactDSN(dsn))
	}

	// The rest as DBD::mysql parses it: ';' or ':' separated. An IPv6
	// address may be written in brackets: host=[::1].
	var haveDB, haveHost, havePort, haveUser, havePass bool
	var port string
	for _, tok := range splitDBD(strings.Join(kept, ";")) {
		if tok == "" {
			continue
		}
		key, val, isPair := strings.Cut(tok, "=")
		if !isPair {
			switch { // positional: database, host, port
			case !haveDB:
				ep.Database, haveDB = tok, true
			case !haveHost:
				ep.Host, haveHost = tok, true
			case !havePort:
				port, havePort = tok, true
			default:
				ep.Ignored = append(ep.Ignored, tok)
			}
			continue
		}
		switch key {
		case "database", "db", "dbname":
			ep.Database, haveDB = val, true
		case "host", "hostname":
			ep.Host, haveHost = val, true
		case "port":
			port, havePort = val, true
		case "user":
			ep.User, haveUser = val, true
		case "password":
			ep.Password, havePass = val, true
		default:
			ep.Ignored = append(ep.Ignored, key)
		}
	}
	ep.Host = strings.TrimSuffix(strings.TrimPrefix(ep.Host, "["), "]")
	if ep.Host == "" {
		ep.Host = defaultHost
	}
	ep.Port = defaultPort
	if havePort && port != "" {
		p, err := strconv.Atoi(port)
		if err != nil || p < 1 || p > 65535 {
			return endpoint{}, fmt.Errorf("bad port %q in %q", port, redactDSN(dsn))
		}
		ep.Port = p
	}
	if !haveUser {
		ep.User = def.User
	}
	if !havePass {
		ep.Password = def.Password
	}
	return ep, nil
}

// splitDBD splits at ';' and ':' like DBD::mysql, except inside [...]
// (an IPv6 address).
func splitDBD(s string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '[':
			depth++
		case ']':
			if depth > 0 {
				depth--
			}
		case ';', ':':
			if depth == 0 {
				out = append(out, s[start:i])
				start = i + 1
			}
		}
	}
	return append(out, s[start:])
}

// redactDSN hides a password=... value for error messages.
func redactDSN(dsn string) string {
	i := strings.Index(dsn, "password=")
	if i < 0 {
		return dsn
	}
	j := i + len("password=")
	end := strings.IndexAny(dsn[j:], ";:")
	if end < 0 {
		return dsn[:j] + "xxx"
	}
	return dsn[:j] + "xxx" + dsn[j+end:]
}

// Addr is the endpoint's host:port.
func (e endpoint) Addr() string {
	return net.JoinHostPort(e.Host, strconv.Itoa(e.Port))
}

// String describes the endpoint for logs, without the password.
func (e endpoint) String() string {
	return fmt.Sprintf("%s@%s/%s table=%s", e.User, e.Addr(), e.Database, e.Table)
}

// config is the go-sql-driver/mysql configuration for e. Statements go in
// the text protocol with arguments interpolated (as DBD::mysql sends them);
// readTimeout must exceed the longest queue_wait.
func (e endpoint) config(dialTimeout, readTimeout, writeTimeout time.Duration, log *slog.Logger) *mysql.Config {
	cfg := mysql.NewConfig()
	cfg.Logger = driverLogger{log}
	cfg.User = e.User
	cfg.Passwd = e.Password
	cfg.Net = "tcp"
	cfg.Addr = e.Addr()
	cfg.DBName = e.Database
	cfg.InterpolateParams = true
	cfg.Timeout = dialTimeout
	cfg.ReadTimeout = readTimeout
	cfg.WriteTimeout = writeTimeout
	return cfg
}

// driverLogger passes go-sql-driver's own messages (such as "invalid
// connection" when a server goes away) to slog at debug level: the
// forwarder reports the error itself.
type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) {
	if l.log != nil {
		l.log.Debug("driver", "detail", strings.TrimSpace(fmt.Sprint(v...)))
	}
}
