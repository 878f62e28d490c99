package integration

// The valve's promise at delivery: a destination behind a valve never
// receives more than max_items per interval, whatever its readers do (come
// late, stall, die and restart). Tried with the Mvalve Reader loop in Perl
// (mvalve_reader.pl: DBD::mysql, Mvalve's queue_wait and framing).
//
// Timing. Each arrival is timed by the Perl reader (Time::HiRes, printed
// to the microsecond) right after its queue_wait returned, before its next
// queue_wait consumes the row; the server runs on the same clock. The
// valve counts a released row against its destination from its release
// (before any reader can take it) until its consume, and for one interval
// after, so 3 arrivals of a destination (max_items 2) are always more than
// an interval apart. Delays of a loaded machine can only spread arrivals
// out: the assertions are exact (1 µs for the printed rounding), with no
// budget that slowness can break. Waiting for time to pass (a reader that
// starts late, a stall) polls the clock: that wait is the scenario.

import (
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// mvFramed is a message framed by Mvalve's Perl code.
type mvFramed struct{ dest, id, blob string }

// mvFrame frames n messages per destination with mvalve_frame.pl; the
// result is in insertion order (seq 1 of every destination, then seq 2...).
func mvFrame(t *testing.T, dests []string, n int) []mvFramed {
	t.Helper()
	var specs []string
	for _, d := range dests {
		specs = append(specs, fmt.Sprintf("%s:%d", d, n))
	}
	out, err := exec.Command("perl", append([]string{filepath.Join("testdata", "mvalve_frame.pl")}, specs...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("mvalve_frame.pl: %v\n%s", err, out)
	}
	var byDest [][]mvFramed
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 || f[0] != "MSG" {
			t.Fatalf("mvalve_frame.pl printed %q", l)
		}
		if len(byDest) == 0 || byDest[len(byDest)-1][0].dest != f[1] {
			byDest = append(byDest, nil)
		}
		byDest[len(byDest)-1] = append(byDest[len(byDest)-1], mvFramed{f[1], f[2], f[3]})
	}
	var order []mvFramed
	for seq := range n {
		for _, ms := range byDest {
			order = append(order, ms[seq])
		}
	}
	return order
}

// mvArrival is one message a Perl reader printed.
type mvArrival struct {
	reader    int
	dest, id  string
	table     string
	at        time.Time
	fromQueue string // the destination column
}

// mvPerlReaders runs mvalve_reader.pl processes and gathers what they print.
type mvPerlReaders struct {
	s       *server
	mu      sync.Mutex
	got     []mvArrival
	bad     []string
	holding []string // "<reader>:<count>" for each HOLDING line
}

// holds reports whether reader printed HOLDING after count messages.
func (rs *mvPerlReaders) holds(reader, count int) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Contains(rs.holding, fmt.Sprintf("%d:%d", reader, count))
}

// start starts reader number id (COUNT 1000, queue_wait timeout 1 s, so
// it loops until killed; it holds its row after the counts in hold) and
// waits until it is connected.
func (rs *mvPerlReaders) start(t *testing.T, id int, hold ...int) *perlProc {
	t.Helper()
	var hs []string
	for _, h := range hold {
		hs = append(hs, strconv.Itoa(h))
	}
	p := rs.s.startPerl(t, "mysql", "mvalve_reader.pl", "1000", "1", strings.Join(hs, ","))
	p.waitLine(t, time.Minute, "READY")
	go func() {
		for l := range p.lines {
			f := strings.Fields(l)
			rs.mu.Lock()
			switch {
			case len(f) == 6 && f[0] == "GOT":
				sec, err := strconv.ParseFloat(f[3], 64)
				if err != nil {
					rs.bad = append(rs.bad, l)
					break
				}
				rs.got = append(rs.got, mvArrival{reader: id, table: f[2], at: time.Unix(0, int64(sec*1e9)), fromQueue: f[4], id: f[5]})
			case len(f) == 2 && f[0] == "HOLDING":
				rs.holding = append(rs.holding, fmt.Sprintf("%d:%s", id, f[1]))
			case l == "TIMEOUT" || l == "DONE":
			default:
				rs.bad = append(rs.bad, l)
			}
			rs.mu.Unlock()
		}
	}()
	return p
}

func (rs *mvPerlReaders) snapshot() []mvArrival {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.got)
}

func (rs *mvPerlReaders) count(reader int) int {
	n := 0
	for _, a := range rs.snapshot() {
		if reader < 0 || a.reader == reader {
			n++
		}
	}
	return n
}

// has reports whether every message was received.
func (rs *mvPerlReaders) has(msgs []mvFramed) bool {
	seen := map[string]bool{}
	for _, a := range rs.snapshot() {
		seen[a.id] = true
	}
	for _, m := range msgs {
		if !seen[m.id] {
			return false
		}
	}
	return true
}

