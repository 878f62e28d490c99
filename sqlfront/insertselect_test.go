package sqlfront

import "testing"

// TestInsertSelectBind: a prepared INSERT ... SELECT's parameters become
// literals of its SELECT, the same whatever the upstream's sql_mode; a
// question mark in a string, identifier or comment is not a parameter.
func TestInsertSelectBind(t *testing.T) {
	for _, tc := range []struct {
		sel  string
		args []any
		want string
	}{
		{"SELECT a FROM t WHERE id > ?", []any{int64(5)}, "SELECT a FROM t WHERE id > 5"},
		{"SELECT a, ? FROM t WHERE b = ?", []any{nil, "it's"}, "SELECT a, NULL FROM t WHERE b = 'it''s'"},
		{"SELECT '?', `?`, \"?\" /* ? */ FROM t WHERE c = ? # ?\n", []any{uint64(18446744073709551615)},
			"SELECT '?', `?`, \"?\" /* ? */ FROM t WHERE c = 18446744073709551615 # ?\n"},
		{"SELECT a FROM t WHERE b = ? -- ?", []any{`a\b`}, "SELECT a FROM t WHERE b = X'615c62' -- ?"},
		{"SELECT a FROM t WHERE b = 'x\\'?' AND c = ?", []any{[]byte{0, 0xff}}, "SELECT a FROM t WHERE b = 'x\\'?' AND c = X'00ff'"},
		{"SELECT a-? FROM t", []any{int64(-1)}, "SELECT a- -1 FROM t"},
		{"SELECT ?", []any{1.5}, "SELECT 1.5e+00"},
	} {
		is := &InsertSelect{Select: tc.sel}
		got, err := is.Bind(tc.args)
		if err != nil {
			t.Errorf("Bind(%q, %v): %v", tc.sel, tc.args, err)
		} else if got.Select != tc.want {
			t.Errorf("Bind(%q, %v) = %q; want %q", tc.sel, tc.args, got.Select, tc.want)
		}
	}
	if _, err := (&InsertSelect{Select: "SELECT ?"}).Bind(nil); err == nil {
		t.Error("more markers than arguments: no error")
	}
	if _, err := (&InsertSelect{Select: "SELECT 1"}).Bind([]any{int64(1)}); err == nil {
		t.Error("an argument outside the SELECT: no error")
	}
}
