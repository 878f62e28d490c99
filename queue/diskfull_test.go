package queue

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// until polls cond until it holds, failing the test after a generous
// deadline (it waits on a condition, not for a time).
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// logCounter is a slog handler counting records by message.
type logCounter struct {
	mu   sync.Mutex
	msgs map[string]int
}

func (c *logCounter) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCounter) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCounter) WithGroup(string) slog.Handler            { return c }
func (c *logCounter) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.msgs == nil {
		c.msgs = map[string]int{}
	}
	c.msgs[r.Message]++
	return nil
}

func (c *logCounter) count(prefix string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for m, k := range c.msgs {
		if strings.HasPrefix(m, prefix) {
			n += k
		}
	}
	return n
}

// noSpace is the error a full disk gives.
func noSpace(op errorfs.Op) error {
	return &os.PathError{Op: "write", Path: op.Path, Err: syscall.ENOSPC}
}

// fullInjector fails every write whose path matches with ENOSPC while on.
type fullInjector struct {
	on    atomic.Bool
	match func(path string) bool
}

func (f *fullInjector) String() string { return "full" }

func (f *fullInjector) MaybeError(op errorfs.Op) error {
	if !f.on.Load() || (f.match != nil && !f.match(op.Path)) {
		return nil
	}
	switch op.Kind {
	case errorfs.OpCreate, errorfs.OpReuseForWrite, errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFilePreallocate:
		return noSpace(op)
	}
	return nil
}

func fullOptions(fs vfs.FS, h slog.Handler) *Options {
	o := testOptions(fs)
	o.Logger = slog.New(h)
	o.DiskReserve = 64 << 10
	return o
}

// wantFull fails unless err is a refusal for a full disk naming table.
func wantFull(t *testing.T, what string, err error, table string) {
	t.Helper()
	var fe *FullError
	if !errors.As(err, &fe) || !errors.Is(err, ErrDiskFull) || fe.Table != table {
		t.Fatalf("%s: %v; want ErrDiskFull for table %q", what, err, table)
	}
}

