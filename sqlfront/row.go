package sqlfront

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	pmysql "github.com/pingcap/tidb/pkg/parser/mysql"
)

// Row payload encoding: uvarint(column count), then per column a tag byte
// and the value. Values are kept in their canonical stored form (see
// valueKind).
const (
	tagNull   = 0
	tagInt    = 1 // zigzag varint
	tagUint   = 2 // uvarint
	tagFloat  = 3 // 8 bytes, IEEE 754 little endian
	tagBytes  = 4 // uvarint length, bytes
	tagString = 5 // like tagBytes, decoded as string
)

func encodeRow(vals []any) []byte {
	return appendRow(make([]byte, 0, rowSize(vals)), vals)
}

// rowSize is at least the length of vals' encoding.
func rowSize(vals []any) int {
	n := binary.MaxVarintLen64
	for _, v := range vals {
		switch x := v.(type) {
		case []byte:
			n += len(x) + 11
		case string:
			n += len(x) + 11
		default:
			n += 11
		}
	}
	return n
}

// appendRow appends the encoding of vals to b.
func appendRow(b []byte, vals []any) []byte {
	b = binary.AppendUvarint(b, uint64(len(vals)))
	for _, v := range vals {
		switch x := v.(type) {
		case nil:
			b = append(b, tagNull)
		case int64:
			b = binary.AppendVarint(append(b, tagInt), x)
		case uint64:
			b = binary.AppendUvarint(append(b, tagUint), x)
		case float64:
			b = binary.LittleEndian.AppendUint64(append(b, tagFloat), math.Float64bits(x))
		case []byte:
			b = append(binary.AppendUvarint(append(b, tagBytes), uint64(len(x))), x...)
		case string:
			b = append(binary.AppendUvarint(append(b, tagString), uint64(len(x))), x...)
		default:
			panic(fmt.Sprintf("sqlfront: cannot encode %T", v))
		}
	}
	return b
}

var errCorruptRow = errors.New("sqlfront: corrupt row")

// decodeRow decodes a payload into vals (reused when large enough). Byte
// values are copied, so the result outlives the payload.
func decodeRow(p []byte, vals []any) ([]any, error) {
	n, k := binary.Uvarint(p)
	if k <= 0 || n > uint64(len(p)) {
		return nil, errCorruptRow
	}
	p = p[k:]
	vals = vals[:0]
	for i := uint64(0); i < n; i++ {
		if len(p) == 0 {
			return nil, errCorruptRow
		}
		tag := p[0]
		p = p[1:]
		switch tag {
		case tagNull:
			vals = append(vals, nil)
		case tagInt:
			v, k := binary.Varint(p)
			if k <= 0 {
				return nil, errCorruptRow
			}
			vals, p = append(vals, v), p[k:]
		case tagUint:
			v, k := binary.Uvarint(p)
			if k <= 0 {
				return nil, errCorruptRow
			}
			vals, p = append(vals, v), p[k:]
		case tagFloat:
			if len(p) < 8 {
				return nil, errCorruptRow
			}
			vals, p = append(vals, math.Float64frombits(binary.LittleEndian.Uint64(p))), p[8:]
		case tagBytes, tagString:
			l, k := binary.Uvarint(p)
			if k <= 0 || l > uint64(len(p)-k) {
				return nil, errCorruptRow
			}
			b := p[k : k+int(l)]
			if tag == tagString {
				vals = append(vals, string(b))
			} else {
				vals = append(vals, append([]byte(nil), b...))
			}
			p = p[k+int(l):]
		default:
			return nil, errCorruptRow
		}
	}
	return vals, nil
}

var intRanges = map[byte][2]int64{
	pmysql.TypeTiny:     {math.MinInt8, math.MaxInt8},
	pmysql.TypeShort:    {math.MinInt16, math.MaxInt16},
	pmysql.TypeInt24:    {-1 << 23, 1<<23 - 1},
	pmysql.TypeLong:     {math.MinInt32, math.MaxInt32},
	pmysql.TypeLonglong: {math.MinInt64, math.MaxInt64},
}

var uintMax = map[byte]uint64{
	pmysql.TypeTiny:     math.MaxUint8,
	pmysql.TypeShort:    math.MaxUint16,
	pmysql.TypeInt24:    1<<24 - 1,
	pmysql.TypeLong:     math.MaxUint32,
	pmysql.TypeLonglong: math.MaxUint64,
}

