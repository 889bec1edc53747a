// Package edge is the relay's public side: TLS on :443 dispatched by SNI (passthrough or
// termination), plain HTTP on :80 routed by Host, and one listener per tcp tunnel. It looks
// tunnels up in a route.Table and opens one agent stream per public connection.
package edge

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ferrytunnel/ferry/agent/tlsconf"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
)

// Limits on what a public client may do before it is routed.
const (
	// HelloTimeout bounds the wait for a complete ClientHello.
	HelloTimeout = 10 * time.Second
	// MaxHelloBytes bounds the bytes buffered while peeking a ClientHello.
	MaxHelloBytes = 64 << 10
	// HandshakeTimeout bounds a TLS handshake the edge terminates.
	HandshakeTimeout = 10 * time.Second
	// ReadHeaderTimeout bounds the wait for an HTTP request's headers.
	ReadHeaderTimeout = 10 * time.Second
	// MaxHeaderBytes bounds an HTTP request's headers.
	MaxHeaderBytes = 64 << 10
)

// Config configures an Edge.
type Config struct {
	Table *route.Table
	// Certificate returns the certificate the edge terminates TLS with for a name
	// (the relay's own certificate for its domain; uploaded ones later).
	Certificate func(name string) (*tls.Certificate, error)
	Log         *slog.Logger
	// TerminationConfig returns the TLS config for terminating a connection to name,
	// derived from base with the name's edge TLS settings (minimum version, client
	// CAs); nil keeps base.
	TerminationConfig func(name string, base *tls.Config) *tls.Config
	// MaxConnsPerIP bounds the open public connections of one client address (0:
	// DefaultMaxConnsPerIP; negative: no limit).
	MaxConnsPerIP int
	// Observer reports connections, requests and refusals (metrics, events); nil: none.
	Observer *route.Observer
	// Routes returns the current edges (nil func or nil Routes: none).
	Routes func() Routes
	// HTTPSPort is the public TLS port, for redirects from plain HTTP to HTTPS.
	HTTPSPort int
	// TLSOnly reports whether a name has TLS settings (mutual TLS, a minimum version)
	// that plain HTTP would bypass; such names are redirected to HTTPS.
	TLSOnly func(host string) bool
	// Challenge, when set, may take a connection whose ClientHello is an ACME TLS-ALPN-01
	// validation (it reports whether it did); it runs before routing, so passthrough
	// tunnels never see the CA's handshake.
	Challenge func(hello *sni.ClientHello, c net.Conn) bool
	// PlainHTTP, when set, wraps the plain-HTTP handler (ACME HTTP-01 answers).
	PlainHTTP func(http.Handler) http.Handler
	// Agent serves an agent that connected over TCP+TLS (ALPN ferry/1) instead of QUIC:
	// the fallback transport shares the public TLS port. It returns when the session ends.
	Agent func(net.Conn)
}

// Edge serves public connections.
type Edge struct {
	cfg      Config
	log      *slog.Logger
	conns    connSet
	slots    transport.Slots // each public HTTP/1 connection's own stream to its agent
	https    *http.Server    // serves HTTP over TLS connections the edge terminated
	httpsLn  *transport.ConnQueue
	plain    *http.Server         // serves plain HTTP on the HTTP address
	tlsHTTP  *tls.Config          // termination config for http tunnels (h2 + http/1.1)
	tlsPlain *tls.Config          // termination config for tls tunnels (no ALPN preference)
	plainLn  *transport.ConnQueue // plain HTTP connections the lean path handed over
	lean     leanConns            // connections on the lean HTTP/1.1 path (lean.go)
	wg       sync.WaitGroup
	ipLimit  *ipLimiter // nil: no per-address limit
}