// mvCheckPerlDelivery checks the arrivals against the messages sent: each
// received from q_timed with its destination, in per-destination order
// (by first arrival), at most once, except the ids in mayRepeat (a row a
// reader held when it died comes again). Over every arrival, copies
// included, no destination gets more than mvMax within mvInterval. It
// returns per destination the smallest distance between arrivals mvMax
// apart, and how many arrivals the busiest interval of the destination
// held.
func mvCheckPerlDelivery(t *testing.T, got []mvArrival, msgs []mvFramed, mayRepeat map[string]bool) (map[string]time.Duration, map[string]int) {
	t.Helper()
	byID := map[string]mvFramed{}
	for _, m := range msgs {
		byID[m.id] = m
	}
	copies := map[string]int{}
	byDest := map[string][]mvArrival{}
	for _, a := range got {
		m, ok := byID[a.id]
		if !ok {
			t.Errorf("reader %d received an unknown message %q", a.reader, a.id)
			continue
		}
		if a.table != "q_timed" || a.fromQueue != m.dest {
			t.Errorf("%s came from %s with destination %q", a.id, a.table, a.fromQueue)
		}
		a.dest = m.dest
		copies[a.id]++
		byDest[m.dest] = append(byDest[m.dest], a)
	}
	for _, m := range msgs {
		switch n := copies[m.id]; {
		case n == 0:
			t.Errorf("lost: %s %s", m.dest, m.id)
		case n > 2 || n == 2 && !mayRepeat[m.id]:
			t.Errorf("duplicate: %s %s received %d times", m.dest, m.id, n)
		}
	}
	gaps, busiest := map[string]time.Duration{}, map[string]int{}
	for d, as := range byDest {
		slices.SortFunc(as, func(a, b mvArrival) int { return a.at.Compare(b.at) })
		// Order: first arrivals follow the sending order.
		var want, firsts []string
		for _, m := range msgs {
			if m.dest == d {
				want = append(want, m.id)
			}
		}
		seen := map[string]bool{}
		for _, a := range as {
			if !seen[a.id] {
				seen[a.id] = true
				firsts = append(firsts, a.id)
			}
		}
		if !slices.Equal(firsts, want) {
			t.Errorf("destination %s: received out of order: %q, want %q", d, firsts, want)
		}
		gap := time.Duration(1 << 62)
		for i := mvMax; i < len(as); i++ {
			g := as[i].at.Sub(as[i-mvMax].at)
			gap = min(gap, g)
			// The Perl clock prints microseconds: 1 µs of rounding.
			if g <= mvInterval-time.Microsecond {
				t.Errorf("destination %s: %s (reader %d, %s) and %s (reader %d, %s) arrived %v apart: %d within %v (limit %d)",
					d, as[i-mvMax].id, as[i-mvMax].reader, as[i-mvMax].at.Format(mvStamp), as[i].id, as[i].reader, as[i].at.Format(mvStamp),
					g, mvMax+1, mvInterval, mvMax)
			}
		}
		gaps[d] = gap
		for i := range as {
			n := 0
			for j := i; j < len(as) && as[j].at.Sub(as[i].at) <= mvInterval; j++ {
				n++
			}
			busiest[d] = max(busiest[d], n)
		}
	}
	return gaps, busiest
}

// mvInsertFramed inserts the messages into q_incoming.
func mvInsertFramed(t *testing.T, s *server, msgs []mvFramed) {
	t.Helper()
	ins := s.open(t)
	for _, m := range msgs {
		if _, err := ins.Exec("INSERT INTO q_incoming (destination, message) VALUES (?, ?)", m.dest, m.blob); err != nil {
			t.Fatal(err)
		}
	}
}

