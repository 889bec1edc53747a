package acme

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// The harness wires, all on loopback:
//
//	Pebble (ca, va, wfe; its HTTPS API on httptest) — the ACME CA
//	fakeDNS — the recursive resolver the CA and certmagic use: A records for the test names, the
//	          user's CNAME _acme-challenge.<base> → ChallengeTarget, and everything under the
//	          challenge zone fetched from the Manager's own DNS (as a real resolver would after
//	          following the delegation)
//	the relay's :80 and :443, played by an http.Server with m.HTTPHandler and a TLS listener that
//	          dispatches like the relay's SNI peek: acme-tls/1 to m.ServeTLSALPN, else a TLS server
//	          with m.Certificate
//
// Pebble's VA is told the ports of those two listeners instead of 80 and 443.

const challengeZone = "acme.relay.example.test"

type env struct {
	m        *Manager
	cfg      Config
	dns      *fakeDNS
	dnsAddr  string         // fakeDNS, UDP and TCP
	caRoots  *x509.CertPool // Pebble's issuing root: verifies the certificates it issues
	httpAddr string         // "relay :80"
	tlsAddr  string         // "relay :443"

	mu       sync.Mutex
	statuses map[string][]Status // every OnStatus call, per domain
}

type envOptions struct {
	validity uint64        // certificate lifetime in seconds; 0: Pebble's default (90 days)
	tweak    func(*Config) // adjusts the Manager's config before New
}

// logWriter sends log lines to t.Log until the test ends (Pebble's goroutines outlive it).
type logWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func newLogWriter(t testing.TB) *logWriter {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	// Pebble's knobs: no random validation delay, no deliberate bad nonces (certmagic would retry
	// them, at the price of nondeterministic timing), no reuse of valid authorizations (every order
	// is validated for real).
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	logs := newLogWriter(t)

	e := &env{statuses: make(map[string][]Status)}

	// The relay's :80 and :443 (served once the Manager exists).
	httpLn := listen(t)
	tlsLn := listen(t)
	e.httpAddr, e.tlsAddr = httpLn.Addr().String(), tlsLn.Addr().String()

	// The recursive resolver.
	e.dns = &fakeDNS{a: map[string]string{}, cname: map[string]string{}, zone: dns.Fqdn(challengeZone)}
	e.dnsAddr = e.dns.start(t)

	// Pebble.
	plog := log.New(logs, "pebble ", 0)
	store := db.NewMemoryStore()
	authority := ca.New(plog, store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {ValidityPeriod: opts.validity}})
	validator := va.New(plog, port(t, e.httpAddr), port(t, e.tlsAddr), false, e.dnsAddr, store)
	front := wfe.New(plog, store, validator, authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	pebble := httptest.NewUnstartedServer(front.Handler())
	pebble.Config.ErrorLog = log.New(logs, "pebble http ", 0)
	pebble.StartTLS()
	t.Cleanup(pebble.Close)
	apiRoots := x509.NewCertPool()
	apiRoots.AddCert(pebble.Certificate())
	e.caRoots = x509.NewCertPool()
	e.caRoots.AddCert(authority.GetRootCert(0).Cert)

	// The Manager.
	e.cfg = Config{
		DirectoryURL:       pebble.URL + wfe.DirectoryPath,
		RootCAs:            apiRoots,
		Email:              "ops@example.test",
		StorageDir:         t.TempDir(),
		ChallengeZone:      challengeZone,
		DNSResolvers:       []string{e.dnsAddr},
		HTTPPort:           port(t, e.httpAddr),
		TLSPort:            port(t, e.tlsAddr),
		CertObtainTimeout:  30 * time.Second,
		RenewCheckInterval: time.Minute,
		Log:                slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: logLevel()})),
		OnStatus: func(domain string, st Status) {
			e.mu.Lock()
			e.statuses[domain] = append(e.statuses[domain], st)
			e.mu.Unlock()
		},
	}
	if opts.tweak != nil {
		opts.tweak(&e.cfg)
	}
	e.m = e.newManager(t, e.cfg)
	dnsAddr, err := e.m.ListenDNS("127.0.0.1:0")
	if err != nil {
		t.Fatalf("ListenDNS: %v", err)
	}
	e.dns.setUpstream(dnsAddr.String())

	e.serveRelay(t, httpLn, tlsLn)
	return e
}

func logLevel() slog.Level {
	if os.Getenv("ACME_TEST_DEBUG") != "" {
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// newManager starts a Manager closed at the end of the test.
func (e *env) newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// serveRelay plays the relay's :80 and :443 on the two listeners, with whatever e.m is.
func (e *env) serveRelay(t *testing.T, httpLn, tlsLn net.Listener) {
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			e.manager().HTTPHandler(http.NotFoundHandler()).ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 5 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("relay :80: %v", err)
		}
	}()

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := tlsLn.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				e.dispatchTLS(c)
			}()
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
		tlsLn.Close()
		wg.Wait()
	})
}

// dispatchTLS plays the relay's :443: peek the ClientHello, hand TLS-ALPN-01 validations to the
// Manager, terminate everything else with the managed certificate.
func (e *env) dispatchTLS(raw net.Conn) {
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(10 * time.Second))
	m := e.manager()
	hello, conn, err := peekHello(raw)
	if err != nil {
		return
	}
	if IsTLSALPN(hello.ServerName, hello.SupportedProtos) {
		_ = m.ServeTLSALPN(conn)
		return
	}
	tc := tls.Server(conn, &tls.Config{GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if cert, ok := m.Certificate(hello.ServerName); ok {
			return cert, nil
		}
		return nil, errors.New("no certificate for " + hello.ServerName)
	}})
	if tc.Handshake() == nil {
		_, _ = io.WriteString(tc, "ok")
	}
}

