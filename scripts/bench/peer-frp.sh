#!/usr/bin/env bash
# peer-frp.sh: frp (github.com/fatedier/frp) as a --peer of the bench (scripts/bench).
#
#	bash scripts/bench/peer-frp.sh build          # build and cache frps/frpc only (do this first)
#	go run ./scripts/bench --peer 'frp-tcp=bash scripts/bench/peer-frp.sh tcp' \
#	                       --peer 'frp-quic=bash scripts/bench/peer-frp.sh quic'
#
# Usage: peer-frp.sh [tcp|quic|build]. tcp and quic are frp's transport.protocol between
# frpc and frps (default tcp). The script runs frps and frpc on loopback with one tcp
# proxy to $BENCH_UPSTREAM_TCP and, when $BENCH_UPSTREAM_HTTP is set, one http proxy to it
# on frps's vhost HTTP port (custom domain 127.0.0.1). It checks that a connection through
# each reaches the upstream, prints BENCH_PUBLIC_HTTP=http://127.0.0.1:PORT (if any) and
# BENCH_PUBLIC_TCP=127.0.0.1:PORT on stdout,
# and stays in the foreground until SIGINT/SIGTERM/SIGHUP (the bench sends SIGINT to the
# process group), then stops frps and frpc and removes its temp dir. Otherwise frp's
# defaults apply (tcpMux on: yamux over the tcp transport).
#
# Output: stdout has only the BENCH_PUBLIC_* lines; messages go to stderr. When both are
# one pipe (as under the bench), nothing else is printed before those lines: build output
# is kept in a file (shown if the build fails), frps's and frpc's logs (level warn) always
# are (their last lines are shown if either fails).
#
# frps and frpc are built from source fetched through the Go module proxy (frp's go.mod has
# a replace directive, so `go install frp/cmd/...@v` is refused, and its web dashboards'
# dist/ is not in the module: the build uses frp's own `noweb` tag, as its Makefile does
# without dist/), and cached in ${XDG_CACHE_HOME:-$HOME/.cache}/ferry-bench/frp-VERSION/.
# FRP_VERSION picks the version (default v0.70.0, else the newest the proxy has). A first
# build takes about a minute, longer than the bench waits for a peer: run `build` first.
set -euo pipefail

readonly module=github.com/fatedier/frp
readonly preferred=v0.70.0
readonly cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/ferry-bench

die() {
	echo "peer-frp: $*" >&2
	exit 1
}
log() { echo "peer-frp: $*" >&2; }
# quiet: stdout and stderr are one pipe (as under the bench): say nothing before the address.
quiet=''
[[ -p /dev/stdout && /dev/stdout -ef /dev/stderr ]] && quiet=1

mode=${1:-tcp}
case $mode in
tcp | quic | build) ;;
*) die "usage: peer-frp.sh [tcp|quic|build] (got '$mode')" ;;
esac
command -v go >/dev/null || die "go is not on PATH (needed to build frp)"

# Everything the script creates lives here; cleanup removes it.
tmp=$(mktemp -d "${TMPDIR:-/tmp}/peer-frp.XXXXXX")
frps_pid='' frpc_pid='' sleep_pid='' build_out=''

