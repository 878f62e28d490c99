package server

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/go-sql-driver/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// testVersion is the server version the test servers announce.
const testVersion = "5.7.99-test"

// startServer runs a Server in-process on 127.0.0.1:0 over an in-memory store.
func startServer(t testing.TB) (*Server, string) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	return serveTest(t, Config{Version: testVersion, Users: map[string]string{"root": ""}, Logger: log},
		func(srv *Server) sqlfront.Config {
			return sqlfront.Config{Version: testVersion, Kill: srv.Kill, ProcessList: srv.ProcessList, Status: srv.StatusRows, FlushStatus: srv.FlushStatus, Logger: log}
		})
}

// serveTest runs a Server with cfg in-process on 127.0.0.1:0 over an
// in-memory store (logging to cfg.Logger) that holds the database "test",
// with the engine engine(srv) configures. At cleanup the server is shut
// down, Serve must have returned ErrServerClosed, and the store is closed.
func serveTest(tb testing.TB, cfg Config, engine func(srv *Server) sqlfront.Config) (*Server, string) {
	tb.Helper()
	db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), Logger: cfg.Logger, InitialDatabases: []string{"test"}})
	if err != nil {
		tb.Fatal(err)
	}
	srv := New(nil, cfg)
	srv.SetEngine(sqlfront.NewEngine(db, engine(srv)))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		db.Close()
		tb.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			tb.Errorf("Serve returned %v", err)
		}
		db.Close()
	})
	return srv, l.Addr().String()
}

func openConn(t *testing.T, addr string, params string) *sql.Conn {
	t.Helper()
	db, err := sql.Open("mysql", "root@tcp("+addr+")/test"+params)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	c, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func myErr(err error) (uint16, string) {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return me.Number, string(me.SQLState[:])
	}
	return 0, ""
}

// TestErrorCodes checks errno and SQLSTATE over a real connection, through
// the text protocol and through server-side prepared statements (where
// go-mysql would otherwise lose the code).
func TestErrorCodes(t *testing.T) {
	_, addr := startServer(t)
	tests := []struct {
		sql   string
		args  []any
		code  uint16
		state string
	}{
		{"SELECT * FROM nosuch WHERE 1 = ?", []any{1}, 1146, "42S02"},
		{"SELEC ?", []any{1}, 1064, "42000"},
		{"INSERT INTO q (v) VALUES (?, ?)", []any{1, 2}, 1136, "21S01"},
		{"INSERT INTO q (v) VALUES (?)", []any{nil}, 1048, "23000"},
		{"INSERT INTO q (v, s) VALUES (?, ?)", []any{1, "abcd"}, 1406, "22001"},
		{"INSERT INTO q (v) VALUES (?)", []any{"x"}, 1366, "HY000"},
		{"INSERT INTO q (nope) VALUES (?)", []any{1}, 1054, "42S22"},
		{"SELECT queue_abort() + ?", []any{1}, 1123, "HY000"},
		{"UPDATE q SET v = ?", []any{1}, 1031, "HY000"},
		{"CREATE VIEW v AS SELECT ?", []any{1}, 1235, "42000"},
		{"SET @@nosuch = ?", []any{1}, 1193, "HY000"},
	}
	for _, mode := range []string{"", "?interpolateParams=true"} {
		c := openConn(t, addr, mode)
		for _, s := range []string{"CREATE TABLE IF NOT EXISTS q (v int not null, s varchar(3)) ENGINE=queue", "INSERT INTO q (v) VALUES (9)"} {
			if _, err := c.ExecContext(t.Context(), s); err != nil {
				t.Fatal(err)
			}
		}
		for _, tc := range tests {
			t.Run(mode+tc.sql, func(t *testing.T) {
				_, err := c.ExecContext(t.Context(), tc.sql, tc.args...)
				code, state := myErr(err)
				if code != tc.code || state != tc.state {
					t.Errorf("got %d (%s) from %v; want %d (%s)", code, state, err, tc.code, tc.state)
				}
				var one int
				if err := c.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
					t.Errorf("connection unusable after the error: %v", err)
				}
			})
		}
	}
}