// convertValue converts v (an evaluated SQL value) to the canonical stored
// form of column c, with the errors of MySQL's strict mode. row is 1-based,
// for messages. NULL is not handled here.
func convertValue(c *columnDef, v any, row int) (any, error) {
	switch c.kind() {
	case kindInt:
		return convertInt(c, v, row)
	case kindUint:
		return convertBit(c, v, row)
	case kindFloat:
		f, ok := toFloatStrict(v)
		if !ok {
			return nil, errorf(ErrCodeDataTruncated, "Data truncated for column '%s' at row %d", c.Name, row)
		}
		if c.Type == pmysql.TypeFloat {
			if math.Abs(f) > math.MaxFloat32 {
				return nil, outOfRange(c, row)
			}
			f = float64(float32(f))
		}
		if c.Unsigned && f < 0 {
			return nil, outOfRange(c, row)
		}
		return f, nil
	}
	switch c.Type {
	case pmysql.TypeNewDecimal:
		return convertDecimal(c, v, row)
	case pmysql.TypeDate, pmysql.TypeDatetime, pmysql.TypeTimestamp:
		return convertDatetime(c, v, row)
	case pmysql.TypeDuration:
		return convertTime(c, v, row)
	case pmysql.TypeEnum:
		return convertEnum(c, v, row)
	case pmysql.TypeSet:
		return convertSet(c, v, row)
	}
	// Strings. Values are kept as the string the statement carried (no
	// copy: a row may be as large as max_allowed_packet).
	var str string
	switch x := v.(type) {
	case []byte:
		str = string(x)
	case string:
		str = x
	default:
		str = toString(v)
	}
	if !c.Binary {
		if !utf8.ValidString(str) {
			return nil, errorf(ErrCodeIncorrectValue, "Incorrect string value: '%s' for column '%s' at row %d", badBytes([]byte(str)), c.Name, row)
		}
		if c.isBlob() {
			if int64(len(str)) > c.maxBytes() {
				return nil, errorf(ErrCodeDataTooLong, "Data too long for column '%s' at row %d", c.Name, row)
			}
		} else if len(str) > c.Flen && utf8.RuneCountInString(str) > c.Flen {
			return nil, errorf(ErrCodeDataTooLong, "Data too long for column '%s' at row %d", c.Name, row)
		}
		if c.Type == pmysql.TypeString {
			str = strings.TrimRight(str, " ")
		}
		return str, nil
	}
	limit := int64(c.Flen)
	if c.isBlob() {
		limit = c.maxBytes()
	}
	if int64(len(str)) > limit {
		return nil, errorf(ErrCodeDataTooLong, "Data too long for column '%s' at row %d", c.Name, row)
	}
	if c.Type == pmysql.TypeString && len(str) < c.Flen { // BINARY(n) pads with zero bytes
		str += string(make([]byte, c.Flen-len(str)))
	}
	return []byte(str), nil
}

// badBytes renders the start of an invalid UTF-8 string as MySQL does: \xFF.
func badBytes(b []byte) string {
	i := 0
	for i < len(b) {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		i += n
	}
	var sb strings.Builder
	for j := i; j < len(b) && j < i+6; j++ {
		fmt.Fprintf(&sb, "\\x%02X", b[j])
	}
	return sb.String()
}

func outOfRange(c *columnDef, row int) error {
	return errorf(ErrCodeDataOutOfRange, "Out of range value for column '%s' at row %d", c.Name, row)
}

func convertInt(c *columnDef, v any, row int) (any, error) {
	if c.Type == pmysql.TypeYear {
		n, ok := toIntegerStrict(v)
		if !ok {
			return nil, errorf(ErrCodeIncorrectValue, "Incorrect integer value: '%s' for column '%s' at row %d", toString(v), c.Name, row)
		}
		switch {
		case n.Sign() == 0:
			return int64(0), nil
		case n.IsInt64() && n.Int64() >= 1 && n.Int64() <= 69:
			return n.Int64() + 2000, nil
		case n.IsInt64() && n.Int64() >= 70 && n.Int64() <= 99:
			return n.Int64() + 1900, nil
		case n.IsInt64() && n.Int64() >= 1901 && n.Int64() <= 2155:
			return n.Int64(), nil
		}
		return nil, outOfRange(c, row)
	}
	n, ok := toIntegerStrict(v)
	if !ok {
		return nil, errorf(ErrCodeIncorrectValue, "Incorrect integer value: '%s' for column '%s' at row %d", toString(v), c.Name, row)
	}
	if c.Unsigned {
		if n.Sign() < 0 || !n.IsUint64() || n.Uint64() > uintMax[c.Type] {
			return nil, outOfRange(c, row)
		}
		return n.Uint64(), nil
	}
	r := intRanges[c.Type]
	if !n.IsInt64() || n.Int64() < r[0] || n.Int64() > r[1] {
		return nil, outOfRange(c, row)
	}
	return n.Int64(), nil
}