var errPeeked = errors.New("peeked")

// peekHello reads the ClientHello without consuming it (a stand-in for the relay's sni.Peek): a
// handshake over a conn that records what it reads and swallows what it writes, stopped at
// GetConfigForClient; the returned conn replays the recorded bytes.
func peekHello(c net.Conn) (*tls.ClientHelloInfo, net.Conn, error) {
	rec := &recordingConn{Conn: c}
	var hello *tls.ClientHelloInfo
	err := tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		hello = h
		return nil, errPeeked
	}}).Handshake()
	if hello == nil {
		return nil, nil, err
	}
	return hello, &replayConn{Conn: c, r: io.MultiReader(&rec.buf, c)}, nil
}

type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *recordingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.buf.Write(p[:n])
	return n, err
}

func (c *recordingConn) Write(p []byte) (int, error) { return len(p), nil }

type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (e *env) manager() *Manager {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.m
}

func (e *env) setManager(m *Manager) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m = m
}

func (e *env) history(domain string) []Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]Status(nil), e.statuses[domain]...)
}

// waitState polls the domain's status until it reaches state, or fails the test at the deadline.
func (e *env) waitState(t *testing.T, m *Manager, domain, state string, timeout time.Duration) Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		st := m.Status(domain)
		if st.State == state {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %q (error %q) after %v, want %q; history %+v", domain, st.State, st.Error, timeout, state, e.history(domain))
		}
		select {
		case <-tick.C:
		case <-t.Context().Done():
			t.Fatal(t.Context().Err())
		}
	}
}

// dialTLS connects to the relay's :443 with SNI name, verifying against Pebble's root, and returns
// the leaf the server sent.
func (e *env) dialTLS(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	d := tls.Dialer{Config: &tls.Config{ServerName: name, RootCAs: e.caRoots}}
	c, err := d.DialContext(t.Context(), "tcp", e.tlsAddr)
	if err != nil {
		t.Fatalf("TLS to %s: %v", name, err)
	}
	defer c.Close()
	return c.(*tls.Conn).ConnectionState().PeerCertificates[0]
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func port(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// fakeDNS is a recursive resolver stand-in (UDP and TCP; Pebble's VA asks over TCP).
type fakeDNS struct {
	mu       sync.Mutex
	a        map[string]string // FQDN → IPv4
	cname    map[string]string // FQDN → target FQDN
	zone     string            // the challenge zone: asked of upstream
	upstream string            // the Manager's DNS
	viaCNAME map[string]int    // TXT records answered through a CNAME into the zone, by owner
}

func (f *fakeDNS) setA(name, ip string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.a[dns.CanonicalName(name)] = ip
}

func (f *fakeDNS) setCNAME(name, target string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cname[dns.CanonicalName(name)] = dns.CanonicalName(target)
}

func (f *fakeDNS) setUpstream(addr string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.upstream = addr
}

// txtViaCNAME counts the TXT records answered for name by following its CNAME into the
// challenge zone: what the CA's lookup of _acme-challenge.<domain> got.
func (f *fakeDNS) txtViaCNAME(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.viaCNAME[dns.CanonicalName(name)]
}

func (f *fakeDNS) start(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: f}, {Listener: ln, Handler: f}} {
		started, done := make(chan struct{}), make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() {
			defer close(done)
			_ = srv.ActivateAndServe()
		}()
		<-started
		t.Cleanup(func() {
			_ = srv.Shutdown()
			<-done
		})
	}
	return pc.LocalAddr().String()
}

func (f *fakeDNS) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	resp := new(dns.Msg)
	resp.SetReply(r)
	resp.RecursionAvailable = true
	defer func() { _ = w.WriteMsg(resp) }()
	if len(r.Question) != 1 {
		resp.Rcode = dns.RcodeFormatError
		return
	}
	q := r.Question[0]
	name := dns.CanonicalName(q.Name)

	f.mu.Lock()
	ip, hasA := f.a[name]
	target, hasCNAME := f.cname[name]
	inZone := dns.IsSubDomain(f.zone, name)
	f.mu.Unlock()

	switch {
	case inZone:
		up, err := f.forward(q.Name, q.Qtype)
		if err != nil {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		resp.Rcode, resp.Answer, resp.Ns = up.Rcode, up.Answer, up.Ns
	case hasCNAME:
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 60}, Target: target})
		if q.Qtype == dns.TypeCNAME {
			return
		}
		up, err := f.forward(target, q.Qtype)
		if err != nil {
			resp.Rcode = dns.RcodeServerFailure
			return
		}
		resp.Rcode = up.Rcode
		resp.Answer = append(resp.Answer, up.Answer...)
		for _, rr := range up.Answer {
			if rr.Header().Rrtype == dns.TypeTXT {
				f.mu.Lock()
				if f.viaCNAME == nil {
					f.viaCNAME = map[string]int{}
				}
				f.viaCNAME[name]++
				f.mu.Unlock()
			}
		}
	case hasA:
		if q.Qtype == dns.TypeA {
			resp.Answer = append(resp.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(ip)})
		}
	default:
		resp.Rcode = dns.RcodeNameError
	}
}

// forward asks the Manager's DNS, as a resolver asks the delegated authority.
func (f *fakeDNS) forward(name string, qtype uint16) (*dns.Msg, error) {
	f.mu.Lock()
	upstream := f.upstream
	f.mu.Unlock()
	if upstream == "" {
		return nil, errors.New("no upstream yet")
	}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	q.RecursionDesired = false
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	in, _, err := c.Exchange(q, upstream)
	if err != nil {
		return nil, err
	}
	if !in.Authoritative {
		return nil, errors.New("upstream answer is not authoritative")
	}
	return in, nil
}
