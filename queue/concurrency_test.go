package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentDrain: consumers draining a queue while producers fill it
// consume every row exactly once.
func TestConcurrentDrain(t *testing.T) {
	const (
		consumers   = 8
		preinserted = 2000
		producers   = 2
		perProducer = 1000
		total       = preinserted + producers*perProducer
	)
	db := newDB(t)
	h := createTable(t, db, "q")
	pre := make([][]byte, preinserted)
	for i := range pre {
		pre[i] = fmt.Appendf(nil, "pre-%d", i)
	}
	if first, err := db.Insert(h, pre); err != nil || first != 1 {
		t.Fatalf("Insert = %d, %v", first, err)
	}

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	var (
		taken   atomic.Int64
		mu      sync.Mutex
		byRowID = make(map[uint64]string, total) // rowid -> payload
		dups    []uint64
		errs    = make(chan error, consumers+producers)
		wg      sync.WaitGroup
	)
	for c := range consumers {
		wg.Go(func() {
			o := db.NewOwner()
			defer o.Close()
			for {
				idx, err := o.Wait(ctx, subs("q"), time.Second)
				if err != nil {
					if !errors.Is(err, context.Canceled) {
						errs <- fmt.Errorf("consumer %d: Wait: %w", c, err)
					}
					return
				}
				if idx == 0 {
					if ctx.Err() != nil {
						return
					}
					continue
				}
				id, ok, err := o.RowID()
				if err != nil || !ok {
					errs <- fmt.Errorf("consumer %d: RowID = %v, %v", c, ok, err)
					return
				}
				var payload string
				if err := o.Scan(h, func(r uint64, p []byte) bool {
					if r == id {
						payload = string(p)
					}
					return true
				}); err != nil {
					errs <- fmt.Errorf("consumer %d: Scan: %w", c, err)
					return
				}
				mu.Lock()
				if _, seen := byRowID[id]; seen {
					dups = append(dups, id)
				}
				byRowID[id] = payload
				mu.Unlock()
				if taken.Add(1) == total {
					if err := o.End(); err != nil {
						errs <- fmt.Errorf("consumer %d: End: %w", c, err)
					}
					stop()
					return
				}
			}
		})
	}
	for p := range producers {
		wg.Go(func() {
			for i := 0; i < perProducer; {
				n := min(1+i%7, perProducer-i) // batches of 1..7 rows
				rows := make([][]byte, n)
				for j := range rows {
					rows[j] = fmt.Appendf(nil, "p%d-%d", p, i+j)
				}
				if _, err := db.Insert(h, rows); err != nil {
					errs <- fmt.Errorf("producer %d: Insert: %w", p, err)
					return
				}
				i += n
			}
		})
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Minute): // a hang, not slowness (0.5-1.9 s at load 12, race build)
		stop()
		<-done
		t.Fatalf("drain did not finish: %d of %d rows taken", taken.Load(), total)
	}
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if len(dups) > 0 {
		t.Errorf("rows handed out twice: %v", dups)
	}
	if len(byRowID) != total {
		t.Errorf("%d distinct rows taken, want %d", len(byRowID), total)
	}
	want := make(map[string]bool, total)
	for i := range preinserted {
		want[fmt.Sprintf("pre-%d", i)] = true
	}
	for p := range producers {
		for i := range perProducer {
			want[fmt.Sprintf("p%d-%d", p, i)] = true
		}
	}
	for id := uint64(1); id <= total; id++ {
		p, ok := byRowID[id]
		if !ok {
			t.Errorf("row %d never taken", id)
			continue
		}
		if !want[p] {
			t.Errorf("row %d: payload %q unexpected or seen twice", id, p)
		}
		delete(want, p)
	}
	if len(want) > 0 {
		t.Errorf("%d payloads never seen", len(want))
	}
	if n := db.Count(h); n != 0 {
		t.Errorf("Count after drain = %d, want 0", n)
	}
	checkRows(t, "rows left", scan(t, db.NewOwner(), h))
}
