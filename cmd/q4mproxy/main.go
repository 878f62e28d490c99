// Command q4mproxy is a MySQL-protocol server that emulates Q4M (Queue for
// MySQL), storing its queues durably in an embedded Pebble store.
//
//	q4mproxy [--listen 127.0.0.1:3306] [--data-dir ./q4m-data] [--user root] [--password ...]
//	q4mproxy --config /etc/q4mproxy/q4mproxy.toml [--print-config]
//
// Every flag is also a Q4MPROXY_* environment variable and a key of the
// --config TOML file; the command line wins over the environment, which
// wins over the file (config.go). SIGTERM or SIGINT shuts down gracefully;
// SIGHUP reloads the users file and the TLS certificate (reload.go).
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	gomysql "github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/internal/logflag"
	"github.com/q4mproxy/q4mproxy/internal/netdial"
	"github.com/q4mproxy/q4mproxy/internal/progress"
	"github.com/q4mproxy/q4mproxy/ops"
	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/queue/sqlstore"
	"github.com/q4mproxy/q4mproxy/server"
	"github.com/q4mproxy/q4mproxy/sqlfront"
	"github.com/q4mproxy/q4mproxy/upstream"
	"github.com/q4mproxy/q4mproxy/valve"
)

// The stores, as the operations server reads them.
var (
	_ ops.Store  = (*queue.DB)(nil)
	_ ops.Store  = (*sqlstore.Store)(nil)
	_ ops.Pinger = (*sqlstore.Store)(nil)
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func main() {
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
			os.Exit(0)
		}
		if errors.Is(err, errPrintConfig) {
			if err := m.writeConfig(os.Stdout, m.flags); err != nil {
				fmt.Fprintln(os.Stderr, "q4mproxy:", err)
				os.Exit(1)
			}
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "q4mproxy:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := func() {}
	if m.CPUProfile != "" {
		f, err := os.Create(m.CPUProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "q4mproxy: --cpu-profile:", err)
			os.Exit(2)
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
	}
	err := m.Run(ctx)
	stop() // a second signal now kills the process at once
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	stopProfile()
	if err != nil {
		slog.Error("exiting", "err", err)
		os.Exit(1)
	}
}

var (
	errVersion     = errors.New("version printed")
	errPrintConfig = errors.New("--print-config: print the settings")
)

// Main is the program: flags, then Run until the context ends, then Close.
type Main struct {
	Listen           string
	DataDir          string
	BackupDir        string
	User             string
	Password         string
	LogLevel         string
	LogFormat        string
	Sync             bool
	DefaultAuth      string
	ShutdownTimeout  time.Duration
	HandshakeTimeout time.Duration
	MaxAllowedPacket int64
	MaxConnections   int
	ProgressInterval time.Duration
	ConfigFile       string
	DefaultValve     bool
	UsersFile        string
	CPUProfile       string
	TLSCert, TLSKey  string
	RequireSecure    bool
	Upstream         string
	UpstreamTLS      string
	UpstreamCA       string
	HTTPListen       string
	QueueStore       string
	QueueStoreUser   string
	QueueStorePass   string
	QueueStoreDB     string

	flags      *flag.FlagSet // as ParseFlags left them
	configFile *configFile   // --config, if any
	ops        *ops.Server
	log        *slog.Logger
	db         queue.Store
	srv        *server.Server
	listener   net.Listener
	valves     []*valve.Valve
	stopValves context.CancelFunc
	valvesDone chan struct{}
	cert       atomic.Pointer[tls.Certificate] // served to new TLS connections
}

// NewMain returns a Main with the defaults.
func NewMain() *Main {
	return &Main{
		Listen:           "127.0.0.1:3306",
		DataDir:          "./q4m-data",
		User:             "root",
		LogLevel:         "info",
		LogFormat:        "text",
		Sync:             true,
		DefaultAuth:      mysql.AUTH_NATIVE_PASSWORD,
		ShutdownTimeout:  10 * time.Second,
		HandshakeTimeout: 10 * time.Second,
		MaxAllowedPacket: 64 << 20,
		MaxConnections:   151,
		ProgressInterval: progress.DefaultInterval,
	}
}

// ParseFlags reads the settings: the command line, then for each flag not
// on it its Q4MPROXY_* environment variable, then the --config file, then
// the default (see config.go). With --print-config it returns
// errPrintConfig once the settings are checked.
func (m *Main) ParseFlags(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("q4mproxy", flag.ContinueOnError)
	m.flags = fs
	fs.SetOutput(out)
	fs.StringVar(&m.Listen, "listen", m.Listen, "`host:port` to listen on (port 0 picks a free port)")
	fs.StringVar(&m.DataDir, "data-dir", m.DataDir, "`directory` holding the queues")
	fs.StringVar(&m.BackupDir, "backup-dir", "", "`directory` where SELECT queue_backup('name') writes online copies of the store, each a data directory (default data-dir/backups)")
	fs.StringVar(&m.User, "user", m.User, "MySQL user name clients log in with")
	fs.StringVar(&m.Password, "password", m.Password, "password of --user (or $Q4MPROXY_PASSWORD, which keeps it out of the process list)")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "debug, info, warn or error")
	fs.StringVar(&m.LogFormat, "log-format", m.LogFormat, "text or json")
	syncMode := fs.String("sync", "on", "on: every acknowledged write is synced to disk (group commit); off: UNSAFE, for benchmarks")
	fs.StringVar(&m.DefaultAuth, "default-auth", m.DefaultAuth, "auth plugin proposed in the handshake: mysql_native_password or caching_sha2_password")
	fs.DurationVar(&m.ShutdownTimeout, "shutdown-timeout", m.ShutdownTimeout, "how long a graceful shutdown waits for busy connections")
	fs.DurationVar(&m.HandshakeTimeout, "handshake-timeout", m.HandshakeTimeout, "how long a new connection may take to log in")
	fs.IntVar(&m.MaxConnections, "max-connections", m.MaxConnections, "most connections served at once; one more gets ERROR 1040")
	fs.DurationVar(&m.ProgressInterval, "progress-interval", m.ProgressInterval, "how often long operations (recovering a backlog at startup, queue_compact) log their progress; negative: never")
	maxPacket := fs.String("max-allowed-packet", "64M", "largest packet (so: statement or row) a client may send: bytes, or with a K, M or G suffix")
	fs.StringVar(&m.CPUProfile, "cpu-profile", "", "write a CPU profile to `file` until shutdown (for performance work)")
	fs.StringVar(&m.UsersFile, "users-file", "", "`file` of further users, one \"name:password\" per line (# comments); keep it private (mode 0600)")
	fs.StringVar(&m.TLSCert, "tls-cert", "", "TLS certificate `file` (PEM); with --tls-key, clients may use TLS")
	fs.StringVar(&m.TLSKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.BoolVar(&m.RequireSecure, "require-secure-transport", false, "refuse logins over plaintext connections (needs --tls-cert)")
	fs.StringVar(&m.ConfigFile, "config", "", "TOML `file` of settings (any flag, as name = value) and valves; the command line and Q4MPROXY_* variables win over it")
	printConfig := fs.Bool("print-config", false, "print the effective settings as a TOML config file (secrets hidden) and exit")
	fs.BoolVar(&m.DefaultValve, "valve", false, "run one valve with Mvalve's defaults (tables q_emerg, q_timed, q_incoming, q_statslog in database test)")
	fs.StringVar(&m.Upstream, "upstream", m.Upstream, "MySQL/MariaDB server (`host:port` or unix socket path) that runs every statement not about queue tables; clients' users log in there with the same name and password (default none: queue tables only)")
	fs.StringVar(&m.UpstreamTLS, "upstream-tls", "off", "TLS to the upstream: off, on (the certificate is verified: system roots or --upstream-ca) or skip-verify (encrypted, unverified: tests only)")
	fs.StringVar(&m.UpstreamCA, "upstream-ca", "", "CA certificate `file` (PEM) that signs the upstream's certificate (--upstream-tls on)")
	fs.StringVar(&m.HTTPListen, "http-listen", "", "`host:port` of the HTTP listener serving /metrics (Prometheus), /healthz, /readyz and the status page at /; off if empty (keep it on loopback)")
	fs.StringVar(&m.QueueStore, "queue-store", "embedded", "where the queue tables live: embedded (Pebble, in --data-dir) or upstream (InnoDB tables in the --upstream database, shared by every q4mproxy pointed at it; see README \"Deployment\")")
	fs.StringVar(&m.QueueStoreUser, "queue-store-user", "root", "upstream user q4mproxy's own connections to the queue store log in as (--queue-store upstream)")
	fs.StringVar(&m.QueueStorePass, "queue-store-password", "", "password of --queue-store-user (or $Q4MPROXY_QUEUE_STORE_PASSWORD)")
	fs.StringVar(&m.QueueStoreDB, "queue-store-database", "q4mproxy", "upstream database holding the queue store (--queue-store upstream); created if missing")
	version := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: q4mproxy [flags]\n\nA MySQL-protocol server emulating the Q4M queue engine.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *version {
		fmt.Fprintln(out, "q4mproxy", Version)
		return errVersion
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := m.applyConfig(fs); err != nil {
		return err
	}
	if (m.TLSCert == "") != (m.TLSKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if m.RequireSecure && m.TLSCert == "" {
		return fmt.Errorf("--require-secure-transport needs --tls-cert and --tls-key")
	}
	if m.MaxConnections < 1 {
		return fmt.Errorf("--max-connections must be at least 1")
	}
	n, err := parseSize(*maxPacket)
	if err != nil || n < 1024 || n > 1<<30 {
		return fmt.Errorf("--max-allowed-packet must be between 1K and 1G, not %q", *maxPacket)
	}
	m.MaxAllowedPacket = n
	switch *syncMode {
	case "on":
		m.Sync = true
	case "off":
		m.Sync = false
	default:
		return fmt.Errorf("--sync must be on or off, not %q", *syncMode)
	}
	switch m.QueueStore {
	case "embedded":
	case "upstream":
		if m.Upstream == "" {
			return errors.New("--queue-store upstream needs --upstream")
		}
	default:
		return fmt.Errorf("--queue-store must be embedded or upstream, not %q", m.QueueStore)
	}
	switch m.DefaultAuth {
	case mysql.AUTH_NATIVE_PASSWORD, mysql.AUTH_CACHING_SHA2_PASSWORD:
	default:
		return fmt.Errorf("--default-auth must be mysql_native_password or caching_sha2_password")
	}
	log, err := logflag.New(os.Stderr, m.LogLevel, m.LogFormat)
	if err != nil {
		return err
	}
	m.log = log
	slog.SetDefault(m.log)
	host, _, err := net.SplitHostPort(m.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if *printConfig {
		return errPrintConfig
	}
	if m.Password == "" && !isLoopback(host) {
		return fmt.Errorf("refusing to listen on %s without a password: set --password or Q4MPROXY_PASSWORD", m.Listen)
	}
	_, err = m.users()
	return err
}

// users returns --user/--password and the users of --users-file. Beyond
// loopback, a user without a password is an error.
func (m *Main) users() (map[string]string, error) {
	users := map[string]string{m.User: m.Password}
	if m.UsersFile == "" {
		return users, nil
	}
	b, err := os.ReadFile(m.UsersFile)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(m.Listen)
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, pw, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s:%d: want name:password", m.UsersFile, i+1)
		}
		if pw == "" && !isLoopback(host) {
			return nil, fmt.Errorf("refusing to listen on %s without a password for user %q in --users-file", m.Listen, name)
		}
		users[name] = pw
	}
	return users, nil
}

// upstreamTLS is the TLS configuration of upstream connections (nil: none).
func (m *Main) upstreamTLS() (*tls.Config, error) {
	switch m.UpstreamTLS {
	case "", "off":
		return nil, nil
	case "skip-verify":
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, nil //nolint:gosec // asked for by name
	case "on":
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if m.UpstreamCA != "" {
			pem, err := os.ReadFile(m.UpstreamCA)
			if err != nil {
				return nil, fmt.Errorf("--upstream-ca: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--upstream-ca %s: no certificate found", m.UpstreamCA)
			}
		}
		return t, nil
	}
	return nil, fmt.Errorf("--upstream-tls must be off, on or skip-verify, not %q", m.UpstreamTLS)
}

// parseSize parses "65536", "64K", "64M" or "1G".
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToUpper(s), "K"):
		mult, s = 1<<10, s[:len(s)-1]
	case strings.HasSuffix(strings.ToUpper(s), "M"):
		mult, s = 1<<20, s[:len(s)-1]
	case strings.HasSuffix(strings.ToUpper(s), "G"):
		mult, s = 1<<30, s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run opens the store, starts the server and serves until ctx is done.
func (m *Main) Run(ctx context.Context) error {
	if m.log == nil {
		m.log = slog.Default()
	}
	if err := os.MkdirAll(m.DataDir, 0o700); err != nil {
		return err
	}
	var observer *queue.Observer
	if m.HTTPListen != "" { // first: /readyz answers 503 while the store opens
		if err := m.startHTTP(); err != nil {
			return err
		}
		observer = m.ops.Observer()
	}
	db, err := m.openStore(observer)
	if err != nil {
		return err
	}
	m.db = db
	if !m.Sync {
		m.log.Warn("syncing is off: acknowledged writes may be lost on a crash (--sync=off)")
	}
	key, err := loadOrCreateKey(filepath.Join(m.DataDir, "rsa_key.pem"))
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", m.Listen)
	if err != nil {
		return err
	}
	m.listener = l
	port := l.Addr().(*net.TCPAddr).Port
	hostname, _ := os.Hostname()
	version := "5.7.99-q4mproxy-" + Version
	users, err := m.users()
	if err != nil {
		return err
	}
	var tlsConfig *tls.Config
	if m.TLSCert != "" {
		cert, err := m.loadCert()
		if err != nil {
			return err
		}
		m.cert.Store(cert)
		tlsConfig = &tls.Config{
			// Each handshake takes the certificate of the moment: SIGHUP
			// replaces it for new connections.
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return m.cert.Load(), nil },
			MinVersion:     tls.VersionTLS12,
		}
	}
	var up *upstream.Config
	if m.Upstream != "" {
		up = &upstream.Config{Addr: m.Upstream, Logger: m.log.With("component", "upstream")}
		if up.TLS, err = m.upstreamTLS(); err != nil {
			return err
		}
	}
	srv := server.New(nil, server.Config{
		Upstream:               up,
		Version:                version,
		Users:                  users,
		TLS:                    tlsConfig,
		RequireSecureTransport: m.RequireSecure,
		DefaultAuth:            m.DefaultAuth,
		RSAKey:                 key,
		HandshakeTimeout:       m.HandshakeTimeout,
		MaxAllowedPacket:       m.MaxAllowedPacket,
		MaxConnections:         m.MaxConnections,
		Logger:                 m.log,
	})
	backupDir := m.BackupDir
	if backupDir == "" {
		backupDir = filepath.Join(m.DataDir, "backups")
	}
	if backupDir, err = filepath.Abs(backupDir); err != nil {
		return err
	}
	eng := sqlfront.NewEngine(db, sqlfront.Config{
		BackupDir:        backupDir,
		Version:          version,
		VersionComment:   "q4mproxy " + Version + " (Q4M emulation on Pebble)",
		MaxAllowedPacket: m.MaxAllowedPacket,
		ValveStatus:      m.valveStatus,
		Port:             port,
		Hostname:         hostname,
		Kill:             srv.Kill,
		ProcessList:      srv.ProcessList,
		Status:           srv.StatusRows,
		FlushStatus:      srv.FlushStatus,
		Upstream:         up != nil,
		Logger:           m.log,
	})
	srv.SetEngine(eng)
	m.srv = srv
	if err := m.startValves(eng); err != nil {
		return err
	}
	stopReloads := m.handleReloads()
	defer stopReloads()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	if m.ops != nil {
		m.ops.Attach(ops.Sources{Store: db, Server: srv, Valves: m.valves})
	}
	m.log.Info("listening", "addr", l.Addr().String(), "data_dir", m.DataDir, "version", Version, "upstream", m.Upstream)
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return err
	}
}

