package cond

import (
	"fmt"
	"math"
	"strings"
)

const (
	// maxNesting bounds the recursion of the parser through parentheses,
	// pow( and unary - and ~. Q4M has no limit (it recurses until the stack
	// runs out); no real condition comes near this.
	maxNesting = 256
	// maxDepth bounds the height of the compiled tree, and so the recursion
	// of Eval. Long AND/OR chains grow the tree by one level per operator.
	maxDepth = 4096
	// nearLen is how much source text an Error quotes.
	nearLen = 24
)

// keywords are the words a column cannot be called by bare name.
var keywords = []string{"or", "xor", "and", "not", "is", "true", "false", "null", "div", "mod"}

// bareName is a column reachable without backquotes.
type bareName struct {
	name  string // as declared; has no upper-case ASCII letter
	index int
}

// bailout carries an error that ends parsing at once. It is raised with
// panic and recovered in Compile; it never leaves the package.
type bailout struct{ err *Error }

// parser is a backtracking recursive-descent parser for the PEG in doc.go.
// Each parse method either succeeds, returning a node and leaving pos after
// the text it consumed, or fails, returning false; a caller that tries
// another alternative restores pos itself.
type parser struct {
	src    string
	pos    int
	cols   []Column
	bare   []bareName
	nest   int    // current recursion through unary
	far    int    // farthest offset where a token failed to match
	farMsg string // why, when more specific than "syntax error"
}

// binOp is one alternative of a left-associative level: a token and the
// operator it builds.
type binOp struct {
	tok  string
	fold bool // match case-insensitively (keywords)
	op   op
}

var (
	orOps     = []binOp{{"||", false, opOr}, {"or", true, opOr}}
	xorOps    = []binOp{{"xor", true, opXor}}
	andOps    = []binOp{{"&&", false, opAnd}, {"and", true, opAnd}}
	relOps    = []binOp{{"=", false, opEQ}, {"!=", false, opNE}, {"<=", false, opLE}, {"<", false, opLT}, {">=", false, opGE}, {">", false, opGT}}
	bitorOps  = []binOp{{"|", false, opBitOr}}
	bitandOps = []binOp{{"&", false, opBitAnd}}
	shiftOps  = []binOp{{"<<", false, opShl}, {">>", false, opShr}}
	addOps    = []binOp{{"+", false, opAdd}, {"-", false, opSub}}
	mulOps    = []binOp{{"*", false, opMul}, {"div", false, opDiv}, {"%", false, opMod}, {"mod", false, opMod}}
	bitxorOps = []binOp{{"^", false, opBitXor}}
	isOps     = []binOp{{"true", true, opIsTrue}, {"false", true, opIsFalse}, {"null", true, opIsNull}}
	isNotOps  = []binOp{{"true", true, opIsNotTrue}, {"false", true, opIsNotFalse}, {"null", true, opIsNotNull}}
)

func newParser(src string, cols []Column) *parser {
	p := &parser{src: src, cols: cols}
	for i, c := range cols {
		if c.Visible && c.Name != "" && !hasUpper(c.Name) && !isKeyword(c.Name) {
			p.bare = append(p.bare, bareName{c.Name, i})
		}
	}
	return p
}

// parse parses the whole source.
func (p *parser) parse() (*node, error) {
	if p.skip(0) == len(p.src) {
		return nil, &Error{Offset: 0, Msg: "empty expression"}
	}
	n, ok := p.expr()
	if ok && p.pos == len(p.src) {
		return n, nil
	}
	if ok && p.skip(p.pos) == len(p.src) {
		return nil, p.errorAt(p.pos, "trailing whitespace")
	}
	return nil, p.syntaxError()
}

// Left-associative levels, lowest precedence first.

func (p *parser) expr() (*node, bool)   { return p.leftAssoc(orOps, p.xorExp) }
func (p *parser) xorExp() (*node, bool) { return p.leftAssoc(xorOps, p.andExp) }
func (p *parser) andExp() (*node, bool) { return p.leftAssoc(andOps, p.notExp) }
func (p *parser) bitor() (*node, bool)  { return p.leftAssoc(bitorOps, p.bitand) }
func (p *parser) bitand() (*node, bool) { return p.leftAssoc(bitandOps, p.shift) }
func (p *parser) shift() (*node, bool)  { return p.leftAssoc(shiftOps, p.add) }
func (p *parser) add() (*node, bool)    { return p.leftAssoc(addOps, p.mul) }
func (p *parser) mul() (*node, bool)    { return p.leftAssoc(mulOps, p.bitxor) }
func (p *parser) bitxor() (*node, bool) { return p.leftAssoc(bitxorOps, p.unary) }

// leftAssoc parses operand ( tok operand )* for the alternatives in ops,
// tried in order; an operator whose right operand fails is given back.
func (p *parser) leftAssoc(ops []binOp, operand func() (*node, bool)) (*node, bool) {
	x, ok := operand()
	if !ok {
		return nil, false
	}
	for {
		y, o, ok := p.rightOperand(ops, operand)
		if !ok {
			return x, true
		}
		x = p.mk(o, x, y)
	}
}

