package queue

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// reopen closes db and opens the store again on the same filesystem.
func reopen(t *testing.T, db *DB, fs vfs.FS) *DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	return openDB(t, fs)
}

// TestRestart: what survives a Close and re-Open of the store.
func TestRestart(t *testing.T) {
	tests := []struct {
		name string
		// before runs on the first incarnation of the store, whose test
		// database holds table q with rows 1..5 ("r1".."r5").
		before func(t *testing.T, db *DB)
		// wantRows are the free rows of q after the restart.
		wantRows []row
		// wantNext is the rowid the next insert into q gets.
		wantNext uint64
	}{
		{
			name:     "nothing consumed",
			before:   func(*testing.T, *DB) {},
			wantRows: []row{{1, "r1"}, {2, "r2"}, {3, "r3"}, {4, "r4"}, {5, "r5"}},
			wantNext: 6,
		},
		{
			name: "some consumed, one owned, one aborted",
			before: func(t *testing.T, db *DB) {
				a, b, c := db.NewOwner(), db.NewOwner(), db.NewOwner()
				mustWait(t, a, subs("q"), 0) // 1
				mustWait(t, a, subs("q"), 0) // consumes 1, owns 2
				if err := a.End(); err != nil {
					t.Fatal(err)
				}
				mustWait(t, b, subs("q"), 0) // owns 3, never finished
				mustWait(t, c, subs("q"), 0) // owns 4
				if _, err := c.Abort(); err != nil {
					t.Fatal(err)
				}
			},
			wantRows: []row{{3, "r3"}, {4, "r4"}, {5, "r5"}},
			wantNext: 6,
		},
		{
			name: "all consumed",
			before: func(t *testing.T, db *DB) {
				o := db.NewOwner()
				for range 5 {
					mustWait(t, o, subs("q"), 0)
				}
				if err := o.End(); err != nil {
					t.Fatal(err)
				}
			},
			wantNext: 6,
		},
		{
			name: "deleted rows",
			before: func(t *testing.T, db *DB) {
				o := db.NewOwner()
				if n, err := o.DeleteRows(lookup(t, db, "q"), []uint64{2, 5}); n != 2 || err != nil {
					t.Fatalf("DeleteRows = %d, %v", n, err)
				}
				mustWait(t, o, subs("q"), 0) // owns 1
				if n, err := o.DeleteRows(lookup(t, db, "q"), []uint64{1}); n != 1 || err != nil {
					t.Fatalf("DeleteRows = %d, %v", n, err)
				}
			},
			wantRows: []row{{3, "r3"}, {4, "r4"}},
			wantNext: 6,
		},
		{
			name: "more rows inserted, head consumed",
			before: func(t *testing.T, db *DB) {
				insert(t, db, lookup(t, db, "q"), "r6")
				o := db.NewOwner()
				mustWait(t, o, subs("q"), 0)
				if err := o.End(); err != nil {
					t.Fatal(err)
				}
			},
			wantRows: []row{{2, "r2"}, {3, "r3"}, {4, "r4"}, {5, "r5"}, {6, "r6"}},
			wantNext: 7,
		},
		{
			name: "truncated",
			before: func(t *testing.T, db *DB) {
				if err := db.TruncateTable(testDB, "q"); err != nil {
					t.Fatal(err)
				}
				insert(t, db, lookup(t, db, "q"), "n1", "n2")
			},
			wantRows: []row{{1, "n1"}, {2, "n2"}},
			wantNext: 3,
		},
		{
			name: "dropped and recreated",
			before: func(t *testing.T, db *DB) {
				if err := db.DropTable(testDB, "q"); err != nil {
					t.Fatal(err)
				}
				createTable(t, db, "q")
			},
			wantNext: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := vfs.NewMem()
			db := openDB(t, fs)
			h := createTable(t, db, "q")
			insert(t, db, h, "r1", "r2", "r3", "r4", "r5")
			tc.before(t, db)

			db = reopen(t, db, fs)
			h = lookup(t, db, "q")
			checkRows(t, "rows after restart", scan(t, db.NewOwner(), h), tc.wantRows...)
			if n := db.Count(h); n != len(tc.wantRows) {
				t.Errorf("Count after restart = %d, want %d", n, len(tc.wantRows))
			}
			// Consumers get the rows back in order.
			o := db.NewOwner()
			for _, want := range tc.wantRows {
				if idx := mustWait(t, o, subs("q"), 0); idx != 1 {
					t.Fatalf("Wait = %d, want row %d", idx, want.id)
				}
				checkRows(t, "owned row", scan(t, o, h), want)
			}
			if idx := mustWait(t, o, subs("q"), 0); idx != 0 {
				t.Errorf("Wait after the last row = %d, want 0", idx)
			}
			if first := insert(t, db, h, "next"); first != tc.wantNext {
				t.Errorf("next rowid = %d, want %d", first, tc.wantNext)
			}
			// And once more: the sequence survives a second restart, even
			// with every row consumed.
			if idx := mustWait(t, o, subs("q"), 0); idx != 1 {
				t.Fatalf("Wait = %d", idx)
			}
			if err := o.End(); err != nil {
				t.Fatal(err)
			}
			db = reopen(t, db, fs)
			h = lookup(t, db, "q")
			if n := db.Count(h); n != 0 {
				t.Errorf("Count after second restart = %d, want 0", n)
			}
			if first := insert(t, db, h, "again"); first != tc.wantNext+1 {
				t.Errorf("rowid after second restart = %d, want %d", first, tc.wantNext+1)
			}
		})
	}
}

