// Package server assembles a ferry relay: the QUIC listener for agents, the public
// HTTPS (SNI dispatch) and HTTP listeners, the route table, and the session server.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/cert"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/edge"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/session"
	"github.com/ferrytunnel/ferry/relay/store"
)

// Options configures a Server.
type Options struct {
	Config config.Config
	// Certificate, when set, is used instead of loading Config.TLSCert/TLSKey (tests).
	Certificate *tls.Certificate
	// DevCA, when set, issues a certificate for each name the edge terminates (dev mode:
	// browsers and curl refuse a *.localhost wildcard, so every name gets its own leaf).
	DevCA *cert.DevCA
	// Auth verifies authtokens; nil opens the token store in Config.Data.
	Auth    session.Authenticator
	Log     *slog.Logger
	Version string
	// Capabilities overrides what the relay advertises to agents (tests: an older relay).
	Capabilities []string
}

// Server is one relay. Listen binds its sockets; Serve runs it until its context ends.
type Server struct {
	opts  Options
	log   *slog.Logger
	cert  *tls.Certificate
	table *route.Table
	edge  *edge.Edge

	devCerts     sync.Map // name → *tls.Certificate, issued by DevCA
	devCertCount atomic.Int64

	quicLn  *transport.QUICListener
	httpsLn net.Listener
	httpLn  net.Listener
}

// New checks the options and loads the relay's certificate.
func New(opts Options) (*Server, error) {
	if err := opts.Config.Validate(); err != nil && opts.Certificate == nil {
		return nil, err
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	s := &Server{opts: opts, log: opts.Log, table: route.NewTable(), cert: opts.Certificate}
	if s.cert == nil {
		c, err := cert.LoadKeyPair(opts.Config.TLSCert, opts.Config.TLSKey, "--tls-cert", "--tls-key")
		if err != nil {
			return nil, err
		}
		s.cert = &c
	}
	if s.opts.Auth == nil {
		tokens, err := store.OpenTokens(opts.Config.Data)
		if err != nil {
			return nil, err
		}
		s.opts.Auth = tokens
	}
	return s, nil
}

// Listen binds the QUIC, HTTPS and HTTP sockets. An address in use is an error naming the flag.
func (s *Server) Listen() error {
	c := &s.opts.Config
	tlsConf := &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS13}
	var err error
	if s.quicLn, err = transport.ListenQUIC(c.QUICAddr, tlsConf); err != nil {
		return fmt.Errorf("--quic-addr %s: %w", c.QUICAddr, err)
	}
	if c.HTTPSAddr != "" {
		if s.httpsLn, err = net.Listen("tcp", c.HTTPSAddr); err != nil {
			s.closeListeners(true)
			return fmt.Errorf("--https-addr %s: %w", c.HTTPSAddr, err)
		}
	}
	if c.HTTPAddr != "" {
		if s.httpLn, err = net.Listen("tcp", c.HTTPAddr); err != nil {
			s.closeListeners(true)
			return fmt.Errorf("--http-addr %s: %w", c.HTTPAddr, err)
		}
	}
	return nil
}

// QUICAddr, HTTPSAddr and HTTPAddr return the bound addresses (after Listen).
func (s *Server) QUICAddr() net.Addr { return s.quicLn.Addr() }

// HTTPSAddr returns the bound public TLS address, or nil.
func (s *Server) HTTPSAddr() net.Addr { return addrOf(s.httpsLn) }

// HTTPAddr returns the bound public HTTP address, or nil.
func (s *Server) HTTPAddr() net.Addr { return addrOf(s.httpLn) }

// Table returns the route table (for tests and metrics).
func (s *Server) Table() *route.Table { return s.table }

func addrOf(ln net.Listener) net.Addr {
	if ln == nil {
		return nil
	}
	return ln.Addr()
}

func portOf(a net.Addr) int {
	if a == nil {
		return 0
	}
	_, p, _ := net.SplitHostPort(a.String())
	n, _ := strconv.Atoi(p)
	return n
}

// closeListeners closes the public TCP listeners and, with quic, the QUIC listener too.
func (s *Server) closeListeners(quic bool) {
	for _, ln := range []net.Listener{s.httpsLn, s.httpLn} {
		if ln != nil {
			ln.Close()
		}
	}
	if quic && s.quicLn != nil {
		s.quicLn.Close()
	}
}