// rightOperand parses one "tok operand" of ops, leaving pos unchanged when
// none matches.
func (p *parser) rightOperand(ops []binOp, operand func() (*node, bool)) (*node, op, bool) {
	save := p.pos
	for _, b := range ops {
		if p.token(b.tok, b.fold) {
			if y, ok := operand(); ok {
				return y, b.op, true
			}
		}
		p.pos = save
	}
	return nil, 0, false
}

// notExp parses NOT relexp | relexp.
func (p *parser) notExp() (*node, bool) {
	save := p.pos
	if p.token("not", true) {
		if x, ok := p.relExp(); ok {
			return p.mk(opNot, x, nil), true
		}
	}
	p.pos = save
	return p.relExp()
}

// relExp parses comparisons and IS tests, which share one level.
func (p *parser) relExp() (*node, bool) {
	x, ok := p.bitor()
	if !ok {
		return nil, false
	}
	for {
		if y, o, ok := p.rightOperand(relOps, p.bitor); ok {
			x = p.mk(o, x, y)
			continue
		}
		save := p.pos
		if p.token("is", true) {
			if o, ok := p.isTest(isOps); ok {
				x = p.mk(o, x, nil)
				continue
			}
			if p.token("not", true) {
				if o, ok := p.isTest(isNotOps); ok {
					x = p.mk(o, x, nil)
					continue
				}
			}
		}
		p.pos = save
		return x, true
	}
}

// isTest matches the word after IS or IS NOT.
func (p *parser) isTest(ops []binOp) (op, bool) {
	for _, b := range ops {
		if p.token(b.tok, b.fold) {
			return b.op, true
		}
	}
	return 0, false
}

// unary parses the highest-precedence forms, in the order Q4M tries them.
func (p *parser) unary() (*node, bool) {
	start := p.pos
	if p.token("0x", false) {
		if v, ok := p.digits(16, 16); ok {
			return constNode(v, true), true
		}
		p.pos = start
	}
	if p.token("0", false) {
		if v, ok := p.digits(8, 22); ok {
			return constNode(v, true), true
		}
		p.pos = start
	}
	if v, ok := p.digits(10, 19); ok {
		return constNode(v, true), true
	}
	if p.token("-", false) {
		if x, ok := p.nested(p.unary); ok {
			return p.mk(opNeg, x, nil), true
		}
		p.pos = start
	}
	if p.token("~", false) {
		if x, ok := p.nested(p.unary); ok {
			return p.mk(opBitNot, x, nil), true
		}
		p.pos = start
	}
	if p.token("(", false) {
		if x, ok := p.nested(p.expr); ok && p.token(")", false) {
			return x, true
		}
		p.pos = start
	}
	if p.token("pow(", false) {
		if x, ok := p.nested(p.expr); ok && p.token(",", false) {
			if y, ok := p.nested(p.expr); ok && p.token(")", false) {
				return p.mk(opPow, x, y), true
			}
		}
		p.pos = start
	}
	if p.token("null", true) {
		return nullNode, true
	}
	if i, ok := p.quotedColumn(); ok {
		return p.column(i), true
	}
	if i, ok := p.bareColumn(); ok {
		return p.column(i), true
	}
	return nil, false
}

// nested calls f one recursion level deeper.
func (p *parser) nested(f func() (*node, bool)) (*node, bool) {
	if p.nest >= maxNesting {
		panic(bailout{p.errorAt(p.pos, "expression nested too deeply")})
	}
	p.nest++
	defer func() { p.nest-- }()
	return f()
}

func (p *parser) column(i int) *node {
	return &node{op: opColumn, v: int64(i), depth: 1}
}

// quotedColumn matches `name` and resolves it as a case-insensitive prefix
// of the usable columns. A name that resolves to nothing ends compilation:
// no other alternative can consume a backquote.
func (p *parser) quotedColumn() (int, bool) {
	q := p.skip(p.pos)
	if q == len(p.src) || p.src[q] != '`' {
		p.failAt(q, "")
		return 0, false
	}
	end := -1
	for i := q + 1; i < len(p.src); i++ {
		if p.src[i] == '\\' {
			i++ // the escaped character, whatever it is, does not close
			continue
		}
		if p.src[i] == '`' {
			end = i
			break
		}
	}
	if end < 0 {
		p.failAt(q, "unterminated backquoted name")
		return 0, false
	}
	prefix := p.src[q+1 : end]
	invisible := -1
	for i, c := range p.cols {
		if len(c.Name) < len(prefix) || !equalFoldASCII(c.Name[:len(prefix)], prefix) {
			continue
		}
		if c.Visible {
			p.pos = end + 1
			return i, true
		}
		if invisible < 0 {
			invisible = i
		}
	}
	if invisible >= 0 {
		panic(bailout{p.errorAt(q, fmt.Sprintf("column %q is not an integer or temporal column", p.cols[invisible].Name))})
	}
	panic(bailout{p.errorAt(q, fmt.Sprintf("unknown column %q", prefix))})
}

