package queue

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestCatalog covers database and table creation, lookup and the errors of
// the catalog calls.
func TestCatalog(t *testing.T) {
	db := newDB(t)
	if got := db.Databases(); !slices.Equal(got, []string{testDB}) {
		t.Fatalf("Databases = %v, want [%s]", got, testDB)
	}
	createTable(t, db, "b")
	createTable(t, db, "a")
	if err := db.CreateDatabase("other"); err != nil {
		t.Fatal(err)
	}

	errs := []struct {
		name string
		err  error
		want error
	}{
		{"CreateDatabase existing", db.CreateDatabase(testDB), ErrDatabaseExists},
		{"CreateTable existing", db.CreateTable(testDB, "a", nil), ErrTableExists},
		{"CreateTable in missing database", db.CreateTable("nodb", "a", nil), ErrNoSuchDatabase},
		{"Table missing", func() error { _, err := db.Table(testDB, "zz"); return err }(), ErrNoSuchTable},
		{"Table in missing database", func() error { _, err := db.Table("nodb", "a"); return err }(), ErrNoSuchTable},
		{"Table in another database", func() error { _, err := db.Table("other", "a"); return err }(), ErrNoSuchTable},
		{"Tables of missing database", func() error { _, err := db.Tables("nodb"); return err }(), ErrNoSuchDatabase},
		{"DropTable missing", db.DropTable(testDB, "zz"), ErrNoSuchTable},
		{"TruncateTable missing", db.TruncateTable(testDB, "zz"), ErrNoSuchTable},
		{"DropDatabase missing", func() error { _, err := db.DropDatabase("nodb"); return err }(), ErrNoSuchDatabase},
	}
	for _, e := range errs {
		if !errors.Is(e.err, e.want) {
			t.Errorf("%s: err = %v, want %v", e.name, e.err, e.want)
		}
	}

	if got := db.Databases(); !slices.Equal(got, []string{"other", testDB}) {
		t.Errorf("Databases = %v", got)
	}
	if got, err := db.Tables(testDB); err != nil || !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Tables = %v, %v; want [a b]", got, err)
	}
	h := lookup(t, db, "a")
	if h.Name() != "a" || h.Database() != testDB || !bytes.Equal(h.Meta(), []byte("meta:a")) {
		t.Errorf("handle = %s.%s meta %q", h.Database(), h.Name(), h.Meta())
	}

	insert(t, db, h, "x")
	n, err := db.DropDatabase(testDB)
	if err != nil || n != 2 {
		t.Fatalf("DropDatabase = %d, %v; want 2, nil", n, err)
	}
	if db.HasDatabase(testDB) {
		t.Error("database still there after DropDatabase")
	}
	if _, err := db.Table(testDB, "a"); !errors.Is(err, ErrNoSuchTable) {
		t.Errorf("Table after DropDatabase = %v", err)
	}
	if _, err := db.Insert(h, [][]byte{[]byte("y")}); !errors.Is(err, ErrNoSuchTable) {
		t.Errorf("Insert through a handle of a dropped database = %v, want ErrNoSuchTable", err)
	}
	if c := db.Count(h); c != 0 {
		t.Errorf("Count of a dropped table = %d", c)
	}
}

