package valve

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

const sec = int64(time.Second / time.Microsecond) // 1 s in µs

// TestBudget checks the gate: a destination may have at most maxItems
// messages in flight (released, not consumed) or landed (consumed) within
// the interval; a charge exactly interval old still counts (Data::Valve
// drops only entries strictly older); when none may go, at is when one
// may if nothing more lands, or 0 if only a landing can make room.
func TestBudget(t *testing.T) {
	f := func(n int) []flight {
		var out []flight
		for i := range n {
			out = append(out, flight{1, uint64(i + 1)})
		}
		return out
	}
	tests := []struct {
		name     string
		flights  int
		charges  []int64
		now      int64
		maxItems int
		wantN    int
		wantAt   int64
		kept     []int64 // charges after the call
	}{
		{"nothing: max at once", 0, nil, 5 * sec, 2, 2, 5 * sec, nil},
		{"one in flight", 1, nil, 5 * sec, 2, 1, 5 * sec, nil},
		{"full of flights: only a landing helps", 2, nil, 5 * sec, 2, 0, 0, nil},
		{"more flights than the (lowered) limit", 3, nil, 5 * sec, 2, 0, 0, nil},
		{"one landed, one free", 0, []int64{4 * sec}, 5 * sec, 2, 1, 5 * sec, []int64{4 * sec}},
		{"two landed: 1 µs after the oldest leaves", 0, []int64{4*sec + 100, 4*sec + 200}, 4*sec + 300, 2, 0, 5*sec + 101, []int64{4*sec + 100, 4*sec + 200}},
		{"a charge exactly interval old still counts", 0, []int64{0, 500}, sec, 2, 0, sec + 1, []int64{0, 500}},
		{"a charge older than interval is forgotten", 0, []int64{0, 500}, sec + 1, 2, 1, sec + 1, []int64{500}},
		{"everything forgotten", 0, []int64{0, 10}, 5 * sec, 2, 2, 5 * sec, []int64{}},
		{"one in flight, one landed: when the landed one leaves", 1, []int64{300}, 400, 2, 0, 300 + sec + 1, []int64{300}},
		{"one in flight, two landed: the newer one must leave too", 1, []int64{100, 300}, 400, 2, 0, 300 + sec + 1, []int64{100, 300}},
		{"max 3: one in flight, three landed", 1, []int64{100, 200, 300}, 400, 3, 0, 200 + sec + 1, []int64{100, 200, 300}},
		{"max 1 (strict)", 0, []int64{7 * sec}, 7*sec + 5, 1, 0, 8*sec + 1, []int64{7 * sec}},
		{"max 1, in flight", 1, nil, 0, 1, 0, 0, nil},
		{"a charge in the future (clock stepped back) counts", 0, []int64{9 * sec, 9 * sec}, 5 * sec, 2, 0, 10*sec + 1, []int64{9 * sec, 9 * sec}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &dest{name: "d", flights: f(tc.flights), charges: slices.Clone(tc.charges)}
			n, at := d.budget(tc.now, tc.maxItems, sec)
			if n != max(tc.wantN, 0) && !(tc.wantN == 0 && n <= 0) || at != tc.wantAt {
				t.Errorf("budget(now=%d, max=%d) with %d in flight and charges %v = %d, %d; want %d, %d",
					tc.now, tc.maxItems, tc.flights, tc.charges, n, at, tc.wantN, tc.wantAt)
			}
			if tc.kept == nil {
				tc.kept = []int64{}
			}
			if !slices.Equal(append([]int64{}, d.charges...), tc.kept) {
				t.Errorf("charges kept %v, want %v", d.charges, tc.kept)
			}
		})
	}
}

