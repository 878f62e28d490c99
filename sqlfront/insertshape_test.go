package sqlfront

import (
	"context"
	"reflect"
	"testing"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
)

var shapeSeeds = []string{
	"INSERT INTO q4mbench (id, ts, payload) VALUES (12, 1763800000000000, 'xxxxxxxx')",
	"insert into `q` values (1, 'a'), (2, NULL), (-3, 'it''s'), (4, 'a\\'b\\\\c\\%d\\_e\\n\\0\\Z\\q')",
	"INSERT INTO q(v1,v2) VALUES(1+2,'x');",
	"INSERT IGNORE INTO test.q (v1) VALUES (9223372036854775807)",
	"INSERT INTO q VALUES (9223372036854775808, 'big')",
	"INSERT INTO q VALUES (1.5, 'dec')",
	"INSERT INTO q VALUES (1e3, 'float')",
	"INSERT INTO q VALUES (0x41, x'41')",
	"INSERT INTO q VALUES (1, _utf8mb4'x')",
	"INSERT INTO q VALUES (1, 'a' 'b')",
	"INSERT INTO q VALUES (1, \"dq\")",
	"INSERT INTO q /* c */ VALUES (1, 'x')",
	"INSERT INTO q VALUES (1, 'x') -- c",
	"INSERT INTO q SET v1 = 1, v2 = 'x'",
	"INSERT INTO q VALUES (1, 'x') ON DUPLICATE KEY UPDATE v1 = 2",
	"INSERT INTO q SELECT 1, 'x'",
	"INSERT INTO q VALUES (1, 'x'); INSERT INTO q VALUES (2, 'y')",
	"INSERT INTO q VALUES (?, 'x')",
	"INSERT INTO q VALUES (1, 'unterminated",
	"INSERT INTO q VALUES (t1.5, 'x')",
	"INSERT INTO q VALUES (1 2, 'x')",
	"INSERT INTO q VALUES (007, '日本語')",
	"  INSERT INTO q VALUES (- 5, 'x')",
	"INSERT INTO q VALUES (1*3, `v2`)",
	"INSERT q VALUES ()",
	"INSERTINTO q VALUES (1)",
	"REPLACE INTO q VALUES (1, 'x')",
}

// FuzzInsertShape: when the shape path takes a text, it means what the
// text means when parsed as it is: same table, columns and flags, and every
// value evaluates to the same Go value.
func FuzzInsertShape(f *testing.F) {
	for _, s := range shapeSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, sql string) {
		checkShape(t, sql)
	})
}

func checkShape(t *testing.T, sql string) {
	t.Helper()
	shape, args, ok := splitInsert(sql, nil, nil)
	if !ok {
		return
	}
	s := &Session{p: parser.New()}
	st := s.prepareShape(string(shape), len(args))
	if st == nil {
		return
	}
	orig, err := parser.New().ParseOneStmt(sql, "", "")
	if err != nil {
		t.Fatalf("%q: the shape %q parses, the text does not: %v", sql, shape, err)
	}
	a, okA := orig.(*ast.InsertStmt)
	b := st.node.(*ast.InsertStmt)
	if !okA {
		t.Fatalf("%q is a %T", sql, orig)
	}
	if restoreExpr(a.Table) != restoreExpr(b.Table) || len(a.Columns) != len(b.Columns) || a.IsReplace != b.IsReplace ||
		a.IgnoreErr != b.IgnoreErr || a.Setlist != b.Setlist || len(a.Lists) != len(b.Lists) {
		t.Fatalf("%q: the shape %q reads differently", sql, shape)
	}
	for i := range a.Columns {
		if a.Columns[i].Name.L != b.Columns[i].Name.L {
			t.Fatalf("%q: column %d: %s vs %s", sql, i, a.Columns[i].Name, b.Columns[i].Name)
		}
	}
	envA := &evalEnv{ctx: context.Background(), s: s, clause: "field list"}
	envB := &evalEnv{ctx: context.Background(), s: s, params: args, clause: "field list"}
	for r := range a.Lists {
		if len(a.Lists[r]) != len(b.Lists[r]) {
			t.Fatalf("%q: row %d has %d values, its shape %d", sql, r, len(a.Lists[r]), len(b.Lists[r]))
		}
		for c := range a.Lists[r] {
			if hasCall(a.Lists[r][c]) {
				continue // NOW() and friends differ from call to call
			}
			va, ea := envA.eval(a.Lists[r][c])
			vb, eb := envB.eval(b.Lists[r][c])
			if !reflect.DeepEqual(va, vb) || (ea == nil) != (eb == nil) {
				t.Fatalf("%q: row %d value %d: text %#v (%v), shape %#v (%v)", sql, r, c, va, ea, vb, eb)
			}
		}
	}
}

