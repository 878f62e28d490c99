// Package server speaks the MySQL client/server protocol (through
// go-mysql's server package) in front of a sqlfront.Engine.
//
// Each accepted connection gets one goroutine and one sqlfront.Session; the
// go-mysql Handler methods run serially on that goroutine. The package owns:
// authentication (mysql_native_password and caching_sha2_password, chosen
// per connection by what the client asks for), a handshake timeout, the
// single translation of errors to MySQL error packets (errors.go, from the
// catalog in sqlfront/errors.go), result sets with real column types in
// both the text and the binary protocol (result.go), noticing a client that
// disconnects while a statement blocks (watchconn.go), KILL, graceful
// shutdown, and the status counters of SHOW STATUS (status.go: atomics
// bumped where connections read, write and run commands; read by
// StatusVars, ErrorCounts and ProcessRows for the HTTP listener too).
package server
