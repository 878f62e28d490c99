package sqlfront

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
)

// The error catalog: every MySQL error q4mproxy raises itself (an
// upstream's errors reach clients as the upstream sent them), in three
// parts that live together in this file:
//
//   - the names of the codes (the const block below);
//   - the SQLSTATE each is sent with (sqlStates);
//   - the code and message each error of package queue becomes
//     (engineErrors, applied by Cast).
//
// The numbers are go-mysql's mysql.ER_* constants: the protocol library
// owns the catalog of MySQL's codes and this one does not copy it (STYLE.md
// b2). The ErrCode* names are this package's vocabulary for the codes it
// raises, each defined as go-mysql's constant; only the codes go-mysql
// lacks are numbers here. Code that already speaks go-mysql (package
// server) uses mysql.ER_* directly; both spellings are the same constant.
//
// It lives in sqlfront, not in server or a package of its own, because the
// mapping of queue's errors needs TableError and DatabaseError (the objects
// the messages name), and sqlfront's tests, which cannot import server,
// need the same mapping. sqlfront's only importers (server, cmd/q4mproxy)
// link go-mysql already; queue and valve stay free of SQL and protocol.
// server/errors.go is the one place that turns the catalog into packets
// (toMyError, newError).
//
// TestEngineErrorsCatalogued fails when queue exports an error without an
// entry in engineErrors; TestErrorCodesNamed fails on a bare number where
// sqlfront or server raises an error, and on a code without a SQLSTATE
// here.
const (
	ErrCodeCantCreateFile          = mysql.ER_CANT_CREATE_FILE                 // 1004
	ErrCodeDBCreateExists          = mysql.ER_DB_CREATE_EXISTS                 // 1007
	ErrCodeDBDropExists            = mysql.ER_DB_DROP_EXISTS                   // 1008
	ErrCodeStorage                 = mysql.ER_GET_ERRNO                        // 1030
	ErrCodeTableNoOption           = mysql.ER_ILLEGAL_HA                       // 1031
	ErrCodeNoDB                    = mysql.ER_NO_DB_ERROR                      // 1046
	ErrCodeBadNull                 = mysql.ER_BAD_NULL_ERROR                   // 1048
	ErrCodeBadDB                   = mysql.ER_BAD_DB_ERROR                     // 1049
	ErrCodeTableExists             = mysql.ER_TABLE_EXISTS_ERROR               // 1050
	ErrCodeBadTable                = mysql.ER_BAD_TABLE_ERROR                  // 1051
	ErrCodeServerShutdown          = mysql.ER_SERVER_SHUTDOWN                  // 1053
	ErrCodeBadField                = mysql.ER_BAD_FIELD_ERROR                  // 1054
	ErrCodeTooLongIdent            = mysql.ER_TOO_LONG_IDENT                   // 1059
	ErrCodeDupFieldName            = mysql.ER_DUP_FIELDNAME                    // 1060
	ErrCodeParse                   = mysql.ER_PARSE_ERROR                      // 1064
	ErrCodeEmptyQuery              = mysql.ER_EMPTY_QUERY                      // 1065
	ErrCodeInvalidDefault          = mysql.ER_INVALID_DEFAULT                  // 1067
	ErrCodeTooManyKeys             = mysql.ER_TOO_MANY_KEYS                    // 1069
	ErrCodeTooBigFieldLength       = mysql.ER_TOO_BIG_FIELDLENGTH              // 1074
	ErrCodeWrongAutoKey            = mysql.ER_WRONG_AUTO_KEY                   // 1075
	ErrCodeCantRemoveAllFields     = mysql.ER_CANT_REMOVE_ALL_FIELDS           // 1090
	ErrCodeCantDropField           = mysql.ER_CANT_DROP_FIELD_OR_KEY           // 1091
	ErrCodeFileExists              = mysql.ER_FILE_EXISTS_ERROR                // 1086
	ErrCodeNoSuchThread            = mysql.ER_NO_SUCH_THREAD                   // 1094
	ErrCodeNoTablesUsed            = mysql.ER_NO_TABLES_USED                   // 1096
	ErrCodeBlobCantHaveDefault     = mysql.ER_BLOB_CANT_HAVE_DEFAULT           // 1101
	ErrCodeWrongDBName             = mysql.ER_WRONG_DB_NAME                    // 1102
	ErrCodeWrongTableName          = mysql.ER_WRONG_TABLE_NAME                 // 1103
	ErrCodeUnknown                 = mysql.ER_UNKNOWN_ERROR                    // 1105
	ErrCodeFieldSpecified          = mysql.ER_FIELD_SPECIFIED_TWICE            // 1110
	ErrCodeInvalidGroupFuncUse     = mysql.ER_INVALID_GROUP_FUNC_USE           // 1111
	ErrCodeTableMustHaveCols       = mysql.ER_TABLE_MUST_HAVE_COLUMNS          // 1113
	ErrCodeRecordFileFull          = mysql.ER_RECORD_FILE_FULL                 // 1114
	ErrCodeCantInitUDF             = mysql.ER_CANT_INITIALIZE_UDF              // 1123
	ErrCodeWrongValueCount         = mysql.ER_WRONG_VALUE_COUNT_ON_ROW         // 1136
	ErrCodeNoSuchTable             = mysql.ER_NO_SUCH_TABLE                    // 1146
	ErrCodeCantHandleAutoIncrement = mysql.ER_TABLE_CANT_HANDLE_AUTO_INCREMENT // 1164
	ErrCodeUnknownSysVar           = mysql.ER_UNKNOWN_SYSTEM_VARIABLE          // 1193
	ErrCodeWrongArguments          = mysql.ER_WRONG_ARGUMENTS                  // 1210
	ErrCodeWrongParamCount         = mysql.ER_WRONG_ARGUMENTS                  // 1210, for a prepared statement's parameters
	ErrCodeLockDeadlock            = mysql.ER_LOCK_DEADLOCK                    // 1213
	ErrCodeWrongValueForVar        = mysql.ER_WRONG_VALUE_FOR_VAR              // 1231
	ErrCodeNotSupported            = mysql.ER_NOT_SUPPORTED_YET                // 1235
	ErrCodeReadOnlyVar             = mysql.ER_INCORRECT_GLOBAL_LOCAL_VAR       // 1238
	ErrCodeUnknownStmtHandle       = mysql.ER_UNKNOWN_STMT_HANDLER             // 1243
	ErrCodeUnsupportedPS           = mysql.ER_UNSUPPORTED_PS                   // 1295
	ErrCodeDataOutOfRange          = mysql.ER_WARN_DATA_OUT_OF_RANGE           // 1264
	ErrCodeDataTruncated           = mysql.WARN_DATA_TRUNCATED                 // 1265
	ErrCodeUnknownEngine           = mysql.ER_UNKNOWN_STORAGE_ENGINE           // 1286
	ErrCodeTruncatedValue          = mysql.ER_TRUNCATED_WRONG_VALUE            // 1292
	ErrCodeNoSuchFunction          = mysql.ER_SP_DOES_NOT_EXIST                // 1305
	ErrCodeNoSuchSavepoint         = mysql.ER_SP_DOES_NOT_EXIST                // 1305, "SAVEPOINT sp does not exist"
	ErrCodeQueryInterrupted        = mysql.ER_QUERY_INTERRUPTED                // 1317
	ErrCodeNoDefault               = mysql.ER_NO_DEFAULT_FOR_FIELD             // 1364
	ErrCodeIncorrectValue          = mysql.ER_TRUNCATED_WRONG_VALUE_FOR_FIELD  // 1366
	ErrCodeDataTooLong             = mysql.ER_DATA_TOO_LONG                    // 1406
	ErrCodeTableDefChanged         = mysql.ER_TABLE_DEF_CHANGED                // 1412
	ErrCodeNativeParamCount        = mysql.ER_WRONG_PARAMCOUNT_TO_NATIVE_FCT   // 1582
	ErrCodeValueOutOfRange         = mysql.ER_DATA_OUT_OF_RANGE                // 1690

	// Codes go-mysql has no constant for.

	// ErrCodeConnHostError is the client library's CR_CONN_HOST_ERROR
	// ("Can't connect to MySQL server on ..."), what a client of a dropped
	// mysqld gets: q4mproxy sends it when the upstream cannot be reached.
	ErrCodeConnHostError = 2003
	// ErrCodeSecureTransportRequired is ER_SECURE_TRANSPORT_REQUIRED
	// (MySQL 5.7.8 and later).
	ErrCodeSecureTransportRequired = 3159
)

