package sqlfront

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/pingcap/tidb/pkg/parser/ast"
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
	"github.com/pingcap/tidb/pkg/parser/types"
)

// tableSchema is what sqlfront stores as a queue table's metadata.
type tableSchema struct {
	Columns []*columnDef `json:"columns"`
	Charset string       `json:"charset,omitempty"`
	Collate string       `json:"collate,omitempty"`
	Comment string       `json:"comment,omitempty"`
}

// columnDef is one column of a queue table.
type columnDef struct {
	Name       string   `json:"name"`
	Type       byte     `json:"type"` // pmysql.TypeXXX as the parser reports it
	Unsigned   bool     `json:"unsigned,omitempty"`
	Flen       int      `json:"flen,omitempty"` // length or precision; 0 = type default
	Decimal    int      `json:"decimal,omitempty"`
	Binary     bool     `json:"binary,omitempty"` // binary string (BINARY, VARBINARY, BLOB)
	NotNull    bool     `json:"not_null,omitempty"`
	HasDefault bool     `json:"has_default,omitempty"`
	Default    any      `json:"default,omitempty"` // canonical stored value; nil = NULL
	DefaultNow bool     `json:"default_now,omitempty"`
	Elems      []string `json:"elems,omitempty"`
	TypeStr    string   `json:"type_str"` // as SHOW CREATE TABLE shows it: "int(11)"
	Comment    string   `json:"comment,omitempty"`
}

func encodeSchema(s *tableSchema) []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // only plain data in it
	}
	return b
}

func decodeSchema(meta []byte) (*tableSchema, error) {
	var s tableSchema
	if err := json.Unmarshal(meta, &s); err != nil {
		return nil, fmt.Errorf("sqlfront: corrupt table schema: %w", err)
	}
	for _, c := range s.Columns {
		// JSON turns every number into float64; restore the stored kind.
		if c.HasDefault && c.Default != nil {
			c.Default = restoreDefault(c, c.Default)
		}
	}
	return &s, nil
}

func restoreDefault(c *columnDef, v any) any {
	f, ok := v.(float64)
	if !ok {
		return v
	}
	switch c.kind() {
	case kindInt:
		if c.Unsigned {
			return uint64(f)
		}
		return int64(f)
	case kindUint:
		return uint64(f)
	}
	return f
}

func (s *tableSchema) column(name string) (int, *columnDef) {
	for i, c := range s.Columns {
		if strings.EqualFold(c.Name, name) {
			return i, c
		}
	}
	return -1, nil
}

// valueKind is how a column's values are held in memory and on disk.
type valueKind int

const (
	kindInt    valueKind = iota // int64 (uint64 when Unsigned)
	kindUint                    // uint64 (BIT)
	kindFloat                   // float64
	kindString                  // string or []byte (canonical text for decimal and temporal types)
)

func (c *columnDef) kind() valueKind {
	switch c.Type {
	case pmysql.TypeTiny, pmysql.TypeShort, pmysql.TypeInt24, pmysql.TypeLong, pmysql.TypeLonglong, pmysql.TypeYear:
		return kindInt
	case pmysql.TypeBit:
		return kindUint
	case pmysql.TypeFloat, pmysql.TypeDouble:
		return kindFloat
	}
	return kindString
}

func (c *columnDef) isText() bool {
	switch c.Type {
	case pmysql.TypeString, pmysql.TypeVarchar, pmysql.TypeVarString, pmysql.TypeBlob,
		pmysql.TypeTinyBlob, pmysql.TypeMediumBlob, pmysql.TypeLongBlob, pmysql.TypeJSON:
		return true
	}
	return false
}

func (c *columnDef) isBlob() bool {
	switch c.Type {
	case pmysql.TypeBlob, pmysql.TypeTinyBlob, pmysql.TypeMediumBlob, pmysql.TypeLongBlob, pmysql.TypeJSON:
		return true
	}
	return false
}

// maxBytes is the storage limit of a BLOB/TEXT type.
func (c *columnDef) maxBytes() int64 {
	switch c.Type {
	case pmysql.TypeTinyBlob:
		return 255
	case pmysql.TypeBlob:
		return 65535
	case pmysql.TypeMediumBlob:
		return 16777215
	}
	return 4294967295
}

