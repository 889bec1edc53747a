// Package server assembles a ferry relay: the QUIC listener for agents, the public
// HTTPS (SNI dispatch) and HTTP listeners, the route table, and the session server.
package server

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/agent/tlsconf"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/acme"
	"github.com/ferrytunnel/ferry/relay/api"
	"github.com/ferrytunnel/ferry/relay/cert"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/edge"
	"github.com/ferrytunnel/ferry/relay/events"
	"github.com/ferrytunnel/ferry/relay/metrics"
	"github.com/ferrytunnel/ferry/relay/module/oauth"
	"github.com/ferrytunnel/ferry/relay/reserve"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/router"
	"github.com/ferrytunnel/ferry/relay/session"
	"github.com/ferrytunnel/ferry/relay/sni"
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
	// Store holds accounts, credentials, reservations and certificates; nil opens
	// Config.Database (SQLite in Config.Data by default), closed with the server.
	Store *store.Store
	// Auth verifies authtokens; nil checks them against Store's credentials.
	Auth    session.Authenticator
	Log     *slog.Logger
	Version string
	// Capabilities overrides what the relay advertises to agents (tests: an older relay).
	Capabilities []string
}

// Server is one relay. Listen binds its sockets; Serve runs it until its context ends.
type Server struct {
	opts     Options
	sessions atomic.Pointer[session.Server] // set by Serve (the API revokes credentials through it)
	log      *slog.Logger
	cert     *tls.Certificate
	table    *route.Table
	edge     *edge.Edge

	store      *store.Store
	ownStore   bool
	keybox     *cert.Keybox
	domains    *reserve.Domains
	addrs      *reserve.Addrs
	uploaded   sync.Map // certificate id → *tls.Certificate, opened from the store
	tlsConfs   sync.Map // termination config key → *tls.Config with a domain's TLS settings
	apiLn      net.Listener
	apiServer  *http.Server
	acme       *acme.Manager // nil without --acme-email
	acmeDNS    net.Addr      // where the challenge zone is served (--dns-addr), or nil
	router     router.Router
	observer   *route.Observer
	saml       samlKey
	breakers   sync.Map     // route circuit breakers, kept across edge recompiles
	authClient *http.Client // for OAuth/OIDC providers, with --oauth-ca-roots
	metricsLn  net.Listener
	tcpEdges   map[int]net.Listener // listeners of TCP edges, by port
	edgeMu     sync.Mutex           // serialises recompiles and TCP edge listeners

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
	if err := s.openStore(); err != nil {
		return nil, err
	}
	if f := opts.Config.OAuthCARoots; f != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		data, err := os.ReadFile(f)
		if err != nil || !pool.AppendCertsFromPEM(data) {
			s.closeStore()
			return nil, fmt.Errorf("--oauth-ca-roots %s: want a readable PEM file of CA certificates (%v)", f, err)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		s.authClient = &http.Client{Transport: tr, Timeout: 15 * time.Second}
	}
	return s, nil
}

// openStore opens the database and the secret key, and loads the reservations into memory.
func (s *Server) openStore() error {
	c := &s.opts.Config
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s.store = s.opts.Store
	if s.store == nil {
		st, err := store.Open(ctx, c.Database, c.Data)
		if err != nil {
			return err
		}
		s.store, s.ownStore = st, true
	}
	// A key file the operator names must exist (a typo must not mint a new key that
	// cannot open the stored certificates); the default one is created on first start.
	keyFile := c.SecretKeyFile
	var kb *cert.Keybox
	var created bool
	var err error
	if keyFile != "" {
		kb, err = cert.LoadKeybox(keyFile)
	} else {
		keyFile = filepath.Join(c.Data, cert.SecretKeyFile)
		kb, created, err = cert.OpenOrCreateKeybox(keyFile)
	}
	if err != nil {
		s.closeStore()
		return fmt.Errorf("--secret-key-file: %w", err)
	}
	if created {
		// A new key cannot open keys sealed with a lost one: refuse rather than serve
		// the wrong certificates.
		certs, err := s.store.AllTLSCertificates(ctx)
		if err == nil && len(certs) > 0 {
			os.Remove(keyFile)
			s.closeStore()
			return fmt.Errorf("secret key %s was missing, but the database holds %d uploaded certificates sealed with it: restore that file from your backup (or pass --secret-key-file with the right key); the relay will not start without it", keyFile, len(certs))
		}
		s.log.Info("created the secret key that encrypts uploaded private keys; back it up with the database", "file", keyFile)
	}
	s.keybox = kb
	s.domains = reserve.NewDomains(c.Domain)
	s.addrs = reserve.NewAddrs()
	if err := s.loadReservations(ctx); err != nil {
		s.closeStore()
		return err
	}
	if s.opts.Auth == nil {
		s.opts.Auth = credentials{s.store}
	}
	return nil
}

