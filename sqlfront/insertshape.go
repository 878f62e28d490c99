package sqlfront

import (
	"context"
	"strconv"

	"github.com/pingcap/tidb/pkg/parser/ast"
)

// Producers send the same INSERT over and over with other values, and
// parsing is most of an INSERT's CPU cost. So an INSERT text is first split
// into its shape (the text with each plain literal replaced by ?) and the
// literals' values; the shape is parsed once per session, like a prepared
// statement, and executed with the values bound to its markers. A literal
// and a bound value evaluate alike (int64 and string both ways). Anything
// the splitter does not fully understand (comments, double quotes, hex,
// decimal and float literals, character set introducers, adjacent strings,
// ...) makes it give up, and the text is parsed as it is.

// Bounds of the per-session cache of INSERT shapes.
const (
	maxCachedShapes  = 16
	maxCachedShapeSz = 2048
)

// execInsertShape runs sql through the shape cache if it is a plain INSERT
// whose shape parses as an INSERT ... VALUES; ok is false otherwise, and
// the caller parses sql itself.
func (s *Session) execInsertShape(ctx context.Context, sql string) (r *Result, ok bool, err error) {
	st, args, ok := s.shapeStmt(sql)
	if !ok {
		return nil, false, nil
	}
	// The statement may keep the values (rows hold them until encoded), so
	// it gets a copy of its own; the scratch slice is reused.
	r, err = s.execStmt(ctx, st.node, append([]any(nil), args...))
	clear(args)
	return r, true, err
}

// shapeStmt splits sql into its shape and literal values and returns the
// shape's parsed statement from the session's cache (parsing it on a miss);
// ok is false for a text that is not a plain INSERT. args is scratch space,
// valid until the next call.
func (s *Session) shapeStmt(sql string) (st *Stmt, args []any, ok bool) {
	shape, args, ok := splitInsert(sql, s.shapeBuf[:0], s.shapeArgs[:0])
	s.shapeBuf, s.shapeArgs = shape[:0], args[:0]
	if !ok || len(shape) > maxCachedShapeSz {
		clear(args)
		return nil, nil, false
	}
	st, cached := s.shapes[string(shape)] // no allocation for the lookup
	if !cached {
		st = s.prepareShape(string(shape), len(args))
		if s.shapes == nil || len(s.shapes) >= maxCachedShapes {
			s.shapes = make(map[string]*Stmt, maxCachedShapes)
		}
		s.shapes[string(shape)] = st
	}
	if st == nil {
		clear(args)
		return nil, nil, false
	}
	return st, args, true
}

// prepareShape parses a shape; nil means "do not use the shape", kept so
// that the next text of that shape is not tried again.
func (s *Session) prepareShape(shape string, nargs int) *Stmt {
	st, err := s.Prepare(shape)
	if err != nil || st.params != nargs {
		return nil
	}
	ins, isInsert := st.node.(*ast.InsertStmt)
	if !isInsert || ins.Select != nil || ins.Setlist || len(ins.OnDuplicate) > 0 || len(ins.Lists) == 0 {
		return nil
	}
	return st
}

