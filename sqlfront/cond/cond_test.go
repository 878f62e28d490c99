package cond_test

import (
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/q4mproxy/q4mproxy/sqlfront/cond"
)

// result is what a case expects: a value, NULL, or a compile error.
type result struct {
	v    int64
	null bool
	err  bool
}

func val(v int64) result { return result{v: v} }

var (
	null = result{null: true}
	fail = result{err: true}
)

func (r result) String() string {
	switch {
	case r.err:
		return "compile error"
	case r.null:
		return "NULL"
	}
	return strconv.FormatInt(r.v, 10)
}

// cell is one column value of a test row; null means NULL.
type cell struct {
	name    string
	v       int64
	null    bool
	hidden  bool // not Visible
	ignored bool // not part of the row: Eval must not read it
}

type table []cell

func (tb table) columns() []cond.Column {
	cols := make([]cond.Column, len(tb))
	for i, c := range tb {
		cols[i] = cond.Column{Name: c.name, Visible: !c.hidden}
	}
	return cols
}

func (tb table) val(t *testing.T) func(int) (int64, bool) {
	return func(i int) (int64, bool) {
		if i < 0 || i >= len(tb) || tb[i].hidden {
			t.Fatalf("Eval read column %d", i)
		}
		if tb[i].null {
			return 12345, false // Eval must not pass the value of a NULL on
		}
		return tb[i].v, true
	}
}

// short names a subtest after its expression, shortened.
func short(src string) string {
	if len(src) > 40 {
		return src[:40] + "..."
	}
	return src
}

type testCase struct {
	src  string
	want result
}

