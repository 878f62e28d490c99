package valve

import (
	"bytes"
	"container/heap"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Codec reads and builds rows of queue tables by column name (the row
// format belongs to the SQL layer; the server passes its implementation).
type Codec interface {
	DecodeNamed(t queue.Table, payload []byte) (map[string]any, error)
	EncodeNamed(t queue.Table, vals map[string]any) ([]byte, error)
}

// Valve is one configured valve.
type Valve struct {
	cfg   Settings
	db    *queue.DB
	codec Codec
	log   *slog.Logger
	ns    string // namespace of the valve's state in the store
	now   func() time.Time

	mu      sync.Mutex // guards everything below; held across a decision's commit
	dests   map[string]*dest
	sched   schedHeap
	seq     uint64
	writer  *queue.Owner // commits the scheduler's and the hooks' writes
	started bool

	kick chan struct{} // wakes the scheduler (buffered 1)
}

// dest is the state of one destination.
type dest struct {
	name string
	// releases are the release times (µs) still inside the window, and
	// the scheduled ones, ascending: Data::Valve's sliding log, extended
	// into the future by the schedule.
	releases       []int64
	emergencyUntil int64 // unix seconds; normal messages are dropped before it
	pending        int   // scheduled, not yet released

	admitted, throttled, dropped, released uint64 // since start
}

// persisted is what the store keeps per destination.
type persisted struct {
	Releases       []int64 `json:"r,omitempty"`
	EmergencyUntil int64   `json:"e,omitempty"`
}

// entry is a scheduled release.
type entry struct {
	Due  int64  `json:"due"` // µs
	Seq  uint64 `json:"seq"`
	Dest string `json:"dest"`
	Row  []byte `json:"row,omitempty"` // the timed row to insert (prompt mode)
}

func (e *entry) key() []byte {
	k := []byte("s/")
	k = binary.BigEndian.AppendUint64(k, uint64(e.Due))
	return binary.BigEndian.AppendUint64(k, e.Seq)
}

type schedHeap []*entry

func (h schedHeap) Len() int { return len(h) }
func (h schedHeap) Less(i, j int) bool {
	return h[i].Due < h[j].Due || h[i].Due == h[j].Due && h[i].Seq < h[j].Seq
}
func (h schedHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *schedHeap) Push(x any)   { *h = append(*h, x.(*entry)) }
func (h *schedHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// New returns a valve; Run starts it.
func New(db *queue.DB, codec Codec, cfg Settings, log *slog.Logger) (*Valve, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Valve{
		cfg: cfg, db: db, codec: codec,
		log:   log.With("component", "valve", "valve", cfg.Name),
		ns:    "valve/" + cfg.Name,
		now:   time.Now,
		dests: map[string]*dest{},
		kick:  make(chan struct{}, 1),
	}, nil
}

// Name returns the valve's name.
func (v *Valve) Name() string { return v.cfg.Name }

// Run consumes the normal tables until ctx is done. It waits for the
// tables to exist (creating them is the user's job, as with mvalve create).
func (v *Valve) Run(ctx context.Context) error {
	for _, t := range v.cfg.NormalTables {
		v.db.Reserve(v.cfg.Database, t)
	}
	if *v.cfg.DropOnEmergency {
		for _, t := range v.cfg.EmergencyTables {
			v.db.OnConsume(v.cfg.Database, t, v.emergencyConsumed(t))
		}
	}
	if v.cfg.LogDequeue && v.cfg.StatslogTable != "-" {
		v.db.OnConsume(v.cfg.Database, v.cfg.TimedTable, v.timedConsumed)
	}
	if err := v.load(); err != nil {
		return err
	}
	v.mu.Lock()
	v.writer = v.db.NewInternalOwner()
	v.started = true
	v.mu.Unlock()
	v.log.Info("valve started", "normal", v.cfg.NormalTables, "timed", v.cfg.TimedTable,
		"max_items", v.cfg.MaxItems, "interval", v.cfg.Interval, "release", v.cfg.Release)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		v.scheduler(ctx)
	}()
	err := v.consume(ctx)
	wg.Wait()
	v.log.Info("valve stopped")
	return err
}

// consume is the loop over the normal tables.
func (v *Valve) consume(ctx context.Context) error {
	owner := v.db.NewInternalOwner()
	defer owner.Close()
	subs := make([]queue.Sub, len(v.cfg.NormalTables))
	for i, t := range v.cfg.NormalTables {
		subs[i] = queue.Sub{Database: v.cfg.Database, Table: t}
	}
	waiting := false
	for ctx.Err() == nil {
		idx, err := owner.Wait(ctx, subs, time.Second)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, queue.ErrNoSuchTable):
			if !waiting {
				v.log.Info("waiting for the valve's tables to be created", "database", v.cfg.Database, "tables", v.cfg.NormalTables)
				waiting = true
			}
			sleep(ctx, 500*time.Millisecond)
			continue
		case err != nil:
			return err
		case idx == 0:
			continue
		}
		waiting = false
		table := v.cfg.NormalTables[idx-1]
		if err := v.decide(owner, table); err != nil {
			// Give the row back rather than lose it, and retry later.
			_, _ = owner.Abort()
			v.log.Warn("cannot pass a message on; retrying", "table", table, "err", err)
			sleep(ctx, time.Second)
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// tables resolves the timed table and (if any) the stats-log table.
func (v *Valve) tables() (timed queue.Table, statslog *queue.Table, err error) {
	timed, err = v.db.Table(v.cfg.Database, v.cfg.TimedTable)
	if err != nil {
		return timed, nil, fmt.Errorf("timed table %s: %w", v.cfg.TimedTable, err)
	}
	if v.cfg.StatslogTable != "-" {
		if s, err := v.db.Table(v.cfg.Database, v.cfg.StatslogTable); err == nil {
			statslog = &s
		}
	}
	return timed, statslog, nil
}

// decide admits, throttles or drops the row owner holds, in one batch.
func (v *Valve) decide(owner *queue.Owner, table string) error {
	src, err := v.db.Table(v.cfg.Database, table)
	if err != nil {
		return err
	}
	var payload []byte
	if err := owner.Scan(src, func(_ uint64, p []byte) bool { payload = bytes.Clone(p); return false }); err != nil {
		return err
	}
	if payload == nil {
		return nil // the table was truncated or dropped under us: nothing to pass on
	}
	row, err := v.codec.DecodeNamed(src, payload)
	if err != nil {
		return err
	}
	name, _ := row["destination"].(string)
	message := row["message"]
	timed, statslog, err := v.tables()
	if err != nil {
		return err
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	nowUS := now.UnixMicro()
	d := v.destLocked(name)
	saved := *d
	restore := func() { *d = saved; d.releases = append([]int64(nil), saved.releases...) }
	d.releases = append([]int64(nil), d.releases...)

	if *v.cfg.DropOnEmergency && d.emergencyUntil > now.Unix() {
		d.dropped++
		return owner.Apply(queue.Write{Consume: true})
	}
	maxItems, interval := v.cfg.limits(name)
	due := d.nextRelease(nowUS, maxItems, interval.Microseconds())
	w := queue.Write{Consume: true}
	var e *entry
	if due <= nowUS {
		r, err := v.codec.EncodeNamed(timed, map[string]any{"destination": name, "ready": int64(0), "message": message})
		if err != nil {
			return err
		}
		d.releases = append(d.releases, nowUS)
		d.admitted++
		w.Inserts = []queue.Insertion{{Table: timed, Rows: [][]byte{r}}}
	} else {
		v.seq++
		e = &entry{Due: due, Seq: v.seq, Dest: name}
		ready := int64(0)
		if v.cfg.Release == "faithful" {
			ready = due / 10 // Mvalve's ready is in units of 10 µs
		}
		r, err := v.codec.EncodeNamed(timed, map[string]any{"destination": name, "ready": ready, "message": message})
		if err != nil {
			return err
		}
		if v.cfg.Release == "faithful" {
			w.Inserts = []queue.Insertion{{Table: timed, Rows: [][]byte{r}}}
		} else {
			e.Row = r
		}
		d.releases = append(d.releases, due)
		d.pending++
		d.throttled++
		eb, _ := json.Marshal(e)
		w.Set = append(w.Set, queue.AuxEntry{NS: v.ns, Key: e.key(), Value: eb})
		if statslog != nil {
			lr, err := v.codec.EncodeNamed(*statslog, map[string]any{"action": "throttle", "destination": name, "logged_on": now})
			if err == nil {
				w.Inserts = append(w.Inserts, queue.Insertion{Table: *statslog, Rows: [][]byte{lr}})
			}
		}
	}
	w.Set = append(w.Set, v.stateEntry(d))
	if err := owner.Apply(w); err != nil {
		restore()
		return err
	}
	if e != nil {
		heap.Push(&v.sched, e)
		select {
		case v.kick <- struct{}{}:
		default:
		}
	}
	return nil
}

// nextRelease returns the earliest time (µs) at or after now, and not
// before any release already scheduled for the destination (its order is
// kept), at which a release keeps at most maxItems releases in every
// window of interval. It also forgets releases that left the window.
func (d *dest) nextRelease(now int64, maxItems int, interval int64) int64 {
	// Data::Valve drops entries strictly older than the interval.
	i := sort.Search(len(d.releases), func(i int) bool { return now-d.releases[i] <= interval })
	d.releases = d.releases[i:]
	t := now
	if n := len(d.releases); n > 0 && d.releases[n-1] > t {
		t = d.releases[n-1]
	}
	for {
		// Releases in the window ending at t: those at or after t-interval.
		j := sort.Search(len(d.releases), func(i int) bool { return d.releases[i] >= t-interval })
		if len(d.releases)-j < maxItems {
			return t
		}
		// Wait until the oldest of the last maxItems leaves the window.
		t = d.releases[len(d.releases)-maxItems] + interval + 1
	}
}

func (v *Valve) destLocked(name string) *dest {
	d := v.dests[name]
	if d == nil {
		d = &dest{name: name}
		v.dests[name] = d
	}
	return d
}

func (v *Valve) stateEntry(d *dest) queue.AuxEntry {
	b, _ := json.Marshal(persisted{Releases: d.releases, EmergencyUntil: d.emergencyUntil})
	return queue.AuxEntry{NS: v.ns, Key: append([]byte("d/"), d.name...), Value: b}
}

// load reads the valve's state and schedule from the store.
func (v *Valve) load() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var bad error
	err := v.db.AuxScan(v.ns, func(k, val []byte) bool {
		switch {
		case bytes.HasPrefix(k, []byte("d/")):
			var p persisted
			if err := json.Unmarshal(val, &p); err != nil {
				bad = fmt.Errorf("valve %s: state of %q: %w", v.cfg.Name, k[2:], err)
				return false
			}
			d := v.destLocked(string(k[2:]))
			d.releases, d.emergencyUntil = p.Releases, p.EmergencyUntil
		case bytes.HasPrefix(k, []byte("s/")):
			e := &entry{}
			if err := json.Unmarshal(val, e); err != nil {
				bad = fmt.Errorf("valve %s: schedule entry: %w", v.cfg.Name, err)
				return false
			}
			heap.Push(&v.sched, e)
			v.seq = max(v.seq, e.Seq)
		}
		return true
	})
	if err == nil {
		err = bad
	}
	for _, e := range v.sched {
		v.destLocked(e.Dest).pending++
	}
	if len(v.sched) > 0 {
		v.log.Info("schedule restored", "messages", len(v.sched))
	}
	if err != nil {
		return err
	}
	// Releases that fell due while the server was down go out now; the
	// ones after them move so that the limit holds from now on.
	nowUS := v.now().UnixMicro()
	var w queue.Write
	for _, d := range v.dests {
		overdue := false
		for _, e := range v.sched {
			overdue = overdue || e.Dest == d.name && e.Due < nowUS
		}
		if overdue {
			v.replanLocked(d, nowUS, &w)
		}
	}
	if len(w.Set)+len(w.Delete) > 0 {
		return v.db.NewInternalOwner().Apply(w)
	}
	return nil
}

// scheduler releases scheduled messages at their due time.
func (v *Valve) scheduler(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		v.mu.Lock()
		wait := time.Hour
		if len(v.sched) > 0 {
			wait = time.Duration(v.sched[0].Due-v.now().UnixMicro()) * time.Microsecond
		}
		v.mu.Unlock()
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-ctx.Done():
				return
			case <-v.kick:
				if !timer.Stop() {
					<-timer.C
				}
				continue
			case <-timer.C:
			}
		}
		if err := v.releaseDue(); err != nil {
			v.log.Warn("cannot release scheduled messages; retrying", "err", err)
			sleep(ctx, time.Second)
		}
	}
}

