package valve

import (
	"bytes"
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
//
// Locking. applyMu serialises the valve's own writes (a decision on an
// arriving message, a round of releases, persisting state): each plans
// under mu, commits with mu released, and records its outcome under mu in
// the write's Finish, which runs before the batch is synced and so before
// a reader can take a released row. Only the valve's goroutines take
// applyMu. mu is taken by connections too (the consume hooks, SHOW VALVE
// STATUS) and is never held across a commit, so a slow fsync of the
// store never stalls a connection on the valve.
type Valve struct {
	cfg   Settings
	db    queue.Store
	codec Codec
	log   *slog.Logger
	ns    string // namespace of the valve's state in the store
	now   func() time.Time

	applyMu sync.Mutex
	seq     uint64 // last waiting-entry sequence number; guarded by applyMu

	mu       sync.Mutex
	dests    map[string]*dest
	flights  map[flight]*dest // released rows not consumed yet, by row
	backlog  map[*dest]bool   // destinations with waiting messages
	dirty    map[*dest]bool   // destinations whose stored state is behind
	dequeues []dequeued       // 'dequeue' rows to log (log_dequeue)
	acks     []queue.AuxEntry // consume records the hooks handled, to delete with the state they changed
	running  bool             // the hooks record consumes only while Run runs
	started  bool             // Run has loaded the state (tests wait for it)
	standby  bool             // RunElected waits to be elected: Status shows nothing
	kick     chan struct{}    // wakes the scheduler (buffered 1)
	persist  chan struct{}    // wakes the persister (buffered 1)

	manual bool // tests with a fake clock: no scheduler goroutine (they call step)

	// fence, set by RunElected for a term, makes every write of the
	// valve fail (queue.ErrFenced) once another process took over.
	fence *queue.AuxEntry
}

// flight is a released row of the timed table: the table's incarnation
// and the row.
type flight struct {
	Table uint64 `json:"t"`
	Row   uint64 `json:"r"`
}

// dest is the state of one destination.
type dest struct {
	name string
	// waiting are the messages not released yet, in arrival order.
	waiting []*entry
	// flights are the released messages whose rows are still in the timed
	// table (free, or owned by a reader that has not consumed them).
	flights []flight
	// charges (µs, ascending) are when released messages stopped being in
	// flight: consumed by a reader, or found gone (deleted, truncated, or
	// consumed while the valve was not looking). Only those within the
	// last interval are kept.
	charges        []int64
	emergencyUntil int64 // unix seconds; normal messages are dropped before it
	checked        int64 // µs: when its flights were last looked up in the table

	admitted, throttled, dropped, released uint64 // since start
}

// persisted is what the store keeps per destination.
type persisted struct {
	Charges        []int64  `json:"c,omitempty"`
	Flights        []flight `json:"f,omitempty"`
	EmergencyUntil int64    `json:"e,omitempty"`
	// Releases is the release log of earlier versions, which paced
	// releases instead of deliveries: loaded as charges.
	Releases []int64 `json:"r,omitempty"`
}

// entry is a waiting message.
type entry struct {
	Seq  uint64 `json:"seq"`
	Dest string `json:"dest"`
	Row  []byte `json:"row,omitempty"` // the timed row to insert
	// Due is set in entries of earlier versions (key "s/" + due + seq).
	Due int64  `json:"due,omitempty"`
	key []byte // its key in the store
}

func waitingKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte("q/"), seq)
}

// dequeued is a 'dequeue' row to write.
type dequeued struct {
	dest string
	at   time.Time
}

// reconcileEvery is how often the flights of a destination that waits for
// them are looked up in the timed table: rows that left it without a
// consume (DELETE, TRUNCATE, DROP) then stop counting as in flight.
const reconcileEvery = time.Second

// releaseBatch bounds the rows released in one commit.
const releaseBatch = 512

