package sqlfront

import (
	"fmt"
	"testing"
)

// TestSchemaCacheBounded: DDL churn does not grow the parsed-schema cache.
// TRUNCATE and ALTER give a table a new definition, whose schema replaces
// the old one's; tables created and dropped by the thousand leave at most
// minSchemaSweep entries behind. (Keyed by definition alone, the cache held
// an entry for every TRUNCATE, ALTER and dropped table: 4,001 here.)
func TestSchemaCacheBounded(t *testing.T) {
	e := newEngine(t)
	s := newSession(t, e)
	exec := func(sql string) {
		t.Helper()
		if _, err := s.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE TABLE q (a INT) ENGINE=queue")
	const n = 1000
	for i := range n {
		exec("TRUNCATE TABLE q")
		exec("INSERT INTO q VALUES (1)")
		exec(fmt.Sprintf("ALTER TABLE q ADD COLUMN c%d INT", i))
		exec("SELECT * FROM q")
		exec(fmt.Sprintf("ALTER TABLE q DROP COLUMN c%d", i))
		exec("SELECT COUNT(*) FROM q WHERE a = 1")
	}
	if got := e.schemas.len(); got != 1 {
		t.Errorf("%d schemas cached after %d TRUNCATEs and %d ALTERs of one table; want 1", got, n, 2*n)
	}
	for i := range n {
		name := fmt.Sprintf("t%d", i)
		exec("CREATE TABLE " + name + " (a INT, b VARCHAR(10)) ENGINE=queue")
		exec("INSERT INTO " + name + " VALUES (1, 'x')")
		exec("DROP TABLE " + name)
	}
	if got := e.schemas.len(); got > minSchemaSweep {
		t.Errorf("%d schemas cached after %d tables were created and dropped; want at most %d", got, n, minSchemaSweep)
	}
	// The live tables' schemas are all kept.
	for i := range 2 * minSchemaSweep {
		name := fmt.Sprintf("live%d", i)
		exec("CREATE TABLE " + name + " (a INT) ENGINE=queue")
		exec("INSERT INTO " + name + " VALUES (1)")
	}
	if got := e.schemas.len(); got < 2*minSchemaSweep {
		t.Errorf("%d schemas cached for %d live tables", got, 2*minSchemaSweep)
	}
}