// TestBudgetDelivery simulates the valve's gate against readers that take
// each released message after a random lag (late, slow, stalled for
// several intervals) and consume it after another: whenever a reader
// receives a message (any time between taking and consuming it), no
// interval holds more than maxItems receptions of the destination.
// Releases follow the budget exactly as the scheduler does.
func TestBudgetDelivery(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for run := range 300 {
		maxItems := 1 + rng.IntN(4)
		interval := int64(1 + rng.IntN(3*int(sec)))
		lag := func() int64 { // mostly quick, sometimes very late
			if rng.IntN(5) == 0 {
				return int64(rng.ExpFloat64() * float64(5*interval))
			}
			return int64(rng.ExpFloat64() * float64(interval) / 10)
		}
		d := &dest{name: "d"}
		type msg struct{ consume, received int64 }
		inFlight := map[flight]msg{}
		var received []int64
		now, waiting, next := int64(0), 40, uint64(0)
		for waiting > 0 || len(inFlight) > 0 {
			n, at := d.budget(now, maxItems, interval)
			for ; n > 0 && waiting > 0; n-- {
				waiting--
				next++
				f := flight{1, next}
				d.flights = append(d.flights, f)
				take := now + lag()
				m := msg{consume: take + lag()}
				m.received = take + rng.Int64N(m.consume-take+1)
				inFlight[f] = m
				received = append(received, m.received)
			}
			// The next event: a consume, or the budget's time.
			ev := int64(-1)
			for _, m := range inFlight {
				if ev < 0 || m.consume < ev {
					ev = m.consume
				}
			}
			if waiting > 0 && at > 0 && (ev < 0 || at < ev) {
				ev = at
			}
			now = max(now, ev)
			for f, m := range inFlight {
				if m.consume <= now {
					delete(inFlight, f)
					d.flights = slices.DeleteFunc(d.flights, func(g flight) bool { return g == f })
					insertSorted(&d.charges, m.consume)
				}
			}
		}
		slices.Sort(received)
		for i := maxItems; i < len(received); i++ {
			if received[i]-received[i-maxItems] <= interval {
				t.Fatalf("run %d (max %d per %d µs): receptions %d and %d are %d µs apart: %d within one interval",
					run, maxItems, interval, i-maxItems+1, i+1, received[i]-received[i-maxItems], maxItems+1)
			}
		}
	}
}

// ---------------------------------------------------------------------------
// The valve in process, on a real store and SQL engine, with a fake clock.

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

var t0 = time.Date(2030, 6, 1, 12, 0, 0, 0, time.Local)

// at is t0 plus d (µs precision).
func at(d time.Duration) time.Time { return t0.Add(d) }

const mvalveDDL = `CREATE TABLE q_emerg (destination VARCHAR(40) NOT NULL, message BLOB NOT NULL) ENGINE=QUEUE;
CREATE TABLE q_timed (destination VARCHAR(40) NOT NULL, ready BIGINT NOT NULL, message BLOB NOT NULL) ENGINE=QUEUE;
CREATE TABLE q_incoming (destination VARCHAR(40) NOT NULL, message BLOB NOT NULL) ENGINE=QUEUE;
CREATE TABLE q_statslog (action VARCHAR(40) NOT NULL, destination VARCHAR(40) NOT NULL, logged_on TIMESTAMP NOT NULL) ENGINE=QUEUE`

// rig is a store, an SQL engine and a running valve.
type rig struct {
	t      *testing.T
	dir    string
	s      Settings
	db     *queue.DB
	eng    *sqlfront.Engine
	sess   *sqlfront.Session
	v      *Valve
	clock  *fakeClock // nil: the real clock
	cancel context.CancelFunc
	done   chan error
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startRig opens the store in dir (creating Mvalve's tables when create is
// set) and runs a valve on it with the clock.
func startRig(t *testing.T, dir string, s Settings, clock *fakeClock, create bool) *rig {
	t.Helper()
	return startRigWith(t, dir, s, clock, create, &queue.Options{NoSync: true})
}

// startRigWith is startRig with the store's options (Logger,
// InitialDatabases and DiskReserve are set here).
func startRigWith(t *testing.T, dir string, s Settings, clock *fakeClock, create bool, o *queue.Options) *rig {
	t.Helper()
	o.Logger, o.InitialDatabases, o.DiskReserve = quietLog(), []string{"test"}, -1
	db, err := queue.Open(dir, o)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, dir: dir, s: s, db: db, clock: clock}
	r.eng = sqlfront.NewEngine(db, sqlfront.Config{Version: "5.7.99-test", Logger: quietLog()})
	r.sess = r.newSession()
	if create {
		for _, q := range strings.Split(mvalveDDL, ";\n") {
			r.exec(q)
		}
	}
	t.Cleanup(r.stop)
	r.startValve()
	return r
}

// startValve runs a new valve on the rig's store and waits until it has
// loaded its state.
func (r *rig) startValve() {
	r.t.Helper()
	v := r.launchValve()
	r.waitFor("the valve to start", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.started
	})
}

