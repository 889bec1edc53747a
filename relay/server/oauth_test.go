package server_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/module/oauth/oauthtest"
	"github.com/ferrytunnel/ferry/relay/server"
	"github.com/ferrytunnel/ferry/relay/server/servertest"
)

// newOAuthRelay starts a relay with the management API whose certificate also covers
// names and that trusts the CAs in the PEM file caRoots (oauth_ca_roots; "" for none)
// when it calls identity providers. log, when set, receives the relay's log as well.
func newOAuthRelay(t *testing.T, caRoots string, log io.Writer, names ...string) *relayEnv {
	t.Helper()
	o := servertest.Options{Log: testLogger(t), APIAddr: "127.0.0.1:0",
		Names:     append([]string{servertest.Domain, "*." + servertest.Domain, "127.0.0.1"}, names...),
		Configure: func(c *config.Config) { c.OAuthCARoots = caRoots; c.MetricsAddr = "127.0.0.1:0" }}
	if log != nil {
		o.Log = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), log), nil))
	}
	return &relayEnv{Relay: servertest.Start(t, o), t: t, transport: "quic"}
}

// authUpstream answers with the request's URI and headers as JSON and remembers what it
// saw: the upstream behind an edge with a login module.
type authUpstream struct {
	mu   sync.Mutex
	seen []seenRequest
}

type seenRequest struct {
	URI    string      `json:"uri"`
	Header http.Header `json:"header"`
}

func newAuthUpstream(t *testing.T) (*authUpstream, string) {
	u := &authUpstream{}
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sr := seenRequest{URI: r.URL.RequestURI(), Header: r.Header.Clone()}
		u.mu.Lock()
		u.seen = append(u.seen, sr)
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(sr) //nolint:errcheck
	}))
	t.Cleanup(s.Close)
	return u, s.Listener.Addr().String()
}

func (u *authUpstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.seen)
}

func (u *authUpstream) last(t *testing.T) seenRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		t.Fatal("the upstream saw no request")
	}
	return u.seen[len(u.seen)-1]
}

// checkIdentity checks that the upstream's last request was for uri and carried exactly
// the identity headers want (one value each), no other Ferry-Auth-* header, nothing
// the client forged, and none of the module's cookies.
func (u *authUpstream) checkIdentity(t *testing.T, uri string, want map[string]string) {
	t.Helper()
	r := u.last(t)
	if r.URI != uri {
		t.Errorf("upstream request URI = %q, want %q", r.URI, uri)
	}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream header %s = %q, want [%q]", k, got, v)
		}
	}
	for k, vs := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), "ferry-auth-") {
			if _, ok := want[k]; !ok {
				t.Errorf("upstream got unexpected header %s: %q", k, vs)
			}
		}
		for _, v := range vs {
			if strings.Contains(v, "forged") {
				t.Errorf("upstream got the client's forged %s: %q", k, v)
			}
		}
	}
	if c := r.Header.Get("Cookie"); strings.Contains(c, "ferry_session") {
		t.Errorf("upstream Cookie = %q, want none of the module's cookies", c)
	}
}

// authBrowser is a client with a cookie jar that follows redirects between the relay's
// edge (every named host) and identity providers on 127.0.0.1 (dialled as they are),
// trusting the relay's CA and the providers' CAs, and records every answer it gets.
type authBrowser struct {
	*http.Client
	jar  *cookiejar.Jar
	mu   sync.Mutex
	hops []authHop
}

type authHop struct {
	method string
	url    *url.URL
	status int
	loc    string
}