func convertBit(c *columnDef, v any, row int) (any, error) {
	width := max(c.Flen, 1)
	var u uint64
	switch x := v.(type) {
	case []byte:
		if len(x) > 8 {
			return nil, errorf(ErrCodeDataTooLong, "Data too long for column '%s' at row %d", c.Name, row)
		}
		for _, b := range x {
			u = u<<8 | uint64(b)
		}
	default:
		n, ok := toIntegerStrict(v)
		if !ok || n.Sign() < 0 || !n.IsUint64() {
			return nil, errorf(ErrCodeIncorrectValue, "Incorrect integer value: '%s' for column '%s' at row %d", toString(v), c.Name, row)
		}
		u = n.Uint64()
	}
	if width < 64 && u>>uint(width) != 0 {
		return nil, errorf(ErrCodeDataTooLong, "Data too long for column '%s' at row %d", c.Name, row)
	}
	return u, nil
}

// toIntegerStrict converts v to an integer as MySQL does for an integer
// column: numbers round half away from zero, strings must be entirely a
// number (surrounding spaces allowed).
func toIntegerStrict(v any) (*big.Int, bool) {
	switch x := v.(type) {
	case int64:
		return big.NewInt(x), true
	case uint64:
		return new(big.Int).SetUint64(x), true
	case float64:
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, false
		}
		r, _ := new(big.Float).SetFloat64(math.Round(x)).Int(nil)
		return r, true
	case bool:
		if x {
			return big.NewInt(1), true
		}
		return big.NewInt(0), true
	case []byte:
		return parseIntegerString(string(x))
	case string:
		return parseIntegerString(x)
	}
	return nil, false
}

func parseIntegerString(s string) (*big.Int, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, false
	}
	if n, ok := new(big.Int).SetString(strings.TrimPrefix(s, "+"), 10); ok {
		return n, true
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok {
		return nil, false
	}
	return roundRat(r, 0), true
}

// roundRat rounds r to d decimals, half away from zero, and returns the
// result scaled by 10^d.
func roundRat(r *big.Rat, d int) *big.Int {
	scale := new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(d)), nil)
	num := new(big.Int).Mul(r.Num(), scale)
	den := r.Denom()
	q, m := new(big.Int).QuoRem(num, den, new(big.Int))
	m.Abs(m).Mul(m, big.NewInt(2))
	if m.Cmp(den) >= 0 {
		if num.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return q
}

func toFloatStrict(v any) (float64, bool) {
	switch x := v.(type) {
	case int64:
		return float64(x), true
	case uint64:
		return float64(x), true
	case float64:
		return x, true
	case []byte:
		return parseFloatString(string(x))
	case string:
		return parseFloatString(x)
	}
	return 0, false
}