// sqlStates is the SQLSTATE of every code q4mproxy raises: the ErrCode*
// names, and the codes package server raises by go-mysql's names. They are
// MySQL's own, and agree with go-mysql's mysql.MySQLState wherever that
// has the code (TestSQLStates); "HY000" is MySQL's state for a code with
// none of its own.
var sqlStates = map[uint16]string{
	ErrCodeCantCreateFile:                  "HY000",
	ErrCodeFileExists:                      "HY000",
	ErrCodeDBCreateExists:                  "HY000",
	ErrCodeDBDropExists:                    "HY000",
	ErrCodeStorage:                         "HY000",
	ErrCodeTableNoOption:                   "HY000",
	mysql.ER_CON_COUNT_ERROR:               "08004",
	mysql.ER_HANDSHAKE_ERROR:               "08S01",
	mysql.ER_ACCESS_DENIED_ERROR:           "28000",
	mysql.ER_NOT_SUPPORTED_AUTH_MODE:       "08004",
	ErrCodeNoDB:                            "3D000",
	mysql.ER_UNKNOWN_COM_ERROR:             "08S01",
	ErrCodeBadNull:                         "23000",
	ErrCodeBadDB:                           "42000",
	ErrCodeTableExists:                     "42S01",
	ErrCodeBadTable:                        "42S02",
	ErrCodeServerShutdown:                  "08S01",
	ErrCodeBadField:                        "42S22",
	ErrCodeTooLongIdent:                    "42000",
	ErrCodeDupFieldName:                    "42S21",
	ErrCodeParse:                           "42000",
	ErrCodeEmptyQuery:                      "42000",
	ErrCodeInvalidDefault:                  "42000",
	ErrCodeTooManyKeys:                     "42000",
	ErrCodeTooBigFieldLength:               "42000",
	ErrCodeWrongAutoKey:                    "42000",
	ErrCodeCantRemoveAllFields:             "42000",
	ErrCodeCantDropField:                   "42000",
	ErrCodeNoSuchThread:                    "HY000",
	mysql.ER_KILL_DENIED_ERROR:             "HY000",
	ErrCodeNoTablesUsed:                    "HY000",
	ErrCodeBlobCantHaveDefault:             "42000",
	ErrCodeWrongDBName:                     "42000",
	ErrCodeWrongTableName:                  "42000",
	ErrCodeUnknown:                         "HY000",
	ErrCodeFieldSpecified:                  "42000",
	ErrCodeInvalidGroupFuncUse:             "HY000",
	ErrCodeTableMustHaveCols:               "42000",
	ErrCodeRecordFileFull:                  "HY000",
	ErrCodeCantInitUDF:                     "HY000",
	ErrCodeWrongValueCount:                 "21S01",
	ErrCodeNoSuchTable:                     "42S02",
	mysql.ER_NET_PACKET_TOO_LARGE:          "08S01",
	ErrCodeCantHandleAutoIncrement:         "42000",
	ErrCodeUnknownSysVar:                   "HY000",
	mysql.ER_WARNING_NOT_COMPLETE_ROLLBACK: "HY000", // a warning (ROLLBACK after a queue write)
	ErrCodeWrongArguments:                  "HY000",
	ErrCodeLockDeadlock:                    "40001",
	ErrCodeWrongValueForVar:                "42000",
	ErrCodeNotSupported:                    "42000",
	ErrCodeReadOnlyVar:                     "HY000",
	ErrCodeUnknownStmtHandle:               "HY000",
	ErrCodeUnsupportedPS:                   "HY000",
	ErrCodeDataOutOfRange:                  "22003",
	ErrCodeDataTruncated:                   "01000",
	ErrCodeUnknownEngine:                   "42000",
	ErrCodeTruncatedValue:                  "22007",
	ErrCodeNoSuchFunction:                  "42000",
	ErrCodeQueryInterrupted:                "70100",
	ErrCodeNoDefault:                       "HY000",
	ErrCodeIncorrectValue:                  "HY000",
	ErrCodeDataTooLong:                     "22001",
	ErrCodeTableDefChanged:                 "HY000",
	mysql.ER_STMT_HAS_NO_OPEN_CURSOR:       "HY000",
	ErrCodeNativeParamCount:                "42000",
	ErrCodeValueOutOfRange:                 "22003",
	ErrCodeConnHostError:                   "HY000",
	ErrCodeSecureTransportRequired:         "HY000",
}

