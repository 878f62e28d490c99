package server

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's CPU time so far: benchmarks report it per
// operation as cpu-ns/op, which the other processes of a shared machine
// disturb much less than the wall-clock ns/op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkServerMessage moves one message through the whole server, as
// q4mbench does it: a producer's INSERT and a consumer's one-statement
// consume, text protocol, over loopback TCP, on an in-memory store (so no
// fsync). cpu-ns/op is the CPU of the process, the client's (go-sql-driver)
// included; allocs/op too.
func BenchmarkServerMessage(b *testing.B) {
	_, addr := startServer(b)
	db, err := sql.Open("mysql", "root@tcp("+addr+")/test?interpolateParams=true")
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background() // never cancelled: no watcher goroutine in the driver
	prod, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	cons, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	if _, err := prod.ExecContext(ctx, "CREATE TABLE q4mbench (id BIGINT NOT NULL, ts BIGINT NOT NULL, payload VARCHAR(100) NOT NULL) ENGINE=queue"); err != nil {
		b.Fatal(err)
	}
	payload := strings.Repeat("x", 84)
	const consume = "SELECT id, ts FROM q4mbench WHERE queue_wait('q4mbench', 1)"
	b.ReportAllocs()
	c0 := cpuTime()
	i := int64(0)
	for b.Loop() {
		i++
		if _, err := prod.ExecContext(ctx, fmt.Sprintf("INSERT INTO q4mbench (id, ts, payload) VALUES (%d, %d, '%s')", i, 1764000000000000+i, payload)); err != nil {
			b.Fatal(err)
		}
		var id, ts int64
		if err := cons.QueryRowContext(ctx, consume).Scan(&id, &ts); err != nil || id != i {
			b.Fatalf("consumed %d, %v; want %d", id, err, i)
		}
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}