// launchValve runs a new valve on the rig's store.
func (r *rig) launchValve() *Valve {
	r.t.Helper()
	v, err := New(r.db, r.eng, r.s, quietLog())
	if err != nil {
		r.t.Fatal(err)
	}
	if r.clock != nil {
		v.now, v.manual = r.clock.now, true // the test runs the scheduler's steps
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	r.v, r.cancel, r.done = v, cancel, done
	return v
}

// stopValve stops the valve (the store stays open).
func (r *rig) stopValve() {
	r.t.Helper()
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("valve Run: %v", err)
	}
	r.cancel = nil
}

func (r *rig) newSession() *sqlfront.Session {
	s := r.eng.NewSession(uint32(rand.IntN(1<<20)+1), "root", "127.0.0.1")
	if err := s.UseDB("test"); err != nil {
		r.t.Fatal(err)
	}
	return s
}

// stop stops the valve and closes the store (idempotent).
func (r *rig) stop() {
	if r.db == nil {
		return
	}
	r.stopValve()
	r.sess.Close()
	if err := r.db.Close(); err != nil {
		r.t.Errorf("close store: %v", err)
	}
	r.db = nil
}

func (r *rig) exec(q string) *sqlfront.Result {
	r.t.Helper()
	return execOn(r.t, r.sess, q)
}

func execOn(t testing.TB, s *sqlfront.Session, q string) *sqlfront.Result {
	t.Helper()
	res, err := s.Exec(context.Background(), q)
	if err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return res
}

// rows returns a query's rows as strings.
func (r *rig) rows(q string) [][]string {
	r.t.Helper()
	return strRows(r.exec(q))
}

func strRows(res *sqlfront.Result) [][]string {
	var out [][]string
	for _, row := range res.Rows {
		var s []string
		for _, v := range row {
			switch v := v.(type) {
			case []byte:
				s = append(s, string(v))
			default:
				s = append(s, fmt.Sprint(v))
			}
		}
		out = append(out, s)
	}
	return out
}

func (r *rig) insert(table, dest string, msgs ...string) {
	r.t.Helper()
	for _, m := range msgs {
		r.exec(fmt.Sprintf("INSERT INTO %s (destination, message) VALUES ('%s', '%s')", table, dest, m))
	}
}

// waitFor polls cond (every 2 ms) until it holds, failing after a minute.
func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond) // polling interval
	}
}

func (r *rig) status(dest string) Status {
	for _, s := range r.v.Status() {
		if s.Destination == dest {
			return s
		}
	}
	return Status{}
}

// decided waits until the valve decided on n messages of dest.
func (r *rig) decided(dest string, n uint64) Status {
	r.t.Helper()
	r.waitFor(fmt.Sprintf("%d decisions for %s", n, dest), func() bool {
		s := r.status(dest)
		return s.Admitted+s.Throttled+s.Dropped >= n
	})
	return r.status(dest)
}

// advance sets the clock and releases what may go (as the scheduler does
// when it wakes).
func (r *rig) advance(to time.Time) {
	r.t.Helper()
	r.clock.set(to)
	r.settle()
}

// settle runs the scheduler's step until it has nothing to release now.
func (r *rig) settle() {
	r.t.Helper()
	for range 1000 {
		wait, err := r.v.step()
		if err != nil {
			r.t.Fatalf("step: %v", err)
		}
		if wait > 0 {
			return
		}
	}
	r.t.Fatal("the scheduler keeps releasing")
}

func (r *rig) timed() [][]string {
	return r.rows("SELECT destination, ready, message FROM q_timed")
}

// timedMessages returns the messages in q_timed, in order.
func (r *rig) timedMessages() []string {
	var out []string
	for _, row := range r.timed() {
		out = append(out, row[2])
	}
	return out
}