// bareColumn matches the longest bare column name at the current position,
// comparing it with the lower-cased input. The name must not run on into
// more identifier characters.
func (p *parser) bareColumn() (int, bool) {
	q := p.skip(p.pos)
	best := -1
	for i, b := range p.bare {
		if len(b.name) <= len(p.src)-q && lowerEqual(p.src[q:q+len(b.name)], b.name) &&
			(best < 0 || len(b.name) > len(p.bare[best].name)) {
			best = i
		}
	}
	if best < 0 {
		p.failAt(q, "")
		return 0, false
	}
	end := q + len(p.bare[best].name)
	if end < len(p.src) && isIdentByte(p.src[end]) {
		p.failAt(q, "")
		return 0, false
	}
	p.pos = end
	return p.bare[best].index, true
}

// digits matches 1 to max digits of the given radix. A value above
// math.MaxInt64 does not match.
func (p *parser) digits(radix, max int) (int64, bool) {
	q := p.skip(p.pos)
	i := q
	var n int64
	for ; i < len(p.src) && i-q < max; i++ {
		d := digitValue(p.src[i])
		if d >= radix {
			break
		}
		if n > (math.MaxInt64-int64(d))/int64(radix) {
			p.failAt(q, "integer literal out of range")
			return 0, false
		}
		n = n*int64(radix) + int64(d)
	}
	if i == q {
		p.failAt(q, "")
		return 0, false
	}
	p.pos = i
	return n, true
}

// token skips whitespace and matches tok, ignoring ASCII case if fold is
// set. pos moves only on a match.
func (p *parser) token(tok string, fold bool) bool {
	q := p.skip(p.pos)
	if len(p.src)-q >= len(tok) {
		s := p.src[q : q+len(tok)]
		if s == tok || fold && lowerEqual(s, tok) {
			p.pos = q + len(tok)
			return true
		}
	}
	p.failAt(q, "")
	return false
}

// skip returns the offset of the first non-whitespace byte at or after i.
func (p *parser) skip(i int) int {
	for i < len(p.src) && isSpace(p.src[i]) {
		i++
	}
	return i
}

// mk builds an operator node, evaluating it now if its operands are
// constant.
func (p *parser) mk(o op, x, y *node) *node {
	n := &node{op: o, x: x, y: y, depth: x.depth + 1}
	if y != nil && y.depth >= x.depth {
		n.depth = y.depth + 1
	}
	if x.op == opConst && (y == nil || y.op == opConst) {
		return constNode(n.eval(nil))
	}
	if n.depth > maxDepth {
		panic(bailout{p.errorAt(p.pos, "expression too complex")})
	}
	return n
}

// failAt records that a token did not match at offset q.
func (p *parser) failAt(q int, msg string) {
	switch {
	case q > p.far:
		p.far, p.farMsg = q, msg
	case q == p.far && p.farMsg == "":
		p.farMsg = msg
	}
}

// syntaxError describes the farthest point the parser could not get past.
func (p *parser) syntaxError() *Error {
	at := max(p.far, p.pos)
	if p.farMsg != "" && at == p.far {
		return p.errorAt(at, p.farMsg)
	}
	word := p.src[at:]
	for i := 0; i < len(word); i++ {
		if !isIdentByte(word[i]) {
			word = word[:i]
			break
		}
	}
	if word != "" {
		for _, c := range p.cols {
			if !equalFoldASCII(c.Name, word) {
				continue
			}
			switch {
			case !c.Visible:
				return p.errorAt(at, fmt.Sprintf("column %q is not an integer or temporal column", c.Name))
			case hasUpper(c.Name) || isKeyword(c.Name):
				return p.errorAt(at, fmt.Sprintf("column %q can only be referred to in backquotes", c.Name))
			}
		}
	}
	return p.errorAt(at, "syntax error")
}

func (p *parser) errorAt(at int, msg string) *Error {
	near := p.src[at:]
	if len(near) > nearLen {
		near = near[:nearLen] + "..."
	}
	return &Error{Offset: at, Near: near, Msg: msg}
}

// isSpace reports whether c is white space in the C locale, as Q4M skips it.
func isSpace(c byte) bool {
	return c == ' ' || c >= '\t' && c <= '\r'
}

// isIdentByte reports whether c can be part of an unquoted MySQL identifier.
func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '_' || c == '$' || c >= 0x80
}

func digitValue(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return 99
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// lowerEqual reports whether lower-casing s (ASCII only) gives t.
func lowerEqual(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != t[i] {
			return false
		}
	}
	return true
}

// equalFoldASCII compares s and t ignoring ASCII case only, like
// strcasecmp in the C locale.
func equalFoldASCII(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lower(t[i]) {
			return false
		}
	}
	return true
}

func hasUpper(s string) bool {
	return strings.IndexFunc(s, func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0
}

func isKeyword(name string) bool {
	for _, k := range keywords {
		if equalFoldASCII(name, k) {
			return true
		}
	}
	return false
}
