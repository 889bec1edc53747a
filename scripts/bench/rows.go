//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// tcpPath is a public address that forwards to the upstream's TCP port: a ferry tcp
// tunnel, or a --peer's.
type tcpPath struct {
	transport string
	addr      string
	// relay and agent, for ferry: their CPU is measured in the bulk rows, and the
	// targets apply. Nil for a peer.
	relay, agent *child
}

func (p tcpPath) ferry() bool { return p.relay != nil }

// memoryRows measures memory and growth on a relay and a tcp agent of their own: idle,
// with many tunnels bound, before and after many connections came and went, and with many
// idle connections open (last: it leaves the most memory behind).
func (b *bench) memoryRows(transport string) {
	if b.ctx.Err() != nil {
		return
	}
	b.logf("---- memory, transport %s ----", transport)
	if err := b.startRelay("relay (memory rows)"); err != nil {
		b.add(measure{metric: "start relay", transport: transport, err: err})
		return
	}
	defer b.stopChild(b.relay.child)
	time.Sleep(settle)
	relayIdle, err := b.mem(b.relay.child, b.relay.pprof)
	if err != nil {
		b.add(measure{metric: "relay RSS, idle", transport: transport, err: err})
		return
	}
	a, err := b.startAgent("tcp", transport)
	if err != nil {
		b.add(measure{metric: "start agent (tcp tunnel)", transport: transport, err: err})
		return
	}
	defer b.stopChild(a.child)
	b.idleRows(transport, relayIdle, a)
	b.tunnelsRow(transport)
	b.churnRows(transport, a)
	b.idleConnRows(transport, a)
}

// trafficRows starts a fresh relay and measures throughput, request and connection
// rates and latency for each agent transport, each against a direct connection.
func (b *bench) trafficRows(transports []string) {
	if b.ctx.Err() != nil {
		return
	}
	if err := b.startRelay("relay (traffic rows)"); err != nil {
		b.add(measure{metric: "start relay", transport: "-", err: err})
		return
	}
	for _, tr := range transports {
		b.transportRows(tr)
	}
}

// transportRows measures the traffic rows for one agent transport.
func (b *bench) transportRows(transport string) {
	if b.ctx.Err() != nil {
		return
	}
	b.logf("---- traffic, transport %s ----", transport)
	tcpAgent, err := b.startAgent("tcp", transport)
	if err != nil {
		b.add(measure{metric: "start agent (tcp tunnel)", transport: transport, err: err})
		return
	}
	defer b.stopChild(tcpAgent.child)
	httpAgent, err := b.startAgent("http", transport)
	if err != nil {
		b.add(measure{metric: "start agent (http tunnel)", transport: transport, err: err})
		return
	}
	defer b.stopChild(httpAgent.child)
	path := tcpPath{transport: transport, addr: tcpAgent.public, relay: b.relay.child, agent: tcpAgent.child}
	b.bulkRows(path)
	b.httpRows(transport, httpAgent)
	b.stopChild(httpAgent.child)
	// The same requests with the agent copying bytes instead of recording each exchange.
	if raw, err := b.startAgent("http", transport, "--inspect=false"); err != nil {
		b.add(measure{metric: "start agent (http tunnel, --inspect=false)", transport: transport, err: err})
	} else {
		b.rpsRow(transport, b.httpTunnelURL(raw), "agent --inspect=false", nil, raw.child)
		b.stopChild(raw.child)
	}
	b.connRateRow(path)
	b.latencyRows(path)
}

// add records a row (a failed one as broken) and prints it as progress.
func (b *bench) add(m measure) {
	if m.err != nil && b.ctx.Err() != nil {
		m.err = context.Cause(b.ctx) // the reason, not the closed connection it caused
	}
	if m.err != nil {
		b.broken = append(b.broken, fmt.Errorf("%s [%s]: %w", m.metric, m.transport, m.err))
	}
	b.rows = append(b.rows, m)
	c := m.cells()
	b.logf("[%s] %s: direct %s, tunnel %s, %s, target %s: %s", c[1], c[0], c[2], c[3], c[4], c[5], c[6])
}

