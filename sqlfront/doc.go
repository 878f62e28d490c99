// Package sqlfront turns SQL statements into operations on queue tables.
//
// It parses with the TiDB parser and executes a MySQL-compatible subset:
//
//   - CREATE TABLE ... ENGINE=queue, DROP TABLE, TRUNCATE, CREATE/DROP DATABASE, USE;
//   - INSERT [INTO] t [(cols)] VALUES (...), ... and INSERT ... SET, with
//     constant expressions and MySQL's strict-mode errors;
//   - SELECT over one queue table (*, columns, expressions, COUNT(*),
//     WHERE, ORDER BY, LIMIT) with Q4M's owner-mode visibility, and the
//     one-statement consume form SELECT * FROM t WHERE queue_wait('t');
//   - DELETE with WHERE, ORDER BY and LIMIT; UPDATE is refused as Q4M refuses it;
//   - Q4M's functions queue_wait, queue_end, queue_abort and queue_rowid;
//   - what clients send around queries: SET, BEGIN/COMMIT/ROLLBACK (accepted,
//     Q4M is not transactional), SELECT @@var, VERSION(), DATABASE(),
//     SHOW DATABASES/TABLES/COLUMNS/CREATE TABLE/VARIABLES/..., DESCRIBE.
//
// Anything else is answered with MySQL error 1235. All statements go
// through Session.Exec (or Prepare/Execute), which is the single routing
// point a future upstream forwarder hooks into.
//
// A Session belongs to one connection and is not safe for concurrent use.
// Errors are *Error (an SQL-level error that carries its MySQL code),
// *TableError or *DatabaseError (wrapping the queue package's sentinels),
// or errors from the context (a cancelled statement). errors.go is the
// error catalog: the named MySQL codes, their SQLSTATEs, and Cast, which
// gives every queue error its MySQL code and message.
package sqlfront
