package server

import (
	"sync"
	"time"
)

// refuseLogEvery is how often the log may tell of connections refused over
// --max-connections: a connection storm must not become a log storm (one
// line per refused connection was 4,000 lines for a burst of 5,000).
const refuseLogEvery = 10 * time.Second

// refuseLog lets the first refusal through to the log, then at most one
// per refuseLogEvery, and counts the ones it held back since.
type refuseLog struct {
	mu         sync.Mutex
	at         time.Time // of the last line; zero before the first
	suppressed int64
}

// allow reports whether the refusal at now may be logged, and how many
// were held back since the last line.
func (l *refuseLog) allow(now time.Time) (bool, int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.at.IsZero() && now.Sub(l.at) < refuseLogEvery {
		l.suppressed++
		return false, 0
	}
	n := l.suppressed
	l.at, l.suppressed = now, 0
	return true, n
}
