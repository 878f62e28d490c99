package queue

import (
	"encoding/binary"
)

// Key layout in Pebble. Every key starts with a one-byte kind so that the
// kinds occupy disjoint ranges.
//
//	'M' "format"                    -> format version (written once, on a fresh store)
//	'G' "tableid"                   -> last table id handed out (uint64 BE)
//	'D' db                          -> database marker (empty value)
//	'T' db 0x00 table               -> table id (uint64 BE) followed by the caller's metadata
//	'S' id                          -> table state: last rowid (uint64 BE)
//	'R' id rowid                    -> row payload
//
// Table ids are never reused: DROP and TRUNCATE retire an id and delete its
// row range, so rows of a retired incarnation can never be confused with
// rows of a later one.
const (
	kindFormat   = 'M'
	kindSeq      = 'G'
	kindDatabase = 'D'
	kindTable    = 'T'
	kindState    = 'S'
	kindRow      = 'R'
	kindAux      = 'X' // internal users' state: 'X' ns 0x00 key

	formatVersion = 1
)

var (
	formatKey  = []byte{kindFormat, 'f', 'o', 'r', 'm', 'a', 't'}
	tableIDKey = []byte{kindSeq, 't', 'a', 'b', 'l', 'e', 'i', 'd'}
)

func databaseKey(db string) []byte {
	return append([]byte{kindDatabase}, db...)
}

func tableKey(db, name string) []byte {
	k := make([]byte, 0, 2+len(db)+len(name))
	k = append(k, kindTable)
	k = append(k, db...)
	k = append(k, 0)
	return append(k, name...)
}

func stateKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{kindState}, id)
}

func rowKey(id, rowid uint64) []byte {
	k := make([]byte, 17)
	k[0] = kindRow
	binary.BigEndian.PutUint64(k[1:], id)
	binary.BigEndian.PutUint64(k[9:], rowid)
	return k
}

// rowKeyRowID extracts the rowid of a row key.
func rowKeyRowID(k []byte) uint64 { return binary.BigEndian.Uint64(k[9:17]) }

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
