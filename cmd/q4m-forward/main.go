// Command q4m-forward relays messages from a Q4M queue table on one
// MySQL-protocol server to a queue table on another (or the same) server,
// exactly once. It reimplements Q4M's Perl script support-files/q4m-forward,
// with the same command line, as a daemon:
//
//	q4m-forward [--reset] [--sender=N] [options] SRC DST
//
// SRC and DST are DBI data source names with a table= part, for example
//
//	q4m-forward \
//	  "dbi:mysql:database=db1;table=tbl1;user=foo;password=XXX" \
//	  "dbi:mysql:database=db2;table=tbl2;host=bar;user=foo"
//
// Components may come in any order and are separated by ';' (or ':', as
// DBD::mysql allows). Besides table= (required) it reads database= (also
// db= or dbname=), host= (also hostname=; default 127.0.0.1, always over
// TCP: DBD::mysql would use the Unix socket for an omitted host or
// "localhost"), port= (default 3306), user= (default $DBI_USER, else the
// login name, or root when running as root: what DBI and libmysqlclient
// fall back to) and password= (default $DBI_PASS, else none). mysql_* and
// other keys are ignored, with a debug log. "dbi:MariaDB:" is accepted too.
//
// # Options
//
//	--reset              first queue_set_srcid in mode 'w' (see below)
//	--sender=N           sender slot 0..63 for the duplicate check (default 0)
//	--wait-timeout=S     seconds each queue_wait blocks (default 60)
//	--exit-when-empty    exit with status 0 when queue_wait times out
//	--log-every=N        Info line with the count and the rate (msg/s) every
//	                     N messages (default 1000; 0: never), and the source's
//	                     backlog, the percentage caught up and the time left
//	--progress-interval=D the same line also when D passed since the last one
//	                     and a message moved (default 2s; 0: never)
//	--log-level=L        debug, info, warn or error (default info)
//	--log-format=F       text or json (default text), on stderr
//	--shutdown-timeout=D after a signal, how long a row being written may
//	                     take to finish (default 10s)
//	--help, --version
//
// Options may also follow the operands, as with Getopt::Long.
//
// # How it relays
//
// It keeps one connection to each side and repeats the loop of Q4M's
// script (spec §4.3):
//
//  1. SRC: SELECT queue_wait(table, wait_timeout). This consumes the
//     previous row, whose INSERT has returned, and owns the next one. NULL
//     is fatal ("received an error from source (table not found?)"); 0
//     means nothing came within the timeout, so it waits again (or exits,
//     with --exit-when-empty).
//  2. SRC: SELECT queue_rowid().
//  3. SRC: SELECT * FROM table, which in owner mode is exactly the owned row,
//     read as raw bytes.
//  4. DST: SELECT queue_set_srcid(sender, mode, rowid). NULL or 0 is fatal.
//  5. DST: INSERT INTO table (columns sorted by name) VALUES (...), each
//     value sent as a quoted (binary) string or NULL, so columns are matched
//     by name.
//
// A source row is therefore consumed only after its INSERT returned. If the
// forwarder, a server or a connection dies before that, the row goes back
// to the source queue and is delivered again with the same rowid, and the
// destination drops the repeated INSERT because the rowid is not above the
// high-water mark it keeps for the sender slot. Hence exactly once, as long
// as one forwarder per (source table, sender slot) is the source table's
// only consumer.
//
// # Daemon behaviour
//
// When a connection fails (network error, server restart or shutdown) the
// forwarder logs a warning and reconnects that side with exponential
// backoff (100 ms doubling to 10 s, reset once a row moves again), keeping
// the other side's connection; no special handling is needed, because of
// the deduplication above. Errors that retrying cannot fix (a missing
// table, an INSERT the destination rejects, queue_set_srcid returning
// NULL, a login refused) stop it with exit status 1.
//
// --reset sends the first queue_set_srcid in mode 'w', which rewinds the
// destination's mark (needed after the source table was truncated or
// re-created, since its rowids restart at 1). The forwarder keeps mode 'w'
// until an INSERT made with it has returned, then uses 'a' for the rest of
// the process, reconnections included. (Q4M's script switches to 'a' as
// soon as queue_set_srcid returns; but if the connection then broke before
// the INSERT, retrying in mode 'a' against the old mark would drop the row
// and every later one below the mark. The cost of staying in 'w' is one
// possible duplicate if the destination fails after committing that first
// INSERT but before acknowledging it.)
//
// SIGINT or SIGTERM stops it: a blocking queue_wait is abandoned at once
// (the server releases what the closed connection owned), a row being
// written is finished (within --shutdown-timeout), and a row whose INSERT
// returned is consumed with queue_end() before exiting. A second signal
// kills the process at once.
//
// Exit status: 0 after a signal or with --exit-when-empty, 1 on a fatal
// error, 2 on a usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/logflag"
	"github.com/q4mproxy/q4mproxy/internal/progress"
)