func parseFloatString(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

func convertDecimal(c *columnDef, v any, row int) (any, error) {
	var r *big.Rat
	switch x := v.(type) {
	case int64:
		r = new(big.Rat).SetInt64(x)
	case uint64:
		r = new(big.Rat).SetUint64(x)
	case float64:
		r = new(big.Rat)
		if _, ok := r.SetString(strconv.FormatFloat(x, 'g', 17, 64)); !ok {
			return nil, outOfRange(c, row)
		}
	default:
		s := strings.TrimSpace(toString(v))
		var ok bool
		r, ok = new(big.Rat).SetString(s)
		if !ok || s == "" {
			return nil, errorf(ErrCodeIncorrectValue, "Incorrect decimal value: '%s' for column '%s' at row %d", toString(v), c.Name, row)
		}
	}
	m, d := c.precision()
	if c.Unsigned && r.Sign() < 0 {
		return nil, outOfRange(c, row)
	}
	q := roundRat(r, d)
	digits := strings.TrimPrefix(q.String(), "-")
	if len(digits) > m {
		return nil, outOfRange(c, row)
	}
	return formatScaled(q, d), nil
}

// formatScaled renders q / 10^d with exactly d decimals.
func formatScaled(q *big.Int, d int) string {
	s := new(big.Int).Abs(q).String()
	if d > 0 {
		if len(s) <= d {
			s = strings.Repeat("0", d-len(s)+1) + s
		}
		s = s[:len(s)-d] + "." + s[len(s)-d:]
	}
	if q.Sign() < 0 {
		s = "-" + s
	}
	return s
}

var datetimeLayouts = []string{
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
	"2006-1-2 15:4:5.999999999",
	"2006-01-02 15:04",
	"2006-01-02",
	"2006-1-2",
	"2006/01/02 15:04:05.999999999",
	"2006/01/02",
	"20060102150405",
	"20060102",
}

func convertDatetime(c *columnDef, v any, row int) (any, error) {
	what := "datetime"
	if c.Type == pmysql.TypeDate {
		what = "date"
	}
	s := strings.TrimSpace(toString(v))
	bad := func() error {
		return errorf(ErrCodeTruncatedValue, "Incorrect %s value: '%s' for column '%s' at row %d", what, toString(v), c.Name, row)
	}
	if strings.HasPrefix(s, "0000-00-00") {
		if c.Type == pmysql.TypeDate {
			return "0000-00-00", nil
		}
		return "0000-00-00 00:00:00" + fracZeros(c.Decimal), nil
	}
	var t time.Time
	var err error
	for _, l := range datetimeLayouts {
		if t, err = time.Parse(l, s); err == nil {
			break
		}
	}
	if err != nil || t.Year() < 1000 {
		return nil, bad()
	}
	if c.Type == pmysql.TypeTimestamp && (t.Year() < 1970 || t.Year() > 2038) {
		return nil, bad()
	}
	return formatDatetime(c.Type, t, c.Decimal), nil
}

func fracZeros(d int) string {
	if d <= 0 {
		return ""
	}
	return "." + strings.Repeat("0", d)
}

func formatDatetime(tp byte, t time.Time, fsp int) string {
	if tp == pmysql.TypeDate {
		return t.Format("2006-01-02")
	}
	s := t.Format("2006-01-02 15:04:05")
	if fsp > 0 {
		frac := fmt.Sprintf("%09d", t.Nanosecond())
		s += "." + frac[:fsp]
	}
	return s
}

func convertTime(c *columnDef, v any, row int) (any, error) {
	s := strings.TrimSpace(toString(v))
	bad := errorf(ErrCodeTruncatedValue, "Incorrect time value: '%s' for column '%s' at row %d", toString(v), c.Name, row)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var h, m, sec int
	var frac string
	if i := strings.IndexByte(s, '.'); i >= 0 {
		s, frac = s[:i], s[i+1:]
	}
	parts := strings.Split(s, ":")
	var err error
	switch len(parts) {
	case 3:
		h, err = strconv.Atoi(parts[0])
		if err == nil {
			m, err = strconv.Atoi(parts[1])
		}
		if err == nil {
			sec, err = strconv.Atoi(parts[2])
		}
	case 2:
		h, err = strconv.Atoi(parts[0])
		if err == nil {
			m, err = strconv.Atoi(parts[1])
		}
	case 1:
		var n int
		n, err = strconv.Atoi(parts[0])
		h, m, sec = n/10000, n/100%100, n%100
	}
	if err != nil || m > 59 || sec > 59 || h > 838 || m < 0 || sec < 0 || h < 0 {
		return nil, bad
	}
	for _, r := range frac {
		if r < '0' || r > '9' {
			return nil, bad
		}
	}
	out := fmt.Sprintf("%02d:%02d:%02d", h, m, sec)
	if neg {
		out = "-" + out
	}
	if c.Decimal > 0 {
		frac = (frac + strings.Repeat("0", c.Decimal))[:c.Decimal]
		out += "." + frac
	}
	return out, nil
}

func convertEnum(c *columnDef, v any, row int) (any, error) {
	if n, ok := v.(int64); ok && n >= 1 && int(n) <= len(c.Elems) {
		return c.Elems[n-1], nil
	}
	s := toString(v)
	for _, e := range c.Elems {
		if strings.EqualFold(strings.TrimRight(s, " "), e) {
			return e, nil
		}
	}
	return nil, errorf(ErrCodeDataTruncated, "Data truncated for column '%s' at row %d", c.Name, row)
}

func convertSet(c *columnDef, v any, row int) (any, error) {
	s := toString(v)
	if s == "" {
		return "", nil
	}
	var out []string
	for _, p := range strings.Split(s, ",") {
		found := false
		for _, e := range c.Elems {
			if strings.EqualFold(p, e) {
				found = true
				out = append(out, e)
				break
			}
		}
		if !found {
			return nil, errorf(ErrCodeDataTruncated, "Data truncated for column '%s' at row %d", c.Name, row)
		}
	}
	return strings.Join(out, ","), nil
}
