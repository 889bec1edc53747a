// Package oauthtest holds fake identity providers for tests of the oauth module and of
// the relay that applies it: an OpenID Connect provider (discovery, JWKS, authorize,
// token with PKCE and refresh, user info) and a SAML 2.0 identity provider
// (crewjam/saml), each either served by the caller under a name of its choosing or
// started on 127.0.0.1 with a certificate from its own CA, which a relay can be told
// to trust (--oauth-ca-roots).
//
// Nothing here is meant for production use. The package does not import the oauth
// package, so the oauth package's own tests can use it.
package oauthtest

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert/certtest"
)

// Defaults of the fake OIDC provider.
const (
	ClientID     = "ferry-test-client"
	ClientSecret = "ferry-test-secret"
	// CallbackPath is the oauth module's redirect URI path (oauth.PathCallback).
	CallbackPath = "/oauth2/callback"
)

// RSAKey returns the test RSA key for name, generated once per test binary: RSA key
// generation is slow under the race detector.
func RSAKey(t testing.TB, name string) *rsa.PrivateKey {
	t.Helper()
	keysMu.Lock()
	defer keysMu.Unlock()
	if k, ok := keys[name]; ok {
		return k
	}
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keys[name] = k
	return k
}

var (
	keysMu sync.Mutex
	keys   = map[string]*rsa.PrivateKey{}
)

// SelfSigned returns RSAKey(t, cn) and a self-signed certificate for it, valid for a
// day: what SAML parties sign and encrypt with.
func SelfSigned(t testing.TB, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key := RSAKey(t, cn)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return key, cert
}

// RandToken returns n random bytes, base64url without padding.
func RandToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// WriteJSON answers v as JSON with code.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// startTLS serves h on 127.0.0.1 with a certificate for 127.0.0.1, ::1 and localhost
// from a new CA named cn, until the test ends. It calls setURL with the server's URL
// before the server starts.
func startTLS(t testing.TB, cn string, h http.Handler, setURL func(string)) (*httptest.Server, *certtest.CA) {
	t.Helper()
	ca := certtest.NewCA(t, cn)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "127.0.0.1", "::1", "localhost")}}
	setURL("https://" + srv.Listener.Addr().String())
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, ca
}

// Server is a fake provider's own TLS server (when the caller did not serve it).
type Server struct {
	// HTTPS is the server on 127.0.0.1; nil when the caller serves the provider.
	HTTPS *httptest.Server
	// CA issued HTTPS's certificate (127.0.0.1, ::1, localhost); nil with HTTPS.
	CA *certtest.CA
}

// Client returns a client that trusts CA (nil without an own server). Its idle
// connections are closed when the test ends.
func (s *Server) Client(t testing.TB) *http.Client {
	if s.HTTPS == nil {
		return nil
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: s.CA.Pool}, ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// WriteCA writes CA as a PEM file in dir (a relay's oauth_ca_roots) and returns its
// path; the test fails without an own server.
func (s *Server) WriteCA(t testing.TB, dir string) string {
	t.Helper()
	if s.CA == nil {
		t.Fatal("oauthtest: the provider has no server of its own: its caller serves it")
	}
	return s.CA.WriteFiles(t, dir)
}