// take makes s take the oldest row of q_timed (queue_wait with no wait)
// and returns its message, or "" if there is none; s then owns the row
// until consume.
func take(t testing.TB, s *sqlfront.Session) string {
	t.Helper()
	if got := strRows(execOn(t, s, "SELECT queue_wait('q_timed', 0)")); got[0][0] != "1" {
		return ""
	}
	rows := strRows(execOn(t, s, "SELECT message FROM q_timed"))
	if len(rows) != 1 {
		t.Fatalf("owner view of q_timed: %q", rows)
	}
	return rows[0][0]
}

func consume(t testing.TB, s *sqlfront.Session) {
	t.Helper()
	execOn(t, s, "SELECT queue_end()")
}

func wantStatus(t *testing.T, got Status, admitted, throttled, dropped, released uint64, scheduled int, next time.Time) {
	t.Helper()
	if got.Admitted != admitted || got.Throttled != throttled || got.Dropped != dropped || got.Released != released ||
		got.Scheduled != scheduled || !got.NextRelease.Equal(next) {
		t.Errorf("status of %s: admitted %d throttled %d dropped %d released %d scheduled %d next %v; want %d %d %d %d %d %v",
			got.Destination, got.Admitted, got.Throttled, got.Dropped, got.Released, got.Scheduled, got.NextRelease,
			admitted, throttled, dropped, released, scheduled, next)
	}
}

func rateSettings() Settings {
	s := Defaults()
	s.MaxItems, s.Interval = 2, 1
	return s
}

