package sqlfront

import (
	"sync"
	"unsafe"

	"github.com/q4mproxy/q4mproxy/queue"
)

// schemaCache holds the parsed schemas of table definitions: every statement
// on a table looks its schema up, and decoding it costs more than many a
// statement. A definition is identified by its metadata, which the queue
// package never modifies (ALTER replaces it, TRUNCATE copies it), so the
// lookup is keyed by the metadata's address and takes no lock.
//
// Keyed by address alone the cache would keep an entry for every ALTER and
// TRUNCATE ever made, and for every dropped table. So it holds only tables'
// current definitions, one per table name: a new definition replaces the
// name's old entry, and when the names outgrow twice the number found live
// at the last sweep (and at least minSchemaSweep), the names whose table is
// gone or changed are dropped.
type schemaCache struct {
	byMeta sync.Map // *byte (metadata) -> *tableSchema

	mu      sync.Mutex
	byName  map[schemaName]*byte // the metadata cached for each table; guarded by mu
	sweepAt int                  // guarded by mu
}

type schemaName struct{ db, table string }

// minSchemaSweep is the least number of cached names at which dropped
// tables' entries are looked for.
const minSchemaSweep = 256

// schema returns the parsed schema of table t's definition.
func (e *Engine) schema(t queue.Table) (*tableSchema, error) {
	meta := t.Meta()
	key := unsafe.SliceData(meta) // metadata is immutable and owned by the table
	if v, ok := e.schemas.byMeta.Load(key); ok {
		return v.(*tableSchema), nil
	}
	sch, err := decodeSchema(meta)
	if err != nil {
		return nil, err
	}
	e.schemas.add(e.db, t, key, sch)
	return sch, nil
}

// add caches sch as the schema of t's definition, if that is the table's
// current one (a handle taken before an ALTER must not evict the new
// definition).
func (c *schemaCache) add(db queue.Store, t queue.Table, key *byte, sch *tableSchema) {
	cur, err := db.Table(t.Database(), t.Name())
	if err != nil || unsafe.SliceData(cur.Meta()) != key {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byName == nil {
		c.byName = make(map[schemaName]*byte)
	}
	n := schemaName{t.Database(), t.Name()}
	if old, ok := c.byName[n]; ok && old != key {
		c.byMeta.Delete(old)
	}
	c.byName[n] = key
	c.byMeta.Store(key, sch)
	if len(c.byName) >= max(c.sweepAt, minSchemaSweep) {
		c.sweepLocked(db)
	}
}

// sweepLocked drops the entries of tables that are gone or changed.
func (c *schemaCache) sweepLocked(db queue.Store) {
	for n, key := range c.byName {
		cur, err := db.Table(n.db, n.table)
		if err != nil || unsafe.SliceData(cur.Meta()) != key {
			delete(c.byName, n)
			c.byMeta.Delete(key)
		}
	}
	c.sweepAt = 2 * len(c.byName)
}

// len returns the number of cached schemas.
func (c *schemaCache) len() int {
	n := 0
	c.byMeta.Range(func(any, any) bool { n++; return true })
	return n
}
