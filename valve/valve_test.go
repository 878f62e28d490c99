package valve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
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

// TestNextRelease checks the sliding log: a release is admitted at once
// while fewer than maxItems releases lie in the window (now-interval, now]
// (an entry exactly interval old still counts, as in Data::Valve, which
// drops only entries strictly older), otherwise at the earliest time the
// oldest of the last maxItems has left the window; never before a release
// already scheduled (order is kept).
func TestNextRelease(t *testing.T) {
	tests := []struct {
		name     string
		releases []int64
		now      int64
		maxItems int
		interval int64
		want     int64
		kept     []int64 // d.releases after the call
	}{
		{"empty: at once", nil, 5 * sec, 2, sec, 5 * sec, nil},
		{"under the limit: at once", []int64{4 * sec}, 5 * sec, 2, sec, 5 * sec, []int64{4 * sec}},
		{"one below the limit: at once", []int64{10, 20}, 30, 3, sec, 30, []int64{10, 20}},
		{"full: 1 µs after the oldest leaves the window", []int64{4*sec + 100, 4*sec + 200}, 4*sec + 300, 2, sec, 5*sec + 101, []int64{4*sec + 100, 4*sec + 200}},
		{"full, same instant", []int64{0, 0}, 0, 2, sec, sec + 1, []int64{0, 0}},
		{"an entry exactly interval old still counts", []int64{0, 500}, sec, 2, sec, sec + 1, []int64{0, 500}},
		{"an entry older than interval is forgotten", []int64{0, 500}, sec + 1, 2, sec, sec + 1, []int64{500}},
		{"everything forgotten", []int64{0, 10}, 5 * sec, 2, sec, 5 * sec, []int64{}},
		{"limit lowered: counts the newest maxItems", []int64{100, 200, 300}, 400, 2, sec, 200 + sec + 1, []int64{100, 200, 300}},
		{"3rd after 2 admitted", []int64{0, 10}, 20, 2, sec, sec + 1, []int64{0, 10}},
		{"4th: after the scheduled 3rd, window still applies", []int64{0, 10, sec + 1}, 30, 2, sec, sec + 11, []int64{0, 10, sec + 1}},
		{"5th: two windows later", []int64{0, 10, sec + 1, sec + 11}, 40, 2, sec, 2*sec + 2, []int64{0, 10, sec + 1, sec + 11}},
		{"order kept: not before the last scheduled release", []int64{0, 2 * sec}, 100, 3, sec, 2 * sec, []int64{0, 2 * sec}},
		{"max_items 1 (strict): interval + 1 µs after the last", []int64{7 * sec}, 7*sec + 5, 1, sec, 8*sec + 1, []int64{7 * sec}},
		{"max_items 1 after a scheduled release", []int64{0, sec + 1}, 50, 1, sec, 2*sec + 2, []int64{0, sec + 1}},
		{"max_items 1, last left the window", []int64{0}, sec + 1, 1, sec, sec + 1, []int64{}},
		{"fractional interval", []int64{0, 0}, 10, 2, 1_500_000, 1_500_001, []int64{0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := &dest{name: "d", releases: slices.Clone(tc.releases)}
			got := d.nextRelease(tc.now, tc.maxItems, tc.interval)
			if got != tc.want {
				t.Errorf("nextRelease(now=%d, max=%d, interval=%d) over %v = %d, want %d", tc.now, tc.maxItems, tc.interval, tc.releases, got, tc.want)
			}
			if tc.kept == nil {
				tc.kept = []int64{}
			}
			if !slices.Equal(append([]int64{}, d.releases...), tc.kept) {
				t.Errorf("releases kept %v, want %v", d.releases, tc.kept)
			}
		})
	}
}

