package sqlstore_test

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/q4mproxy/q4mproxy/internal/mariadbtest"
	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/queue/queuetest"
	"github.com/q4mproxy/q4mproxy/queue/sqlstore"
)

func TestMain(m *testing.M) {
	code := m.Run()
	mariadbtest.Stop()
	os.Exit(code)
}

var storeSeq atomic.Int64

// open opens a store of its own (a fresh upstream database) on the test
// binary's MariaDB.
func open(t *testing.T) (*sqlstore.Store, string) {
	t.Helper()
	m := mariadbtest.Start(t)
	name := fmt.Sprintf("q4mt_%d_%d", os.Getpid(), storeSeq.Add(1))
	s, err := sqlstore.Open(m.DSN("", ""), &sqlstore.Options{
		Database: name, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, name
}

// TestStoreContract runs the behaviour suite against the upstream store.
func TestStoreContract(t *testing.T) {
	queuetest.Run(t, queuetest.Caps{}, func(t *testing.T) queue.Store {
		s, _ := open(t)
		return s
	})
}

// TestMigrateOwner: a store written by a q4mproxy before ownership was
// data (q4m_rows without its owner column) is opened: the column is added,
// its rows are free, and served.
func TestMigrateOwner(t *testing.T) {
	m := mariadbtest.Start(t)
	name := fmt.Sprintf("q4mt_%d_%d", os.Getpid(), storeSeq.Add(1))
	root, err := sql.Open("mysql", m.DSN("", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	for _, q := range []string{
		"CREATE DATABASE " + name,
		"CREATE TABLE " + name + ".q4m_rows (tid BIGINT UNSIGNED NOT NULL, rowid BIGINT UNSIGNED NOT NULL, payload LONGBLOB NOT NULL, PRIMARY KEY (tid, rowid)) ENGINE=InnoDB",
	} {
		if _, err := root.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	s, err := sqlstore.Open(m.DSN("", ""), &sqlstore.Options{Database: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatalf("Open of an earlier layout: %v", err)
	}
	defer s.Close()
	if err := s.CreateDatabase("qtest"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateTable("qtest", "q", nil); err != nil {
		t.Fatal(err)
	}
	h, err := s.Table("qtest", "q")
	if err != nil {
		t.Fatal(err)
	}
	// A row as the earlier layout wrote it (no owner).
	if _, err := root.Exec("INSERT INTO "+name+".q4m_rows (tid, rowid, payload) VALUES (?, 1, 'old')", h.ID()); err != nil {
		t.Fatal(err)
	}
	c := s.NewConn()
	idx, err := c.Wait(context.Background(), []queue.Sub{{Database: "qtest", Table: "q"}}, 0)
	if err != nil || idx != 1 {
		t.Fatalf("Wait for the earlier layout's row = %d, %v", idx, err)
	}
	if err := c.End(); err != nil {
		t.Fatal(err)
	}
	if n := s.Count(h); n != 0 {
		t.Fatalf("Count after consuming it = %d", n)
	}
}

// TestNodeLockLost: a node whose lock connection is killed loses the rows
// it owned: another node gives them back and delivers them, and the first
// node's consume of its row fails instead of consuming it.
func TestNodeLockLost(t *testing.T) {
	a, name := open(t)
	defer a.Close()
	if err := a.CreateDatabase("qtest"); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateTable("qtest", "q", nil); err != nil {
		t.Fatal(err)
	}
	h, err := a.Table("qtest", "q")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Insert(h, [][]byte{[]byte("x")}); err != nil {
		t.Fatal(err)
	}
	sub := []queue.Sub{{Database: "qtest", Table: "q"}}
	ca := a.NewConn()
	if idx, err := ca.Wait(context.Background(), sub, 0); err != nil || idx != 1 {
		t.Fatalf("Wait on node a = %d, %v", idx, err)
	}
	m := mariadbtest.Start(t)
	root, err := sql.Open("mysql", m.DSN("", ""))
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	// Node a's lock: q4m_node:<first 8 bytes of sha256(database), hex>:<id>.
	sum := sha256.Sum256([]byte(name))
	var holder int64
	err = root.QueryRow("SELECT IS_USED_LOCK(CONCAT(?, id)) FROM "+name+".q4m_nodes", "q4m_node:"+hex.EncodeToString(sum[:8])+":").Scan(&holder)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := root.Exec(fmt.Sprintf("KILL %d", holder)); err != nil {
		t.Fatal(err)
	}
	b, err := sqlstore.Open(m.DSN("", ""), &sqlstore.Options{Database: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	cb := b.NewConn()
	if idx, err := cb.Wait(context.Background(), sub, 30*time.Second); err != nil || idx != 1 {
		t.Fatalf("Wait on node b for the row node a lost = %d, %v", idx, err)
	}
	if err := ca.End(); !errors.Is(err, queue.ErrStorage) {
		t.Fatalf("node a's consume of the row it lost: %v, want a storage error", err)
	}
	if err := cb.End(); err != nil {
		t.Fatal(err)
	}
	if n := b.Count(h); n != 0 {
		t.Fatalf("Count = %d, want 0", n)
	}
	// Node a goes on under a new id.
	if _, err := a.Insert(h, [][]byte{[]byte("y")}); err != nil {
		t.Fatal(err)
	}
	if idx, err := ca.Wait(context.Background(), sub, 30*time.Second); err != nil || idx != 1 {
		t.Fatalf("Wait on node a after it registered again = %d, %v", idx, err)
	}
	if err := ca.End(); err != nil {
		t.Fatal(err)
	}
}
