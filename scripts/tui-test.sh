#!/usr/bin/env bash
# Drives the agent's live terminal UI under tmux: starts a dev relay and a tiny upstream,
# runs `ferry http` in a tmux pane, and checks what the screen shows (session status,
# forwarding line, a request with its status), that it redraws in place, and that Ctrl-C
# leaves the forwarding lines on the normal screen and exits 0.
# Run: make tui-test (needs tmux and curl; installs nothing).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v tmux >/dev/null || { echo "tui-test: tmux is not installed (apt-get install tmux)"; exit 1; }

tmp=$(mktemp -d)
sock="$tmp/tmux.sock"
pids=()
cleanup() {
  tmux -S "$sock" kill-server 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

PORT_TLS=${TUI_TLS_PORT:-8443}
PORT_HTTP=${TUI_HTTP_PORT:-8080}
go build -o "$tmp/upstream" ./scripts/e2e/upstream
bin/ferry-relay --dev --data "$tmp/data" --quic-addr 127.0.0.1:$PORT_TLS --https-addr 127.0.0.1:$PORT_TLS \
  --http-addr 127.0.0.1:$PORT_HTTP --tcp-ports 44000-44099 --api-addr "" >"$tmp/relay.out" 2>"$tmp/relay.err" &
pids+=($!)
"$tmp/upstream" http 127.0.0.1:0 >"$tmp/up.out" 2>&1 &
pids+=($!)

for _ in $(seq 100); do [ -s "$tmp/data/dev-authtoken" ] && grep -q "listening" "$tmp/up.out" 2>/dev/null && break; sleep 0.1; done
up=$(grep -o '127.0.0.1:[0-9]*' "$tmp/up.out" | head -1)
[ -n "$up" ] || { echo "tui-test: upstream did not start"; cat "$tmp/up.out"; exit 1; }

pass=0; fail=0
check() { if "$@"; then pass=$((pass+1)); echo "PASS $name"; else fail=$((fail+1)); echo "FAIL $name"; fi; }
screen() { tmux -S "$sock" capture-pane -p -t tui; }
wait_screen() { for _ in $(seq 100); do screen | grep -q -- "$1" && return 0; sleep 0.1; done; return 1; }

tmux -S "$sock" new-session -d -s tui -x 160 -y 40 \
  "bin/ferry http $up --relay 127.0.0.1:$PORT_TLS --relay-ca $tmp/data/ca.pem --authtoken $(cat "$tmp/data/dev-authtoken") --api-addr 127.0.0.1:0; echo EXIT=\$?; sleep 30"

name=session-online; check wait_screen "Session Status *online"
name=forwarding-line; check wait_screen "Forwarding.*https://.*localhost:$PORT_TLS -> http://$up"
url=$(screen | grep -o "https://[a-z0-9]*\.localhost:$PORT_TLS" | head -1)
name=latency-shown; check wait_screen "Latency  *[0-9]"
curl -s --cacert "$tmp/data/ca.pem" -o /dev/null "$url/tui-check?x=1"
name=request-listed; check wait_screen "GET  *\/tui-check?x=1 .*200 OK"
name=connection-counted; check wait_screen "Connections"
before=$(screen | grep -c "Session Status")
name=redraws-in-place; check test "$before" = 1
[ -n "${TUI_SHOW:-}" ] && screen | sed "s/^/  live| /" | head -24
tmux -S "$sock" send-keys -t tui C-c
name=exit-0; check wait_screen "EXIT=0"
name=final-lines-kept; check wait_screen "Forwarding.*$url"
echo
screen | sed 's/^/  | /' | head -20
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
