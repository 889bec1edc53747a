#!/usr/bin/env bash
# scripts/inspect-ui/test.sh: the agent's inspection page (http://API-ADDR/) in a real
# browser, against the BUILT binaries (bin/ferry, bin/ferry-relay), all on loopback.
#
# Run it with `make inspect-ui` (builds first), or `bash scripts/inspect-ui/test.sh` after
# `make build`. Needs: Go (builds the helper upstream in scripts/inspect-ui/upstream), curl,
# Node.js with npm (installs playwright-core here with `npm ci` when node_modules is
# missing) and Debian's chromium at /usr/bin/chromium (installed with apt-get when missing
# and running as root; INSPECT_UI_CHROMIUM names another binary).
#
# It starts a dev relay in a temp dir on ports that do not clash with a developer's own
# (QUIC and TLS 127.0.0.1:7443, HTTP 127.0.0.1:7080, tcp tunnels 43000-43099), the helper
# upstream (counts what it serves, on a control port), and `ferry http UPSTREAM --api-addr
# 127.0.0.1:7040`; override with INSPECT_UI_TLS_PORT, INSPECT_UI_HTTP_PORT,
# INSPECT_UI_TCP_PORTS and INSPECT_UI_API_PORT. Then test.mjs drives headless Chromium:
# a request through the tunnel shows up live, its JSON body pretty-printed; Replay and
# "Replay with changes" reach the upstream and are listed as replays; keyboard selection,
# hex dumps, cut and gzip bodies, escaping, status colours, filter and Clear. Screenshots go
# to scripts/inspect-ui/out/ (inspect.png, inspect-dark.png, inspect-editor.png,
# inspect-hex.png).
#
# Output: one "PASS name" or "FAIL name: why" line per check, then "N passed, M failed" as
# the last line; the exit status is non-zero if any check failed. Every process it starts
# is stopped on exit (trap). INSPECT_UI_KEEP=1 keeps the temp dir.
set -euo pipefail

DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$DIR/../.." && pwd)
cd "$ROOT"

FERRY=$ROOT/bin/ferry
RELAY=$ROOT/bin/ferry-relay
TLS_PORT=${INSPECT_UI_TLS_PORT:-7443}
HTTP_PORT=${INSPECT_UI_HTTP_PORT:-7080}
TCP_PORTS=${INSPECT_UI_TCP_PORTS:-43000-43099}
API_PORT=${INSPECT_UI_API_PORT:-7040}
CHROMIUM=${INSPECT_UI_CHROMIUM:-/usr/bin/chromium}
WAIT=${INSPECT_UI_WAIT:-15} # seconds to wait for anything to become ready
NAME=inspect-ui             # the tunnel's name under the dev relay's domain, localhost

say() { echo "inspect-ui: $*" >&2; }

for tool in go curl node npm; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		say "$tool is required but not installed"
		exit 2
	fi
done
for bin in "$FERRY" "$RELAY"; do
	if [ ! -x "$bin" ]; then
		say "$bin not found: run \`make build\` first (or \`make inspect-ui\`)"
		exit 2
	fi
done