// TestDiskFullWALWaits: the disk is full and giving up the reserve does not
// help. The commit in flight waits for space (it is never failed, so
// Pebble never sees ENOSPC); every later write is refused at once with
// ErrDiskFull, leaving owners their rows; reads go on; the waiting write
// is logged once, not once per retry; once space returns the waiting
// insert is acknowledged and writes are accepted again, and a reopened
// store holds exactly the acknowledged rows.
func TestDiskFullWALWaits(t *testing.T) {
	inj := &fullInjector{}
	mem := vfs.NewMem()
	logs := &logCounter{}
	db, err := Open("db", fullOptions(errorfs.Wrap(mem, inj), logs))
	if err != nil {
		t.Fatal(err)
	}
	h := createTable(t, db, "q")
	insert(t, db, h, "a", "b")
	o := db.NewOwner()
	if idx := mustWait(t, o, subs("q"), 0); idx != 1 || rowID(t, o) != 1 {
		t.Fatalf("Wait = %d, rowid %d", idx, rowID(t, o))
	}

	armed := time.Now()
	inj.on.Store(true)
	inflight := make(chan error, 1)
	go func() {
		_, err := db.Insert(h, [][]byte{[]byte("c")})
		inflight <- err
	}()
	until(t, "the insert to wait for space", func() bool {
		st := db.Stats()
		return st.DiskFull && st.WritesWaiting > 0
	})
	if st := db.Stats(); st.DiskFullEvents != 1 {
		t.Errorf("DiskFullEvents = %d, want 1", st.DiskFullEvents)
	}

	// Refused at once, and nothing happened.
	_, err = db.Insert(h, [][]byte{[]byte("refused")})
	wantFull(t, "insert", err, "q")
	wantFull(t, "queue_end", o.End(), "q")
	if !o.InOwnerMode() || rowID(t, o) != 1 {
		t.Fatal("a refused End left owner mode or the row")
	}
	_, err = o.Wait(t.Context(), subs("q"), 0)
	wantFull(t, "queue_wait", err, "q")
	if !o.InOwnerMode() || rowID(t, o) != 1 {
		t.Fatal("a refused Wait left owner mode or the row")
	}
	other := db.NewOwner()
	n, err := other.DeleteRows(h, []uint64{2})
	wantFull(t, "delete", err, "q")
	if n != 0 {
		t.Fatalf("DeleteRows = %d", n)
	}
	wantFull(t, "create table", db.CreateTable(testDB, "new", nil), "new")
	wantFull(t, "truncate", db.TruncateTable(testDB, "q"), "q")
	wantFull(t, "compact", db.Compact(t.Context(), h), "q")
	var fe *FullError
	if err := db.CreateDatabase("d2"); !errors.As(err, &fe) || fe.Database != "d2" {
		t.Fatalf("create database: %v", err)
	}

	// Reads go on.
	checkRows(t, "scan while full", scan(t, other, h), row{2, "b"})
	checkRows(t, "owner's scan while full", scan(t, o, h), row{1, "a"})
	if c := db.Count(h); c != 2 {
		t.Errorf("Count = %d, want 2", c)
	}
	select {
	case err := <-inflight:
		t.Fatalf("the insert in flight returned %v while the disk was full", err)
	default:
	}
	until(t, "a few retries of the waiting write", func() bool { return db.guard.retries.Load() >= 4 })
	if n, most := logs.count("disk full: a write waits"), 1+int(time.Since(armed)/logEvery); n > most {
		t.Errorf("%d log lines for a write waiting through %d retries; want at most %d", n, db.guard.retries.Load(), most)
	}
	if n := logs.count("disk full: writes refused"); n != 1 {
		t.Errorf("%d 'disk full' lines; want 1", n)
	}

	// Space returns.
	inj.on.Store(false)
	if err := <-inflight; err != nil {
		t.Fatalf("the insert that waited: %v", err)
	}
	until(t, "writes to be accepted again", func() bool { return !db.Stats().DiskFull })
	if st := db.Stats(); st.WritesRefused < 7 {
		t.Errorf("WritesRefused = %d, want at least 7", st.WritesRefused)
	}
	if err := o.End(); err != nil {
		t.Fatalf("End after recovery: %v", err)
	}
	insert(t, db, h, "d")
	if err := db.CreateTable(testDB, "new", nil); err != nil {
		t.Fatalf("CreateTable after recovery: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	db = openDB(t, mem)
	h = lookup(t, db, "q")
	checkRows(t, "after reopen", scan(t, db.NewOwner(), h), row{2, "b"}, row{3, "c"}, row{4, "d"})
}

// TestDiskFullFlushWaits: a flush that finds the disk full waits for space
// (Pebble would retry it at once, forever, logging each failure) and
// writes are refused meanwhile; once the flush could be written writes are
// accepted again.
func TestDiskFullFlushWaits(t *testing.T) {
	inj := &fullInjector{match: func(p string) bool { return strings.HasSuffix(p, ".sst") }}
	logs := &logCounter{}
	mem := vfs.NewMem()
	db, err := Open("db", fullOptions(errorfs.Wrap(mem, inj), logs))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := createTable(t, db, "q")
	insert(t, db, h, "a")
	inj.on.Store(true)
	flushed := make(chan error, 1)
	go func() { flushed <- db.pdb.Flush() }()
	until(t, "the flush to wait for space", func() bool {
		st := db.Stats()
		return st.DiskFull && st.WritesWaiting > 0
	})
	_, err = db.Insert(h, [][]byte{[]byte("refused")})
	wantFull(t, "insert during a waiting flush", err, "q")
	checkRows(t, "scan", scan(t, db.NewOwner(), h), row{1, "a"})
	inj.on.Store(false)
	if err := <-flushed; err != nil {
		t.Fatalf("Flush: %v", err)
	}
	until(t, "writes to be accepted again", func() bool { return !db.Stats().DiskFull })
	insert(t, db, h, "b")
	checkRows(t, "scan", scan(t, db.NewOwner(), h), row{1, "a"}, row{2, "b"})
	if n := logs.count("background error"); n > 1 {
		t.Errorf("%d background errors logged", n)
	}
}

// TestDiskFullCloseWhileWaiting: Close does not wait for space; the write
// that waited fails (unacknowledged) and what was acknowledged is there
// after reopening.
func TestDiskFullCloseWhileWaiting(t *testing.T) {
	inj := &fullInjector{}
	mem := vfs.NewMem()
	db, err := Open("db", fullOptions(errorfs.Wrap(mem, inj), slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	h := createTable(t, db, "q")
	insert(t, db, h, "a")
	inj.on.Store(true)
	inflight := make(chan error, 1)
	go func() {
		_, err := db.Insert(h, [][]byte{[]byte("lost")})
		inflight <- err
	}()
	until(t, "the insert to wait for space", func() bool { return db.Stats().WritesWaiting > 0 })
	_ = db.Close() // may report the failed log write
	if err := <-inflight; err == nil {
		t.Fatal("the insert that waited for space was acknowledged by a closing store")
	}
	inj.on.Store(false)
	db = openDB(t, mem)
	got := scan(t, db.NewOwner(), lookup(t, db, "q"))
	if len(got) == 0 || got[0] != (row{1, "a"}) || len(got) > 2 {
		t.Fatalf("after reopen: %v; want 1:a (and perhaps the unacknowledged row)", got)
	}
}

// diskSim is a disk of limited capacity over a MemFS: a write beyond it
// writes what fits and fails with ENOSPC, removing a file frees its bytes,
// and GetDiskUsage tells the free space.
type diskSim struct {
	vfs.FS
	mu    sync.Mutex
	total int64
	used  int64
	alloc map[string]int64
}

func newDiskSim(total int64) *diskSim {
	return &diskSim{FS: vfs.NewMem(), total: total, alloc: map[string]int64{}}
}

// grow adds n bytes of capacity (an operator freed space).
func (d *diskSim) grow(n int64) {
	d.mu.Lock()
	d.total += n
	d.mu.Unlock()
}

// occupy takes n bytes (another program wrote a file).
func (d *diskSim) occupy(n int64) {
	d.mu.Lock()
	d.used += n
	d.alloc["<other>"] += n
	d.mu.Unlock()
}

func (d *diskSim) free() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.total - d.used
}

// extend allocates the file up to end, or as far as there is room.
func (d *diskSim) extend(name string, end int64) int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	a := d.alloc[name]
	if end <= a {
		return end
	}
	end = min(end, a+d.total-d.used)
	if end > a {
		d.used += end - a
		d.alloc[name] = end
	}
	return max(end, a)
}

func (d *diskSim) release(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.used -= d.alloc[name]
	delete(d.alloc, name)
}

func (d *diskSim) move(from, to string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.used -= d.alloc[to]
	d.alloc[to] = d.alloc[from]
	delete(d.alloc, from)
}

func (d *diskSim) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := d.FS.Create(name, c)
	if err != nil {
		return nil, err
	}
	d.release(name) // truncated
	return &simFile{File: f, d: d, name: name}, nil
}

func (d *diskSim) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := d.FS.ReuseForWrite(oldname, newname, c)
	if err != nil {
		return nil, err
	}
	d.move(oldname, newname)
	return &simFile{File: f, d: d, name: newname}, nil
}

