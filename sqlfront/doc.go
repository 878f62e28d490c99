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
//   - Q4M's functions queue_wait, queue_end, queue_abort and queue_rowid,
//     and queue_backup, an online copy of the store (backup.go);
//   - what clients send around queries: SET, BEGIN/COMMIT/ROLLBACK and
//     savepoints (accepted, Q4M is not transactional), SELECT @@var,
//     VERSION(), DATABASE(), SHOW DATABASES/TABLES/COLUMNS/CREATE
//     TABLE/VARIABLES/..., DESCRIBE;
//   - what mysqldump sends and its dumps hold (dump.go): LOCK/UNLOCK
//     TABLES, FLUSH TABLES, ALTER TABLE ... DISABLE/ENABLE KEYS (no-ops),
//     and its information_schema questions;
//   - what monitoring reads (opsinfo.go): SHOW [GLOBAL|SESSION] STATUS
//     [LIKE | WHERE any condition], FLUSH STATUS, SHOW SLAVE/MASTER STATUS
//     (empty), information_schema.PROCESSLIST, GLOBAL_STATUS,
//     SESSION_STATUS, GLOBAL_VARIABLES, SESSION_VARIABLES, and GROUP BY
//     (COUNT, SUM, MIN, MAX) over information_schema tables; the counters
//     come from Config.Status and Config.ProcessList.
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
