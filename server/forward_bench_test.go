package server

import (
	"context"
	"database/sql"
	"io"
	"log/slog"
	"net"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
	gms "github.com/go-mysql-org/go-mysql/server"

	"github.com/q4mproxy/q4mproxy/sqlfront"
	"github.com/q4mproxy/q4mproxy/upstream"
)

// pointUpstream is a stand-in upstream for the forwarding benchmarks: it
// answers every statement with sysbench's point select answer (one
// VARCHAR column, one row), so that what is measured is the relay.
type pointUpstream struct{ gms.EmptyHandler }

func (pointUpstream) result(binary bool) *mysql.Result {
	rs, err := mysql.BuildSimpleResultset([]string{"c"}, [][]any{{"68487932199-96439406143-93774651418-41631865787-96406072701"}}, binary)
	if err != nil {
		panic(err)
	}
	return mysql.NewResult(rs)
}

func (pointUpstream) UseDB(string) error { return nil }

func (u pointUpstream) HandleQuery(string) (*mysql.Result, error) { return u.result(false), nil }

func (pointUpstream) HandleStmtPrepare(string) (int, int, any, error) { return 1, 1, nil, nil }

func (u pointUpstream) HandleStmtExecute(any, string, []any) (*mysql.Result, error) {
	return u.result(true), nil
}

func (pointUpstream) HandleStmtClose(any) error { return nil }

// startPointUpstream serves pointUpstream on a loopback port, user root
// without a password.
func startPointUpstream(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	srv := gms.NewDefaultServer()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				mc, err := srv.NewConn(c, "root", "", pointUpstream{})
				if err != nil {
					return
				}
				for !mc.Closed() {
					if err := mc.HandleCommand(); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// startForwardingServer starts a q4mproxy in front of upstreamAddr.
func startForwardingServer(tb testing.TB, upstreamAddr string) string {
	tb.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	_, addr := serveTest(tb, Config{Version: testVersion, Users: map[string]string{"root": ""}, Logger: log,
		Upstream: &upstream.Config{Addr: upstreamAddr, Logger: log}},
		func(srv *Server) sqlfront.Config {
			return sqlfront.Config{Version: testVersion, Upstream: true, Kill: srv.Kill, ProcessList: srv.ProcessList, Status: srv.StatusRows, FlushStatus: srv.FlushStatus, Logger: log}
		})
	return addr
}

// BenchmarkForwardPointSelect relays sysbench's oltp_point_select (a
// prepared statement, executed over and over) through the server to a
// stand-in upstream. cpu-ns/op is the CPU of the whole process (client,
// server and stand-in); allocs/op too. Compare with
// BenchmarkDirectPointSelect, the same without the server.
func BenchmarkForwardPointSelect(b *testing.B) {
	benchPointSelect(b, startForwardingServer(b, startPointUpstream(b)))
}

// BenchmarkDirectPointSelect is BenchmarkForwardPointSelect with the
// client talking to the stand-in upstream directly: the part of the cost
// that is not the relay's.
func BenchmarkDirectPointSelect(b *testing.B) {
	benchPointSelect(b, startPointUpstream(b))
}

func benchPointSelect(b *testing.B, addr string) {
	db, err := sql.Open("mysql", "root@tcp("+addr+")/test")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background() // never cancelled: no watcher goroutine in the driver
	c, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	st, err := c.PrepareContext(ctx, "SELECT c FROM sbtest1 WHERE id=?")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	b.ReportAllocs()
	c0 := cpuTime()
	var v string
	i := 0
	for b.Loop() {
		i++
		if err := st.QueryRowContext(ctx, i).Scan(&v); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}
