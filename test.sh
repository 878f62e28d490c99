#!/usr/bin/env bash
# Installs what the tests need (Debian packages, when missing and run as
# root), then runs every test: go vet, and go test -race over all packages,
# including the end-to-end tests with the mysql CLI, Perl DBI (DBD::mysql,
# DBD::MariaDB) and go-sql-driver/mysql.
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

# Each fuzzer briefly (longer: FUZZTIME=5m ./test.sh). Their seed corpora
# also run as ordinary tests above.
if [ $# -eq 0 ]; then
	for f in ./sqlfront:FuzzExec ./sqlfront:FuzzInsertShape ./sqlfront/cond:FuzzCompile ./server:FuzzPacketLimit ./server:FuzzClientPlugin; do
		go test -run '^$' -fuzz "^${f#*:}\$" -fuzztime "${FUZZTIME:-10s}" "${f%%:*}"
	done
fi
