// Package session is the agent's connection to a relay: it dials (with backoff), says
// Hello, authenticates, binds the tunnels, serves the streams the relay opens, measures
// round-trip time with heartbeats, and reconnects (rebinding the same names) when the
// transport is lost.
package session

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
)

// Config configures a Client.
type Config struct {
	// Relay is the relay's QUIC address, HOST:PORT.
	Relay     string
	Authtoken string
	// RootCAs verifies the relay's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	Tunnels []*forward.Tunnel
	Log     *slog.Logger
	Version string
	// ConnectAttempts is how many times the first connection is tried before Run gives up
	// (default 4, with 1s, 2s, 4s backoff between; negative: until the context ends, the
	// wait growing to 30s). After a session was up, the client reconnects until its context
	// ends.
	ConnectAttempts int
	// HeartbeatInterval is how often RTT is measured (default 2s). A heartbeat is also
	// what makes a restarted relay answer a stateless reset (QUIC keep-alive PINGs are too
	// small to draw one), so it bounds how long an agent takes to notice a killed relay.
	HeartbeatInterval time.Duration
	// HeartbeatTolerance is how long a heartbeat may go unanswered before the agent takes
	// the relay for gone and reconnects (default 10s). Without it a relay that vanished
	// without a word (killed, its network cut) is noticed only when the transport's idle
	// timeout ends the session (30s).
	HeartbeatTolerance time.Duration
	// Backoff is the first reconnect delay (default 1s); it doubles up to 30s, with jitter.
	Backoff time.Duration
	// OnReady is called each time every tunnel is bound (first start and after a reconnect).
	OnReady func([]Status)
	// Transport is "quic", "tcp" (TLS over TCP with yamux, for networks that block UDP),
	// or "auto" (default): QUIC first, TCP if QUIC has not connected within AutoQUICTimeout.
	Transport string
	// Dial replaces the transport dial (tests).
	Dial func(ctx context.Context, addr string, conf *tls.Config) (transport.Session, error)
}

// AutoQUICTimeout is how long --transport auto waits for QUIC before trying TCP.
const AutoQUICTimeout = 2 * time.Second

// Status is one tunnel as the relay bound it.
type Status struct {
	Tunnel *forward.Tunnel
	URLs   []string
}