// TestCloseReleases: a connection that closes while owning a row gives it
// back; one that disconnects while blocked in queue_wait is noticed at
// once (the statement ends long before its timeout).
func TestCloseReleases(t *testing.T) {
	srv, addr := startServer(t)
	ctx := t.Context()
	adb, err := sql.Open("mysql", "root@tcp("+addr+")/test")
	if err != nil {
		t.Fatal(err)
	}
	a, err := adb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b := openConn(t, addr, "")
	for _, s := range []string{"CREATE TABLE w (v int) ENGINE=queue", "CREATE TABLE empty (v int) ENGINE=queue", "INSERT INTO w VALUES (1)"} {
		if _, err := b.ExecContext(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	var idx int
	if err := a.QueryRowContext(ctx, "SELECT queue_wait('w')").Scan(&idx); err != nil || idx != 1 {
		t.Fatalf("queue_wait: %d %v", idx, err)
	}
	var got sql.NullInt64
	if err := b.QueryRowContext(ctx, "SELECT queue_wait('w', 0)").Scan(&got); err != nil || got.Int64 != 0 {
		t.Fatalf("row owned by a was handed to b: %v %v", got, err)
	}
	if _, err := b.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	adb.Close() // really closes the connection
	eventuallyT(t, "the closed owner's row to come back", func() bool {
		var got sql.NullInt64
		if err := b.QueryRowContext(ctx, "SELECT queue_wait('w', 0)").Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got.Int64 == 1
	})
	if _, err := b.ExecContext(ctx, "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}

	// A waiter whose client goes away: go-sql-driver closes the socket
	// when the context is cancelled.
	cdb, err := sql.Open("mysql", "root@tcp("+addr+")/test")
	if err != nil {
		t.Fatal(err)
	}
	defer cdb.Close()
	wctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() {
		var v sql.NullInt64
		errc <- cdb.QueryRowContext(wctx, "SELECT queue_wait('empty', 60)").Scan(&v)
	}()
	eventuallyT(t, "queue_wait to start", srv.running)
	cancel()
	<-errc
	eventuallyT(t, "the server to notice the vanished waiter", func() bool { return !srv.running() })
}

// TestDisconnectDuringSleep: SLEEP blocks too, so a client that goes away
// during it is noticed at once (the socket is watched from the moment a
// statement parks, by queue waits and SLEEP alike).
func TestDisconnectDuringSleep(t *testing.T) {
	srv, addr := startServer(t)
	cdb, err := sql.Open("mysql", "root@tcp("+addr+")/test")
	if err != nil {
		t.Fatal(err)
	}
	defer cdb.Close()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		var v sql.NullInt64
		errc <- cdb.QueryRowContext(ctx, "SELECT SLEEP(60)").Scan(&v)
	}()
	eventuallyT(t, "SLEEP to start", srv.running)
	cancel()
	<-errc
	eventuallyT(t, "the server to notice the vanished client", func() bool { return !srv.running() })
}

func eventuallyT(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

// TestShutdownEndsWaits: Shutdown ends a blocked queue_wait promptly with
// 1053 (or a closed connection) and Serve returns ErrServerClosed.
func TestShutdownEndsWaits(t *testing.T) {
	srv, addr := startServer(t)
	c := openConn(t, addr, "")
	if _, err := c.ExecContext(t.Context(), "CREATE TABLE s (v int) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		var v sql.NullInt64
		errc <- c.QueryRowContext(context.Background(), "SELECT queue_wait('s', 60)").Scan(&v)
	}()
	eventuallyT(t, "queue_wait to start", srv.running)
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	select {
	case err := <-errc:
		code, _ := myErr(err)
		if err == nil || (code != 1053 && !errors.Is(err, mysql.ErrInvalidConn) && !errors.Is(err, io.EOF)) {
			t.Errorf("waiter got %v (code %d); want 1053 or a closed connection", err, code)
		}
	case <-time.After(30 * time.Second): // the wait is for 60 s
		t.Fatal("waiter still blocked after Shutdown")
	}
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

// TestKillQuery: KILL QUERY ends another connection's wait with 1317.
func TestKillQuery(t *testing.T) {
	srv, addr := startServer(t)
	a := openConn(t, addr, "")
	b := openConn(t, addr, "")
	if _, err := a.ExecContext(t.Context(), "CREATE TABLE k (v int) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	var id int64
	if err := a.QueryRowContext(t.Context(), "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		var v sql.NullInt64
		errc <- a.QueryRowContext(context.Background(), "SELECT queue_wait('k', 60)").Scan(&v)
	}()
	eventuallyT(t, "queue_wait to start", srv.running)
	if _, err := b.ExecContext(t.Context(), fmt.Sprintf("KILL QUERY %d", id)); err != nil {
		t.Fatalf("KILL QUERY: %v", err)
	}
	select {
	case err := <-errc:
		if code, _ := myErr(err); code != 1317 {
			t.Errorf("killed wait returned %v; want 1317", err)
		}
	case <-time.After(30 * time.Second): // the wait is for 60 s
		t.Fatal("KILL QUERY did not end the wait")
	}
	var one int
	if err := a.QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil {
		t.Errorf("connection unusable after KILL QUERY: %v", err)
	}
	if _, err := b.ExecContext(t.Context(), "KILL 999999"); err == nil {
		t.Error("KILL of an unknown id succeeded")
	} else if code, _ := myErr(err); code != 1094 {
		t.Errorf("KILL unknown: %v; want 1094", err)
	}
}

func TestPacketLimitFeed(t *testing.T) {
	hdr := func(size int, seq byte) []byte { return []byte{byte(size), byte(size >> 8), byte(size >> 16), seq} }
	tests := []struct {
		name   string
		max    int64
		stream [][]byte // as successive reads
		over   bool
	}{
		{"small packets", 100, [][]byte{append(hdr(3, 0), 'a', 'b', 'c'), append(hdr(2, 0), 'x', 'y')}, false},
		{"exactly max", 5, [][]byte{append(hdr(5, 0), "abcde"...)}, false},
		{"one over", 5, [][]byte{append(hdr(6, 0), "abcdef"...)}, true},
		{"header split across reads", 5, [][]byte{{6, 0}, {0, 0}, []byte("abcdef")}, true},
		{"payload split across reads", 10, [][]byte{append(hdr(8, 0), "abc"...), []byte("defgh"), append(hdr(8, 0), "12345678"...)}, false},
		{"chunked packet over", 0xffffff + 10, [][]byte{hdr(0xffffff, 0), make([]byte, 0xffffff), hdr(11, 1)}, true},
		{"chunked packet under", 0xffffff + 10, [][]byte{hdr(0xffffff, 0), make([]byte, 0xffffff), append(hdr(3, 1), "abc"...), hdr(0xffffff, 0)}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := &packetLimit{max: tc.max}
			over := false
			for _, b := range tc.stream {
				if o, _ := l.feed(b); o {
					over = true
				}
			}
			if over != tc.over {
				t.Errorf("over = %v, want %v", over, tc.over)
			}
		})
	}
}

// TestBadHandshakeAuthLength: a handshake response announcing more auth
// data than it holds gets MySQL's ERROR 1043 (go-mysql v1.16.0 would read
// past the packet and panic), and the server goes on serving.
func TestBadHandshakeAuthLength(t *testing.T) {
	_, addr := startServer(t)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	readPacket := func() []byte {
		var h [4]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("reading a packet header: %v", err)
		}
		p := make([]byte, int(h[0])|int(h[1])<<8|int(h[2])<<16)
		if _, err := io.ReadFull(c, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	readPacket()                                      // the greeting
	var capab uint32 = 0x200 | 0x8000 | 0x8 | 0x80000 // protocol 41, secure connection, with db, plugin auth
	payload := []byte{byte(capab), byte(capab >> 8), byte(capab >> 16), 0, 0, 0, 0, 1, 33}
	payload = append(payload, make([]byte, 23)...)
	payload = append(payload, "root\x00"...)
	payload = append(payload, 8, 'a', 'b') // 8 bytes of auth data announced, 2 sent (the end still within the capacity of go-mysql's copy)
	pkt := append([]byte{byte(len(payload)), 0, 0, 1}, payload...)
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	reply := readPacket()
	want := append([]byte{0xff, 0x13, 0x04, '#'}, "08S01Bad handshake"...) // 1043
	if string(reply) != string(want) {
		t.Fatalf("reply %q, want %q", reply, want)
	}
	var one int
	if err := openConn(t, addr, "").QueryRowContext(t.Context(), "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("after a bad handshake: %v %v", one, err)
	}
}
