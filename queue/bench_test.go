package queue

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// Benchmarks of the engine's hot paths, on an in-memory filesystem (so they
// measure the engine, not the disk). Compare runs with benchstat.

func benchDB(b *testing.B) (*DB, Table) {
	b.Helper()
	o := testOptions(vfs.NewMem())
	db, err := Open("db", o)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { db.Close() })
	if err := db.CreateTable(testDB, "b", nil); err != nil {
		b.Fatal(err)
	}
	h, err := db.Table(testDB, "b")
	if err != nil {
		b.Fatal(err)
	}
	return db, h
}

var payload100 = make([]byte, 100)

func BenchmarkInsert(b *testing.B) {
	db, h := benchDB(b)
	rows := [][]byte{payload100}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := db.Insert(h, rows); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkInsertParallel(b *testing.B) {
	db, h := benchDB(b)
	rows := [][]byte{payload100}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := db.Insert(h, rows); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkConsume is one consumer's cycle: Wait (consuming the previous
// row) on a backlog.
func BenchmarkConsume(b *testing.B) {
	for _, backlog := range []int{1000, 100000} {
		b.Run(fmt.Sprintf("backlog=%d", backlog), func(b *testing.B) {
			db, h := benchDB(b)
			batch := make([][]byte, 1000)
			for i := range batch {
				batch[i] = payload100
			}
			fill := func(n int) {
				for ; n > 0; n -= len(batch) {
					if _, err := db.Insert(h, batch[:min(n, len(batch))]); err != nil {
						b.Fatal(err)
					}
				}
			}
			fill(backlog)
			o := db.NewOwner()
			subs := []Sub{{Database: testDB, Table: "b"}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%1000 == 999 {
					b.StopTimer()
					fill(1000) // keep the backlog
					b.StartTimer()
				}
				if idx, err := o.Wait(b.Context(), subs, 0); err != nil || idx != 1 {
					b.Fatalf("Wait = %d, %v", idx, err)
				}
			}
		})
	}
}

type benchFilter struct{}

func (benchFilter) Key() string         { return "last byte is 1" }
func (benchFilter) Match(p []byte) bool { return len(p) > 0 && p[len(p)-1] == 1 }

// BenchmarkFilterWait is a conditional wait on a table where one row in
// ten matches.
func BenchmarkFilterWait(b *testing.B) {
	db, h := benchDB(b)
	match := append(append([]byte(nil), payload100[:99]...), 1)
	rows := make([][]byte, 1000)
	for i := range rows {
		rows[i] = payload100
		if i%10 == 0 {
			rows[i] = match
		}
	}
	o := db.NewOwner()
	subs := []Sub{{Database: testDB, Table: "b", Filter: benchFilter{}}}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%100 == 0 {
			b.StopTimer()
			if _, err := db.Insert(h, rows); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if idx, err := o.Wait(b.Context(), subs, 0); err != nil || idx != 1 {
			b.Fatalf("Wait = %d, %v", idx, err)
		}
	}
}
