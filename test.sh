#!/usr/bin/env bash
# Installs what the tests need (Debian packages, when missing and run as
# root), then runs every test: go vet, and go test -race over all packages,
# including the end-to-end tests with the mysql CLI, Perl DBI (DBD::mysql,
# DBD::MariaDB) and go-sql-driver/mysql, and those that start a throwaway
# MariaDB (mariadb-server) to compare q4mproxy with or to put behind it;
# then the integration tests again with every q4mproxy in front of MariaDB.
#
#   ./test.sh                 # everything
#   ./test.sh -run Perl       # extra arguments go to go test
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v mysql >/dev/null 2>&1 || need+=(mariadb-client)
perl -MDBD::mysql -e1 >/dev/null 2>&1 || need+=(libdbd-mysql-perl)
perl -MDBD::MariaDB -e1 >/dev/null 2>&1 || need+=(libdbd-mariadb-perl)
perl -MTest::More -e1 >/dev/null 2>&1 || need+=(perl)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
# mariadbd is in /usr/sbin, often not in a non-root user's PATH
{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 || need+=(mariadb-server)
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
if ((${#need[@]})); then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing: ${need[*]}"
		apt-get update -q >/dev/null
		DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
	else
		echo "missing test dependencies: ${need[*]} (install them with apt-get, or run this script as root)" >&2
		exit 1
	fi
fi

export Q4MPROXY_REQUIRE_CLIENTS=1 # a missing client fails its tests instead of skipping them
go vet ./...
go test -race -count=1 -timeout 30m "$@" ./...

# The integration suite once more with every q4mproxy in front of the
# throwaway MariaDB (--upstream): queue behaviour must not change with an
# upstream. Tests of what only a standalone server answers skip themselves
# (standaloneOnly); those written for --upstream already ran above.
if [ $# -eq 0 ]; then
	Q4MPROXY_TEST_UPSTREAM=1 go test -race -count=1 -timeout 30m \
		-skip '^(TestUpstream|TestGoSQLDriverSuite|TestSuiteDiff|TestMariaDBHelper)' ./integration
fi

# Each fuzzer briefly, with an execution-count budget (-fuzztime Nx): a
# duration budget races the fuzz coordinator's deadline on a loaded machine
# (Go < 1.27 fails with "context deadline exceeded" and no input). The
# counts are about 10 s of work each on 2 cores. FUZZTIME overrides them
# for every fuzzer: FUZZTIME=5m ./test.sh, or FUZZTIME=1000000x.
# Their seed corpora also run as ordinary tests above.
if [ $# -eq 0 ]; then
	for f in ./sqlfront:FuzzExec:20000x ./sqlfront:FuzzInsertShape:80000x ./sqlfront:FuzzFastUpstream:50000x ./sqlfront/cond:FuzzCompile:150000x ./server:FuzzPacketLimit:60000x ./server:FuzzClientPlugin:50000x; do
		IFS=: read -r pkg name budget <<<"$f"
		go test -run '^$' -fuzz "^${name}\$" -fuzztime "${FUZZTIME:-$budget}" "$pkg"
	done
fi