func (s *Server) loadReservations(ctx context.Context) error {
	ds, err := s.store.AllReservedDomains(ctx)
	if err != nil {
		return fmt.Errorf("load reserved domains: %w", err)
	}
	rs := make([]reserve.Reservation, len(ds))
	for i, d := range ds {
		rs[i] = api.Reservation(d)
	}
	s.domains.Replace(rs)
	as, err := s.store.AllReservedAddrs(ctx)
	if err != nil {
		return fmt.Errorf("load reserved addresses: %w", err)
	}
	ra := make([]reserve.Addr, len(as))
	for i, a := range as {
		ra[i] = api.AddrReservation(a)
	}
	s.addrs.Replace(ra)
	return nil
}

// Reload reads the reservations from the store again and drops cached certificates (for
// changes made to the store behind the management API's back, such as tests or a second
// relay sharing a PostgreSQL database).
func (s *Server) Reload(ctx context.Context) error {
	s.dropCaches()
	return s.loadReservations(ctx)
}

func (s *Server) closeStore() {
	if s.ownStore {
		s.store.Close()
	}
}

// Store returns the relay's store (for tests and the command line).
func (s *Server) Store() *store.Store { return s.store }

// credentials checks agents' authtokens against the store.
type credentials struct{ st *store.Store }

func (c credentials) Verify(token string) (session.Account, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cr, err := c.st.VerifyCredential(ctx, token)
	if err != nil {
		return session.Account{}, err
	}
	a, err := c.st.GetAccount(ctx, cr.AccountID)
	if err != nil {
		return session.Account{}, err
	}
	return session.Account{ID: a.ID, Name: a.Name, CredentialID: cr.ID}, nil
}

