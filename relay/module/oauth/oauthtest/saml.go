package oauthtest

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"html"
	"io"
	"log"
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

// SAMLOptions shape a fake SAML identity provider.
type SAMLOptions struct {
	// BaseURL is where the caller serves the SAMLIdP value (an http.Handler), e.g.
	// https://idp.example.com; the metadata is at BaseURL/metadata and single sign-on
	// at BaseURL/sso. Empty: NewSAMLIdP starts its own TLS server on 127.0.0.1 and
	// BaseURL is its URL.
	BaseURL string
	// SPClient fetches the metadata of a service provider the IdP was not given with
	// AddServiceProvider: an SP's entity ID is its metadata URL. nil: only added SPs
	// are known.
	SPClient *http.Client
}

// SAMLIdP is crewjam/saml's IdentityProvider (signed responses, assertions encrypted
// to the SP's key) with a session provider that signs one user in at once (no login
// page) and that knows service providers by fetching their metadata URL.
type SAMLIdP struct {
	// IdP is the crewjam identity provider (its fields may be changed before use).
	IdP *saml.IdentityProvider
	// BaseURL is where the IdP is served.
	BaseURL string
	// Server is the IdP's own server when Options.BaseURL was empty.
	Server

	spClient *http.Client
	handler  http.Handler

	mu       sync.Mutex
	session  saml.Session
	notAfter *time.Time
	ssoCalls int
	sps      map[string]*saml.EntityDescriptor
}

// AliceSession is the session a SAML IdP starts with: NameID "alice" (persistent),
// email alice@example.com, name Alice Example.
var AliceSession = saml.Session{
	ID:             "s1",
	NameID:         "alice",
	NameIDFormat:   string(saml.PersistentNameIDFormat),
	UserEmail:      "alice@example.com",
	UserCommonName: "Alice Example",
	UserName:       "alice",
}

// NewSAMLIdP returns an IdP signing in AliceSession's user. SAML_DEBUG=1 in the
// environment logs the IdP's errors to stderr.
func NewSAMLIdP(t testing.TB, o SAMLOptions) *SAMLIdP {
	t.Helper()
	key, cert := SelfSigned(t, "idp")
	f := &SAMLIdP{BaseURL: strings.TrimSuffix(o.BaseURL, "/"), spClient: o.SPClient, session: AliceSession,
		sps: map[string]*saml.EntityDescriptor{}}
	f.IdP = &saml.IdentityProvider{
		Key:                     key,
		Certificate:             cert,
		Logger:                  log.New(io.Discard, "", 0),
		SessionProvider:         sessionProvider{f},
		ServiceProviderProvider: spProvider{f},
		AssertionMaker:          assertionMaker{f},
		SignatureMethod:         "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
	}
	if os.Getenv("SAML_DEBUG") != "" {
		f.IdP.Logger = log.New(os.Stderr, "idp: ", 0)
	}
	setURLs := func(base string) {
		f.BaseURL = base
		u, err := url.Parse(base)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			t.Fatalf("oauthtest: SAML IdP base URL %q: want https://HOST", base)
		}
		f.IdP.MetadataURL = url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path + "/metadata"}
		f.IdP.SSOURL = url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path + "/sso"}
		f.handler = f.IdP.Handler()
	}
	if f.BaseURL == "" {
		f.HTTPS, f.CA = startTLS(t, "Fake SAML IdP CA", f, setURLs)
	} else {
		setURLs(f.BaseURL)
	}
	return f
}

// ServeHTTP serves the IdP (for a caller serving it at Options.BaseURL).
func (f *SAMLIdP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == f.IdP.SSOURL.Path {
		f.mu.Lock()
		f.ssoCalls++
		f.mu.Unlock()
	}
	f.handler.ServeHTTP(w, r)
}

// MetadataXML returns the IdP's metadata (what an SP's idp_metadata takes).
func (f *SAMLIdP) MetadataXML(t testing.TB) []byte {
	t.Helper()
	b, err := xml.Marshal(f.IdP.Metadata())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// SetSession changes the session (the user) the IdP signs in from now on, starting
// from the current one.
func (f *SAMLIdP) SetSession(fn func(*saml.Session)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.session)
}

// SetSessionNotOnOrAfter puts this SessionNotOnOrAfter in the assertions from now on
// (nil: none).
func (f *SAMLIdP) SetSessionNotOnOrAfter(end *time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.notAfter = end
}

// SSOCount returns how many requests reached the single sign-on URL.
func (f *SAMLIdP) SSOCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ssoCalls
}

