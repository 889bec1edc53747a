//go:build linux

package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

const (
	relayBin = "bin/ferry-relay"
	agentBin = "bin/ferry"
	// startTimeout bounds each start: the relay's banner, an agent's tunnel, a peer's address.
	startTimeout = 30 * time.Second
	// settle is the pause before memory readings, so background work (GC, timers) is done.
	settle = time.Second
	// fileLimit is RLIMIT_NOFILE for the bench and its children (10,000 idle connections
	// hold about 20,000 descriptors here and 10,000 in each child).
	fileLimit = 1 << 17
)

// sizes are how much load each row puts through.
type sizes struct {
	bulk       int64         // bytes each way in the bulk rows
	rpsTime    time.Duration // per HTTP requests/s measurement
	conns      int           // connections in the new-connections/s row
	connsLimit time.Duration // ... or this long, whichever ends first
	echoes     int           // latency samples
	tunnels    int           // tunnels bound for the memory row
	idle       int           // open idle connections for the memory rows
	churn      int           // connections that come and go before the growth rows
}

func sizesFor(short bool) sizes {
	if short {
		return sizes{bulk: 64 * mib, rpsTime: 3 * time.Second, conns: 2000, connsLimit: 10 * time.Second,
			echoes: 2000, tunnels: 1000, idle: 1000, churn: 5000}
	}
	return sizes{bulk: gib, rpsTime: 10 * time.Second, conns: 20000, connsLimit: 30 * time.Second,
		echoes: 10000, tunnels: 1000, idle: 10000, churn: 100000}
}

const (
	rpsWorkers  = 64 // keep-alive HTTP clients
	connWorkers = 16 // concurrent connect/echo/close loops
	idleWorkers = 32 // concurrent dials while opening idle connections
)

// bench is one run: its children, the upstream, and the rows so far.
type bench struct {
	opts  options
	size  sizes
	ctx   context.Context // ends on Ctrl-C or when a child dies; the cause says which
	fail  context.CancelCauseFunc
	clean *cleanups
	tmp   string

	up       *upstream
	relay    *relayProc
	children []*child // every child started, for the log report

	rows   []measure
	broken []error
}

// relayProc is the running relay and what agents need to reach it.
type relayProc struct {
	*child
	quicAddr, tlsAddr, httpAddr, pprof string
	caFile, token                      string
	roots                              *x509.CertPool
}

// agentProc is a running command-line agent with its tunnel's public address.
type agentProc struct {
	*child
	public string // tcp: 127.0.0.1:PORT; http: https://NAME.localhost:PORT
	plain  string // http: http://NAME.localhost:PORT
	pprof  string
}