if [ ! -x "$CHROMIUM" ]; then
	if [ "$CHROMIUM" = /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
		say "installing Debian's chromium (apt-get)"
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >&2 ||
			{ say "apt-get install chromium failed"; exit 2; }
	else
		say "$CHROMIUM not found: install Debian's chromium (apt-get install chromium) or set INSPECT_UI_CHROMIUM"
		exit 2
	fi
fi
if [ ! -f "$DIR/node_modules/playwright-core/package.json" ]; then
	say "installing npm dependencies (npm ci in scripts/inspect-ui)"
	(cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error) >&2 || { say "npm ci failed"; exit 2; }
fi

# The agent must not pick up the developer's own config or environment, nor a proxy.
unset FERRY_AUTHTOKEN FERRY_RELAY FERRY_RELAY_CA http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

TMP=$(mktemp -d "${TMPDIR:-/tmp}/ferry-inspect-ui.XXXXXX")
mkdir -p "$TMP/logs"
PIDS=()

cleanup() {
	local rc=$? pid alive i
	set +e
	trap - EXIT INT TERM
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -TERM "$pid" 2>/dev/null
	done
	for ((i = 0; i < 50; i++)); do
		alive=0
		for pid in ${PIDS[@]+"${PIDS[@]}"}; do
			if kill -0 "$pid" 2>/dev/null; then alive=1; fi
		done
		[ "$alive" = 0 ] && break
		sleep 0.1
	done
	for pid in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -KILL "$pid" 2>/dev/null
	done
	wait 2>/dev/null
	if [ -n "${INSPECT_UI_KEEP:-}" ]; then
		say "temp dir kept: $TMP"
	else
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT
trap 'say terminated; exit 143' TERM

# fatal NAME WHY: a setup step failed; nothing after it can run.
fatal() {
	local f
	echo "FAIL $1: $2"
	for f in "$TMP"/logs/*.log; do
		[ -f "$f" ] || continue
		echo "---- $(basename "$f") (last 20 lines) ----"
		tail -n 20 "$f"
	done
	echo "----"
	echo "0 passed, 1 failed"
	exit 1
}

# start NAME CMD...: runs CMD in the background, output in $TMP/logs/NAME.log; sets LAST_PID.
start() {
	local name=$1
	shift
	"$@" >"$TMP/logs/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# wait_log FILE PATTERN PID: waits until FILE has a line matching PATTERN (grep -E), at
# most $WAIT seconds; fails early if PID exits.
wait_log() {
	local file=$1 pattern=$2 pid=$3 i
	for ((i = 0; i < WAIT * 10; i++)); do
		if grep -Eq -- "$pattern" "$file" 2>/dev/null; then return 0; fi
		if ! kill -0 "$pid" 2>/dev/null; then
			grep -Eq -- "$pattern" "$file" 2>/dev/null && return 0
			return 1
		fi
		sleep 0.1
	done
	return 1
}

# in_use PORT: something accepts TCP connections on 127.0.0.1:PORT.
in_use() {
	(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

for port in "$TLS_PORT" "$HTTP_PORT" "$API_PORT"; do
	if in_use "$port"; then
		fatal setup-ports "127.0.0.1:$port is in use: pick free ports with INSPECT_UI_TLS_PORT, INSPECT_UI_HTTP_PORT, INSPECT_UI_API_PORT"
	fi
done

# ---- the upstream, the relay, the agent --------------------------------------

UP=$TMP/upstream
if ! CGO_ENABLED=0 go build -o "$UP" ./scripts/inspect-ui/upstream 2>"$TMP/logs/build.log"; then
	fatal build-upstream "go build ./scripts/inspect-ui/upstream failed"
fi
start upstream "$UP"
UP_PID=$LAST_PID
wait_log "$TMP/logs/upstream.log" '^control ' "$UP_PID" ||
	fatal start-upstream "no \"listening\" and \"control\" lines within ${WAIT}s"
UP_ADDR=$(sed -n 's/^listening //p' "$TMP/logs/upstream.log" | head -n 1)
CONTROL_ADDR=$(sed -n 's/^control //p' "$TMP/logs/upstream.log" | head -n 1)

start relay "$RELAY" --dev --data "$TMP/data" \
	--quic-addr "127.0.0.1:$TLS_PORT" --https-addr "127.0.0.1:$TLS_PORT" \
	--http-addr "127.0.0.1:$HTTP_PORT" --tcp-ports "$TCP_PORTS" --api-addr ""
RELAY_PID=$LAST_PID
wait_log "$TMP/logs/relay.log" 'msg="relay started"' "$RELAY_PID" ||
	fatal start-relay "no \"relay started\" within ${WAIT}s (if a port is taken, pick others with INSPECT_UI_TLS_PORT, INSPECT_UI_HTTP_PORT, INSPECT_UI_TCP_PORTS)"
CA=$TMP/data/ca.pem
TOKEN=$(cat "$TMP/data/dev-authtoken")

start agent env XDG_CONFIG_HOME="$TMP/config" "$FERRY" http "$UP_ADDR" --domain "$NAME" \
	--relay "127.0.0.1:$TLS_PORT" --relay-ca "$CA" --authtoken "$TOKEN" \
	--log stdout --log-format logfmt --api-addr "127.0.0.1:$API_PORT"
AGENT_PID=$LAST_PID
wait_log "$TMP/logs/agent.log" 'msg="tunnel started"' "$AGENT_PID" ||
	fatal start-agent "no \"tunnel started\" log line within ${WAIT}s"
PUBLIC_URL=https://$NAME.localhost:$TLS_PORT
API_URL=http://127.0.0.1:$API_PORT
for ((i = 0; ; i++)); do
	if grep -q 'local API disabled' "$TMP/logs/agent.log"; then
		fatal start-api "the agent could not listen on 127.0.0.1:$API_PORT: pick a free port with INSPECT_UI_API_PORT"
	fi
	if curl -sS --noproxy '*' --max-time 2 "$API_URL/api/tunnels" 2>/dev/null | grep -qF "\"$PUBLIC_URL\""; then break; fi
	[ "$i" -lt $((WAIT * 10)) ] || fatal start-api "$API_URL/api/tunnels does not list $PUBLIC_URL within ${WAIT}s"
	sleep 0.1
done

# ---- the browser ------------------------------------------------------------

mkdir -p "$TMP/profile" "$DIR/out"
API_URL=$API_URL PUBLIC_URL=$PUBLIC_URL CA_FILE=$CA CONTROL_URL=http://$CONTROL_ADDR UP_ADDR=$UP_ADDR \
	CHROMIUM=$CHROMIUM PROFILE_DIR=$TMP/profile OUT_DIR=$DIR/out TMP_DIR=$TMP LOG_DIR=$TMP/logs \
	node "$DIR/test.mjs" &
NODE_PID=$!
PIDS+=("$NODE_PID")
rc=0
wait "$NODE_PID" || rc=$?
exit "$rc"
