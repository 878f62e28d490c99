package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/stmt"
)

func preparedStmt(id uint32, params int) stmt.PreparedStmt {
	return stmt.PreparedStmt{ID: id, Params: params}
}

var errBadExecute = errors.New("malformed COM_STMT_EXECUTE")

// bind decodes the parameters of a COM_STMT_EXECUTE (data after the
// statement id) into sqlfront's values: nil, int64, uint64, float64, string
// or []byte. Types sent with an earlier execution are used when the client
// omits them (new-params-bound flag 0), as MySQL does.
func (p *pstmt) bind(data []byte) ([]any, error) {
	if len(data) < 5 {
		return nil, errBadExecute
	}
	pos := 5 // flags, iteration count
	n := p.params
	if n == 0 {
		return nil, nil
	}
	nullLen := (n + 7) / 8
	if len(data) < pos+nullLen+1 {
		return nil, errBadExecute
	}
	nulls := data[pos : pos+nullLen]
	pos += nullLen
	bound := data[pos]
	pos++
	if bound == 1 {
		if len(data) < pos+2*n {
			return nil, errBadExecute
		}
		p.types = append(p.types[:0], data[pos:pos+2*n]...)
		pos += 2 * n
	}
	if len(p.types) != 2*n {
		return nil, errBadExecute // never sent
	}
	args := make([]any, n)
	for i := 0; i < n; i++ {
		if nulls[i/8]&(1<<(i%8)) != 0 {
			continue
		}
		tp, unsigned := p.types[2*i], p.types[2*i+1]&0x80 != 0
		if ld, ok := p.long[i]; ok {
			args[i] = stringParam(tp, ld)
			continue
		}
		v, k, err := decodeParam(tp, unsigned, data[pos:])
		if err != nil {
			return nil, err
		}
		args[i] = v
		pos += k
	}
	return args, nil
}

func stringParam(tp byte, b []byte) any {
	switch tp {
	case mysql.MYSQL_TYPE_TINY_BLOB, mysql.MYSQL_TYPE_MEDIUM_BLOB, mysql.MYSQL_TYPE_LONG_BLOB,
		mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_BIT, mysql.MYSQL_TYPE_GEOMETRY:
		return append([]byte(nil), b...)
	}
	return string(b)
}

// decodeParam decodes one value of type tp from b; it returns the value and
// the bytes it took.
func decodeParam(tp byte, unsigned bool, b []byte) (any, int, error) {
	need := func(k int) error {
		if len(b) < k {
			return errBadExecute
		}
		return nil
	}
	switch tp {
	case mysql.MYSQL_TYPE_NULL:
		return nil, 0, nil
	case mysql.MYSQL_TYPE_TINY:
		if err := need(1); err != nil {
			return nil, 0, err
		}
		if unsigned {
			return int64(b[0]), 1, nil
		}
		return int64(int8(b[0])), 1, nil
	case mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_YEAR:
		if err := need(2); err != nil {
			return nil, 0, err
		}
		v := binary.LittleEndian.Uint16(b)
		if unsigned {
			return int64(v), 2, nil
		}
		return int64(int16(v)), 2, nil
	case mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG:
		if err := need(4); err != nil {
			return nil, 0, err
		}
		v := binary.LittleEndian.Uint32(b)
		if unsigned {
			return int64(v), 4, nil
		}
		return int64(int32(v)), 4, nil
	case mysql.MYSQL_TYPE_LONGLONG:
		if err := need(8); err != nil {
			return nil, 0, err
		}
		v := binary.LittleEndian.Uint64(b)
		if unsigned {
			return v, 8, nil
		}
		return int64(v), 8, nil
	case mysql.MYSQL_TYPE_FLOAT:
		if err := need(4); err != nil {
			return nil, 0, err
		}
		return float64(math.Float32frombits(binary.LittleEndian.Uint32(b))), 4, nil
	case mysql.MYSQL_TYPE_DOUBLE:
		if err := need(8); err != nil {
			return nil, 0, err
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(b)), 8, nil
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE, mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_TIMESTAMP:
		if err := need(1); err != nil {
			return nil, 0, err
		}
		l := int(b[0])
		if err := need(1 + l); err != nil {
			return nil, 0, err
		}
		return formatDateTime(tp, b[1:1+l]), 1 + l, nil
	case mysql.MYSQL_TYPE_TIME:
		if err := need(1); err != nil {
			return nil, 0, err
		}
		l := int(b[0])
		if err := need(1 + l); err != nil {
			return nil, 0, err
		}
		return formatTime(b[1 : 1+l]), 1 + l, nil
	case mysql.MYSQL_TYPE_DECIMAL, mysql.MYSQL_TYPE_NEWDECIMAL, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_BIT,
		mysql.MYSQL_TYPE_ENUM, mysql.MYSQL_TYPE_SET, mysql.MYSQL_TYPE_TINY_BLOB, mysql.MYSQL_TYPE_MEDIUM_BLOB,
		mysql.MYSQL_TYPE_LONG_BLOB, mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING,
		mysql.MYSQL_TYPE_GEOMETRY, mysql.MYSQL_TYPE_JSON:
		v, isNull, k, err := mysql.LengthEncodedString(b)
		if err != nil || k > len(b) {
			return nil, 0, errBadExecute
		}
		if isNull {
			return nil, k, nil
		}
		return stringParam(tp, v), k, nil
	}
	return nil, 0, fmt.Errorf("%w: parameter type %d", errBadExecute, tp)
}

// formatDateTime renders a binary DATE/DATETIME/TIMESTAMP value as text.
func formatDateTime(tp byte, b []byte) string {
	var y, mo, d, h, mi, s int
	var us uint32
	if len(b) >= 4 {
		y, mo, d = int(binary.LittleEndian.Uint16(b)), int(b[2]), int(b[3])
	}
	if len(b) >= 7 {
		h, mi, s = int(b[4]), int(b[5]), int(b[6])
	}
	if len(b) >= 11 {
		us = binary.LittleEndian.Uint32(b[7:])
	}
	if tp == mysql.MYSQL_TYPE_DATE || tp == mysql.MYSQL_TYPE_NEWDATE {
		return fmt.Sprintf("%04d-%02d-%02d", y, mo, d)
	}
	out := fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d", y, mo, d, h, mi, s)
	if us != 0 {
		out += fmt.Sprintf(".%06d", us)
	}
	return out
}

// formatTime renders a binary TIME value as text.
func formatTime(b []byte) string {
	if len(b) < 8 {
		return "00:00:00"
	}
	sign := ""
	if b[0] == 1 {
		sign = "-"
	}
	days := binary.LittleEndian.Uint32(b[1:])
	h := uint32(b[5]) + days*24
	out := fmt.Sprintf("%s%02d:%02d:%02d", sign, h, b[6], b[7])
	if len(b) >= 12 {
		if us := binary.LittleEndian.Uint32(b[8:]); us != 0 {
			out += fmt.Sprintf(".%06d", us)
		}
	}
	return out
}
