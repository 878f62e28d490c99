package queue

import (
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// MaxSenders is the number of relay sender slots (Q4M's 0..63).
const MaxSenders = 64

// Insert appends rows (opaque payloads) to the table as one atomic, durable
// unit and returns the rowid of the first. It returns after the rows are
// synced, and only then are they visible and handed to waiters. It fails
// with ErrTableChanged if the table was altered since h was taken.
func (db *DB) Insert(h Table, rows [][]byte) (uint64, error) {
	first, _, err := db.InsertFrom(h, rows, nil)
	return first, err
}

// Source identifies relayed rows: the sender slot (0..MaxSenders-1) and the
// rowid the rows had in the source table (Q4M's queue_set_srcid).
type Source struct {
	Sender int
	RowID  uint64
	// Force writes the rows even if RowID is not above the sender's mark
	// (mode 'w'); otherwise such rows are duplicates and are skipped.
	Force bool
}

// InsertFrom is Insert for relayed rows. With src (and src.RowID != 0), the
// destination's high-water mark for src.Sender decides: rows whose source
// rowid is not above it are skipped (skipped = true, nothing written), and
// otherwise the mark is raised to src.RowID in the same synced batch as the
// rows, so a relay stays exactly-once across a crash of either side.
func (db *DB) InsertFrom(h Table, rows [][]byte, src *Source) (first uint64, skipped bool, err error) {
	if src != nil && (src.Sender < 0 || src.Sender >= MaxSenders) {
		return 0, false, errors.New("queue: sender out of range")
	}
	ins := db.insertPart(h, rows, src)
	err = db.submit(&op{inserts: true, prepare: ins.prepare, apply: ins.apply})
	return ins.first, ins.skipped, fullError(err, h.t.db, h.t.name)
}

// insertPart is the write of rows into h, as part of an op.
type insertPart struct {
	first   uint64
	skipped bool
	prepare func(b *pebble.Batch) error
	apply   func()
}

func (db *DB) insertPart(h Table, rows [][]byte, src *Source) *insertPart {
	t := h.t
	p := &insertPart{}
	sizes := make([]uint32, len(rows))
	var total uint64
	for i, r := range rows {
		sizes[i] = clampSize(len(r))
		total += uint64(sizes[i])
	}
	p.prepare = func(b *pebble.Batch) error {
		if t.wdead {
			return ErrNoSuchTable
		}
		if t.wversion != h.version {
			return ErrTableChanged
		}
		if src != nil && src.RowID != 0 {
			if !src.Force && src.RowID <= t.marks[src.Sender] {
				p.skipped = true
				return nil
			}
			t.marks[src.Sender] = src.RowID
		}
		p.first = t.lastRowID + 1
		for i, r := range rows {
			_ = b.Set(rowKey(t.id, p.first+uint64(i)), r, nil)
		}
		t.lastRowID += uint64(len(rows))
		return b.Set(stateKey(t.id), t.encodeState(), nil)
	}
	p.apply = func() {
		if t.dead || p.skipped {
			return
		}
		published := make([]newRow, len(rows))
		now := db.tickLocked()
		for i, r := range rows {
			t.free.ReplaceOrInsert(item{p.first + uint64(i), sizes[i], now})
			published[i] = newRow{p.first + uint64(i), r}
		}
		t.pubSeq++
		t.stats.rowsWritten += uint64(len(rows))
		t.stats.bytesTotal += total
		db.counters.rowsWritten.Add(uint64(len(rows)))
		db.serveLocked(t, published)
	}
	return p
}
