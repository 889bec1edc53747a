package oauth

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/xml"
	"html"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crewjam/saml"
)

// rsaKey returns the test key for name, generated once per test binary (RSA key
// generation is slow under the race detector).
func rsaKey(t *testing.T, name string) *rsa.PrivateKey {
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

func selfSigned(t *testing.T, cn string) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key := rsaKey(t, cn)
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

// fakeSAMLIdP is crewjam/saml's IdentityProvider with a session provider that
// signs a fixed user in, and that looks SPs up by fetching their metadata URL.
type fakeSAMLIdP struct {
	idp *saml.IdentityProvider

	mu       sync.Mutex
	session  saml.Session
	notAfter *time.Time
	ssoCalls int
}

func newFakeSAMLIdP(t *testing.T, w *world) *fakeSAMLIdP {
	t.Helper()
	key, cert := selfSigned(t, "idp")
	f := &fakeSAMLIdP{session: saml.Session{
		ID:             "s1",
		NameID:         "alice",
		NameIDFormat:   string(saml.PersistentNameIDFormat),
		UserEmail:      "alice@example.com",
		UserCommonName: "Alice Example",
		UserName:       "alice",
	}}
	f.idp = &saml.IdentityProvider{
		Key:                     key,
		Certificate:             cert,
		Logger:                  log.New(io.Discard, "", 0),
		MetadataURL:             url.URL{Scheme: "https", Host: idpHost, Path: "/metadata"},
		SSOURL:                  url.URL{Scheme: "https", Host: idpHost, Path: "/sso"},
		SessionProvider:         f,
		ServiceProviderProvider: spFetcher{w},
		AssertionMaker:          f,
		SignatureMethod:         "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
	}
	if os.Getenv("SAML_DEBUG") != "" {
		f.idp.Logger = log.New(os.Stderr, "idp: ", 0)
	}
	h := f.idp.Handler()
	w.serve(idpHost, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sso" {
			f.mu.Lock()
			f.ssoCalls++
			f.mu.Unlock()
		}
		h.ServeHTTP(rw, r)
	}))
	return f
}

func (f *fakeSAMLIdP) GetSession(http.ResponseWriter, *http.Request, *saml.IdpAuthnRequest) *saml.Session {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.session
	s.CreateTime = time.Now()
	s.ExpireTime = time.Now().Add(time.Hour)
	s.Index = randToken(8)
	return &s
}

func (f *fakeSAMLIdP) MakeAssertion(req *saml.IdpAuthnRequest, s *saml.Session) error {
	if err := (saml.DefaultAssertionMaker{}).MakeAssertion(req, s); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.notAfter != nil {
		req.Assertion.AuthnStatements[0].SessionNotOnOrAfter = f.notAfter
	}
	return nil
}

func (f *fakeSAMLIdP) metadataXML(t *testing.T) []byte {
	t.Helper()
	b, err := xml.Marshal(f.idp.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// spFetcher looks an SP up by fetching its entity ID, which is its metadata URL.
type spFetcher struct{ w *world }

func (s spFetcher) GetServiceProvider(_ *http.Request, id string) (*saml.EntityDescriptor, error) {
	tr := s.w.transport()
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Get(id)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, os.ErrNotExist
	}
	var ed saml.EntityDescriptor
	if err := xml.NewDecoder(resp.Body).Decode(&ed); err != nil {
		return nil, err
	}
	return &ed, nil
}

func samlWorld(t *testing.T, mod func(*Config)) (*world, *fakeSAMLIdP) {
	t.Helper()
	w := newWorld(t)
	idp := newFakeSAMLIdP(t, w)
	spKey, spCert := selfSigned(t, appHost)
	cfg := Config{
		Provider:       "saml",
		IdPMetadataXML: idp.metadataXML(t),
		SPKey:          spKey,
		SPCert:         spCert,
		CookieSecret:   testSecret(t),
		HTTPClient:     w.providerClient(),
		Now:            w.clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w.startApp(m)
	return w, idp
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	formField  = regexp.MustCompile(`<input type="hidden" name="(SAMLResponse|RelayState)" value="([^"]*)"`)
)

// samlLogin follows the browser through the IdP's auto-submitting form: GET the
// protected URL (redirected to the IdP, which answers the form), then POST the form
// to the ACS as the browser's script would, and follow on. It returns the form's
// fields too, for replays.
func samlLogin(t *testing.T, b *browser, rawURL string) (*http.Response, string, url.Values, string) {
	t.Helper()
	resp, body := b.get(rawURL, nil)
	if resp.StatusCode != 200 || resp.Request.URL.Host != idpHost {
		t.Fatalf("GET %s = %d at %s, want the IdP's form", rawURL, resp.StatusCode, resp.Request.URL)
	}
	m := formAction.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no form in the IdP's answer: %s", body)
	}
	action := html.UnescapeString(m[1])
	form := url.Values{}
	for _, f := range formField.FindAllStringSubmatch(body, -1) {
		form.Set(f[1], html.UnescapeString(f[2]))
	}
	if form.Get("SAMLResponse") == "" {
		t.Fatalf("no SAMLResponse in the IdP's form: %s", body)
	}
	resp, body = submitForm(t, b.Client, action, form)
	return resp, body, form, action
}

func submitForm(t *testing.T, c *http.Client, action string, form url.Values) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, action, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return do(t, c, req)
}