// AddServiceProvider registers an SP by its metadata, for IdPs that cannot fetch it.
func (f *SAMLIdP) AddServiceProvider(metadata []byte) error {
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal(metadata, &ed); err != nil {
		return err
	}
	if ed.EntityID == "" {
		return errors.New("oauthtest: SP metadata without an entityID")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sps[ed.EntityID] = &ed
	return nil
}

type sessionProvider struct{ f *SAMLIdP }

func (p sessionProvider) GetSession(http.ResponseWriter, *http.Request, *saml.IdpAuthnRequest) *saml.Session {
	p.f.mu.Lock()
	defer p.f.mu.Unlock()
	s := p.f.session
	s.CreateTime = time.Now()
	s.ExpireTime = time.Now().Add(time.Hour)
	s.Index = RandToken(8)
	return &s
}

type assertionMaker struct{ f *SAMLIdP }

func (m assertionMaker) MakeAssertion(req *saml.IdpAuthnRequest, s *saml.Session) error {
	if err := (saml.DefaultAssertionMaker{}).MakeAssertion(req, s); err != nil {
		return err
	}
	m.f.mu.Lock()
	defer m.f.mu.Unlock()
	if m.f.notAfter != nil {
		req.Assertion.AuthnStatements[0].SessionNotOnOrAfter = m.f.notAfter
	}
	return nil
}

// spProvider looks an SP up among the added ones, then by fetching its entity ID.
type spProvider struct{ f *SAMLIdP }

func (p spProvider) GetServiceProvider(r *http.Request, id string) (*saml.EntityDescriptor, error) {
	p.f.mu.Lock()
	ed, ok := p.f.sps[id]
	p.f.mu.Unlock()
	if ok {
		return ed, nil
	}
	c := p.f.spClient
	if c == nil {
		return nil, os.ErrNotExist
	}
	defer c.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(r.Context(), 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, os.ErrNotExist
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oauthtest: fetch SP metadata %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, os.ErrNotExist
	}
	ed = &saml.EntityDescriptor{}
	if err := xml.NewDecoder(resp.Body).Decode(ed); err != nil {
		return nil, err
	}
	return ed, nil
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]*)"`)
	formField  = regexp.MustCompile(`<input type="hidden" name="(SAMLResponse|RelayState)" value="([^"]*)"`)
)

// ParseResponseForm reads the IdP's auto-submitting form (HTTP-POST binding): where it
// posts and its SAMLResponse and RelayState. ok is false when body has no such form.
func ParseResponseForm(body string) (action string, form url.Values, ok bool) {
	m := formAction.FindStringSubmatch(body)
	if m == nil {
		return "", nil, false
	}
	form = url.Values{}
	for _, f := range formField.FindAllStringSubmatch(body, -1) {
		form.Set(f[1], html.UnescapeString(f[2]))
	}
	return html.UnescapeString(m[1]), form, form.Get("SAMLResponse") != ""
}

// Login does what a browser with c would: GET rawURL, which the SP redirects to this
// IdP, which answers its auto-submitting form; then POST the form to the SP's ACS as
// the page's script would, following redirects. It returns the last response and its
// body, and the form and where it was posted, for replays. The test fails unless the
// GET ends at the IdP's form.
func (f *SAMLIdP) Login(t testing.TB, c *http.Client, rawURL string) (resp *http.Response, body string, form url.Values, action string) {
	t.Helper()
	resp, body = Fetch(t, c, http.MethodGet, rawURL, nil)
	if base, _ := url.Parse(f.BaseURL); resp.StatusCode != 200 || resp.Request.URL.Host != base.Host {
		t.Fatalf("GET %s = %d at %s, want the IdP's form at %s", rawURL, resp.StatusCode, resp.Request.URL, f.BaseURL)
	}
	action, form, ok := ParseResponseForm(body)
	if !ok {
		t.Fatalf("no SAMLResponse form in the IdP's answer: %s", body)
	}
	resp, body = PostForm(t, c, action, form)
	return resp, body, form, action
}

// PostForm posts form (url-encoded) to action with c and returns the answer and its
// body.
func PostForm(t testing.TB, c *http.Client, action string, form url.Values) (*http.Response, string) {
	t.Helper()
	return Fetch(t, c, http.MethodPost, action, form)
}

// Fetch sends a request with c (a form body when form is not nil) and returns the
// answer with its body read; the test fails on a transport error.
func Fetch(t testing.TB, c *http.Client, method, rawURL string, form url.Values) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if form != nil {
		rd = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, rawURL, rd)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, rawURL, err)
	}
	return resp, string(b)
}
