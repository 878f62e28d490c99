package server

import (
	"encoding/binary"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// toResult converts a sqlfront result to go-mysql's form, encoding rows in
// the text protocol or (for prepared statements) the binary protocol.
func toResult(r *sqlfront.Result, binaryProto bool) *mysql.Result {
	if r == nil {
		return nil
	}
	if !r.HasRows() {
		return &mysql.Result{AffectedRows: r.AffectedRows, InsertId: r.InsertID, Warnings: r.Warnings}
	}
	rs := &mysql.Resultset{Fields: make([]*mysql.Field, len(r.Columns))}
	for i, c := range r.Columns {
		rs.Fields[i] = field(c)
	}
	rs.RowDatas = make([]mysql.RowData, len(r.Rows))
	for i, row := range r.Rows {
		if binaryProto {
			rs.RowDatas[i] = binaryRow(r.Columns, row)
		} else {
			rs.RowDatas[i] = textRow(r.Columns, row)
		}
	}
	return &mysql.Result{Resultset: rs}
}

// rowsResult is a text-protocol result set that the handler writes itself
// (writeRows) rather than through go-mysql's WriteValue: a consumer repeats
// one statement, so the column definitions of the connection's last result
// set are kept as packets and reused, and the rows are written from one
// buffer, without allocating per value.
type rowsResult struct{ r *sqlfront.Result }

// writeRows writes r as go-mysql's writeResultset would: the column count,
// the column definitions, EOF, the rows, EOF.
func (h *handler) writeRows(r *sqlfront.Result) error {
	if !slices.Equal(h.defCols, r.Columns) {
		h.defCols = slices.Clone(r.Columns)
		h.defs = h.defs[:0]
		for _, c := range r.Columns {
			h.defs = append(h.defs, field(c).Dump())
		}
	}
	b := append(h.wbuf[:0], 0, 0, 0, 0)
	b = append(b, mysql.PutLengthEncodedInt(uint64(len(r.Columns)))...)
	if err := h.mc.WritePacket(b); err != nil {
		return err
	}
	for _, d := range h.defs {
		b = append(b[:4], d...)
		if err := h.mc.WritePacket(b); err != nil {
			return err
		}
	}
	if err := h.mc.WritePacket(h.appendEOF(b[:4])); err != nil {
		return err
	}
	for _, row := range r.Rows {
		b = appendTextRow(b[:4], r.Columns, row)
		if err := h.mc.WritePacket(b); err != nil {
			return err
		}
	}
	err := h.mc.WritePacket(h.appendEOF(b[:4]))
	if cap(b) <= 64<<10 { // keep a buffer of a usual size for the next result
		h.wbuf = b
	}
	return err
}

// appendTextRow appends a text-protocol row to b: what textRow returns,
// with integers and strings written in place.
func appendTextRow(b []byte, cols []sqlfront.Column, row []any) []byte {
	for i, v := range row {
		switch x := v.(type) {
		case nil:
			b = append(b, 0xfb)
		case int64:
			var n [20]byte
			d := strconv.AppendInt(n[:0], x, 10)
			b = append(append(b, byte(len(d))), d...)
		case string:
			b = append(b, mysql.PutLengthEncodedInt(uint64(len(x)))...)
			b = append(b, x...)
		default:
			b = appendLenenc(b, textValue(cols[i], v))
		}
	}
	return b
}

func field(c sqlfront.Column) *mysql.Field {
	return &mysql.Field{
		Schema:       []byte(c.Database),
		Table:        []byte(c.Table),
		OrgTable:     []byte(c.OrgTable),
		Name:         []byte(c.Name),
		OrgName:      []byte(c.OrgName),
		Charset:      c.Charset,
		ColumnLength: c.Length,
		Type:         c.Type,
		Flag:         c.Flags,
		Decimal:      c.Decimals,
	}
}

func textValue(c sqlfront.Column, v any) []byte {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(nil, x, 10)
	case uint64:
		if c.Type == mysql.MYSQL_TYPE_BIT {
			return bitBytes(c, x)
		}
		return strconv.AppendUint(nil, x, 10)
	case float64:
		if c.Type == mysql.MYSQL_TYPE_FLOAT {
			return []byte(formatFloat(x, 32))
		}
		return []byte(formatFloat(x, 64))
	case string:
		return []byte(x)
	case []byte:
		return x
	}
	return nil
}

func formatFloat(f float64, bits int) string {
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.FormatFloat(f, 'f', -1, bits)
	}
	return strings.Replace(strconv.FormatFloat(f, 'g', -1, bits), "e+", "e", 1)
}

func bitBytes(c sqlfront.Column, x uint64) []byte {
	n := (int(c.Length) + 7) / 8
	n = max(n, 1)
	b := make([]byte, n)
	for i := n - 1; i >= 0; i-- {
		b[i] = byte(x)
		x >>= 8
	}
	return b
}

func textRow(cols []sqlfront.Column, row []any) mysql.RowData {
	var b []byte
	for i, v := range row {
		if v == nil {
			b = append(b, 0xfb)
			continue
		}
		b = appendLenenc(b, textValue(cols[i], v))
	}
	return b
}