// pair measures direct and then tunnel, and adds the row.
func (b *bench) pair(m measure, direct, tunnel func() (float64, error)) {
	if b.ctx.Err() != nil {
		return
	}
	m.direct, m.err = direct()
	if m.err == nil {
		m.tunnel, m.err = tunnel()
	}
	b.add(m)
}

// ---- throughput -------------------------------------------------------------------------

func (b *bench) bulkRows(p tcpPath) {
	n := b.size.bulk
	var use usageMeter
	if p.ferry() {
		use.procs = []*child{p.relay, p.agent}
	}
	for _, conns := range []int{1, 8} {
		each := "each way"
		if conns > 1 {
			each = "each way in all"
		}
		m := measure{metric: fmt.Sprintf("bulk TCP, %d conn%s (%s %s: up, then down)", conns, plural(conns), sizeText(n), each),
			transport: p.transport, unit: "MiB/s", compare: compareRatio}
		if p.ferry() {
			m.target = atLeastRatio(0.3)
			if conns == 1 {
				m.target = atLeastRatio(map[string]float64{"quic": 0.15, "tcp": 0.25}[p.transport])
			}
		}
		b.pair(m, func() (float64, error) {
			r, err := bulkTCP(b.ctx, b.up.tcpAddr(), n, conns)
			b.logBulk("direct", r, err)
			return r.mibps(), err
		}, func() (float64, error) {
			if err := use.begin(); err != nil {
				return 0, err
			}
			r, err := bulkTCP(b.ctx, p.addr, n, conns)
			b.logBulk("tunnel", r, err)
			if err != nil {
				return 0, err
			}
			return r.mibps(), use.end(r.bytes)
		})
	}
	if p.ferry() {
		b.floorRow(p.transport, n)
	}
	if !p.ferry() || use.bytes == 0 {
		return
	}
	for i, who := range []string{"relay", "agent"} {
		b.add(measure{metric: fmt.Sprintf("%s CPU per GiB moved (bulk TCP rows)", who), transport: p.transport,
			unit: "s/GiB", direct: noDirect(), tunnel: use.secs[i] / (float64(use.bytes) / gib)})
	}
	during := "during the bulk TCP rows"
	if use.sinceStart {
		during = "since it started (could not reset VmHWM)"
	}
	for i, who := range []string{"relay", "agent"} {
		b.add(measure{metric: fmt.Sprintf("%s peak RSS %s", who, during), transport: p.transport,
			unit: "MiB", direct: noDirect(), tunnel: use.peak[i] / 1024})
	}
}

func (b *bench) logBulk(what string, r bulkResult, err error) {
	if err != nil || r.elapsed == 0 {
		return
	}
	half := float64(r.bytes/2) / mib
	b.logf("  %s: %.0f MiB/s over %s (slowest connection: up %.0f MiB/s, down %.0f MiB/s)",
		what, r.mibps(), r.elapsed.Round(time.Millisecond), half/r.up.Seconds(), half/r.down.Seconds())
}

// usageMeter adds up the CPU time of some children over several measurements, and
// tracks their peak RSS during them.
type usageMeter struct {
	procs []*child
	at    []float64 // CPU seconds at begin
	secs  []float64 // CPU seconds, summed over begin/end pairs
	peak  []float64 // KiB, the highest VmHWM seen at end
	bytes int64     // moved during the measurements
	// sinceStart is set when the peak could not be reset (/proc/PID/clear_refs): it is
	// then the peak since the child started.
	sinceStart bool
}

// begin reads the CPU times and resets the peak RSS of the children.
func (u *usageMeter) begin() error {
	u.at = u.at[:0]
	for _, p := range u.procs {
		s, err := cpuSeconds(p.pid())
		if err != nil {
			return err
		}
		u.at = append(u.at, s)
		if err := resetPeakRSS(p.pid()); err != nil {
			u.sinceStart = true
		}
	}
	return nil
}

// end adds the CPU time since begin, and bytes.
func (u *usageMeter) end(bytes int64) error {
	if len(u.procs) == 0 {
		return nil
	}
	if u.secs == nil {
		u.secs = make([]float64, len(u.procs))
		u.peak = make([]float64, len(u.procs))
	}
	for i, p := range u.procs {
		s, err := cpuSeconds(p.pid())
		if err != nil {
			return err
		}
		u.secs[i] += s - u.at[i]
		hwm, err := statusKiB(p.pid(), "VmHWM")
		if err != nil {
			return err
		}
		u.peak[i] = max(u.peak[i], hwm)
	}
	u.bytes += bytes
	return nil
}

