package sqlfront

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// SelectedRows takes the rows of an INSERT INTO queue_table SELECT ... as
// the upstream sends them (Columns once, then Row for each row), and
// Insert writes them into the queue table in one atomic insert.
//
// Each row is converted and encoded as it arrives, into shared chunks of
// memory, and the upstream's packets and values are not kept: what the
// statement holds is the encoded rows, once (about their stored size, plus
// a slice header per row). The store's write batch copies them again
// while it commits, so a statement needs about twice its rows' stored
// size at its peak. The rows cannot be written before the last has
// arrived without giving up atomicity (rowids are handed out, and the
// batch committed, under the store's writer).
type SelectedRows struct {
	s        *Session
	t        queue.Table
	sch      *tableSchema
	targets  []int
	now      time.Time
	vals     []any
	set      []bool
	chunk    []byte
	payloads [][]byte
}

// selectedChunk is the size of the chunks rows are encoded into.
const selectedChunk = 256 << 10

// StartInsertSelect checks the INSERT's table and target columns, before
// the upstream runs the SELECT.
func (s *Session) StartInsertSelect(is *InsertSelect) (*SelectedRows, error) {
	s.warnings = nil
	t, sch, targets, err := s.resolveInsert(is.ins)
	if err != nil {
		return nil, err
	}
	return &SelectedRows{
		s: s, t: t, sch: sch, targets: targets, now: time.Now(),
		vals: make([]any, len(sch.Columns)), set: make([]bool, len(sch.Columns)),
	}, nil
}

// Columns takes the SELECT's column names: there must be one per target
// column.
func (w *SelectedRows) Columns(names []string) error {
	if len(names) != len(w.targets) {
		return errorf(ErrCodeWrongValueCount, "Column count doesn't match value count at row 1")
	}
	return nil
}

// Row takes one row of the SELECT's result (text protocol values, nil for
// NULL; not kept after the call) and encodes it.
func (w *SelectedRows) Row(vals [][]byte) error {
	rowNum := len(w.payloads) + 1
	if len(vals) != len(w.targets) {
		return errorf(ErrCodeWrongValueCount, "Column count doesn't match value count at row %d", rowNum)
	}
	clear(w.set)
	for k, v := range vals {
		i := w.targets[k]
		c := w.sch.Columns[i]
		w.set[i] = true
		if v == nil {
			if c.NotNull {
				return errorf(ErrCodeBadNull, "Column '%s' cannot be null", c.Name)
			}
			w.vals[i] = nil
			continue
		}
		cv, err := convertValue(c, string(v), rowNum)
		if err != nil {
			return err
		}
		w.vals[i] = cv
	}
	if err := fillDefaults(w.sch, w.vals, w.set, rowNum, w.now); err != nil {
		return err
	}
	n := rowSize(w.vals)
	if cap(w.chunk)-len(w.chunk) < n {
		w.chunk = make([]byte, 0, max(n, selectedChunk))
	}
	start := len(w.chunk)
	w.chunk = appendRow(w.chunk, w.vals)
	w.payloads = append(w.payloads, w.chunk[start:len(w.chunk):len(w.chunk)])
	clear(w.vals) // let converted values go
	return nil
}

// Insert writes the rows taken into the queue table, all or none, with
// the relay source of queue_set_srcid if one is pending. When the table
// was changed meanwhile, the rows are written into it all the same if its
// definition is the one they were encoded for (a TRUNCATE); otherwise the
// statement fails with 1412, as the rows are gone.
func (w *SelectedRows) Insert() (*Result, error) {
	s := w.s
	for try := 0; ; try++ {
		r, err := s.insertPayloads(w.t, w.payloads)
		if !errors.Is(err, errTableChanged) {
			return r, err
		}
		t, err := s.eng.db.Table(w.t.Database(), w.t.Name())
		if err != nil {
			return nil, &TableError{Database: w.t.Database(), Table: w.t.Name(), Err: err}
		}
		if !bytes.Equal(t.Meta(), w.t.Meta()) || try == 3 {
			return nil, errorf(ErrCodeTableDefChanged, "Table definition has changed, please retry transaction")
		}
		w.t = t
	}
}

// Bind returns the statement with the parameters of a prepared INSERT ...
// SELECT written into its SELECT as literals (values as a prepared
// statement's execution decodes them: nil, int64, uint64, float64, string,
// []byte), since the upstream runs the SELECT as text. A string is quoted
// with its quotes doubled, which reads the same whatever the upstream's
// sql_mode (NO_BACKSLASH_ESCAPES); one holding a backslash or a NUL, and
// bytes, are written in hexadecimal (a binary string).
func (is *InsertSelect) Bind(args []any) (*InsertSelect, error) {
	var b strings.Builder
	sel := is.Select
	n := 0
	for i := 0; i < len(sel); i++ {
		switch c := sel[i]; {
		case c == '\'' || c == '"' || c == '`':
			j := i + 1
			for j < len(sel) && sel[j] != c {
				if sel[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			b.WriteString(sel[i:min(j+1, len(sel))])
			i = j
		case c == '#' || c == '-' && strings.HasPrefix(sel[i:], "-- "):
			j := strings.IndexByte(sel[i:], '\n')
			if j < 0 {
				j = len(sel) - i - 1
			}
			b.WriteString(sel[i : i+j+1])
			i += j
		case c == '/' && strings.HasPrefix(sel[i:], "/*"):
			j := strings.Index(sel[i+2:], "*/")
			if j < 0 {
				j = len(sel) - i - 4
			}
			b.WriteString(sel[i : i+j+4])
			i += j + 3
		case c == '?':
			if n == len(args) {
				return nil, errorf(ErrCodeWrongArguments, "Incorrect arguments to mysqld_stmt_execute")
			}
			if i > 0 && sel[i-1] == '-' {
				b.WriteByte(' ') // "- -1", not the start of a comment
			}
			if err := writeLiteral(&b, args[n]); err != nil {
				return nil, err
			}
			n++
		default:
			b.WriteByte(c)
		}
	}
	if n != len(args) {
		return nil, notSupported("parameters outside the SELECT of a prepared INSERT ... SELECT")
	}
	return &InsertSelect{ins: is.ins, Select: b.String()}, nil
}

// writeLiteral writes v as an SQL literal.
func writeLiteral(b *strings.Builder, v any) error {
	switch x := v.(type) {
	case nil:
		b.WriteString("NULL")
	case int64:
		b.WriteString(strconv.FormatInt(x, 10))
	case uint64:
		b.WriteString(strconv.FormatUint(x, 10))
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return errorf(ErrCodeWrongArguments, "Incorrect arguments to mysqld_stmt_execute")
		}
		b.WriteString(strconv.FormatFloat(x, 'e', -1, 64))
	case string:
		if strings.ContainsAny(x, "\\\x00") {
			writeHex(b, []byte(x))
			break
		}
		b.WriteByte('\'')
		b.WriteString(strings.ReplaceAll(x, "'", "''"))
		b.WriteByte('\'')
	case []byte:
		writeHex(b, x)
	default:
		return fmt.Errorf("sqlfront: cannot write a %T parameter", v)
	}
	return nil
}

func writeHex(b *strings.Builder, p []byte) {
	b.WriteString("X'")
	b.WriteString(hex.EncodeToString(p))
	b.WriteByte('\'')
}
