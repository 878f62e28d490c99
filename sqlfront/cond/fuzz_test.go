package cond_test

import (
	"errors"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/q4mproxy/q4mproxy/sqlfront/cond"
)

// fuzzColumns mixes plain, upper-case, keyword-named, prefix-sharing and
// invisible columns.
var fuzzColumns = []cond.Column{
	{Name: "a", Visible: true},
	{Name: "b", Visible: true},
	{Name: "Up", Visible: true},
	{Name: "v1", Visible: true},
	{Name: "v", Visible: true},
	{Name: "notx", Visible: true},
	{Name: "or", Visible: true},
	{Name: "null", Visible: true},
	{Name: "txt", Visible: false},
	{Name: "pow", Visible: true},
	{Name: "nullable", Visible: true},
}

// FuzzCompile checks that Compile never panics, that it returns either an
// *Expr or a *cond.Error, and that a compiled expression evaluates without
// panicking, reads only the columns it reports, and keeps its contracts, for
// extreme and pseudo-random column values.
func FuzzCompile(f *testing.F) {
	for _, src := range []string{
		"a=3",
		"a=3and v=20",
		"not (b and 1) or b is not false",
		"nota=3",
		"`v`=20 xor `up`=7",
		"2^3*2 + 1<<2+1",
		"a < v < 2",
		"v div 3 = v % 0",
		"010 + 08 + 0x1F",
		"pow(2,70) = pow(2,-1)",
		"-(~a) >> 64",
		"(a div 0) is null && b isnull",
		"a mod -1 | neg & 0xff",
		"`nullable` and `or` || `null`",
		"9223372036854775807 + 1",
		"(((a)))",
		"a=3 ",
		"not not a=3",
		"pow (2,1)",
		"`zzz`",
		"0 17 + 0x 1F",
		"a <= v >= b != notx",
	} {
		f.Add(src)
	}
	f.Fuzz(func(t *testing.T, src string) {
		e, err := cond.Compile(src, fuzzColumns)
		if err != nil {
			var ce *cond.Error
			if e != nil || !errors.As(err, &ce) {
				t.Fatalf("Compile(%q) = %v, %v; want nil, *cond.Error", src, e, err)
			}
			if ce.Offset < 0 || ce.Offset > len(src) {
				t.Fatalf("Compile(%q): offset %d out of range", src, ce.Offset)
			}
			return
		}
		if e.String() != src {
			t.Fatalf("String() = %q, want %q", e.String(), src)
		}
		cols := e.Columns()
		if !slices.IsSorted(cols) || len(slices.Compact(slices.Clone(cols))) != len(cols) {
			t.Fatalf("Compile(%q).Columns() = %v: not sorted and distinct", src, cols)
		}
		for _, c := range cols {
			if c < 0 || c >= len(fuzzColumns) || !fuzzColumns[c].Visible {
				t.Fatalf("Compile(%q).Columns() = %v: column %d is not usable", src, cols, c)
			}
		}

		h := fnv.New64a()
		h.Write([]byte(src))
		rng := rand.New(rand.NewPCG(h.Sum64(), 0))
		extremes := []int64{0, 1, -1, 2, 63, 64, math.MaxInt64, math.MinInt64}
		for round := range 16 {
			row := make([]int64, len(fuzzColumns))
			nulls := make([]bool, len(fuzzColumns))
			for i := range row {
				switch {
				case round == 0:
					nulls[i] = true
				case round <= len(extremes):
					row[i] = extremes[round-1]
				default:
					row[i] = rng.Int64() >> rng.IntN(64)
					if rng.IntN(2) == 0 {
						row[i] = -row[i]
					}
					nulls[i] = rng.IntN(4) == 0
				}
			}
			val := func(i int) (int64, bool) {
				if !slices.Contains(cols, i) {
					t.Fatalf("Compile(%q): Eval read column %d, Columns() = %v", src, i, cols)
				}
				return row[i], !nulls[i]
			}
			v, ok := e.Eval(val)
			if !ok && v != 0 {
				t.Fatalf("Eval(%q) = %d, false; a NULL must be 0", src, v)
			}
			if m := e.Match(val); m != (ok && v != 0) {
				t.Fatalf("Match(%q) = %v, Eval = %d, %v", src, m, v, ok)
			}
		}
	})
}
