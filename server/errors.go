package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/queue"
	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// Causes with which a statement's context is cancelled.
var (
	errKilled     = errors.New("server: killed")
	errShutdown   = errors.New("server: shutting down")
	errClientGone = errors.New("server: client went away")
)

// sqlStates completes go-mysql's SQLSTATE table for codes it lacks.
var sqlStates = map[uint16]string{
	1123: "HY000",
	1235: "42000",
	1286: "42000",
	1366: "HY000",
	1406: "22001",
	1264: "22003",
	1292: "22007",
	1265: "01000",
	1364: "HY000",
	1193: "HY000",
	1231: "42000",
	1238: "HY000",
	1305: "42000",
	1582: "42000",
	1690: "22003",
	1065: "42000",
	1096: "HY000",
	1164: "42000",
	1101: "42000",
	1067: "42000",
	1110: "42000",
	1113: "42000",
	1094: "HY000",
	1095: "HY000",
	1317: "70100",
	1053: "08S01",
	1030: "HY000",
	1114: "HY000",
	3159: "HY000",
	1040: "08004",
	1043: "08S01",
	1153: "08S01",
}

// errorPacket is an error packet (with its header) for the few errors
// written before or outside a go-mysql connection: too many connections,
// a bad handshake, a packet over max_allowed_packet.
func errorPacket(code uint16, msg string, seq byte) []byte {
	e := newError(code, msg)
	payload := append([]byte{0xff, byte(code), byte(code >> 8), '#'}, e.State+msg...)
	return append([]byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}, payload...)
}

func newError(code uint16, msg string) *mysql.MyError {
	e := mysql.NewError(code, msg)
	if st, ok := sqlStates[code]; ok {
		e.State = st
	}
	return e
}

// toMyError is the one place where errors become MySQL error packets. It
// returns a bare *mysql.MyError, the only form go-mysql sends with its code.
func toMyError(err error, log *slog.Logger) *mysql.MyError {
	var me *mysql.MyError
	var se *sqlfront.Error
	var te *sqlfront.TableError
	var de *sqlfront.DatabaseError
	switch {
	case errors.As(err, &me):
		return me
	case errors.As(err, &se):
		return newError(se.Code, se.Message)
	case errors.Is(err, errKilled) || errors.Is(err, errClientGone) || errors.Is(err, context.Canceled):
		return newError(mysql.ER_QUERY_INTERRUPTED, "Query execution was interrupted")
	case errors.Is(err, errShutdown) || errors.Is(err, queue.ErrClosed):
		return newError(mysql.ER_SERVER_SHUTDOWN, "Server shutdown in progress")
	case errors.Is(err, queue.ErrDiskFull): // InnoDB's answer to a full disk
		var fe *queue.FullError
		name := ""
		if errors.As(err, &fe) {
			name = fe.Table
			if name == "" {
				name = fe.Database
			}
		}
		return newError(mysql.ER_RECORD_FILE_FULL, fmt.Sprintf("The table '%s' is full", name))
	case errors.Is(err, queue.ErrStorage):
		log.Error("storage failure", "err", err)
		return newError(mysql.ER_GET_ERRNO, "Got error 5 'Input/output error' from storage engine")
	case errors.As(err, &te):
		switch {
		case errors.Is(te.Err, queue.ErrNoSuchTable):
			return newError(mysql.ER_NO_SUCH_TABLE, fmt.Sprintf("Table '%s.%s' doesn't exist", te.Database, te.Table))
		case errors.Is(te.Err, queue.ErrTableExists):
			return newError(mysql.ER_TABLE_EXISTS_ERROR, fmt.Sprintf("Table '%s' already exists", te.Table))
		}
	case errors.As(err, &de):
		if errors.Is(de.Err, queue.ErrNoSuchDatabase) {
			return newError(mysql.ER_BAD_DB_ERROR, fmt.Sprintf("Unknown database '%s'", de.Database))
		}
	}
	log.Error("internal error", "err", err)
	return newError(mysql.ER_UNKNOWN_ERROR, "Internal error; see the server log")
}
