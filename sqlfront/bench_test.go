package sqlfront

import (
	"strings"
	"testing"
)

// Benchmarks of statements as clients send them (in-memory store).

func BenchmarkInsertStatement(b *testing.B) {
	benchInsert(b, "INSERT INTO q (v1, v2) VALUES ('7', 'a message of about one hundred bytes, as a producer of a queue would send it over DBI....')")
}

// BenchmarkInsertStatementParsed is BenchmarkInsertStatement with a text the
// shape cache does not take (a double-quoted string): a full parse each time.
func BenchmarkInsertStatementParsed(b *testing.B) {
	benchInsert(b, `INSERT INTO q (v1, v2) VALUES ('7', "a message of about one hundred bytes, as a producer of a queue would send it over DBI....")`)
}

func benchInsert(b *testing.B, sql string) {
	e := newEngineFor(b, newEngineLogger())
	s := e.NewSession(1, "root", "127.0.0.1")
	_ = s.UseDB("test")
	if _, err := s.Exec(b.Context(), mk); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Exec(b.Context(), sql); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkConsumeStatement is the one-statement consume form on a backlog.
func BenchmarkConsumeStatement(b *testing.B) {
	e := newEngineFor(b, newEngineLogger())
	s := e.NewSession(1, "root", "127.0.0.1")
	_ = s.UseDB("test")
	if _, err := s.Exec(b.Context(), mk); err != nil {
		b.Fatal(err)
	}
	refill := func() {
		for range 10 {
			if _, err := s.Exec(b.Context(), "INSERT INTO q VALUES (1,'x'),(2,'x'),(3,'x'),(4,'x'),(5,'x'),(6,'x'),(7,'x'),(8,'x'),(9,'x'),(10,'x')"); err != nil {
				b.Fatal(err)
			}
		}
	}
	refill()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%100 == 99 {
			b.StopTimer()
			refill()
			b.StartTimer()
		}
		r, err := s.Exec(b.Context(), "SELECT * FROM q WHERE queue_wait('q', 0)")
		if err != nil || len(r.Rows) != 1 {
			b.Fatalf("%v %v", r, err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	e := newEngineFor(b, newEngineLogger())
	s := e.NewSession(1, "root", "127.0.0.1")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.parseOne("SELECT queue_wait('q_emerg','q_timed:ready<171234567812345','q_incoming','60')"); err != nil {
			b.Fatal(err)
		}
	}
}

// The projection a session keeps for its last SELECT is not used once the
// table's schema changed: a dropped column is an unknown column again.
func TestProjectionCacheFollowsSchema(t *testing.T) {
	e := newEngineFor(t, newEngineLogger())
	s := e.NewSession(1, "root", "127.0.0.1")
	_ = s.UseDB("test")
	for _, q := range []string{mk, "INSERT INTO q VALUES (1, 'a'), (2, 'b')"} {
		if _, err := s.Exec(t.Context(), q); err != nil {
			t.Fatal(q, err)
		}
	}
	const sel = "SELECT v1, v2 FROM q WHERE queue_wait('q', 0)"
	for range 2 { // the second time from the kept projection
		r, err := s.Exec(t.Context(), sel)
		if err != nil || len(r.Rows) != 1 || len(r.Columns) != 2 || r.Columns[1].Name != "v2" {
			t.Fatalf("%s: %+v, %v", sel, r, err)
		}
	}
	if _, err := s.Exec(t.Context(), "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec(t.Context(), "ALTER TABLE q DROP COLUMN v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Exec(t.Context(), sel); err == nil || !strings.Contains(err.Error(), "Unknown column 'v2'") {
		t.Fatalf("after the column was dropped: %v", err)
	}
}
