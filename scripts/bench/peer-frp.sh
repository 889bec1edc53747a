#!/usr/bin/env bash
# peer-frp.sh: frp (github.com/fatedier/frp) as a --peer of the bench (scripts/bench).
#
#	bash scripts/bench/peer-frp.sh build          # build and cache frps/frpc only (do this first)
#	go run ./scripts/bench --peer 'frp-tcp=bash scripts/bench/peer-frp.sh tcp' \
#	                       --peer 'frp-quic=bash scripts/bench/peer-frp.sh quic'
#
# Usage: peer-frp.sh [tcp|quic|build]. tcp and quic are frp's transport.protocol between
# frpc and frps (default tcp). The script runs frps and frpc on loopback with one tcp
# proxy to $BENCH_UPSTREAM_TCP, checks that a connection through it reaches the upstream
# (the bench upstream's one-byte echo), prints BENCH_PUBLIC_TCP=127.0.0.1:PORT on stdout
# and stays in the foreground until SIGINT/SIGTERM/SIGHUP (the bench sends SIGINT to the
# process group), then stops frps and frpc and removes its temp dir. Everything else goes
# to stderr. Otherwise frp's defaults apply (tcpMux on: yamux over the tcp transport).
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

# go runs the go command in the temp dir, outside any module or workspace of the caller.
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
	log "building frp $v from source (first run only, about a minute) into $dest"
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
			-tags "$tags" -o "$out/$b" "./cmd/$b") >&2; then
			die "go build of $b ($module@$v, tags $tags) failed"
		fi
	done
	# Another run may have finished first: keep whichever is there.
	[[ -x $dest/frps && -x $dest/frpc ]] || rm -rf "$dest"
	mv -T "$out" "$dest" 2>/dev/null || rm -rf "$out"
	build_out=''
	rm -rf "$src"
	log "frp $v: $("$dest/frps" --version) built"
}

mkdir -p "$cache_root"
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
token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')

cat >"$tmp/frps.toml" <<EOF
bindAddr = "127.0.0.1"
bindPort = $bind_port
$([[ $mode == quic ]] && echo "quicBindPort = $quic_port")
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

# frps and frpc log to their stdout: send it to stderr. With setpriv they get SIGKILL if
# this script is killed outright (SIGKILL), so nothing is left behind even then.
run() {
	if command -v setpriv >/dev/null; then
		setpriv --pdeathsig KILL -- "$@" >&2 &
	else
		"$@" >&2 &
	fi
}
alive() { kill -0 "$1" 2>/dev/null; }

run "$bin/frps" -c "$tmp/frps.toml"
frps_pid=$!
# frpc gives up if its first login fails: start it once frps listens.
deadline=$((SECONDS + 15))
until port_bound "$server_port" "$([[ $mode == quic ]] && echo udp || echo tcp)"; do
	alive "$frps_pid" || die "frps exited before it listened on 127.0.0.1:$server_port ($mode)"
	((SECONDS < deadline)) || die "frps did not listen on 127.0.0.1:$server_port ($mode) within 15 s"
	sleep 0.1
done
run "$bin/frpc" -c "$tmp/frpc.toml"
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
deadline=$((SECONDS + 20))
until echo_ok; do
	alive "$frps_pid" || die "frps exited"
	alive "$frpc_pid" || die "frpc exited (could it log in to frps on 127.0.0.1:$server_port over $mode?)"
	((SECONDS < deadline)) || die "no echo from the upstream $upstream through 127.0.0.1:$remote_port within 20 s"
	sleep 0.2
done
log "frp $version ($mode): 127.0.0.1:$remote_port -> $upstream"
echo "BENCH_PUBLIC_TCP=127.0.0.1:$remote_port"

# Stay until a signal (the traps exit and cleanup runs), frps or frpc dies, or the parent
# goes away (this shell orphaned: its parent pid changes).
ppid0=$PPID
while :; do
	alive "$frps_pid" || die "frps exited"
	alive "$frpc_pid" || die "frpc exited"
	read -r _ _ _ ppid _ </proc/$$/stat
	[[ $ppid == "$ppid0" ]] || die "parent $ppid0 is gone; stopping"
	sleep 1 &
	sleep_pid=$!
	wait "$sleep_pid" || true
	sleep_pid=''
done