// run runs the whole bench and returns the exit code.
func run(sigCtx context.Context, opts options) int {
	began := time.Now()
	load0 := loadAverage()
	if err := chdirRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	size := sizesFor(opts.short)
	if limit, err := raiseFileLimit(fileLimit); err != nil {
		fmt.Fprintln(os.Stderr, "bench: warning:", err)
	} else if need := uint64(size.idle + 2000); limit < need {
		fmt.Fprintf(os.Stderr, "bench: warning: open files limited to %d, the idle-connection rows need about %d (raise ulimit -Hn; needs CAP_SYS_RESOURCE)\n", limit, need)
	}
	ctx, fail := context.WithCancelCause(context.Background())
	defer fail(nil)
	context.AfterFunc(sigCtx, func() { fail(errors.New("interrupted")) })
	b := &bench{opts: opts, size: size, ctx: ctx, fail: fail, clean: &cleanups{}}
	defer b.clean.run()

	if err := b.setup(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	// The memory rows get a relay and agent of their own, and the traffic rows a fresh
	// relay: a relay's RSS, once it has peaked, does not come back for minutes (Go returns
	// freed pages lazily), so either section would distort the other's figures.
	b.memoryRows(opts.transports[0])
	b.trafficRows(opts.transports)
	for _, p := range opts.peers {
		b.runPeer(p)
	}
	b.clean.run() // stop every child before the report, so their logs are complete

	report := b.report(time.Since(began), load0)
	fmt.Print(report)
	if opts.out != "" {
		if err := os.WriteFile(opts.out, []byte(report), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
	}
	if len(b.broken) > 0 || ctx.Err() != nil {
		fmt.Fprintln(os.Stderr, "\nbench: something broke:")
		for _, err := range b.broken {
			fmt.Fprintf(os.Stderr, "  - %v\n", err)
		}
		if err := context.Cause(ctx); err != nil && len(b.broken) == 0 {
			fmt.Fprintf(os.Stderr, "  - %v\n", err)
		}
		return 1
	}
	return 0
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}

// died is called when the relay or an agent exits on its own: the run stops.
func (b *bench) died(c *child, err error) {
	b.exited(c, err)
	b.fail(err)
}

// exited is called when a child whose exit only needs reporting exits on its own (a
// peer's start command, the idle-connection helper): what fails because of it says so.
func (b *bench) exited(c *child, err error) {
	b.logf("%v; its last output:\n%s", err, c.out.lastLines(30))
}

func (b *bench) setup() error {
	tmp, err := os.MkdirTemp("", "ferry-bench-")
	if err != nil {
		return err
	}
	b.tmp = tmp
	b.clean.add(func() { os.RemoveAll(tmp) })
	if b.up, err = startUpstream(); err != nil {
		return err
	}
	b.clean.add(b.up.close)
	b.logf("upstream: tcp %s, http %s", b.up.tcpAddr(), b.up.httpAddr())
	return nil
}

// startRelay runs a dev relay on ports the kernel picks, reads them from its banner, and
// makes it b.relay. Each relay gets a data directory of its own.
//
// QUIC and TLS share one port, as in production (an agent's --relay names one port).
func (b *bench) startRelay(name string) error {
	data, err := os.MkdirTemp(b.tmp, "relay-")
	if err != nil {
		return err
	}
	low := 20000 + rand.IntN(120)*100 // below the ephemeral range; the relay skips taken ports
	agents, err := sharedPort()
	if err != nil {
		return err
	}
	args := []string{"--dev", "--data", data,
		"--quic-addr", agents, "--https-addr", agents, "--http-addr", "127.0.0.1:0",
		"--tcp-ports", fmt.Sprintf("%d-%d", low, low+99), "--pprof-addr", "127.0.0.1:0", "--api-addr", "",
		// Every client here comes from 127.0.0.1: the per-address limit (1000) would stop
		// the 10,000 idle connections of the full run.
		"--max-conns-per-ip", "-1"}
	c, err := startChild(name, relayBin, args, nil, b.died)
	if err != nil {
		return err
	}
	b.children = append(b.children, c)
	b.clean.add(func() { b.stopChild(c) })
	r := &relayProc{child: c, caFile: filepath.Join(data, "ca.pem")}
	fields := []struct {
		dst    *string
		prefix string
	}{
		{&r.quicAddr, "agents (QUIC):"}, {&r.tlsAddr, "public TLS:"}, {&r.httpAddr, "public HTTP:"},
	}
	for _, f := range fields {
		if *f.dst, err = c.waitLine(b.ctx, startTimeout, "its "+f.prefix+" line", lineValue(f.prefix)); err != nil {
			return err
		}
		*f.dst = strings.TrimSuffix(*f.dst, "/udp")
	}
	if r.pprof, err = waitPprof(b.ctx, c); err != nil {
		return err
	}
	tok, err := os.ReadFile(filepath.Join(data, "dev-authtoken"))
	if err != nil {
		return fmt.Errorf("relay dev authtoken: %w", err)
	}
	r.token = strings.TrimSpace(string(tok))
	pem, err := os.ReadFile(r.caFile)
	if err != nil {
		return fmt.Errorf("relay dev CA: %w", err)
	}
	r.roots = x509.NewCertPool()
	if !r.roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate", r.caFile)
	}
	b.relay = r
	b.logf("%s: pid %d, QUIC %s, TLS %s, HTTP %s, pprof %s", name, c.pid(), r.quicAddr, r.tlsAddr, r.httpAddr, r.pprof)
	return nil
}

// waitPprof reads the address a child's --pprof-addr 127.0.0.1:0 got from its log.
func waitPprof(ctx context.Context, c *child) (string, error) {
	return c.waitLine(ctx, startTimeout, "its pprof address", func(l string) string {
		if !strings.Contains(l, `msg="pprof listening"`) {
			return ""
		}
		_, v, _ := strings.Cut(l, "addr=http://")
		addr, _, _ := strings.Cut(v, "/")
		return addr
	})
}

// startAgent runs `ferry PROTO UPSTREAM` over transport and waits for its public URLs.
func (b *bench) startAgent(proto, transport string, extra ...string) (*agentProc, error) {
	relay, upstream := b.relay.quicAddr, b.up.tcpAddr()
	if transport == "tcp" {
		relay = b.relay.tlsAddr
	}
	if proto == "http" {
		upstream = b.up.httpAddr()
	}
	args := []string{proto, upstream, "--relay", relay, "--relay-ca", b.relay.caFile, "--transport", transport,
		"--api-addr", "false", "--log", "stdout", "--log-format", "logfmt", "--pprof-addr", "127.0.0.1:0"}
	args = append(args, extra...)
	name := fmt.Sprintf("agent %s/%s", proto, transport)
	c, err := startChild(name, agentBin, args, []string{"FERRY_AUTHTOKEN=" + b.relay.token}, b.died)
	if err != nil {
		return nil, err
	}
	b.children = append(b.children, c)
	b.clean.add(func() { b.stopChild(c) })
	a := &agentProc{child: c}
	if a.pprof, err = waitPprof(b.ctx, c); err != nil {
		return nil, err
	}
	tunnelURL := func(scheme string) func(string) string {
		return func(l string) string {
			if !strings.Contains(l, `msg="tunnel started"`) {
				return ""
			}
			_, v, _ := strings.Cut(l, " url="+scheme+"://")
			u, _, _ := strings.Cut(v, " ")
			if u == "" {
				return ""
			}
			return scheme + "://" + u
		}
	}
	switch proto {
	case "tcp":
		u, err := c.waitLine(b.ctx, startTimeout, "its tcp URL", tunnelURL("tcp"))
		if err != nil {
			return nil, err
		}
		_, port, err := net.SplitHostPort(strings.TrimPrefix(u, "tcp://"))
		if err != nil {
			return nil, fmt.Errorf("%s: tunnel URL %q: %w", name, u, err)
		}
		a.public = net.JoinHostPort("127.0.0.1", port)
	case "http":
		if a.public, err = c.waitLine(b.ctx, startTimeout, "its https URL", tunnelURL("https")); err != nil {
			return nil, err
		}
		if a.plain, err = c.waitLine(b.ctx, startTimeout, "its http URL", tunnelURL("http")); err != nil {
			return nil, err
		}
	}
	b.logf("%s: pid %d, public %s", name, c.pid(), a.public)
	return a, nil
}

// stopChild stops c and records it as broken if it would not stop.
func (b *bench) stopChild(c *child) {
	if err := c.stop(); err != nil {
		b.broken = append(b.broken, err)
	}
}

// memReading is a child's memory at one moment, in KiB: its RSS, and the Go heap and
// stacks in use (steadier than RSS, which keeps freed pages for a while).
type memReading struct{ rss, heap float64 }

// mem makes a child collect garbage and reads its memory.
func (b *bench) mem(c *child, pprof string) (memReading, error) {
	heap, err := goMemory(b.ctx, pprof)
	if err != nil {
		return memReading{}, fmt.Errorf("%s: %w", c.name, err)
	}
	rss, err := rssKiB(c.pid())
	return memReading{rss: rss, heap: heap}, err
}

// ---- environment ----------------------------------------------------------------------

// raiseFileLimit sets RLIMIT_NOFILE to want, or as high as the hard limit allows (raising
// the hard limit needs CAP_SYS_RESOURCE), and returns the limit now in force. Calling
// Setrlimit also stops the Go runtime from restoring the old soft limit in children, so
// the relay, the agents and the idle-connection helper inherit it.
func raiseFileLimit(want uint64) (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	old := rl
	rl.Cur = max(rl.Cur, want)
	rl.Max = max(rl.Max, rl.Cur)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil {
		return rl.Cur, nil
	}
	rl = syscall.Rlimit{Cur: old.Max, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("RLIMIT_NOFILE: %w", err)
	}
	return rl.Cur, nil
}

// loadAverage returns /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// chdirRoot moves to the repository root and checks the binaries are built.
func chdirRoot() error {
	dir, err := os.Getwd()
	if err != nil {
		return err
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			if err := os.Chdir(d); err != nil {
				return err
			}
			break
		}
		if filepath.Dir(d) == d {
			return fmt.Errorf("run the bench from the ferry repository (no go.mod above %s)", dir)
		}
	}
	for _, bin := range []string{relayBin, agentBin} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s not found: run `make bench` (it builds first), or `make build`", bin)
		}
	}
	return nil
}