// SQLState returns the SQLSTATE sent with code: the catalog's, else
// go-mysql's, else MySQL's default "HY000".
func SQLState(code uint16) string {
	if st, ok := sqlStates[code]; ok {
		return st
	}
	if st, ok := mysql.MySQLState[code]; ok {
		return st
	}
	return mysql.DEFAULT_MYSQL_STATE
}

// engineErrors gives each error of package queue the error a MySQL server
// answers in its place. Cast takes the first entry whose err is in the
// error's chain, so the order settles an error that wraps two. msg gets the
// database and table named by the FullError, TableError or DatabaseError
// around the error (empty when there is none).
var engineErrors = []struct {
	err  error
	code uint16
	msg  func(db, table string) string
}{
	// The store closes last, after the server stopped: a server going down.
	{queue.ErrClosed, ErrCodeServerShutdown, fixed("Server shutdown in progress")},
	// InnoDB's answer to a full disk; it names the table, or the database
	// for database DDL.
	{queue.ErrDiskFull, ErrCodeRecordFileFull, func(db, table string) string {
		if table == "" {
			table = db
		}
		return fmt.Sprintf("The table '%s' is full", table)
	}},
	// A failed write to the store: InnoDB's EIO (server/errors.go logs it).
	{queue.ErrStorage, ErrCodeStorage, fixed("Got error 5 'Input/output error' from storage engine")},
	{queue.ErrNoSuchTable, ErrCodeNoSuchTable, func(db, table string) string {
		return fmt.Sprintf("Table '%s' doesn't exist", qualified(db, table))
	}},
	{queue.ErrTableExists, ErrCodeTableExists, func(_, table string) string {
		return fmt.Sprintf("Table '%s' already exists", table)
	}},
	{queue.ErrNoSuchDatabase, ErrCodeBadDB, func(db, _ string) string {
		return fmt.Sprintf("Unknown database '%s'", db)
	}},
	{queue.ErrDatabaseExists, ErrCodeDBCreateExists, func(db, _ string) string {
		return fmt.Sprintf("Can't create database '%s'; database exists", db)
	}},
	// An INSERT's rows were encoded for a definition an ALTER TABLE
	// replaced: MySQL's answer when a table changed under a statement.
	{queue.ErrTableChanged, ErrCodeTableDefChanged, fixed("Table definition has changed, please retry transaction")},
	// Owner-mode misuse is a failed UDF init in Q4M (queue_abort() outside
	// owner mode); the queue functions check it before calling queue.
	{queue.ErrNotOwner, ErrCodeCantInitUDF, fixed("Can't initialize function; not in owner mode")},
	{queue.ErrNoRow, ErrCodeCantInitUDF, fixed("Can't initialize function; no row is owned")},
	// A write of a consumer that another process took over from (a
	// valve's former term): refused whole, as InnoDB's deadlock victim.
	{queue.ErrFenced, ErrCodeLockDeadlock, fixed("Deadlock found when trying to get lock; try restarting transaction")},
}