// TestNextReleaseSequences feeds random arrivals through nextRelease as
// the valve does (appending each result) and checks every result against
// the closed form of the earliest compliant, order-keeping time:
// max(arrival, previous release, release[i-maxItems] + interval + 1 µs).
func TestNextReleaseSequences(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for run := range 200 {
		maxItems := 1 + rng.IntN(4)
		interval := int64(1 + rng.IntN(3*int(sec)))
		d := &dest{name: "d"}
		var all []int64
		now := int64(rng.IntN(int(sec)))
		for i := range 60 {
			now += int64(rng.ExpFloat64() * float64(interval) / float64(maxItems+1))
			got := d.nextRelease(now, maxItems, interval)
			want := now
			if i > 0 {
				want = max(want, all[i-1])
			}
			if i >= maxItems {
				want = max(want, all[i-maxItems]+interval+1)
			}
			if got != want {
				t.Fatalf("run %d (max %d, interval %d µs), message %d at %d: nextRelease = %d, want %d; history %v",
					run, maxItems, interval, i, now, got, want, all)
			}
			all = append(all, got)
			d.releases = append(d.releases, got)
			// The log never holds releases that left the window.
			for _, r := range d.releases {
				if now-r > interval && r <= now {
					t.Fatalf("run %d: release %d kept at %d (interval %d)", run, r, now, interval)
				}
			}
		}
	}
}

