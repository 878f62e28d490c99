package queue_test

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/q4mproxy/q4mproxy/queue"
)

func ExampleDB() {
	db, err := queue.Open("db", &queue.Options{
		FS:               vfs.NewMem(), // in memory; nil means the OS filesystem
		InitialDatabases: []string{"test"},
		Logger:           slog.New(slog.DiscardHandler),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	if err := db.CreateTable("test", "jobs", nil); err != nil {
		log.Fatal(err)
	}
	jobs, err := db.Table("test", "jobs")
	if err != nil {
		log.Fatal(err)
	}
	first, err := db.Insert(jobs, [][]byte{[]byte("resize a.png"), []byte("resize b.png")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first rowid:", first)

	// A consumer: Wait hands it the oldest row, End consumes it.
	o := db.NewOwner()
	idx, err := o.Wait(context.Background(), []queue.Sub{{Database: "test", Table: "jobs"}}, time.Second)
	if err != nil {
		log.Fatal(err)
	}
	_ = o.Scan(jobs, func(rowid uint64, payload []byte) bool {
		fmt.Printf("got sub %d, row %d: %s\n", idx, rowid, payload)
		return true
	})
	if err := o.End(); err != nil {
		log.Fatal(err)
	}
	fmt.Println("rows left:", db.Count(jobs))
	// Output:
	// first rowid: 1
	// got sub 1, row 1: resize a.png
	// rows left: 1
}