// Close shuts the server down gracefully and closes the store.
func (m *Main) Close() error {
	var errs []error
	if m.ops != nil {
		m.ops.SetStopping() // /readyz: 503 from now on
	}
	if m.srv != nil {
		start := time.Now()
		m.log.Info("shutdown started")
		ctx, cancel := context.WithTimeout(context.Background(), m.ShutdownTimeout)
		if err := m.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shutdown: %w", err))
		}
		cancel()
		m.log.Info("connections closed", "duration", time.Since(start).Round(time.Millisecond))
	} else if m.listener != nil {
		_ = m.listener.Close()
	}
	if m.stopValves != nil {
		m.stopValves()
		<-m.valvesDone
	}
	if m.ops != nil { // before the store closes: no scrape reads it after
		ctx, cancel := context.WithTimeout(context.Background(), m.ShutdownTimeout)
		if err := m.ops.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("http shutdown: %w", err))
		}
		cancel()
	}
	if m.db != nil {
		if err := m.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startHTTP starts the operations listener (--http-listen): metrics,
// probes and the status page.
func (m *Main) startHTTP() error {
	l, err := net.Listen("tcp", m.HTTPListen)
	if err != nil {
		return fmt.Errorf("--http-listen: %w", err)
	}
	m.ops = ops.New(ops.Config{Version: Version, Upstream: m.Upstream, Logger: m.log})
	go func() {
		if err := m.ops.Serve(l); err != nil {
			m.log.Error("http listener failed", "err", err)
		}
	}()
	m.log.Info("http listening", "addr", l.Addr().String())
	if host, _, _ := net.SplitHostPort(m.HTTPListen); !isLoopback(host) {
		m.log.Warn("the HTTP listener is not on loopback: anyone who reaches it sees the statements clients run (the status page's processlist)", "addr", m.HTTPListen)
	}
	return nil
}

// openStore opens the queue store --queue-store names.
func (m *Main) openStore(observer *queue.Observer) (queue.Store, error) {
	if m.QueueStore != "upstream" {
		return queue.Open(filepath.Join(m.DataDir, "store"), &queue.Options{
			Logger:           m.log,
			NoSync:           !m.Sync,
			InitialDatabases: []string{"test"},
			Observer:         observer,
			ProgressInterval: m.ProgressInterval,
		})
	}
	cfg := gomysql.NewConfig()
	cfg.User, cfg.Passwd = m.QueueStoreUser, m.QueueStorePass
	cfg.Net, cfg.Addr = storeNet, m.Upstream
	if strings.HasPrefix(m.Upstream, "/") {
		cfg.Net = "unix"
	} else if _, _, err := net.SplitHostPort(m.Upstream); err != nil {
		cfg.Addr = net.JoinHostPort(m.Upstream, "3306")
	}
	cfg.Timeout = storeDialTimeout
	switch m.UpstreamTLS {
	case "on":
		tc, err := m.upstreamTLS()
		if err != nil {
			return nil, err
		}
		if err := gomysql.RegisterTLSConfig("q4mproxy-store", tc); err != nil {
			return nil, err
		}
		cfg.TLSConfig = "q4mproxy-store"
	case "skip-verify":
		cfg.TLSConfig = "skip-verify"
	}
	return sqlstore.Open(cfg.FormatDSN(), &sqlstore.Options{
		Database:         m.QueueStoreDB,
		Logger:           m.log.With("component", "queue-store"),
		InitialDatabases: []string{"test"},
		Observer:         observer,
	})
}

// storeNet is the network name under which the store's TCP connections
// are dialed by netdial (keepalive and TCP_USER_TIMEOUT: a vanished
// database host is noticed within netdial.DeadAfter); storeDialTimeout
// bounds connecting.
const (
	storeNet         = "q4mproxy-tcp"
	storeDialTimeout = 5 * time.Second
)

func init() {
	gomysql.RegisterDialContext(storeNet, func(ctx context.Context, addr string) (net.Conn, error) {
		return netdial.DialContext(ctx, "tcp", addr, storeDialTimeout)
	})
}

// startValves starts the configured valves; they stop in Close.
func (m *Main) startValves(codec valve.Codec) error {
	var settings []valve.Settings
	if m.configFile != nil {
		settings = append(settings, m.configFile.valves...)
	}
	if m.DefaultValve {
		settings = append(settings, valve.Defaults())
	}
	for _, s := range settings {
		v, err := valve.New(m.db, codec, s, m.log)
		if err != nil {
			return err
		}
		m.valves = append(m.valves, v)
	}
	if len(m.valves) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	m.stopValves, m.valvesDone = cancel, make(chan struct{})
	var wg sync.WaitGroup
	// With the upstream store, each valve runs on the one node elected
	// for it through the upstream (the others stand by).
	el, _ := m.db.(*sqlstore.Store)
	for _, v := range m.valves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := v.Run
			if el != nil {
				run = func(ctx context.Context) error { return v.RunElected(ctx, el, v.Election()) }
			}
			if err := run(ctx); err != nil {
				m.log.Error("valve failed", "valve", v.Name(), "err", err)
			}
		}()
	}
	go func() { wg.Wait(); close(m.valvesDone) }()
	return nil
}

