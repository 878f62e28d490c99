package sqlfront

import (
	"fmt"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// DecodeNamed returns the column values of a row of table t by column name:
// nil, int64, uint64, float64, string or []byte. It is what in-process
// consumers (the valve) use to read rows.
func (e *Engine) DecodeNamed(t queue.Table, payload []byte) (map[string]any, error) {
	sch, err := e.schema(t)
	if err != nil {
		return nil, err
	}
	vals, err := decodeRow(payload, nil)
	if err != nil {
		return nil, err
	}
	out := make(map[string]any, len(sch.Columns))
	for i, c := range sch.Columns {
		if i < len(vals) {
			out[c.Name] = vals[i]
		} else {
			out[c.Name] = nil
		}
	}
	return out, nil
}

// EncodeNamed builds a row of table t from values by column name, as an
// INSERT naming those columns would: values are converted with strict
// mode's checks and omitted columns get their defaults.
func (e *Engine) EncodeNamed(t queue.Table, vals map[string]any) ([]byte, error) {
	sch, err := e.schema(t)
	if err != nil {
		return nil, err
	}
	for name := range vals {
		if i, _ := sch.column(name); i < 0 {
			return nil, errorf(ErrCodeBadField, "Unknown column '%s' in 'field list'", name)
		}
	}
	row := make([]any, len(sch.Columns))
	now := time.Now()
	for i, c := range sch.Columns {
		v, ok := vals[c.Name]
		if !ok {
			if v, err = defaultValue(c, 1, now); err != nil {
				return nil, err
			}
			row[i] = v
			continue
		}
		if v == nil {
			if c.NotNull {
				return nil, errorf(ErrCodeBadNull, "Column '%s' cannot be null", c.Name)
			}
			continue
		}
		if tm, isTime := v.(time.Time); isTime {
			v = tm.Format("2006-01-02 15:04:05")
		}
		cv, err := convertValue(c, v, 1)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", t.Name(), c.Name, err)
		}
		row[i] = cv
	}
	return encodeRow(row), nil
}
