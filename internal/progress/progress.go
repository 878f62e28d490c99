// Package progress logs how a long operation a person waits for is going
// (the startup recovery of a backlog, a relay catching up): at most one
// line per interval, with the count so far, the rate and, when the total
// is known, the percentage and the time left. It keeps no goroutine: the
// operation reports its steps with Add, which looks at the clock only every
// stride steps.
package progress

import (
	"log/slog"
	"math"
	"time"
)

// DefaultInterval is how often a line is logged unless the caller says
// otherwise.
const DefaultInterval = 2 * time.Second

// Meter counts an operation's steps and logs a line when an interval has
// passed. It is not safe for concurrent use: one goroutine drives it.
type Meter struct {
	log      *slog.Logger
	msg      string
	unit     string // "rows", "messages", ...
	total    int64  // 0: unknown
	interval time.Duration
	stride   int64
	attrs    func() []any // extra attributes for each line, or nil

	start   time.Time
	last    time.Time // of the last line (or the start)
	n       int64
	lastN   int64 // n at the last line
	checked int64 // n when the clock was last looked at
	lines   int
}

// Config configures a Meter.
type Config struct {
	// Msg is the message of every line ("recovering the store").
	Msg string
	// Unit names what is counted, as the attribute key ("rows").
	Unit string
	// Total is how many steps there are, if known (else 0).
	Total int64
	// Interval between lines; 0 means DefaultInterval, negative never.
	Interval time.Duration
	// Stride: the clock is looked at every Stride steps (at least 1).
	Stride int64
	// Attrs, if set, adds attributes to each line (read at each line).
	Attrs func() []any
}

// New returns a Meter that starts now.
func New(log *slog.Logger, c Config) *Meter {
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	now := time.Now()
	return &Meter{
		log: log, msg: c.Msg, unit: c.Unit, total: c.Total, interval: c.Interval,
		stride: max(c.Stride, 1), attrs: c.Attrs, start: now, last: now,
	}
}

// Add counts n more steps and logs a line if the interval has passed.
func (m *Meter) Add(n int64) {
	m.n += n
	if m.interval < 0 || m.n-m.checked < m.stride {
		return
	}
	m.checked = m.n
	now := time.Now()
	if now.Sub(m.last) < m.interval {
		return
	}
	m.line(now)
}

// SetTotal sets the total when it becomes known (or changes).
func (m *Meter) SetTotal(total int64) { m.total = total }

// Count returns the steps counted so far.
func (m *Meter) Count() int64 { return m.n }

// Lines returns how many progress lines were logged.
func (m *Meter) Lines() int { return m.lines }

// Elapsed returns the time since the start.
func (m *Meter) Elapsed() time.Duration { return time.Since(m.start) }

// Rate is n per second over d, to one decimal.
func Rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

func (m *Meter) line(now time.Time) {
	rate := Rate(m.n-m.lastN, now.Sub(m.last)) // the recent rate, not the average
	attrs := []any{m.unit, m.n, m.unit + "_per_s", rate, "elapsed", now.Sub(m.start).Round(time.Millisecond)}
	if m.total > 0 {
		pct := math.Round(float64(m.n)/float64(m.total)*1000) / 10
		attrs = append(attrs, "total", m.total, "percent", pct)
		if left := m.total - m.n; left > 0 && rate > 0 {
			attrs = append(attrs, "eta", time.Duration(float64(left)/rate*float64(time.Second)).Round(time.Second))
		}
	}
	if m.attrs != nil {
		attrs = append(attrs, m.attrs()...)
	}
	m.log.Info(m.msg, attrs...)
	m.last, m.lastN = now, m.n
	m.lines++
}