// version asks the relay binary for its version.
func version() string {
	out, err := exec.Command(relayBin, "version").Output()
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(strings.TrimSpace(string(out)), "ferry-relay version ")
}

// report is the header, the table and the children's warnings.
func (b *bench) report(took time.Duration, load0 string) string {
	mode := "full"
	if b.opts.short {
		mode = "short"
	}
	var s strings.Builder
	fmt.Fprintf(&s, "\n## Ferry benchmark (%s run, ferry %s)\n\n", mode, version())
	fmt.Fprintf(&s, "%s, %s/%s, %d CPUs, Go %s; took %s; load average %s at start, %s at end.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(),
		runtime.Version(), took.Round(time.Second), load0, loadAverage())
	s.WriteString(table(b.rows))
	var notes []string
	for _, c := range b.children {
		lines, n := c.out.notableLines()
		if n == 0 {
			continue
		}
		notes = append(notes, fmt.Sprintf("- %s: %d warning/error lines", c.name, n))
		for _, l := range lines {
			notes = append(notes, "    "+l)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(&s, "\nWarnings and errors the relay and agents logged:\n\n%s\n", strings.Join(notes, "\n"))
	}
	return s.String()
}

// sharedPort finds a loopback port free for both TCP and UDP (the relay's agents port).
func sharedPort() (string, error) {
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := ln.Addr().String()
		pc, err := net.ListenPacket("udp", addr)
		ln.Close()
		if err == nil {
			pc.Close()
			return addr, nil
		}
	}
	return "", errors.New("no loopback port free for both TCP and UDP")
}