// Version is set at build time with -ldflags "-X main.Version=...".
var Version = "0.1.0-dev"

const (
	maxSenders = 64      // Q4M's sender slots: 0..63
	maxWait    = 2147483 // Q4M computes queue_wait's timeout in int milliseconds
)

func main() {
	m := NewMain()
	if err := m.ParseFlags(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) || errors.Is(err, errVersion) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "q4m-forward: %v\nTry 'q4m-forward --help' for more information.\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := m.Run(ctx)
	stop() // a second signal now kills the process at once
	if cerr := m.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		m.log.Error("exiting", keyErr, err)
		os.Exit(1)
	}
}

var errVersion = errors.New("version printed")

// Main is the program: flags, then Run until the context ends or a fatal
// error, then Close.
type Main struct {
	Src, Dst        endpoint
	Reset           bool
	Sender          int
	WaitTimeout     int           // seconds, passed to queue_wait
	LogEvery        int           // messages between progress lines; 0 for none
	ProgressEvery   time.Duration // time between progress lines; 0 for none
	ExitWhenEmpty   bool
	LogLevel        string
	LogFormat       string
	ShutdownTimeout time.Duration
	DialTimeout     time.Duration
	MinBackoff      time.Duration
	MaxBackoff      time.Duration

	log *slog.Logger
	fwd *forwarder
}

// NewMain returns a Main with the defaults.
func NewMain() *Main {
	return &Main{
		WaitTimeout:     60,
		LogEvery:        1000,
		ProgressEvery:   progress.DefaultInterval,
		LogLevel:        "info",
		LogFormat:       "text",
		ShutdownTimeout: 10 * time.Second,
		DialTimeout:     10 * time.Second,
		MinBackoff:      100 * time.Millisecond,
		MaxBackoff:      10 * time.Second,
	}
}

const usageHead = `Usage: q4m-forward [options] SRC DST

Moves every row of the Q4M queue table SRC to the queue table DST, exactly
once, and keeps doing so as rows arrive. SRC and DST are DBI data source
names with a table= part:

  q4m-forward \
    "dbi:mysql:database=db1;table=tbl1;user=foo;password=XXX" \
    "dbi:mysql:database=db2;table=tbl2;host=bar;port=3306;user=foo"

DSN keys: table (required), database, host (default 127.0.0.1), port
(default 3306), user (default $DBI_USER, else the login name), password
(default $DBI_PASS); others are ignored.

Options:
`