// releaseDue releases every entry whose time has come, oldest first.
func (v *Valve) releaseDue() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	nowUS := v.now().UnixMicro()
	for len(v.sched) > 0 && v.sched[0].Due <= nowUS {
		e := v.sched[0]
		d := v.destLocked(e.Dest)
		w := queue.Write{Delete: []queue.AuxEntry{{NS: v.ns, Key: e.key()}}}
		if e.Row != nil {
			timed, _, err := v.tables()
			if err != nil {
				return err
			}
			w.Inserts = []queue.Insertion{{Table: timed, Rows: [][]byte{e.Row}}}
		}
		heap.Pop(&v.sched)
		if nowUS-e.Due > lateUS && e.Row != nil {
			// Released late (a restart, a busy machine): the release log
			// records when it really went out, and the destination's later
			// releases move if they would now break the limit.
			removeOne(&d.releases, e.Due)
			insertSorted(&d.releases, nowUS)
			v.replanLocked(d, nowUS, &w)
		}
		if err := v.writer.Apply(w); err != nil {
			heap.Push(&v.sched, e) // still in the store: retried
			if errors.Is(err, queue.ErrTableChanged) {
				return fmt.Errorf("the timed table was altered; scheduled rows no longer fit it: %w", err)
			}
			return err
		}
		d.pending--
		d.released++
	}
	return nil
}