// Listen binds the QUIC, HTTPS, HTTP and API sockets. An address in use is an error
// naming the flag; after an error the server is closed (its store too).
func (s *Server) Listen() (err error) {
	defer func() {
		if err != nil {
			s.closeStore()
		}
	}()
	c := &s.opts.Config
	// Event files go in --events-dir: make it now, or refuse to start, rather than accept
	// file subscriptions whose every write would fail.
	if c.EventsDir != "" {
		if err := os.MkdirAll(c.EventsDir, 0o700); err != nil {
			return fmt.Errorf("--events-dir %s: %w (create it, or pass a directory the relay can write)", c.EventsDir, err)
		}
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS13}
	if s.quicLn, err = transport.ListenQUIC(c.QUICAddr, tlsConf, s.keybox.DeriveKey("quic stateless reset")); err != nil {
		return fmt.Errorf("--quic-addr %s: %w", c.QUICAddr, err)
	}
	if p := s.quicLn.BufferProblem(); p != "" {
		s.log.Warn("QUIC socket buffers are small", "addr", c.QUICAddr, "detail", p)
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
	if c.MetricsAddr != "" {
		if s.metricsLn, err = net.Listen("tcp", c.MetricsAddr); err != nil {
			s.closeListeners(true)
			return fmt.Errorf("--metrics-addr %s: %w", c.MetricsAddr, err)
		}
	}
	if c.APIAddr != "" {
		if s.apiLn, err = net.Listen("tcp", c.APIAddr); err != nil {
			s.closeListeners(true)
			return fmt.Errorf("--api-addr %s: %w (another relay running? pass --api-addr HOST:PORT, or an empty value to turn the API off)", c.APIAddr, err)
		}
	}
	// The ACME manager needs the bound HTTP and HTTPS ports, and binds --dns-addr.
	if err = s.startACME(); err != nil {
		s.closeListeners(true)
		return err
	}
	return nil
}

// ACMEDNSAddr returns where the ACME challenge zone is served (--dns-addr; UDP, and TCP on the
// same port) after Listen, or nil.
func (s *Server) ACMEDNSAddr() net.Addr { return s.acmeDNS }

// MetricsAddr returns the bound metrics address, or nil.
func (s *Server) MetricsAddr() net.Addr { return addrOf(s.metricsLn) }

// APIAddr returns the bound management API address, or nil.
func (s *Server) APIAddr() net.Addr { return addrOf(s.apiLn) }

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
	for _, ln := range []net.Listener{s.httpsLn, s.httpLn, s.apiLn, s.metricsLn} {
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
		if s.acme != nil {
			s.acme.Close()
		}
		return err
	}
	tcpHost := c.TCPHost()
	var sessions *session.Server
	agentTLS := &tls.Config{Certificates: []tls.Certificate{*s.cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{protocol.ALPN, protocol.DataALPN}}
	var challenge func(*sni.ClientHello, net.Conn) bool
	var plainHTTP func(http.Handler) http.Handler
	if m := s.acme; m != nil {
		challenge = func(h *sni.ClientHello, c net.Conn) bool {
			if !acme.IsTLSALPN(h.ServerName, h.ALPN) {
				return false
			}
			if err := m.ServeTLSALPN(c); err != nil {
				s.log.Debug("ACME TLS-ALPN-01 validation", "remote", c.RemoteAddr(), "err", err)
			}
			return true
		}
		plainHTTP = m.HTTPHandler
	}
	s.startObserver()
	// Sessions outlive ctx by the drain: agents are told to go away, and their sessions
	// carry the connections in flight until those finish or the drain times out.
	sessCtx, stopSessions := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopSessions(nil)
	s.edge = edge.New(edge.Config{Table: s.table, Certificate: s.certificate, Log: s.log, TerminationConfig: s.terminationConfig,
		Observer: s.observer, MaxConnsPerIP: c.MaxConnsPerIP,
		Challenge: challenge, PlainHTTP: plainHTTP, HTTPSPort: portOf(s.HTTPSAddr()), TLSOnly: s.tlsOnly,
		Routes: func() edge.Routes {
			if snap := s.router.Current(); snap != nil {
				return snap
			}
			return nil
		},
		Agent: func(c net.Conn) { s.serveTCPAgent(sessCtx, sessions, c, agentTLS) }})
	sessions = session.NewServer(session.Config{
		Table: s.table, Edge: s.edge, Auth: s.opts.Auth, Domain: c.Domain, Domains: s.domains, Addrs: s.addrs,
		HTTPSPort: portOf(s.HTTPSAddr()), HTTPPort: portOf(s.HTTPAddr()),
		TCPHost: tcpHost, TCPPorts: ports,
		HasCert: s.hasCert,
		Version: s.opts.Version, Log: s.log, Capabilities: s.opts.Capabilities, Observer: s.observer,
		OAuth: s.tunnelOAuth, MaxTunnelsPerAccount: c.MaxTunnelsPerAccount, AgentSilence: c.Silence(),
		MaxStreamsPerAccount: c.MaxStreamsPerAccount,
		PortFreed: func(port int) {
			// A TCP edge created while a tunnel held its port starts serving now.
			if snap := s.router.Current(); snap != nil && snap.TCP(port) != nil {
				s.edgeMu.Lock()
				s.syncTCPEdges(tcpHost, snap)
				s.edgeMu.Unlock()
			}
		},
		EdgeServes: func(name string) bool {
			snap := s.router.Current()
			return snap.HTTPS(name) != nil || snap.TLS(name) != nil
		},
	})
	s.sessions.Store(sessions)

	var wg sync.WaitGroup
	wg.Go(func() { s.followStore(ctx, tcpHost, sessions) })
	if s.httpsLn != nil {
		wg.Go(func() { s.edge.ServeHTTPS(s.httpsLn) }) //nolint:errcheck // ends on Close
	}
	if s.httpLn != nil {
		wg.Go(func() { s.edge.ServeHTTP(s.httpLn) }) //nolint:errcheck
	}
	var metricsServer *http.Server
	if s.metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("/metrics", s.observer.Metrics.Handler())
		metricsServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() { metricsServer.Serve(s.metricsLn) }) //nolint:errcheck // ends with Close
	}
	if s.apiLn != nil {
		s.apiServer = s.newAPIServer(ports, tcpHost)
		wg.Go(func() { s.apiServer.Serve(s.apiLn) }) //nolint:errcheck // ends with Close
	}
	wg.Go(func() {
		for {
			qc, err := s.quicLn.Accept(ctx)
			if err != nil {
				return
			}
			wg.Go(func() { sessions.Serve(sessCtx, transport.NewQUICSession(qc)) }) //nolint:errcheck // logged inside
		}
	})
	s.manageReserved()
	s.compileEdges(tcpHost)
	s.log.Info("relay started", "quic", s.QUICAddr(), "https", s.HTTPSAddr(), "http", s.HTTPAddr(), "api", s.APIAddr(),
		"domain", c.Domain, "tcp_ports", c.TCPPorts)
	if q, h := portOf(s.QUICAddr()), portOf(s.HTTPSAddr()); s.httpsLn != nil && q != h {
		// An agent's --relay names one port for both transports.
		s.log.Warn("agents reach QUIC and the TCP fallback on different ports: an agent's --relay HOST:PORT uses one port for both, so agents on QUIC must use the first and agents with --transport tcp the second (--transport auto falls back only on the same port); give --quic-addr and --https-addr the same port to avoid this",
			"quic_port", q, "https_port", h)
	}
	<-ctx.Done()
	drain := c.Drain()
	s.log.Info("relay shutting down", "drain_timeout", drain)
	// Stop accepting, tell agents to go away, let connections in flight finish (up to the
	// drain timeout), end the rest and the sessions, and only then close the QUIC socket.
	s.quicLn.Listener.Close()
	s.closeListeners(false)
	s.edgeMu.Lock()
	for p, ln := range s.tcpEdges {
		ln.Close()
		delete(s.tcpEdges, p)
	}
	s.edgeMu.Unlock()
	if s.apiServer != nil {
		s.apiServer.Close()
	}
	if metricsServer != nil {
		metricsServer.Close()
	}
	if drain > 0 {
		s.table.RemoveAll() // no new public connection is routed, tcp tunnel ports close
		sessions.GoAwayAll("relay shutting down")
		dctx, cancel := context.WithTimeout(context.Background(), drain)
		if s.edge.Drain(dctx) {
			s.log.Info("connections in flight finished")
		} else {
			s.log.Warn("drain timeout: closing the connections still open", "drain_timeout", drain)
		}
		cancel()
	}
	stopSessions(context.Cause(ctx))
	s.edge.Close()
	wg.Wait()
	s.quicLn.Close()
	if s.acme != nil {
		s.acme.Close()
	}
	ctxClose, cancelClose := context.WithTimeout(context.Background(), 5*time.Second)
	s.observer.Events.Close(ctxClose) //nolint:errcheck // what is left is counted as dropped
	cancelClose()
	s.closeStore()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// serveTCPAgent runs an agent session over the TCP fallback transport.
