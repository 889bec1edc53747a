// Package acmetest runs an ACME CA for tests in any package, all in-process on loopback:
//
//   - Pebble (Let's Encrypt's test CA), whose validation authority is told which ports to validate
//     HTTP-01 and TLS-ALPN-01 on instead of 80 and 443, and which DNS server to resolve with;
//   - Resolver, the recursive resolver the CA (and whoever else) asks: A and CNAME records set by
//     the test, and the ACME challenge zone forwarded to the relay's own DNS, as a real resolver
//     follows the zone's delegation.
//
// A typical test starts the resolver, then Pebble (whose directory URL and API root the server
// under test needs before it starts), then the server, and finally tells Pebble the server's ports:
//
//	res := acmetest.StartResolver(t)
//	ca := acmetest.NewPebble(t, acmetest.PebbleOptions{Resolver: res.Addr})
//	... start the server with ca.Directory, ca.APIRootsFile (or ca.APIRoots) ...
//	res.SetA("app.example.test", "127.0.0.1")
//	res.Forward("acme.relay.example.test", serverDNSAddr)
//	ca.Start(serverHTTPPort, serverTLSPort)
//
// Pebble's validation goroutine and certmagic's rate limiters outlive every test: packages that
// check for leaked goroutines pass LeakOptions to goleak.
package acmetest

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"go.uber.org/goleak"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

// LeakOptions are the goleak options for the goroutines that an in-process Pebble and certmagic
// keep for the rest of the process:
//   - Pebble's VA task loop (it has no way to stop);
//   - certmagic's per-CA rate limiters (documented as never stopped);
//   - certmagic's lock-file keepers, which notice a released lock at their next 5-second tick.
func LeakOptions() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreAnyFunction("github.com/letsencrypt/pebble/v2/va.VAImpl.processTasks"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).loop"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.(*RingBufferRateLimiter).permit"),
		goleak.IgnoreAnyFunction("github.com/caddyserver/certmagic.keepLockfileFresh"),
	}
}

// LogWriter returns a writer that sends each write to t.Log while the test runs and -v is on,
// and discards it otherwise (Pebble's and certmagic's goroutines outlive the test, and t.Log after
// the end of a test panics).
func LogWriter(t testing.TB) io.Writer {
	w := &logWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

type logWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done && testing.Verbose() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// PebbleOptions configures NewPebble.
type PebbleOptions struct {
	// Resolver is the DNS server ("host:port", asked over TCP) the validation authority resolves
	// names with: a Resolver's Addr. Required.
	Resolver string
	// HTTPPort and TLSPort are the ports the validation authority connects to for HTTP-01 and
	// TLS-ALPN-01 (instead of 80 and 443). When both are 0, NewPebble starts only Pebble's HTTPS
	// listener (Directory is known, requests fail with 503) and Start starts the CA proper: for a
	// server under test that picks its ports when it starts, after it is told the directory.
	HTTPPort, TLSPort int
	// Validity is the lifetime of issued certificates in seconds; 0: Pebble's default.
	Validity uint64
	// Log receives Pebble's log; default LogWriter(t).
	Log io.Writer
}

// Pebble is an ACME CA on loopback, stopped at the end of the test.
type Pebble struct {
	// Directory is the ACME directory URL (https://127.0.0.1:PORT/dir).
	Directory string
	// APIRoots verifies the certificate of Pebble's HTTPS API (an ACME client's trusted roots).
	APIRoots *x509.CertPool
	// APIRootsFile is APIRoots as a PEM file (the relay's --acme-ca-root).
	APIRootsFile string
	// Roots verifies the certificates Pebble issues: its issuing root, as a TLS client of the
	// server under test would trust.
	Roots *x509.CertPool

	log       *log.Logger
	resolver  string
	store     *db.MemoryStore
	authority *ca.CAImpl
	handler   atomic.Pointer[http.Handler]
	started   atomic.Bool
}

// NewPebble starts Pebble with its test knobs set for determinism: no random validation delay
// (PEBBLE_VA_NOSLEEP=1), no deliberately rejected nonces (PEBBLE_WFE_NONCEREJECT=0), and no reuse
// of valid authorizations (PEBBLE_AUTHZREUSE=0: every order is validated for real). It sets them
// with t.Setenv, so t must not be parallel. See PebbleOptions for when validation starts.
func NewPebble(t testing.TB, o PebbleOptions) *Pebble {
	t.Helper()
	if o.Resolver == "" {
		t.Fatal("acmetest: PebbleOptions.Resolver is required")
	}
	t.Setenv("PEBBLE_VA_NOSLEEP", "1")
	t.Setenv("PEBBLE_WFE_NONCEREJECT", "0")
	t.Setenv("PEBBLE_AUTHZREUSE", "0")
	if o.Log == nil {
		o.Log = LogWriter(t)
	}
	p := &Pebble{log: log.New(o.Log, "pebble ", 0), resolver: o.Resolver, store: db.NewMemoryStore()}
	p.authority = ca.New(p.log, p.store, "", "ecdsa", 0, 1, map[string]ca.Profile{"default": {ValidityPeriod: o.Validity}})
	p.Roots = x509.NewCertPool()
	p.Roots.AddCert(p.authority.GetRootCert(0).Cert)

	apiCA := certtest.NewCA(t, "Pebble API CA")
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h := p.handler.Load(); h != nil {
			(*h).ServeHTTP(w, r)
			return
		}
		http.Error(w, "acmetest: Pebble has not been told the ports to validate on yet (Pebble.Start)", http.StatusServiceUnavailable)
	}))
	// Served with a certificate from a CA of our own rather than httptest's, so that the roots file
	// holds a CA certificate (the relay's --acme-ca-root accepts only those).
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{apiCA.Server(t, "127.0.0.1")}}
	srv.Config.ErrorLog = log.New(o.Log, "pebble http ", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	p.Directory = srv.URL + wfe.DirectoryPath
	p.APIRoots = apiCA.Pool
	p.APIRootsFile = apiCA.WriteFiles(t, t.TempDir())

	if o.HTTPPort != 0 || o.TLSPort != 0 {
		p.Start(o.HTTPPort, o.TLSPort)
	}
	return p
}

// Start starts the CA proper: its ACME API, and its validation authority, which connects to
// httpPort for HTTP-01 and tlsPort for TLS-ALPN-01 at whatever address the name resolves to. Call
// it once, and only if NewPebble was given no ports.
func (p *Pebble) Start(httpPort, tlsPort int) {
	if !p.started.CompareAndSwap(false, true) {
		panic("acmetest: Pebble.Start called twice")
	}
	validator := va.New(p.log, httpPort, tlsPort, false, p.resolver, p.store)
	front := wfe.New(p.log, p.store, validator, p.authority, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
	h := front.Handler()
	p.handler.Store(&h)
}