func (r *relayEnv) authBrowser(t *testing.T, providerCAs ...[]byte) *authBrowser {
	t.Helper()
	roots := r.CA.Pool.Clone()
	for _, p := range providerCAs {
		if !roots.AppendCertsFromPEM(p) {
			t.Fatal("bad provider CA PEM")
		}
	}
	edge := r.Srv.HTTPSAddr().String()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			if net.ParseIP(host) == nil {
				addr = edge
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}
	t.Cleanup(tr.CloseIdleConnections)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &authBrowser{jar: jar}
	b.Client = &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: roundTripFunc(func(req *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			b.mu.Lock()
			b.hops = append(b.hops, authHop{method: req.Method, url: req.URL, status: resp.StatusCode, loc: resp.Header.Get("Location")})
			b.mu.Unlock()
		}
		return resp, err
	})}
	return b
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// get fetches rawURL, following redirects, with extra headers; it returns the last
// answer, its body, and the hops it took.
func (b *authBrowser) get(t *testing.T, rawURL string, hdr map[string]string) (*http.Response, string, []authHop) {
	t.Helper()
	b.mu.Lock()
	b.hops = nil
	b.mu.Unlock()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	b.mu.Lock()
	defer b.mu.Unlock()
	return resp, string(body), append([]authHop(nil), b.hops...)
}

// hasSession says whether the jar holds the module's session cookie for rawURL.
func (b *authBrowser) hasSession(rawURL string) bool {
	u, _ := url.Parse(rawURL)
	for _, c := range b.jar.Cookies(u) {
		if c.Name == "ferry_session" {
			return true
		}
	}
	return false
}

// lockedBuffer collects a relay's log.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// authRoute returns the first route of an edge answer and its auth module kind.
func authRoute(t *testing.T, edge map[string]any, kind string) map[string]any {
	t.Helper()
	routes, _ := edge["routes"].([]any)
	if len(routes) == 0 {
		t.Fatalf("edge answer has no routes: %v", edge)
	}
	m, _ := routes[0].(map[string]any)[kind].(map[string]any)
	if m == nil {
		t.Fatalf("edge route has no %s module: %v", kind, routes[0])
	}
	return m
}

