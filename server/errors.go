package server

import (
	"context"
	"errors"
	"log/slog"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/q4mproxy/q4mproxy/sqlfront"
)

// Causes with which a statement's context is cancelled.
var (
	errKilled     = errors.New("server: killed")
	errShutdown   = errors.New("server: shutting down")
	errClientGone = errors.New("server: client went away")
)

// errorPacket is an error packet (with its header) for the few errors
// written before or outside a go-mysql connection: too many connections,
// a bad handshake, a packet over max_allowed_packet.
func errorPacket(code uint16, msg string, seq byte) []byte {
	e := newError(code, msg)
	payload := append([]byte{0xff, byte(code), byte(code >> 8), '#'}, e.State+msg...)
	return append([]byte{byte(len(payload)), byte(len(payload) >> 8), byte(len(payload) >> 16), seq}, payload...)
}

// newError is a MySQL error with the SQLSTATE of the catalog
// (sqlfront/errors.go). Every error q4mproxy sends is made here.
func newError(code uint16, msg string) *mysql.MyError {
	return &mysql.MyError{Code: code, Message: msg, State: sqlfront.SQLState(code)}
}

// toMyError is the one place where errors become MySQL error packets. It
// returns a bare *mysql.MyError, the only form go-mysql sends with its code.
// A statement cancelled by this package's causes gets 1317 or 1053; every
// other error gets its code from the catalog (sqlfront.Cast), and one the
// catalog does not know, or a storage failure, is logged.
func toMyError(err error, log *slog.Logger) *mysql.MyError {
	var me *mysql.MyError
	var se *sqlfront.Error
	switch {
	case errors.As(err, &me):
		return me
	case errors.As(err, &se):
		return newError(se.Code, se.Message)
	case errors.Is(err, errKilled) || errors.Is(err, errClientGone) || errors.Is(err, context.Canceled):
		return newError(mysql.ER_QUERY_INTERRUPTED, "Query execution was interrupted")
	case errors.Is(err, errShutdown):
		return newError(mysql.ER_SERVER_SHUTDOWN, "Server shutdown in progress")
	}
	e, ok := sqlfront.Cast(err)
	if !ok {
		log.Error("internal error", "err", err)
		return newError(mysql.ER_UNKNOWN_ERROR, "Internal error; see the server log")
	}
	if e.Code == sqlfront.ErrCodeStorage {
		log.Error("storage failure", "err", err)
	}
	return newError(e.Code, e.Message)
}
