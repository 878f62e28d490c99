// Command q4mproxy is a MySQL-protocol server that emulates Q4M (Queue for
// MySQL), storing its queues durably in an embedded Pebble store.
//
//	q4mproxy [--listen 127.0.0.1:3306] [--data-dir ./q4m-data] [--user root] [--password ...]
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
	"syscall"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/server"
	"github.com/q4mproxy/q4mproxy/sqlfront"
	"github.com/q4mproxy/q4mproxy/upstream"
	"github.com/q4mproxy/q4mproxy/valve"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

func main() {
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
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

var errVersion = errors.New("version printed")

// Main is the program: flags, then Run until the context ends, then Close.
type Main struct {
	Listen           string
	DataDir          string
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
	ConfigFile       string
	DefaultValve     bool
	UsersFile        string
	CPUProfile       string
	TLSCert, TLSKey  string
	RequireSecure    bool
	Upstream         string
	UpstreamTLS      string
	UpstreamCA       string

	log        *slog.Logger
	db         *queue.DB
	srv        *server.Server
	listener   net.Listener
	valves     []*valve.Valve
	stopValves context.CancelFunc
	valvesDone chan struct{}
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
	}
}

// ParseFlags reads the command line.
func (m *Main) ParseFlags(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("q4mproxy", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&m.Listen, "listen", m.Listen, "`host:port` to listen on (port 0 picks a free port)")
	fs.StringVar(&m.DataDir, "data-dir", m.DataDir, "`directory` holding the queues")
	fs.StringVar(&m.User, "user", m.User, "MySQL user name clients log in with")
	fs.StringVar(&m.Password, "password", os.Getenv("Q4MPROXY_PASSWORD"), "password of --user (default $Q4MPROXY_PASSWORD, else empty)")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "debug, info, warn or error")
	fs.StringVar(&m.LogFormat, "log-format", m.LogFormat, "text or json")
	syncMode := fs.String("sync", "on", "on: every acknowledged write is synced to disk (group commit); off: UNSAFE, for benchmarks")
	fs.StringVar(&m.DefaultAuth, "default-auth", m.DefaultAuth, "auth plugin proposed in the handshake: mysql_native_password or caching_sha2_password")
	fs.DurationVar(&m.ShutdownTimeout, "shutdown-timeout", m.ShutdownTimeout, "how long a graceful shutdown waits for busy connections")
	fs.DurationVar(&m.HandshakeTimeout, "handshake-timeout", m.HandshakeTimeout, "how long a new connection may take to log in")
	fs.IntVar(&m.MaxConnections, "max-connections", m.MaxConnections, "most connections served at once; one more gets ERROR 1040")
	maxPacket := fs.String("max-allowed-packet", "64M", "largest packet (so: statement or row) a client may send: bytes, or with a K, M or G suffix")
	fs.StringVar(&m.CPUProfile, "cpu-profile", "", "write a CPU profile to `file` until shutdown (for performance work)")
	fs.StringVar(&m.UsersFile, "users-file", "", "`file` of further users, one \"name:password\" per line (# comments); keep it private (mode 0600)")
	fs.StringVar(&m.TLSCert, "tls-cert", "", "TLS certificate `file` (PEM); with --tls-key, clients may use TLS")
	fs.StringVar(&m.TLSKey, "tls-key", "", "TLS private key `file` (PEM)")
	fs.BoolVar(&m.RequireSecure, "require-secure-transport", false, "refuse logins over plaintext connections (needs --tls-cert)")
	fs.StringVar(&m.ConfigFile, "config", "", "TOML `file` configuring valves (Mvalve's throttling pipe run by the server); see README")
	fs.BoolVar(&m.DefaultValve, "valve", false, "run one valve with Mvalve's defaults (tables q_emerg, q_timed, q_incoming, q_statslog in database test)")
	fs.StringVar(&m.Upstream, "upstream", os.Getenv("Q4MPROXY_UPSTREAM"), "MySQL/MariaDB server (`host:port` or unix socket path) that runs every statement not about queue tables; clients' users log in there with the same name and password (default $Q4MPROXY_UPSTREAM, else none: queue tables only)")
	fs.StringVar(&m.UpstreamTLS, "upstream-tls", "off", "TLS to the upstream: off, on (the certificate is verified: system roots or --upstream-ca) or skip-verify (encrypted, unverified: tests only)")
	fs.StringVar(&m.UpstreamCA, "upstream-ca", "", "CA certificate `file` (PEM) that signs the upstream's certificate (--upstream-tls on)")
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
	switch m.DefaultAuth {
	case mysql.AUTH_NATIVE_PASSWORD, mysql.AUTH_CACHING_SHA2_PASSWORD:
	default:
		return fmt.Errorf("--default-auth must be mysql_native_password or caching_sha2_password")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(m.LogLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch m.LogFormat {
	case "text":
		m.log = slog.New(slog.NewTextHandler(os.Stderr, opts))
	case "json":
		m.log = slog.New(slog.NewJSONHandler(os.Stderr, opts))
	default:
		return fmt.Errorf("--log-format must be text or json, not %q", m.LogFormat)
	}
	slog.SetDefault(m.log)
	host, _, err := net.SplitHostPort(m.Listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	users, err := m.users()
	if err != nil {
		return err
	}
	if m.Password == "" && !isLoopback(host) {
		return fmt.Errorf("refusing to listen on %s without a password: set --password or Q4MPROXY_PASSWORD", m.Listen)
	}
	for u, pw := range users {
		if pw == "" && !isLoopback(host) {
			return fmt.Errorf("refusing to listen on %s without a password for user %q in --users-file", m.Listen, u)
		}
	}
	return nil
}

// users returns --user/--password and the users of --users-file.
func (m *Main) users() (map[string]string, error) {
	users := map[string]string{m.User: m.Password}
	if m.UsersFile == "" {
		return users, nil
	}
	b, err := os.ReadFile(m.UsersFile)
	if err != nil {
		return nil, err
	}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, pw, ok := strings.Cut(line, ":")
		if !ok || name == "" {
			return nil, fmt.Errorf("%s:%d: want name:password", m.UsersFile, i+1)
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
	db, err := queue.Open(filepath.Join(m.DataDir, "store"), &queue.Options{
		Logger:           m.log,
		NoSync:           !m.Sync,
		InitialDatabases: []string{"test"},
	})
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
		cert, err := tls.LoadX509KeyPair(m.TLSCert, m.TLSKey)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		tlsConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
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
	eng := sqlfront.NewEngine(db, sqlfront.Config{
		Version:          version,
		VersionComment:   "q4mproxy " + Version + " (Q4M emulation on Pebble)",
		MaxAllowedPacket: m.MaxAllowedPacket,
		ValveStatus:      m.valveStatus,
		Port:             port,
		Hostname:         hostname,
		Kill:             srv.Kill,
		ProcessList:      srv.ProcessList,
		Upstream:         up != nil,
		Logger:           m.log,
	})
	srv.SetEngine(eng)
	m.srv = srv
	if err := m.startValves(eng); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
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
	if m.db != nil {
		if err := m.db.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// startValves starts the configured valves; they stop in Close.
func (m *Main) startValves(codec valve.Codec) error {
	var settings []valve.Settings
	if m.ConfigFile != "" {
		cfg, err := valve.LoadConfig(m.ConfigFile)
		if err != nil {
			return err
		}
		settings = cfg.Valves
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
	for _, v := range m.valves {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := v.Run(ctx); err != nil {
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