// TestOIDCEdge: an HTTPS edge route with the oidc module, through the real relay and a
// real agent: the relay trusts the issuer's private CA (oauth_ca_roots) for discovery,
// token, JWKS and user info; a browser is sent to the issuer and back to the relay's
// /oauth2/callback, then to the page it asked for, where the upstream sees the user's
// identity headers and not the ones the browser forged; a user outside email_domains
// gets 403 and never reaches the upstream; the API never shows the client secret.
func TestOIDCEdge(t *testing.T) {
	const host, secret = "app.oidc-edge.test", "oidc-edge-client-secret-9c1e"
	idp := oauthtest.NewOIDC(t, oauthtest.OIDCOptions{ClientSecret: secret})
	idp.AddUser(oauthtest.User{Sub: "user-2", Name: "Bob Other", Email: "bob@other.example", EmailVerified: true})
	r := newOAuthRelay(t, idp.WriteCA(t, t.TempDir()), nil, host)
	c := r.api(r.Account)
	r.ReserveDomain(t, "", host)
	up, upAddr := newAuthUpstream(t)
	r.startAgent(&forward.Tunnel{Name: "web", Proto: "labeled", Labels: map[string]string{"app": "oidc"}, Addr: upAddr})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"app": "oidc"}})["id"].(string)
	edge := c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{host + ":443"},
		"routes": []map[string]any{{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": group},
			"oidc": map[string]any{"issuer": idp.Issuer, "client_id": idp.ClientID, "client_secret": secret,
				"email_domains": []string{"example.com"}}}}})
	edgeID := edge["id"].(string)

	// The API shows the module but never the client secret.
	if got := authRoute(t, edge, "oidc")["client_secret"]; got != "<hidden>" {
		t.Errorf("POST /edges/https answer: client_secret %v, want <hidden>", got)
	}
	shown := c.must(200, "GET", "/edges/https/"+edgeID, nil)
	if m := authRoute(t, shown, "oidc"); m["client_secret"] != "<hidden>" || m["issuer"] != idp.Issuer || m["client_id"] != idp.ClientID {
		t.Errorf("GET /edges/https/%s: oidc = %v, want the issuer and client id with client_secret <hidden>", edgeID, m)
	}
	if raw, _ := json.Marshal(shown); strings.Contains(string(raw), secret) {
		t.Errorf("GET /edges/https/%s shows the client secret: %s", edgeID, raw)
	}

	base := "https://" + host + ":" + port(r.Srv.HTTPSAddr().String())
	b := r.authBrowser(t, idp.CA.PEM)
	forged := map[string]string{"Ferry-Auth-User-Email": "forged@evil.example", "Ferry-Auth-User-Id": "forged"}
	resp, body, hops := b.get(t, base+"/private/page?x=1", forged)
	if resp.StatusCode != 200 {
		t.Fatalf("GET /private/page = %d %q after %v", resp.StatusCode, body, hops)
	}
	// relay → issuer's authorize → relay's callback → the page.
	issuer, _ := url.Parse(idp.Issuer)
	want := []struct {
		host, path string
		status     int
	}{{host, "/private/page", 302}, {issuer.Hostname(), "/authorize", 302}, {host, "/oauth2/callback", 302}, {host, "/private/page", 200}}
	if len(hops) != len(want) {
		t.Fatalf("login took %d hops, want %d: %+v", len(hops), len(want), hops)
	}
	for i, w := range want {
		if h := hops[i]; h.url.Hostname() != w.host || h.url.Path != w.path || h.status != w.status {
			t.Errorf("hop %d = %s %s%s %d, want %s%s %d", i, h.method, h.url.Host, h.url.Path, h.status, w.host, w.path, w.status)
		}
	}
	if got := idp.LastAuthorize().Get("redirect_uri"); got != base+"/oauth2/callback" {
		t.Errorf("redirect_uri at the issuer = %q, want %q", got, base+"/oauth2/callback")
	}
	alice := map[string]string{"Ferry-Auth-User-Id": "user-1", "Ferry-Auth-User-Name": "Alice Example", "Ferry-Auth-User-Email": "alice@example.com"}
	up.checkIdentity(t, "/private/page?x=1", alice)
	var echoed seenRequest
	if err := json.Unmarshal([]byte(body), &echoed); err != nil || echoed.Header.Get("Ferry-Auth-User-Email") != "alice@example.com" {
		t.Errorf("page = %q (%v), want the upstream's echo with alice's email", body, err)
	}

	// Logged in: straight to the upstream, the forged headers replaced again.
	resp, _, hops = b.get(t, base+"/again", forged)
	if resp.StatusCode != 200 || len(hops) != 1 {
		t.Fatalf("GET /again with a session = %d after %d hops, want 200 at once", resp.StatusCode, len(hops))
	}
	up.checkIdentity(t, "/again", alice)

	// A verified user outside email_domains: 403 at the callback, no session, no upstream.
	idp.LoginAs("user-2")
	before := up.count()
	other := r.authBrowser(t, idp.CA.PEM)
	resp, body, hops = other.get(t, base+"/private/page", nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "bob@other.example") {
		t.Errorf("user outside email_domains = %d %q, want 403 naming the address", resp.StatusCode, body)
	}
	if last := hops[len(hops)-1]; last.url.Path != "/oauth2/callback" {
		t.Errorf("denied login ended at %s, want the callback", last.url)
	}
	if up.count() != before {
		t.Error("a user outside email_domains reached the upstream")
	}
	if other.hasSession(base) {
		t.Error("a user outside email_domains got a session cookie")
	}
	if want := `ferry_relay_module_rejections_total{module="oauth"} 1`; !strings.Contains(scrapeMetrics(t, r), want) {
		t.Errorf("/metrics lacks %q after the denial", want)
	}
	// Alice's session is unaffected.
	if resp, _, _ := b.get(t, base+"/still", nil); resp.StatusCode != 200 {
		t.Errorf("alice after bob's denial = %d, want 200", resp.StatusCode)
	}
}