func fixed(msg string) func(db, table string) string {
	return func(string, string) string { return msg }
}

func qualified(db, table string) string {
	if db == "" {
		return table
	}
	return db + "." + table
}

// Cast returns the MySQL error err stands for: err's own *Error, or the
// catalog's error for the queue error in err's chain, naming the object of
// the TableError, DatabaseError or FullError around it. ok is false for
// any other error (an internal one: the server answers 1105 and logs it).
func Cast(err error) (e *Error, ok bool) {
	if errors.As(err, &e) {
		return e, true
	}
	for _, m := range engineErrors {
		if errors.Is(err, m.err) {
			db, table := objectOf(err)
			return &Error{Code: m.code, Message: m.msg(db, table)}, true
		}
	}
	return nil, false
}

// objectOf returns the database and table an error concerns, from the
// innermost-known wrapper: a FullError names exactly what was written.
func objectOf(err error) (db, table string) {
	var fe *queue.FullError
	var te *TableError
	var de *DatabaseError
	switch {
	case errors.As(err, &fe):
		return fe.Database, fe.Table
	case errors.As(err, &te):
		return te.Database, te.Table
	case errors.As(err, &de):
		return de.Database, ""
	}
	return "", ""
}

// Error is an SQL-level error: it carries the MySQL error number and the
// message a MySQL server would send.
type Error struct {
	Code    uint16
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("ERROR %d: %s", e.Code, e.Message) }

func errorf(code uint16, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// notSupported is the answer to anything this server does not emulate.
func notSupported(what string) *Error {
	return errorf(ErrCodeNotSupported, "This version of q4mproxy doesn't yet support '%s'", what)
}

// udfInitError is MySQL's error for a UDF whose init function refused the call.
func udfInitError(name, msg string) *Error {
	return errorf(ErrCodeCantInitUDF, "Can't initialize function '%s'; %s", name, msg)
}

var nearRE = regexp.MustCompile(`(?s)line (\d+) column \d+ near "(.*)"\s*$`)

// parseError turns the TiDB parser's error into MySQL's 1064 message.
func parseError(sql string, err error) *Error {
	msg := err.Error()
	line, near := "1", sql
	if m := nearRE.FindStringSubmatch(msg); m != nil {
		line, near = m[1], m[2]
	}
	if len(near) > 80 {
		near = near[:80]
	}
	near = strings.TrimRight(near, " ")
	return errorf(ErrCodeParse, "You have an error in your SQL syntax; check the manual that corresponds to your MySQL server version for the right syntax to use near '%s' at line %s", near, line)
}

// TableError wraps an error of the queue package with the object it concerns,
// so that the server can render MySQL's message ("Table 'test.t' doesn't exist").
type TableError struct {
	Database, Table string
	Err             error
}

func (e *TableError) Error() string {
	return fmt.Sprintf("%s.%s: %v", e.Database, e.Table, e.Err)
}

func (e *TableError) Unwrap() error { return e.Err }

// DatabaseError wraps an error of the queue package about a database.
type DatabaseError struct {
	Database string
	Err      error
}

func (e *DatabaseError) Error() string { return fmt.Sprintf("%s: %v", e.Database, e.Err) }

func (e *DatabaseError) Unwrap() error { return e.Err }