// New returns an Edge. Call Close when done.
func New(cfg Config) *Edge {
	e := &Edge{cfg: cfg, log: cfg.Log, httpsLn: transport.NewConnQueue(), plainLn: transport.NewConnQueue()}
	if n := cmp.Or(cfg.MaxConnsPerIP, DefaultMaxConnsPerIP); n > 0 {
		e.ipLimit = &ipLimiter{max: n, open: make(map[string]int), logged: make(map[string]time.Time)}
	}
	getCert := func(hi *tls.ClientHelloInfo) (*tls.Certificate, error) {
		return cfg.Certificate(sni.Normalize(hi.ServerName))
	}
	e.tlsHTTP = &tls.Config{GetCertificate: getCert, NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS12}
	e.tlsPlain = &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}
	h := http.HandlerFunc(e.serveHTTP)
	e.https = e.newHTTPServer(h)
	var plain http.Handler = h
	if cfg.PlainHTTP != nil {
		plain = cfg.PlainHTTP(h)
	}
	e.plain = e.newHTTPServer(plain)
	e.wg.Go(func() { e.https.Serve(e.httpsLn) }) //nolint:errcheck // ends with Close
	e.wg.Go(func() { e.plain.Serve(e.plainLn) }) //nolint:errcheck
	return e
}

func (e *Edge) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(e.log.Handler(), slog.LevelDebug),
		ConnContext:       e.connContext,
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				e.conns.add(c)
			case http.StateHijacked, http.StateClosed:
				e.conns.remove(c)
				e.slots.End(c)
			}
		},
	}
}

// MutualTLSConfig returns the termination config that requires client certificates
// signed by pool (edge mTLS), built once per tunnel.
func (e *Edge) MutualTLSConfig(pool *x509.CertPool) *tls.Config {
	return tlsconf.RequireClientCerts(e.tlsPlain, pool)
}

// ServeHTTPS accepts public TLS connections on ln until ln is closed.
func (e *Edge) ServeHTTPS(ln net.Listener) error {
	return e.acceptLoop(e.limit(ln), e.handleTLS)
}

// ServeHTTP serves plain HTTP on ln until ln is closed.
func (e *Edge) ServeHTTP(ln net.Listener) error {
	return e.acceptLoop(e.limit(ln), func(c net.Conn) {
		e.serveLean(c, e.countHTTP(c, "http"), nil, e.plainLn)
	})
}

// ServeTCP accepts public connections for one tcp tunnel until ln is closed.
func (e *Edge) ServeTCP(ln net.Listener, t *route.Tunnel) error {
	return e.acceptLoop(e.limit(ln), func(c net.Conn) {
		if !t.IPPolicy.Allows(c.RemoteAddr().String()) {
			t.Log.Info("refused connection", "remote", c.RemoteAddr(), "reason", "client address not allowed by the tunnel's CIDR rules")
			e.cfg.Observer.Rejected("ip_policy")
			c.Close()
			return
		}
		st, err := t.Dial(context.Background(), protocol.StreamTCP, c.RemoteAddr().String(), "")
		if err != nil {
			t.Log.Warn("open stream to agent", "remote", c.RemoteAddr(), "err", err)
			c.Close()
			return
		}
		e.join(c, st, t)
	})
}

func (e *Edge) acceptLoop(ln net.Listener, handle func(net.Conn)) error {
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Temporary failure (e.g. out of file descriptors): back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			e.log.Warn("accept", "addr", ln.Addr(), "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		e.conns.add(c)
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer e.conns.remove(c)
			defer func() {
				if r := recover(); r != nil {
					e.log.Error("panic in connection handler", "remote", c.RemoteAddr(), "panic", r)
					c.Close()
				}
			}()
			handle(c)
		}()
	}
}