// splitInsert returns the shape of an INSERT text and the values of its
// literals, appended to shape and args; ok is false for anything but an
// INSERT made of identifiers, keywords, punctuation, decimal integers that
// fit int64 and single-quoted strings.
func splitInsert(sql string, shape []byte, args []any) (_ []byte, _ []any, ok bool) {
	i := 0
	for i < len(sql) && isSpace(sql[i]) {
		i++
	}
	if len(sql)-i < 6 || !equalFoldASCII(sql[i:i+6], "insert") {
		return shape, args, false
	}
	prevLiteral := false // the last token was a literal (only spaces since)
	for i < len(sql) {
		c := sql[i]
		switch {
		case isSpace(c):
			shape = append(shape, c)
			i++
			continue
		case c == '\'':
			if prevLiteral || (i > 0 && isIdentByte(sql[i-1])) {
				return shape, args, false // 'a' 'b' concatenates; _utf8'x', N'x', X'..' are not plain
			}
			v, n, ok := unquoteSingle(sql[i:])
			if !ok {
				return shape, args, false
			}
			shape = append(shape, '?')
			args = append(args, v)
			i += n
			prevLiteral = true
			continue
		case c >= '0' && c <= '9':
			j := i
			for j < len(sql) && sql[j] >= '0' && sql[j] <= '9' {
				j++
			}
			if j < len(sql) && (isIdentByte(sql[j]) || sql[j] == '.') {
				return shape, args, false // 1e5, 0x1F, 1.5, 1abc
			}
			if i > 0 && (isIdentByte(sql[i-1]) || sql[i-1] == '.') {
				return shape, args, false
			}
			v, err := strconv.ParseInt(sql[i:j], 10, 64)
			if err != nil {
				return shape, args, false // beyond int64: uint64 or decimal
			}
			if prevLiteral {
				return shape, args, false
			}
			shape = append(shape, '?')
			args = append(args, v)
			i = j
			prevLiteral = true
			continue
		case c == '`':
			j := i + 1
			for {
				if j >= len(sql) {
					return shape, args, false
				}
				if sql[j] == '`' {
					if j+1 < len(sql) && sql[j+1] == '`' {
						j += 2
						continue
					}
					break
				}
				j++
			}
			shape = append(shape, sql[i:j+1]...)
			i = j + 1
		case isIdentByte(c):
			j := i
			for j < len(sql) && isIdentByte(sql[j]) {
				j++
			}
			shape = append(shape, sql[i:j]...)
			i = j
		case c == '(' || c == ')' || c == ',' || c == '=' || c == ';' || c == '+' || c == '*':
			shape = append(shape, c)
			i++
		case c == '.':
			if i+1 < len(sql) && sql[i+1] >= '0' && sql[i+1] <= '9' {
				return shape, args, false // .5
			}
			shape = append(shape, c)
			i++
		case c == '-':
			if i+1 < len(sql) && sql[i+1] == '-' {
				return shape, args, false // a comment
			}
			shape = append(shape, c)
			i++
		default: // comments, "strings", ?, @variables, operators, ...
			return shape, args, false
		}
		prevLiteral = false
	}
	return shape, args, true
}

// unquoteSingle reads the single-quoted string at the start of s with
// MySQL's escapes (the default sql_mode), returning its value and length.
func unquoteSingle(s string) (string, int, bool) {
	// Fast path: no escapes.
	for j := 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			return unquoteSlow(s)
		case '\'':
			if j+1 < len(s) && s[j+1] == '\'' {
				return unquoteSlow(s)
			}
			return s[1:j], j + 1, true
		}
	}
	return "", 0, false
}

func unquoteSlow(s string) (string, int, bool) {
	b := make([]byte, 0, len(s))
	for j := 1; j < len(s); j++ {
		c := s[j]
		switch c {
		case '\\':
			j++
			if j >= len(s) {
				return "", 0, false
			}
			switch e := s[j]; e {
			case '0':
				b = append(b, 0)
			case 'b':
				b = append(b, '\b')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'Z':
				b = append(b, 0x1a)
			case '%', '_':
				b = append(b, '\\', e) // kept, for LIKE
			default:
				b = append(b, e)
			}
		case '\'':
			if j+1 < len(s) && s[j+1] == '\'' {
				b = append(b, '\'')
				j++
				continue
			}
			return string(b), j + 1, true
		default:
			b = append(b, c)
		}
	}
	return "", 0, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// isIdentByte reports whether c can be part of an unquoted identifier (any
// byte of a multi-byte UTF-8 character can).
func isIdentByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '$' || c >= 0x80
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// insertShapeStmt returns the parsed shape of an INSERT text, through the
// same cache (for routing, which needs only the statement's tables).
func (s *Session) insertShapeStmt(sql string) (ast.StmtNode, bool) {
	st, args, ok := s.shapeStmt(sql)
	if !ok {
		return nil, false
	}
	clear(args)
	return st.node, true
}
