package sqlfront

import (
	"fmt"
	"regexp"
	"strings"
)

// MySQL error numbers that this package raises. The SQLSTATE of each is the
// server's business (it maps codes in one place).
const (
	ErrCodeDBCreateExists    = 1007
	ErrCodeDBDropExists      = 1008
	ErrCodeNoDB              = 1046
	ErrCodeBadNull           = 1048
	ErrCodeBadDB             = 1049
	ErrCodeTableExists       = 1050
	ErrCodeBadTable          = 1051
	ErrCodeBadField          = 1054
	ErrCodeParse             = 1064
	ErrCodeTooManyKeys       = 1069
	ErrCodeWrongAutoKey      = 1075
	ErrCodeWrongDBName       = 1102
	ErrCodeWrongTableName    = 1103
	ErrCodeUnknown           = 1105
	ErrCodeCantInitUDF       = 1123
	ErrCodeWrongValueCount   = 1136
	ErrCodeNoSuchTable       = 1146
	ErrCodeTooLongIdent      = 1059
	ErrCodeTableNoOption     = 1031
	ErrCodeUnknownSysVar     = 1193
	ErrCodeWrongArguments    = 1210
	ErrCodeNotSupported      = 1235
	ErrCodeDataOutOfRange    = 1264
	ErrCodeDataTruncated     = 1265
	ErrCodeUnknownEngine     = 1286
	ErrCodeTruncatedValue    = 1292
	ErrCodeFieldSpecified    = 1110
	ErrCodeDupFieldName      = 1060
	ErrCodeNoDefault         = 1364
	ErrCodeIncorrectValue    = 1366
	ErrCodeDataTooLong       = 1406
	ErrCodeUnknownStmtHandle = 1243
	ErrCodeWrongParamCount   = 1210
	ErrCodeTooBigFieldLength = 1074
	ErrCodeInvalidDefault    = 1067
	ErrCodeTableMustHaveCols = 1113
	ErrCodeNoSuchThread      = 1094
)

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