// httpTunnelURL is the URL of a's http tunnel on the edge --http-edge picks.
func (b *bench) httpTunnelURL(a *agentProc) string {
	if b.opts.httpEdge == "http" {
		return a.plain
	}
	return a.public
}

// rpsRow measures small HTTP requests per second through a tunnel's URL against direct,
// and returns the rate function for other rows. With agent set (a Ferry tunnel), it also
// reports the relay's and the agent's CPU time per request: steadier than the rate on a
// busy machine, whose direct and tunnel rates move with whatever else runs.
func (b *bench) rpsRow(transport, tunnel, note string, goal *target, agent *child) func(string) func() (float64, error) {
	scheme, _, _ := strings.Cut(tunnel, "://")
	rate := func(base string) func() (float64, error) {
		return func() (float64, error) {
			client := newHTTPClient(b.relay.roots, rpsWorkers, 0)
			defer client.CloseIdleConnections()
			return httpRate(b.ctx, client, base+"/1k", rpsWorkers, b.size.rpsTime)
		}
	}
	m := measure{metric: fmt.Sprintf("HTTP/1.1 req/s, %d keep-alive clients, 1 KiB answers (%s edge, %s)", rpsWorkers, scheme, note),
		transport: transport, unit: "req/s", compare: compareRatio}
	m.target = goal
	var use usageMeter
	if agent != nil {
		use.procs = []*child{b.relay.child, agent}
	}
	tunnelRate := rate(tunnel)
	b.pair(m, rate("http://"+b.up.httpAddr()), func() (float64, error) {
		if err := use.begin(); err != nil {
			return 0, err
		}
		r, err := tunnelRate()
		if err != nil {
			return r, err
		}
		return r, use.end(int64(r * b.size.rpsTime.Seconds()))
	})
	if agent == nil || use.bytes == 0 {
		return rate
	}
	for i, who := range []string{"relay", "agent"} {
		b.add(measure{metric: fmt.Sprintf("%s CPU per request (the row above; includes connection setup)", who), transport: transport,
			unit: "µs", direct: noDirect(), tunnel: use.secs[i] / float64(use.bytes) * 1e6})
	}
	return rate
}

// httpRows measures bulk HTTP and small requests/s through the http tunnel.
func (b *bench) httpRows(transport string, a *agentProc) {
	direct := "http://" + b.up.httpAddr()
	tunnel := b.httpTunnelURL(a)
	scheme, _, _ := strings.Cut(tunnel, "://")
	n := b.size.bulk
	bulk := func(base string) func() (float64, error) {
		return func() (float64, error) {
			client := newHTTPClient(b.relay.roots, 1, bulkBufSize)
			defer client.CloseIdleConnections()
			r, err := bulkHTTP(b.ctx, client, base, n)
			return r.mibps(), err
		}
	}
	b.pair(measure{metric: fmt.Sprintf("bulk HTTP/1.1, 1 conn (POST %s, then GET %s; %s edge)", sizeText(n), sizeText(n), scheme),
		transport: transport, unit: "MiB/s", compare: compareRatio}, bulk(direct), bulk(tunnel))

	rate := b.rpsRow(transport, tunnel, "inspection on", atLeastRatio(0.5), a.child)

	// The floor of any two-hop HTTP path: the same requests through the bare TLS chain,
	// whose hops only copy bytes (no HTTP parsing, one TLS leg instead of Ferry's two).
	if transport != "tcp" {
		return
	}
	addr, stop, err := b.startFloor("tls", b.up.httpAddr())
	if err != nil {
		b.add(measure{metric: "floor: HTTP req/s through a bare TLS chain", transport: transport, err: err})
		return
	}
	defer stop()
	b.pair(measure{metric: fmt.Sprintf("floor: HTTP/1.1 req/s, %d keep-alive clients, through a bare TLS chain (2 byte-copying hops in 2 processes, no HTTP parsing)", rpsWorkers),
		transport: transport, unit: "req/s", compare: compareRatio}, rate(direct), rate("http://"+addr))
}