func (s *Server) serveTCPAgent(ctx context.Context, sessions *session.Server, c net.Conn, conf *tls.Config) {
	tc := tls.Server(transport.BatchWrites(c), conf)
	hctx, cancel := context.WithTimeout(ctx, session.HandshakeTimeout)
	err := tc.HandshakeContext(hctx)
	cancel()
	if err != nil {
		level := slog.LevelInfo
		if errors.Is(err, io.EOF) { // closed before a word was said: an agent's spare data connection as its session ended
			level = slog.LevelDebug
		}
		s.log.Log(ctx, level, "agent TLS handshake failed", "remote", c.RemoteAddr(), "transport", "tcp", "err", err)
		c.Close()
		return
	}
	if tc.ConnectionState().NegotiatedProtocol == protocol.DataALPN {
		sessions.JoinData(tc)
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

// certificate returns the certificate for terminating TLS for name: the one uploaded and
// attached to the reserved domain covering name, else the relay's own (or, in dev mode,
// one the dev CA issues).
func (s *Server) certificate(name string) (*tls.Certificate, error) {
	if c := s.reservedCert(name); c != nil {
		return c, nil
	}
	if s.acme != nil {
		if r, ok := s.domains.Lookup(name); ok && r.Managed {
			if c, ok := s.acme.Certificate(name); ok {
				return c, nil
			}
		}
	}
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

// reservedCert returns the certificate attached to the reservation covering name, or nil.
// Attaching or detaching takes effect on the next handshake: the reservation is looked
// up every time and only the opened certificate is cached.
func (s *Server) reservedCert(name string) *tls.Certificate {
	r, ok := s.domains.Lookup(name)
	if !ok || r.CertificateID == "" {
		return nil
	}
	if c, ok := s.uploaded.Load(r.CertificateID); ok {
		return c.(*tls.Certificate)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rec, err := s.store.GetTLSCertificate(ctx, r.AccountID, r.CertificateID)
	if err != nil {
		s.log.Error("load attached certificate", "domain", r.Domain, "certificate_id", r.CertificateID, "err", err)
		return nil
	}
	c, err := cert.LoadSealed(rec.CertificatePEM, rec.SealedKey, s.keybox)
	if err != nil {
		s.log.Error("open attached certificate", "domain", r.Domain, "certificate_id", r.CertificateID, "err", err)
		return nil
	}
	s.uploaded.Store(r.CertificateID, c)
	if s.observer != nil && c.Leaf != nil {
		s.observer.Metrics.SetCertificateExpiry(r.Domain, c.Leaf.NotAfter)
	}
	return c
}

// hasCert reports whether the edge can terminate TLS for name with a certificate that
// covers it (for bind warnings and refusals).
func (s *Server) hasCert(name string) bool {
	if c := s.reservedCert(name); c != nil {
		return session.CertCovers(c, name)
	}
	if s.acme != nil {
		// A wildcard tunnel ("*.x") is served, name by name, the certificate of the names below
		// it; the manager looks certificates up by SNI name, never by a wildcard.
		probe := name
		if rest, ok := strings.CutPrefix(name, "*."); ok {
			probe = "x." + rest
		}
		if r, ok := s.domains.Lookup(probe); ok && r.Managed {
			if c, ok := s.acme.Certificate(probe); ok {
				return session.CertCovers(c, name)
			}
		}
	}
	return s.opts.DevCA != nil || session.CertCovers(s.cert, name)
}

// newAPIServer builds the management API's HTTP server.
func (s *Server) newAPIServer(ports config.PortRange, tcpHost string) *http.Server {
	c := &s.opts.Config
	target := c.CNAMETarget
	if target == "" {
		target = c.Domain
	}
	var certs api.Certificates
	if s.acme != nil {
		certs = acmeCerts{s}
	}
	h := api.New(api.Config{
		Store: s.store, Keybox: s.keybox, Domains: s.domains, Addrs: s.addrs, ACME: certs, Events: s.observer.Events,
		CookieSecret: s.keybox.DeriveKey("oauth cookies")[:], SAMLKey: s.samlKey,
		CNAMETarget: target, AddrHost: c.Domain, TCPLow: ports.Low, TCPHigh: ports.High,
		PortFree: func(p int) bool {
			if s.table.Port(p) != nil {
				return false
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(tcpHost, strconv.Itoa(p)))
			if err != nil {
				return false
			}
			ln.Close()
			return true
		},
		// Each change applies here at once, and is recorded for relays sharing the store.
		Changed: func() { s.dropCaches(); s.compileEdges(tcpHost); s.bump() },
		Revoked: func(credentialID string) {
			if sessions := s.sessions.Load(); sessions != nil {
				sessions.Revoke(credentialID)
			}
			s.bump()
		},
		Unreserved: func(account, name string) {
			if sessions := s.sessions.Load(); sessions != nil {
				sessions.Unreserved(account, name)
			}
			s.bump()
		},
		Tunnels: func(account string, labels map[string]string) []map[string]any {
			out := []map[string]any{}
			for _, t := range s.table.Group(account, labels) {
				out = append(out, map[string]any{"id": t.PublicID, "name": t.Name, "labels": t.Labels})
			}
			return out
		},
		Log: s.log.With("component", "api"),
	})
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10,
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)}
}

// StorePoll is how often a relay reads the store's revision to apply the changes other
// relays sharing it (PostgreSQL) made through their management APIs.
var StorePoll = 2 * time.Second

// bump records a change made through this relay's API for the relays sharing its store.
func (s *Server) bump() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.store.Bump(ctx); err != nil {
		s.log.Warn("could not record a change for other relays sharing the store; they apply it at their next restart", "err", err)
	}
}

// followStore applies changes made through other relays sharing the store (and, again,
// this relay's own: applying is idempotent): reservations, certificates, edges, backends,
// IP policies and event subscriptions are read again, tunnels whose name is no longer
// reserved go offline, and sessions whose authtoken was deleted end.
func (s *Server) followStore(ctx context.Context, tcpHost string, sessions *session.Server) {
	// The first tick always applies: a change may have landed between this relay loading
	// its state and this loop starting.
	seen := int64(-1)
	tick := time.NewTicker(StorePoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		rev, err := s.store.Revision(ctx)
		if err != nil || rev == seen {
			if err != nil && ctx.Err() == nil {
				s.log.Warn("read the store's revision", "err", err)
			}
			continue
		}
		if err := s.Reload(ctx); err != nil {
			s.log.Error("reload reservations from the store", "err", err)
			continue // seen stays: try again on the next tick
		}
		seen = rev
		s.compileEdges(tcpHost)
		s.manageReserved()
		ended := sessions.Recheck() + sessions.RevokeMissing(func(id string) bool {
			ok, err := s.store.CredentialExists(ctx, id)
			return ok || err != nil // a failed lookup ends nothing
		})
		level := slog.LevelDebug
		if ended > 0 {
			level = slog.LevelInfo
		}
		s.log.Log(ctx, level, "applied configuration changes from the store", "revision", rev, "sessions_ended", ended)
	}
}

// dropCaches forgets opened certificates and derived TLS configs after a change.
func (s *Server) dropCaches() {
	s.uploaded.Clear()
	s.tlsConfs.Clear()
}

// terminationConfig applies name's TLS settings (an edge's, else its reserved domain's:
// minimum TLS version, client CAs for mutual TLS) to base. Derived configs are cached
// until the next change through the API.
func (s *Server) terminationConfig(name string, base *tls.Config) *tls.Config {
	t, ok := s.tlsSettings(name)
	if !ok || !t.any() {
		return base
	}
	key := fmt.Sprintf("%p|%s|%d|%s", base, t.account, t.min, strings.Join(t.cas, ","))
	if c, ok := s.tlsConfs.Load(key); ok {
		return c.(*tls.Config)
	}
	c := base.Clone()
	if t.min != 0 {
		c.MinVersion = t.min
	}
	if len(t.cas) > 0 {
		pool, err := s.clientCAs(t.account, t.cas)
		if err != nil {
			// Fail closed: a name that asks for client certificates never goes without.
			s.log.Error("load client CAs; refusing TLS for the name", "name", name, "err", err)
			c = c.Clone()
			c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
				return nil, fmt.Errorf("client CAs of %s unavailable", name)
			}
			return c
		}
		c = tlsconf.RequireClientCerts(c, pool)
	}
	s.tlsConfs.Store(key, c)
	return c
}

