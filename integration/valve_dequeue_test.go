package integration

import (
	"testing"
	"time"
)

// TestValveLogDequeue: with log_dequeue, a plain consumer taking released
// messages from q_timed gets a 'dequeue' row per message in q_statslog,
// next to the valve's 'throttle' rows.
func TestValveLogDequeue(t *testing.T) {
	s := mvStartValve(t, "[[valve]]\nmax_items = 1\ninterval = 60.0\nlog_dequeue = true\n")
	db := s.open(t)
	for i := range 3 {
		if _, err := db.Exec("INSERT INTO q_incoming (destination, message) VALUES ('d', ?)", []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	c := s.conn(t)
	var idx int
	if err := c.QueryRowContext(t.Context(), "SELECT queue_wait('q_timed', 10)").Scan(&idx); err != nil || idx != 1 {
		t.Fatalf("queue_wait: %d %v", idx, err)
	}
	if _, err := c.ExecContext(t.Context(), "SELECT queue_end()"); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "one dequeue and two throttle rows", func() bool {
		return mvCount(t, db, "SELECT COUNT(*) FROM q_statslog WHERE action = 'dequeue' AND destination = 'd'") == 1 &&
			mvCount(t, db, "SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle' AND destination = 'd'") == 2
	})
}
