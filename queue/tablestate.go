package queue

import (
	"encoding/binary"
	"errors"
)

// encodeState encodes what the commit loop persists per table: the last
// rowid and the non-zero relay marks.
func (t *table) encodeState() []byte {
	b := binary.AppendUvarint(make([]byte, 0, 16), t.lastRowID)
	n := 0
	for _, m := range t.marks {
		if m != 0 {
			n++
		}
	}
	b = binary.AppendUvarint(b, uint64(n))
	for s, m := range t.marks {
		if m != 0 {
			b = append(b, byte(s))
			b = binary.AppendUvarint(b, m)
		}
	}
	return b
}

var errBadState = errors.New("corrupt table state")

func (t *table) decodeState(v []byte) error {
	last, k := binary.Uvarint(v)
	if k <= 0 {
		return errBadState
	}
	v = v[k:]
	n, k := binary.Uvarint(v)
	if k <= 0 || n > MaxSenders {
		return errBadState
	}
	v = v[k:]
	t.lastRowID = last
	for i := uint64(0); i < n; i++ {
		if len(v) < 2 || v[0] >= MaxSenders {
			return errBadState
		}
		s := v[0]
		m, k := binary.Uvarint(v[1:])
		if k <= 0 {
			return errBadState
		}
		t.marks[s] = m
		v = v[1+k:]
	}
	return nil
}
