package ops

import (
	"context"
	"sync"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// history keeps, per table, one sample a second for the status page's
// charts.
type history struct {
	keep int // samples per table

	mu     sync.Mutex
	tables map[string]*series // by "db.table"; guarded by mu
}

// series is one table's samples, oldest first; at most keep of them.
type series struct {
	db, table string
	// last counters, for the rates
	written, removed uint64
	lastAt           time.Time
	points           []point
}

// point is one sample of a table.
type point struct {
	At      int64   `json:"t"`       // Unix milliseconds
	Rows    int     `json:"rows"`    // depth
	In      float64 `json:"in"`      // rows inserted per second since the previous sample
	Out     float64 `json:"out"`     // rows consumed per second
	Age     float64 `json:"age"`     // oldest waiting row's age, seconds
	Waiters int     `json:"waiters"` // blocked queue_waits
}

func newHistory(d time.Duration) *history {
	return &history{keep: max(int(d/time.Second), 2), tables: map[string]*series{}}
}

// run samples db once a second until ctx ends (nothing without one).
func (h *history) run(ctx context.Context, db Store) {
	if db == nil {
		return
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	h.sample(db.Snapshot(), time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			h.sample(db.Snapshot(), now)
		}
	}
}

// sample records one snapshot taken at now.
func (h *history) sample(snap []queue.TableState, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen := make(map[string]bool, len(snap))
	for _, t := range snap {
		k := t.Database + "." + t.Table
		seen[k] = true
		s := h.tables[k]
		p := point{At: now.UnixMilli(), Rows: t.Rows, Age: t.OldestAge.Seconds(), Waiters: t.Waiters}
		if s == nil {
			s = &series{db: t.Database, table: t.Table}
			h.tables[k] = s
		} else if dt := now.Sub(s.lastAt).Seconds(); dt > 0 {
			p.In = rate(s.written, t.RowsWritten, dt)
			p.Out = rate(s.removed, t.RowsRemoved, dt)
		}
		s.written, s.removed, s.lastAt = t.RowsWritten, t.RowsRemoved, now
		if len(s.points) == h.keep {
			copy(s.points, s.points[1:])
			s.points = s.points[:h.keep-1]
		}
		s.points = append(s.points, p)
	}
	for k := range h.tables {
		if !seen[k] {
			delete(h.tables, k) // dropped
		}
	}
}

// rate is a counter's increase per second; a counter that went back
// (TRUNCATE, restart) counts from zero.
func rate(prev, cur uint64, dt float64) float64 {
	if cur < prev {
		prev = 0
	}
	return float64(cur-prev) / dt
}

// since returns the samples of table k taken after the Unix millisecond
// after (all of them if after is 0).
func (h *history) since(k string, after int64) []point {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.tables[k]
	if s == nil {
		return nil
	}
	var out []point
	for _, p := range s.points {
		if p.At > after {
			out = append(out, p)
		}
	}
	return out
}