// ---- connections and latency --------------------------------------------------------------

func (b *bench) connRateRow(p tcpPath) {
	rate := func(addr string) func() (float64, error) {
		return func() (float64, error) {
			r, n, err := connRate(b.ctx, addr, connWorkers, b.size.conns, b.size.connsLimit)
			if err == nil && n < b.size.conns {
				b.logf("  %s: %d connections within %s", addr, n, b.size.connsLimit)
			}
			return r, err
		}
	}
	b.pair(measure{metric: fmt.Sprintf("new conns/s (connect, 1 KiB echo, close; %d workers)", connWorkers),
		transport: p.transport, unit: "conn/s", compare: compareRatio}, rate(b.up.tcpAddr()), rate(p.addr))
}

func (b *bench) latencyRows(p tcpPath) {
	if b.ctx.Err() != nil {
		return
	}
	samples := b.size.echoes
	p50 := measure{metric: fmt.Sprintf("1 KiB echo round trip p50 (%d samples, 1 conn)", samples),
		transport: p.transport, unit: "µs", compare: compareAdded}
	p99 := p50
	p99.metric = strings.Replace(p50.metric, "p50", "p99", 1)
	if p.ferry() {
		p50.target = atMostAdded(150)
	}
	direct, err := echoLatency(b.ctx, b.up.tcpAddr(), samples)
	var tunnel []time.Duration
	if err == nil {
		tunnel, err = echoLatency(b.ctx, p.addr, samples)
	}
	if err != nil {
		p50.err = err
		b.add(p50)
		return
	}
	p50.direct, p50.tunnel = percentile(direct, 50), percentile(tunnel, 50)
	p99.direct, p99.tunnel = percentile(direct, 99), percentile(tunnel, 99)
	b.add(p50)
	b.add(p99)
}

// ---- memory and growth ----------------------------------------------------------------------

// idleRows reads the relay's and the agent's memory with one tcp tunnel up and no
// traffic; relayIdle is the relay's before the agent connected.
func (b *bench) idleRows(transport string, relayIdle memReading, a *agentProc) {
	time.Sleep(settle)
	relay, err := b.mem(b.relay.child, b.relay.pprof)
	if err != nil {
		b.add(measure{metric: "relay RSS, idle", transport: transport, err: err})
		return
	}
	agent, err := b.mem(a.child, a.pprof)
	b.add(measure{metric: fmt.Sprintf("relay RSS, idle: no agent, then 1 tcp tunnel (Go heap+stacks %s)", mibChange(relayIdle, relay)),
		transport: transport, unit: "MiB", direct: relayIdle.rss / 1024, tunnel: relay.rss / 1024,
		compare: compareAdded, labels: [2]string{"no agent", "1 tunnel"}})
	b.add(measure{metric: fmt.Sprintf("agent RSS, idle, 1 tcp tunnel (Go heap+stacks %.1f MiB)", agent.heap/1024),
		transport: transport, unit: "MiB", direct: noDirect(), tunnel: agent.rss / 1024, err: err})
}

// tunnelsRow binds many http tunnels from an in-process agent and reads the relay's RSS
// growth per tunnel.
func (b *bench) tunnelsRow(transport string) {
	if b.ctx.Err() != nil {
		return
	}
	n := b.size.tunnels
	before, after, err := b.relayGrowth(func() (func() error, error) {
		relay := b.relay.quicAddr
		if transport == "tcp" {
			relay = b.relay.tlsAddr
		}
		t0 := time.Now()
		a, err := bindTunnels(b.ctx, relay, transport, b.relay.token, b.relay.roots, b.up.httpAddr(), n, 2*time.Minute)
		if err != nil {
			return nil, err
		}
		b.logf("  bound %d tunnels in %s", n, time.Since(t0).Round(time.Millisecond))
		return a.stop, nil
	})
	b.add(measure{metric: growthMetric("relay RSS per bound tunnel", count(n)+" http tunnels", "tunnel", n, before, after),
		transport: transport, unit: "KiB", direct: noDirect(), tunnel: (after.rss - before.rss) / float64(n),
		target: atMostValue(8), err: err})
}

