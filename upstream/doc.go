// Package upstream owns the sessions q4mproxy keeps with an upstream MySQL
// or MariaDB server (--upstream), to which every statement that is not
// about queue tables is forwarded.
//
// Each client connection has at most one upstream connection, opened at its
// first forwarded statement and never shared with another client, so that
// transactions, user variables, temporary tables, LAST_INSERT_ID() and
// prepared statements behave as on a direct connection. Nothing is cached
// between clients.
//
// Responses are relayed packet by packet: the statement goes to the
// upstream as the client sent it, and each packet of the answer (OK, error,
// column definitions, rows, further result sets, LOCAL INFILE requests) is
// copied to the client as it arrives, with only the sequence number (and a
// prepared statement's id) rewritten. A slow client therefore slows the
// upstream down, and a large result never sits in memory. The relay follows
// the protocol just enough to know where a response ends: it tracks the
// status flags of the final OK or EOF packet (transaction, autocommit, more
// results, open cursor).
//
// The upstream connection asks for the capabilities the client negotiated
// with q4mproxy (CLIENT_FOUND_ROWS, CLIENT_SESSION_TRACK, CLIENT_MULTI_RESULTS,
// CLIENT_LOCAL_FILES, ...) and none that would change the packet formats the
// client expects (CLIENT_DEPRECATE_EOF, CLIENT_QUERY_ATTRIBUTES are never
// requested, as q4mproxy does not offer them).
//
// A Session is used by its connection's goroutine only; KillQuery may be
// called from any goroutine.
package upstream