func TestSAMLLoginFlow(t *testing.T) {
	w, _ := samlWorld(t, func(c *Config) { c.AllowDomains = []string{"example.com"} })
	b := w.browser()

	// The redirect to the IdP carries a signed AuthnRequest and sets a SameSite=None
	// state cookie (the IdP POSTs back cross-site).
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/docs?page=2", nil)
	resp, _ := do(t, b.noFollow(), req)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || loc.Host != idpHost || loc.Path != "/sso" {
		t.Fatalf("unauthenticated GET = %d to %s, want 302 to the IdP's SSO URL", resp.StatusCode, loc)
	}
	for _, k := range []string{"SAMLRequest", "RelayState", "SigAlg", "Signature"} {
		if loc.Query().Get(k) == "" {
			t.Errorf("redirect to the IdP has no %s", k)
		}
	}
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, DefaultCookiePrefix+stateSuffix) && (c.SameSite != http.SameSiteNoneMode || !c.Secure) {
			t.Errorf("SAML state cookie SameSite %v Secure %v, want None and Secure", c.SameSite, c.Secure)
		}
	}

	b = w.browser()
	resp, body, form, action := samlLogin(t, b, "https://"+appHost+"/docs?page=2")
	if resp.StatusCode != 200 || body != "upstream ok /docs?page=2" {
		t.Fatalf("after the ACS = %d %q, want the upstream at /docs?page=2", resp.StatusCode, body)
	}
	if raw, err := base64.StdEncoding.DecodeString(form.Get("SAMLResponse")); err != nil || !strings.Contains(string(raw), "EncryptedAssertion") {
		t.Errorf("the IdP's response has no EncryptedAssertion (err %v): the SP metadata should offer an encryption key", err)
	}
	if action != "https://"+appHost+PathSAMLACS {
		t.Errorf("IdP posted to %s, want the ACS", action)
	}
	acs, _ := b.hopTo(appHost, PathSAMLACS)
	if acs.status != http.StatusSeeOther || acs.location != "/docs?page=2" {
		t.Errorf("ACS answered %d to %q, want 303 to /docs?page=2", acs.status, acs.location)
	}
	checkSessionCookieAttrs(t, acs)
	assertUpstreamIdentity(t, w.up, map[string]string{
		HeaderUserID: "alice", HeaderUserName: "Alice Example", HeaderUserEmail: "alice@example.com",
	})

	// Logged in: straight through, forged header stripped.
	resp, _ = b.get("https://"+appHost+"/next", map[string]string{"Ferry-Auth-User-Id": "forged"})
	if resp.StatusCode != 200 {
		t.Fatalf("second GET = %d", resp.StatusCode)
	}
	assertUpstreamIdentity(t, w.up, map[string]string{
		HeaderUserID: "alice", HeaderUserName: "Alice Example", HeaderUserEmail: "alice@example.com",
	})

	// Replaying the SAMLResponse: its state cookie is gone.
	resp, _ = submitForm(t, b.noFollow(), action, form)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("replayed SAMLResponse = %d, want 400", resp.StatusCode)
	}
	// In another browser, it has no state cookie at all.
	resp, _ = submitForm(t, w.browser().noFollow(), action, form)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("SAMLResponse from another browser = %d, want 400", resp.StatusCode)
	}
}

