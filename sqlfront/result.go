package sqlfront

import (
	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
)

// Column describes one column of a result set, with the protocol type code
// (pmysql.TypeLong, ...) a MySQL server would send for it.
type Column struct {
	Name     string
	OrgName  string
	Table    string
	OrgTable string
	Database string
	Type     byte
	Flags    uint16 // flagNotNull, UnsignedFlag, BinaryFlag, BlobFlag, ...
	Length   uint32
	Decimals uint8
	Charset  uint16 // collation id: 63 = binary, 45 = utf8mb4_general_ci
}

// Column flags, as the protocol sends them.
const (
	flagNotNull  uint16 = 1
	flagBlob     uint16 = 16
	flagUnsigned uint16 = 32
	flagZerofill uint16 = 64
	flagBinary   uint16 = 128
	flagEnum     uint16 = 256
	flagSet      uint16 = 2048
	flagNum      uint16 = 32768
)

// Collation ids used in column definitions.
const (
	CollationBinary  = 63
	CollationUTF8MB4 = 45
)

// Result is the protocol-neutral result of a statement. A statement either
// returns rows (Columns is non-nil, possibly with no Rows) or an OK with
// AffectedRows and InsertID.
//
// Row values are nil (NULL), int64, uint64, float64, string or []byte; the
// column's Type says how to send them.
type Result struct {
	Columns      []Column
	Rows         [][]any
	AffectedRows uint64
	InsertID     uint64
	// Warnings is the OK packet's warning count (what SHOW WARNINGS lists).
	Warnings uint16
}

// HasRows reports whether r is a result set (as opposed to an OK).
func (r *Result) HasRows() bool { return r != nil && r.Columns != nil }

func textCol(name string) Column {
	return Column{Name: name, Type: pmysql.TypeVarString, Length: 256 * 4, Charset: CollationUTF8MB4}
}

func intCol(name string) Column {
	return Column{Name: name, Type: pmysql.TypeLonglong, Length: 21, Charset: CollationBinary, Flags: flagBinary}
}

func textColumns(names ...string) []Column {
	cols := make([]Column, len(names))
	for i, n := range names {
		cols[i] = textCol(n)
	}
	return cols
}