func (d *diskSim) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := d.FS.OpenReadWrite(name, c, opts...)
	if err != nil {
		return nil, err
	}
	return &simFile{File: f, d: d, name: name}, nil
}

func (d *diskSim) Remove(name string) error {
	if err := d.FS.Remove(name); err != nil {
		return err
	}
	d.release(name)
	return nil
}

func (d *diskSim) Rename(oldname, newname string) error {
	if err := d.FS.Rename(oldname, newname); err != nil {
		return err
	}
	d.move(oldname, newname)
	return nil
}

func (d *diskSim) GetDiskUsage(string) (vfs.DiskUsage, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return vfs.DiskUsage{AvailBytes: uint64(d.total - d.used), TotalBytes: uint64(d.total), UsedBytes: uint64(d.used)}, nil
}

type simFile struct {
	vfs.File
	d    *diskSim
	name string
	off  int64
}

func (f *simFile) Write(p []byte) (int, error) {
	k := f.grant(f.off, p)
	n, err := f.File.Write(p[:k])
	f.off += int64(n)
	return n, f.short(n, p, err)
}

func (f *simFile) WriteAt(p []byte, off int64) (int, error) {
	k := f.grant(off, p)
	n, err := f.File.WriteAt(p[:k], off)
	return n, f.short(n, p, err)
}