func run(t *testing.T, tb table, cases []testCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(short(tc.src), func(t *testing.T) {
			e, err := cond.Compile(tc.src, tb.columns())
			if tc.want.err {
				if err == nil {
					v, ok := e.Eval(tb.val(t))
					t.Fatalf("Compile(%q) succeeded (value %d, %v), want an error", tc.src, v, ok)
				}
				var ce *cond.Error
				if !errors.As(err, &ce) || e != nil {
					t.Fatalf("Compile(%q) = %v, %v; want nil, *cond.Error", tc.src, e, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Compile(%q): %v", tc.src, err)
			}
			v, ok := e.Eval(tb.val(t))
			got := result{v: v, null: !ok}
			if got != tc.want {
				t.Fatalf("Eval(%q) = %v, want %v", tc.src, got, tc.want)
			}
			if m := e.Match(tb.val(t)); m != (ok && v != 0) {
				t.Fatalf("Match(%q) = %v, value %v", tc.src, m, got)
			}
			if e.String() != tc.src {
				t.Fatalf("String() = %q, want %q", e.String(), tc.src)
			}
		})
	}
}

// specTable has the columns used by the spec's table of observed results.
var specTable = table{
	{name: "a", v: 3},
	{name: "b", null: true},
	{name: "Up", v: 7},
	{name: "v1", v: 10},
	{name: "v", v: 20},
	{name: "notx", v: 5},
	{name: "neg", v: -8},
}

// TestSpecTable checks every row of "Parser results observed with the real
// parser" (q4m.md §3.6).
func TestSpecTable(t *testing.T) {
	run(t, specTable, []testCase{
		{"a=3", val(1)},
		{"a==3", fail},
		{"a<>3", fail},
		{"!a", fail},
		{"a=3and v=20", val(1)},
		{"not not a=3", fail},
		{"a=3 xor v=20", val(0)},
		{"NOT a=3", val(0)},
		{"b = 1", null},
		{"b and 1", val(0)},
		{"b or 1", val(1)},
		{"b or 0", null},
		{"not (b and 1)", val(1)},
		{"b is not false", val(1)},
		{"b is false", val(0)},
		{"v div 3", val(6)},
		{"v DIV 3", fail},
		{"v % 0", null},
		{"010", val(8)},
		{"08", val(8)},
		{"0x1F", val(31)},
		{"0X1F", fail},
		{"1.5", fail},
		{"a='x'", fail},
		{"a = true", fail},
		{"Up=7", fail},
		{"`up`=7", val(1)},
		{"`v`=20", val(0)},
		{"2^3*2", val(2)},
		{"1<<2+1", val(8)},
		{"a < v < 2", val(1)},
		{"a=3 ", fail},
		{"  a=3", val(1)},
		{"nota=3", val(0)},
	})
}

func TestOperators(t *testing.T) {
	run(t, specTable, []testCase{
		// arithmetic
		{"a+v", val(23)},
		{"a-v", val(-17)},
		{"a*v", val(60)},
		{"v div a", val(6)},
		{"v % a", val(2)},
		{"v mod a", val(2)},
		{"-a", val(-3)},
		{"--a", val(3)},
		{"- - a", val(3)},
		{"a--3", val(6)},
		{"a -- 1", val(4)}, // not a comment
		{"-a*-a", val(9)},
		// bit operations
		{"a|4", val(7)},
		{"a&1", val(1)},
		{"a^1", val(2)},
		{"~a", val(-4)},
		{"~~a", val(3)},
		{"-~a", val(4)},
		{"~0", val(-1)},
		{"1<<a", val(8)},
		{"neg>>1", val(-4)},
		// comparisons
		{"a=3", val(1)},
		{"a=4", val(0)},
		{"a!=3", val(0)},
		{"a!=4", val(1)},
		{"a<v", val(1)},
		{"v<a", val(0)},
		{"a<=3", val(1)},
		{"a<=2", val(0)},
		{"a>3", val(0)},
		{"v>a", val(1)},
		{"a>=3", val(1)},
		{"a>=4", val(0)},
		{"neg<a", val(1)},
		{"neg=-8", val(1)},
		// logic
		{"a=3 && v=20", val(1)},
		{"a=3 && v=0", val(0)},
		{"a=3 AND v=20", val(1)},
		{"a=4 || v=20", val(1)},
		{"a=4 || v=0", val(0)},
		{"a=4 Or v=20", val(1)},
		{"a=3 xor v=0", val(1)},
		{"a XOR 0", val(1)},
		{"0 xor 0", val(0)},
		{"5 xor 7", val(0)},
		{"not a", val(0)},
		{"not 0", val(1)},
		{"not neg", val(0)},
		{"Not a=4", val(1)},
		// IS
		{"a is true", val(1)},
		{"a is false", val(0)},
		{"a is null", val(0)},
		{"a is not true", val(0)},
		{"a is not false", val(1)},
		{"a is not null", val(1)},
		{"0 is false", val(1)},
		{"0 is true", val(0)},
		{"0 is not false", val(0)},
		{"b IS NULL", val(1)},
		{"b is true", val(0)},
		{"b is not true", val(1)},
		{"b is not null", val(0)},
		{"a isnull", val(0)},
		{"b isnull", val(1)},
		{"a isnottrue", val(0)},
		{"a is NoT TrUe", val(0)},
		{"a is null is false", val(1)},
		{"3 is true = 1", val(1)},
		{"a is", fail},
		{"a is not", fail},
		{"a is 1", fail},
		{"a is nullx", fail},
		// pow
		{"pow(2,a)", val(8)},
		{"pow(a,2)", val(9)},
		{"pow( 2 , 3 )", val(8)},
		{"pow(2,3)^1", val(9)},
		{"pow(2,pow(2,2))", val(16)},
		{"pow(2,-1)", val(0)},
		{"pow(-2,-1)", val(0)},
		{"pow(2,62)", val(1 << 62)},
		{"pow(2,63)", val(math.MinInt64)},
		{"pow(2,70)", val(math.MinInt64)},
		{"pow(-2,63)", val(math.MinInt64)},
		{"pow(-2,64)", val(math.MinInt64)},
		{"pow(-2,3)", val(-8)},
		{"pow(-3,2)", val(9)},
		{"pow(3,39)", val(4052555153018976267)}, // exact, as powl gives; float64 would round
		{"pow(3,40)", val(math.MinInt64)},
		{"pow(10,18)", val(1e18)},
		{"pow(10,19)", val(math.MinInt64)},
		{"pow(0,0)", val(1)},
		{"pow(b,0)", null},
		{"pow(0,5)", val(0)},
		{"pow(0,-1)", val(math.MinInt64)},
		{"pow(1,-5)", val(1)},
		{"pow(1,9223372036854775807)", val(1)},
		{"pow(-1,-3)", val(-1)},
		{"pow(-1,-4)", val(1)},
		{"pow(-1,9223372036854775807)", val(-1)},
		{"pow(2,9223372036854775807)", val(math.MinInt64)},
		{"pow(neg,a)", val(-512)},
		{"pow (2,1)", fail},
		{"POW(2,1)", fail},
		{"Pow(2,1)", fail},
		{"pow(2)", fail},
		{"pow(2,3,4)", fail},
		{"pow(2,3", fail},
		{"abs(a)", fail},
	})
}

func TestPrecedence(t *testing.T) {
	run(t, specTable, []testCase{
		{"1+2*3", val(7)},
		{"(1+2)*3", val(9)},
		{"2*3^1", val(4)},       // ^ binds tighter than *
		{"-2^3", val(-3)},       // unary minus binds tighter than ^: (-2)^3
		{"-(2^3)", val(-1)},     // for contrast
		{"6&3<<1", val(6)},      // << above &
		{"4|2&1", val(4)},       // & above |
		{"2|1=2", val(0)},       // | above =
		{"2<<1+1", val(8)},      // + above <<
		{"1+a*2", val(7)},       // * above +
		{"a+1 div 2", val(3)},   // div above +
		{"not 1=2", val(1)},     // = above NOT
		{"not 0 and 0", val(0)}, // NOT above AND
		{"1 or 1 and 0", val(1)},
		{"0 and 1 xor 1", val(1)}, // AND above XOR
		{"1 xor 1 or 1", val(1)},  // XOR above OR
		{"1 or 1 xor 1", val(1)},
		{"1 || 0 && 0", val(1)},
		// left associativity
		{"10-2-3", val(5)},
		{"100 div 10 div 5", val(2)},
		{"100 % 7 % 3", val(2)},
		{"2<<1<<1", val(8)},
		{"64>>1>>1", val(16)},
		{"1=1=1", val(1)},
		{"2=2=2", val(0)},
		{"a < v < 2", val(1)},
		{"3^5^6", val(0)},
		{"1 xor 1 xor 1", val(1)},
		{"(a)", val(3)},
		{"((a=3))", val(1)},
	})
}

func TestNumbers(t *testing.T) {
	run(t, specTable, []testCase{
		{"0", val(0)},
		{"00", val(0)},
		{"007", val(7)},
		{"010", val(8)},
		{"0777", val(511)},
		{"08", val(8)},
		{"09", val(9)},
		{"089", val(89)},
		{"019", fail}, // octal 01, then a stray 9
		{"0 17", val(15)},
		{"0 8", fail},
		{"0" + strings.Repeat("7", 21), val(math.MaxInt64)},
		{"01" + strings.Repeat("0", 21), fail},        // 2**63
		{"0" + strings.Repeat("0", 21) + "1", val(1)}, // 22 octal digits
		{"0" + strings.Repeat("0", 22) + "1", fail},   // 23
		{"0x0", val(0)},
		{"0xff", val(255)},
		{"0xFF", val(255)},
		{"0xAbC", val(0xabc)},
		{"0x7fffffffffffffff", val(math.MaxInt64)},
		{"0x8000000000000000", fail},
		{"0xffffffffffffffff", fail},
		{"0x" + strings.Repeat("0", 15) + "1", val(1)},
		{"0x" + strings.Repeat("0", 16) + "1", fail}, // 17 digits
		{"0x", fail},
		{"0xg", fail},
		{"0X1F", fail},
		{"0x 1F", val(31)},
		{"0x1Fand 1", fail}, // hex digits run on into "a"
		{"9223372036854775807", val(math.MaxInt64)},
		{"9223372036854775808", fail},
		{"10000000000000000000", fail},
		{"-9223372036854775807", val(-math.MaxInt64)},
		{"-9223372036854775808", fail},
		{"-9223372036854775807-1", val(math.MinInt64)},
		{"3and 1", val(1)},
		{"1e3", fail},
		{".5", fail},
		{"1.", fail},
		{"1_000", fail},
		{"+1", fail},
		{"a=+3", fail},
		{"0b101", fail},
	})
}

func TestArithmeticEdges(t *testing.T) {
	tb := table{
		{name: "min", v: math.MinInt64},
		{name: "max", v: math.MaxInt64},
		{name: "m1", v: -1},
		{name: "z", v: 0},
	}
	run(t, tb, []testCase{
		// division and remainder: C semantics
		{"7 div 2", val(3)},
		{"-7 div 2", val(-3)},
		{"7 div -2", val(-3)},
		{"-7 div -2", val(3)},
		{"7 % 2", val(1)},
		{"-7 % 2", val(-1)},
		{"7 % -2", val(1)},
		{"-7 % -2", val(-1)},
		{"-8 div 3", val(-2)},
		{"-8 % 3", val(-2)},
		{"-8 mod -3", val(-2)},
		{"7 div 0", null},
		{"7 % 0", null},
		{"7 mod 0", null},
		{"0 div 0", null},
		{"max div z", null},
		{"max % z", null},
		{"(max div z) is null", val(1)},
		{"min div m1", val(math.MinInt64)},
		{"min % m1", val(0)},
		{"min mod m1", val(0)},
		{"(-9223372036854775807-1) div -1", val(math.MinInt64)},
		{"(-9223372036854775807-1) % -1", val(0)},
		// wrap-around
		{"max+1", val(math.MinInt64)},
		{"min-1", val(math.MaxInt64)},
		{"max*2", val(-2)},
		{"min*m1", val(math.MinInt64)},
		{"-min", val(math.MinInt64)},
		{"9223372036854775807+1", val(math.MinInt64)},
		// shifts: signed, count modulo 64
		{"1<<62", val(1 << 62)},
		{"1<<63", val(math.MinInt64)},
		{"1<<64", val(1)},
		{"1<<65", val(2)},
		{"1<<m1", val(math.MinInt64)},
		{"1<<-1", val(math.MinInt64)},
		{"1>>-1", val(0)},
		{"-8>>1", val(-4)},
		{"-8>>63", val(-1)},
		{"-8>>64", val(-8)},
		{"-1<<1", val(-2)},
		{"max<<1", val(-2)},
		{"min>>63", val(-1)},
		{"3>>1", val(1)},
		{"1<<min", val(1)},
		// comparisons are signed
		{"min<max", val(1)},
		{"m1<z", val(1)},
	})
}

func TestNull(t *testing.T) {
	cases := []testCase{
		{"null", null},
		{"NULL", null},
		{"Null+1", null},
		{"null=null", null},
		{"null is null", val(1)},
		{"b is null", val(1)},
	}
	// Every NULL-propagating operator, with NULL on either side.
	for _, op := range []string{"+", "-", "*", " div ", "%", " mod ", "|", "&", "^", "<<", ">>",
		"=", "!=", "<", "<=", ">", ">=", " xor "} {
		cases = append(cases,
			testCase{"b" + op + "1", null},
			testCase{"1" + op + "b", null},
			testCase{"b" + op + "b", null},
			testCase{"null" + op + "1", null},
		)
	}
	cases = append(cases, []testCase{
		{"pow(b,1)", null},
		{"pow(1,b)", null},
		{"pow(null,0)", null},
		{"-b", null},
		{"~b", null},
		{"not b", null},
		{"not null", null},
		{"b div 0", null},
		// AND: NULL only when both sides are NULL
		{"b and b", null},
		{"b && b", null},
		{"null and null", null},
		{"b and 1", val(0)},
		{"1 and b", val(0)},
		{"b and 0", val(0)},
		{"0 and b", val(0)},
		{"1 and 1", val(1)},
		{"1 and 0", val(0)},
		{"a and v", val(1)},
		{"not (b and 1)", val(1)},
		// OR: SQL three-valued logic
		{"b or b", null},
		{"b || b", null},
		{"b or 1", val(1)},
		{"1 or b", val(1)},
		{"b || 1", val(1)},
		{"b or 0", null},
		{"0 or b", null},
		{"null or 1", val(1)},
		{"0 or 0", val(0)},
		// IS never returns NULL
		{"b is true", val(0)},
		{"b is not true", val(1)},
		{"b is false", val(0)},
		{"b is not false", val(1)},
		{"b is not null", val(0)},
		{"(b+1) is null", val(1)},
	}...)
	run(t, specTable, cases)
}

func TestNames(t *testing.T) {
	run(t, specTable, []testCase{
		{"A=3", val(1)}, // the input is lower-cased before lookup
		{"NEG=-8", val(1)},
		{"V1=10", val(1)},
		{"v1=10", val(1)}, // the longest name wins
		{"v=20", val(1)},
		{"vx=1", fail}, // bare names end at a non-identifier character
		{"v1x=1", fail},
		{"v_=1", fail},
		{"v$=1", fail},
		{"v\xc3\xa9=1", fail},
		{"aisnull", fail},
		{"Up=7", fail},
		{"up=7", fail},
		{"UP=7", fail},
		{"`up`=7", val(1)},
		{"`UP`=7", val(1)},
		{"`Up`=7", val(1)},
		{"notx=5", val(1)}, // "not" then "x=5" fails, so notx is a column
		{"nota=3", val(0)},
		{"not a = 3", val(0)},
		{"a=3ora=4", val(1)},
		{"a=4ORa=3", val(1)},
		{"a=3 xora=3", val(0)},
		{"a=3anda=3", val(1)},
		{"a=3and`v`=10", val(1)},
		{"zzz", fail},
		{"@x", fail},
		{"@@x", fail},
		// backquotes: case-insensitive prefix, first column in table order
		{"`a`", val(3)},
		{"`A`", val(3)},
		{"`v`", val(10)},
		{"`v1`", val(10)},
		{"`no`", val(5)},
		{"`ne`", val(-8)},
		{"`n`", val(5)},
		{"``", val(3)}, // the empty prefix: the first column
		{"`a`+`a`", val(6)},
		{"( `a` )", val(3)},
		{"`zzz`", fail},
		{"`a1`", fail},
		{"` a`", fail},
		{"`a", fail},
		{"`", fail},
		{"`a`b", fail},
		{"`a\\`b`", fail},
		{"a=3 or `zzz`", fail},
		{"'a'", fail},
		{`"a"`, fail},
	})
}

func TestKeywordColumns(t *testing.T) {
	tb := table{
		{name: "a", v: 1},
		{name: "or", v: 2},
		{name: "and", v: 3},
		{name: "not", v: 4},
		{name: "is", v: 5},
		{name: "true", v: 6},
		{name: "FALSE", v: 7},
		{name: "null", v: 8},
		{name: "div", v: 9},
		{name: "mod", v: 10},
		{name: "Xor", v: 11},
		{name: "c", v: 12},
		{name: "pow", v: 13},
		{name: "nullable", v: 14},
		{name: "note", v: 20},
		{name: "e", v: 3},
		{name: "isx", v: 15},
	}
	run(t, tb, []testCase{
		// every column after the keyword-named ones still maps to itself
		{"c=12", val(1)},
		{"a=1 and c=12", val(1)},
		{"pow=13", val(1)},
		{"pow(2,1)", val(2)},
		{"isx=15", val(1)},
		{"e=3", val(1)},
		// keyword-named columns have no bare name
		{"or=2", fail},
		{"and=3", fail},
		{"not=4", fail},
		{"is=5", fail},
		{"true=6", fail},
		{"false=7", fail},
		{"div=9", fail},
		{"mod=10", fail},
		{"xor=11", fail},
		{"null=8", null}, // the NULL keyword
		// but are reachable in backquotes
		{"`or`=2", val(1)},
		{"`and`=3", val(1)},
		{"`not`=4", val(1)},
		{"`is`=5", val(1)},
		{"`true`=6", val(1)},
		{"`false`=7", val(1)},
		{"`null`=8", val(1)},
		{"`div`=9", val(1)},
		{"`mod`=10", val(1)},
		{"`xor`=11", val(1)},
		// ordered choice: a keyword tried first wins
		{"nullable=14", fail},
		{"`nullable`=14", val(1)},
		{"note+0", val(0)}, // not (e+0)
		{"`note`+0", val(20)},
	})
}

func TestInvisibleColumns(t *testing.T) {
	tb := table{
		{name: "a", v: 3},
		{name: "name", hidden: true},
		{name: "nb", v: 4},
		{name: "f", hidden: true},
		{name: "fx", v: 6},
		{name: "vx", hidden: true},
		{name: "v", v: 7},
	}
	run(t, tb, []testCase{
		{"a=3", val(1)},
		{"name=1", fail},
		{"`name`=1", fail},
		{"`NAME`=1", fail},
		{"f", fail},
		{"`f`", val(6)}, // prefix of fx; invisible columns are skipped
		{"`n`", val(4)},
		{"`na`", fail},
		{"vx=1", fail},
		{"v=7", val(1)},
	})
}

func TestWhitespace(t *testing.T) {
	run(t, specTable, []testCase{
		{"", fail},
		{" ", fail},
		{"\t\n", fail},
		{"  a=3", val(1)},
		{"\t\n\v\f\ra=3", val(1)},
		{"a=3 ", fail},
		{"a=3\n", fail},
		{"a=3\t", fail},
		{"( a = 3 )", val(1)},
		{"a\t=\n3", val(1)},
		{"a < = 3", fail},
		{"a ! = 3", fail},
		{"a | | 1", fail},
		{"a & & 1", fail},
		{"a < < 1", fail},
		{"a > > 1", fail},
		{"a ||1", val(1)},
		{"a&&1", val(1)},
		{"a\u00a0=3", fail}, // only C-locale white space is skipped
	})
}

func TestUnsupported(t *testing.T) {
	for _, src := range []string{
		"a<>3", "a==3", "!a", "!(a=3)", "a/1", "a in (3)", "a between 1 and 5",
		"a like 3", "a='x'", `a="x"`, "1.5", "a = true", "a = false", "true", "false",
		"abs(a)", "@x", "@@x", "a=?", "a;", "a # c", "a/*x*/", "a -- x", "not not a=3",
		"a=3 and", "and a=3", "a=", "()", "(a", "a)", "a,b", "a=3 a=3", "<=>", "a <=> 3",
	} {
		run(t, specTable, []testCase{{src, fail}})
	}
}

func TestNesting(t *testing.T) {
	deep := func(n int) string { return strings.Repeat("(", n) + "a" + strings.Repeat(")", n) }
	run(t, specTable, []testCase{
		{deep(200), val(3)},
		{deep(10000), fail},
		{strings.Repeat("-", 200) + "a", val(3)},
		{strings.Repeat("~", 10001) + "a", fail},
		{"a" + strings.Repeat("+a", 1000), val(3003)},
		{"a" + strings.Repeat("+a", 5000), fail},
		{"1" + strings.Repeat("+1", 100000), val(100001)}, // folded as it is parsed
		{strings.Repeat("a=3 or ", 1000) + "0", val(1)},
	})
}

func TestErrors(t *testing.T) {
	cols := append(specTable.columns(), cond.Column{Name: "txt"})
	for _, tc := range []struct {
		src    string
		msg    string
		offset int
	}{
		{"", "empty expression", 0},
		{"   ", "empty expression", 0},
		{"a=3 ", "trailing whitespace", 3},
		{"a=3 xyz", "syntax error", 4},
		{"a=3 and b=", "syntax error", 10},
		{"Up=7", "backquotes", 0},
		{"txt=1", "not an integer or temporal column", 0},
		{"`txt`=1", "not an integer or temporal column", 0},
		{"a=`zzz`", `unknown column "zzz"`, 2},
		{"9223372036854775808", "out of range", 0},
		{"a=0x8000000000000000", "out of range", 4},
		{"a=`v", "unterminated", 2},
		{strings.Repeat("(", 300) + "1" + strings.Repeat(")", 300), "nested too deeply", 257},
		{"a" + strings.Repeat("+a", 5000), "too complex", 0},
	} {
		t.Run(short(tc.src), func(t *testing.T) {
			_, err := cond.Compile(tc.src, cols)
			var ce *cond.Error
			if !errors.As(err, &ce) {
				t.Fatalf("Compile(%q) error = %v, want *cond.Error", tc.src, err)
			}
			if !strings.Contains(ce.Msg, tc.msg) || !strings.HasPrefix(err.Error(), "cond: ") {
				t.Errorf("Compile(%q) error = %q, want it to mention %q", tc.src, err, tc.msg)
			}
			if tc.offset != 0 && ce.Offset != tc.offset {
				t.Errorf("Compile(%q) error offset = %d, want %d (%v)", tc.src, ce.Offset, tc.offset, err)
			}
		})
	}
}

func TestColumns(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []int
	}{
		{"a=3", []int{0}},
		{"1=1", nil},
		{"null", nil},
		{"v1 + v + neg", []int{3, 4, 6}},
		{"neg + v + v1 + neg", []int{3, 4, 6}},
		{"b is null and a=3 or `a`=1", []int{0, 1}},
		{"`up`=7 and `v`=10", []int{2, 3}},
		{"0 and a", []int{0}}, // only all-constant operators are folded
		{"pow(notx, 2)", []int{5}},
	} {
		t.Run(short(tc.src), func(t *testing.T) {
			e, err := cond.Compile(tc.src, specTable.columns())
			if err != nil {
				t.Fatal(err)
			}
			got := e.Columns()
			if !slices.Equal(got, tc.want) {
				t.Fatalf("Columns() = %v, want %v", got, tc.want)
			}
			if len(got) > 0 {
				got[0] = -1 // the result is a copy
				if e.Columns()[0] == -1 {
					t.Fatal("Columns() returned the Expr's own slice")
				}
			}
			// Eval reads no other column.
			e.Eval(func(i int) (int64, bool) {
				if !slices.Contains(tc.want, i) {
					t.Fatalf("Eval read column %d, not in %v", i, tc.want)
				}
				return specTable.val(t)(i)
			})
		})
	}
}