// edgeTLS are the TLS settings the edge applies to a name: the lowest version and the
// CAs of the account whose client certificates it requires.
type edgeTLS struct {
	account string
	min     uint16
	cas     []string
}

func (t edgeTLS) any() bool { return t.min != 0 || len(t.cas) > 0 }

// tlsSettings returns the TLS settings for name: an edge's, which replace its domain's,
// else the reserved domain's.
func (s *Server) tlsSettings(name string) (edgeTLS, bool) {
	if et, ok := s.router.Current().TLSSettings(name); ok {
		return edgeTLS{account: et.AccountID, min: api.TLSVersion(et.MinVersion), cas: et.ClientCAIDs}, true
	}
	if r, ok := s.domains.Lookup(name); ok {
		return edgeTLS{account: r.AccountID, min: r.MinTLSVersion, cas: r.ClientCAIDs}, true
	}
	return edgeTLS{}, false
}

func (s *Server) clientCAs(account string, ids []string) (*x509.CertPool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool := x509.NewCertPool()
	for _, id := range ids {
		ca, err := s.store.GetCertificateAuthority(ctx, account, id)
		if err != nil {
			return nil, err
		}
		if !pool.AppendCertsFromPEM([]byte(ca.CAPEM)) {
			return nil, fmt.Errorf("certificate authority %s: no certificate in ca_pem", id)
		}
	}
	return pool, nil
}