// grant allocates room for p at off and returns how much of it fits.
func (f *simFile) grant(off int64, p []byte) int {
	end := f.d.extend(f.name, off+int64(len(p)))
	return int(max(0, min(end-off, int64(len(p)))))
}

func (f *simFile) short(n int, p []byte, err error) error {
	if err == nil && n < len(p) {
		err = &os.PathError{Op: "write", Path: f.name, Err: syscall.ENOSPC}
	}
	return err
}

func (f *simFile) Preallocate(off, n int64) error {
	if f.d.extend(f.name, off+n) < off+n {
		return &os.PathError{Op: "fallocate", Path: f.name, Err: syscall.ENOSPC}
	}
	return nil
}

// TestDiskFullReserve fills a disk of limited capacity with inserts. The
// write that finds it full completes with the reserve: no insert waits, each
// is either acknowledged or refused at once. Once space is freed writes are
// accepted again, and every acknowledged row, and no refused one, is in
// the store, also after reopening it.
func TestDiskFullReserve(t *testing.T) {
	const mb = 1 << 20
	d := newDiskSim(8 * mb)
	logs := &logCounter{}
	opts := fullOptions(d, logs)
	opts.DiskReserve = mb
	db, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h := createTable(t, db, "q")
	rng := rand.NewChaCha8([32]byte{1})
	var acked []uint64
	for i := 0; ; i++ {
		if i > 1000 {
			t.Fatal("the disk never filled")
		}
		rows := make([][]byte, 8)
		for k := range rows {
			rows[k] = make([]byte, 4<<10)
			_, _ = rng.Read(rows[k]) // incompressible
		}
		id, err := db.Insert(h, rows)
		if errors.Is(err, ErrDiskFull) {
			wantFull(t, "insert", err, "q")
			break
		}
		if err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
		for k := range rows {
			acked = append(acked, id+uint64(k))
		}
	}
	st := db.Stats()
	if !st.DiskFull || st.DiskFullEvents != 1 || st.WritesRefused != 1 {
		t.Fatalf("stats after filling: %+v", st)
	}
	t.Logf("%d rows acknowledged on an 8 MB disk; %d bytes free", len(acked), d.free())
	if n := db.Count(h); n != len(acked) {
		t.Fatalf("Count = %d, want %d", n, len(acked))
	}
	o := db.NewOwner()
	if mustWait(t, o, subs("q"), 0) != 1 {
		t.Fatal("no row to take")
	}
	wantFull(t, "queue_end", o.End(), "q")

	d.grow(8 * mb)
	until(t, "writes to be accepted again", func() bool { return !db.Stats().DiskFull })
	if err := o.End(); err != nil {
		t.Fatal(err)
	}
	id := insert(t, db, h, "after")
	if id != acked[len(acked)-1]+1 {
		t.Errorf("rowid after recovery = %d, want %d", id, acked[len(acked)-1]+1)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows := scan(t, db.NewOwner(), lookup(t, db, "q"))
	if len(rows) != len(acked) || rows[0].id != acked[1] || rows[len(rows)-1].id != id {
		t.Errorf("after reopening: %d rows from %v to %v; want %d from %d to %d",
			len(rows), rows[0], rows[len(rows)-1], len(acked), acked[1], id)
	}
	if n := logs.count("disk full: writes refused"); n != 1 {
		t.Errorf("%d 'disk full' lines", n)
	}
	if n := logs.count("disk space available again"); n != 1 {
		t.Errorf("%d 'available again' lines", n)
	}
}

// TestDiskFullOpen: a store opened where the reserve does not fit starts
// with writes refused, and accepts them once there is room.
func TestDiskFullOpen(t *testing.T) {
	const mb = 1 << 20
	d := newDiskSim(16 * mb)
	opts := fullOptions(d, slog.DiscardHandler)
	opts.DiskReserve = 2 * mb
	db, err := Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	h := createTable(t, db, "q")
	insert(t, db, h, "a")
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// A data directory without its reserve (made before there was one,
	// say) on a disk with 1 MB free: room to open, not for the reserve.
	if err := d.Remove("db/" + reserveName); err != nil {
		t.Fatal(err)
	}
	d.occupy(d.free() - mb)
	db, err = Open("db", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h = lookup(t, db, "q")
	if st := db.Stats(); !st.DiskFull || st.DiskFullEvents != 1 {
		t.Fatalf("opened with 1 MB free: %+v; want writes refused", st)
	}
	_, err = db.Insert(h, [][]byte{[]byte("b")})
	wantFull(t, "insert", err, "q")
	checkRows(t, "scan", scan(t, db.NewOwner(), h), row{1, "a"})
	d.release("<other>")
	until(t, "writes to be accepted", func() bool { return !db.Stats().DiskFull })
	insert(t, db, h, "b")
	checkRows(t, "scan", scan(t, db.NewOwner(), h), row{1, "a"}, row{2, "b"})
}

// TestDiskGuardRestore: the reserve is restored, and writes accepted, only
// with room for it twice over and no write waiting for space.
func TestDiskGuardRestore(t *testing.T) {
	const size = 1 << 20
	d := newDiskSim(64 * size)
	g := newDiskGuard(d, "", size, slog.New(slog.DiscardHandler), newLogLimiter(logEvery))
	if err := d.MkdirAll("", 0o755); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.restoreLocked() || d.free() != 63*size {
		t.Fatalf("reserve not made: %d free", d.free())
	}
	if err := d.Remove(g.reservePath()); err != nil {
		t.Fatal(err)
	}
	g.mu.reserved = false
	d.grow(2*size - 1 - d.free())
	if g.restoreLocked() {
		t.Fatal("reserve restored with less than twice its size free")
	}
	if d.free() != 2*size-1 {
		t.Fatalf("a failed restore left %d bytes free", d.free())
	}
	d.grow(1)
	if !g.restoreLocked() || d.free() != size {
		t.Fatalf("reserve not restored with twice its size free: %d free", d.free())
	}
}

// TestLogLimiter: a repeated message is logged once per interval, with the
// count of the ones held back.
func TestLogLimiter(t *testing.T) {
	logs := &logCounter{}
	p := pebbleLogger{slog.New(logs), newLogLimiter(time.Hour)}
	for i := range 1000 {
		p.Errorf("background error: %v", i)
	}
	p.Errorf("another kind: %d", 1)
	if n := logs.count("background error"); n != 1 {
		t.Errorf("%d lines for 1000 repeated errors; want 1", n)
	}
	if n := logs.count("another kind"); n != 1 {
		t.Errorf("%d lines for another error; want 1", n)
	}
	l := newLogLimiter(0)
	for range 3 {
		if ok, n := l.allow("k"); !ok || n != 0 {
			t.Fatalf("allow with no interval = %v, %d", ok, n)
		}
	}
}