// Error is a failure with a kind the command line maps to an exit code.
type Error struct {
	Kind Kind
	Err  error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Kind classifies errors that end Run.
type Kind int

// Kinds of Error.
const (
	KindOther Kind = iota
	KindAuth
	KindUnreachable
	KindBind
	KindUntrusted
	KindVersion
)

// Client is the agent's session with one relay.
type Client struct {
	cfg     Config
	log     *slog.Logger
	bufWarn sync.Once    // the UDP buffer warning, once per run
	rtt     atomic.Int64 // nanoseconds
	mu      sync.Mutex
	entries []*entry          // in bind order
	byID    map[uint32]*entry // for each stream the relay opens
	nextID  uint32
	cs      *control // the live session's control stream, nil while disconnected
	// bindMu orders a session's bindAll (and publishing cs) against AddTunnel, so a
	// tunnel added during a reconnect is bound exactly once.
	bindMu sync.Mutex
	live   atomic.Bool

	transportName string   // of the current session, for logs
	relayCaps     []string // what the current relay advertised in HelloResp
	sessionID     string   // the current (or last) session's, from AuthResp
	relayVersion  string
	since         time.Time // when the current session's tunnels were bound
	reconnects    int       // sessions established after the first
	lastErr       string    // why the last session ended or the last attempt failed
}

// SessionStatus is the agent's connection to its relay (the local API's /api/status).
type SessionStatus struct {
	Connected bool   `json:"connected"`
	Relay     string `json:"relay"`
	Transport string `json:"transport,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	// RelayVersion is what the relay reported in the handshake.
	RelayVersion string `json:"relay_version,omitempty"`
	// ConnectedSince is when the current session's tunnels were bound (nil: not connected).
	ConnectedSince *time.Time `json:"connected_since,omitempty"`
	// RTTMillis is the last heartbeat's round-trip time (0 before the first).
	RTTMillis float64 `json:"rtt_ms"`
	// Reconnects counts the sessions established after the first.
	Reconnects int `json:"reconnects"`
	// LastError is why the last session ended, or why the last attempt failed.
	LastError string `json:"last_error,omitempty"`
}

// Session returns the agent's connection to its relay.
func (c *Client) Session() SessionStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := SessionStatus{Connected: c.live.Load(), Relay: c.cfg.Relay, Transport: c.transportName, SessionID: c.sessionID,
		RelayVersion: c.relayVersion, RTTMillis: float64(c.rtt.Load()) / 1e6, Reconnects: c.reconnects, LastError: c.lastErr}
	if st.Connected {
		since := c.since
		st.ConnectedSince = &since
	}
	return st
}

// New returns a client; call Run.
func New(cfg Config) *Client {
	if cfg.ConnectAttempts == 0 {
		cfg.ConnectAttempts = 4
	}
	if cfg.HeartbeatInterval == 0 {
		cfg.HeartbeatInterval = 2 * time.Second
	}
	if cfg.HeartbeatTolerance == 0 {
		cfg.HeartbeatTolerance = 10 * time.Second
	}
	if cfg.Backoff == 0 {
		cfg.Backoff = time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Dial == nil {
		cfg.Dial = dialer(cfg.Transport, cfg.Log)
	}
	c := &Client{cfg: cfg, log: cfg.Log, byID: make(map[uint32]*entry)}
	for _, t := range cfg.Tunnels {
		c.addEntry(t)
	}
	return c
}

// entry is one tunnel the client serves, with the id it binds under and its URLs.
type entry struct {
	id   uint32
	t    *forward.Tunnel
	urls []string
}

func (c *Client) addEntry(t *forward.Tunnel) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	e := &entry{id: c.nextID, t: t}
	c.entries = append(c.entries, e)
	c.byID[e.id] = e
	return e
}

func (c *Client) removeEntry(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.byID, e.id)
	for i, x := range c.entries {
		if x == e {
			c.entries = append(c.entries[:i], c.entries[i+1:]...)
			break
		}
	}
}

func (c *Client) snapshot() []*entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*entry(nil), c.entries...)
}

// ErrDuplicateName is returned by AddTunnel for a name already in use.
var ErrDuplicateName = errors.New("a tunnel with this name is already running")

// AddTunnel starts a tunnel while the client runs: it binds at once when connected
// (returning the URLs, or the relay's refusal) and after every reconnect.
func (c *Client) AddTunnel(ctx context.Context, t *forward.Tunnel) ([]string, error) {
	if c.Tunnel(t.Name) != nil {
		return nil, fmt.Errorf("tunnel %s: %w", t.Name, ErrDuplicateName)
	}
	if err := t.Prepare(); err != nil {
		return nil, &Error{Kind: KindBind, Err: fmt.Errorf("tunnel %s: %w", t.Name, err)}
	}
	t.Start(c.log)
	c.bindMu.Lock()
	defer c.bindMu.Unlock()
	e := c.addEntry(t)
	c.mu.Lock()
	cs := c.cs
	c.mu.Unlock()
	if cs == nil {
		return nil, nil // bound when the session comes up
	}
	if err := c.bindOne(ctx, cs, e); err != nil {
		c.removeEntry(e)
		t.Close()
		return nil, err
	}
	return e.urls, nil
}

// RemoveTunnel stops a running tunnel by name.
func (c *Client) RemoveTunnel(name string) error {
	var e *entry
	c.mu.Lock()
	for _, x := range c.entries {
		if x.t.Name == name {
			e = x
		}
	}
	cs := c.cs
	c.mu.Unlock()
	if e == nil {
		return fmt.Errorf("no tunnel named %q", name)
	}
	c.removeEntry(e)
	if cs != nil {
		cs.write(protocol.TypeUnbind, &protocol.Unbind{TunnelID: e.id}) //nolint:errcheck // the session may be going away; the relay frees it then
	}
	e.t.Close()
	c.log.Info("tunnel stopped", "name", name)
	return nil
}

// dialer returns the dial function for a transport choice.
func dialer(choice string, log *slog.Logger) func(context.Context, string, *tls.Config) (transport.Session, error) {
	quic := func(ctx context.Context, addr string, conf *tls.Config) (transport.Session, error) {
		return transport.DialQUIC(ctx, addr, conf)
	}
	tcp := func(ctx context.Context, addr string, conf *tls.Config) (transport.Session, error) {
		return transport.DialTCP(ctx, addr, conf)
	}
	switch choice {
	case "quic":
		return quic
	case "tcp":
		return tcp
	}
	return func(ctx context.Context, addr string, conf *tls.Config) (transport.Session, error) {
		qctx, cancel := context.WithTimeout(ctx, AutoQUICTimeout)
		s, qerr := quic(qctx, addr, conf)
		cancel()
		if qerr == nil {
			return s, nil
		}
		var cve *tls.CertificateVerificationError
		if errors.As(qerr, &cve) || transport.IsALPNMismatch(qerr) || ctx.Err() != nil {
			return nil, qerr // the relay answered: TCP would say the same
		}
		s, terr := tcp(ctx, addr, conf)
		if terr != nil {
			return nil, fmt.Errorf("quic: %v; tcp: %w", qerr, terr)
		}
		log.Info("QUIC did not connect, using TCP (is UDP blocked?)", "relay", addr, "quic_err", qerr)
		return s, nil
	}
}

// RTT returns the last measured round-trip time to the relay (0 before the first).
func (c *Client) RTT() time.Duration { return time.Duration(c.rtt.Load()) }

// Transport returns the transport of the current (or last) session, "quic" or "tcp".
func (c *Client) Transport() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transportName
}

// Connected reports whether a session is up.
func (c *Client) Connected() bool { return c.live.Load() }

// Tunnel returns the tunnel with the given name, or nil.
func (c *Client) Tunnel(name string) *forward.Tunnel {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries {
		if e.t.Name == name {
			return e.t
		}
	}
	return nil
}

// Tunnels returns the tunnels with their current public URLs.
func (c *Client) Tunnels() []Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]Status, 0, len(c.entries))
	for _, e := range c.entries {
		out = append(out, Status{Tunnel: e.t, URLs: e.urls})
	}
	return out
}

// Run connects and serves until ctx ends (returning nil) or a permanent error: the
// relay refused the authtoken, a bind, or the protocol version; or the first connection
// could not be made after ConnectAttempts tries.
func (c *Client) Run(ctx context.Context) error {
	for _, t := range c.cfg.Tunnels {
		if err := t.Prepare(); err != nil {
			return &Error{Kind: KindBind, Err: fmt.Errorf("tunnel %s: %w", t.Name, err)}
		}
	}
	for _, t := range c.cfg.Tunnels {
		t.Start(c.log)
	}
	defer func() {
		for _, e := range c.snapshot() {
			e.t.Close()
		}
	}()
	established := false
	delay := c.cfg.Backoff
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := c.runSession(ctx, &established)
		if ctx.Err() != nil {
			return nil
		}
		var e *Error
		if errors.As(err, &e) && e.Kind != KindUnreachable {
			return err // permanent: retrying would fail the same way
		}
		if !established && c.cfg.ConnectAttempts > 0 && attempt >= c.cfg.ConnectAttempts {
			return err
		}
		if time.Since(start) > time.Minute {
			delay = c.cfg.Backoff // the session was up for a while: start backing off afresh
			attempt = 1
		}
		wait := delay/2 + mathrand.N(delay/2+1) // jitter: [delay/2, delay]
		msg := "relay connection lost, reconnecting"
		if !established {
			msg = "relay not reachable yet, retrying"
		}
		c.mu.Lock()
		c.lastErr = err.Error()
		c.mu.Unlock()
		c.log.Warn(msg, "relay", c.cfg.Relay, "err", err, "retry_in", wait.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		delay = min(2*delay, 30*time.Second)
	}
}

func (c *Client) runSession(ctx context.Context, established *bool) error {
	host, _, err := net.SplitHostPort(c.cfg.Relay)
	if err != nil {
		return &Error{Kind: KindOther, Err: fmt.Errorf("--relay %q: want HOST:PORT, e.g. relay.example.com:443", c.cfg.Relay)}
	}
	conf := &tls.Config{ServerName: host, RootCAs: c.cfg.RootCAs, MinVersion: tls.VersionTLS13}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	sess, err := c.cfg.Dial(dctx, c.cfg.Relay, conf)
	cancel()
	if err != nil {
		return c.dialError(err)
	}
	c.mu.Lock()
	c.transportName = sess.Name()
	if qs, ok := sess.(*transport.QUICSession); ok && qs.BufferProblem() != "" {
		c.bufWarn.Do(func() { c.log.Warn("QUIC socket buffers are small", "detail", qs.BufferProblem()) })
	}
	c.mu.Unlock()
	draining := false // the relay went away: the session stays up for its streams in flight
	defer func() {
		if !draining {
			sess.CloseWithError(protocol.CodeClosed, "agent closing")
		}
	}()
	ctrl, err := sess.OpenStream(ctx)
	if err != nil {
		return &Error{Kind: KindUnreachable, Err: fmt.Errorf("open control stream: %w", err)}
	}
	if err := c.handshake(sess, ctrl); err != nil {
		return err
	}

	// From here one goroutine reads the control stream; writes are serialised.
	cs := &control{st: ctrl, pending: make(map[uint32]chan *protocol.BindResp), pings: make(map[uint64]time.Time)}
	readErr := make(chan error, 1)
	go func() { readErr <- cs.readLoop(c) }()

	sctx, scancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		if draining {
			return
		}
		scancel()
		// Before wg.Wait: ending the session ends the streams the goroutines serve.
		sess.CloseWithError(protocol.CodeClosed, "agent closing")
		wg.Wait()
	}()
	wg.Go(func() { c.acceptLoop(sctx, sess) })

	c.bindMu.Lock()
	if err := c.bindAll(sctx, cs, *established); err != nil {
		c.bindMu.Unlock()
		return err
	}
	c.mu.Lock()
	if *established {
		c.reconnects++
	}
	c.cs = cs
	c.since = time.Now()
	c.mu.Unlock()
	*established = true
	c.bindMu.Unlock()
	c.live.Store(true)
	defer func() {
		c.mu.Lock()
		c.cs = nil
		c.mu.Unlock()
		c.live.Store(false)
	}()
	if c.cfg.OnReady != nil {
		c.cfg.OnReady(c.Tunnels())
	}
	silent := make(chan error, 1)
	wg.Go(func() { c.heartbeat(sctx, cs, silent) })

	select {
	case err := <-silent:
		return &Error{Kind: KindUnreachable, Err: err}
	case <-ctx.Done():
		sess.CloseWithError(protocol.CodeClosed, "agent shutting down")
		return nil
	case err := <-readErr:
		var ga *goAwayError
		if errors.As(err, &ga) {
			// Connect again now (the tunnels come back with their URLs) while this
			// session carries what is in flight; the relay closes it when that is done.
			draining = true
			c.log.Info("relay going away; reconnecting, connections in flight continue", "reason", ga.reason)
			go func() {
				select {
				case <-sess.Context().Done():
				case <-ctx.Done():
				case <-time.After(MaxDrain):
				}
				scancel()
				sess.CloseWithError(protocol.CodeClosed, "agent closing")
				wg.Wait()
			}()
			return &Error{Kind: KindUnreachable, Err: err}
		}
		return &Error{Kind: KindUnreachable, Err: err}
	case <-sess.Context().Done():
		scancel()
		return &Error{Kind: KindUnreachable, Err: transport.SessionError(context.Cause(sess.Context()))}
	}
}

func (c *Client) dialError(err error) error {
	var uae x509.UnknownAuthorityError
	var cve *tls.CertificateVerificationError
	var hne x509.HostnameError
	switch {
	case errors.As(err, &uae) || errors.As(err, &cve) && errors.As(cve.Err, &uae):
		return &Error{Kind: KindUntrusted, Err: fmt.Errorf("relay %s presented a certificate this agent does not trust (%v): pass the relay's CA with --relay-ca FILE or FERRY_RELAY_CA (a dev relay prints it: DATA/ca.pem)", c.cfg.Relay, err)}
	case errors.As(err, &hne):
		return &Error{Kind: KindUntrusted, Err: fmt.Errorf("relay certificate does not match %s (%v): use the relay's name in --relay, as printed by ferry-relay", c.cfg.Relay, err)}
	case errors.As(err, &cve):
		return &Error{Kind: KindUntrusted, Err: fmt.Errorf("relay certificate rejected (%v): check --relay-ca and the relay's --tls-cert", err)}
	case transport.IsALPNMismatch(err):
		return &Error{Kind: KindVersion, Err: fmt.Errorf("relay %s does not speak %s: it is not a ferry relay, or too old for this agent", c.cfg.Relay, protocol.ALPN)}
	}
	return &Error{Kind: KindUnreachable, Err: fmt.Errorf("relay %s unreachable: %v (is ferry-relay running there? `ferry diagnose` checks DNS, TCP, TLS and UDP one by one)", c.cfg.Relay, err)}
}

func (c *Client) handshake(sess transport.Session, ctrl transport.Stream) error {
	ctrl.SetDeadline(time.Now().Add(10 * time.Second))
	defer ctrl.SetDeadline(time.Time{})
	hr, ar, err := protocol.Handshake(ctrl, protocol.NewHello(c.cfg.Version), c.cfg.Authtoken)
	if err != nil {
		return classify(err)
	}
	c.mu.Lock()
	c.relayCaps = hr.Capabilities
	c.sessionID, c.relayVersion = ar.SessionID, hr.RelayVersion
	c.mu.Unlock()
	c.log.Info("session established", "relay", c.cfg.Relay, "session", ar.SessionID, "relay_version", hr.RelayVersion, "transport", c.Transport())
	if ts, ok := sess.(*transport.TCPSession); ok && ar.DataKey != "" {
		ts.StartDataConns(ar.SessionID, ar.DataKey) // streams without the multiplexer: see transport/tcpdata.go
	}
	return nil
}

func classify(err error) error {
	// The relay refuses a session with an Error frame and closes it with the same code and
	// message; whichever arrives first carries the reason.
	err = transport.SessionError(err)
	var perr *protocol.Error
	if errors.As(err, &perr) {
		switch perr.Code {
		case protocol.CodeAuthFailed:
			return &Error{Kind: KindAuth, Err: perr}
		case protocol.CodeVersionMismatch:
			return &Error{Kind: KindVersion, Err: perr}
		}
		return &Error{Kind: KindOther, Err: perr}
	}
	return &Error{Kind: KindUnreachable, Err: err}
}

// bindAll binds every tunnel; after a reconnect each asks for the name it had before.
// On a reconnect, a tunnel the relay now refuses for good (its reservation was deleted,
// say) is stopped and the others carry on; the agent ends only when none is left.
func (c *Client) bindAll(ctx context.Context, cs *control, reconnect bool) error {
	var refused error
	for _, e := range c.snapshot() {
		err := c.bindOne(ctx, cs, e)
		var be *Error
		if err != nil && reconnect && errors.As(err, &be) && be.Kind == KindBind {
			c.log.Error("tunnel stopped: the relay refused it after a reconnect", "name", e.t.Name, "err", err)
			c.removeEntry(e)
			e.t.Close()
			refused = err
			continue
		}
		if err != nil {
			return err
		}
	}
	if refused != nil && len(c.snapshot()) == 0 {
		return refused
	}
	return nil
}

func (c *Client) bindOne(ctx context.Context, cs *control, e *entry) error {
	t := e.t
	b := t.Bind(e.id)
	c.mu.Lock()
	caps := c.relayCaps
	c.mu.Unlock()
	for _, need := range b.Needs() {
		if !slices.Contains(caps, need) {
			return &Error{Kind: KindBind, Err: fmt.Errorf("tunnel %s needs %s at the relay, and relay %s does not offer it: upgrade ferry-relay (the tunnel was not started, so nothing is exposed without it)", t.Name, need, c.cfg.Relay)}
		}
	}
	c.mu.Lock()
	prev := e.urls
	c.mu.Unlock()
	if len(prev) > 0 && t.Proto != protocol.ProtoLabeled { // keep the same public URL across reconnects
		b.Rebind = true
		if h, p := hostPort(prev[0]); t.Proto == protocol.ProtoTCP {
			b.RemoteAddr = net.JoinHostPort(h, p)
		} else if b.Domain == "" {
			b.Domain = h
		}
	}
	resp, err := cs.bind(ctx, b)
	if err != nil {
		return &Error{Kind: KindUnreachable, Err: fmt.Errorf("bind %s: %w", t.Name, err)}
	}
	if resp.Error != nil {
		return &Error{Kind: KindBind, Err: fmt.Errorf("tunnel %s refused by the relay: %w", t.Name, resp.Error)}
	}
	for _, w := range resp.Warnings {
		c.log.Warn(w, "tunnel", t.Name)
	}
	c.mu.Lock()
	e.urls = resp.URLs
	c.mu.Unlock()
	for _, u := range resp.URLs {
		c.log.Info("tunnel started", "name", t.Name, "url", u, "addr", t.Upstream())
	}
	if len(t.Labels) > 0 {
		c.log.Info("tunnel started", "name", t.Name, "labels", protocol.LabelString(t.Labels), "addr", t.Upstream())
	}
	return nil
}

func hostPort(u string) (string, string) {
	_, rest, _ := strings.Cut(u, "://")
	h, p, err := net.SplitHostPort(rest)
	if err != nil {
		return rest, ""
	}
	return h, p
}

// goAwayError is the relay saying it is going away (shutting down or restarting).
type goAwayError struct{ reason string }

func (e *goAwayError) Error() string { return "relay is going away: " + e.reason }

// MaxDrain bounds how long a session the relay sent away is kept for its connections in
// flight (the relay closes it sooner, when they finish or its drain times out).
const MaxDrain = 5 * time.Minute

func (c *Client) acceptLoop(ctx context.Context, sess transport.Session) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		st, err := sess.AcceptStream(ctx)
		if err != nil {
			return
		}
		wg.Go(func() { c.serveStream(ctx, st) })
	}
}

func (c *Client) serveStream(ctx context.Context, st transport.Stream) {
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := protocol.ReadStreamHeader(st)
	st.SetReadDeadline(time.Time{})
	if err != nil {
		c.log.Warn("bad stream header from relay", "err", err)
		st.Abort(protocol.CodeProtocol)
		return
	}
	c.mu.Lock()
	e := c.byID[h.TunnelID]
	c.mu.Unlock()
	if e == nil {
		resp := protocol.StreamResp{Code: protocol.CodeTunnelGone, Message: "no tunnel " + strconv.Itoa(int(h.TunnelID))}
		st.Write(resp.AppendFrame(nil)) //nolint:errcheck
		st.Close()
		return
	}
	forward.Serve(ctx, e.t, st, h, c.log)
}

func (c *Client) heartbeat(ctx context.Context, cs *control, silent chan<- error) {
	tick := time.NewTicker(c.cfg.HeartbeatInterval)
	defer tick.Stop()
	for seq := uint64(1); ; seq++ {
		if waited := cs.unanswered(); waited > c.cfg.HeartbeatTolerance {
			silent <- fmt.Errorf("the relay has not answered a heartbeat for %v (heartbeat tolerance %v)", waited.Round(time.Second), c.cfg.HeartbeatTolerance)
			return
		}
		if err := cs.ping(seq); err != nil {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// control is the agent's end of the control stream once authenticated.
type control struct {
	st      transport.Stream
	wmu     sync.Mutex
	mu      sync.Mutex
	pending map[uint32]chan *protocol.BindResp
	pings   map[uint64]time.Time
}

func (cs *control) write(t protocol.MsgType, m any) error {
	cs.wmu.Lock()
	defer cs.wmu.Unlock()
	return protocol.WriteMsg(cs.st, t, m)
}

func (cs *control) bind(ctx context.Context, b *protocol.Bind) (*protocol.BindResp, error) {
	ch := make(chan *protocol.BindResp, 1)
	cs.mu.Lock()
	cs.pending[b.TunnelID] = ch
	cs.mu.Unlock()
	if err := cs.write(protocol.TypeBind, b); err != nil {
		return nil, err
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(30 * time.Second):
		return nil, errors.New("no answer from the relay within 30s")
	}
}

// unanswered is how long the oldest heartbeat still without an answer has waited.
func (cs *control) unanswered() time.Duration {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var oldest time.Time
	for _, sent := range cs.pings {
		if oldest.IsZero() || sent.Before(oldest) {
			oldest = sent
		}
	}
	if oldest.IsZero() {
		return 0
	}
	return time.Since(oldest)
}

func (cs *control) ping(seq uint64) error {
	cs.mu.Lock()
	cs.pings[seq] = time.Now()
	cs.mu.Unlock()
	return cs.write(protocol.TypeHeartbeat, &protocol.Heartbeat{Seq: seq, Pad: protocol.HeartbeatPad})
}

func (cs *control) readLoop(c *Client) error {
	for {
		t, body, err := protocol.ReadFrame(cs.st, protocol.MaxControlFrame)
		if err != nil {
			return err
		}
		switch t {
		case protocol.TypeBindResp:
			var r protocol.BindResp
			if err := protocol.Decode(t, body, &r); err != nil {
				return err
			}
			cs.mu.Lock()
			ch := cs.pending[r.TunnelID]
			delete(cs.pending, r.TunnelID)
			cs.mu.Unlock()
			if ch != nil {
				ch <- &r
			}
		case protocol.TypeHeartbeatAck:
			var h protocol.Heartbeat
			if err := protocol.Decode(t, body, &h); err != nil {
				return err
			}
			cs.mu.Lock()
			sent, ok := cs.pings[h.Seq]
			delete(cs.pings, h.Seq)
			cs.mu.Unlock()
			if ok {
				c.rtt.Store(int64(time.Since(sent)))
			}
		case protocol.TypeHeartbeat:
			cs.wmu.Lock()
			err := protocol.WriteFrame(cs.st, protocol.TypeHeartbeatAck, body)
			cs.wmu.Unlock()
			if err != nil {
				return err
			}
		case protocol.TypeUnbindResp:
		case protocol.TypeGoAway:
			var g protocol.GoAway
			protocol.Decode(t, body, &g) //nolint:errcheck
			return &goAwayError{reason: g.Reason}
		case protocol.TypeError:
			var e protocol.Error
			if err := protocol.Decode(t, body, &e); err != nil {
				return err
			}
			return &e
		default:
			return protocol.Errorf(protocol.CodeProtocol, "unexpected %v from relay", t)
		}
	}
}