// relayGrowth reads the relay's memory, runs load (which returns its undo), reads it
// again, and undoes the load.
func (b *bench) relayGrowth(load func() (undo func() error, err error)) (before, after memReading, err error) {
	if before, err = b.mem(b.relay.child, b.relay.pprof); err != nil {
		return before, after, err
	}
	undo, err := load()
	if err != nil {
		return before, after, err
	}
	time.Sleep(settle)
	after, err = b.mem(b.relay.child, b.relay.pprof)
	return before, after, errors.Join(err, undo())
}

// idleConnRows opens many idle connections through the tcp tunnel (from a helper
// process) and reads the relay's and the agent's RSS growth per connection.
func (b *bench) idleConnRows(transport string, a *agentProc) {
	if b.ctx.Err() != nil {
		return
	}
	n := b.size.idle
	var agentBefore, agentAfter memReading
	relayBefore, relayAfter, err := b.relayGrowth(func() (func() error, error) {
		var err error
		if agentBefore, err = b.mem(a.child, a.pprof); err != nil {
			return nil, err
		}
		open0 := b.up.open.Load()
		t0 := time.Now()
		helper, err := b.openIdleElsewhere(a.public, n)
		if err != nil {
			return nil, err
		}
		b.logf("  opened %d idle connections in %s", n, time.Since(t0).Round(time.Millisecond))
		undo := func() error {
			b.stopChild(helper)
			return b.waitUpstreamOpen(open0, time.Minute)
		}
		time.Sleep(settle)
		if agentAfter, err = b.mem(a.child, a.pprof); err != nil {
			return nil, errors.Join(err, undo())
		}
		return undo, nil
	})
	what := count(n) + " via the tcp tunnel"
	b.add(measure{metric: growthMetric("relay RSS per open idle conn", what, "conn", n, relayBefore, relayAfter),
		transport: transport, unit: "KiB", direct: noDirect(), tunnel: (relayAfter.rss - relayBefore.rss) / float64(n),
		target: atMostValue(32), err: err})
	b.add(measure{metric: growthMetric("agent RSS per open idle conn", what, "conn", n, agentBefore, agentAfter),
		transport: transport, unit: "KiB", direct: noDirect(), tunnel: (agentAfter.rss - agentBefore.rss) / float64(n), err: err})
}

// growthMetric names a per-item memory row with its RSS before and after and the Go
// heap+stacks growth per item.
func growthMetric(name, what, item string, n int, before, after memReading) string {
	if before.rss == 0 || after.rss == 0 {
		return fmt.Sprintf("%s (%s)", name, what)
	}
	return fmt.Sprintf("%s (%s: RSS %.1f → %.1f MiB; Go heap+stacks %+.1f KiB/%s)",
		name, what, before.rss/1024, after.rss/1024, (after.heap-before.heap)/float64(n), item)
}

// mibChange prints a change of Go heap+stacks, "5.1 → 5.3 MiB".
func mibChange(before, after memReading) string {
	return fmt.Sprintf("%.1f → %.1f MiB", before.heap/1024, after.heap/1024)
}

