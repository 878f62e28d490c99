package queue

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A full disk.
//
// Pebble cannot take back a failed write: after a failed WAL write its log
// writer keeps the error (every later commit fails, and the failed batch is
// already in the memtable), and a failed MANIFEST write is fatal. Its
// flushes and compactions retry a failed write at once, forever, logging
// each failure. So ENOSPC must never reach it. The store's filesystem is
// wrapped in a diskGuard, which:
//
//   - keeps a reserve file (Options.DiskReserve) next to the store. The
//     first write that finds the disk full marks the store full, deletes
//     the reserve and retries at once: the write in flight (a commit, a
//     flush) normally succeeds, so nothing handed to Pebble fails;
//   - from then on the DB refuses every new write with ErrDiskFull
//     (submit and the commit loop check the mark), while reads go on;
//   - a write that still finds no space waits and retries (with a growing
//     pause, and one log line per logEvery) instead of failing;
//   - a prober recreates the reserve once no write waits any more and the
//     filesystem has room for the reserve twice over, and then clears the
//     mark: writes are accepted again, without a restart and without
//     reopening Pebble (which never saw an error).
//
// Only ENOSPC and EDQUOT on writes, file creation, renames and links are
// handled this way. A failed sync is not retried (after a failed fsync the
// kernel may have dropped the data): it stays a storage failure
// (ErrStorage), as does any other error.

// DefaultDiskReserve is the reserve kept unless Options say otherwise, capped
// at an eighth of the filesystem's size.
const DefaultDiskReserve = 16 << 20

// reserveName is the reserve file, in the store's directory (Pebble leaves
// files it does not know alone).
const reserveName = "q4mproxy-reserve"

// Pauses of the guard: between retries of a blocked write and between
// probes, growing from retryMin to retryMax; probeGap is the least time
// between two probes asked for by refused writes.
const (
	retryMin = 10 * time.Millisecond
	retryMax = time.Second
	probeGap = 50 * time.Millisecond
)

func isNoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// diskGuard is the filesystem under the store; see the comment above.
type diskGuard struct {
	vfs.FS // the filesystem below
	log    *slog.Logger
	lim    *logLimiter
	dir    string
	size   int64 // of the reserve; 0: none

	full     atomic.Bool // writes are refused
	blocking atomic.Bool // a write finding no space waits (between Open and Close)
	closed   chan struct{}
	wake     chan struct{} // asks the prober for a probe now
	done     chan struct{} // closed when the prober has returned
	once     sync.Once

	events  atomic.Uint64 // times the disk was found full
	refused atomic.Uint64 // writes refused by the DB
	waiting atomic.Int64  // writes waiting for space now
	retries atomic.Uint64 // retries of writes that waited
	probes  atomic.Uint64 // attempts to restore the reserve

	mu struct {
		sync.Mutex
		reserved bool      // the reserve file is in place
		since    time.Time // when the disk was found full
	}
}