// ParseFlags reads the command line: the options of Q4M's script (--reset,
// --sender, --help) and the daemon's. As with Perl's Getopt::Long, options
// may also follow the operands, and "--" ends them. --help writes the usage
// to stdout and returns flag.ErrHelp; other problems are returned for the
// caller to report (exit status 2).
func (m *Main) ParseFlags(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("q4m-forward", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, not printed
	fs.Usage = func() {}
	fs.BoolVar(&m.Reset, "reset", m.Reset, "reset the destination's duplicate check (mode 'w' for the first queue_set_srcid)")
	fs.IntVar(&m.Sender, "sender", m.Sender, "sender slot `N` used for checking duplicates (0..63)")
	fs.IntVar(&m.WaitTimeout, "wait-timeout", m.WaitTimeout, "`seconds` each queue_wait blocks for (0: do not block, which polls without pause unless --exit-when-empty)")
	fs.BoolVar(&m.ExitWhenEmpty, "exit-when-empty", m.ExitWhenEmpty, "exit (status 0) when queue_wait times out, i.e. the source is empty")
	fs.IntVar(&m.LogEvery, "log-every", m.LogEvery, "log the count, the rate and the source's backlog every `N` messages (0: never)")
	fs.DurationVar(&m.ProgressEvery, "progress-interval", m.ProgressEvery, "log the same line also when this `duration` passed since the last one and a message moved (0: never)")
	fs.StringVar(&m.LogLevel, "log-level", m.LogLevel, "debug, info, warn or error")
	fs.StringVar(&m.LogFormat, "log-format", m.LogFormat, "text or json")
	fs.DurationVar(&m.ShutdownTimeout, "shutdown-timeout", m.ShutdownTimeout, "after a signal, how long to finish writing the current row")
	help := fs.Bool("help", false, "print this help and exit (also -h)")
	version := fs.Bool("version", false, "print the version and exit")

	var operands []string
	for {
		err := fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) { // -h
			*help = true
			break
		}
		if err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			operands = append(operands, rest...)
			break
		}
		operands = append(operands, rest[0])
		args = rest[1:]
	}
	if *help {
		var opts strings.Builder
		fs.SetOutput(&opts)
		fs.PrintDefaults()
		// Show options as --name, the way Q4M's script spells them.
		fmt.Fprint(stdout, usageHead+strings.ReplaceAll("\n"+opts.String(), "\n  -", "\n  --")[1:])
		return flag.ErrHelp
	}
	if *version {
		fmt.Fprintln(stdout, "q4m-forward", Version)
		return errVersion
	}
	if m.Sender < 0 || m.Sender >= maxSenders {
		return fmt.Errorf("--sender must be 0..%d, not %d", maxSenders-1, m.Sender)
	}
	if m.WaitTimeout < 0 || m.WaitTimeout > maxWait {
		return fmt.Errorf("--wait-timeout must be 0..%d seconds, not %d", maxWait, m.WaitTimeout)
	}
	if m.LogEvery < 0 {
		return fmt.Errorf("--log-every must not be negative")
	}
	if m.ProgressEvery < 0 {
		return fmt.Errorf("--progress-interval must not be negative")
	}
	if m.ShutdownTimeout < 0 {
		return fmt.Errorf("--shutdown-timeout must not be negative")
	}
	if len(operands) != 2 {
		return fmt.Errorf("want 2 operands, SRC and DST, got %d", len(operands))
	}
	def := defaultsFromEnv()
	var err error
	if m.Src, err = parseDSN(operands[0], def); err != nil {
		return fmt.Errorf("SRC: %w", err)
	}
	if m.Dst, err = parseDSN(operands[1], def); err != nil {
		return fmt.Errorf("DST: %w", err)
	}

	log, err := logflag.New(stderr, m.LogLevel, m.LogFormat)
	if err != nil {
		return err
	}
	m.log = log
	slog.SetDefault(m.log)
	return nil
}

// Run relays until ctx is done (it then returns nil), the source is empty
// with ExitWhenEmpty (nil), or a fatal error.
func (m *Main) Run(ctx context.Context) error {
	if m.log == nil {
		m.log = slog.Default()
	}
	for _, side := range []struct {
		name string
		ep   endpoint
	}{{sideSource, m.Src}, {sideDestination, m.Dst}} {
		if len(side.ep.Ignored) > 0 {
			m.log.Debug("ignoring DSN keys", keySide, side.name, "keys", strings.Join(side.ep.Ignored, ","))
		}
	}
	f, err := newForwarder(forwarderConfig{
		Src:             m.Src,
		Dst:             m.Dst,
		Sender:          m.Sender,
		Reset:           m.Reset,
		WaitTimeout:     m.WaitTimeout,
		LogEvery:        m.LogEvery,
		ProgressEvery:   m.ProgressEvery,
		ExitWhenEmpty:   m.ExitWhenEmpty,
		ShutdownTimeout: m.ShutdownTimeout,
		DialTimeout:     m.DialTimeout,
		MinBackoff:      m.MinBackoff,
		MaxBackoff:      m.MaxBackoff,
		Logger:          m.log,
	})
	if err != nil {
		return err
	}
	m.fwd = f
	return f.Run(ctx)
}

// Close closes the connections.
func (m *Main) Close() error {
	if m.fwd == nil {
		return nil
	}
	return m.fwd.Close()
}