// Serve runs the relay until ctx ends, then closes every listener, session and public
// connection, and returns after all of its goroutines have ended.
func (s *Server) Serve(ctx context.Context) error {
	c := &s.opts.Config
	ports, err := config.ParsePorts(c.TCPPorts)
	if err != nil {
		return err
	}
	tcpHost := c.TCPHost()
	var sessions *session.Server
	agentTLS := &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN}}
	s.edge = edge.New(edge.Config{Table: s.table, Certificate: s.certificate, Log: s.log,
		Agent: func(c net.Conn) { s.serveTCPAgent(ctx, sessions, c, agentTLS) }})
	sessions = session.NewServer(session.Config{
		Table: s.table, Edge: s.edge, Auth: s.opts.Auth, Domain: c.Domain,
		HTTPSPort: portOf(s.HTTPSAddr()), HTTPPort: portOf(s.HTTPAddr()),
		TCPHost: tcpHost, TCPPorts: ports,
		HasCert: func(name string) bool { return s.opts.DevCA != nil || session.CertCovers(s.cert, name) },
		Version: s.opts.Version, Log: s.log, Capabilities: s.opts.Capabilities,
	})

	var wg sync.WaitGroup
	if s.httpsLn != nil {
		wg.Go(func() { s.edge.ServeHTTPS(s.httpsLn) }) //nolint:errcheck // ends on Close
	}
	if s.httpLn != nil {
		wg.Go(func() { s.edge.ServeHTTP(s.httpLn) }) //nolint:errcheck
	}
	wg.Go(func() {
		for {
			qc, err := s.quicLn.Accept(ctx)
			if err != nil {
				return
			}
			wg.Go(func() { sessions.Serve(ctx, transport.NewQUICSession(qc)) }) //nolint:errcheck // logged inside
		}
	})
	s.log.Info("relay started", "quic", s.QUICAddr(), "https", s.HTTPSAddr(), "http", s.HTTPAddr(),
		"domain", c.Domain, "tcp_ports", c.TCPPorts)
	<-ctx.Done()
	s.log.Info("relay shutting down")
	// Stop accepting, end public connections, let each session tell its agent (GoAway and
	// a shutting_down close), and only then close the QUIC socket.
	s.quicLn.Listener.Close()
	s.closeListeners(false)
	s.edge.Close()
	wg.Wait()
	s.quicLn.Close()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// serveTCPAgent runs an agent session over the TCP fallback transport.
func (s *Server) serveTCPAgent(ctx context.Context, sessions *session.Server, c net.Conn, conf *tls.Config) {
	tc := tls.Server(c, conf)
	hctx, cancel := context.WithTimeout(ctx, session.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		s.log.Info("agent TLS handshake failed", "remote", c.RemoteAddr(), "transport", "tcp", "err", err)
		c.Close()
		return
	}
	sess, err := transport.NewTCPSession(tc, true)
	if err != nil {
		tc.Close()
		return
	}
	sessions.Serve(ctx, sess) //nolint:errcheck // logged inside
	tc.Close()
}

// maxDevCerts bounds the dev certificate cache.
const maxDevCerts = 1000

// certificate returns the certificate for terminating TLS for name.
func (s *Server) certificate(name string) (*tls.Certificate, error) {
	if s.opts.DevCA == nil || name == "" {
		return s.cert, nil
	}
	if c, ok := s.devCerts.Load(name); ok {
		return c.(*tls.Certificate), nil
	}
	// Only names bound to a tunnel reach here, so the cache is bounded by the route table.
	c, err := s.opts.DevCA.Issue([]string{name}, nil)
	if err != nil {
		return nil, fmt.Errorf("dev CA: issue certificate for %s: %w", name, err)
	}
	if s.devCertCount.Add(1) > maxDevCerts { // random names come and go: start the cache afresh
		s.devCerts.Clear()
		s.devCertCount.Store(1)
	}
	actual, _ := s.devCerts.LoadOrStore(name, &c)
	return actual.(*tls.Certificate), nil
}