# cleanup stops frps and frpc (SIGTERM, then SIGKILL after 2 s) and removes the temp dir.
cleanup() {
	trap - EXIT INT TERM HUP
	local pids=() p i
	for p in "$frpc_pid" "$frps_pid" "$sleep_pid"; do
		[[ -n $p ]] && pids+=("$p")
	done
	if ((${#pids[@]})); then
		kill -TERM "${pids[@]}" 2>/dev/null || true
		for ((i = 0; i < 20; i++)); do
			kill -0 "${pids[@]}" 2>/dev/null || break # kill -0 fails only when all are gone
			sleep 0.1
		done
		kill -KILL "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	rm -rf "$tmp"
	[[ -z $build_out ]] || rm -rf "$build_out"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# ---- frps and frpc: resolve the version, build once, cache ------------------------------

# gocmd runs the go command in the temp dir, outside any module or workspace of the caller.
gocmd() { (cd "$tmp" && GOWORK=off GO111MODULE=on go "$@"); }

# module_dir downloads frp@$1 into the module cache and prints its directory.
module_dir() {
	local json
	json=$(gocmd mod download -json "$module@$1" 2>&1) || return 1
	sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p' <<<"$json"
}

resolve_version() {
	local v
	if [[ -n ${FRP_VERSION:-} ]]; then
		v=$FRP_VERSION
		[[ $v == v* ]] || v=v$v
		echo "$v"
		return
	fi
	if [[ -x $cache_root/frp-$preferred/frps && -x $cache_root/frp-$preferred/frpc ]] ||
		module_dir "$preferred" >/dev/null; then
		echo "$preferred"
		return
	fi
	# The newest release the proxy lists (the list may be refused), else its @latest.
	v=$(gocmd list -m -versions "$module" 2>/dev/null | tr ' ' '\n' | grep -E '^v[0-9]+\.[0-9]+\.[0-9]+$' | tail -n 1) ||
		v=$(gocmd list -m -f '{{.Version}}' "$module@latest" 2>/dev/null) ||
		die "cannot find a version of $module on the Go module proxy ($(go env GOPROXY)); set FRP_VERSION"
	echo "$v"
}

# build_frp builds frps and frpc of version $1 into $2 (atomically: a temp dir, then mv).
build_frp() {
	local v=$1 dest=$2 dir src out b tags
	# Under the bench, the build's output waits in a file: see "Output" above.
	local to=/dev/stderr
	if [[ -n $quiet && $mode != build ]]; then
		to=$tmp/build.log
	else
		log "building frp $v from source (first run only, about a minute) into $dest"
	fi
	dir=$(module_dir "$v") || dir=''
	[[ -n $dir ]] || die "go mod download $module@$v failed: $(gocmd mod download -json "$module@$v" 2>&1 | grep -m1 Error || true)"
	# The module cache is read-only: build in a writable copy.
	src=$tmp/src
	cp -R "$dir/." "$src"
	chmod -R u+w "$src"
	out=$(mktemp -d "$cache_root/.build.XXXXXX")
	build_out=$out
	chmod 755 "$out"
	for b in frps frpc; do
		tags=$b
		# Newer frp embeds web/$b/dist (built with npm, not in the module); it has a noweb
		# tag for that case. Older frp ships assets/$b/static in the module.
		if [[ -d $src/web/$b && ! -d $src/web/$b/dist ]]; then
			if grep -qs '^//go:build noweb' "$src/web/$b"/*.go; then
				tags+=,noweb
			else
				mkdir -p "$src/web/$b/dist" && echo "dashboard not built" >"$src/web/$b/dist/index.html"
			fi
		fi
		if ! (cd "$src" && CGO_ENABLED=0 GOWORK=off GOFLAGS=-mod=mod go build -trimpath -ldflags '-s -w' \
			-tags "$tags" -o "$out/$b" "./cmd/$b") >>"$to" 2>&1; then
			[[ $to == /dev/stderr ]] || tail -n 30 "$to" >&2
			die "go build of $b ($module@$v, tags $tags) failed"
		fi
	done
	# Another run may have finished first: keep whichever is there.
	[[ -x $dest/frps && -x $dest/frpc ]] || rm -rf "$dest"
	mv -T "$out" "$dest" 2>/dev/null || rm -rf "$out"
	build_out=''
	rm -rf "$src"
	built="built frp $v ($("$dest/frps" --version)) into $dest"
	[[ -n $quiet && $mode != build ]] || log "$built"
}

mkdir -p "$cache_root"
built=''
version=$(resolve_version)
bin=$cache_root/frp-$version
if [[ ! -x $bin/frps || ! -x $bin/frpc ]]; then
	build_frp "$version" "$bin"
fi
if [[ $mode == build ]]; then
	log "frp $version: $bin/frps, $bin/frpc"
	exit 0
fi

# ---- the tunnel ----------------------------------------------------------------------------

upstream=${BENCH_UPSTREAM_TCP:-}
[[ $upstream == *:* ]] || die "BENCH_UPSTREAM_TCP=HOST:PORT is not set (the bench sets it)"
up_host=${upstream%:*} up_port=${upstream##*:}
up_host=${up_host#\[} up_host=${up_host%\]}

# port_bound tells whether a port is in /proc/net/$2 as a local address (tcp: listening).
port_bound() {
	local hex files
	hex=$(printf '%04X' "$1")
	if [[ $2 == tcp ]]; then files=(/proc/net/tcp /proc/net/tcp6); else files=(/proc/net/udp /proc/net/udp6); fi
	awk -v p=":$hex" -v tcp="$([[ $2 == tcp ]] && echo 1)" \
		'$2 ~ p"$" && (!tcp || $4 == "0A") { found = 1 } END { exit !found }' "${files[@]}" 2>/dev/null
}

# free_port prints a port in 20000-32767 (below the kernel's ephemeral range, where the
# bench's own ports are) that no socket uses and that it has not printed before.
used=' '
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12768))
		# Any socket with it, local or remote end, TCP or UDP, counts as taken.
		if [[ $used != *" $p "* ]] &&
			! grep -qs ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6; then
			used+="$p "
			echo "$p"
			return
		fi
	done
	die "no free port found"
}
bind_port=$(free_port)
quic_port=$(free_port)
remote_port=$(free_port)
vhost_port=$(free_port)
http_upstream=${BENCH_UPSTREAM_HTTP:-}
[[ -z $http_upstream || $http_upstream == *:* ]] || die "BENCH_UPSTREAM_HTTP=$http_upstream: want HOST:PORT"
token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

cat >"$tmp/frps.toml" <<EOF
bindAddr = "127.0.0.1"
bindPort = $bind_port
$([[ $mode == quic ]] && echo "quicBindPort = $quic_port")
$([[ -n $http_upstream ]] && echo "vhostHTTPPort = $vhost_port")
auth.token = "$token"
log.to = "console"
log.level = "warn"
log.disablePrintColor = true
EOF

server_port=$bind_port
[[ $mode == quic ]] && server_port=$quic_port
cat >"$tmp/frpc.toml" <<EOF
serverAddr = "127.0.0.1"
serverPort = $server_port
auth.token = "$token"
transport.protocol = "$mode"
log.to = "console"
log.level = "warn"
log.disablePrintColor = true

[[proxies]]
name = "bench"
type = "tcp"
localIP = "$up_host"
localPort = $up_port
remotePort = $remote_port
EOF
if [[ -n $http_upstream ]]; then
	h_host=${http_upstream%:*} h_port=${http_upstream##*:}
	cat >>"$tmp/frpc.toml" <<EOF

[[proxies]]
name = "bench-http"
type = "http"
localIP = "$h_host"
localPort = $h_port
customDomains = ["127.0.0.1"]
EOF
fi

# run starts $1 (frps or frpc) in the background, its output (logs on the console) to
# $tmp/$1.log. With setpriv it gets SIGKILL if this script is killed outright (SIGKILL),
# so nothing is left behind even then.
run() {
	local name=$1
	shift
	if command -v setpriv >/dev/null; then
		setpriv --pdeathsig KILL -- "$@" >"$tmp/$name.log" 2>&1 &
	else
		"$@" >"$tmp/$name.log" 2>&1 &
	fi
}
alive() { kill -0 "$1" 2>/dev/null; }
# fail shows the last lines of frps's and frpc's logs, then dies with $*.
fail() {
	local f
	for f in "$tmp"/frps.log "$tmp"/frpc.log; do
		[[ -s $f ]] && sed "s|^|$(basename "$f" .log): |" <(tail -n 10 "$f") >&2
	done
	die "$@"
}

run frps "$bin/frps" -c "$tmp/frps.toml"
frps_pid=$!
# frpc gives up if its first login fails: start it once frps listens.
deadline=$((SECONDS + 15))
until port_bound "$server_port" "$([[ $mode == quic ]] && echo udp || echo tcp)"; do
	alive "$frps_pid" || fail "frps exited before it listened on 127.0.0.1:$server_port ($mode)"
	((SECONDS < deadline)) || fail "frps did not listen on 127.0.0.1:$server_port ($mode) within 15 s"
	sleep 0.1
done
run frpc "$bin/frpc" -c "$tmp/frpc.toml"
frpc_pid=$!

# echo_ok connects to the public port and expects the bench upstream's echo ('E' selects
# echo mode, then 'x' must come back): proof that frp reaches the upstream.
echo_ok() {
	(
		exec 3<>"/dev/tcp/127.0.0.1/$remote_port" || exit 1
		printf 'Ex' >&3
		IFS= read -r -t 2 -n 1 -u 3 c && [[ $c == x ]]
	) 2>/dev/null
}
# http_ok asks frps's vhost port for the upstream's /1k page (Host 127.0.0.1, the proxy's
# custom domain) and expects 200: proof that the http proxy reaches the upstream.
http_ok() {
	[[ -z $http_upstream ]] && return 0
	(
		exec 3<>"/dev/tcp/127.0.0.1/$vhost_port" || exit 1
		printf 'GET /1k HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
		IFS= read -r -t 2 -u 3 status && [[ $status == "HTTP/1."?" 200"* ]]
	) 2>/dev/null
}
deadline=$((SECONDS + 20))
until echo_ok && http_ok; do
	alive "$frps_pid" || fail "frps exited"
	alive "$frpc_pid" || fail "frpc exited (could it log in to frps on 127.0.0.1:$server_port over $mode?)"
	((SECONDS < deadline)) || fail "no echo from $upstream through 127.0.0.1:$remote_port, or no 200 from $http_upstream through 127.0.0.1:$vhost_port, within 20 s"
	sleep 0.2
done
[[ -z $http_upstream ]] || echo "BENCH_PUBLIC_HTTP=http://127.0.0.1:$vhost_port"
echo "BENCH_PUBLIC_TCP=127.0.0.1:$remote_port"
[[ -z $built ]] || log "$built"
log "frp $version ($mode): 127.0.0.1:$remote_port -> $upstream; frps and frpc log to $tmp"

# Stay until a signal (the traps exit and cleanup runs), frps or frpc dies, or the parent
# goes away (this shell orphaned: its parent pid changes).
ppid0=$PPID
while :; do
	alive "$frps_pid" || fail "frps exited"
	alive "$frpc_pid" || fail "frpc exited"
	read -r _ _ _ ppid _ </proc/$$/stat
	[[ $ppid == "$ppid0" ]] || die "parent $ppid0 is gone; stopping"
	sleep 1 &
	sleep_pid=$!
	wait "$sleep_pid" || true
	sleep_pid=''
done