// TestValvePerlReaderLate is the scenario of the issue, shortened: 6
// messages for each of 3 destinations are written; the Perl reader starts
// 3 intervals later (the issue: 10 s, after which each destination got 18
// messages within 80 ms). The valve has left only max_items per
// destination in q_timed, and the reader receives at most 2 of a
// destination in any second.
func TestValvePerlReaderLate(t *testing.T) {
	requireClients(t, "perl", "DBI", "DBD::mysql", "Compress::Zlib", "Digest::SHA")
	s := mvStartValve(t, mvRateConfig)
	db := s.open(t)
	dests := []string{"late1", "late2", "late3"}
	const n = 6
	msgs := mvFrame(t, dests, n)
	mvInsertFramed(t, s, msgs)
	written := time.Now()
	eventually(t, time.Minute, "the valve to decide on every message", func() bool {
		st := mvValveStatus(t, db)
		for _, d := range dests {
			if st[d].admitted+st[d].throttled != n {
				return false
			}
		}
		return true
	})
	eventually(t, time.Minute, "3 intervals to pass (the reader is late)", func() bool {
		return time.Since(written) > 3*mvInterval
	})
	st := mvValveStatus(t, db)
	for _, d := range dests {
		if c := mvCount(t, db, "SELECT COUNT(*) FROM q_timed WHERE destination = ?", d); c != mvMax {
			t.Errorf("%s: %d rows in q_timed %v after they were written, with no reader; want %d", d, c, time.Since(written).Round(time.Millisecond), mvMax)
		}
		if r := st[d]; r.scheduled != n-mvMax || r.bucketFill != "2/2" || !r.nextRelease.IsZero() {
			t.Errorf("%s: SHOW VALVE STATUS scheduled %d, Bucket_fill %s, Next_release %v; want %d, 2/2, NULL (waiting for the reader)",
				d, r.scheduled, r.bucketFill, r.nextRelease, n-mvMax)
		}
	}

	rs := &mvPerlReaders{s: s}
	start := time.Now()
	rs.start(t, 1)
	eventually(t, time.Minute, "every message", func() bool { return rs.has(msgs) })
	took := time.Since(start)
	if len(rs.bad) > 0 {
		t.Errorf("unexpected lines from mvalve_reader.pl: %q", rs.bad)
	}
	gaps, busiest := mvCheckPerlDelivery(t, rs.snapshot(), msgs, nil)
	for _, d := range dests {
		t.Logf("late reader, %s: at most %d arrivals in any %v; arrivals %d apart at least %v apart", d, busiest[d], mvInterval, mvMax, gaps[d].Round(time.Microsecond))
	}
	t.Logf("the reader started %v after the writes and took %v for %d messages", start.Sub(written).Round(time.Millisecond), took.Round(time.Millisecond), len(msgs))
	mvDrained(t, db, time.Minute)
}

// TestValvePerlReaderStalled: a Perl reader reading 8 messages for each
// of 2 destinations stalls for 3 intervals holding its 3rd message (it
// does not go on to the queue_wait that would consume it, as a slow
// reader); meanwhile no destination has more than max_items rows in
// q_timed, the held one included. It resumes, then dies (SIGKILL) holding
// its 9th message, which comes back, and a second reader starts 1.5
// intervals later and finishes. Over all arrivals, the two copies of the
// 9th included, no destination gets more than 2 in any second.
func TestValvePerlReaderStalled(t *testing.T) {
	requireClients(t, "perl", "DBI", "DBD::mysql", "Compress::Zlib", "Digest::SHA")
	s := mvStartValve(t, mvRateConfig)
	db := s.open(t)
	dests := []string{"stall1", "stall2"}
	const n = 8
	msgs := mvFrame(t, dests, n)
	rs := &mvPerlReaders{s: s}
	p1 := rs.start(t, 1, 3, 9)
	mvInsertFramed(t, s, msgs)

	eventually(t, time.Minute, "the first reader to hold its 3rd message", func() bool { return rs.holds(1, 3) })
	stalledAt := time.Now()
	heldDest := rs.snapshot()[2].fromQueue
	// COUNT(*) ... WHERE skips rows other connections own (as Q4M's):
	// the held row is added to its destination's count.
	most := map[string]int{}
	eventually(t, time.Minute, "3 intervals of stall", func() bool {
		for _, d := range dests {
			c := mvCount(t, db, "SELECT COUNT(*) FROM q_timed WHERE destination = ?", d)
			if d == heldDest {
				c++
			}
			most[d] = max(most[d], c)
		}
		return time.Since(stalledAt) > 3*mvInterval
	})
	for _, d := range dests {
		if most[d] > mvMax {
			t.Errorf("%s: %d rows in q_timed while the reader stalled; want at most %d", d, most[d], mvMax)
		}
	}
	if err := p1.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "the first reader to hold its 9th message", func() bool { return rs.holds(1, 9) })
	p1.kill(t)
	killedAt := time.Now()
	got := rs.snapshot()
	held := got[len(got)-1].id
	eventually(t, time.Minute, "1.5 intervals (the second reader starts late)", func() bool {
		return time.Since(killedAt) > 3*mvInterval/2
	})
	rs.start(t, 2)
	eventually(t, time.Minute, "every message", func() bool { return rs.has(msgs) })
	if len(rs.bad) > 0 {
		t.Errorf("unexpected lines from mvalve_reader.pl: %q", rs.bad)
	}
	got = rs.snapshot()
	gaps, busiest := mvCheckPerlDelivery(t, got, msgs, map[string]bool{held: true})
	again := 0
	for _, a := range got {
		if a.reader == 2 && a.id == held {
			again++
		}
	}
	if again != 1 {
		t.Errorf("the row the first reader died holding came %d times to the second reader, want once", again)
	}
	t.Logf("first reader: held its 3rd message for %v (q_timed held at most %v rows per destination meanwhile), died holding its 9th, which came again",
		3*mvInterval, most)
	for _, d := range dests {
		t.Logf("stalled reader, %s: at most %d arrivals in any %v; arrivals %d apart at least %v apart", d, busiest[d], mvInterval, mvMax, gaps[d].Round(time.Microsecond))
	}
	mvDrained(t, db, time.Minute)
}
