package sqlfront

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront/cond"
)

// errBadCondition makes queue_wait return NULL: a condition did not
// compile (Q4M logs "failed to compile expression").
var errBadCondition = errors.New("sqlfront: bad condition")

// condFilter is a compiled 'table:expression' condition, as a queue.Filter.
type condFilter struct {
	src  string
	expr *cond.Expr
	sch  *tableSchema
	eng  *Engine
}

func (f *condFilter) Key() string { return f.src }

// Match decodes the columns the expression uses and evaluates it.
func (f *condFilter) Match(payload []byte) bool {
	f.eng.counters.evaluation.Add(1)
	var buf [8]any
	vals, err := decodeRow(payload, buf[:0])
	if err != nil {
		return false
	}
	return f.expr.Match(func(i int) (int64, bool) {
		if i >= len(vals) {
			return 0, false
		}
		return condValue(f.sch.Columns[i], vals[i])
	})
}

// condVisible reports whether a column can be used in a condition: Q4M
// sees integer and temporal columns only.
func condVisible(c *columnDef) bool {
	switch c.Type {
	case pmysql.TypeTiny, pmysql.TypeShort, pmysql.TypeInt24, pmysql.TypeLong, pmysql.TypeLonglong,
		pmysql.TypeTimestamp, pmysql.TypeDate, pmysql.TypeDatetime, pmysql.TypeDuration:
		return true
	}
	return false
}

// condValue is a column's value in a condition, with the meanings of
// MySQL <= 5.5's storage that Q4M's conditions use: TIMESTAMP is Unix
// seconds, DATE is YYYY*512+MM*32+DD, DATETIME is YYYYMMDDhhmmss and TIME
// is +-hhmmss. Integers are their values (BIGINT UNSIGNED above 2^63-1
// wraps to negative: conditions work on signed 64-bit integers).
func condValue(c *columnDef, v any) (int64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, false
	case int64:
		return x, true
	case uint64:
		return int64(x), true
	case string:
		switch c.Type {
		case pmysql.TypeTimestamp:
			t, err := time.ParseInLocation("2006-01-02 15:04:05", x[:min(len(x), 19)], time.Local)
			if err != nil {
				return 0, true // the zero timestamp
			}
			return t.Unix(), true
		case pmysql.TypeDate:
			if len(x) < 10 {
				return 0, false
			}
			y, _ := strconv.Atoi(x[0:4])
			m, _ := strconv.Atoi(x[5:7])
			d, _ := strconv.Atoi(x[8:10])
			return int64(y*512 + m*32 + d), true
		case pmysql.TypeDatetime:
			digits := strings.NewReplacer("-", "", " ", "", ":", "").Replace(x[:min(len(x), 19)])
			n, _ := strconv.ParseInt(digits, 10, 64)
			return n, true
		case pmysql.TypeDuration:
			neg := strings.HasPrefix(x, "-")
			hms, _, _ := strings.Cut(strings.TrimPrefix(x, "-"), ".")
			n, _ := strconv.ParseInt(strings.ReplaceAll(hms, ":", ""), 10, 64)
			if neg {
				n = -n
			}
			return n, true
		}
	}
	return 0, false
}

// condCache holds compiled conditions per table definition and source
// text, so that a consumer loop compiles its condition once. It is bounded:
// conditions that embed changing values (a timestamp, say) must not grow
// it without limit (Q4M's issue #5).
type condCache struct {
	mu sync.Mutex
	m  map[condKey]*condFilter
}

type condKey struct {
	meta *byte // the table definition (metadata is immutable per version)
	src  string
}

const maxCachedConds = 1024

// compileCond compiles src against table t, using the cache.
func (e *Engine) compileCond(t queue.Table, src string) (*condFilter, error) {
	key := condKey{unsafe.SliceData(t.Meta()), src}
	e.conds.mu.Lock()
	f := e.conds.m[key]
	e.conds.mu.Unlock()
	if f != nil {
		e.counters.compileCacheHit.Add(1)
		return f, nil
	}
	e.counters.compile.Add(1)
	sch, err := e.schema(t)
	if err != nil {
		return nil, err
	}
	cols := make([]cond.Column, len(sch.Columns))
	for i, c := range sch.Columns {
		cols[i] = cond.Column{Name: c.Name, Visible: condVisible(c)}
	}
	expr, err := cond.Compile(src, cols)
	if err != nil {
		e.log.Info("failed to compile expression", "table", t.Database()+"."+t.Name(), "expr", src, "err", err)
		return nil, errBadCondition
	}
	f = &condFilter{src: src, expr: expr, sch: sch, eng: e}
	e.conds.mu.Lock()
	if e.conds.m == nil || len(e.conds.m) >= maxCachedConds {
		e.conds.m = map[condKey]*condFilter{}
	}
	e.conds.m[key] = f
	e.conds.mu.Unlock()
	return f, nil
}
