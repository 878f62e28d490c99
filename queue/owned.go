package queue

// Owned returns the database, table and rowid of the owned row; ok is false
// when o owns none. It is for the owner's own goroutine, like every method.
func (o *Owner) Owned() (db, table string, rowid uint64, ok bool) {
	if !o.mode || o.row == nil {
		return "", "", 0, false
	}
	return o.row.t.db, o.row.t.name, o.row.rowid, true
}
