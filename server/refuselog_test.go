package server

import (
	"testing"
	"time"
)

func TestRefuseLog(t *testing.T) {
	var l refuseLog
	t0 := time.Unix(1000, 0)
	step := []struct {
		at         time.Duration
		ok         bool
		suppressed int64
	}{
		{0, true, 0}, // the first refusal is logged
		{time.Millisecond, false, 0},
		{5 * time.Second, false, 0},
		{refuseLogEvery - 1, false, 0},
		{refuseLogEvery, true, 3}, // then one line per interval, with the count held back
		{refuseLogEvery + time.Second, false, 0},
		{5 * refuseLogEvery, true, 1},
		{7 * refuseLogEvery, true, 0},
	}
	for _, s := range step {
		ok, n := l.allow(t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Errorf("at %v: allow = %v, %d; want %v, %d", s.at, ok, n, s.ok, s.suppressed)
		}
	}
}
