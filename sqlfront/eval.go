package sqlfront

import (
	"bytes"
	"context"
	"math"
	"strconv"
	"strings"

	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/opcode"
	"github.com/pingcap/tidb/pkg/parser/test_driver"
)

// evalEnv is what an expression is evaluated against: the session (for
// functions and variables), the statement's parameters, and the current
// row of a table scan, if any.
type evalEnv struct {
	ctx    context.Context
	s      *Session
	params []any
	sch    *tableSchema
	row    []any
	clause string // for "Unknown column 'x' in '<clause>'"
}

// evalConst evaluates an expression that may not refer to columns.
func (s *Session) evalConst(e ast.ExprNode) (any, error) {
	env := &evalEnv{ctx: context.Background(), s: s, clause: "field list"}
	return env.eval(e)
}

func (env *evalEnv) eval(e ast.ExprNode) (any, error) {
	switch x := e.(type) {
	case *test_driver.ParamMarkerExpr:
		if x.Order >= len(env.params) {
			return nil, errorf(ErrCodeWrongArguments, "Incorrect arguments to EXECUTE")
		}
		return env.params[x.Order], nil
	case *test_driver.ValueExpr:
		return literalValue(x.GetValue()), nil
	case *ast.ParenthesesExpr:
		return env.eval(x.Expr)
	case *ast.ColumnNameExpr:
		return env.column(x.Name)
	case *ast.DefaultExpr:
		return nil, notSupported("DEFAULT in an expression")
	case *ast.VariableExpr:
		return env.variable(x)
	case *ast.UnaryOperationExpr:
		v, err := env.eval(x.V)
		if err != nil {
			return nil, err
		}
		return unaryOp(x.Op, v)
	case *ast.BinaryOperationExpr:
		return env.binary(x)
	case *ast.IsNullExpr:
		v, err := env.eval(x.Expr)
		if err != nil {
			return nil, err
		}
		return boolVal((v == nil) != x.Not), nil
	case *ast.IsTruthExpr:
		v, err := env.eval(x.Expr)
		if err != nil {
			return nil, err
		}
		r := v != nil && truth(v) == (x.True != 0)
		return boolVal(r != x.Not), nil
	case *ast.PatternInExpr:
		return env.in(x)
	case *ast.BetweenExpr:
		v, err := env.eval(x.Expr)
		if err != nil {
			return nil, err
		}
		lo, err := env.eval(x.Left)
		if err != nil {
			return nil, err
		}
		hi, err := env.eval(x.Right)
		if err != nil {
			return nil, err
		}
		if v == nil || lo == nil || hi == nil {
			return nil, nil
		}
		r := compare(v, lo) >= 0 && compare(v, hi) <= 0
		return boolVal(r != x.Not), nil
	case *ast.PatternLikeOrIlikeExpr:
		return env.like(x)
	case *ast.FuncCallExpr:
		return env.call(x)
	case *ast.FuncCastExpr:
		v, err := env.eval(x.Expr)
		if err != nil || v == nil {
			return v, err
		}
		return castValue(v, x.Tp.GetType(), x.Tp.GetFlag())
	case *ast.AggregateFuncExpr:
		return nil, errorf(ErrCodeInvalidGroupFuncUse, "Invalid use of group function")
	case *ast.CaseExpr:
		return env.caseExpr(x)
	}
	return nil, notSupported("expression " + restoreExpr(e))
}

func literalValue(v any) any {
	switch x := v.(type) {
	case *test_driver.MyDecimal:
		return x.String()
	case test_driver.BinaryLiteral:
		return []byte(x)
	case float32:
		return float64(x)
	case bool:
		return boolVal(x)
	}
	return v
}

