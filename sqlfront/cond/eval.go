package cond

import (
	"math"
	"math/bits"
)

// op is the operation of a node.
type op uint8

const (
	opConst  op = iota // v (or NULL when null is set)
	opColumn           // the value of column v

	// Unary operators, NULL in gives NULL out.
	opNeg
	opBitNot
	opNot

	// IS tests: never NULL.
	opIsTrue
	opIsNotTrue
	opIsFalse
	opIsNotFalse
	opIsNull
	opIsNotNull

	// Binary operators, NULL if either operand is NULL.
	opEQ
	opNE
	opLT
	opLE
	opGT
	opGE
	opAdd
	opSub
	opMul
	opDiv
	opMod
	opBitOr
	opBitAnd
	opBitXor
	opShl
	opShr
	opXor
	opPow

	// Binary operators with their own NULL rules.
	opAnd
	opOr
)

// unary reports whether o takes one operand.
func (o op) unary() bool { return o >= opNeg && o <= opIsNotNull }

// node is one node of a compiled expression tree. Nodes are never modified
// after construction.
type node struct {
	op    op
	null  bool  // opConst: the value is NULL
	v     int64 // opConst: the value; opColumn: the column index
	x, y  *node // operands; y is nil for unary operators
	depth int   // height of the subtree, 1 for a leaf
}

var nullNode = &node{op: opConst, null: true, depth: 1}

func constNode(v int64, ok bool) *node {
	if !ok {
		return nullNode
	}
	return &node{op: opConst, v: v, depth: 1}
}

// walk calls f for n and every node below it.
func (n *node) walk(f func(*node)) {
	f(n)
	if n.x != nil {
		n.x.walk(f)
	}
	if n.y != nil {
		n.y.walk(f)
	}
}

// eval returns the value of n, (0, false) for NULL.
func (n *node) eval(val func(int) (int64, bool)) (int64, bool) {
	switch n.op {
	case opConst:
		return n.v, !n.null
	case opColumn:
		v, ok := val(int(n.v))
		if !ok {
			return 0, false
		}
		return v, true
	case opAnd:
		x, xok := n.x.eval(val)
		if xok && x == 0 {
			return 0, true // false whatever y is: both NULL is impossible
		}
		y, yok := n.y.eval(val)
		if !xok && !yok {
			return 0, false
		}
		return b2i(xok && yok && y != 0), true // x is NULL or true here
	case opOr:
		x, xok := n.x.eval(val)
		if xok && x != 0 {
			return 1, true
		}
		y, yok := n.y.eval(val)
		switch {
		case yok && y != 0:
			return 1, true
		case !xok || !yok:
			return 0, false
		}
		return 0, true
	}
	x, xok := n.x.eval(val)
	if n.op.unary() {
		return evalUnary(n.op, x, xok)
	}
	if !xok {
		return 0, false // y is not needed: every remaining operator propagates NULL
	}
	y, yok := n.y.eval(val)
	if !yok {
		return 0, false
	}
	return evalBinary(n.op, x, y)
}

func evalUnary(o op, x int64, ok bool) (int64, bool) {
	switch o {
	case opIsTrue:
		return b2i(ok && x != 0), true
	case opIsNotTrue:
		return b2i(!ok || x == 0), true
	case opIsFalse:
		return b2i(ok && x == 0), true
	case opIsNotFalse:
		return b2i(!ok || x != 0), true
	case opIsNull:
		return b2i(!ok), true
	case opIsNotNull:
		return b2i(ok), true
	}
	if !ok {
		return 0, false
	}
	switch o {
	case opNeg:
		return -x, true // wraps: -MinInt64 is MinInt64
	case opBitNot:
		return ^x, true
	case opNot:
		return b2i(x == 0), true
	}
	panic("cond: unknown unary operator")
}

// evalBinary applies a NULL-propagating binary operator to non-NULL operands.
func evalBinary(o op, x, y int64) (int64, bool) {
	switch o {
	case opEQ:
		return b2i(x == y), true
	case opNE:
		return b2i(x != y), true
	case opLT:
		return b2i(x < y), true
	case opLE:
		return b2i(x <= y), true
	case opGT:
		return b2i(x > y), true
	case opGE:
		return b2i(x >= y), true
	case opAdd:
		return x + y, true
	case opSub:
		return x - y, true
	case opMul:
		return x * y, true
	case opDiv:
		if y == 0 {
			return 0, false
		}
		return x / y, true // Go defines MinInt64 / -1 as MinInt64
	case opMod:
		if y == 0 {
			return 0, false
		}
		return x % y, true // and MinInt64 % -1 as 0
	case opBitOr:
		return x | y, true
	case opBitAnd:
		return x & y, true
	case opBitXor:
		return x ^ y, true
	case opShl:
		return x << (uint64(y) & 63), true
	case opShr:
		return x >> (uint64(y) & 63), true
	case opXor:
		return b2i((x == 0) != (y == 0)), true
	case opPow:
		return ipow(x, y), true
	}
	panic("cond: unknown binary operator")
}

// ipow returns x**y truncated toward zero, or math.MinInt64 when the true
// result is outside the int64 range or infinite (0 to a negative power).
// This is what Q4M's (long long)powl(x, y) gives on x86: powl is exact for
// these integer results, and x86 converts out-of-range values to MinInt64.
func ipow(x, y int64) int64 {
	switch {
	case y == 0:
		return 1
	case x == 1:
		return 1
	case x == -1:
		if y&1 == 0 {
			return 1
		}
		return -1
	case x == 0:
		if y > 0 {
			return 0
		}
		return math.MinInt64
	case y < 0:
		return 0 // |x| >= 2, so 0 < |x**y| < 1
	case y >= 64:
		return math.MinInt64 // |x| >= 2, so |x**y| >= 2**64
	}
	neg := x < 0 && y&1 == 1
	ax := uint64(x)
	if x < 0 {
		ax = -ax // 2**63 for MinInt64
	}
	limit := uint64(math.MaxInt64)
	if neg {
		limit++ // -2**63 is in range
	}
	r := uint64(1)
	for range y {
		hi, lo := bits.Mul64(r, ax)
		if hi != 0 || lo > limit {
			return math.MinInt64
		}
		r = lo
	}
	if neg {
		return -int64(r) // r == 2**63 gives MinInt64
	}
	return int64(r)
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}