// startACME starts the automated-certificate manager when --acme-email is set, with its
// challenge DNS zone when --dns-addr is.
func (s *Server) startACME() error {
	c := &s.opts.Config
	if c.ACMEEmail == "" {
		return nil
	}
	cfg := acme.Config{
		DirectoryURL: c.ACMECA, Email: c.ACMEEmail,
		StorageDir: filepath.Join(c.Data, "acme"), StorageKey: s.keybox.DeriveKey("acme storage"),
		HTTPPort: portOf(s.HTTPAddr()), TLSPort: portOf(s.HTTPSAddr()),
		DisableHTTP01: s.httpLn == nil, DisableTLSALPN01: s.httpsLn == nil,
		Log: s.log, OnStatus: s.saveCertStatus, // acme.New adds component=acme itself
	}
	if c.ACMECARoot != "" {
		pool, _, err := tlsconf.LoadCAs(c.ACMECARoot, "--acme-ca-root")
		if err != nil {
			return err
		}
		cfg.RootCAs = pool
	}
	if c.DNSAddr != "" {
		cfg.ChallengeZone = c.ACMEZone
		if cfg.ChallengeZone == "" {
			cfg.ChallengeZone = "acme." + c.Domain
		}
	}
	m, err := acme.New(cfg)
	if err != nil {
		return fmt.Errorf("acme: %w", err)
	}
	if c.DNSAddr != "" {
		addr, err := m.ListenDNS(c.DNSAddr)
		if err != nil {
			m.Close()
			return fmt.Errorf("--dns-addr %s: %w", c.DNSAddr, err)
		}
		s.log.Info("serving the ACME challenge zone", "zone", cfg.ChallengeZone, "dns", addr)
		s.acmeDNS = addr
	}
	s.acme = m
	return nil
}

