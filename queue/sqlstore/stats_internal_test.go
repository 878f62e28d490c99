package sqlstore

import (
	"testing"
	"time"
)

// TestArrivals: a row's arrival is the first mark at or above its rowid;
// marks of consumed rows are forgotten; too many marks are thinned so that
// rows look younger, never older.
func TestArrivals(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var a arrivals
	a.note(1, 3, at(0)) // first look: rows 1..3 there
	a.note(1, 5, at(1)) // 4, 5 came
	a.note(1, 5, at(2)) // nothing new
	for rowid, want := range map[uint64]time.Time{1: at(0), 3: at(0), 4: at(1), 5: at(1), 6: {}} {
		if got := a.arrival(rowid); !got.Equal(want) {
			t.Errorf("arrival(%d) = %v, want %v", rowid, got, want)
		}
	}
	a.note(4, 8, at(3)) // 1..3 consumed
	if len(a.marks) != 2 || a.marks[0].rowid != 5 {
		t.Fatalf("marks after 1..3 were consumed: %+v", a.marks)
	}
	if got := a.arrival(4); !got.Equal(at(1)) {
		t.Fatalf("arrival(4) = %v after 1..3 were consumed", got)
	}

	var b arrivals
	for i := range uint64(3 * maxMarks) {
		b.note(1, i+1, at(int(i)))
		if len(b.marks) > maxMarks {
			t.Fatalf("%d marks", len(b.marks))
		}
	}
	for r := uint64(1); r <= 3*maxMarks; r++ {
		if got, truth := b.arrival(r), at(int(r-1)); got.Before(truth) {
			t.Fatalf("arrival(%d) = %v, before the row came (%v)", r, got, truth)
		}
	}
	if last := b.marks[len(b.marks)-1]; last.rowid != 3*maxMarks {
		t.Fatalf("the newest mark was dropped: %+v", last)
	}
}
