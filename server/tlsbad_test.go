package server

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/testingutil"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// syncBuffer is a log destination tests read while the server writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTLSBadHandshake: a handshake response over TLS that announces more
// auth data than it holds. go-mysql answers ERROR 1043 when the overflow
// goes past its read buffer and panics when it does not; the panic is a
// failed handshake like any other (counted in Aborted_connects, not logged
// as a server fault), the connection is closed, and the server goes on.
// (Plaintext gets 1043 for both: TestBadHandshakeAuthLength.)
func TestTLSBadHandshake(t *testing.T) {
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv, addr := serveTest(t, Config{Version: testVersion, Users: map[string]string{"root": "secret"}, Logger: log,
		TLS: testTLSConfig(t), HandshakeTimeout: time.Minute},
		func(srv *Server) sqlfront.Config {
			return sqlfront.Config{Version: testVersion, Kill: srv.Kill, Logger: log}
		})

	for _, tc := range []struct {
		announced byte // auth data bytes announced; 2 are sent
		reply     bool // go-mysql's own ERROR 1043
	}{{3, false}, {8, false}, {40, true}} {
		before := srv.status.abortedConnects.Load()
		reply, err := testingutil.BadHandshake(t, addr, true, tc.announced, time.Minute)
		want := append([]byte{0xff, 0x13, 0x04, '#'}, "08S01Bad handshake"...)
		switch {
		case tc.reply && !bytes.Equal(reply, want):
			t.Errorf("%d bytes announced: reply %q, %v; want 1043", tc.announced, reply, err)
		case !tc.reply && err == nil:
			t.Errorf("%d bytes announced: reply %q; want the connection closed", tc.announced, reply)
		}
		eventuallyT(t, "the failed handshake to be counted", func() bool { return srv.status.abortedConnects.Load() == before+1 })
	}
	if strings.Contains(logs.String(), "panic") && strings.Contains(logs.String(), "level=ERROR") {
		t.Errorf("a malformed handshake response was logged as a server fault:\n%s", logs.String())
	}
	if err := openTLS(t, addr, "secret").PingContext(t.Context()); err != nil {
		t.Errorf("a good login over TLS after the malformed ones: %v", err)
	}
}
