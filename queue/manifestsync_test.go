package queue

import (
	"strings"
	"sync"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
)

// TestManifestEntrySyncedBeforeMarker: whenever Pebble creates the marker
// file naming a new MANIFEST, a power cut at that moment (only what was
// synced survives) leaves that MANIFEST in the directory. Without the
// directory sync of manifestsync.go the new MANIFEST's entry is not synced
// yet, and a filesystem that persists entries in any order may keep the
// marker without it: the store then fails to open (found by
// internal/powerloss as "could not open manifest file").
func TestManifestEntrySyncedBeforeMarker(t *testing.T) {
	mem := vfs.NewCrashableMem()
	var (
		mu      sync.Mutex
		checked int
		bad     []string
	)
	inj := errorfs.InjectorFunc(func(op errorfs.Op) error {
		base := mem.PathBase(op.Path)
		manifest, ok := strings.CutPrefix(base, "marker.manifest.")
		if op.Kind != errorfs.OpCreate || !ok {
			return nil
		}
		manifest = manifest[strings.IndexByte(manifest, '.')+1:] // after the marker's iteration
		cut := mem.CrashClone(vfs.CrashCloneCfg{})
		_, err := cut.Stat(cut.PathJoin(mem.PathDir(op.Path), manifest))
		mu.Lock()
		defer mu.Unlock()
		checked++
		if err != nil {
			bad = append(bad, base+": "+err.Error())
		}
		return nil
	})
	fs := errorfs.Wrap(mem, inj)
	for range 3 { // creation, then two reopens: each writes a new MANIFEST
		db, err := Open("db", testOptions(fs))
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if checked < 3 {
		t.Fatalf("saw %d MANIFEST markers created, want at least 3", checked)
	}
	for _, b := range bad {
		t.Errorf("marker created while its MANIFEST's directory entry was not synced: %s", b)
	}
}