func newDiskGuard(fs vfs.FS, dir string, size int64, log *slog.Logger, lim *logLimiter) *diskGuard {
	return &diskGuard{
		FS: fs, log: log, lim: lim, dir: dir, size: size,
		closed: make(chan struct{}),
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// start puts the reserve in place (or marks the store full if there is no
// room for it), turns on waiting for space and starts the prober. Pebble
// is open by then: while it opens, a full disk makes Open fail instead of
// waiting.
func (g *diskGuard) start() {
	g.mu.Lock()
	if u, err := g.FS.GetDiskUsage(g.dir); err == nil && g.size > int64(u.TotalBytes/8) {
		g.size = int64(u.TotalBytes / 8)
	}
	// A reserve left by the last run is made again: fallocate leaves the
	// file's size at 0, so how much it holds cannot be told.
	_ = g.FS.Remove(g.reservePath())
	ok := g.restoreLocked()
	g.mu.Unlock()
	if !ok {
		g.markFull("reserve", g.reservePath(), errors.New("no room for the reserve"))
	}
	g.blocking.Store(true)
	go g.probe()
}

// close stops waiting for space (a write still waiting fails with its
// ENOSPC) and stops the prober.
func (g *diskGuard) close() {
	g.once.Do(func() {
		g.blocking.Store(false)
		close(g.closed)
	})
}

// wait waits for the prober to return; after close.
func (g *diskGuard) wait() { <-g.done }

func (g *diskGuard) reservePath() string { return g.FS.PathJoin(g.dir, reserveName) }

// kick asks the prober for a probe.
func (g *diskGuard) kick() {
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// markFull records that the disk is full and gives up the reserve. It
// reports whether the reserve was given up (a retry may then succeed).
func (g *diskGuard) markFull(op, name string, err error) (freed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.mu.reserved {
		if rerr := g.FS.Remove(g.reservePath()); rerr == nil || errors.Is(rerr, os.ErrNotExist) {
			g.mu.reserved, freed = false, true
		}
	}
	if !g.full.Swap(true) {
		g.events.Add(1)
		g.mu.since = time.Now()
		g.log.Error("disk full: writes refused until space is freed", "op", op, "file", name,
			"err", err, "reserve_released", freed)
	}
	g.kick()
	return freed
}

// try runs f, a write, through do.
func (g *diskGuard) try(op, name string, f func() error) error {
	err := f()
	if err == nil || !isNoSpace(err) {
		return err
	}
	return g.do(op, name, err, f)
}

// do handles err, f's ENOSPC: it marks the disk full, retries f once the
// reserve is given up and then, between Open and Close, retries it until
// it succeeds.
func (g *diskGuard) do(op, name string, err error, f func() error) error {
	// Counted from here, so that the prober does not clear the mark first.
	g.waiting.Add(1)
	defer func() {
		g.waiting.Add(-1)
		g.kick() // the prober may restore the reserve now
	}()
	if g.markFull(op, name, err) {
		if err = f(); err == nil || !isNoSpace(err) {
			return err
		}
	}
	if !g.blocking.Load() {
		return err
	}
	return g.retry(op, name, f, err)
}

// retry retries f until it succeeds, fails otherwise than for space, or
// the guard is closed.
func (g *diskGuard) retry(op, name string, f func() error, err error) error {
	pause := retryMin
	t := time.NewTimer(pause)
	defer t.Stop()
	for {
		if ok, n := g.lim.allow("disk full: write waiting"); ok {
			g.log.Warn("disk full: a write waits for space", "op", op, "file", name, "err", err, "suppressed", n)
		}
		select {
		case <-g.closed:
			return err
		case <-t.C:
		}
		g.retries.Add(1)
		if err = f(); err == nil || !isNoSpace(err) {
			return err
		}
		pause = min(2*pause, retryMax)
		t.Reset(pause)
	}
}

// probe runs until close: while the disk is marked full it tries to
// restore the reserve, at growing intervals and when kicked (by a refused
// write, or a write that found space again), at most once per probeGap.
func (g *diskGuard) probe() {
	defer close(g.done)
	pause := retryMin
	for {
		var t *time.Timer
		var tick <-chan time.Time
		if g.full.Load() {
			t = time.NewTimer(pause)
			tick = t.C
		}
		select {
		case <-g.closed:
		case <-g.wake:
		case <-tick:
		}
		if t != nil {
			t.Stop()
		}
		if g.isClosed() {
			return
		}
		if !g.full.Load() {
			pause = retryMin
			continue
		}
		g.probes.Add(1)
		g.mu.Lock()
		ok := g.waiting.Load() == 0 && g.restoreLocked()
		since := g.mu.since
		if ok {
			g.full.Store(false)
		}
		g.mu.Unlock()
		if ok {
			g.log.Info("disk space available again: writes accepted",
				"full_for", time.Since(since).Round(time.Millisecond).String(), "writes_refused", g.refused.Load())
			pause = retryMin
			continue
		}
		pause = min(2*pause, retryMax)
		gap := time.NewTimer(probeGap)
		select {
		case <-g.closed:
		case <-gap.C:
		}
		gap.Stop()
	}
}

func (g *diskGuard) isClosed() bool {
	select {
	case <-g.closed:
		return true
	default:
		return false
	}
}

// restoreLocked puts the reserve in place if it is not, and reports
// whether it is. Without a reserve it checks that a small file can be
// written. It needs room for the reserve twice over where the filesystem
// tells its free space, so that writes do not fill the disk again at once.
func (g *diskGuard) restoreLocked() bool {
	if g.mu.reserved {
		return true
	}
	size := g.size
	if size <= 0 {
		size = 64 << 10
	} else if u, err := g.FS.GetDiskUsage(g.dir); err == nil && u.AvailBytes < 2*uint64(size) {
		return false
	}
	name := g.reservePath()
	if g.size <= 0 {
		name += ".probe"
	}
	err := writeReserve(g.FS, name, size)
	if err != nil || g.size <= 0 {
		_ = g.FS.Remove(name)
		return err == nil
	}
	g.mu.reserved = true
	return true
}

// writeReserve creates file name holding size bytes of disk: allocated
// where the filesystem can (fallocate), written otherwise.
func writeReserve(fs vfs.FS, name string, size int64) error {
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	err = f.Preallocate(0, size)
	if err != nil && !isNoSpace(err) {
		err = writeZeros(f, size) // no fallocate here
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeZeros(w io.Writer, n int64) error {
	buf := make([]byte, 256<<10)
	for n > 0 {
		k, err := w.Write(buf[:min(n, int64(len(buf)))])
		if err != nil {
			return err
		}
		n -= int64(k)
	}
	return nil
}

// Unwrap returns the filesystem below.
func (g *diskGuard) Unwrap() vfs.FS { return g.FS }

func (g *diskGuard) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	var f vfs.File
	err := g.try("create", name, func() (err error) { f, err = g.FS.Create(name, c); return err })
	return g.wrapNew(f, name), err
}

func (g *diskGuard) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	var f vfs.File
	err := g.try("open", name, func() (err error) { f, err = g.FS.OpenReadWrite(name, c, opts...); return err })
	return g.wrap(f, name), err
}

func (g *diskGuard) ReuseForWrite(oldname, newname string, c vfs.DiskWriteCategory) (vfs.File, error) {
	var f vfs.File
	err := g.try("reuse", newname, func() (err error) { f, err = g.FS.ReuseForWrite(oldname, newname, c); return err })
	return g.wrap(f, newname), err
}

func (g *diskGuard) Link(oldname, newname string) error {
	return g.try("link", newname, func() error { return g.FS.Link(oldname, newname) })
}

func (g *diskGuard) Rename(oldname, newname string) error {
	return g.try("rename", newname, func() error { return g.FS.Rename(oldname, newname) })
}

func (g *diskGuard) MkdirAll(dir string, perm os.FileMode) error {
	return g.try("mkdir", dir, func() error { return g.FS.MkdirAll(dir, perm) })
}

func (g *diskGuard) wrap(f vfs.File, name string) vfs.File {
	if f == nil {
		return nil
	}
	return &guardFile{File: f, g: g, name: name}
}

// guardFile is a file of the store: its writes go through the guard.
type guardFile struct {
	vfs.File
	g    *diskGuard
	name string
}

// Write and WriteAt leave the guard out of their common path (no closure).
func (f *guardFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	if err == nil || !isNoSpace(err) {
		return n, err
	}
	err = f.g.do("write", f.name, err, func() error {
		k, err := f.File.Write(p[n:])
		n += k
		return err
	})
	return n, err
}

func (f *guardFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	if err == nil || !isNoSpace(err) {
		return n, err
	}
	err = f.g.do("write", f.name, err, func() error {
		k, err := f.File.WriteAt(p[n:], off+int64(n))
		n += k
		return err
	})
	return n, err
}

// Preallocate is advice: without space the writes that follow find out.
func (f *guardFile) Preallocate(off, n int64) error {
	if err := f.File.Preallocate(off, n); err != nil && !isNoSpace(err) {
		return err
	}
	return nil
}

// refuse counts a write the DB refused, and asks for a probe: the write's
// client may well have freed space.
func (g *diskGuard) refuse() {
	g.refused.Add(1)
	g.kick()
}