// TestLimits checks Settings.limits with destination overrides.
func TestLimits(t *testing.T) {
	base := Settings{
		MaxItems: 2, Interval: 1,
		Destinations: []Destination{
			{Name: "more", MaxItems: 5},
			{Name: "faster", Interval: 0.5},
			{Name: "strict", StrictInterval: true},
			{Name: "both", MaxItems: 3, Interval: 2.5},
			{Name: "empty"},
		},
	}
	strict := Settings{MaxItems: 5, Interval: 2, StrictInterval: true,
		Destinations: []Destination{{Name: "more", MaxItems: 4}, {Name: "slower", Interval: 3}}}
	tests := []struct {
		name     string
		s        Settings
		dest     string
		wantMax  int
		wantIntv time.Duration
	}{
		{"no override", base, "other", 2, time.Second},
		{"empty destination name", base, "", 2, time.Second},
		{"max_items override", base, "more", 5, time.Second},
		{"interval override", base, "faster", 2, 500 * time.Millisecond},
		{"strict override: one per window", base, "strict", 1, time.Second},
		{"both overridden", base, "both", 3, 2500 * time.Millisecond},
		{"an override without limits keeps the valve's", base, "empty", 2, time.Second},
		{"names are exact", base, "More", 2, time.Second},
		{"strict valve", strict, "x", 1, 2 * time.Second},
		{"strict valve: max_items override still strict", strict, "more", 1, 2 * time.Second},
		{"strict valve: interval override", strict, "slower", 1, 3 * time.Second},
		{"max_items 0: one per window", Settings{MaxItems: 0, Interval: 4}, "x", 1, 4 * time.Second},
		{"fractional interval", Settings{MaxItems: 7, Interval: 0.25}, "x", 7, 250 * time.Millisecond},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			gotMax, gotIntv := tc.s.limits(tc.dest)
			if gotMax != tc.wantMax || gotIntv != tc.wantIntv {
				t.Errorf("limits(%q) = %d, %v; want %d, %v", tc.dest, gotMax, gotIntv, tc.wantMax, tc.wantIntv)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	d := Defaults()
	if d.Name != "mvalve" || d.Database != "test" || d.TimedTable != "q_timed" || d.StatslogTable != "q_statslog" ||
		!slices.Equal(d.EmergencyTables, []string{"q_emerg"}) || !slices.Equal(d.NormalTables, []string{"q_incoming"}) ||
		d.MaxItems != 10 || d.Interval != 20 || d.StrictInterval || d.DropOnEmergency == nil || !*d.DropOnEmergency ||
		d.Release != "prompt" || len(d.Destinations) != 0 {
		t.Errorf("Defaults() = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Defaults() do not validate: %v", err)
	}
	*d.DropOnEmergency = false
	if !*Defaults().DropOnEmergency {
		t.Error("Defaults() share their DropOnEmergency flag between calls")
	}
}

// TestLoadConfig checks parsing, defaults and rejections of the TOML file.
func TestLoadConfig(t *testing.T) {
	f, tr := false, true
	def := Defaults()
	withDefaults := func(mod func(*Settings)) Settings {
		s := Defaults()
		mod(&s)
		return s
	}
	tests := []struct {
		name    string
		toml    string
		want    []Settings
		wantErr string // substring of the error
	}{
		{name: "defaults", toml: "[[valve]]\n", want: []Settings{def}},
		{name: "rate only", toml: "[[valve]]\nmax_items = 2\ninterval = 1.0\n",
			want: []Settings{withDefaults(func(s *Settings) { s.MaxItems, s.Interval = 2, 1 })}},
		{name: "integer interval", toml: "[[valve]]\ninterval = 3\n",
			want: []Settings{withDefaults(func(s *Settings) { s.Interval = 3 })}},
		{name: "everything", toml: `
[[valve]]
name = "orders"
database = "shop"
emergency_tables = ["e1", "e2"]
timed_table = "t"
normal_tables = ["n1", "n2"]
statslog_table = "-"
max_items = 4
interval = 0.5
strict_interval = false
drop_on_emergency = false
release = "faithful"

[[valve.destination]]
name = "slow"
max_items = 1
interval = 10.0

[[valve.destination]]
name = "strict"
strict_interval = true
`, want: []Settings{{
			Name: "orders", Database: "shop", EmergencyTables: []string{"e1", "e2"}, TimedTable: "t",
			NormalTables: []string{"n1", "n2"}, StatslogTable: "-", MaxItems: 4, Interval: 0.5,
			DropOnEmergency: &f, Release: "faithful",
			Destinations: []Destination{{Name: "slow", MaxItems: 1, Interval: 10}, {Name: "strict", StrictInterval: true}},
		}}},
		{name: "strict keeps max_items 0", toml: "[[valve]]\nstrict_interval = true\n",
			want: []Settings{withDefaults(func(s *Settings) { s.StrictInterval, s.MaxItems = true, 0 })}},
		{name: "drop_on_emergency true", toml: "[[valve]]\ndrop_on_emergency = true\n",
			want: []Settings{withDefaults(func(s *Settings) { s.DropOnEmergency = &tr })}},
		{name: "two valves", toml: "[[valve]]\nname = \"a\"\nmax_items = 1\n[[valve]]\nname = \"b\"\nnormal_tables = [\"other\"]\n",
			want: []Settings{
				withDefaults(func(s *Settings) { s.Name, s.MaxItems = "a", 1 }),
				withDefaults(func(s *Settings) { s.Name, s.NormalTables = "b", []string{"other"} }),
			}},
		{name: "unknown key", toml: "[[valve]]\nmax_item = 2\n", wantErr: "unknown setting valve.max_item"},
		{name: "unknown key in a destination", toml: "[[valve]]\n[[valve.destination]]\nname = \"x\"\nmaxitems = 1\n", wantErr: "unknown setting valve.destination.maxitems"},
		{name: "unknown section", toml: "[[valve]]\n[server]\nport = 1\n", wantErr: "unknown setting server"},
		{name: "bad release mode", toml: "[[valve]]\nrelease = \"eager\"\n", wantErr: "release must be prompt or faithful"},
		{name: "release mode is case-sensitive", toml: "[[valve]]\nrelease = \"Prompt\"\n", wantErr: "release must be prompt or faithful"},
		{name: "negative interval", toml: "[[valve]]\ninterval = -1.0\n", wantErr: "interval must be positive"},
		{name: "negative max_items", toml: "[[valve]]\nmax_items = -1\n", wantErr: "max_items must not be negative"},
		{name: "no normal tables", toml: "[[valve]]\nnormal_tables = []\n", wantErr: "no normal_tables"},
		{name: "negative destination limits", toml: "[[valve]]\n[[valve.destination]]\nname = \"x\"\ninterval = -2.0\n", wantErr: "negative limits"},
		{name: "no valve", toml: "# nothing\n", wantErr: "no [[valve]]"},
		{name: "wrong type", toml: "[[valve]]\nmax_items = \"two\"\n", wantErr: "valve config"},
		{name: "syntax error", toml: "[[valve]\n", wantErr: "valve config"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "valve.toml")
			if err := os.WriteFile(path, []byte(tc.toml), 0o600); err != nil {
				t.Fatal(err)
			}
			c, err := LoadConfig(path)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("LoadConfig: %v, want an error containing %q", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name the file", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("LoadConfig: %v", err)
			}
			if !reflect.DeepEqual(c.Valves, tc.want) {
				t.Errorf("LoadConfig:\n got  %+v\n want %+v", c.Valves, tc.want)
			}
		})
	}
	if _, err := LoadConfig(filepath.Join(t.TempDir(), "missing.toml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadConfig of a missing file: %v, want ErrNotExist", err)
	}
}

