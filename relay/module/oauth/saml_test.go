package oauth

import (
	"encoding/base64"
	"encoding/xml"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crewjam/saml"

	"github.com/ferrytunnel/ferry/relay/module/oauth/oauthtest"
)

// newFakeSAMLIdP serves oauthtest's SAML IdP as https://idpHost in w; it fetches SP
// metadata through w.
func newFakeSAMLIdP(t *testing.T, w *world) *oauthtest.SAMLIdP {
	t.Helper()
	f := oauthtest.NewSAMLIdP(t, oauthtest.SAMLOptions{BaseURL: "https://" + idpHost, SPClient: &http.Client{Transport: worldTransport{w}}})
	w.serve(idpHost, f)
	return f
}

// worldTransport dials w's servers with the roots w has when the request is made
// (w.transport takes them from the first server w starts).
type worldTransport struct{ w *world }

func (t worldTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return t.w.transport().RoundTrip(r)
}

func samlWorld(t *testing.T, mod func(*Config)) (*world, *oauthtest.SAMLIdP) {
	t.Helper()
	w := newWorld(t)
	idp := newFakeSAMLIdP(t, w)
	spKey, spCert := oauthtest.SelfSigned(t, appHost)
	cfg := Config{
		Provider:       "saml",
		IdPMetadataXML: idp.MetadataXML(t),
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

func submitForm(t *testing.T, c *http.Client, action string, form url.Values) (*http.Response, string) {
	t.Helper()
	return oauthtest.PostForm(t, c, action, form)
}

func TestSAMLLoginFlow(t *testing.T) {
	w, idp := samlWorld(t, func(c *Config) { c.AllowDomains = []string{"example.com"} })
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
	resp, body, form, action := idp.Login(t, b.Client, "https://"+appHost+"/docs?page=2")
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
	_, form, ok := oauthtest.ParseResponseForm(body)
	if !ok {
		t.Fatalf("no SAMLResponse form in the IdP's answer: %s", body)
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
	w, idp := samlWorld(t, func(c *Config) { c.AllowDomains = []string{"corp.example"} })
	resp, body, _, _ := idp.Login(t, w.browser().Client, "https://"+appHost+"/")
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
	idp.SetSessionNotOnOrAfter(&end)
	b := w.browser()
	if resp, _, _, _ := idp.Login(t, b.Client, "https://"+appHost+"/"); resp.StatusCode != 200 {
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
	idp := newFakeSAMLIdP(t, w)
	spKey, spCert := oauthtest.SelfSigned(t, appHost)
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
	if resp, body, _, _ := idp.Login(t, w.browser().Client, "https://"+appHost+"/"); resp.StatusCode != 200 {
		t.Fatalf("login = %d %q", resp.StatusCode, body)
	}
}
