package queue_test

import (
	"log/slog"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/queue/queuetest"
)

// TestStoreContract runs the behaviour suite every backend must pass
// against the Pebble one.
func TestStoreContract(t *testing.T) {
	queuetest.Run(t, queuetest.Caps{}, func(t *testing.T) queue.Store {
		db, err := queue.Open("db", &queue.Options{FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return db
	})
}
