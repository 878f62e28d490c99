package integration

import (
	"bytes"
	"crypto/rand"
	"database/sql"
	"errors"
	"strings"
	"testing"

	"github.com/go-sql-driver/mysql"
)

// TestPacketLimit: a statement over --max-allowed-packet gets ERROR 1153
// and its connection is closed; other connections and acknowledged rows
// are unaffected.
func TestPacketLimit(t *testing.T) {
	standaloneOnly(t, "@@max_allowed_packet is the upstream's")
	s := startServer(t, "--max-allowed-packet", "1M")
	db := s.open(t)
	if _, err := db.Exec("CREATE TABLE big (s longblob) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("INSERT INTO big VALUES (?)", bytes.Repeat([]byte("a"), 900<<10)); err != nil {
		t.Fatalf("900 KB row under a 1 MB limit: %v", err)
	}
	c := s.conn(t)
	_, err := c.ExecContext(t.Context(), "INSERT INTO big VALUES ('"+strings.Repeat("b", 2<<20)+"')")
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1153 || string(me.SQLState[:]) != "08S01" {
		t.Fatalf("2 MB statement: %v; want 1153 (08S01)", err)
	}
	var n int
	if err := db.QueryRow("SELECT COUNT(*) FROM big").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after the oversized packet: count %d, %v", n, err)
	}
	var v sql.NullString
	if err := db.QueryRow("SHOW VARIABLES LIKE 'max_allowed_packet'").Scan(new(string), &v); err != nil || v.String != "1048576" {
		t.Errorf("max_allowed_packet = %q, %v", v.String, err)
	}
}

// TestLargeRows: rows of several megabytes, including one larger than a
// protocol packet (16 MB, so split in chunks), go in and come out intact.
func TestLargeRows(t *testing.T) {
	s := startServer(t)
	c := s.conn(t)
	ctx := t.Context()
	if _, err := c.ExecContext(ctx, "CREATE TABLE lr (n int, s longblob) ENGINE=queue"); err != nil {
		t.Fatal(err)
	}
	sizes := []int{4 << 20, 17 << 20, 4 << 20}
	want := make([][]byte, len(sizes))
	for i, size := range sizes {
		want[i] = make([]byte, size)
		_, _ = rand.Read(want[i])
		if _, err := c.ExecContext(ctx, "INSERT INTO lr VALUES (?, ?)", i, want[i]); err != nil {
			t.Fatalf("insert %d MB: %v", size>>20, err)
		}
	}
	for i := range sizes {
		var idx int
		if err := c.QueryRowContext(ctx, "SELECT queue_wait('lr', 1)").Scan(&idx); err != nil || idx != 1 {
			t.Fatalf("queue_wait: %d %v", idx, err)
		}
		var n int
		var got []byte
		if err := c.QueryRowContext(ctx, "SELECT n, s FROM lr").Scan(&n, &got); err != nil {
			t.Fatal(err)
		}
		if n != i || !bytes.Equal(got, want[i]) {
			t.Fatalf("row %d: n=%d, %d bytes, equal=%v", i, n, len(got), bytes.Equal(got, want[i]))
		}
	}
}