// waitUpstreamOpen waits until the upstream has at most want connections open: the
// tunnel has closed everything the bench closed.
func (b *bench) waitUpstreamOpen(want int64, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for b.up.open.Load() > want {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d upstream connections still open %s after the clients closed theirs (want %d)", b.up.open.Load(), limit, want)
		}
		if err := sleepCtx(b.ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	return nil
}

// churnRows runs many short connections through the tcp tunnel and checks that the
// relay's and the agent's goroutines come back to where they were (RSS is reported).
func (b *bench) churnRows(transport string, a *agentProc) {
	if b.ctx.Err() != nil {
		return
	}
	type reading struct{ relayG, agentG int }
	read := func() (reading, error) {
		var r reading
		var err1, err2 error
		r.relayG, err1 = goroutines(b.ctx, b.relay.pprof)
		r.agentG, err2 = goroutines(b.ctx, a.pprof)
		return r, errors.Join(err1, err2)
	}
	fail := func(err error) { b.add(measure{metric: "goroutines after churn", transport: transport, err: err}) }
	time.Sleep(settle)
	g0, err := read()
	if err != nil {
		fail(err)
		return
	}
	relay0, err1 := b.mem(b.relay.child, b.relay.pprof)
	agent0, err2 := b.mem(a.child, a.pprof)
	if err := errors.Join(err1, err2); err != nil {
		fail(err)
		return
	}
	n := b.size.churn
	rate, done, err := connRate(b.ctx, a.public, connWorkers, n, 10*time.Minute)
	if err == nil && done < n {
		err = fmt.Errorf("only %d of %d connections within 10 minutes", done, n)
	}
	if err != nil {
		fail(err)
		return
	}
	b.logf("  churn: %d connections at %.0f/s", done, rate)
	// Goroutines may take a moment to end after the last close: wait up to 30s for them
	// to come back (all of them, or a count that has stopped moving), then read whatever
	// is there.
	var g1, prev reading
	for deadline := time.Now().Add(30 * time.Second); ; {
		if g1, err = read(); err != nil {
			fail(err)
			return
		}
		back := g1.relayG <= g0.relayG && g1.agentG <= g0.agentG
		steady := g1 == prev && g1.relayG <= g0.relayG+10 && g1.agentG <= g0.agentG+10
		if back || steady || time.Now().After(deadline) {
			break
		}
		prev = g1
		if err := sleepCtx(b.ctx, 500*time.Millisecond); err != nil {
			fail(err)
			return
		}
	}
	time.Sleep(settle)
	relay1, err1 := b.mem(b.relay.child, b.relay.pprof)
	agent1, err2 := b.mem(a.child, a.pprof)
	after := fmt.Sprintf("after %s conns", count(n))
	labels := [2]string{"before", "after"}
	b.add(measure{metric: fmt.Sprintf("relay goroutines, %s (%.0f conn/s)", after, rate), transport: transport,
		direct: float64(g0.relayG), tunnel: float64(g1.relayG), compare: compareAdded, target: atMostAdded(10), labels: labels})
	b.add(measure{metric: "agent goroutines, " + after, transport: transport,
		direct: float64(g0.agentG), tunnel: float64(g1.agentG), compare: compareAdded, target: atMostAdded(10), labels: labels})
	b.add(measure{metric: fmt.Sprintf("relay RSS, %s (Go heap+stacks %s)", after, mibChange(relay0, relay1)), transport: transport,
		unit: "MiB", direct: relay0.rss / 1024, tunnel: relay1.rss / 1024, compare: compareAdded, labels: labels, err: err1})
	b.add(measure{metric: fmt.Sprintf("agent RSS, %s (Go heap+stacks %s)", after, mibChange(agent0, agent1)), transport: transport,
		unit: "MiB", direct: agent0.rss / 1024, tunnel: agent1.rss / 1024, compare: compareAdded, labels: labels, err: err2})
}

// ---- peers ---------------------------------------------------------------------------------

// runPeer starts another tunnel tool and runs the tcp-tunnel rows through it, and the
// HTTP requests/s row when it offers an HTTP URL too.
func (b *bench) runPeer(p peer) {
	if b.ctx.Err() != nil {
		return
	}
	b.logf("---- peer %s ----", p.name)
	c, addr, err := b.startPeer(p)
	if err != nil {
		b.add(measure{metric: "start " + p.name, transport: p.name, err: err})
		return
	}
	path := tcpPath{transport: p.name, addr: addr}
	b.bulkRows(path)
	if u, err := peerHTTP(c); err != nil {
		b.add(measure{metric: "HTTP req/s", transport: p.name, err: err})
	} else if u != "" {
		b.rpsRow(p.name, u, "the peer's own settings", nil, nil)
	}
	b.connRateRow(path)
	b.latencyRows(path)
	b.stopChild(c)
}

// peerHTTP returns the URL a peer printed as BENCH_PUBLIC_HTTP (before its
// BENCH_PUBLIC_TCP line), or "" if it printed none.
func peerHTTP(c *child) (string, error) {
	v, _ := c.out.find(lineValue("BENCH_PUBLIC_HTTP="))
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("BENCH_PUBLIC_HTTP=%s: want an http:// or https:// URL", v)
	}
	return strings.TrimSuffix(v, "/"), nil
}

