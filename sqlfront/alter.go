package sqlfront

import (
	"math/big"
	"slices"
	"strings"
	"time"

	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
)

// alterTable supports ADD [COLUMN] and DROP [COLUMN] (and table options
// that keep ENGINE=queue). Every row is rewritten to the new definition
// atomically; owners keep their rows, projected onto the new columns.
func (s *Session) alterTable(at *ast.AlterTableStmt) (*Result, error) {
	t, old, err := s.resolve(at.Table)
	if err != nil {
		return nil, err
	}
	sch := &tableSchema{Charset: old.Charset, Collate: old.Collate, Comment: old.Comment}
	sch.Columns = slices.Clone(old.Columns)
	for _, spec := range at.Specs {
		switch spec.Tp {
		case ast.AlterTableAddColumns:
			if len(spec.NewConstraints) > 0 {
				return nil, errorf(ErrCodeTooManyKeys, "Too many keys specified; max 0 keys allowed")
			}
			pos := len(sch.Columns)
			if p := spec.Position; p != nil {
				switch p.Tp {
				case ast.ColumnPositionFirst:
					pos = 0
				case ast.ColumnPositionAfter:
					i, _ := sch.column(p.RelativeColumn.Name.O)
					if i < 0 {
						return nil, errorf(ErrCodeBadField, "Unknown column '%s' in '%s'", p.RelativeColumn.Name.O, t.Name())
					}
					pos = i + 1
				}
			}
			for _, cd := range spec.NewColumns {
				c, err := s.buildColumn(sch, cd)
				if err != nil {
					return nil, err
				}
				sch.Columns = slices.Insert(sch.Columns, pos, c)
				pos++
			}
		case ast.AlterTableDropColumn:
			name := spec.OldColumnName.Name.O
			i, _ := sch.column(name)
			if i < 0 {
				return nil, errorf(ErrCodeCantDropField, "Can't DROP '%s'; check that column/key exists", name)
			}
			if len(sch.Columns) == 1 {
				return nil, errorf(ErrCodeCantRemoveAllFields, "You can't delete all columns with ALTER TABLE; use DROP TABLE instead")
			}
			sch.Columns = slices.Delete(sch.Columns, i, i+1)
		case ast.AlterTableOption:
			for _, opt := range spec.Options {
				switch opt.Tp {
				case ast.TableOptionEngine:
					if !strings.EqualFold(opt.StrValue, "queue") {
						return nil, notSupported("ALTER TABLE ... ENGINE=" + opt.StrValue)
					}
				case ast.TableOptionComment:
					sch.Comment = opt.StrValue
				case ast.TableOptionCharset:
					sch.Charset = opt.StrValue
				case ast.TableOptionCollate:
					sch.Collate = opt.StrValue
				default:
					return nil, notSupported("this ALTER TABLE option")
				}
			}
		case ast.AlterTableAddConstraint:
			return nil, errorf(ErrCodeTooManyKeys, "Too many keys specified; max 0 keys allowed")
		default:
			return nil, notSupported("ALTER TABLE other than ADD/DROP COLUMN")
		}
	}
	// Where each new column's value comes from: an old column, or its default.
	from := make([]int, len(sch.Columns))
	for i, c := range sch.Columns {
		from[i] = slices.Index(old.Columns, c) // the same *columnDef when kept
	}
	fill := make([]any, len(sch.Columns))
	for i, c := range sch.Columns {
		if from[i] < 0 {
			fill[i] = alterDefault(c)
		}
	}
	rewrite := func(_ uint64, payload []byte) ([]byte, error) {
		vals, err := decodeRow(payload, nil)
		if err != nil {
			return nil, err
		}
		out := make([]any, len(sch.Columns))
		for i, j := range from {
			switch {
			case j < 0:
				out[i] = fill[i]
			case j < len(vals):
				out[i] = vals[j]
			}
		}
		return encodeRow(out), nil
	}
	if err := s.eng.db.AlterTable(t.Database(), t.Name(), encodeSchema(sch), rewrite); err != nil {
		return nil, &TableError{Database: t.Database(), Table: t.Name(), Err: err}
	}
	return &Result{}, nil
}

// alterDefault is the value a column added by ALTER TABLE gets in existing
// rows: its default, NULL, or for NOT NULL without a default the type's
// implicit default (0, ”, zero date), as MySQL does.
func alterDefault(c *columnDef) any {
	switch {
	case c.DefaultNow:
		return formatDatetime(pmysql.TypeDatetime, time.Now(), c.Decimal)
	case c.HasDefault:
		if s, ok := c.Default.(string); ok && c.Binary {
			return []byte(s)
		}
		return c.Default
	case !c.NotNull:
		return nil
	}
	switch c.kind() {
	case kindInt:
		if c.Unsigned {
			return uint64(0)
		}
		return int64(0)
	case kindUint:
		return uint64(0)
	case kindFloat:
		return float64(0)
	}
	switch c.Type {
	case pmysql.TypeNewDecimal:
		_, d := c.precision()
		return formatScaled(new(big.Int), d)
	case pmysql.TypeDate:
		return "0000-00-00"
	case pmysql.TypeDatetime, pmysql.TypeTimestamp:
		return "0000-00-00 00:00:00" + fracZeros(c.Decimal)
	case pmysql.TypeDuration:
		return "00:00:00" + fracZeros(c.Decimal)
	case pmysql.TypeEnum:
		if len(c.Elems) > 0 {
			return c.Elems[0]
		}
	}
	if c.Binary {
		if c.Type == pmysql.TypeString {
			return make([]byte, c.Flen)
		}
		return []byte{}
	}
	return ""
}