// lateUS is how late (µs) a release may go out before the destination's
// later releases are re-timed.
const lateUS = 1000

// replanLocked re-times the scheduled releases of d from now on: each
// keeps its time if the limit still allows it, or moves to the earliest
// time that does, in order. The changes go into w. In faithful mode rows
// are already in the timed table with their ready time, so nothing moves.
func (v *Valve) replanLocked(d *dest, nowUS int64, w *queue.Write) {
	if v.cfg.Release == "faithful" {
		return
	}
	var mine []*entry
	for _, e := range v.sched {
		if e.Dest == d.name {
			mine = append(mine, e)
		}
	}
	sort.Slice(mine, func(i, j int) bool {
		return mine[i].Due < mine[j].Due || mine[i].Due == mine[j].Due && mine[i].Seq < mine[j].Seq
	})
	for _, e := range mine {
		removeOne(&d.releases, e.Due) // keep only releases that happened
	}
	maxItems, interval := v.cfg.limits(d.name)
	moved := false
	for _, e := range mine {
		t := max(d.nextRelease(nowUS, maxItems, interval.Microseconds()), e.Due)
		d.releases = append(d.releases, t)
		if t == e.Due {
			continue
		}
		w.Delete = append(w.Delete, queue.AuxEntry{NS: v.ns, Key: e.key()})
		e.Due = t
		eb, _ := json.Marshal(e)
		w.Set = append(w.Set, queue.AuxEntry{NS: v.ns, Key: e.key(), Value: eb})
		moved = true
	}
	if moved {
		heap.Init(&v.sched)
	}
	w.Set = append(w.Set, v.stateEntry(d))
}