// resultColumn describes c in a result set of table t.
func (c *columnDef) resultColumn(db, table string) Column {
	col := Column{Name: c.Name, OrgName: c.Name, Table: table, OrgTable: table, Database: db, Type: c.Type, Charset: CollationBinary}
	if c.NotNull {
		col.Flags |= flagNotNull
	}
	if c.Unsigned {
		col.Flags |= flagUnsigned
	}
	switch c.Type {
	case pmysql.TypeTiny, pmysql.TypeShort, pmysql.TypeInt24, pmysql.TypeLong, pmysql.TypeLonglong:
		col.Flags |= flagNum
		col.Length = uint32(c.displayWidth())
	case pmysql.TypeYear:
		col.Flags |= flagNum | flagUnsigned | flagZerofill
		col.Length = 4
	case pmysql.TypeFloat, pmysql.TypeDouble:
		col.Flags |= flagNum
		col.Length = 12
		if c.Type == pmysql.TypeDouble {
			col.Length = 22
		}
		col.Decimals = 31
		if c.Decimal > 0 {
			col.Decimals = uint8(c.Decimal)
		}
	case pmysql.TypeNewDecimal:
		col.Flags |= flagNum
		p, s := c.precision()
		col.Length = uint32(p + 2)
		col.Decimals = uint8(s)
	case pmysql.TypeDate:
		col.Length = 10
	case pmysql.TypeDatetime, pmysql.TypeTimestamp:
		col.Length = 19
		if c.Decimal > 0 {
			col.Length += uint32(1 + c.Decimal)
			col.Decimals = uint8(c.Decimal)
		}
	case pmysql.TypeDuration:
		col.Length = 10
		if c.Decimal > 0 {
			col.Length += uint32(1 + c.Decimal)
			col.Decimals = uint8(c.Decimal)
		}
	case pmysql.TypeBit:
		col.Flags |= flagUnsigned
		col.Length = uint32(max(c.Flen, 1))
	case pmysql.TypeEnum, pmysql.TypeSet:
		col.Type = pmysql.TypeString
		col.Charset = CollationUTF8MB4
		if c.Type == pmysql.TypeEnum {
			col.Flags |= flagEnum
		} else {
			col.Flags |= flagSet
		}
		n := 0
		for _, e := range c.Elems {
			n = max(n, utf8.RuneCountInString(e))
		}
		col.Length = uint32(n * 4)
	case pmysql.TypeJSON:
		col.Flags |= flagBlob | flagBinary
		col.Length = 4294967295
	default: // strings
		if c.isBlob() {
			col.Type = pmysql.TypeBlob
			col.Flags |= flagBlob
			col.Length = uint32(c.maxBytes())
		} else {
			if c.Type == pmysql.TypeVarchar {
				col.Type = pmysql.TypeVarString
			}
			col.Length = uint32(max(c.Flen, 1))
		}
		if c.Binary {
			col.Flags |= flagBinary
		} else {
			col.Charset = CollationUTF8MB4
			if !c.isBlob() {
				col.Length *= 4
			}
		}
	}
	return col
}

func (c *columnDef) displayWidth() int {
	if c.Flen > 0 {
		return c.Flen
	}
	switch c.Type {
	case pmysql.TypeTiny:
		return 4
	case pmysql.TypeShort:
		return 6
	case pmysql.TypeInt24:
		return 9
	case pmysql.TypeLong:
		return 11
	}
	return 20
}

// precision returns a DECIMAL's (M, D).
func (c *columnDef) precision() (int, int) {
	m, d := c.Flen, c.Decimal
	if m <= 0 {
		m = 10
	}
	if d < 0 {
		d = 0
	}
	return m, d
}