func hasCall(e ast.ExprNode) bool {
	v := &callFinder{}
	e.Accept(v)
	return v.found
}

type callFinder struct{ found bool }

func (v *callFinder) Enter(n ast.Node) (ast.Node, bool) {
	switch n.(type) {
	case *ast.FuncCallExpr, *ast.AggregateFuncExpr, *ast.VariableExpr:
		v.found = true
	}
	return n, v.found
}

func (v *callFinder) Leave(n ast.Node) (ast.Node, bool) { return n, true }

// The splitter takes the common INSERTs and refuses what it cannot read
// exactly.
func TestSplitInsert(t *testing.T) {
	for _, tc := range []struct {
		sql   string
		shape string
		args  []any
	}{
		{"INSERT INTO q4mbench (id, ts, payload) VALUES (12, 17, 'xx')", "INSERT INTO q4mbench (id, ts, payload) VALUES (?, ?, ?)", []any{int64(12), int64(17), "xx"}},
		{"insert into `q` values (-3, 'it''s'), (4, 'a\\'b\\%\\n')", "insert into `q` values (-?, ?), (?, ?)", []any{int64(3), "it's", int64(4), "a'b\\%\n"}},
		{"INSERT INTO q VALUES (NULL, '')", "INSERT INTO q VALUES (NULL, ?)", []any{""}},
	} {
		shape, args, ok := splitInsert(tc.sql, nil, nil)
		if !ok || string(shape) != tc.shape || !reflect.DeepEqual(args, tc.args) {
			t.Errorf("%q: %q %#v %v", tc.sql, shape, args, ok)
		}
	}
	for _, sql := range shapeSeeds[4:13] { // big, decimal, float, hex, introducer, adjacent, "x", comments
		if _, _, ok := splitInsert(sql, nil, nil); ok {
			t.Errorf("%q was split", sql)
		}
	}
	for _, sql := range shapeSeeds {
		checkShape(t, sql)
	}
}

// The shape path through a session: values land as written, errors are the
// text's own, and a cached shape serves the next INSERT.
func TestInsertShapeSession(t *testing.T) {
	e := newEngineFor(t, newEngineLogger())
	s := e.NewSession(1, "root", "127.0.0.1")
	defer s.Close()
	ctx := context.Background()
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS test", "USE test",
		"CREATE TABLE sq (a INT NOT NULL, b VARCHAR(4)) ENGINE=queue",
		"INSERT INTO sq VALUES (1, 'ab'), (-2, 'c\\'d')",
		"INSERT INTO sq VALUES (3, 'x')",
	} {
		if _, err := s.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if len(s.shapes) != 2 {
		t.Errorf("%d shapes cached, want 2", len(s.shapes))
	}
	for _, q := range []string{
		"INSERT INTO sq VALUES (4, 'toolong')", "INSERT INTO sq VALUES (NULL, 'x')", "INSERT INTO sq VALUES (5)",
		"INSERT INTO sq VALUES ('abc', 'x')", "INSERT INTO nosuch VALUES (1, 'x')", "INSERT INTO sq VALUES (1, 'x') garbage 5",
		"INSERT INTO sq (a, a) VALUES (1, 2)", "INSERT INTO sq (c) VALUES (1)",
	} {
		_, err := s.Exec(ctx, q)
		// The same text parsed as it is, without the shape path:
		var want error
		if st, perr := s.parse(q); perr != nil {
			want = perr
		} else {
			_, want = s.execStmt(ctx, st, nil)
		}
		if err == nil || want == nil || err.Error() != want.Error() {
			t.Errorf("%s: %v, parsed as it is: %v", q, err, want)
		}
	}
	r, err := s.Exec(ctx, "SELECT a, b FROM sq")
	if err != nil {
		t.Fatal(err)
	}
	if got := len(r.Rows); got != 3 {
		t.Fatalf("%d rows: %v", got, r.Rows)
	}
}