func boolVal(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (env *evalEnv) column(n *ast.ColumnName) (any, error) {
	if env.sch != nil {
		if i, _ := env.sch.column(n.Name.O); i >= 0 {
			if i < len(env.row) {
				return env.row[i], nil
			}
			return nil, nil
		}
	}
	name := n.Name.O
	if n.Table.O != "" {
		name = n.Table.O + "." + name
	}
	return nil, errorf(ErrCodeBadField, "Unknown column '%s' in '%s'", name, env.clause)
}

func (env *evalEnv) binary(x *ast.BinaryOperationExpr) (any, error) {
	l, err := env.eval(x.L)
	if err != nil {
		return nil, err
	}
	// Short-circuit logic, with SQL's NULL rules.
	switch x.Op {
	case opcode.LogicAnd:
		if l != nil && !truth(l) {
			return int64(0), nil
		}
	case opcode.LogicOr:
		if l != nil && truth(l) {
			return int64(1), nil
		}
	}
	r, err := env.eval(x.R)
	if err != nil {
		return nil, err
	}
	return binaryOp(x.Op, l, r)
}

func binaryOp(op opcode.Op, l, r any) (any, error) {
	switch op {
	case opcode.LogicAnd:
		if r != nil && !truth(r) {
			return int64(0), nil
		}
		if l == nil || r == nil {
			return nil, nil
		}
		return int64(1), nil
	case opcode.LogicOr:
		if r != nil && truth(r) {
			return int64(1), nil
		}
		if l == nil || r == nil {
			return nil, nil
		}
		return int64(0), nil
	case opcode.NullEQ:
		if l == nil || r == nil {
			return boolVal(l == nil && r == nil), nil
		}
		return boolVal(compare(l, r) == 0), nil
	}
	if l == nil || r == nil {
		return nil, nil
	}
	switch op {
	case opcode.LogicXor:
		return boolVal(truth(l) != truth(r)), nil
	case opcode.EQ:
		return boolVal(compare(l, r) == 0), nil
	case opcode.NE:
		return boolVal(compare(l, r) != 0), nil
	case opcode.LT:
		return boolVal(compare(l, r) < 0), nil
	case opcode.LE:
		return boolVal(compare(l, r) <= 0), nil
	case opcode.GT:
		return boolVal(compare(l, r) > 0), nil
	case opcode.GE:
		return boolVal(compare(l, r) >= 0), nil
	case opcode.Plus, opcode.Minus, opcode.Mul:
		if li, lok := asInt(l); lok {
			if ri, rok := asInt(r); rok {
				switch op {
				case opcode.Plus:
					s := li + ri
					if (s > li) == (ri > 0) {
						return s, nil
					}
				case opcode.Minus:
					s := li - ri
					if (s < li) == (ri > 0) {
						return s, nil
					}
				case opcode.Mul:
					if li == 0 || ri == 0 {
						return int64(0), nil
					}
					p := li * ri
					if p/ri == li && !(li == -1 && ri == math.MinInt64) && !(ri == -1 && li == math.MinInt64) {
						return p, nil
					}
				}
				return nil, errorf(ErrCodeValueOutOfRange, "BIGINT value is out of range in '(%v %s %v)'", li, op.String(), ri)
			}
		}
		lf, rf := toFloat(l), toFloat(r)
		switch op {
		case opcode.Plus:
			return lf + rf, nil
		case opcode.Minus:
			return lf - rf, nil
		}
		return lf * rf, nil
	case opcode.Div:
		rf := toFloat(r)
		if rf == 0 {
			return nil, nil
		}
		return toFloat(l) / rf, nil
	case opcode.IntDiv:
		li, lok := asInt(l)
		ri, rok := asInt(r)
		if lok && rok {
			if ri == 0 {
				return nil, nil
			}
			return li / ri, nil
		}
		rf := toFloat(r)
		if rf == 0 {
			return nil, nil
		}
		return int64(toFloat(l) / rf), nil
	case opcode.Mod:
		li, lok := asInt(l)
		ri, rok := asInt(r)
		if lok && rok {
			if ri == 0 {
				return nil, nil
			}
			return li % ri, nil
		}
		rf := toFloat(r)
		if rf == 0 {
			return nil, nil
		}
		return math.Mod(toFloat(l), rf), nil
	case opcode.And, opcode.Or, opcode.Xor, opcode.LeftShift, opcode.RightShift:
		lu, ru := toUint(l), toUint(r)
		switch op {
		case opcode.And:
			return lu & ru, nil
		case opcode.Or:
			return lu | ru, nil
		case opcode.Xor:
			return lu ^ ru, nil
		case opcode.LeftShift:
			if ru >= 64 {
				return uint64(0), nil
			}
			return lu << ru, nil
		}
		if ru >= 64 {
			return uint64(0), nil
		}
		return lu >> ru, nil
	}
	return nil, notSupported("operator " + op.String())
}

func unaryOp(op opcode.Op, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch op {
	case opcode.Minus:
		switch x := v.(type) {
		case int64:
			if x == math.MinInt64 {
				return nil, errorf(ErrCodeValueOutOfRange, "BIGINT value is out of range in '-(%d)'", x)
			}
			return -x, nil
		case uint64:
			if x <= 1<<63 {
				return -int64(x), nil
			}
			return -float64(x), nil
		case string:
			if isDecimalString(x) {
				if strings.HasPrefix(x, "-") {
					return x[1:], nil
				}
				return "-" + x, nil
			}
		}
		return -toFloat(v), nil
	case opcode.Plus:
		return v, nil
	case opcode.Not, opcode.Not2:
		return boolVal(!truth(v)), nil
	case opcode.BitNeg:
		return ^toUint(v), nil
	}
	return nil, notSupported("operator " + op.String())
}

func isDecimalString(s string) bool {
	if s == "" {
		return false
	}
	_, err := strconv.ParseFloat(s, 64)
	return err == nil && !strings.ContainsAny(s, "eEnN ")
}

func (env *evalEnv) in(x *ast.PatternInExpr) (any, error) {
	if x.Sel != nil {
		return nil, notSupported("subqueries")
	}
	v, err := env.eval(x.Expr)
	if err != nil {
		return nil, err
	}
	if v == nil {
		return nil, nil
	}
	sawNull := false
	for _, e := range x.List {
		w, err := env.eval(e)
		if err != nil {
			return nil, err
		}
		if w == nil {
			sawNull = true
			continue
		}
		if compare(v, w) == 0 {
			return boolVal(!x.Not), nil
		}
	}
	if sawNull {
		return nil, nil
	}
	return boolVal(x.Not), nil
}

func (env *evalEnv) like(x *ast.PatternLikeOrIlikeExpr) (any, error) {
	v, err := env.eval(x.Expr)
	if err != nil {
		return nil, err
	}
	p, err := env.eval(x.Pattern)
	if err != nil {
		return nil, err
	}
	if v == nil || p == nil {
		return nil, nil
	}
	esc := x.Escape
	if esc == 0 {
		esc = '\\'
	}
	m := likeMatch(strings.ToLower(toString(v)), strings.ToLower(toString(p)), esc)
	return boolVal(m != x.Not), nil
}

// likeMatch matches s against a LIKE pattern (% and _), case already folded.
func likeMatch(s, p string, esc byte) bool {
	sr, pr := []rune(s), []rune(p)
	var match func(i, j int) bool
	match = func(i, j int) bool {
		for j < len(pr) {
			c := pr[j]
			switch {
			case c == rune(esc) && j+1 < len(pr):
				if i >= len(sr) || sr[i] != pr[j+1] {
					return false
				}
				i, j = i+1, j+2
			case c == '%':
				for j < len(pr) && pr[j] == '%' {
					j++
				}
				if j == len(pr) {
					return true
				}
				for k := i; k <= len(sr); k++ {
					if match(k, j) {
						return true
					}
				}
				return false
			case c == '_':
				if i >= len(sr) {
					return false
				}
				i, j = i+1, j+1
			default:
				if i >= len(sr) || sr[i] != c {
					return false
				}
				i, j = i+1, j+1
			}
		}
		return i == len(sr)
	}
	return match(0, 0)
}

func (env *evalEnv) caseExpr(x *ast.CaseExpr) (any, error) {
	var base any
	var err error
	if x.Value != nil {
		if base, err = env.eval(x.Value); err != nil {
			return nil, err
		}
	}
	for _, w := range x.WhenClauses {
		c, err := env.eval(w.Expr)
		if err != nil {
			return nil, err
		}
		hit := false
		if x.Value != nil {
			hit = base != nil && c != nil && compare(base, c) == 0
		} else {
			hit = c != nil && truth(c)
		}
		if hit {
			return env.eval(w.Result)
		}
	}
	if x.ElseClause != nil {
		return env.eval(x.ElseClause)
	}
	return nil, nil
}

func (env *evalEnv) args(fc *ast.FuncCallExpr) ([]any, error) {
	out := make([]any, len(fc.Args))
	for i, a := range fc.Args {
		v, err := env.eval(a)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func wrongArgCount(name string) error {
	return errorf(ErrCodeNativeParamCount, "Incorrect parameter count in the call to native function '%s'", name)
}

// truth is SQL's notion of true for a non-NULL value.
func truth(v any) bool {
	switch x := v.(type) {
	case int64:
		return x != 0
	case uint64:
		return x != 0
	case float64:
		return x != 0
	}
	return toFloat(v) != 0
}

func asInt(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// toFloat converts like MySQL: strings by their numeric prefix.
func toFloat(v any) float64 {
	switch x := v.(type) {
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	case float64:
		return x
	case []byte:
		return numericPrefix(string(x))
	case string:
		return numericPrefix(x)
	}
	return 0
}

func numericPrefix(s string) float64 {
	s = strings.TrimSpace(s)
	end := 0
	seenDigit, seenDot, seenE := false, false, false
	for end < len(s) {
		c := s[end]
		switch {
		case c >= '0' && c <= '9':
			seenDigit = true
		case (c == '+' || c == '-') && (end == 0 || s[end-1] == 'e' || s[end-1] == 'E'):
		case c == '.' && !seenDot && !seenE:
			seenDot = true
		case (c == 'e' || c == 'E') && seenDigit && !seenE:
			seenE = true
		default:
			goto done
		}
		end++
	}
done:
	for end > 0 {
		if f, err := strconv.ParseFloat(s[:end], 64); err == nil {
			return f
		}
		end--
	}
	return 0
}

func toUint(v any) uint64 {
	switch x := v.(type) {
	case int64:
		return uint64(x)
	case uint64:
		return x
	}
	f := toFloat(v)
	if f < 0 {
		return uint64(int64(math.Round(f)))
	}
	return uint64(math.Round(f))
}

// toString renders a value as MySQL's text protocol would.
func toString(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float64:
		return formatFloat(x, 64)
	}
	return ""
}

func formatFloat(f float64, bits int) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, bits)
	}
	s := strconv.FormatFloat(f, 'g', -1, bits)
	return strings.Replace(s, "e+", "e", 1)
}