func TestNewValidates(t *testing.T) {
	if _, err := New(nil, nil, Settings{Release: "later"}, nil); err == nil || !strings.Contains(err.Error(), "release") {
		t.Errorf("New with a bad release mode: %v", err)
	}
	v, err := New(nil, nil, Settings{Name: "x"}, nil)
	if err != nil || v.Name() != "x" || v.cfg.MaxItems != 10 || v.cfg.TimedTable != "q_timed" {
		t.Errorf("New fills defaults: %v, %+v", err, v)
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
	db     *queue.DB
	eng    *sqlfront.Engine
	sess   *sqlfront.Session
	v      *Valve
	clock  *fakeClock
	cancel context.CancelFunc
	done   chan error
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startRig opens the store in dir (creating Mvalve's tables when create is
// set) and runs a valve on it with the clock.
func startRig(t *testing.T, dir string, s Settings, clock *fakeClock, create bool) *rig {
	t.Helper()
	db, err := queue.Open(dir, &queue.Options{Logger: quietLog(), NoSync: true, InitialDatabases: []string{"test"}})
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, dir: dir, db: db, clock: clock, done: make(chan error, 1)}
	r.eng = sqlfront.NewEngine(db, sqlfront.Config{Version: "5.7.99-test", Logger: quietLog()})
	r.sess = r.newSession()
	if create {
		for _, q := range strings.Split(mvalveDDL, ";\n") {
			r.exec(q)
		}
	}
	r.v, err = New(db, r.eng, s, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	r.v.now = clock.now
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- r.v.Run(ctx) }()
	t.Cleanup(r.stop)
	r.waitFor("the valve to start", func() bool {
		r.v.mu.Lock()
		defer r.v.mu.Unlock()
		return r.v.started
	})
	return r
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
	if r.cancel == nil {
		return
	}
	r.cancel()
	if err := <-r.done; err != nil {
		r.t.Errorf("valve Run: %v", err)
	}
	r.cancel = nil
	r.sess.Close()
	if err := r.db.Close(); err != nil {
		r.t.Errorf("close store: %v", err)
	}
}

func (r *rig) exec(q string) *sqlfront.Result {
	r.t.Helper()
	res, err := r.sess.Exec(context.Background(), q)
	if err != nil {
		r.t.Fatalf("%s: %v", q, err)
	}
	return res
}

// rows returns a query's rows as strings.
func (r *rig) rows(q string) [][]string {
	r.t.Helper()
	var out [][]string
	for _, row := range r.exec(q).Rows {
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

func (r *rig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
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

// advance sets the clock and releases what is due (as the scheduler does
// when its timer fires).
func (r *rig) advance(to time.Time) {
	r.t.Helper()
	r.clock.set(to)
	if err := r.v.releaseDue(); err != nil {
		r.t.Fatalf("releaseDue: %v", err)
	}
}

func (r *rig) timed() [][]string {
	return r.rows("SELECT destination, ready, message FROM q_timed")
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

// TestValvePipeline drives the valve with a fake clock: admission,
// throttling to exact slots, prompt release in order, the stats log, the
// emergency drop window, and SHOW VALVE STATUS's numbers.
func TestValvePipeline(t *testing.T) {
	clock := &fakeClock{t: t0}
	r := startRig(t, t.TempDir(), rateSettings(), clock, true)

	r.insert("q_incoming", "a", "a1", "a2", "a3", "a4", "a5")
	r.insert("q_incoming", "b", "b1")
	slot1, slot2 := at(time.Second+time.Microsecond), at(2*time.Second+2*time.Microsecond)
	wantStatus(t, r.decided("a", 5), 2, 3, 0, 0, 3, slot1)
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

	// 1 µs before the slot nothing goes; at the slot a3 and a4 go.
	r.advance(slot1.Add(-time.Microsecond))
	wantStatus(t, r.status("a"), 2, 3, 0, 0, 3, slot1)
	r.advance(slot1)
	wantStatus(t, r.status("a"), 2, 3, 0, 2, 1, slot2)
	r.advance(slot2)
	wantStatus(t, r.status("a"), 2, 3, 0, 3, 0, time.Time{})
	want = append(want, []string{"a", "0", "a3"}, []string{"a", "0", "a4"}, []string{"a", "0", "a5"})
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed after the releases: %q, want %q", got, want)
	}

	// An emergency message for a, consumed by a connection, opens a drop
	// window until the whole second after now + interval.
	r.insert("q_emerg", "a", "e1")
	other := r.newSession()
	defer other.Close()
	for _, q := range []string{"SELECT queue_wait('q_emerg', 1)", "SELECT queue_end()"} {
		if _, err := other.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r.waitFor("the drop window", func() bool { return !r.status("a").DropUntil.IsZero() })
	if got, want := r.status("a").DropUntil, at(3*time.Second); !got.Equal(want) {
		t.Errorf("DropUntil %v, want %v (whole seconds, as Mvalve's time())", got, want)
	}
	r.insert("q_incoming", "a", "a6")
	wantStatus(t, r.decided("a", 6), 2, 3, 1, 3, 0, time.Time{})
	r.insert("q_incoming", "b", "b2") // another destination is not dropped
	wantStatus(t, r.decided("b", 2), 2, 0, 0, 0, 0, time.Time{})

	// At the end of the drop window the next message passes, admitted at
	// once: of a's releases only a5's (slot2) is within the last 1 s.
	r.clock.set(at(3 * time.Second))
	if !r.status("a").DropUntil.IsZero() {
		t.Errorf("DropUntil still set at its end")
	}
	r.insert("q_incoming", "a", "a7")
	wantStatus(t, r.decided("a", 7), 3, 3, 1, 3, 0, time.Time{})
	want = append(want, []string{"b", "0", "b2"}, []string{"a", "0", "a7"})
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed at the end: %q, want %q (a6 dropped)", got, want)
	}
	if got := r.rows("SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle'"); got[0][0] != "3" {
		t.Errorf("q_statslog: %s throttle rows, want 3", got[0][0])
	}
}

// TestValveFaithful: with release = "faithful" a throttled message enters
// q_timed at once with ready = its slot in Mvalve's 10 µs units; with
// drop_on_emergency = false an emergency opens no drop window; with
// statslog_table = "-" nothing is logged.
func TestValveFaithful(t *testing.T) {
	s := rateSettings()
	s.Release, s.StatslogTable = "faithful", "-"
	s.DropOnEmergency = new(bool)
	clock := &fakeClock{t: t0}
	r := startRig(t, t.TempDir(), s, clock, true)
	r.insert("q_incoming", "a", "a1", "a2", "a3")
	slot := at(time.Second + time.Microsecond)
	wantStatus(t, r.decided("a", 3), 2, 1, 0, 0, 1, slot)
	want := [][]string{{"a", "0", "a1"}, {"a", "0", "a2"}, {"a", fmt.Sprint(slot.UnixMicro() / 10), "a3"}}
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed: %q, want %q", got, want)
	}
	r.advance(slot)
	wantStatus(t, r.status("a"), 2, 1, 0, 1, 0, time.Time{})
	if got := r.timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("q_timed after the slot: %q, want %q (no second copy)", got, want)
	}
	r.insert("q_emerg", "a", "e1")
	other := r.newSession()
	defer other.Close()
	for _, q := range []string{"SELECT queue_wait('q_emerg', 1)", "SELECT queue_end()"} {
		if _, err := other.Exec(context.Background(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	r.clock.set(at(5 * time.Second))
	r.insert("q_incoming", "a", "a4")
	wantStatus(t, r.decided("a", 4), 3, 1, 0, 1, 0, time.Time{})
	if got := r.rows("SELECT COUNT(*) FROM q_statslog"); got[0][0] != "0" {
		t.Errorf("q_statslog has %s rows with statslog_table = \"-\"", got[0][0])
	}
}

// TestValveRestartKeepsSchedule stops the valve and closes the store with
// messages scheduled, and starts again before they are due: the schedule
// and the sliding log come back, each message is released once, in order.
func TestValveRestartKeepsSchedule(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	r := startRig(t, dir, rateSettings(), clock, true)
	r.insert("q_incoming", "a", "a1", "a2", "a3", "a4", "a5")
	slot1, slot2 := at(time.Second+time.Microsecond), at(2*time.Second+2*time.Microsecond)
	wantStatus(t, r.decided("a", 5), 2, 3, 0, 0, 3, slot1)
	clock.set(at(500 * time.Millisecond))
	r.stop()

	r = startRig(t, dir, rateSettings(), clock, false)
	// Counters start again; the schedule and the window are restored.
	wantStatus(t, r.status("a"), 0, 0, 0, 0, 3, slot1)
	if s := r.status("a"); s.InWindow != 2 {
		t.Errorf("restored window holds %d releases, want 2", s.InWindow)
	}
	// A new message queues behind the restored schedule.
	// A new message queues behind the restored schedule: a6 shares a5's
	// slot (only a5 is within 1 s before it).
	r.insert("q_incoming", "a", "a6")
	wantStatus(t, r.decided("a", 1), 0, 1, 0, 0, 4, slot1)
	r.advance(slot1)
	r.advance(slot2)
	wantStatus(t, r.status("a"), 0, 1, 0, 4, 0, time.Time{})
	var got []string
	for _, row := range r.timed() {
		got = append(got, row[2])
	}
	if want := []string{"a1", "a2", "a3", "a4", "a5", "a6"}; !slices.Equal(got, want) {
		t.Errorf("q_timed after the restart: %v, want %v", got, want)
	}
	if got := r.rows("SELECT COUNT(*) FROM q_statslog WHERE action = 'throttle'"); got[0][0] != "4" {
		t.Errorf("q_statslog: %s throttle rows, want 4", got[0][0])
	}
}

// TestValveRestartOverdueKeepsRate restarts the valve after scheduled
// releases fell due while it was down. The overdue messages go out at
// restart, late; the valve must then still keep at most max_items
// releases in any interval, counting the actual (late) release times: a
// message scheduled for one interval after the overdue ones' ORIGINAL
// slot must move back.
func TestValveRestartOverdueKeepsRate(t *testing.T) {
	dir := t.TempDir()
	clock := &fakeClock{t: t0}
	r := startRig(t, dir, rateSettings(), clock, true)
	r.insert("q_incoming", "a", "a1", "a2", "a3", "a4", "a5", "a6")
	slot1 := at(time.Second + time.Microsecond)
	wantStatus(t, r.decided("a", 6), 2, 4, 0, 0, 4, slot1)
	clock.set(at(500 * time.Millisecond))
	r.stop()

	// Down until 1.5 s: a3 and a4 (due at 1 s) are overdue.
	clock.set(at(1500 * time.Millisecond))
	r = startRig(t, dir, rateSettings(), clock, false)
	r.advance(at(1500 * time.Millisecond))
	var releases []time.Time // actual release times, in order
	for range 2 {
		releases = append(releases, clock.now())
	}
	if s := r.status("a"); s.Released != 2 {
		t.Fatalf("at restart %d overdue messages released, want 2", s.Released)
	}
	// Release the rest when the valve says they are due.
	for i := 0; i < 10 && r.status("a").Scheduled > 0; i++ {
		next := r.status("a").NextRelease
		before := r.status("a").Released
		r.advance(next)
		for range r.status("a").Released - before {
			releases = append(releases, next)
		}
	}
	if s := r.status("a"); s.Scheduled != 0 || s.Released != 4 {
		t.Fatalf("status after the releases: %+v", s)
	}
	all := append([]time.Time{t0, t0}, releases...)
	for i := 2; i < len(all); i++ {
		if all[i].Sub(all[i-2]) <= time.Second {
			t.Errorf("releases %d and %d are %v apart (at %s and %s): 3 releases within 1 s, limit 2 per 1 s",
				i-1, i+1, all[i].Sub(all[i-2]), all[i-2].Format("15:04:05.000000"), all[i].Format("15:04:05.000000"))
		}
	}
}