// TestValvePipeline drives the valve with a fake clock: admission, messages
// waiting while their destination's released rows are not consumed (ten
// seconds later nothing more is in q_timed), releases paced by consumes,
// the stats log, the emergency drop window, and SHOW VALVE STATUS's
// numbers.
func TestValvePipeline(t *testing.T) {
	clock := &fakeClock{t: t0}
	r := startRig(t, t.TempDir(), rateSettings(), clock, true)

	r.insert("q_incoming", "a", "a1", "a2", "a3", "a4", "a5")
	r.insert("q_incoming", "b", "b1")
	wantStatus(t, r.decided("a", 5), 2, 3, 0, 0, 3, time.Time{}) // waits for consumes: no time
	wantStatus(t, r.decided("b", 1), 1, 0, 0, 0, 0, time.Time{})
	if s := r.status("a"); s.InWindow != 2 || s.MaxItems != 2 || s.Valve != "mvalve" {
		t.Errorf("a: in window %d/%d, valve %q; want 2/2 mvalve", s.InWindow, s.MaxItems, s.Valve)
	}
	want := [][]string{{"a", "0", "a1"}, {"a", "0", "a2"}, {"b", "0", "b1"}}
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed after the first decisions: %q, want %q", got, want)
	}
	if got := r.rows("SELECT COUNT(*) FROM q_incoming"); got[0][0] != "0" {
		t.Errorf("q_incoming has %s rows", got[0][0])
	}
	if got := r.rows("SELECT action, destination, logged_on FROM q_statslog"); len(got) != 3 ||
		got[0][0] != "throttle" || got[0][1] != "a" || got[0][2] != t0.Format("2006-01-02 15:04:05") {
		t.Errorf("q_statslog: %q, want 3 throttle rows for a at %s", got, t0.Format(time.DateTime))
	}

	// Ten seconds on, with no reader, nothing more went out.
	r.advance(at(10 * time.Second))
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed 10 s later with no reader: %q, want %q", got, want)
	}
	// A reader consumes a1 at 10 s and a2 at 10.5 s: a3 may go 1 s (and
	// 1 µs) after a1's consume, a4 1 s after a2's.
	reader := r.newSession()
	defer reader.Close()
	for _, c := range []struct {
		at   time.Duration
		want string
	}{{10 * time.Second, "a1"}, {10500 * time.Millisecond, "a2"}} {
		r.clock.set(at(c.at))
		if got := take(t, reader); got != c.want {
			t.Fatalf("reader took %q, want %q", got, c.want)
		}
		consume(t, reader)
		r.settle()
		if s := r.status("a"); s.Released != 0 {
			t.Fatalf("released at %v: %+v", c.at, s)
		}
	}
	slot3, slot4 := at(11*time.Second+time.Microsecond), at(11500*time.Millisecond+time.Microsecond)
	wantStatus(t, r.status("a"), 2, 3, 0, 0, 3, slot3)
	r.advance(slot3.Add(-time.Microsecond))
	wantStatus(t, r.status("a"), 2, 3, 0, 0, 3, slot3)
	r.advance(slot3)
	wantStatus(t, r.status("a"), 2, 3, 0, 1, 2, slot4)
	r.advance(slot4)
	// a3 and a4 are in flight: a5 waits for a consume.
	wantStatus(t, r.status("a"), 2, 3, 0, 2, 1, time.Time{})
	want = [][]string{{"b", "0", "b1"}, {"a", "0", "a3"}, {"a", "0", "a4"}}
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed after the releases: %q, want %q", got, want)
	}
	// b1 and a3 consumed at 12 s: the window then holds a3 (landed) and
	// a4 (in flight), so a5 goes 1 s (and 1 µs) after a3's consume.
	r.clock.set(at(12 * time.Second))
	for _, w := range []string{"b1", "a3"} {
		if got := take(t, reader); got != w {
			t.Fatalf("reader took %q, want %q", got, w)
		}
		consume(t, reader)
	}
	r.settle()
	wantStatus(t, r.status("a"), 2, 3, 0, 2, 1, at(13*time.Second+time.Microsecond))
	r.advance(at(13*time.Second + time.Microsecond))
	wantStatus(t, r.status("a"), 2, 3, 0, 3, 0, time.Time{})
	if got := r.timedMessages(); !slices.Equal(got, []string{"a4", "a5"}) {
		t.Errorf("q_timed at 13 s: %q, want [a4 a5]", got)
	}
	for _, w := range []string{"a4", "a5"} {
		if got := take(t, reader); got != w {
			t.Fatalf("reader took %q, want %q", got, w)
		}
		consume(t, reader)
	}

	// An emergency message for a, consumed by a connection, opens a drop
	// window until the whole second after now + interval.
	r.insert("q_emerg", "a", "e1")
	other := r.newSession()
	defer other.Close()
	execOn(t, other, "SELECT queue_wait('q_emerg', 1)")
	execOn(t, other, "SELECT queue_end()")
	r.waitFor("the drop window", func() bool { return !r.status("a").DropUntil.IsZero() })
	if got, want := r.status("a").DropUntil, at(14*time.Second); !got.Equal(want) {
		t.Errorf("DropUntil %v, want %v (whole seconds, as Mvalve's time())", got, want)
	}
	r.insert("q_incoming", "a", "a6")
	wantStatus(t, r.decided("a", 6), 2, 3, 1, 3, 0, time.Time{})
	r.insert("q_incoming", "b", "b2") // another destination is not dropped
	wantStatus(t, r.decided("b", 2), 2, 0, 0, 0, 0, time.Time{})

	// At the end of the drop window the next message passes, admitted at
	// once: a4 and a5 landed at 13 s, more than 1 s before 14.5 s.
	r.clock.set(at(14500 * time.Millisecond))
	if !r.status("a").DropUntil.IsZero() {
		t.Errorf("DropUntil still set at its end")
	}
	r.insert("q_incoming", "a", "a7")
	wantStatus(t, r.decided("a", 7), 3, 3, 1, 3, 0, time.Time{})
	if got := r.timedMessages(); !slices.Equal(got, []string{"b2", "a7"}) {
		t.Errorf("q_timed at the end: %q, want [b2 a7] (a6 dropped)", got)
	}
	if got := r.rows("SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle'"); got[0][0] != "3" {
		t.Errorf("q_statslog: %s throttle rows, want 3", got[0][0])
	}
}