// buildSchema checks a CREATE TABLE against what a Q4M table may hold.
func (s *Session) buildSchema(ct *ast.CreateTableStmt) (*tableSchema, error) {
	sch := &tableSchema{}
	engine := ""
	for _, opt := range ct.Options {
		switch opt.Tp {
		case ast.TableOptionEngine:
			engine = opt.StrValue
		case ast.TableOptionCharset:
			sch.Charset = opt.StrValue
		case ast.TableOptionCollate:
			sch.Collate = opt.StrValue
		case ast.TableOptionComment:
			sch.Comment = opt.StrValue
		}
	}
	if !strings.EqualFold(engine, "queue") {
		if engine == "" {
			engine = "InnoDB"
		}
		return nil, errorf(ErrCodeUnknownEngine, "Unknown storage engine '%s': q4mproxy serves only ENGINE=queue tables", engine)
	}
	if ct.Select != nil || ct.ReferTable != nil {
		return nil, notSupported("CREATE TABLE ... SELECT/LIKE")
	}
	if len(ct.Cols) == 0 {
		return nil, errorf(ErrCodeTableMustHaveCols, "A table must have at least 1 column")
	}
	for _, c := range ct.Constraints {
		switch c.Tp {
		case ast.ConstraintCheck:
		default:
			return nil, errorf(ErrCodeTooManyKeys, "Too many keys specified; max 0 keys allowed")
		}
	}
	for _, cd := range ct.Cols {
		c, err := s.buildColumn(sch, cd)
		if err != nil {
			return nil, err
		}
		sch.Columns = append(sch.Columns, c)
	}
	return sch, nil
}

// buildColumn checks one column definition against what a Q4M table may
// hold, and against the columns already in sch.
func (s *Session) buildColumn(sch *tableSchema, cd *ast.ColumnDef) (*columnDef, error) {
	autoInc := false
	name := cd.Name.Name.O
	if len(name) > 64 {
		return nil, errorf(ErrCodeTooLongIdent, "Identifier name '%s' is too long", name)
	}
	if _, dup := sch.column(name); dup != nil {
		return nil, errorf(ErrCodeDupFieldName, "Duplicate column name '%s'", name)
	}
	ft := cd.Tp
	c := &columnDef{
		Name:     name,
		Type:     ft.GetType(),
		Unsigned: pmysql.HasUnsignedFlag(ft.GetFlag()),
		Flen:     ft.GetFlen(),
		Decimal:  ft.GetDecimal(),
		Elems:    ft.GetElems(),
		TypeStr:  typeString(ft),
	}
	if c.Flen < 0 {
		c.Flen = 0
	}
	if c.Decimal < 0 {
		c.Decimal = 0
	}
	switch c.Type {
	case pmysql.TypeGeometry, pmysql.TypeTiDBVectorFloat32:
		return nil, notSupported("column type " + c.TypeStr)
	case pmysql.TypeString, pmysql.TypeVarchar, pmysql.TypeVarString,
		pmysql.TypeBlob, pmysql.TypeTinyBlob, pmysql.TypeMediumBlob, pmysql.TypeLongBlob:
		c.Binary = ft.GetCharset() == "binary"
	case pmysql.TypeDate, pmysql.TypeDatetime, pmysql.TypeTimestamp, pmysql.TypeDuration:
		if c.Decimal > 6 {
			return nil, errorf(ErrCodeTooBigFieldLength, "Too big precision %d specified for column '%s'. Maximum is 6.", c.Decimal, name)
		}
	}
	if c.Type == pmysql.TypeVarchar && c.Flen > 65535 {
		return nil, errorf(ErrCodeTooBigFieldLength, "Column length too big for column '%s' (max = 16383); use BLOB or TEXT instead", name)
	}
	if c.Type == pmysql.TypeString && c.Flen > 255 {
		return nil, errorf(ErrCodeTooBigFieldLength, "Column length too big for column '%s' (max = 255); use BLOB or TEXT instead", name)
	}
	if c.Type == pmysql.TypeString && c.Flen == 0 && !strings.Contains(c.TypeStr, "(0)") {
		c.Flen = 1
	}
	var defExpr ast.ExprNode
	for _, o := range cd.Options {
		switch o.Tp {
		case ast.ColumnOptionNotNull:
			c.NotNull = true
		case ast.ColumnOptionNull:
			c.NotNull = false
		case ast.ColumnOptionDefaultValue:
			defExpr = o.Expr
		case ast.ColumnOptionAutoIncrement:
			autoInc = true
		case ast.ColumnOptionPrimaryKey, ast.ColumnOptionUniqKey:
			return nil, errorf(ErrCodeTooManyKeys, "Too many keys specified; max 0 keys allowed")
		case ast.ColumnOptionComment:
			if v, err := s.evalConst(o.Expr); err == nil {
				c.Comment = toString(v)
			}
		}
	}
	if defExpr != nil {
		if err := s.setDefault(c, defExpr); err != nil {
			return nil, err
		}
	}
	if autoInc {
		return nil, errorf(ErrCodeCantHandleAutoIncrement, "The used table type doesn't support AUTO_INCREMENT columns")
	}
	return c, nil
}

