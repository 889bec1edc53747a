//go:build linux

// Command bench is `make bench`: Ferry's data path measured against a direct connection
// to the same upstream, in the same run, on loopback.
//
// It starts the built relay (bin/ferry-relay --dev, every port chosen free by the kernel),
// an upstream in this process (a TCP bulk/echo server and an HTTP server), the built
// agents (bin/ferry tcp and bin/ferry http) and the load, and prints one markdown table:
// each row has the direct figure, the tunnel figure, their ratio (or the added latency),
// the target and PASS or MISS. A missed target is not a failure; the exit status is 1 only
// if something broke (a process died, data came back wrong, a measurement failed).
//
//	go run ./scripts/bench --short                 # < 1 minute, small sizes (CI)
//	go run ./scripts/bench                         # full sizes: 1 GiB bulk, 10,000 idle conns, ...
//	go run ./scripts/bench --transport quic --out bench.md
//	go run ./scripts/bench --peer 'frp=./frp-start.sh'
//
// The rows, for each transport (the memory and growth rows with the first one only):
// relay and agent RSS idle, per bound tunnel (an in-process agent binds the http
// tunnels) and per open idle connection (held by a helper process: this program again,
// see idlehelper.go); bulk TCP throughput over 1 and 8 connections (N bytes up, then N
// down, counted both ways) and the relay's and agent's CPU seconds per GiB it moved; bulk
// HTTP (POST, then GET) and small HTTP requests/s through an http tunnel (over the relay's
// TLS edge, or --http-edge http for its plain HTTP port); new connections/s; the added
// latency of a 1 KiB echo; and the relay's and agent's goroutines and RSS before and after
// many connections have come and gone (goroutines from --pprof-addr). Floor rows run the
// same 1-connection bulk transfer (and, for tcp, the HTTP requests) through a bare chain
// of the transport's own protocol split over two processes (see floor.go): what the
// machine allows before any tunnel logic.
//
// A --peer NAME=CMD runs CMD with sh, with BENCH_UPSTREAM_TCP=127.0.0.1:PORT in its
// environment (the upstream's TCP port); CMD starts another tunnel tool forwarding to it
// and prints a line BENCH_PUBLIC_TCP=HOST:PORT (a loopback address) when ready. The bulk,
// connection-rate and latency rows then run through it too, as rows with transport NAME.
// A peer that also forwards HTTP to BENCH_UPSTREAM_HTTP (the upstream's HTTP server)
// prints BENCH_PUBLIC_HTTP=URL before that line, and the HTTP requests/s row runs through
// it too. scripts/bench/peer-frp.sh is such a command for frp.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
)

func init() {
	// Children are started from the main goroutine; keeping it on the main thread makes
	// the parent-death signal (see procattr_linux.go) fire only when the bench itself dies.
	runtime.LockOSThread()
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == idleHelperCmd {
		os.Exit(idleHelper(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == floorHelperCmd {
		os.Exit(floorHelper(os.Args[2:]))
	}
	short := flag.Bool("short", false, "small sizes and durations, so the whole run takes under a minute")
	transport := flag.String("transport", "both", "agent transports to measure: quic, tcp or both")
	out := flag.String("out", "", "also write the table (markdown) to `FILE`")
	httpEdge := flag.String("http-edge", "https", "how the HTTP rows reach the relay: https (TLS at the edge) or http")
	var peers peerFlag
	flag.Var(&peers, "peer", "another tunnel tool, `NAME=START_CMD` (repeatable); see the package doc")
	flag.Parse()

	opts := options{short: *short, out: *out, httpEdge: *httpEdge, peers: peers}
	switch *transport {
	case "both":
		opts.transports = []string{"quic", "tcp"}
	case "quic", "tcp":
		opts.transports = []string{*transport}
	default:
		fmt.Fprintf(os.Stderr, "bench: --transport %q: want quic, tcp or both\n", *transport)
		os.Exit(2)
	}
	if opts.httpEdge != "https" && opts.httpEdge != "http" {
		fmt.Fprintf(os.Stderr, "bench: --http-edge %q: want https or http\n", opts.httpEdge)
		os.Exit(2)
	}
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q (see --help)\n", flag.Args())
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, opts)
	stop()
	os.Exit(code)
}

// options are the command line's choices.
type options struct {
	short      bool
	transports []string
	out        string
	httpEdge   string
	peers      []peer
}

// peer is another tunnel tool to measure beside ferry.
type peer struct{ name, cmd string }

// peerFlag collects --peer NAME=START_CMD.
type peerFlag []peer

func (p *peerFlag) String() string {
	var names []string
	for _, x := range *p {
		names = append(names, x.name)
	}
	return strings.Join(names, ",")
}

func (p *peerFlag) Set(v string) error {
	name, cmd, ok := strings.Cut(v, "=")
	name, cmd = strings.TrimSpace(name), strings.TrimSpace(cmd)
	switch {
	case !ok || name == "" || cmd == "":
		return errors.New("want NAME=START_CMD, e.g. --peer 'frp=./frp-start.sh'")
	case name == "quic" || name == "tcp" || strings.ContainsAny(name, "| "):
		return fmt.Errorf("peer name %q: pick another (not quic or tcp, no spaces or |)", name)
	}
	*p = append(*p, peer{name: name, cmd: cmd})
	return nil
}