// receiveAll makes reader take and consume, as fast as the valve lets it,
// every message until want arrived, advancing the fake clock by step
// between tries; it returns the messages and the (fake) times at which the
// reader received them.
func (r *rig) receiveAll(reader *sqlfront.Session, want int, step time.Duration) ([]string, []time.Time) {
	r.t.Helper()
	var msgs []string
	var ats []time.Time
	for range 100000 {
		r.settle()
		for {
			m := take(r.t, reader)
			if m == "" {
				break
			}
			msgs, ats = append(msgs, m), append(ats, r.clock.now())
			consume(r.t, reader)
		}
		if len(msgs) >= want {
			return msgs, ats
		}
		r.clock.set(r.clock.now().Add(step))
	}
	r.t.Fatalf("received %d of %d messages", len(msgs), want)
	return nil, nil
}

// checkDelivered checks that msgs hold every message of dests (named
// <dest><seq>, seq 1..n) once and in order per destination, and that no
// interval holds more than maxItems receptions of one destination.
func checkDelivered(t *testing.T, msgs []string, ats []time.Time, dests []string, n, maxItems int, interval time.Duration) {
	t.Helper()
	byDest := map[string][]int{}
	for i, m := range msgs {
		byDest[m[:1]] = append(byDest[m[:1]], i)
	}
	for _, d := range dests {
		idx := byDest[d]
		var got []string
		for _, i := range idx {
			got = append(got, msgs[i])
		}
		var want []string
		for s := 1; s <= n; s++ {
			want = append(want, fmt.Sprintf("%s%d", d, s))
		}
		if !slices.Equal(got, want) {
			t.Errorf("destination %s received %q, want %q", d, got, want)
		}
		for k := maxItems; k < len(idx); k++ {
			if gap := ats[idx[k]].Sub(ats[idx[k-maxItems]]); gap <= interval {
				t.Errorf("destination %s: %s and %s received %v apart: %d within %v (limit %d)",
					d, msgs[idx[k-maxItems]], msgs[idx[k]], gap, maxItems+1, interval, maxItems)
			}
		}
	}
}

// TestValveLateReader: the reader starts 30 s after 8 messages for each of
// two destinations arrived (max 2 per 1 s). Only 2 per destination wait in
// q_timed; the reader, reading as fast as it can, receives at most 2 of a
// destination in any second, everything in order.
func TestValveLateReader(t *testing.T) {
	clock := &fakeClock{t: t0}
	r := startRig(t, t.TempDir(), rateSettings(), clock, true)
	for i := 1; i <= 8; i++ {
		r.insert("q_incoming", "a", fmt.Sprintf("a%d", i))
		r.insert("q_incoming", "b", fmt.Sprintf("b%d", i))
	}
	r.decided("a", 8)
	r.decided("b", 8)
	for s := time.Duration(0); s <= 30*time.Second; s += 250 * time.Millisecond {
		r.advance(at(s))
	}
	if got := r.timedMessages(); !slices.Equal(got, []string{"a1", "b1", "a2", "b2"}) {
		t.Fatalf("q_timed when the late reader starts: %q, want [a1 b1 a2 b2]", got)
	}
	reader := r.newSession()
	defer reader.Close()
	msgs, ats := r.receiveAll(reader, 16, 10*time.Millisecond)
	checkDelivered(t, msgs, ats, []string{"a", "b"}, 8, 2, time.Second)
	if span := ats[len(ats)-1].Sub(ats[0]); span > 3100*time.Millisecond {
		t.Errorf("the late reader took %v for 8 messages per destination at 2 per second", span)
	}
}

