package ops

import (
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// TestHistory checks the samples the charts draw: rates from the counters'
// increase, a counter that goes back (TRUNCATE) counted from zero, the
// oldest samples dropped, dropped tables forgotten.
func TestHistory(t *testing.T) {
	h := newHistory(3 * time.Second) // three samples
	at := time.Unix(1000, 0)
	snap := func(rows int, written, removed uint64) []queue.TableState {
		st := queue.TableState{Database: "test", Table: "jobs", Rows: rows, OldestAge: 1500 * time.Millisecond}
		st.RowsWritten, st.RowsRemoved = written, removed
		return []queue.TableState{st}
	}
	h.sample(snap(0, 0, 0), at)
	h.sample(snap(10, 20, 10), at.Add(2*time.Second))
	h.sample(snap(12, 5, 10), at.Add(3*time.Second)) // truncated meanwhile
	pts := h.since("test.jobs", 0)
	if len(pts) != 3 {
		t.Fatalf("%d points, want 3", len(pts))
	}
	if p := pts[1]; p.Rows != 10 || p.In != 10 || p.Out != 5 || p.Age != 1.5 {
		t.Errorf("second point %+v, want rows 10, in 10/s, out 5/s, age 1.5", p)
	}
	if p := pts[2]; p.In != 5 || p.Out != 0 {
		t.Errorf("after TRUNCATE %+v, want in 5/s (from zero), out 0", p)
	}
	h.sample(snap(1, 6, 10), at.Add(4*time.Second))
	if pts := h.since("test.jobs", 0); len(pts) != 3 || pts[0].At != at.Add(2*time.Second).UnixMilli() {
		t.Errorf("after a fourth sample: %+v, want the last three", pts)
	}
	if pts := h.since("test.jobs", at.Add(3*time.Second).UnixMilli()); len(pts) != 1 {
		t.Errorf("since the third sample: %+v, want one", pts)
	}
	h.sample(nil, at.Add(5*time.Second))
	if pts := h.since("test.jobs", 0); pts != nil {
		t.Errorf("dropped table still has points: %+v", pts)
	}
}