// handleTLS peeks the ClientHello and dispatches on SNI.
func (e *Edge) handleTLS(raw net.Conn) {
	hello, c, err := sni.Peek(raw, HelloTimeout, MaxHelloBytes)
	remote := raw.RemoteAddr().String()
	if err != nil {
		e.log.Info("refused TLS connection", "remote", remote, "reason", err)
		switch {
		case errors.Is(err, sni.ErrNotTLS):
			// Most often plain HTTP sent to the TLS port: say so instead of a silent close.
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"+ //nolint:errcheck // best effort
				"This port speaks TLS: use https:// (plain http:// has its own port on this relay).\n")
		default:
			sni.WriteAlert(c, sni.AlertHandshakeFailure) //nolint:errcheck // best effort before close
		}
		c.Close()
		return
	}
	if e.cfg.Challenge != nil && e.cfg.Challenge(hello, c) {
		return
	}
	if e.cfg.Agent != nil && (slices.Contains(hello.ALPN, protocol.ALPN) || slices.Contains(hello.ALPN, protocol.DataALPN)) {
		unlimit(raw)        // agents are not public clients; the session server has its own limits
		e.conns.remove(raw) // nor do they count as public connections to drain
		e.cfg.Agent(c)
		return
	}
	name := hello.ServerName
	if name == "" {
		e.log.Info("refused TLS connection", "remote", remote, "reason", "no SNI in ClientHello; ferry routes TLS by server name, so the client must send SNI")
		sni.WriteAlert(c, sni.AlertUnrecognizedName) //nolint:errcheck
		c.Close()
		return
	}
	if e.serveEdge(c, name, remote) {
		return
	}
	t := e.cfg.Table.Host(name)
	if t == nil {
		e.log.Info("refused TLS connection", "remote", remote, "sni", name, "reason", "no tunnel is bound to this name")
		sni.WriteAlert(c, sni.AlertUnrecognizedName) //nolint:errcheck
		c.Close()
		return
	}
	if !t.IPPolicy.Allows(remote) {
		t.Log.Info("refused TLS connection", "remote", remote, "sni", name, "reason", "client address not allowed by the tunnel's CIDR rules")
		e.cfg.Observer.Rejected("ip_policy")
		sni.WriteAlert(c, sni.AlertAccessDenied) //nolint:errcheck
		c.Close()
		return
	}
	switch {
	case t.Proto == protocol.ProtoHTTP:
		tc := tls.Server(e.countHTTP(c, "https"), e.termination(name, e.tlsHTTP))
		if !e.handshake(tc, t, remote) {
			return
		}
		if st := tc.ConnectionState(); st.NegotiatedProtocol != "h2" {
			e.serveLean(raw, tc, &st, e.httpsLn)
			return
		}
		e.conns.remove(raw) // the HTTPS server tracks it from here
		if !e.httpsLn.Push(tc) {
			tc.Close()
		}
	case t.TerminateAt == protocol.TerminateEdge:
		conf := e.tlsPlain
		if t.ClientCAs != nil {
			conf = t.EdgeTLS // built once at bind
		}
		tc := tls.Server(c, e.termination(name, conf))
		if !e.handshake(tc, t, remote) {
			return
		}
		st, err := t.Dial(context.Background(), protocol.StreamTLSTerminated, remote, name)
		if err != nil {
			t.Log.Warn("open stream to agent", "remote", remote, "err", err)
			tc.Close()
			return
		}
		e.join(tc, st, t)
	default: // passthrough: the agent or the upstream terminates
		st, err := t.Dial(context.Background(), protocol.StreamTLS, remote, name)
		if err != nil {
			t.Log.Warn("open stream to agent", "remote", remote, "err", err)
			c.Close()
			return
		}
		e.join(c, st, t)
	}
}

// routes returns the current edges, or nil.
func (e *Edge) routes() Routes {
	if e.cfg.Routes == nil {
		return nil
	}
	return e.cfg.Routes()
}

