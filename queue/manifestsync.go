package queue

import (
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// A power cut while Pebble (v2.1.7) switches to a new MANIFEST could leave
// a store that does not open ("could not open manifest file ...: file does
// not exist"). Pebble creates the new MANIFEST and syncs its data, then
// creates the marker file that names it, and only then syncs the directory,
// once for both entries: a filesystem that persists directory entries in any
// order may keep the marker without the MANIFEST (cockroachdb/pebble#5825,
// fixed by #5915 on Pebble's release branches, in no v2 release as of
// v2.1.7). Pebble writes a new MANIFEST at every Open, and when the current
// one grows past its limit. So the store's filesystem syncs a new
// MANIFEST's directory after the file's first sync, before Pebble creates
// the marker. Found by the power-loss test (internal/powerloss).

// manifestFile is a new MANIFEST: its first sync also syncs its directory.
type manifestFile struct {
	vfs.File
	fs      vfs.FS
	dir     string
	entered atomic.Bool // the directory entry is synced
}

// wrapNew wraps a file the store creates (see guardFile), and a MANIFEST
// in a manifestFile.
func (g *diskGuard) wrapNew(f vfs.File, name string) vfs.File {
	f = g.wrap(f, name)
	if f == nil || !strings.HasPrefix(g.FS.PathBase(name), "MANIFEST-") {
		return f
	}
	return &manifestFile{File: f, fs: g.FS, dir: g.FS.PathDir(name)}
}

func (f *manifestFile) Sync() error {
	if err := f.File.Sync(); err != nil {
		return err
	}
	return f.syncEntry()
}

func (f *manifestFile) SyncData() error {
	if err := f.File.SyncData(); err != nil {
		return err
	}
	return f.syncEntry()
}

func (f *manifestFile) syncEntry() error {
	if f.entered.Load() {
		return nil
	}
	d, err := f.fs.OpenDir(f.dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		f.entered.Store(true)
	}
	return err
}