// TestValveStalledReader: a reader takes a message and stalls holding it
// for 10 s; meanwhile only one more message per destination goes into
// q_timed. Then it resumes, a second reader dies holding a row (which
// comes back, and is not replaced by another release), and a third reader
// finishes: at most 2 receptions of a destination in any second.
func TestValveStalledReader(t *testing.T) {
	clock := &fakeClock{t: t0}
	r := startRig(t, t.TempDir(), rateSettings(), clock, true)
	for i := 1; i <= 6; i++ {
		r.insert("q_incoming", "a", fmt.Sprintf("a%d", i))
	}
	r.decided("a", 6)
	var msgs []string
	var ats []time.Time
	got := func(m string) {
		msgs, ats = append(msgs, m), append(ats, clock.now())
	}
	reader := r.newSession()
	if m := take(t, reader); m != "a1" {
		t.Fatalf("took %q", m)
	}
	got("a1")
	for s := time.Duration(0); s <= 10*time.Second; s += 100 * time.Millisecond {
		r.advance(at(s))
	}
	// Rows owned by another connection are not visible: a1 is the reader's.
	if got := r.timedMessages(); !slices.Equal(got, []string{"a2"}) {
		t.Fatalf("q_timed while the reader stalls holding a1: %q, want [a2]", got)
	}
	// It resumes: consumes a1 and takes a2, which it holds when it dies.
	consume(t, reader)
	if m := take(t, reader); m != "a2" {
		t.Fatalf("took %q after a1", m)
	}
	got("a2")
	r.settle()
	reader.Close() // dies holding a2: it comes back
	r.settle()
	if got := r.timedMessages(); !slices.Equal(got, []string{"a2"}) {
		t.Fatalf("q_timed after the reader died holding a2: %q, want [a2] (no release in its place)", got)
	}
	last := r.newSession()
	defer last.Close()
	rest, restAts := r.receiveAll(last, 5, 10*time.Millisecond)
	if rest[0] != "a2" {
		t.Fatalf("the next reader first received %q, want a2 again", rest[0])
	}
	// The order is checked on one copy of each message, the rate on every
	// reception (a2's two included).
	checkDelivered(t, append(msgs[:1:1], rest...), append(ats[:1:1], restAts...), []string{"a"}, 6, 2, time.Second)
	all := append(ats, restAts...)
	slices.SortFunc(all, func(a, b time.Time) int { return a.Compare(b) })
	for k := 2; k < len(all); k++ {
		if gap := all[k].Sub(all[k-2]); gap <= time.Second {
			t.Errorf("receptions %d and %d (a2's two copies counted) are %v apart", k-1, k+1, gap)
		}
	}
}

// TestValveRowsGone: released rows that leave q_timed without a consume
// (DELETE FROM q_timed, as Mvalve's clear_all; TRUNCATE) stop counting once
// the valve looks them up (every reconcileEvery), and count as landed then.
func TestValveRowsGone(t *testing.T) {
	clock := &fakeClock{t: t0}
	r := startRig(t, t.TempDir(), rateSettings(), clock, true)
	r.insert("q_incoming", "a", "a1", "a2", "a3", "a4", "a5")
	r.decided("a", 5)
	r.clock.set(at(5 * time.Second))
	r.exec("DELETE FROM q_timed")
	r.advance(at(5 * time.Second)) // looked up: gone, landed at 5 s
	wantStatus(t, r.status("a"), 2, 3, 0, 0, 3, at(6*time.Second+time.Microsecond))
	r.advance(at(6*time.Second + time.Microsecond))
	if got := r.timedMessages(); !slices.Equal(got, []string{"a3", "a4"}) {
		t.Fatalf("q_timed after the DELETE: %q, want [a3 a4]", got)
	}
	r.clock.set(at(7 * time.Second))
	r.exec("TRUNCATE TABLE q_timed")
	r.advance(at(7*time.Second + reconcileEvery))
	wantStatus(t, r.status("a"), 2, 3, 0, 2, 1, at(9*time.Second+time.Microsecond))
	r.advance(at(9*time.Second + time.Microsecond))
	if got := r.timedMessages(); !slices.Equal(got, []string{"a5"}) {
		t.Fatalf("q_timed after the TRUNCATE: %q, want [a5]", got)
	}
}