// New returns a valve; Run starts it.
func New(db queue.Store, codec Codec, cfg Settings, log *slog.Logger) (*Valve, error) {
	cfg.fill()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.Default()
	}
	return &Valve{
		cfg: cfg, db: db, codec: codec,
		log:     log.With("component", "valve", "valve", cfg.Name),
		ns:      "valve/" + cfg.Name,
		now:     time.Now,
		dests:   map[string]*dest{},
		flights: map[flight]*dest{},
		backlog: map[*dest]bool{},
		dirty:   map[*dest]bool{},
		kick:    make(chan struct{}, 1),
		persist: make(chan struct{}, 1),
	}, nil
}

// Name returns the valve's name.
func (v *Valve) Name() string { return v.cfg.Name }

// Run consumes the normal tables until ctx is done. It waits for the
// tables to exist (creating them is the user's job, as with mvalve create).
// It returns once every goroutine it started has stopped and the state
// the hooks recorded is stored. Run may be called again once it returned:
// each run starts from the stored state (the counters go on).
func (v *Valve) Run(ctx context.Context) error {
	for _, t := range v.cfg.NormalTables {
		v.db.Reserve(v.cfg.Database, t)
	}
	v.mu.Lock()
	v.resetLocked()
	v.running = true
	v.mu.Unlock()
	var hooks []func()
	defer func() {
		for _, remove := range hooks {
			remove()
		}
	}()
	if *v.cfg.DropOnEmergency {
		for _, t := range v.cfg.EmergencyTables {
			hooks = append(hooks, v.db.OnConsume(v.cfg.Database, t, true, v.emergencyConsumed(t)))
		}
	}
	hooks = append(hooks, v.db.OnConsume(v.cfg.Database, v.cfg.TimedTable, v.logsDequeues(), v.timedConsumed))
	if err := v.load(); err != nil {
		v.mu.Lock()
		v.running = false
		v.mu.Unlock()
		return err
	}
	v.mu.Lock()
	v.started = true
	v.mu.Unlock()
	v.log.Info("valve started", "normal", v.cfg.NormalTables, "timed", v.cfg.TimedTable,
		"max_items", v.cfg.MaxItems, "interval", v.cfg.Interval)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopPersister := make(chan struct{})
	var wg sync.WaitGroup
	if !v.manual {
		wg.Go(func() { v.scheduler(ctx) })
	}
	wg.Go(func() { v.persister(stopPersister) })
	err := v.consume(ctx)
	cancel()
	// From here on the hooks record nothing; the persister stores what
	// they recorded before it stops.
	v.mu.Lock()
	v.running = false
	v.mu.Unlock()
	close(stopPersister)
	wg.Wait()
	v.log.Info("valve stopped")
	return err
}

// resetLocked forgets the state of an earlier run (another process may
// have changed the stored one since); v.mu must be held.
func (v *Valve) resetLocked() {
	for _, d := range v.dests {
		d.waiting, d.flights, d.charges = nil, nil, nil
		d.emergencyUntil, d.checked = 0, 0
	}
	v.flights, v.backlog, v.dirty = map[flight]*dest{}, map[*dest]bool{}, map[*dest]bool{}
	v.dequeues, v.acks, v.seq, v.started = nil, nil, 0, false
}

func (v *Valve) logsDequeues() bool { return v.cfg.LogDequeue && v.cfg.StatslogTable != "-" }