// manageReserved asks for certificates for every reserved domain with automated
// certificates (stored ones load without asking the CA), and stops managing the domains
// that no longer have them: at start, and after changes another relay sharing the store
// made (Manage is a no-op for a domain already managed).
func (s *Server) manageReserved() {
	if s.acme == nil {
		return
	}
	ds, err := s.store.AllReservedDomains(context.Background())
	if err != nil {
		s.log.Error("load reserved domains for ACME", "err", err)
		return
	}
	var keep []string
	for _, d := range ds {
		if d.CertPolicy != nil {
			keep = append(keep, d.Domain)
			if err := s.acme.Manage(d.Domain); err != nil {
				s.log.Warn("automated certificate", "domain", d.Domain, "err", err)
			}
		}
	}
	s.acme.Keep(keep)
}

// saveCertStatus stores a managed domain's state as its certificate_management_status.
func (s *Server) saveCertStatus(domain string, st acme.Status) {
	r, ok := s.domains.Lookup(domain)
	if !ok || r.Domain != domain {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.store.SetCertStatus(ctx, r.ID, certStatus(st)); err != nil {
		s.log.Warn("save certificate status", "domain", domain, "err", err)
	}
}

// certStatus maps the manager's state onto ngrok's certificate_management_status.
func certStatus(st acme.Status) *store.CertStatus {
	out := &store.CertStatus{RenewsAt: st.RenewsAt}
	if st.State != acme.StateIssued {
		out.ProvisioningJob = &store.ProvisioningJob{Msg: st.State, StartedAt: st.StartedAt, RetriesAt: st.RetriesAt}
		if st.Error != "" {
			out.ProvisioningJob.ErrorCode = "FERRY_ACME_FAILED"
			out.ProvisioningJob.Msg = st.Error
		}
	}
	return out
}

// acmeCerts adapts the ACME manager for the management API.
type acmeCerts struct{ s *Server }

func (a acmeCerts) Manage(domain string) {
	if err := a.s.acme.Manage(domain); err != nil {
		a.s.log.Warn("automated certificate", "domain", domain, "err", err)
	}
}

func (a acmeCerts) Unmanage(domain string) { a.s.acme.Unmanage(domain) }

func (a acmeCerts) Status(domain string) (store.CertStatus, bool) {
	st := a.s.acme.Status(domain)
	if st.State == "" {
		return store.CertStatus{}, false
	}
	return *certStatus(st), true
}

func (a acmeCerts) ChallengeTarget(domain string) string { return a.s.acme.ChallengeTarget(domain) }

// tlsOnly reports whether name has edge TLS settings that plain HTTP would bypass.
func (s *Server) tlsOnly(name string) bool {
	if t := s.table.Host(name); t != nil && t.Auth != nil {
		return true // login cookies are Secure: the flow only works over HTTPS
	}
	t, ok := s.tlsSettings(name)
	return ok && t.any()
}

// tunnelOAuth builds the login module an agent asked for on an http tunnel.
func (s *Server) tunnelOAuth(name string, o *protocol.BindOAuth) (route.Middleware, error) {
	return oauth.New(oauth.Config{Provider: o.Provider, IssuerURL: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret,
		Scopes: o.Scopes, AllowEmails: o.AllowEmails, AllowDomains: o.AllowDomains,
		CookieSecret: s.keybox.DeriveKey("oauth cookies")[:], HTTPClient: s.authClient, Logger: s.log.With("tunnel", name),
		OnReject: func() { s.observer.Rejected("oauth") }})
}

// samlKey returns the relay's SAML service-provider key and certificate.
func (s *Server) samlKey() (crypto.Signer, *x509.Certificate, error) {
	return s.saml.load(s.opts.Config.Data)
}

// compileEdges builds the routing snapshot from the stored edges and opens or closes the
// listeners of TCP edges to match.
func (s *Server) compileEdges(tcpHost string) {
	s.edgeMu.Lock()
	defer s.edgeMu.Unlock()
	objs, err := s.store.AllObjects(context.Background())
	if err != nil {
		s.log.Error("load edges", "err", err)
		return
	}
	snap := router.Compile(objs, router.Deps{Table: s.table, Log: s.log.With("component", "edges"), Observer: s.observer,
		CookieSecret: s.keybox.DeriveKey("oauth cookies")[:], SAMLKey: s.samlKey, AuthClient: s.authClient, Breakers: &s.breakers})
	s.router.Set(snap)
	if s.observer != nil {
		s.observer.Events.SetSubscriptions(api.Subscriptions(objs))
	}
	s.syncTCPEdges(tcpHost, snap)
}

// syncTCPEdges listens on the TCP edges' ports it does not serve yet and stops those no
// edge wants (edgeMu held). A port a tunnel holds is tried again when the tunnel stops.
func (s *Server) syncTCPEdges(tcpHost string, snap *router.Snapshot) {
	if s.edge == nil || snap == nil {
		return
	}
	if s.tcpEdges == nil {
		s.tcpEdges = make(map[int]net.Listener)
	}
	want := map[int]bool{}
	for _, p := range snap.TCPPorts() {
		want[p] = true
		if _, ok := s.tcpEdges[p]; ok {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(tcpHost, strconv.Itoa(p)))
		if err != nil {
			s.log.Warn("TCP edge not served: cannot listen (a tunnel may hold the port until it stops)", "port", p, "err", err)
			continue
		}
		s.tcpEdges[p] = ln
		go s.edge.ServeTCPEdge(ln, func() *edge.Backend { return s.router.Current().TCP(p) }) //nolint:errcheck // ends when ln closes
	}
	for p, ln := range s.tcpEdges {
		if !want[p] {
			ln.Close()
			delete(s.tcpEdges, p)
		}
	}
}

// startObserver sets up metrics (with --metrics-addr) and the event bus.
func (s *Server) startObserver() {
	c := &s.opts.Config
	o := &route.Observer{}
	if s.metricsLn != nil {
		o.Metrics = metrics.New()
		if leaf := s.cert.Leaf; leaf != nil {
			o.Metrics.SetCertificateExpiry(c.Domain, leaf.NotAfter)
		}
	}
	cfg := events.Config{Log: s.log.With("component", "events")}
	if !c.EventsAllowPrivate {
		d := &net.Dialer{Timeout: 10 * time.Second, Control: events.RefusePrivateAddresses}
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{DialContext: d.DialContext, Proxy: nil,
			TLSHandshakeTimeout: 10 * time.Second, ResponseHeaderTimeout: 10 * time.Second}}
	}
	cfg.AllowFile = func(string) error {
		return errors.New("file destinations are off on this relay: its operator starts it with --events-dir DIR (events_dir in its config) to allow files in DIR")
	}
	if dir := c.EventsDir; dir != "" {
		abs, err := filepath.Abs(dir)
		if err == nil {
			cfg.AllowFile = func(p string) error {
				if rel, err := filepath.Rel(abs, filepath.Clean(p)); err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
					return fmt.Errorf("%s is outside the relay's --events-dir %s: event files must be inside it", p, abs)
				}
				return nil
			}
		}
	}
	o.Events = events.NewBus(cfg)
	s.observer = o
}