// TestRestartCatalog: databases and tables (with their metadata) survive a
// restart; initial databases are created only with the store.
func TestRestartCatalog(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	if err := db.CreateDatabase("app"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTable("app", "jobs", []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTable("app", "gone", nil); err != nil {
		t.Fatal(err)
	}
	if err := db.DropTable("app", "gone"); err != nil {
		t.Fatal(err)
	}
	if err := db.CreateTable("app", "swapped", []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := db.ReplaceTable("app", "swapped", []byte("v2")); err != nil {
		t.Fatal(err)
	}
	createTable(t, db, "inTest")
	if _, err := db.DropDatabase(testDB); err != nil {
		t.Fatal(err)
	}

	db = reopen(t, db, fs)
	if got := db.Databases(); !slices.Equal(got, []string{"app"}) {
		t.Errorf("Databases after restart = %v, want [app] (dropped initial database re-created?)", got)
	}
	if got, err := db.Tables("app"); err != nil || !slices.Equal(got, []string{"jobs", "swapped"}) {
		t.Errorf("Tables(app) = %v, %v; want [jobs swapped]", got, err)
	}
	metas := []struct {
		table string
		want  []byte
	}{
		{"jobs", []byte{0, 1, 2, 0xff}},
		{"swapped", []byte("v2")},
	}
	for _, m := range metas {
		h, err := db.Table("app", m.table)
		if err != nil {
			t.Errorf("Table(app, %s): %v", m.table, err)
			continue
		}
		if !bytes.Equal(h.Meta(), m.want) {
			t.Errorf("meta of %s = %q, want %q", m.table, h.Meta(), m.want)
		}
	}
	if _, err := db.Table(testDB, "inTest"); !errors.Is(err, ErrNoSuchTable) {
		t.Errorf("table of the dropped database = %v, want ErrNoSuchTable", err)
	}

	// Creating the database again gives an empty one, and it survives too.
	if err := db.CreateDatabase(testDB); err != nil {
		t.Fatal(err)
	}
	if got, err := db.Tables(testDB); err != nil || len(got) != 0 {
		t.Errorf("Tables of the re-created database = %v, %v", got, err)
	}
	db = reopen(t, db, fs)
	if got := db.Databases(); !slices.Equal(got, []string{"app", testDB}) {
		t.Errorf("Databases after second restart = %v", got)
	}
}

// TestRestartClosesOwners: rows owned when the store is closed are not
// consumed; owners of the closed store get ErrClosed.
func TestRestartClosesOwners(t *testing.T) {
	fs := vfs.NewMem()
	db := openDB(t, fs)
	h := createTable(t, db, "q")
	insert(t, db, h, "r1", "r2")
	o := db.NewOwner()
	mustWait(t, o, subs("q"), 0)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.End(); !errors.Is(err, ErrClosed) {
		t.Errorf("End after Close = %v, want ErrClosed", err)
	}
	db = openDB(t, fs)
	checkRows(t, "after restart", scan(t, db.NewOwner(), lookup(t, db, "q")), row{1, "r1"}, row{2, "r2"})
}
