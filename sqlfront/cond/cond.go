package cond

import (
	"fmt"
	"slices"
)

// Column is a table column an expression may refer to.
type Column struct {
	Name    string // as declared (case kept)
	Visible bool   // integer or temporal column; referring to an invisible one is a compile error
}

// Expr is a compiled expression. It is immutable and safe for concurrent use.
type Expr struct {
	src  string
	root *node
	cols []int // sorted, distinct column indexes used by root
}

// Error is the error Compile returns. Q4M callers only need to know that
// compilation failed (queue_wait then returns NULL); the fields say why.
type Error struct {
	Offset int    // byte offset in the expression where the problem was found
	Near   string // the source text from Offset, shortened
	Msg    string // what is wrong, e.g. "syntax error" or `unknown column "x"`
}

func (e *Error) Error() string {
	if e.Near == "" {
		return fmt.Sprintf("cond: %s at offset %d", e.Msg, e.Offset)
	}
	return fmt.Sprintf("cond: %s at offset %d near %q", e.Msg, e.Offset, e.Near)
}

// Compile parses src (the part after "table:") against the table's columns.
// Column indexes in the compiled expression are indexes into cols. Every
// failure is an *Error that describes the problem (position, near text);
// callers that emulate Q4M only need to know that it failed.
func Compile(src string, cols []Column) (e *Expr, err error) {
	p := newParser(src, cols)
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bailout)
			if !ok {
				panic(r)
			}
			e, err = nil, b.err
		}
	}()
	root, err := p.parse()
	if err != nil {
		return nil, err
	}
	e = &Expr{src: src, root: root}
	root.walk(func(n *node) {
		if n.op == opColumn {
			e.cols = append(e.cols, int(n.v))
		}
	})
	slices.Sort(e.cols)
	e.cols = slices.Compact(e.cols)
	return e, nil
}

// Eval evaluates e for one row; val(i) returns the value of column i (index into cols)
// and ok=false when it is NULL. It returns (value, true) or (0, false) for NULL.
// Eval calls val only for columns listed by Columns, possibly more than once,
// and not at all when e is constant. It is safe for concurrent use if val is.
func (e *Expr) Eval(val func(i int) (int64, bool)) (int64, bool) {
	return e.root.eval(val)
}

// Match reports whether the row matches: the value is non-NULL and non-zero.
func (e *Expr) Match(val func(i int) (int64, bool)) bool {
	v, ok := e.root.eval(val)
	return ok && v != 0
}

// Columns returns the sorted, distinct indexes of the columns e refers to.
// The slice is a copy, nil when e refers to no column.
func (e *Expr) Columns() []int {
	return slices.Clone(e.cols)
}

// String returns the source text.
func (e *Expr) String() string { return e.src }
