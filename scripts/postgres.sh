#!/usr/bin/env bash
# A throwaway PostgreSQL for the store tests, from Debian's packages, on loopback only.
#
#   scripts/postgres.sh start DIR   start it with its data in DIR (made if missing) and
#                                   print its DSN, the only line on stdout:
#                                   postgres://postgres@127.0.0.1:15432/ferry_test?sslmode=disable
#   scripts/postgres.sh stop DIR    stop it (DIR stays; remove it yourself)
#
# Then: FERRY_TEST_POSTGRES="$DSN" go test -race ./relay/store/...
#
# It listens on 127.0.0.1 only, with trust authentication for loopback and its unix
# socket (which lives in DIR). Running it again while it runs just prints the DSN.
# Everything but the DSN goes to stderr; the server's log is DIR/postgres.log.
# As root it installs the postgresql package if needed and runs the server as the
# postgres user (initdb refuses root). FERRY_PG_PORT overrides the port.
set -euo pipefail

port=${FERRY_PG_PORT:-15432} # outside the ephemeral range (32768-60999), so no client socket can hold it
db=ferry_test

die() {
	echo "postgres.sh: $*" >&2
	exit 1
}

[ $# -eq 2 ] || die "usage: $0 start|stop DIR"
cmd=$1
dir=$(realpath -m -- "$2")
data=$dir/pgdata
sock=$dir/run
log=$dir/postgres.log
cd / # the postgres user may not be able to read the caller's directory

bindir() {
	local d
	d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
	[ -n "$d" ] && [ -x "$d/initdb" ] && echo "$d"
}

# as_pg runs a command as the postgres user when we are root, else as ourselves.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

start() {
	local bin
	if ! bin=$(bindir); then
		[ "$(id -u)" = 0 ] || die "no /usr/lib/postgresql/*/bin/initdb: install the postgresql package (apt-get install postgresql)"
		echo "postgres.sh: installing postgresql" >&2
		export DEBIAN_FRONTEND=noninteractive
		apt-get install -y --no-install-recommends postgresql >&2 ||
			{ apt-get update >&2 && apt-get install -y --no-install-recommends postgresql >&2; }
		bin=$(bindir) || die "postgresql installed but no initdb under /usr/lib/postgresql"
	fi

	mkdir -p -- "$dir"
	if [ "$(id -u)" = 0 ]; then
		chown postgres:postgres -- "$dir"
		runuser -u postgres -- test -w "$dir" ||
			die "$dir: the postgres user cannot write there (is a parent directory closed to it? try a DIR under /tmp)"
	fi
	as_pg mkdir -p -- "$sock"
	chmod 0700 -- "$dir"

	if [ ! -f "$data/PG_VERSION" ]; then
		echo "postgres.sh: initdb $data" >&2
		as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 ||
			{ cat "$dir/initdb.log" >&2; die "initdb failed"; }
		# Loopback and the socket in DIR only; throwaway data, so no fsync.
		as_pg tee -a "$data/postgresql.conf" >/dev/null <<-EOF
			listen_addresses = '127.0.0.1'
			port = $port
			unix_socket_directories = '$sock'
			fsync = off
			synchronous_commit = off
			full_page_writes = off
		EOF
		as_pg tee "$data/pg_hba.conf" >/dev/null <<-EOF
			# TYPE  DATABASE  USER  ADDRESS       METHOD
			local   all       all                 trust
			host    all       all   127.0.0.1/32  trust
		EOF
	fi

	if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		echo "postgres.sh: already running in $data" >&2
	else
		as_pg "$bin/pg_ctl" -D "$data" -l "$log" -w -t 60 start >&2 ||
			{ tail -n 30 "$log" >&2 || true; die "pg_ctl start failed (is port $port taken?)"; }
	fi

	local i
	for i in $(seq 60); do
		pg_isready -q -h 127.0.0.1 -p "$port" -U postgres && break
		[ "$i" -lt 60 ] || die "not ready after 30 s; see $log"
		sleep 0.5
	done

	if [ "$(psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$db'")" != 1 ]; then
		psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE $db" >&2
	fi
	echo "postgres://postgres@127.0.0.1:$port/$db?sslmode=disable"
}

stop() {
	local bin
	bin=$(bindir) || die "no /usr/lib/postgresql/*/bin/pg_ctl"
	if [ ! -f "$data/PG_VERSION" ]; then
		echo "postgres.sh: no server in $dir" >&2
		return 0
	fi
	if as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
		as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >&2
	else
		echo "postgres.sh: not running in $data" >&2
	fi
}

case $cmd in
start) start ;;
stop) stop ;;
*) die "usage: $0 start|stop DIR" ;;
esac
