package valve

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/q4mproxy/q4mproxy/queue"
)

// gateFS holds the syncs of the store's WAL while armed: a commit then
// stays in its fsync until the test opens the gate, as on a stalled disk.
type gateFS struct {
	vfs.FS
	mu      sync.Mutex
	armed   bool
	skip    int // syncs let through before the gate closes
	held    int // syncs waiting at the gate
	release chan struct{}
}

func newGateFS() *gateFS { return &gateFS{FS: vfs.Default} }

// arm closes the gate after the next skip syncs.
func (g *gateFS) arm(skip int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.armed, g.skip, g.release = true, skip, make(chan struct{})
}

// open lets every held and later sync through.
func (g *gateFS) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.armed {
		g.armed = false
		close(g.release)
	}
}

// holding reports how many syncs wait at the gate.
func (g *gateFS) holding() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held
}

func (g *gateFS) pass() {
	g.mu.Lock()
	if !g.armed {
		g.mu.Unlock()
		return
	}
	if g.skip > 0 {
		g.skip--
		g.mu.Unlock()
		return
	}
	g.held++
	rel := g.release
	g.mu.Unlock()
	<-rel
	g.mu.Lock()
	g.held--
	g.mu.Unlock()
}

func (g *gateFS) wrap(f vfs.File, name string, err error) (vfs.File, error) {
	if err != nil || !strings.HasSuffix(name, ".log") {
		return f, err
	}
	return &gateFile{File: f, g: g}, nil
}

func (g *gateFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.Create(name, c)
	return g.wrap(f, name, err)
}

func (g *gateFS) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := g.FS.ReuseForWrite(oldname, newname, c)
	return g.wrap(f, newname, err)
}

func (g *gateFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := g.FS.OpenReadWrite(name, c, opts...)
	return g.wrap(f, name, err)
}

func (g *gateFS) Unwrap() vfs.FS { return g.FS }

type gateFile struct {
	vfs.File
	g *gateFS
}

func (f *gateFile) Sync() error     { f.g.pass(); return f.File.Sync() }
func (f *gateFile) SyncData() error { f.g.pass(); return f.File.SyncData() }
func (f *gateFile) SyncTo(n int64) (bool, error) {
	f.g.pass()
	return f.File.SyncTo(n)
}