// compare compares two non-NULL values: numerically when either is a
// number, else as strings (case-insensitively unless either is binary).
func compare(a, b any) int {
	_, aStr := a.(string)
	_, bStr := b.(string)
	ab, aBin := a.([]byte)
	bb, bBin := b.([]byte)
	switch {
	case (aStr || aBin) && (bStr || bBin):
		if aBin || bBin {
			if !aBin {
				ab = []byte(a.(string))
			}
			if !bBin {
				bb = []byte(b.(string))
			}
			return bytes.Compare(bytes.TrimRight(ab, " "), bytes.TrimRight(bb, " "))
		}
		return strings.Compare(strings.ToLower(strings.TrimRight(a.(string), " ")), strings.ToLower(strings.TrimRight(b.(string), " ")))
	}
	if ai, ok := asInt(a); ok {
		if bi, ok := asInt(b); ok {
			switch {
			case ai < bi:
				return -1
			case ai > bi:
				return 1
			}
			return 0
		}
	}
	if au, ok := a.(uint64); ok {
		if bu, ok := b.(uint64); ok {
			switch {
			case au < bu:
				return -1
			case au > bu:
				return 1
			}
			return 0
		}
	}
	af, bf := toFloat(a), toFloat(b)
	switch {
	case af < bf:
		return -1
	case af > bf:
		return 1
	}
	return 0
}

func castValue(v any, tp byte, flag uint) (any, error) {
	switch tp {
	case 8: // SIGNED / UNSIGNED
		n, ok := toIntegerStrict(v)
		if !ok {
			return int64(toFloat(v)), nil
		}
		if n.IsInt64() {
			return n.Int64(), nil
		}
		return n.Uint64(), nil
	case 246, 5, 4:
		return toFloat(v), nil
	}
	return toString(v), nil
}