// startPeer runs a peer's command and waits for its public address, then for an echo
// through it.
func (b *bench) startPeer(p peer) (*child, string, error) {
	// A peer's command may exit once its daemons run; its tunnel's failures show in the rows.
	c, err := startChild(p.name, "/bin/sh", []string{"-c", p.cmd},
		[]string{"BENCH_UPSTREAM_TCP=" + b.up.tcpAddr(), "BENCH_UPSTREAM_HTTP=" + b.up.httpAddr()}, b.exited)
	if err != nil {
		return nil, "", err
	}
	b.children = append(b.children, c)
	b.clean.add(func() { b.stopChild(c) })
	v, err := c.waitLine(b.ctx, startTimeout, "BENCH_PUBLIC_TCP=HOST:PORT", lineValue("BENCH_PUBLIC_TCP="))
	if err != nil {
		return c, "", err
	}
	host, port, err := net.SplitHostPort(v)
	if err != nil {
		return c, "", fmt.Errorf("BENCH_PUBLIC_TCP=%s: %w", v, err)
	}
	switch host {
	case "127.0.0.1", "localhost", "":
		host = "127.0.0.1"
	case "::1":
	default:
		return c, "", fmt.Errorf("BENCH_PUBLIC_TCP=%s: the bench only sends traffic to loopback (127.0.0.1 or ::1)", v)
	}
	addr := net.JoinHostPort(host, port)
	deadline := time.Now().Add(startTimeout)
	for {
		conn, err := openOne(b.ctx, addr)
		if err == nil {
			conn.Close()
			b.logf("%s: public %s", p.name, addr)
			return c, addr, nil
		}
		if time.Now().After(deadline) {
			return c, "", fmt.Errorf("no echo through %s's %s within %s: %w", p.name, addr, startTimeout, err)
		}
		if err := sleepCtx(b.ctx, 200*time.Millisecond); err != nil {
			return c, "", err
		}
	}
}

// ---- small helpers -----------------------------------------------------------------------

// lineValue matches output lines that start with prefix and returns what follows it;
// other lines (a peer's own messages) give "".
func lineValue(prefix string) func(string) string {
	return func(l string) string {
		v, ok := strings.CutPrefix(strings.TrimSpace(l), prefix)
		if !ok {
			return ""
		}
		return strings.TrimSpace(v)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// sizeText prints a byte count as MiB or GiB.
func sizeText(n int64) string {
	if n >= gib && n%gib == 0 {
		return fmt.Sprintf("%d GiB", n/gib)
	}
	return fmt.Sprintf("%d MiB", n/mib)
}

// count prints n with thousands separators (10,000).
func count(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// floorRow measures a bare chain with the transport's own protocol in the middle (the
// floor of that transport, see floor.go) against direct in the same run, so the bulk rows
// above can be read against what the machine allows.
func (b *bench) floorRow(transport string, n int64) {
	what := map[string]string{
		"tcp":  "a bare TLS chain (3 loopback hops, 1 TLS connection per client, 2 processes, io.Copy)",
		"quic": "a bare quic-go chain (3 loopback hops, 1 QUIC stream per client, 2 processes, io.Copy)",
	}[transport]
	if what == "" {
		return
	}
	kind := map[string]string{"tcp": "tls", "quic": "quic"}[transport]
	addr, stop, err := b.startFloor(kind, b.up.tcpAddr())
	if err != nil {
		b.add(measure{metric: "floor: bare " + kind + " chain", transport: transport, err: err})
		return
	}
	defer stop()
	for _, conns := range []int{1, 8} { // as the bulk rows: the 8-connection target is read against this
		each := "each way"
		if conns > 1 {
			each = "each way in all"
		}
		m := measure{metric: fmt.Sprintf("floor: bulk TCP, %d conn%s, %s %s through %s", conns, plural(conns), sizeText(n), each, what),
			transport: transport, unit: "MiB/s", compare: compareRatio}
		b.pair(m, func() (float64, error) {
			r, err := bulkTCP(b.ctx, b.up.tcpAddr(), n, conns)
			return r.mibps(), err
		}, func() (float64, error) {
			r, err := bulkTCP(b.ctx, addr, n, conns)
			return r.mibps(), err
		})
	}
}