// returns reports whether f returns within d (it keeps running if not).
func returns(d time.Duration, f func()) bool {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

// TestValveCommitHoldsNoConnectionLock stalls the fsync of the valve's
// commit (a decision on an arriving message): meanwhile what client
// connections do with the valve (SHOW VALVE STATUS; the hooks run when a
// connection consumes a row of q_timed or q_emerg) must not wait for it.
// Before the fix, the valve held the lock these take across its commit.
func TestValveCommitHoldsNoConnectionLock(t *testing.T) {
	gate := newGateFS()
	r := startRigWith(t, t.TempDir(), rateSettings(), nil, true, &queue.Options{FS: gate})
	r.stopValve()
	r.insert("q_incoming", "a", "a1") // the valve is stopped: it stays there
	gate.arm(0)
	defer gate.open()
	r.launchValve() // (waiting for it to have started would take the lock)
	r.waitFor("the valve's commit to reach the gate", func() bool { return gate.holding() == 1 })

	if !returns(10*time.Second, func() { r.v.Status() }) {
		t.Fatal("SHOW VALVE STATUS waited for the valve's fsync")
	}
	emerg, err := r.db.Table("test", "q_emerg")
	if err != nil {
		t.Fatal(err)
	}
	row, err := r.eng.EncodeNamed(emerg, map[string]any{"destination": "b", "message": "e1"})
	if err != nil {
		t.Fatal(err)
	}
	if !returns(10*time.Second, func() {
		r.v.emergencyConsumed("q_emerg")(queue.Consumed{TableID: emerg.ID(), RowID: 1, Payload: row})
		r.v.timedConsumed(queue.Consumed{TableID: 1 << 40, RowID: 1})
	}) {
		t.Fatal("a connection's consume hook waited for the valve's fsync")
	}
	if gate.holding() != 1 {
		t.Fatalf("%d syncs at the gate, want 1 (the valve's commit)", gate.holding())
	}
	gate.open()
	r.waitFor("a1 in q_timed", func() bool { return slices.Equal(r.timedMessages(), []string{"a1"}) })
}

// TestValveStopWaitsForItsWrites stalls the fsync of the write that
// stores an emergency window (recorded when a connection consumed an
// emergency row) and stops the valve: Run must not return before that
// write is done, and the window must be in the store after Run returned.
// Before the fix the write ran on a goroutine nothing waited for.
func TestValveStopWaitsForItsWrites(t *testing.T) {
	gate := newGateFS()
	dir := t.TempDir()
	s := rateSettings()
	s.LogDequeue = true
	r := startRigWith(t, dir, s, nil, true, &queue.Options{FS: gate})
	r.insert("q_emerg", "a", "e1")
	other := r.newSession()
	defer other.Close()
	execOn(t, other, "SELECT queue_wait('q_emerg', 1)")
	gate.arm(1) // the consume's commit passes, the valve's next one waits
	defer gate.open()
	execOn(t, other, "SELECT queue_end()")
	r.waitFor("the valve's write to reach the gate", func() bool { return gate.holding() == 1 })

	r.cancel()
	// The negative check bounds how long a wrong Run would take to return
	// (at once); a right one returns only when the gate opens.
	select {
	case err := <-r.done:
		r.cancel = nil
		t.Fatalf("Run returned (%v) while a write it started was still in its fsync", err)
	case <-time.After(2 * time.Second):
	}
	gate.open()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
	r.cancel = nil
	var state string
	if err := r.db.AuxScan("valve/mvalve", func(k, v []byte) bool {
		if string(k) == "d/a" {
			state = string(v)
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(state, `"e":`) {
		t.Errorf("after Run returned, the stored state of a is %q: no emergency window", state)
	}
}

// TestValveRestartUnderLoad restarts the valve (in process, on the same
// store) six times while producers insert three waves of messages for
// five destinations and three consumers take them from q_timed: every
// message is delivered exactly once, in order per destination (by q_timed
// rowid), and no destination receives more than max_items in any interval
// (receptions timed by the consumers between queue_wait and queue_end: the
// valve counts a row from its release to its consume, so delays can only
// spread receptions out).
func TestValveRestartUnderLoad(t *testing.T) {
	s := Defaults()
	s.MaxItems, s.Interval, s.LogDequeue = 2, 0.2, true
	interval := 200 * time.Millisecond
	r := startRig(t, t.TempDir(), s, nil, true)
	r.clock = nil
	dests := []string{"d0", "d1", "d2", "d3", "d4"}
	const waves, perWave = 3, 6 // per destination
	total := len(dests) * waves * perWave

	type got struct {
		dest, msg string
		rowid     int64
		at        time.Time
	}
	var (
		mu       sync.Mutex
		received []got
		errs     []error
	)
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(received)
	}
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(context.Background())
	var consumers sync.WaitGroup
	for range 3 {
		sess := r.newSession()
		consumers.Go(func() {
			defer sess.Close()
			for ctx.Err() == nil {
				res, err := sess.Exec(ctx, "SELECT queue_wait('q_timed', 1)")
				if err != nil {
					if ctx.Err() == nil {
						fail(err)
					}
					return
				}
				if strRows(res)[0][0] != "1" {
					continue
				}
				g := got{at: time.Now()}
				res, err = sess.Exec(ctx, "SELECT destination, message FROM q_timed")
				if err != nil {
					fail(err)
					return
				}
				row := strRows(res)[0]
				g.dest, g.msg = row[0], row[1]
				res, err = sess.Exec(ctx, "SELECT queue_rowid()")
				if err != nil {
					fail(err)
					return
				}
				g.rowid, _ = strconv.ParseInt(strRows(res)[0][0], 10, 64)
				if _, err := sess.Exec(ctx, "SELECT queue_end()"); err != nil {
					fail(err)
					return
				}
				mu.Lock()
				received = append(received, g)
				mu.Unlock()
			}
		})
	}
	defer func() { cancel(); consumers.Wait() }()

	var producers sync.WaitGroup
	produce := func(wave int) {
		// The previous wave's producers finish first: a destination's
		// messages are inserted in order across waves too (overlapping
		// waves could insert d0-006 before d0-005).
		producers.Wait()
		var msgs []string
		for seq := wave * perWave; seq < (wave+1)*perWave; seq++ {
			for _, d := range dests {
				msgs = append(msgs, fmt.Sprintf("%s-%03d", d, seq))
			}
		}
		for p := range 2 {
			sess := r.newSession()
			producers.Go(func() {
				defer sess.Close()
				for i, m := range msgs {
					// Each producer inserts the messages of some
					// destinations, in order.
					if int(m[1]-'0')%2 != p {
						continue
					}
					q := fmt.Sprintf("INSERT INTO q_incoming (destination, message) VALUES ('%s', '%s')", m[:2], m)
					if _, err := sess.Exec(context.Background(), q); err != nil {
						fail(fmt.Errorf("insert %d: %w", i, err))
						return
					}
				}
			})
		}
	}
	restarts := 0
	restartAt := func(n int) {
		r.waitFor(fmt.Sprintf("%d messages received", n), func() bool { return count() >= n })
		r.stopValve()
		r.startValve()
		restarts++
	}
	produce(0)
	restartAt(8)
	produce(1)
	restartAt(20)
	restartAt(35)
	produce(2)
	restartAt(50)
	restartAt(62)
	restartAt(75)
	producers.Wait()
	deadline := time.Now().Add(60 * time.Second)
	for count() < total && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // polling interval
	}
	cancel()
	consumers.Wait()
	if len(errs) > 0 {
		t.Fatalf("client errors: %v", errs)
	}

	seen := map[string]int{}
	byDest := map[string][]got{}
	for _, g := range received {
		seen[g.msg]++
		byDest[g.dest] = append(byDest[g.dest], g)
	}
	lost, dups := 0, 0
	for _, d := range dests {
		for seq := range waves * perWave {
			switch seen[fmt.Sprintf("%s-%03d", d, seq)] {
			case 0:
				lost++
			case 1:
			default:
				dups++
			}
		}
	}
	if lost > 0 || dups > 0 || len(received) != total {
		t.Fatalf("%d received of %d: %d lost, %d duplicated", len(received), total, lost, dups)
	}
	minGap := time.Hour
	for _, d := range dests {
		gs := byDest[d]
		slices.SortFunc(gs, func(a, b got) int { return int(a.rowid - b.rowid) })
		for i, g := range gs {
			if want := fmt.Sprintf("%s-%03d", d, i); g.msg != want {
				t.Errorf("destination %s: release %d is %s, want %s (order)", d, i+1, g.msg, want)
				break
			}
		}
		slices.SortFunc(gs, func(a, b got) int { return a.at.Compare(b.at) })
		for i := s.MaxItems; i < len(gs); i++ {
			gap := gs[i].at.Sub(gs[i-s.MaxItems].at)
			minGap = min(minGap, gap)
			if gap <= interval {
				t.Errorf("destination %s: %s and %s received %v apart: %d within %v", d, gs[i-s.MaxItems].msg, gs[i].msg, gap, s.MaxItems+1, interval)
			}
		}
	}
	for _, st := range r.v.Status() {
		if st.Scheduled != 0 {
			t.Errorf("%s: %d still waiting", st.Destination, st.Scheduled)
		}
	}
	for _, q := range []string{"SELECT COUNT(*) FROM q_incoming", "SELECT COUNT(*) FROM q_timed"} {
		if n := r.rows(q)[0][0]; n != "0" {
			t.Errorf("%s = %s", q, n)
		}
	}
	t.Logf("%d messages for %d destinations through %d valve restarts: none lost or duplicated, order kept; smallest distance between receptions %d apart %v (interval %v)",
		total, len(dests), restarts, s.MaxItems, minGap.Round(time.Microsecond), interval)
}