// consume is the loop over the normal tables.
func (v *Valve) consume(ctx context.Context) error {
	owner := v.db.NewInternalConn()
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
			if errors.Is(err, queue.ErrFenced) {
				return err // another process runs the valve now
			}
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

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
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

// ceilMicro is t in µs, rounded up: a time recorded for a consume is
// never before the consume.
func ceilMicro(t time.Time) int64 {
	us := t.UnixMicro()
	if t.UnixNano()%1000 != 0 {
		us++
	}
	return us
}

// decide passes on the row owner holds, in one batch with its consume:
// released into the timed table if its destination's budget allows and
// nothing of the destination waits before it; otherwise kept waiting (in
// the store) for the scheduler; or dropped in an emergency window.
func (v *Valve) decide(owner queue.Conn, table string) error {
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
	timed, statslog, err := v.tables()
	if err != nil {
		return err
	}
	r, err := v.codec.EncodeNamed(timed, map[string]any{"destination": name, "ready": int64(0), "message": row["message"]})
	if err != nil {
		return err
	}

	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	v.mu.Lock()
	now := v.now()
	d := v.destLocked(name)
	drop := *v.cfg.DropOnEmergency && d.emergencyUntil > now.Unix()
	maxItems, interval := v.cfg.limits(name)
	n, _ := d.budget(now.UnixMicro(), maxItems, interval.Microseconds())
	release := len(d.waiting) == 0 && n > 0
	v.mu.Unlock()

	switch {
	case drop:
		if err := owner.Apply(queue.Write{Consume: true, Fence: v.fence}); err != nil {
			return err
		}
		v.mu.Lock()
		d.dropped++
		v.mu.Unlock()
		return nil
	case release:
		// The row is recorded in flight before it is published (a reader
		// may consume it before Apply returns); the counters, which SHOW
		// VALVE STATUS shows, once it is durable.
		tid := timed.ID()
		err := owner.Apply(queue.Write{
			Consume: true,
			Fence:   v.fence,
			Inserts: []queue.Insertion{{Table: timed, Rows: [][]byte{r}}},
			Finish: func(first []uint64) []queue.AuxEntry {
				v.mu.Lock()
				defer v.mu.Unlock()
				v.flyLocked(d, flight{tid, first[0]})
				delete(v.dirty, d)
				return []queue.AuxEntry{v.stateEntry(d)}
			},
		})
		if err == nil {
			v.mu.Lock()
			d.admitted++
			v.mu.Unlock()
		}
		return err
	}
	v.seq++
	e := &entry{Seq: v.seq, Dest: name, Row: r, key: waitingKey(v.seq)}
	eb, _ := json.Marshal(e)
	w := queue.Write{
		Consume: true,
		Fence:   v.fence,
		Set:     []queue.AuxEntry{{NS: v.ns, Key: e.key, Value: eb}},
	}
	if statslog != nil {
		lr, err := v.codec.EncodeNamed(*statslog, map[string]any{"action": "throttle", "destination": name, "logged_on": now})
		if err == nil {
			w.Inserts = []queue.Insertion{{Table: *statslog, Rows: [][]byte{lr}}}
		}
	}
	if err := owner.Apply(w); err != nil {
		return err
	}
	v.mu.Lock()
	d.waiting = append(d.waiting, e)
	v.backlog[d] = true
	d.throttled++
	v.mu.Unlock()
	signal(v.kick)
	return nil
}

// budget returns how many more messages of d may be released at now (µs)
// so that, counting those in flight and those that left flight within the
// last interval, at most maxItems are. When none may, at is when one may
// if nothing more lands (0 if only a landing can make room). It forgets
// charges older than interval (as Data::Valve forgets entries strictly
// older than the interval).
func (d *dest) budget(now int64, maxItems int, interval int64) (n int, at int64) {
	i := sort.Search(len(d.charges), func(i int) bool { return now-d.charges[i] <= interval })
	if i > 0 {
		d.charges = append(d.charges[:0], d.charges[i:]...)
	}
	n = maxItems - len(d.flights) - len(d.charges)
	switch {
	case n > 0:
		return n, now
	case len(d.flights) >= maxItems:
		return 0, 0
	}
	// One may go once the j oldest charges have left the window.
	j := len(d.charges) - (maxItems - len(d.flights) - 1)
	return 0, d.charges[j-1] + interval + 1
}

func (v *Valve) destLocked(name string) *dest {
	d := v.dests[name]
	if d == nil {
		d = &dest{name: name}
		v.dests[name] = d
	}
	return d
}

// flyLocked records a released row of d.
func (v *Valve) flyLocked(d *dest, f flight) {
	d.flights = append(d.flights, f)
	v.flights[f] = d
}

// landLocked records that row f left the timed table at (µs); it returns
// its destination, or nil if f is not a row in flight.
func (v *Valve) landLocked(f flight, at int64) *dest {
	d := v.flights[f]
	if d == nil {
		return nil
	}
	delete(v.flights, f)
	if i := slices.Index(d.flights, f); i >= 0 {
		d.flights = slices.Delete(d.flights, i, i+1)
	}
	insertSorted(&d.charges, at)
	return d
}

func (v *Valve) stateEntry(d *dest) queue.AuxEntry {
	b, _ := json.Marshal(persisted{Charges: d.charges, Flights: d.flights, EmergencyUntil: d.emergencyUntil})
	return queue.AuxEntry{NS: v.ns, Key: append([]byte("d/"), d.name...), Value: b}
}

// load reads the valve's state and waiting messages from the store. Rows
// in flight that left the timed table while the valve was down count as
// landed now.
func (v *Valve) load() error {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	states := map[string]persisted{}
	var entries []*entry
	var obsolete []queue.AuxEntry
	var bad error
	err := v.db.AuxScan(v.ns, func(k, val []byte) bool {
		switch {
		case bytes.HasPrefix(k, []byte("d/")):
			var p persisted
			if err := json.Unmarshal(val, &p); err != nil {
				bad = fmt.Errorf("valve %s: state of %q: %w", v.cfg.Name, k[2:], err)
				return false
			}
			states[string(k[2:])] = p
		case bytes.HasPrefix(k, []byte("q/")), bytes.HasPrefix(k, []byte("s/")):
			e := &entry{key: bytes.Clone(k)}
			if err := json.Unmarshal(val, e); err != nil {
				bad = fmt.Errorf("valve %s: waiting message: %w", v.cfg.Name, err)
				return false
			}
			if e.Row == nil {
				// An earlier version's "faithful" entry: its row is in
				// the timed table already.
				obsolete = append(obsolete, queue.AuxEntry{NS: v.ns, Key: e.key})
				return true
			}
			entries = append(entries, e)
		}
		return true
	})
	if err == nil {
		err = bad
	}
	if err != nil {
		return err
	}
	gone := map[flight]bool{}
	timed, terr := v.db.Table(v.cfg.Database, v.cfg.TimedTable)
	for _, p := range states {
		for _, f := range p.Flights {
			if terr != nil || f.Table != timed.ID() {
				gone[f] = true
				continue
			}
			ok, err := v.db.RowExists(timed, f.Row)
			if err != nil {
				return err
			}
			gone[f] = !ok
		}
	}

	v.mu.Lock()
	at := ceilMicro(v.now())
	changed := map[*dest]bool{}
	for name, p := range states {
		d := v.destLocked(name)
		d.emergencyUntil = max(d.emergencyUntil, p.EmergencyUntil)
		for _, c := range append(p.Charges, p.Releases...) {
			insertSorted(&d.charges, c)
		}
		changed[d] = len(p.Releases) > 0
		for _, f := range p.Flights {
			if gone[f] {
				insertSorted(&d.charges, at)
				changed[d] = true
			} else {
				v.flyLocked(d, f)
			}
		}
	}
	slices.SortFunc(entries, func(a, b *entry) int { return cmpUint(a.Seq, b.Seq) })
	for _, e := range entries {
		d := v.destLocked(e.Dest)
		d.waiting = append(d.waiting, e)
		v.backlog[d] = true
		v.seq = max(v.seq, e.Seq)
	}
	w := queue.Write{Delete: obsolete, Fence: v.fence}
	for d, c := range changed {
		if c {
			w.Set = append(w.Set, v.stateEntry(d))
		}
	}
	// Counted under the lock: the consume hooks, registered before load,
	// land flights meanwhile.
	inFlight := len(v.flights)
	v.mu.Unlock()
	if len(entries) > 0 {
		v.log.Info("waiting messages restored", "messages", len(entries), "in_flight", inFlight)
	}
	if len(w.Set)+len(w.Delete) > 0 {
		return v.db.NewInternalConn().Apply(w)
	}
	return nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// scheduler releases waiting messages as their destinations' budgets
// allow: when a released row is consumed, and when a charge leaves its
// window.
func (v *Valve) scheduler(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait, err := v.step()
		if err != nil {
			if errors.Is(err, queue.ErrClosed) {
				return
			}
			v.log.Warn("cannot release waiting messages; retrying", "err", err)
			wait = time.Second
		}
		if wait <= 0 {
			if ctx.Err() != nil {
				return
			}
			continue
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-v.kick:
		case <-timer.C:
		}
	}
}

// step looks up the flights the valve waits for, then releases what the
// budgets allow (one batch), and returns how long until there may be more
// to release (0: at once).
func (v *Valve) step() (time.Duration, error) {
	if err := v.reconcile(); err != nil {
		return 0, err
	}
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	timed, terr := v.db.Table(v.cfg.Database, v.cfg.TimedTable)

	v.mu.Lock()
	nowUS := v.now().UnixMicro()
	next := nowUS + int64(time.Hour/time.Microsecond)
	var batch []*entry
	for d := range v.backlog {
		maxItems, interval := v.cfg.limits(d.name)
		n, at := d.budget(nowUS, maxItems, interval.Microseconds())
		k := min(n, len(d.waiting), releaseBatch-len(batch))
		batch = append(batch, d.waiting[:max(k, 0)]...)
		switch {
		case k == len(d.waiting):
		case n > k: // the batch is full
			next = nowUS
		case at > 0:
			next = min(next, at)
		default: // waits for a landing; look its flights up now and then
			next = min(next, d.checked+reconcileEvery.Microseconds())
		}
	}
	v.mu.Unlock()
	if len(batch) == 0 {
		return time.Duration(max(next-nowUS, 1)) * time.Microsecond, nil
	}
	if terr != nil {
		return 0, fmt.Errorf("timed table %s: %w", v.cfg.TimedTable, terr)
	}
	slices.SortFunc(batch, func(a, b *entry) int { return cmpUint(a.Seq, b.Seq) })
	rows := make([][]byte, len(batch))
	w := queue.Write{Inserts: []queue.Insertion{{Table: timed}}, Fence: v.fence}
	for i, e := range batch {
		rows[i] = e.Row
		w.Delete = append(w.Delete, queue.AuxEntry{NS: v.ns, Key: e.key})
	}
	w.Inserts[0].Rows = rows
	tid := timed.ID()
	// The rows move from the backlog to flight before they are published
	// (a reader may consume one before Apply returns); they count as
	// released once durable.
	w.Finish = func(first []uint64) []queue.AuxEntry {
		v.mu.Lock()
		defer v.mu.Unlock()
		touched := map[*dest]bool{}
		for i, e := range batch {
			d := v.dests[e.Dest]
			if i := slices.Index(d.waiting, e); i >= 0 { // 0: a batch takes each destination's oldest
				d.waiting = slices.Delete(d.waiting, i, i+1)
			}
			if len(d.waiting) == 0 {
				d.waiting = nil
				delete(v.backlog, d)
			}
			v.flyLocked(d, flight{tid, first[0] + uint64(i)})
			touched[d] = true
		}
		var st []queue.AuxEntry
		for d := range touched {
			delete(v.dirty, d)
			st = append(st, v.stateEntry(d))
		}
		return st
	}
	if err := v.db.NewInternalConn().Apply(w); err != nil {
		if errors.Is(err, queue.ErrTableChanged) {
			return 0, fmt.Errorf("the timed table was altered; waiting rows no longer fit it: %w", err)
		}
		return 0, err
	}
	v.mu.Lock()
	for _, e := range batch {
		v.dests[e.Dest].released++
	}
	v.mu.Unlock()
	return 0, nil
}

// reconcile looks up, at most every reconcileEvery, the rows in flight of
// the destinations that wait for them: a row no longer in the timed table
// (consumed while the hook could not see it, deleted, truncated) lands now.
// It holds applyMu: a row recorded in flight by a write still committing
// is not in the table yet.
func (v *Valve) reconcile() error {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	v.mu.Lock()
	nowUS := v.now().UnixMicro()
	var todo []flight
	for d := range v.backlog {
		maxItems, interval := v.cfg.limits(d.name)
		if n, _ := d.budget(nowUS, maxItems, interval.Microseconds()); n > 0 || len(d.flights) == 0 ||
			nowUS-d.checked < reconcileEvery.Microseconds() {
			continue
		}
		d.checked = nowUS
		todo = append(todo, d.flights...)
	}
	v.mu.Unlock()
	if len(todo) == 0 {
		return nil
	}
	timed, terr := v.db.Table(v.cfg.Database, v.cfg.TimedTable)
	var gone []flight
	for _, f := range todo {
		ok := false
		if terr == nil && f.Table == timed.ID() {
			var err error
			if ok, err = v.db.RowExists(timed, f.Row); err != nil {
				return err
			}
		}
		if !ok {
			gone = append(gone, f)
		}
	}
	if len(gone) == 0 {
		return nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	at := ceilMicro(v.now())
	for _, f := range gone {
		if d := v.landLocked(f, at); d != nil {
			v.dirty[d] = true
		}
	}
	return nil
}

func insertSorted(s *[]int64, x int64) {
	i, _ := slices.BinarySearch(*s, x)
	*s = slices.Insert(*s, i, x)
}

// timedConsumed is the hook for rows consumed from the timed table: a
// released row lands (its destination's budget grows once the interval
// has passed), and with log_dequeue a 'dequeue' row is logged.
func (v *Valve) timedConsumed(c queue.Consumed) {
	name, logIt := "", false
	if c.Payload != nil {
		if t, err := v.db.Table(v.cfg.Database, v.cfg.TimedTable); err == nil {
			if row, err := v.codec.DecodeNamed(t, c.Payload); err == nil {
				name, _ = row["destination"].(string)
				logIt = true
			}
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.running {
		return
	}
	v.ackLocked(c)
	now := v.now()
	if d := v.landLocked(flight{c.TableID, c.RowID}, ceilMicro(now)); d != nil {
		v.dirty[d] = true
		signal(v.kick)
	}
	if logIt {
		v.dequeues = append(v.dequeues, dequeued{name, now})
		signal(v.persist)
	}
}

// ackLocked notes the store's record of consume c (if it keeps one) for
// the persister to delete with the state c changed; v.mu must be held.
func (v *Valve) ackLocked(c queue.Consumed) {
	if c.Ack.NS != "" {
		v.acks = append(v.acks, c.Ack)
		signal(v.persist)
	}
}

// emergencyConsumed returns the hook that opens a destination's drop
// window when a connection consumes one of its emergency messages.
func (v *Valve) emergencyConsumed(table string) func(queue.Consumed) {
	return func(c queue.Consumed) {
		t, err := v.db.Table(v.cfg.Database, table)
		if err != nil {
			return
		}
		row, err := v.codec.DecodeNamed(t, c.Payload)
		if err != nil {
			return
		}
		name, _ := row["destination"].(string)
		_, interval := v.cfg.limits(name)
		v.mu.Lock()
		defer v.mu.Unlock()
		if !v.running {
			return
		}
		v.ackLocked(c)
		until := v.now().Add(interval).Unix()
		d := v.destLocked(name)
		if until > d.emergencyUntil {
			d.emergencyUntil = until
			v.dirty[d] = true
			signal(v.persist)
		}
	}
}

// persister stores what the hooks recorded (emergency windows, landings,
// 'dequeue' rows) off the connections' goroutines. Once stop is closed it
// stores what is left and returns.
func (v *Valve) persister(stop <-chan struct{}) {
	retry := time.NewTimer(time.Hour)
	defer retry.Stop()
	for {
		select {
		case <-v.persist:
		case <-retry.C:
		case <-stop:
			if err := v.flush(); err != nil && !errors.Is(err, queue.ErrClosed) {
				v.log.Warn("cannot store the valve's state at shutdown", "err", err)
			}
			return
		}
		if err := v.flush(); err != nil {
			v.log.Warn("cannot store the valve's state; retrying", "err", err)
			retry.Reset(time.Second)
		}
	}
}

// flush writes the dirty destinations' state and the pending 'dequeue'
// rows in one batch.
func (v *Valve) flush() error {
	v.applyMu.Lock()
	defer v.applyMu.Unlock()
	var statslog *queue.Table
	if v.logsDequeues() {
		if s, err := v.db.Table(v.cfg.Database, v.cfg.StatslogTable); err == nil {
			statslog = &s
		}
	}
	v.mu.Lock()
	w := queue.Write{Fence: v.fence}
	dirty := v.dirty
	v.dirty = map[*dest]bool{}
	for d := range dirty {
		w.Set = append(w.Set, v.stateEntry(d))
	}
	logs := v.dequeues
	v.dequeues = nil
	acks := v.acks
	v.acks = nil
	w.Delete = acks
	v.mu.Unlock()
	if statslog != nil && len(logs) > 0 {
		ins := queue.Insertion{Table: *statslog}
		for _, l := range logs {
			if r, err := v.codec.EncodeNamed(*statslog, map[string]any{"action": "dequeue", "destination": l.dest, "logged_on": l.at}); err == nil {
				ins.Rows = append(ins.Rows, r)
			}
		}
		if len(ins.Rows) > 0 {
			w.Inserts = []queue.Insertion{ins}
		}
	}
	if len(w.Set)+len(w.Inserts)+len(w.Delete) == 0 {
		return nil
	}
	err := v.db.NewInternalConn().Apply(w)
	if err != nil {
		v.mu.Lock()
		for d := range dirty {
			v.dirty[d] = true
		}
		v.acks = append(acks, v.acks...)
		if statslog != nil && !errors.Is(err, queue.ErrNoSuchTable) && !errors.Is(err, queue.ErrTableChanged) {
			v.dequeues = append(logs, v.dequeues...)
		}
		v.mu.Unlock()
	}
	return err
}

// Status is one row of SHOW VALVE STATUS.
type Status struct {
	Valve, Destination                     string
	Admitted, Throttled, Dropped, Released uint64
	Scheduled                              int       // messages waiting
	NextRelease                            time.Time // zero if none waits, or if it waits for a consume
	InWindow, MaxItems                     int       // in flight plus landed within the interval, and the limit
	DropUntil                              time.Time // zero if no emergency window is open
}

// Status reports the valve's destinations, sorted by name; nothing while
// RunElected waits to be elected (another process runs the valve).
func (v *Valve) Status() []Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.standby {
		return nil
	}
	now := v.now()
	out := make([]Status, 0, len(v.dests))
	for _, d := range v.dests {
		maxItems, interval := v.cfg.limits(d.name)
		_, at := d.budget(now.UnixMicro(), maxItems, interval.Microseconds())
		st := Status{
			Valve: v.cfg.Name, Destination: d.name,
			Admitted: d.admitted, Throttled: d.throttled, Dropped: d.dropped, Released: d.released,
			Scheduled: len(d.waiting), MaxItems: maxItems,
			InWindow: len(d.flights) + len(d.charges),
		}
		if len(d.waiting) > 0 && at > 0 {
			st.NextRelease = time.UnixMicro(at)
		}
		if d.emergencyUntil > now.Unix() {
			st.DropUntil = time.Unix(d.emergencyUntil, 0)
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Destination < out[j].Destination })
	return out
}
