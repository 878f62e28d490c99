package sqlfront

import (
	"crypto/md5"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/pingcap/tidb/pkg/parser/ast"

	"github.com/q4mproxy/q4mproxy/queue"
)

// builtin is one SQL function q4mproxy evaluates itself (the queue
// functions have their own table, queuefuncs.go). The arity is checked
// and NULL arguments handled before fn runs, so each fn holds only what
// the function computes.
type builtin struct {
	min, max int  // argument count; max < 0: no upper bound
	strict   bool // a count outside [min, max] is 1582; otherwise extra arguments are ignored
	nullNull bool // any NULL argument makes the result NULL
	fn       func(env *evalEnv, name string, args []any) (any, error)
}

// builtins by lower-case name. Aliases share an entry; fn gets the name
// it was called by.
var builtins = map[string]*builtin{}

func init() {
	def := func(b builtin, names ...string) {
		for _, n := range names {
			builtins[n] = &b
		}
	}
	exact := func(n int) builtin { return builtin{min: n, max: n, strict: true} }
	unary := func(fn func(string) any) builtin {
		b := exact(1)
		b.nullNull = true
		b.fn = func(_ *evalEnv, _ string, a []any) (any, error) { return fn(toString(a[0])), nil }
		return b
	}
	with := func(b builtin, nullNull bool, fn func(env *evalEnv, name string, args []any) (any, error)) builtin {
		b.nullNull, b.fn = nullNull, fn
		return b
	}
	loose := builtin{max: -1} // the count is not checked; extra arguments are ignored

	// The session.
	def(with(exact(0), false, func(env *evalEnv, _ string, _ []any) (any, error) { return env.s.eng.cfg.Version, nil }), "version")
	def(with(exact(0), false, func(env *evalEnv, _ string, _ []any) (any, error) {
		if env.s.db == "" {
			return nil, nil
		}
		return env.s.db, nil
	}), "database", "schema")
	def(with(loose, false, func(env *evalEnv, _ string, _ []any) (any, error) { return env.s.user + "@" + env.s.host, nil }),
		"user", "session_user", "system_user", "current_user")
	def(with(exact(0), false, func(env *evalEnv, _ string, _ []any) (any, error) { return uint64(env.s.connID), nil }), "connection_id")
	def(with(loose, false, func(env *evalEnv, _ string, _ []any) (any, error) { return env.s.lastInsertID, nil }), "last_insert_id")
	def(with(loose, false, func(env *evalEnv, _ string, _ []any) (any, error) { return env.s.lastRowCount, nil }), "row_count")
	def(with(loose, false, func(env *evalEnv, _ string, _ []any) (any, error) { return env.s.lastFoundRows, nil }), "found_rows")

	// Time.
	now := func(layout string) func(*evalEnv, string, []any) (any, error) {
		return func(*evalEnv, string, []any) (any, error) { return time.Now().Format(layout), nil }
	}
	def(with(loose, false, now("2006-01-02 15:04:05")), "now", "current_timestamp", "localtime", "localtimestamp", "sysdate")
	def(with(exact(0), false, now("2006-01-02")), "curdate", "current_date")
	def(with(loose, false, now("15:04:05")), "curtime", "current_time")
	def(with(loose, false, func(*evalEnv, string, []any) (any, error) {
		return time.Now().UTC().Format("2006-01-02 15:04:05"), nil
	}), "utc_timestamp")
	def(with(loose, false, func(_ *evalEnv, _ string, a []any) (any, error) {
		if len(a) == 0 {
			return time.Now().Unix(), nil
		}
		if a[0] == nil {
			return nil, nil
		}
		t, err := time.ParseInLocation("2006-01-02 15:04:05", toString(a[0]), time.Local)
		if err != nil {
			if t, err = time.ParseInLocation("2006-01-02", toString(a[0]), time.Local); err != nil {
				return int64(0), nil
			}
		}
		return t.Unix(), nil
	}), "unix_timestamp")
	def(with(exact(1), true, func(_ *evalEnv, _ string, a []any) (any, error) {
		return time.Unix(int64(toFloat(a[0])), 0).Format("2006-01-02 15:04:05"), nil
	}), "from_unixtime")
	def(with(exact(1), true, func(env *evalEnv, _ string, a []any) (any, error) {
		d := time.Duration(toFloat(a[0]) * float64(time.Second))
		t := time.NewTimer(d)
		defer t.Stop()
		queue.Blocking(env.ctx)
		select {
		case <-t.C:
			return int64(0), nil
		case <-env.ctx.Done():
			return int64(1), nil
		}
	}), "sleep")

	// Strings.
	def(with(loose, true, func(_ *evalEnv, _ string, a []any) (any, error) {
		var b []byte
		for _, v := range a {
			b = append(b, toString(v)...)
		}
		return string(b), nil
	}), "concat")
	def(with(builtin{min: 1, max: -1, strict: true}, false, func(_ *evalEnv, _ string, a []any) (any, error) {
		if a[0] == nil {
			return nil, nil
		}
		var parts []string
		for _, v := range a[1:] {
			if v != nil {
				parts = append(parts, toString(v))
			}
		}
		return strings.Join(parts, toString(a[0])), nil
	}), "concat_ws")
	def(unary(func(s string) any { return int64(len(s)) }), "length", "octet_length")
	def(unary(func(s string) any { return int64(len([]rune(s))) }), "char_length", "character_length")
	def(unary(func(s string) any { return strings.ToUpper(s) }), "upper", "ucase")
	def(unary(func(s string) any { return strings.ToLower(s) }), "lower", "lcase")
	def(unary(func(s string) any { sum := md5.Sum([]byte(s)); return hex.EncodeToString(sum[:]) }), "md5")
	def(unary(func(s string) any {
		r := []rune(s)
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		return string(r)
	}), "reverse")
	def(with(exact(1), true, func(_ *evalEnv, _ string, a []any) (any, error) {
		if i, ok := asInt(a[0]); ok {
			return strings.ToUpper(strconv.FormatUint(uint64(i), 16)), nil
		}
		return strings.ToUpper(hex.EncodeToString([]byte(toString(a[0])))), nil
	}), "hex")
	def(with(exact(1), true, func(_ *evalEnv, name string, a []any) (any, error) {
		switch name {
		case "ltrim":
			return strings.TrimLeft(toString(a[0]), " "), nil
		case "rtrim":
			return strings.TrimRight(toString(a[0]), " "), nil
		}
		return strings.Trim(toString(a[0]), " "), nil
	}), "trim", "ltrim", "rtrim")
	def(with(exact(2), true, func(env *evalEnv, _ string, a []any) (any, error) {
		n, str := coerceInt(a[1]), toString(a[0])
		if n <= 0 {
			return "", nil
		}
		if int64(len(str))*n > env.s.eng.cfg.MaxAllowedPacket {
			return nil, nil // MySQL returns NULL beyond max_allowed_packet
		}
		return strings.Repeat(str, int(n)), nil
	}), "repeat")
	def(with(exact(1), true, func(env *evalEnv, _ string, a []any) (any, error) {
		n := coerceInt(a[0])
		if n <= 0 {
			return "", nil
		}
		if n > env.s.eng.cfg.MaxAllowedPacket {
			return nil, nil
		}
		return strings.Repeat(" ", int(n)), nil
	}), "space")
	def(with(builtin{min: 2, max: 3, strict: true}, true, func(_ *evalEnv, _ string, a []any) (any, error) {
		r := []rune(toString(a[0]))
		pos := coerceInt(a[1])
		if pos < 0 {
			pos = int64(len(r)) + pos + 1
		}
		if pos < 1 || pos > int64(len(r)) {
			return "", nil
		}
		end := int64(len(r))
		if len(a) == 3 {
			end = min(end, pos-1+max(coerceInt(a[2]), 0))
		}
		return string(r[pos-1 : end]), nil
	}), "substring", "substr", "mid")
	def(with(exact(3), true, func(_ *evalEnv, _ string, a []any) (any, error) {
		return substringIndex(toString(a[0]), toString(a[1]), coerceInt(a[2])), nil
	}), "substring_index")
	def(with(exact(3), true, func(_ *evalEnv, _ string, a []any) (any, error) {
		return strings.ReplaceAll(toString(a[0]), toString(a[1]), toString(a[2])), nil
	}), "replace")

	// Control flow.
	def(with(exact(2), false, func(_ *evalEnv, _ string, a []any) (any, error) {
		if a[0] != nil {
			return a[0], nil
		}
		return a[1], nil
	}), "ifnull")
	def(with(loose, false, func(_ *evalEnv, _ string, a []any) (any, error) {
		for _, v := range a {
			if v != nil {
				return v, nil
			}
		}
		return nil, nil
	}), "coalesce")
	def(with(exact(3), false, func(_ *evalEnv, _ string, a []any) (any, error) {
		if a[0] != nil && truth(a[0]) {
			return a[1], nil
		}
		return a[2], nil
	}), "if")

	// Numbers.
	def(with(exact(1), true, func(_ *evalEnv, _ string, a []any) (any, error) {
		if i, ok := asInt(a[0]); ok && i != math.MinInt64 {
			return max(i, -i), nil
		}
		return math.Abs(toFloat(a[0])), nil
	}), "abs")
	def(with(loose, false, func(_ *evalEnv, name string, a []any) (any, error) {
		if len(a) < 1 || a[0] == nil {
			return nil, nil
		}
		if i, ok := asInt(a[0]); ok {
			return i, nil
		}
		f := toFloat(a[0])
		switch name {
		case "floor":
			return int64(math.Floor(f)), nil
		case "round":
			return int64(math.Round(f)), nil
		}
		return int64(math.Ceil(f)), nil
	}), "floor", "ceil", "ceiling", "round")
	def(with(loose, false, func(*evalEnv, string, []any) (any, error) { return rand.Float64(), nil }), "rand")
}

// call evaluates a function call: a queue function, a built-in, or 1305.
func (env *evalEnv) call(fc *ast.FuncCallExpr) (any, error) {
	name := fc.FnName.L
	if isQueueFunc(name) {
		return env.s.queueFunc(env, fc)
	}
	b := builtins[name]
	if b == nil {
		db := env.s.db
		if db == "" {
			db = "test"
		}
		return nil, errorf(ErrCodeNoSuchFunction, "FUNCTION %s.%s does not exist", db, fc.FnName.O)
	}
	args, err := env.args(fc)
	if err != nil {
		return nil, err
	}
	if b.strict && (len(args) < b.min || b.max >= 0 && len(args) > b.max) {
		return nil, wrongArgCount(fc.FnName.O)
	}
	if b.nullNull {
		for _, a := range args {
			if a == nil {
				return nil, nil
			}
		}
	}
	return b.fn(env, name, args)
}