// TestWaitMissingTable: a Wait naming a missing table fails with
// ErrNoSuchTable, leaves owner mode, and still consumes the previous row.
func TestWaitMissingTable(t *testing.T) {
	tests := []struct {
		name string
		subs []Sub
	}{
		{"missing table", subs("nope")},
		{"missing database", []Sub{{Database: "nodb", Table: "q"}}},
		{"missing after an empty table", []Sub{{Database: testDB, Table: "empty"}, {Database: testDB, Table: "nope"}}},
		{"missing before a table with rows", []Sub{{Database: testDB, Table: "nope"}, {Database: testDB, Table: "q"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := createTable(t, db, "q")
			createTable(t, db, "empty")
			insert(t, db, h, "r1", "r2")
			o := db.NewOwner()
			mustWait(t, o, subs("q"), 0) // owns 1
			idx, err := o.Wait(t.Context(), tc.subs, time.Second)
			if idx != 0 || !errors.Is(err, ErrNoSuchTable) {
				t.Fatalf("Wait = %d, %v; want 0, ErrNoSuchTable", idx, err)
			}
			if o.InOwnerMode() {
				t.Error("owner mode after a failed Wait")
			}
			// Row 1 was consumed, row 2 was not taken.
			checkRows(t, "non-owner scan", scan(t, o, h), row{2, "r2"})
			if n := db.Count(h); n != 1 {
				t.Errorf("Count = %d, want 1", n)
			}
		})
	}
}

// TestDropTableWhileOwned: the owner of a row of a dropped table keeps a
// harmless handle.
func TestDropTableWhileOwned(t *testing.T) {
	tests := []struct {
		name   string
		finish func(t *testing.T, o *Owner) error
	}{
		{"End", func(_ *testing.T, o *Owner) error { return o.End() }},
		{"Wait", func(t *testing.T, o *Owner) error {
			// Consumes the dropped row, takes keep's row 1, gives it back.
			if idx, err := o.Wait(t.Context(), subs("keep"), 0); idx != 1 || err != nil {
				return fmt.Errorf("Wait = %d, %v", idx, err)
			}
			_, err := o.Abort()
			return err
		}},
		{"Abort", func(_ *testing.T, o *Owner) error {
			if released, err := o.Abort(); err != nil || released {
				return errors.New("Abort of a dropped row reported a release")
			}
			return nil
		}},
		{"Close", func(_ *testing.T, o *Owner) error {
			if o.Close() {
				return errors.New("Close of a dropped row reported a release")
			}
			return nil
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			h := createTable(t, db, "q")
			keep := createTable(t, db, "keep")
			insert(t, db, h, "r1", "r2")
			insert(t, db, keep, "k1", "k2")
			o := db.NewOwner()
			mustWait(t, o, subs("q"), 0) // owns q row 1
			if err := db.DropTable(testDB, "q"); err != nil {
				t.Fatalf("DropTable: %v", err)
			}
			if _, err := db.Table(testDB, "q"); !errors.Is(err, ErrNoSuchTable) {
				t.Errorf("Table after drop = %v, want ErrNoSuchTable", err)
			}
			if got, _ := db.Tables(testDB); !slices.Equal(got, []string{"keep"}) {
				t.Errorf("Tables after drop = %v", got)
			}
			if err := tc.finish(t, o); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			// The old handle refers to nothing.
			checkRows(t, "scan through the old handle", scan(t, db.NewOwner(), h))
			if n := db.Count(h); n != 0 {
				t.Errorf("Count through the old handle = %d", n)
			}
			if _, err := db.Insert(h, [][]byte{[]byte("x")}); !errors.Is(err, ErrNoSuchTable) {
				t.Errorf("Insert through the old handle = %v, want ErrNoSuchTable", err)
			}
			// The other table is untouched.
			if n := db.Count(keep); n != 2 {
				t.Errorf("Count(keep) = %d, want 2", n)
			}
			checkRows(t, "keep", scan(t, db.NewOwner(), keep), row{1, "k1"}, row{2, "k2"})
			// A table created again under the name starts empty, at rowid 1.
			h2 := createTable(t, db, "q")
			if n := db.Count(h2); n != 0 {
				t.Errorf("Count of the recreated table = %d", n)
			}
			if first := insert(t, db, h2, "new"); first != 1 {
				t.Errorf("first rowid of the recreated table = %d, want 1", first)
			}
			checkRows(t, "recreated", scan(t, db.NewOwner(), h2), row{1, "new"})
		})
	}
}

// TestDropTableWhileWaiting: a waiter on a dropped table keeps waiting until
// its timeout, even when a table of the same name is created and filled.
func TestDropTableWhileWaiting(t *testing.T) {
	const timeout = 100 * time.Millisecond
	db := newDB(t)
	h := createTable(t, db, "q")
	o := db.NewOwner()
	start := time.Now()
	res := goWait(t.Context(), o, subs("q"), timeout)
	awaitWaiters(t, db, h, 1)
	if err := db.DropTable(testDB, "q"); err != nil {
		t.Fatal(err)
	}
	h2 := createTable(t, db, "q")
	insert(t, db, h2, "new")

	r := receive(t, res)
	if r.idx != 0 || r.err != nil {
		t.Fatalf("Wait = %d, %v; want 0, nil", r.idx, r.err)
	}
	if d := time.Since(start); d < timeout {
		t.Errorf("Wait returned after %v, before its timeout", d)
	}
	if !o.InOwnerMode() {
		t.Error("not in owner mode after the timeout")
	}
	if _, ok, _ := o.RowID(); ok {
		t.Error("owner got a row")
	}
	if n := len(waitersOf(db, h)); n != 0 {
		t.Errorf("old table still has %d waiters", n)
	}
	// The new table's row is still free.
	checkRows(t, "recreated", scan(t, db.NewOwner(), h2), row{1, "new"})
}

// TestTruncateTable: rowids restart at 1 and owners of rows of the old
// incarnation cannot affect the new one.
func TestTruncateTable(t *testing.T) {
	tests := []struct {
		name   string
		finish func(t *testing.T, o *Owner)
	}{
		{"End", func(t *testing.T, o *Owner) {
			if err := o.End(); err != nil {
				t.Fatal(err)
			}
		}},
		{"Abort", func(t *testing.T, o *Owner) {
			if released, err := o.Abort(); err != nil || released {
				t.Fatalf("Abort = %v, %v; want false, nil", released, err)
			}
		}},
		{"DeleteRows", func(t *testing.T, o *Owner) {
			// Through the new handle: the owned row is not there.
			if n, err := o.DeleteRows(lookup(t, o.db, "q"), []uint64{1, 2}); n != 0 || err != nil {
				t.Fatalf("DeleteRows = %d, %v; want 0, nil", n, err)
			}
		}},
		{"Wait", func(t *testing.T, o *Owner) {
			// Consumes the old row, then takes new row 1.
			if idx := mustWait(t, o, subs("q"), 0); idx != 1 {
				t.Fatalf("Wait = %d", idx)
			}
			if id := rowID(t, o); id != 1 {
				t.Fatalf("Wait got row %d", id)
			}
			checkRows(t, "owner scan", scan(t, o, lookup(t, o.db, "q")), row{1, "n1"})
			if _, err := o.Abort(); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := newDB(t)
			old := createTable(t, db, "q")
			insert(t, db, old, "o1", "o2", "o3")
			a, b := db.NewOwner(), db.NewOwner()
			mustWait(t, a, subs("q"), 0) // owns old 1
			mustWait(t, b, subs("q"), 0) // owns old 2
			if err := db.TruncateTable(testDB, "q"); err != nil {
				t.Fatalf("TruncateTable: %v", err)
			}
			h := lookup(t, db, "q")
			if n := db.Count(h); n != 0 {
				t.Fatalf("Count after truncate = %d", n)
			}
			if !bytes.Equal(h.Meta(), []byte("meta:q")) {
				t.Errorf("meta after truncate = %q", h.Meta())
			}
			if first := insert(t, db, h, "n1", "n2"); first != 1 {
				t.Fatalf("first rowid after truncate = %d, want 1", first)
			}
			if a.OwnsRowIn(h) {
				t.Error("old owner owns a row of the new incarnation")
			}
			checkRows(t, "old owner scans the new table", scan(t, a, h))
			tc.finish(t, a)
			b.Close()

			if n := db.Count(h); n != 2 {
				t.Errorf("Count = %d, want 2", n)
			}
			checkRows(t, "new rows", scan(t, db.NewOwner(), h), row{1, "n1"}, row{2, "n2"})
			checkRows(t, "old handle", scan(t, db.NewOwner(), old))
			if _, err := db.Insert(old, [][]byte{[]byte("x")}); !errors.Is(err, ErrNoSuchTable) {
				t.Errorf("Insert through the old handle = %v, want ErrNoSuchTable", err)
			}
			c := db.NewOwner()
			mustWait(t, c, subs("q"), 0)
			mustWait(t, c, subs("q"), 0)
			if id := rowID(t, c); id != 2 {
				t.Errorf("second Wait got row %d, want 2", id)
			}
			if idx := mustWait(t, c, subs("q"), 0); idx != 0 {
				t.Errorf("third Wait = %d, want 0", idx)
			}
		})
	}
}

// TestTruncateWhileWaiting: waiters move to the new incarnation.
func TestTruncateWhileWaiting(t *testing.T) {
	db := newDB(t)
	old := createTable(t, db, "q")
	o := db.NewOwner()
	res := goWait(t.Context(), o, subs("q"), 10*time.Second)
	awaitWaiters(t, db, old, 1)
	if err := db.ReplaceTable(testDB, "q", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	h := lookup(t, db, "q")
	if string(h.Meta()) != "v2" {
		t.Errorf("meta = %q, want v2", h.Meta())
	}
	awaitWaiters(t, db, h, 1)
	notReturned(t, res, "after truncate")
	insert(t, db, h, "n1")
	if r := receive(t, res); r.idx != 1 || r.err != nil {
		t.Fatalf("Wait = %d, %v; want 1, nil", r.idx, r.err)
	}
	checkRows(t, "owner scan", scan(t, o, h), row{1, "n1"})
}