func (s *Session) setDefault(c *columnDef, e ast.ExprNode) error {
	if fc, ok := e.(*ast.FuncCallExpr); ok {
		switch fc.FnName.L {
		case "current_timestamp", "now", "localtime", "localtimestamp":
			if c.Type != pmysql.TypeTimestamp && c.Type != pmysql.TypeDatetime {
				return errorf(ErrCodeInvalidDefault, "Invalid default value for '%s'", c.Name)
			}
			c.HasDefault, c.DefaultNow = true, true
			return nil
		}
	}
	v, err := s.evalConst(e)
	if err != nil {
		return errorf(ErrCodeInvalidDefault, "Invalid default value for '%s'", c.Name)
	}
	if v != nil && c.isBlob() {
		return errorf(ErrCodeBlobCantHaveDefault, "BLOB, TEXT, GEOMETRY or JSON column '%s' can't have a default value", c.Name)
	}
	if v == nil {
		if c.NotNull {
			return errorf(ErrCodeInvalidDefault, "Invalid default value for '%s'", c.Name)
		}
		c.HasDefault = true
		return nil
	}
	cv, err := convertValue(c, v, 1)
	if err != nil {
		return errorf(ErrCodeInvalidDefault, "Invalid default value for '%s'", c.Name)
	}
	if b, ok := cv.([]byte); ok {
		cv = string(b)
	}
	c.HasDefault, c.Default = true, cv
	return nil
}

// typeString renders a column type as MySQL 5.7 shows it in SHOW CREATE
// TABLE and DESCRIBE: "int(10) unsigned", "tinyint(3) unsigned zerofill".
func typeString(ft *types.FieldType) string {
	str := ft.InfoSchemaStr()
	flag := ft.GetFlag()
	if pmysql.HasUnsignedFlag(flag) && ft.GetFlen() < 0 {
		widths := map[byte][2]string{
			pmysql.TypeTiny: {"(4)", "(3)"}, pmysql.TypeShort: {"(6)", "(5)"}, pmysql.TypeInt24: {"(9)", "(8)"},
			pmysql.TypeLong: {"(11)", "(10)"}, pmysql.TypeLonglong: {"(20)", "(20)"},
		}
		if w, ok := widths[ft.GetType()]; ok {
			str = strings.Replace(str, w[0], w[1], 1)
		}
	}
	if ft.GetType() == pmysql.TypeYear {
		str = "year(4)"
	}
	if pmysql.HasZerofillFlag(flag) && !strings.Contains(str, "zerofill") {
		str += " zerofill"
	}
	return str
}

// showCreate renders SHOW CREATE TABLE's statement.
func showCreate(name string, sch *tableSchema) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (\n", quoteIdent(name))
	for i, c := range sch.Columns {
		fmt.Fprintf(&b, "  %s %s", quoteIdent(c.Name), c.TypeStr)
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
		switch {
		case c.DefaultNow:
			b.WriteString(" DEFAULT CURRENT_TIMESTAMP")
		case c.HasDefault && c.Default == nil:
			b.WriteString(" DEFAULT NULL")
		case c.HasDefault:
			b.WriteString(" DEFAULT " + quoteString(toString(c.Default)))
		case !c.NotNull && !c.isBlob():
			b.WriteString(" DEFAULT NULL")
		}
		if c.Comment != "" {
			b.WriteString(" COMMENT " + quoteString(c.Comment))
		}
		if i < len(sch.Columns)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	cs := sch.Charset
	if cs == "" {
		cs = "utf8mb4"
	}
	fmt.Fprintf(&b, ") ENGINE=QUEUE DEFAULT CHARSET=%s", cs)
	if sch.Collate != "" {
		fmt.Fprintf(&b, " COLLATE=%s", sch.Collate)
	}
	if sch.Comment != "" {
		b.WriteString(" COMMENT=" + quoteString(sch.Comment))
	}
	return b.String()
}

func quoteIdent(s string) string { return "`" + strings.ReplaceAll(s, "`", "``") + "`" }

func quoteString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`, "\r", `\r`, "\x00", `\0`, "\x1a", `\Z`)
	return "'" + r.Replace(s) + "'"
}