func binaryRow(cols []sqlfront.Column, row []any) mysql.RowData {
	nb := (len(cols) + 7 + 2) / 8
	b := make([]byte, 1+nb, 64)
	for i, v := range row {
		if v == nil {
			b[1+(i+2)/8] |= 1 << (uint(i+2) % 8)
			continue
		}
		c := cols[i]
		switch c.Type {
		case mysql.MYSQL_TYPE_NULL:
		case mysql.MYSQL_TYPE_TINY:
			b = append(b, byte(intBits(v)))
		case mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_YEAR:
			b = binary.LittleEndian.AppendUint16(b, uint16(intBits(v)))
		case mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG:
			b = binary.LittleEndian.AppendUint32(b, uint32(intBits(v)))
		case mysql.MYSQL_TYPE_LONGLONG:
			b = binary.LittleEndian.AppendUint64(b, intBits(v))
		case mysql.MYSQL_TYPE_FLOAT:
			b = binary.LittleEndian.AppendUint32(b, math.Float32bits(float32(floatOf(v))))
		case mysql.MYSQL_TYPE_DOUBLE:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(floatOf(v)))
		case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_TIMESTAMP:
			b = appendBinaryDatetime(b, textString(c, v))
		case mysql.MYSQL_TYPE_TIME:
			b = appendBinaryTime(b, textString(c, v))
		default:
			b = appendLenenc(b, textValue(c, v))
		}
	}
	return b
}

func textString(c sqlfront.Column, v any) string { return string(textValue(c, v)) }

func intBits(v any) uint64 {
	switch x := v.(type) {
	case int64:
		return uint64(x)
	case uint64:
		return x
	case float64:
		return uint64(int64(x))
	}
	n, _ := strconv.ParseInt(string(textValue(sqlfront.Column{}, v)), 10, 64)
	return uint64(n)
}

func floatOf(v any) float64 {
	switch x := v.(type) {
	case float64:
		return x
	case int64:
		return float64(x)
	case uint64:
		return float64(x)
	}
	f, _ := strconv.ParseFloat(string(textValue(sqlfront.Column{}, v)), 64)
	return f
}

// appendBinaryDatetime encodes "YYYY-MM-DD[ HH:MM:SS[.ffffff]]" in the
// binary protocol's length-prefixed form.
func appendBinaryDatetime(b []byte, s string) []byte {
	atoi := func(x string) int { n, _ := strconv.Atoi(x); return n }
	var y, mo, d, h, mi, sec, us int
	date, clock, _ := strings.Cut(s, " ")
	if p := strings.Split(date, "-"); len(p) == 3 {
		y, mo, d = atoi(p[0]), atoi(p[1]), atoi(p[2])
	}
	if clock != "" {
		hms, frac, _ := strings.Cut(clock, ".")
		if p := strings.Split(hms, ":"); len(p) == 3 {
			h, mi, sec = atoi(p[0]), atoi(p[1]), atoi(p[2])
		}
		if frac != "" {
			us = atoi((frac + "000000")[:6])
		}
	}
	switch {
	case y == 0 && mo == 0 && d == 0 && h == 0 && mi == 0 && sec == 0 && us == 0:
		return append(b, 0)
	case h == 0 && mi == 0 && sec == 0 && us == 0:
		b = append(b, 4)
		b = binary.LittleEndian.AppendUint16(b, uint16(y))
		return append(b, byte(mo), byte(d))
	}
	n := byte(7)
	if us != 0 {
		n = 11
	}
	b = append(b, n)
	b = binary.LittleEndian.AppendUint16(b, uint16(y))
	b = append(b, byte(mo), byte(d), byte(h), byte(mi), byte(sec))
	if us != 0 {
		b = binary.LittleEndian.AppendUint32(b, uint32(us))
	}
	return b
}

// appendBinaryTime encodes "[-]HH:MM:SS[.ffffff]".
func appendBinaryTime(b []byte, s string) []byte {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	hms, frac, _ := strings.Cut(s, ".")
	p := strings.Split(hms, ":")
	if len(p) != 3 {
		return append(b, 0)
	}
	h, _ := strconv.Atoi(p[0])
	mi, _ := strconv.Atoi(p[1])
	sec, _ := strconv.Atoi(p[2])
	us := 0
	if frac != "" {
		us, _ = strconv.Atoi((frac + "000000")[:6])
	}
	if h == 0 && mi == 0 && sec == 0 && us == 0 {
		return append(b, 0)
	}
	n := byte(8)
	if us != 0 {
		n = 12
	}
	var sign byte
	if neg {
		sign = 1
	}
	b = append(b, n, sign)
	b = binary.LittleEndian.AppendUint32(b, uint32(h/24))
	b = append(b, byte(h%24), byte(mi), byte(sec))
	if us != 0 {
		b = binary.LittleEndian.AppendUint32(b, uint32(us))
	}
	return b
}

// fieldList answers COM_FIELD_LIST.
func fieldList(cols []sqlfront.Column) []*mysql.Field {
	fs := make([]*mysql.Field, len(cols))
	for i, c := range cols {
		fs[i] = field(c)
	}
	return fs
}

func appendLenenc(b, s []byte) []byte {
	b = append(b, mysql.PutLengthEncodedInt(uint64(len(s)))...)
	return append(b, s...)
}