// valveStatus answers SHOW VALVE STATUS.
func (m *Main) valveStatus() ([]string, [][]any) {
	cols := []string{"Valve", "Destination", "Admitted", "Throttled", "Dropped", "Released", "Scheduled", "Next_release", "Bucket_fill", "Drop_until"}
	var rows [][]any
	stamp := func(t time.Time) any {
		if t.IsZero() {
			return nil
		}
		return t.Format("2006-01-02 15:04:05.000000")
	}
	for _, v := range m.valves {
		for _, s := range v.Status() {
			rows = append(rows, []any{s.Valve, s.Destination, strconv.FormatUint(s.Admitted, 10), strconv.FormatUint(s.Throttled, 10),
				strconv.FormatUint(s.Dropped, 10), strconv.FormatUint(s.Released, 10), strconv.Itoa(s.Scheduled),
				stamp(s.NextRelease), fmt.Sprintf("%d/%d", s.InWindow, s.MaxItems), stamp(s.DropUntil)})
		}
	}
	return cols, rows
}

// loadOrCreateKey keeps the RSA key that caching_sha2_password uses over
// plaintext connections, so clients that pinned its public key keep working.
func loadOrCreateKey(path string) (*rsa.PrivateKey, error) {
	if b, err := os.ReadFile(path); err == nil {
		if blk, _ := pem.Decode(b); blk != nil {
			if k, err := x509.ParsePKCS1PrivateKey(blk.Bytes); err == nil {
				return k, nil
			}
		}
		return nil, fmt.Errorf("%s: not an RSA private key", path)
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return nil, err
	}
	return k, nil
}