func TestConstantNeedsNoRow(t *testing.T) {
	for _, src := range []string{"1+2*3", "pow(2,10) > 1000 and not null is null", "null", "7 div 0"} {
		e, err := cond.Compile(src, specTable.columns())
		if err != nil {
			t.Fatal(err)
		}
		e.Eval(func(i int) (int64, bool) {
			t.Fatalf("%q: Eval read column %d of a constant expression", src, i)
			return 0, false
		})
	}
}

func TestCompileWithoutColumns(t *testing.T) {
	run(t, nil, []testCase{
		{"1", val(1)},
		{"a", fail},
		{"``", fail},
	})
}

func TestConcurrentEval(t *testing.T) {
	e, err := cond.Compile("a=3 and (v div 2) % 7 = 3 or b is null", specTable.columns())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				row := func(c int) (int64, bool) {
					switch c {
					case 0:
						return int64(g + i), true
					case 1:
						return 0, i%2 == 0
					case 4:
						return 20, true
					}
					t.Errorf("read column %d", c)
					return 0, false
				}
				want := (g+i == 3) || i%2 == 1
				if got := e.Match(row); got != want {
					t.Errorf("g=%d i=%d: Match = %v, want %v", g, i, got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

func BenchmarkEval(b *testing.B) {
	cols := []cond.Column{{Name: "id", Visible: true}, {Name: "prio", Visible: true}, {Name: "ready", Visible: true}, {Name: "body"}}
	e, err := cond.Compile("prio=0 and ready<1700000000", cols)
	if err != nil {
		b.Fatal(err)
	}
	row := []int64{42, 0, 1699999999, 0}
	val := func(i int) (int64, bool) { return row[i], true }
	b.ReportAllocs()
	for b.Loop() {
		if !e.Match(val) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	cols := []cond.Column{{Name: "id", Visible: true}, {Name: "prio", Visible: true}, {Name: "ready", Visible: true}, {Name: "body"}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cond.Compile("prio=0 and ready<1700000000", cols); err != nil {
			b.Fatal(err)
		}
	}
}
