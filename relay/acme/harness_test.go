package acme

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/acme/acmetest"
)

// The harness wires, all on loopback:
//
//	Pebble (acmetest.NewPebble) — the ACME CA
//	fakeDNS (an acmetest.Resolver) — the recursive resolver the CA and certmagic use: A records
//	          for the test names, the user's CNAME _acme-challenge.<base> → ChallengeTarget, and
//	          everything under the challenge zone fetched from the Manager's own DNS (as a real
//	          resolver would after following the delegation)
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

func newEnv(t *testing.T, opts envOptions) *env {
	t.Helper()
	logs := acmetest.LogWriter(t)

	e := &env{statuses: make(map[string][]Status)}

	// The relay's :80 and :443 (served once the Manager exists).
	httpLn := listen(t)
	tlsLn := listen(t)
	e.httpAddr, e.tlsAddr = httpLn.Addr().String(), tlsLn.Addr().String()

	// The recursive resolver.
	e.dns = &fakeDNS{acmetest.StartResolver(t)}
	e.dnsAddr = e.dns.Addr

	// Pebble, with its test knobs (no random validation delay, no deliberate bad nonces, no reuse
	// of valid authorizations).
	pebble := acmetest.NewPebble(t, acmetest.PebbleOptions{Resolver: e.dnsAddr, Log: logs,
		HTTPPort: port(t, e.httpAddr), TLSPort: port(t, e.tlsAddr), Validity: opts.validity})
	e.caRoots = pebble.Roots

	// The Manager.
	e.cfg = Config{
		DirectoryURL:       pebble.Directory,
		RootCAs:            pebble.APIRoots,
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
	e.dns.Forward(challengeZone, dnsAddr.String())

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

// fakeDNS is the harness's name for the acmetest resolver.
type fakeDNS struct{ *acmetest.Resolver }

func (f *fakeDNS) setA(name, ip string)         { f.SetA(name, ip) }
func (f *fakeDNS) setCNAME(name, target string) { f.SetCNAME(name, target) }
func (f *fakeDNS) txtViaCNAME(name string) int  { return f.TXTViaCNAME(name) }