func removeOne(s *[]int64, x int64) {
	if i, ok := slices.BinarySearch(*s, x); ok {
		*s = slices.Delete(*s, i, i+1)
	}
}

func insertSorted(s *[]int64, x int64) {
	i, _ := slices.BinarySearch(*s, x)
	*s = slices.Insert(*s, i, x)
}

// emergencyConsumed returns the hook that opens a destination's drop
// window when a connection consumes one of its emergency messages.
func (v *Valve) emergencyConsumed(table string) func([]byte) {
	return func(payload []byte) {
		t, err := v.db.Table(v.cfg.Database, table)
		if err != nil {
			return
		}
		row, err := v.codec.DecodeNamed(t, payload)
		if err != nil {
			return
		}
		name, _ := row["destination"].(string)
		_, interval := v.cfg.limits(name)
		until := v.now().Add(interval).Unix()
		v.mu.Lock()
		d := v.destLocked(name)
		if until > d.emergencyUntil {
			d.emergencyUntil = until
		}
		st := v.stateEntry(d)
		started := v.started
		v.mu.Unlock()
		if started {
			go func() { // the hook runs on the consumer's goroutine: persist off it
				v.mu.Lock()
				defer v.mu.Unlock()
				_ = v.writer.Apply(queue.Write{Set: []queue.AuxEntry{st}})
			}()
		}
	}
}

