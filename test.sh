#!/usr/bin/env bash
# Installs what the tests need (Debian packages, when missing and run as
# root), then runs every test: go vet, and go test -race over all packages,
# including the end-to-end tests with the mysql CLI, Perl DBI (DBD::mysql,
# DBD::MariaDB) and go-sql-driver/mysql, and those that start a throwaway
# MariaDB (mariadb-server) to compare q4mproxy with or to put behind it, or
# a throwaway PostgreSQL (postgresql) and RabbitMQ (rabbitmq-server) to
# drive with q4mbench;
# then the integration tests again with every q4mproxy in front of MariaDB.
#
#   ./test.sh                 # everything
#   ./test.sh -run Perl       # extra arguments go to go test
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v mysql >/dev/null 2>&1 || need+=(mariadb-client)
command -v mysqldump >/dev/null 2>&1 || need+=(mariadb-client)
perl -MDBD::mysql -e1 >/dev/null 2>&1 || need+=(libdbd-mysql-perl)
perl -MDBD::MariaDB -e1 >/dev/null 2>&1 || need+=(libdbd-mariadb-perl)
perl -MTest::More -e1 >/dev/null 2>&1 || need+=(perl)
command -v script >/dev/null 2>&1 || need+=(bsdutils)
# mariadbd is in /usr/sbin, often not in a non-root user's PATH
{ command -v mariadbd || [ -x /usr/sbin/mariadbd ]; } >/dev/null 2>&1 || need+=(mariadb-server)
command -v sysbench >/dev/null 2>&1 || need+=(sysbench)
# MariaDB Connector/C, for the C client of the COM_CHANGE_USER tests
{ command -v gcc && pkg-config --exists libmariadb; } >/dev/null 2>&1 || need+=(gcc pkg-config libmariadb-dev)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd) # verifies contrib/q4mproxy.service
command -v chromium >/dev/null 2>&1 || need+=(chromium) # loads the status page (--http-listen) headless
command -v prometheus-mysqld-exporter >/dev/null 2>&1 || need+=(prometheus-mysqld-exporter)
# the anchors of bench/compare, for the tests of q4mbench's postgres and amqp
# drivers (internal/pgtest, internal/rabbittest start them in temp dirs)
{ [ -x /usr/lib/postgresql/15/bin/postgres ] || compgen -G '/usr/lib/postgresql/*/bin/postgres'; } >/dev/null 2>&1 || need+=(postgresql)
{ [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] && command -v epmd; } >/dev/null 2>&1 || need+=(rabbitmq-server)
if ((${#need[@]})); then
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		echo "installing: ${need[*]}"
		# A mirror that blips fails a fetch: apt retries each download,
		# and each step is tried three times before the script gives up.
		apt_get() {
			local try
			for try in 1 2 3; do
				DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 "$@" >/dev/null && return 0
				echo "apt-get $1 failed (attempt $try of 3)" >&2
				[ "$try" = 3 ] || sleep 10
			done
			return 1
		}
		apt_get update -q
		apt_get install -y -q "${need[@]}"
	else
		echo "missing test dependencies: ${need[*]} (install them with apt-get, or run this script as root)" >&2
		exit 1
	fi
fi

export Q4MPROXY_REQUIRE_CLIENTS=1 # a missing client fails its tests instead of skipping them
go vet ./...
# 60 minutes per test binary: the integration suite alone took 22 minutes
# at load 20-30 on 2 cores (race build), too close to a 30-minute timeout.
go test -race -count=1 -timeout 60m "$@" ./...

# The integration suite once more with every q4mproxy in front of the
# throwaway MariaDB (--upstream): queue behaviour must not change with an
# upstream. Tests of what only a standalone server answers skip themselves
# (standaloneOnly); those written for --upstream (TestUpstream*, and the
# multi-node tests, whose nodes always have one) already ran above.
if [ $# -eq 0 ]; then
	Q4MPROXY_TEST_UPSTREAM=1 go test -race -count=1 -timeout 60m \
		-skip '^(TestUpstream|TestGoSQLDriverSuite|TestSuiteDiff|TestMariaDBHelper|TestMultiNode|TestValveMultiNode|TestForwardEmbeddedToUpstream)' ./integration
fi

# Q4M's own Perl scripts against a node whose queues live in the MariaDB
# (--queue-store upstream): the light ones (about 20 s here; the four heavy
# ones take 7 more minutes this way: run them with
# Q4MPROXY_TEST_QUEUE_STORE=upstream go test -run TestSurfacePerl ./integration).
if [ $# -eq 0 ]; then
	Q4MPROXY_TEST_QUEUE_STORE=upstream go test -race -count=1 -timeout 30m \
		-run '^TestSurfacePerl$/^(cond|trans|wake_listener|surface|alter)$' ./integration
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
