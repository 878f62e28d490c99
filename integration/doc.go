// Package integration holds end-to-end tests: they build cmd/q4mproxy, start
// it on 127.0.0.1 with a free port and a temporary data directory, and drive
// it with real clients: the mysql CLI, Perl DBI (DBD::mysql and
// DBD::MariaDB) and Go's go-sql-driver/mysql.
//
// A missing client skips its tests with a message saying what to install,
// unless Q4MPROXY_REQUIRE_CLIENTS=1 (set by the project's test script), in
// which case it fails them.
package integration
