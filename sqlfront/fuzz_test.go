package sqlfront

import (
	"context"
	"errors"
	"testing"
	"time"
)

// FuzzExec: any statement gives a result or a MySQL-mappable error, never a
// panic, and leaves the session usable.
func FuzzExec(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", mk, "INSERT INTO q VALUES (1, 'a'), (2, NULL)", "SELECT * FROM q WHERE v1 > 1 ORDER BY v2 DESC LIMIT 1",
		"SELECT queue_wait('q', 0)", "SELECT queue_wait('q:v1=1 and v1<>2', 0)", "SELECT queue_end()", "SELECT queue_abort()",
		"DELETE FROM q WHERE v1 = 1 LIMIT 1", "UPDATE q SET v1 = 2", "ALTER TABLE q ADD c int", "TRUNCATE q", "DROP TABLE q",
		"SHOW TABLES LIKE 'q%'", "SHOW ENGINE QUEUE STATUS", "SET @a = 1", "SELECT @@version, 1/0, 'x' LIKE '%'",
		"SELECT queue_set_srcid(1, 'a', 3)", "SELECT queue_stats('q')", "INSERT INTO q SET v1 = '12abc'",
		"SELECT * FROM information_schema.plugins", "CREATE TABLE t (a decimal(5,2), b datetime, c enum('x')) ENGINE=queue",
	} {
		f.Add(s)
	}
	log := newEngineLogger()
	f.Fuzz(func(t *testing.T, sql string) {
		e := newEngineFor(t, log)
		s := e.NewSession(1, "root", "127.0.0.1")
		defer s.Close()
		_ = s.UseDB("test")
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		if _, err := s.Exec(ctx, mk); err != nil {
			t.Fatal(err)
		}
		_, err := s.Exec(ctx, sql)
		if err != nil && !mappable(err) {
			t.Fatalf("%q: unmapped error %T: %v", sql, err, err)
		}
		if _, err := s.Exec(context.Background(), "SELECT 1"); err != nil {
			t.Fatalf("session unusable after %q: %v", sql, err)
		}
	})
}

// mappable: the catalog knows err (Cast), or err ends a cancelled statement.
func mappable(err error) bool {
	_, ok := Cast(err)
	return ok || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)
}
