// Package queue implements Q4M's queue semantics on an embedded Pebble store.
//
// A DB holds databases, each holding tables; a table is a FIFO queue of rows.
// The package knows nothing of SQL or of the MySQL protocol: a table carries
// an opaque metadata blob (its schema, owned by the caller) and each row is an
// opaque payload. What the package owns is the part that must be exactly
// right: row ids, ordering, durability, ownership and blocking waits.
//
// # Model
//
// Every inserted row gets the next rowid of its table (1, 2, ...), in append
// order, without gaps; rowids survive restarts and are never reused, except
// that TRUNCATE starts a table again at 1 (as Q4M does).
//
// A connection is represented by an Owner. An Owner is either in owner mode or
// not, and owns at most one row across all tables (Q4M's "owner mode"). Wait
// first consumes the row the Owner holds, then hands it the oldest eligible
// row of the first table (in argument order) that has one, or blocks until a
// row arrives. End consumes the owned row; Abort releases it to its original
// position; Close (the connection went away) releases it too.
//
// # Durability
//
// All writes go through one commit loop (writer.go) that gathers the pending
// operations of every connection into one Pebble batch and commits it with a
// single synced write: group commit. A call that writes returns only after its
// batch is synced. A row becomes visible to readers and consumers only after
// the batch holding it is synced, because the in-memory index of ready rows
// (which serves Wait and scans) is updated only then.
//
// # Monitoring
//
// Snapshot returns every table's depth, owned rows, waiters, counters and
// the age of its oldest free row (rows carry the time they were published
// in their index entry); Stats and Metrics give the store's counters and
// Pebble's. Options.Observer is told of each group commit and each Wait as
// they happen, for histograms. None of it knows how it is exported.
//
// # Concurrency
//
// DB is safe for concurrent use. An Owner belongs to one connection and must
// be used from one goroutine at a time. The in-memory state is guarded by
// DB.mu; no Pebble I/O happens while it is held. Lock order: DB.mu is a leaf
// lock (nothing else is acquired while holding it).
package queue