// TestOIDCEdgeUntrustedIssuer: without oauth_ca_roots the relay does not trust an
// issuer with a private CA: the browser gets 502 instead of a redirect, and the log
// says why.
func TestOIDCEdgeUntrustedIssuer(t *testing.T) {
	const host = "app.untrusted-oidc.test"
	idp := oauthtest.NewOIDC(t, oauthtest.OIDCOptions{})
	var log lockedBuffer
	r := newOAuthRelay(t, "", &log, host)
	c := r.api(r.Account)
	r.ReserveDomain(t, "", host)
	fixed := c.must(201, "POST", "/backends/http_response", map[string]any{"status_code": 200, "body": "secret page"})["id"].(string)
	c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{host + ":443"},
		"routes": []map[string]any{{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": fixed},
			"oidc": map[string]any{"issuer": idp.Issuer, "client_id": idp.ClientID, "client_secret": idp.ClientSecret}}}})
	b := r.authBrowser(t, idp.CA.PEM)
	resp, body, hops := b.get(t, "https://"+host+":"+port(r.Srv.HTTPSAddr().String())+"/", nil)
	if resp.StatusCode != http.StatusBadGateway || len(hops) != 1 || strings.Contains(body, "secret page") {
		t.Errorf("GET with an untrusted issuer = %d after %d hops %q, want 502 from the relay", resp.StatusCode, len(hops), body)
	}
	if idp.AuthorizeCount() != 0 {
		t.Error("the browser was sent to the issuer")
	}
	if !strings.Contains(log.String(), "certificate signed by unknown authority") {
		t.Errorf("relay log does not say the issuer's certificate was refused:\n%s", log.String())
	}
}