// TestValveRestartKeepsBacklog stops the valve and closes the store with
// messages in flight and waiting; a reader consumes one while the valve is
// down. After the restart the waiting messages and the rows in flight come
// back; the one consumed meanwhile counts as landed at the restart; each
// message is released once, in order.
func TestValveRestartKeepsBacklog(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	r := startRig(t, dir, rateSettings(), clock, true)
	r.insert("q_incoming", "a", "a1", "a2", "a3", "a4", "a5")
	r.decided("a", 5)
	r.stopValve()
	clock.set(at(500 * time.Millisecond))
	reader := r.newSession()
	if m := take(t, reader); m != "a1" {
		t.Fatalf("took %q", m)
	}
	consume(t, reader)
	reader.Close()
	r.stop()

	clock.set(at(time.Second))
	r = startRig(t, dir, rateSettings(), clock, false)
	// Counters start again; the backlog and the window are restored: a2 in
	// flight, a1 landed at the restart (1 s).
	next := at(2*time.Second + time.Microsecond) // 1 s after a1 landed, if a2 lands
	wantStatus(t, r.status("a"), 0, 0, 0, 0, 3, next)
	if s := r.status("a"); s.InWindow != 2 {
		t.Errorf("restored window holds %d, want 2", s.InWindow)
	}
	r.insert("q_incoming", "a", "a6") // queues behind the restored backlog
	wantStatus(t, r.decided("a", 1), 0, 1, 0, 0, 4, next)
	reader = r.newSession()
	defer reader.Close()
	msgs, _ := r.receiveAll(reader, 5, 10*time.Millisecond)
	if want := []string{"a2", "a3", "a4", "a5", "a6"}; !slices.Equal(msgs, want) {
		t.Errorf("received after the restart: %v, want %v", msgs, want)
	}
	wantStatus(t, r.status("a"), 0, 1, 0, 4, 0, time.Time{})
	if got := r.rows("SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle'"); got[0][0] != "4" {
		t.Errorf("q_statslog: %s throttle rows, want 4", got[0][0])
	}
}

// TestValveOldState: a store written by the earlier valve (release log
// "r", schedule entries "s/<due><seq>", with a row or, in faithful mode,
// without) loads: scheduled rows wait, their order kept; faithful entries
// (already in q_timed) are forgotten; the release log counts as landed.
func TestValveOldState(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	r := startRig(t, dir, rateSettings(), clock, true)
	r.stopValve()
	timed, err := r.db.Table("test", "q_timed")
	if err != nil {
		t.Fatal(err)
	}
	row := func(m string) []byte {
		b, err := r.eng.EncodeNamed(timed, map[string]any{"destination": "a", "ready": int64(0), "message": m})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	old := func(due int64, seq uint64, body string) queue.AuxEntry {
		k := []byte("s/")
		k = append(k, byte(due>>56), byte(due>>48), byte(due>>40), byte(due>>32), byte(due>>24), byte(due>>16), byte(due>>8), byte(due))
		k = append(k, 0, 0, 0, 0, 0, 0, 0, byte(seq))
		return queue.AuxEntry{NS: "valve/mvalve", Key: k, Value: []byte(body)}
	}
	nowUS := t0.UnixMicro()
	w := queue.Write{Set: []queue.AuxEntry{
		{NS: "valve/mvalve", Key: []byte("d/a"), Value: fmt.Appendf(nil, `{"r":[%d,%d]}`, nowUS-100, nowUS-50)},
		old(nowUS+sec, 5, fmt.Sprintf(`{"due":%d,"seq":5,"dest":"a","row":%q}`, nowUS+sec, b64(row("x2")))),
		old(nowUS+sec, 4, fmt.Sprintf(`{"due":%d,"seq":4,"dest":"a","row":%q}`, nowUS+sec, b64(row("x1")))),
		old(nowUS+2*sec, 6, fmt.Sprintf(`{"due":%d,"seq":6,"dest":"a"}`, nowUS+2*sec)),
	}}
	if err := r.db.NewInternalOwner().Apply(w); err != nil {
		t.Fatal(err)
	}
	r.startValve()
	wantStatus(t, r.status("a"), 0, 0, 0, 0, 2, at(time.Second-100*time.Microsecond+time.Microsecond)) // the older charge leaves
	var keys []string
	if err := r.db.AuxScan("valve/mvalve", func(k, _ []byte) bool { keys = append(keys, string(k[:2])); return true }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []string{"d/", "s/", "s/"}) {
		t.Errorf("stored keys %q, want the state and two waiting entries (the faithful one forgotten)", keys)
	}
	reader := r.newSession()
	defer reader.Close()
	if msgs, _ := r.receiveAll(reader, 2, 10*time.Millisecond); !slices.Equal(msgs, []string{"x1", "x2"}) {
		t.Errorf("received %q, want [x1 x2]", msgs)
	}
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