// serveEdge serves a TLS connection to name if an HTTPS or TLS edge owns the name.
func (e *Edge) serveEdge(c net.Conn, name, remote string) bool {
	rs := e.routes()
	if rs == nil {
		return false
	}
	name = sni.Normalize(name)
	if rs.HTTPS(name) != nil {
		tc := tls.Server(e.countHTTP(c, "https"), e.termination(name, e.tlsHTTP))
		ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
		defer cancel()
		if err := tc.HandshakeContext(ctx); err != nil {
			e.log.Info("TLS handshake failed", "remote", remote, "sni", name, "err", err)
			e.countRefusal(err)
			tc.Close()
			return true
		}
		e.conns.remove(c)
		if !e.httpsLn.Push(tc) {
			tc.Close()
		}
		return true
	}
	b := rs.TLS(name)
	if b == nil {
		return false
	}
	if !b.IPPolicy.Allows(remote) {
		b.Log.Info("refused TLS connection", "remote", remote, "sni", name, "reason", "client address not allowed by the edge's IP restriction")
		e.cfg.Observer.Rejected("ip_policy")
		sni.WriteAlert(c, sni.AlertAccessDenied) //nolint:errcheck
		c.Close()
		return true
	}
	if b.TerminateAt != protocol.TerminateEdge {
		e.serveBackend(c, b, protocol.StreamTLS, name)
		return true
	}
	tc := tls.Server(c, e.termination(name, e.tlsPlain))
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		b.Log.Info("TLS handshake failed", "remote", remote, "sni", name, "err", err)
		e.countRefusal(err)
		tc.Close()
		return true
	}
	e.serveBackend(tc, b, protocol.StreamTLSTerminated, name)
	return true
}

func (e *Edge) termination(name string, base *tls.Config) *tls.Config {
	if e.cfg.TerminationConfig == nil {
		return base
	}
	return e.cfg.TerminationConfig(sni.Normalize(name), base)
}

func (e *Edge) handshake(tc *tls.Conn, t *route.Tunnel, remote string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), HandshakeTimeout)
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		t.Log.Info("TLS handshake failed", "remote", remote, "err", err)
		e.countRefusal(err)
		tc.Close()
		return false
	}
	return true
}

// countRefusal counts a failed edge handshake that a module refused: mutual TLS (a
// missing or unverified client certificate) or the minimum TLS version.
func (e *Edge) countRefusal(err error) {
	var cce *tlsconf.ClientCertError
	switch {
	case errors.As(err, &cce),
		// crypto/tls's own words when a TLS 1.3 client sends no certificate at all
		// (RequireAnyClientCert); it has no error type for it.
		strings.Contains(err.Error(), "didn't provide a certificate"):
		e.cfg.Observer.Rejected("mutual_tls")
	case strings.Contains(err.Error(), "unsupported versions"):
		e.cfg.Observer.Rejected("tls_version")
	}
}

func (e *Edge) join(c net.Conn, st transport.Stream, t *route.Tunnel) {
	url := ""
	if len(t.URLs) > 0 {
		url = t.URLs[0]
	}
	done := e.cfg.Observer.Conn(t.Proto, t.AccountID, t.PublicID, url, c.RemoteAddr().String(), t.Host)
	in, out := transport.Join(c, st)
	done(in, out)
	t.Log.Debug("connection closed", "remote", c.RemoteAddr(), "bytes_in", in, "bytes_out", out)
}

// Drain lets the connections in flight finish, until ctx ends: the HTTP servers finish
// their requests (idle keep-alive connections close), joined connections run until either
// side closes. New connections must already be refused (the caller closed the
// listeners). It reports whether everything finished before ctx ended.
func (e *Edge) Drain(ctx context.Context) bool {
	var wg sync.WaitGroup
	e.lean.drain()
	wg.Go(func() { e.https.Shutdown(ctx) }) //nolint:errcheck // ctx ending is the answer
	wg.Go(func() { e.plain.Shutdown(ctx) }) //nolint:errcheck
	e.httpsLn.Close()
	e.plainLn.Close()
	wg.Wait()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for e.conns.len() > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return false
		}
	}
	return true
}

// Close stops the HTTP servers and closes every public connection, then waits for the
// connection goroutines to end. Listeners are the caller's to close.
func (e *Edge) Close() {
	e.plain.Close()
	e.https.Close()
	e.httpsLn.Close()
	e.plainLn.Close()
	e.conns.closeAll()
	e.wg.Wait()
}

// connSet tracks open public connections so Close can end them.
type connSet struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (s *connSet) add(c net.Conn) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[net.Conn]struct{})
	}
	s.m[c] = struct{}{}
	s.mu.Unlock()
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *connSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	for c := range s.m {
		c.Close()
	}
	s.mu.Unlock()
}
