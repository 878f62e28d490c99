package integration

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestQueueBackupUnderLoad takes an online backup (SELECT queue_backup,
// through the mysql CLI) while producers insert and consumers consume
// through go-sql-driver, starts a second server on the copy, and checks
// that it is the store at one point in time between the start and the end
// of the backup: every row acknowledged inserted before the backup began
// and not acknowledged consumed before it began is there; no row
// acknowledged consumed before it began is there; each producer's rows are
// there in the order they were inserted (rowid order); nothing else is.
func TestQueueBackupUnderLoad(t *testing.T) {
	requireClients(t, "mysql")
	s := startServer(t)
	db := s.open(t)
	mustExec(t, db, "CREATE TABLE bq (producer INT NOT NULL, seq INT NOT NULL, pad VARCHAR(64)) ENGINE=queue")

	type event = loadEvent
	var (
		mu       sync.Mutex
		inserted = map[[2]int64]event{} // producer, seq: the INSERT
		consumed = map[[2]int64]event{} // the queue_end that consumed it
	)
	count := func(m map[[2]int64]event) int {
		mu.Lock()
		defer mu.Unlock()
		return len(m)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	const producers, consumers = 3, 2
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := int64(1); ctx.Err() == nil; seq++ {
				sent := time.Now()
				key := [2]int64{int64(p), seq}
				mu.Lock()
				inserted[key] = event{sent: sent} // acked stays zero until it is
				mu.Unlock()
				_, err := db.ExecContext(ctx, "INSERT INTO bq VALUES (?, ?, ?)", p, seq, strings.Repeat("x", int(seq%64)))
				if err != nil {
					if ctx.Err() == nil {
						errc <- fmt.Errorf("producer %d: %w", p, err)
					}
					return
				}
				mu.Lock()
				inserted[key] = event{sent, time.Now()}
				mu.Unlock()
			}
		}()
	}
	for c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := consumeLoop(ctx, db, func(key [2]int64, e event) {
				mu.Lock()
				consumed[key] = e
				mu.Unlock()
			}); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("consumer %d: %w", c, err)
			}
		}()
	}
	failed := func() bool {
		select {
		case err := <-errc:
			t.Error(err)
			return true
		default:
			return false
		}
	}

	eventually(t, 2*time.Minute, "300 rows consumed before the backup", func() bool {
		return failed() || count(consumed) >= 300
	})
	start := time.Now()
	out, err := s.mysqlCLI(t, "", "-N", "-e", "SELECT queue_backup('mid-stream')")
	end := time.Now()
	if err != nil {
		t.Fatalf("queue_backup: %v\n%s", err, out)
	}
	backup := strings.TrimSpace(out)
	if filepath.Base(backup) != "mid-stream" {
		t.Fatalf("queue_backup returned %q, want a directory named mid-stream", backup)
	}
	// The load goes on after the backup; then it stops.
	after := count(consumed)
	eventually(t, 2*time.Minute, "100 more rows consumed after the backup", func() bool {
		return failed() || count(consumed) >= after+100
	})
	stop()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}

	b := startServer(t, "--data-dir", backup)
	rows, err := b.open(t).Query("SELECT producer, seq FROM bq")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	present := map[[2]int64]bool{}
	last := map[int64]int64{}
	for rows.Next() {
		var key [2]int64
		if err := rows.Scan(&key[0], &key[1]); err != nil {
			t.Fatal(err)
		}
		if key[1] <= last[key[0]] {
			t.Errorf("producer %d: row %d after row %d: not in rowid order", key[0], key[1], last[key[0]])
		}
		last[key[0]] = key[1]
		present[key] = true
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	var must, mustNot, either int
	for key, ins := range inserted {
		con, wasConsumed := consumed[key]
		switch {
		case wasConsumed && con.acked.Before(start):
			mustNot++
			if present[key] {
				t.Errorf("row %v was consumed (acknowledged %v before the backup began) but is in the backup", key, start.Sub(con.acked))
			}
		case !ins.acked.IsZero() && ins.acked.Before(start) && (!wasConsumed || con.sent.After(end)):
			must++
			if !present[key] {
				t.Errorf("row %v was inserted (acknowledged %v before the backup began) and not consumed before it ended, but is not in the backup", key, start.Sub(ins.acked))
			}
		default:
			either++ // inserted or consumed while the backup was made, or later
		}
	}
	for key := range present {
		if ins, ok := inserted[key]; !ok || ins.sent.After(end) {
			t.Errorf("row %v is in the backup, but its INSERT was not sent before the backup ended", key)
		}
	}
	if must == 0 || mustNot == 0 {
		t.Fatalf("the backup was not taken mid-stream: %d rows had to be in it, %d not", must, mustNot)
	}
	t.Logf("backup of %d rows: %d had to be in it, %d had to be absent, %d inserted or consumed while it was made or later; %d rows inserted, %d consumed in all",
		len(present), must, mustNot, either, len(inserted), len(consumed))
}

// loadEvent is when a statement of the load was sent and when its answer
// came (zero: not yet).
type loadEvent struct {
	sent, acked time.Time
}

// consumeLoop consumes rows of bq until ctx ends: queue_wait, read the owned
// row, queue_end; record gets each consumed row with the time queue_end was
// sent and acknowledged.
func consumeLoop(ctx context.Context, db *sql.DB, record func(key [2]int64, e loadEvent)) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	for ctx.Err() == nil {
		var got sql.NullInt64
		if err := conn.QueryRowContext(ctx, "SELECT queue_wait('bq', 1)").Scan(&got); err != nil {
			return err
		}
		if got.Int64 != 1 {
			continue
		}
		var key [2]int64
		if err := conn.QueryRowContext(ctx, "SELECT producer, seq FROM bq").Scan(&key[0], &key[1]); err != nil {
			return err
		}
		sent := time.Now()
		if _, err := conn.ExecContext(ctx, "SELECT queue_end()"); err != nil {
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		}
		record(key, loadEvent{sent, time.Now()})
	}
	return nil
}