// TestSAMLEdge: HTTPS edge routes with the saml module, through the real relay: the SP
// metadata at https://HOST/saml/metadata carries the key the relay keeps in its data
// dir; with the IdP's metadata inline (idp_metadata) and fetched by the relay
// (idp_metadata_url, over oauth_ca_roots), the browser goes to the IdP, posts its
// SAMLResponse to /saml/acs and lands on the page it asked for with the user's
// identity headers; forged headers are dropped, a replayed response is refused, and
// a user outside email_domains gets 403.
func TestSAMLEdge(t *testing.T) {
	const xmlHost, urlHost = "xml.saml-edge.test", "url.saml-edge.test"
	idp := oauthtest.NewSAMLIdP(t, oauthtest.SAMLOptions{})
	r := newOAuthRelay(t, idp.WriteCA(t, t.TempDir()), nil, "*.saml-edge.test")
	c := r.api(r.Account)
	r.ReserveDomain(t, "", "*.saml-edge.test")
	up, upAddr := newAuthUpstream(t)
	r.startAgent(&forward.Tunnel{Name: "web", Proto: "labeled", Labels: map[string]string{"app": "saml"}, Addr: upAddr})
	group := c.must(201, "POST", "/backends/tunnel_group", map[string]any{"labels": map[string]string{"app": "saml"}})["id"].(string)
	for host, mod := range map[string]map[string]any{
		xmlHost: {"idp_metadata": string(idp.MetadataXML(t)), "email_domains": []string{"example.com"}},
		urlHost: {"idp_metadata_url": idp.BaseURL + "/metadata", "email_domains": []string{"example.com"}},
	} {
		c.must(201, "POST", "/edges/https", map[string]any{"hostports": []string{host + ":443"},
			"routes": []map[string]any{{"match_type": "path_prefix", "match": "/", "backend": map[string]string{"backend_id": group}, "saml": mod}}})
	}
	spCert := relaySAMLCert(t, r)
	b := r.authBrowser(t, idp.CA.PEM)
	alice := map[string]string{"Ferry-Auth-User-Id": "alice", "Ferry-Auth-User-Name": "Alice Example", "Ferry-Auth-User-Email": "alice@example.com"}

	for _, host := range []string{xmlHost, urlHost} {
		base := "https://" + host + ":" + port(r.Srv.HTTPSAddr().String())
		// The SP metadata: this host's entity ID and ACS, the relay's own SAML key; the
		// IdP is given it, as an administrator would.
		resp, md, _ := b.get(t, base+"/saml/metadata", nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/samlmetadata+xml" {
			t.Fatalf("%s: GET /saml/metadata = %d %s", host, resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var ed saml.EntityDescriptor
		if err := xml.Unmarshal([]byte(md), &ed); err != nil || len(ed.SPSSODescriptors) == 0 {
			t.Fatalf("%s: SP metadata: %v\n%s", host, err, md)
		}
		if ed.EntityID != base+"/saml/metadata" || ed.SPSSODescriptors[0].AssertionConsumerServices[0].Location != base+"/saml/acs" {
			t.Errorf("%s: SP entity ID %q ACS %q, want this host's /saml/metadata and /saml/acs", host, ed.EntityID,
				ed.SPSSODescriptors[0].AssertionConsumerServices[0].Location)
		}
		for _, acs := range ed.SPSSODescriptors[0].AssertionConsumerServices {
			if acs.Binding != saml.HTTPPostBinding {
				t.Errorf("%s: SP metadata offers a %s consumer service; the relay serves HTTP-POST only", host, acs.Binding)
			}
		}
		if !spKeyIn(ed, spCert) {
			t.Errorf("%s: the SP metadata does not carry the certificate of %s", host, server.SAMLKeyFile)
		}
		if err := idp.AddServiceProvider([]byte(md)); err != nil {
			t.Fatal(err)
		}

		before := up.count()
		resp, body, form, action := idp.Login(t, b.Client, base+"/docs?page=2")
		if resp.StatusCode != 200 {
			t.Fatalf("%s: after the ACS = %d %q", host, resp.StatusCode, body)
		}
		if action != base+"/saml/acs" {
			t.Errorf("%s: the IdP posted to %s, want the relay's ACS", host, action)
		}
		if raw, err := base64.StdEncoding.DecodeString(form.Get("SAMLResponse")); err != nil || !strings.Contains(string(raw), "EncryptedAssertion") {
			t.Errorf("%s: the IdP's response has no EncryptedAssertion (err %v): it should encrypt to the relay's SP key", host, err)
		}
		if up.count() != before+1 {
			t.Errorf("%s: the upstream saw %d requests for one login, want 1", host, up.count()-before)
		}
		up.checkIdentity(t, "/docs?page=2", alice)

		// Logged in: straight through, forged headers dropped.
		resp, _, hops := b.get(t, base+"/next", map[string]string{"Ferry-Auth-User-Email": "forged@evil.example", "ferry-auth-user-id": "forged"})
		if resp.StatusCode != 200 || len(hops) != 1 {
			t.Fatalf("%s: GET /next with a session = %d after %d hops, want 200 at once", host, resp.StatusCode, len(hops))
		}
		up.checkIdentity(t, "/next", alice)

		// The same SAMLResponse again: its login state is spent.
		resp, _ = oauthtest.PostForm(t, b.Client, action, form)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: replayed SAMLResponse = %d, want 400", host, resp.StatusCode)
		}
	}

	// A user outside email_domains: 403, no upstream, no session.
	idp.SetSession(func(s *saml.Session) {
		s.NameID, s.UserEmail, s.UserCommonName = "bob", "bob@other.example", "Bob Other"
	})
	base := "https://" + xmlHost + ":" + port(r.Srv.HTTPSAddr().String())
	before := up.count()
	other := r.authBrowser(t, idp.CA.PEM)
	resp, body, _, _ := idp.Login(t, other.Client, base+"/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "bob@other.example") {
		t.Errorf("SAML user outside email_domains = %d %q, want 403 naming the address", resp.StatusCode, body)
	}
	if up.count() != before || other.hasSession(base) {
		t.Error("a SAML user outside email_domains reached the upstream or got a session")
	}
}

// relaySAMLCert reads the certificate of the SP key the relay made in its data dir.
func relaySAMLCert(t *testing.T, r *relayEnv) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(r.Opts.Config.Data, server.SAMLKeyFile))
	if err != nil {
		t.Fatalf("the relay's SAML key: %v", err)
	}
	for blk, rest := pem.Decode(data); blk != nil; blk, rest = pem.Decode(rest) {
		if blk.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(blk.Bytes)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	t.Fatalf("no CERTIFICATE in %s", server.SAMLKeyFile)
	return nil
}

// spKeyIn says whether the SP metadata offers cert.
func spKeyIn(ed saml.EntityDescriptor, cert *x509.Certificate) bool {
	for _, sp := range ed.SPSSODescriptors {
		for _, kd := range sp.KeyDescriptors {
			for _, c := range kd.KeyInfo.X509Data.X509Certificates {
				der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(c.Data), ""))
				if err == nil && bytes.Equal(der, cert.Raw) {
					return true
				}
			}
		}
	}
	return false
}