// timedConsumed writes a 'dequeue' row for a message consumed from the
// timed table (log_dequeue).
func (v *Valve) timedConsumed(payload []byte) {
	t, err := v.db.Table(v.cfg.Database, v.cfg.TimedTable)
	if err != nil {
		return
	}
	row, err := v.codec.DecodeNamed(t, payload)
	if err != nil {
		return
	}
	name, _ := row["destination"].(string)
	now := v.now()
	go func() { // the hook runs on the consumer's goroutine: write off it
		_, statslog, err := v.tables()
		if err != nil || statslog == nil {
			return
		}
		lr, err := v.codec.EncodeNamed(*statslog, map[string]any{"action": "dequeue", "destination": name, "logged_on": now})
		if err != nil {
			return
		}
		if err := v.db.NewInternalOwner().Apply(queue.Write{Inserts: []queue.Insertion{{Table: *statslog, Rows: [][]byte{lr}}}}); err != nil {
			v.log.Warn("cannot log a dequeue", "err", err)
		}
	}()
}

// Status is one row of SHOW VALVE STATUS.
type Status struct {
	Valve, Destination                     string
	Admitted, Throttled, Dropped, Released uint64
	Scheduled                              int
	NextRelease                            time.Time // zero if nothing is scheduled
	InWindow, MaxItems                     int       // releases in the current window, and the limit
	DropUntil                              time.Time // zero if no emergency window is open
}

// Status reports the valve's destinations, sorted by name.
func (v *Valve) Status() []Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	next := map[string]int64{}
	for _, e := range v.sched {
		if n, ok := next[e.Dest]; !ok || e.Due < n {
			next[e.Dest] = e.Due
		}
	}
	out := make([]Status, 0, len(v.dests))
	for _, d := range v.dests {
		maxItems, interval := v.cfg.limits(d.name)
		st := Status{
			Valve: v.cfg.Name, Destination: d.name,
			Admitted: d.admitted, Throttled: d.throttled, Dropped: d.dropped, Released: d.released,
			Scheduled: d.pending, MaxItems: maxItems,
		}
		if n, ok := next[d.name]; ok {
			st.NextRelease = time.UnixMicro(n)
		}
		for _, r := range d.releases {
			if r <= now.UnixMicro() && now.UnixMicro()-r <= interval.Microseconds() {
				st.InWindow++
			}
		}
		if d.emergencyUntil > now.Unix() {
			st.DropUntil = time.Unix(d.emergencyUntil, 0)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out
}