func TestSAMLTamperedResponse(t *testing.T) {
	w, _ := samlWorld(t, nil)
	b := w.browser()
	resp, body := b.get("https://"+appHost+"/", nil)
	if resp.StatusCode != 200 || resp.Request.URL.Host != idpHost {
		t.Fatalf("GET = %d at %s", resp.StatusCode, resp.Request.URL)
	}
	form := url.Values{}
	for _, f := range formField.FindAllStringSubmatch(body, -1) {
		form.Set(f[1], html.UnescapeString(f[2]))
	}
	// A response for a request this browser did not make: swap in another request's
	// RelayState is caught by the state; here, keep the state and break the response.
	form.Set("SAMLResponse", form.Get("SAMLResponse")[:len(form.Get("SAMLResponse"))-8]+"AAAAAAA=")
	resp, _ = submitForm(t, b.noFollow(), "https://"+appHost+PathSAMLACS, form)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("tampered SAMLResponse = %d, want 403", resp.StatusCode)
	}
	if w.up.count() != 0 {
		t.Error("the upstream was reached")
	}
}

func TestSAMLDenied(t *testing.T) {
	w, _ := samlWorld(t, func(c *Config) { c.AllowDomains = []string{"corp.example"} })
	resp, body, _, _ := samlLogin(t, w.browser(), "https://"+appHost+"/")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "alice@example.com") {
		t.Fatalf("denied SAML user = %d %q, want 403 naming the address", resp.StatusCode, body)
	}
	if w.up.count() != 0 {
		t.Error("the upstream was reached by a denied user")
	}
}

func TestSAMLSessionNotOnOrAfter(t *testing.T) {
	w, idp := samlWorld(t, nil)
	end := w.clk.Now().Add(30 * time.Minute).UTC().Truncate(time.Second)
	idp.mu.Lock()
	idp.notAfter = &end
	idp.mu.Unlock()
	b := w.browser()
	if resp, _, _, _ := samlLogin(t, b, "https://"+appHost+"/"); resp.StatusCode != 200 {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	// Re-checks apply the constraints again without the IdP...
	w.clk.Advance(10 * time.Minute)
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	if resp, _ := do(t, b.noFollow(), req); resp.StatusCode != 200 {
		t.Fatalf("GET after the interval = %d, want 200", resp.StatusCode)
	}
	// ...and the session ends at the assertion's SessionNotOnOrAfter.
	w.clk.Advance(21 * time.Minute)
	req, _ = http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	resp, _ := do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://"+idpHost+"/sso") {
		t.Fatalf("GET after SessionNotOnOrAfter = %d to %q, want 302 to the IdP", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestSAMLMetadata(t *testing.T) {
	w, _ := samlWorld(t, nil)
	resp, body := w.browser().get("https://"+appHost+PathSAMLMetadata, nil)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/samlmetadata+xml" {
		t.Fatalf("GET metadata = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal([]byte(body), &ed); err != nil {
		t.Fatal(err)
	}
	if ed.EntityID != "https://"+appHost+PathSAMLMetadata {
		t.Errorf("entityID = %q", ed.EntityID)
	}
	if acs := ed.SPSSODescriptors[0].AssertionConsumerServices[0]; acs.Location != "https://"+appHost+PathSAMLACS || acs.Binding != saml.HTTPPostBinding {
		t.Errorf("ACS = %+v", acs)
	}
	if w.up.count() != 0 {
		t.Error("metadata request reached the upstream")
	}
}

func TestSAMLMetadataURL(t *testing.T) {
	// IdP metadata by URL: fetched on first use.
	w := newWorld(t)
	newFakeSAMLIdP(t, w)
	spKey, spCert := selfSigned(t, appHost)
	m, err := New(Config{
		Provider:       "saml",
		IdPMetadataURL: "https://" + idpHost + "/metadata",
		SPKey:          spKey,
		SPCert:         spCert,
		CookieSecret:   testSecret(t),
		HTTPClient:     w.providerClient(),
		Now:            w.clk.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	w.startApp(m)
	if resp, body, _, _ := samlLogin(t, w.browser(), "https://"+appHost+"/"); resp.StatusCode != 200 {
		t.Fatalf("login = %d %q", resp.StatusCode, body)
	}
}
