package oauth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/crewjam/saml"
	"golang.org/x/oauth2"
)

// Paths the middleware answers itself, on every host it serves. The SAML ones only
// with the saml provider; /oauth2/callback only with the others.
const (
	PathCallback     = "/oauth2/callback"
	PathAuthorize    = "/oauth2/authorize"
	PathLogout       = "/oauth2/logout"
	PathSAMLACS      = "/saml/acs"
	PathSAMLMetadata = "/saml/metadata"
)

// Identity headers set for the upstream; every client-sent header starting with
// "Ferry-Auth-" is removed first. Providers add more: Ferry-Auth-Github-Login, and
// Ferry-Auth-Github-Organization / Ferry-Auth-Github-Team when an org or team
// constraint matched.
const (
	HeaderUserID    = "Ferry-Auth-User-Id"
	HeaderUserName  = "Ferry-Auth-User-Name"
	HeaderUserEmail = "Ferry-Auth-User-Email"
	headerPrefix    = "ferry-auth-"
)

// Middleware puts a login with the configured provider in front of a handler. It is
// safe for concurrent use.
type Middleware struct {
	cfg    Config
	client *http.Client
	log    *slog.Logger
	now    func() time.Time
	sealer *sealer
	policy policy
	digest string

	oauth oauthProvider // oauth and oidc providers
	saml  *samlProvider // the saml provider

	// Re-checks of one session are shared by the requests that arrive together, and
	// their result is remembered for a while, so that parallel requests carrying the
	// old cookie neither hit the provider again nor reuse a rotated refresh token.
	mu       sync.Mutex
	inflight map[string]*recheckCall
	recent   map[string]recheckResult
}

type recheckCall struct {
	done chan struct{}
	s    *session
	err  error
}

type recheckResult struct {
	s     *session
	err   error
	until time.Time
}

const (
	// recentTTL is how long a re-check's result is reused for requests that still
	// carry the session's previous cookie.
	recentTTL = time.Minute
	// failureTTL is how long a provider failure is reused, so that an outage does not
	// turn every request into a provider call that times out.
	failureTTL = 5 * time.Second
	maxRecent  = 10000
)

// errRevoked ends a session: the provider no longer accepts the grant or the user,
// or the constraints no longer let the user in.
var errRevoked = errors.New("session revoked")

// loginState is kept in a short-lived cookie between sending the browser to the
// provider and its return.
type loginState struct {
	State    string `json:"s"`
	Verifier string `json:"v,omitempty"` // PKCE
	Nonce    string `json:"n,omitempty"` // OIDC
	SAMLID   string `json:"q,omitempty"` // SAML AuthnRequest ID
	Return   string `json:"r"`
	Host     string `json:"h"`
	Expires  int64  `json:"e"`
}

// session is the content of the session cookie. Times are Unix seconds.
type session struct {
	SID      string            `json:"sid"`
	Host     string            `json:"h"`
	UserID   string            `json:"uid"`
	Name     string            `json:"nm,omitempty"`
	Email    string            `json:"em,omitempty"`
	Extra    map[string]string `json:"x,omitempty"`
	Token    *storedToken      `json:"t,omitempty"`
	Created  int64             `json:"c"`
	Checked  int64             `json:"k"`
	Seen     int64             `json:"s"`
	NotAfter int64             `json:"na,omitempty"`
	Policy   string            `json:"pd"`
}

type storedToken struct {
	Access  string `json:"a"`
	Refresh string `json:"r,omitempty"`
	Type    string `json:"ty,omitempty"`
	Expiry  int64  `json:"e,omitempty"`
}

func storeToken(t *oauth2.Token) *storedToken {
	if t == nil {
		return nil
	}
	st := &storedToken{Access: t.AccessToken, Refresh: t.RefreshToken, Type: t.TokenType}
	if !t.Expiry.IsZero() {
		st.Expiry = t.Expiry.Unix()
	}
	return st
}

func (t *storedToken) oauth2() *oauth2.Token {
	tok := &oauth2.Token{AccessToken: t.Access, RefreshToken: t.Refresh, TokenType: t.Type}
	if t.Expiry != 0 {
		tok.Expiry = time.Unix(t.Expiry, 0)
	}
	return tok
}

// New checks cfg and returns the middleware. It does no network I/O: OIDC discovery
// and fetching SAML metadata from a URL happen on first use.
func New(cfg Config) (*Middleware, error) {
	cfg, err := normalize(cfg)
	if err != nil {
		return nil, err
	}
	m := &Middleware{
		cfg:      cfg,
		client:   providerClient(cfg.HTTPClient),
		log:      cfg.Logger,
		now:      cfg.Now,
		policy:   policy{emails: cfg.AllowEmails, domains: cfg.AllowDomains, orgs: cfg.AllowGitHubOrgs, teams: cfg.AllowGitHubTeams},
		inflight: make(map[string]*recheckCall),
		recent:   make(map[string]recheckResult),
	}
	m.digest = m.policy.digest()
	switch cfg.Provider {
	case "github":
		m.oauth = newGitHub(cfg, m.client)
	case "google":
		m.oauth = newGoogle(cfg, m.client)
	case "microsoft":
		m.oauth = newMicrosoft(cfg, m.client)
	case "facebook":
		m.oauth = newFacebook(cfg, m.client)
	case "oidc":
		m.oauth = newOIDC(cfg, m.client)
	case "saml":
		m.saml = newSAML(cfg, m.client)
	}
	if m.sealer, err = newSealer(cfg.CookieSecret, binding(cfg)); err != nil {
		return nil, fmt.Errorf("oauth: %w", err)
	}
	return m, nil
}

// binding identifies the provider configuration a cookie belongs to: a session is
// tied to the provider and its client id (or IdP), as in ngrok.
func binding(cfg Config) string {
	h := sha256.New()
	mdSum := sha256.Sum256(cfg.IdPMetadataXML)
	keys := make([]string, 0, len(cfg.Endpoints))
	for k := range cfg.Endpoints {
		keys = append(keys, k+"="+cfg.Endpoints[k])
	}
	slices.Sort(keys)
	for _, s := range []string{cfg.Provider, cfg.ClientID, cfg.IssuerURL, cfg.IdPMetadataURL, hex.EncodeToString(mdSum[:]), strings.Join(keys, ",")} {
		h.Write([]byte(s + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// Wrap returns next behind the login. Requests with a valid session reach next with
// the identity headers set, the client's own Ferry-Auth-* headers removed and the
// middleware's cookies taken out of the Cookie header.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case PathAuthorize:
			m.serveAuthorize(w, r)
			return
		case PathLogout:
			m.serveLogout(w, r)
			return
		case PathCallback:
			if m.oauth != nil {
				m.serveCallback(w, r)
				return
			}
		case PathSAMLACS:
			if m.saml != nil {
				m.serveACS(w, r)
				return
			}
		case PathSAMLMetadata:
			if m.saml != nil {
				m.serveMetadata(w, r)
				return
			}
		}
		m.serveProtected(w, r, next)
	})
}

func (m *Middleware) serveProtected(w http.ResponseWriter, r *http.Request, next http.Handler) {
	s, err := m.readSession(r)
	if err != nil {
		if !errors.Is(err, errNoCookie) {
			m.log.Info("oauth: session cookie refused", "host", r.Host, "remote", r.RemoteAddr, "err", err)
			m.clearSession(w, r)
		}
		m.startLogin(w, r, captureURI(r))
		return
	}
	now := m.now()
	if reason := m.expired(s, now); reason != "" {
		m.log.Info("oauth: session ended", "host", r.Host, "user", s.UserID, "reason", reason)
		m.clearSession(w, r)
		m.startLogin(w, r, captureURI(r))
		return
	}
	dirty := false
	if now.Unix()-s.Checked >= int64(m.cfg.AuthCheckInterval/time.Second) || s.Checked > now.Unix()+60 || s.Policy != m.digest {
		ns, err := m.recheck(r.Context(), s)
		if err != nil {
			if errors.Is(err, errRevoked) {
				m.log.Info("oauth: session revoked on re-check", "host", r.Host, "user", s.UserID, "err", err)
				m.clearSession(w, r)
				m.startLogin(w, r, captureURI(r))
				return
			}
			m.log.Warn("oauth: re-check with the provider failed", "host", r.Host, "user", s.UserID, "err", err)
			writePage(w, http.StatusBadGateway, page{
				Title:   "Identity provider unavailable",
				Message: "Your sign-in could not be checked with the identity provider. Try again in a moment.",
			})
			return
		}
		s, dirty = ns, true
	}
	if t := m.cfg.InactivityTimeout; t > 0 && now.Unix()-s.Seen >= int64(seenEvery(t)/time.Second) {
		s.Seen = now.Unix()
		dirty = true
	}
	if dirty {
		if err := m.writeSession(w, r, s); err != nil {
			m.log.Warn("oauth: cannot write the session cookie", "host", r.Host, "err", err)
		}
	}
	next.ServeHTTP(w, m.upstreamRequest(r, s))
}

// seenEvery is how stale the last-seen time may get before the cookie is written
// again for it: a tenth of the inactivity timeout, between 1 s and 1 min.
func seenEvery(timeout time.Duration) time.Duration {
	return min(max(timeout/10, time.Second), time.Minute)
}

// expired says why s is over, or "".
func (m *Middleware) expired(s *session, now time.Time) string {
	if s.NotAfter > 0 && now.Unix() >= s.NotAfter {
		return "maximum session duration reached"
	}
	if t := m.cfg.InactivityTimeout; t > 0 && now.Sub(time.Unix(s.Seen, 0)) >= t {
		return "inactivity timeout"
	}
	return ""
}

// upstreamRequest returns the request for next: a copy of r with its own headers.
func (m *Middleware) upstreamRequest(r *http.Request, s *session) *http.Request {
	r2 := r.WithContext(r.Context())
	r2.Header = r.Header.Clone()
	for k := range r2.Header {
		if len(k) >= len(headerPrefix) && strings.EqualFold(k[:len(headerPrefix)], headerPrefix) {
			delete(r2.Header, k)
		}
	}
	stripOwnCookies(r2.Header, m.cfg.CookiePrefix)
	set := func(k, v string) {
		if v = headerValue(v); v != "" {
			r2.Header.Set(k, v)
		}
	}
	set(HeaderUserID, s.UserID)
	set(HeaderUserName, s.Name)
	set(HeaderUserEmail, s.Email)
	for k, v := range s.Extra {
		set("Ferry-Auth-"+k, v)
	}
	return r2
}

// headerValue replaces control characters, which a header value cannot carry.
func headerValue(v string) string {
	return strings.Map(func(c rune) rune {
		if c < 0x20 && c != '\t' || c == 0x7f {
			return ' '
		}
		return c
	}, v)
}

// recheck re-validates s with the provider, sharing the work among concurrent
// requests for the same session and remembering the result for recentTTL.
func (m *Middleware) recheck(ctx context.Context, s *session) (*session, error) {
	m.mu.Lock()
	if e, ok := m.recent[s.SID]; ok && m.now().Before(e.until) && (e.err != nil || e.s.Checked >= s.Checked) {
		m.mu.Unlock()
		if e.err != nil {
			return nil, e.err
		}
		cp := *e.s
		return &cp, nil
	}
	if c, ok := m.inflight[s.SID]; ok {
		m.mu.Unlock()
		select {
		case <-c.done:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if c.err != nil {
			return nil, c.err
		}
		cp := *c.s
		return &cp, nil
	}
	c := &recheckCall{done: make(chan struct{})}
	m.inflight[s.SID] = c
	m.mu.Unlock()

	// The check goes on if the first request gives up: others may be waiting.
	c.s, c.err = m.doRecheck(context.WithoutCancel(ctx), s)

	m.mu.Lock()
	delete(m.inflight, s.SID)
	now := m.now()
	if len(m.recent) >= maxRecent {
		for k, e := range m.recent {
			if !now.Before(e.until) {
				delete(m.recent, k)
			}
		}
		if len(m.recent) >= maxRecent {
			clear(m.recent)
		}
	}
	ttl := recentTTL
	if c.err != nil && !errors.Is(c.err, errRevoked) {
		ttl = failureTTL
	}
	m.recent[s.SID] = recheckResult{s: c.s, err: c.err, until: now.Add(ttl)}
	m.mu.Unlock()
	close(c.done)
	if c.err != nil {
		return nil, c.err
	}
	cp := *c.s
	return &cp, nil
}

func (m *Middleware) doRecheck(ctx context.Context, s *session) (*session, error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	var id *identity
	tok := s.Token
	if m.oauth != nil {
		if s.Token == nil {
			return nil, fmt.Errorf("%w: the session has no token", errRevoked)
		}
		ctx = context.WithValue(ctx, oauth2.HTTPClient, m.client)
		cfg, err := m.oauthConfig(ctx, s.Host)
		if err != nil {
			return nil, err
		}
		nt, nid, err := m.oauth.recheck(ctx, cfg, s.Token.oauth2())
		if err != nil {
			if rejected(err) {
				return nil, fmt.Errorf("%w: %w", errRevoked, err)
			}
			return nil, err
		}
		if nid.ID != s.UserID {
			return nil, fmt.Errorf("%w: the provider now names user %q, the session %q", errRevoked, nid.ID, s.UserID)
		}
		id, tok = nid, storeToken(nt)
	} else {
		// SAML has no back channel: the constraints are evaluated again on what the
		// assertion said; the session ends at NotAfter.
		id = &identity{ID: s.UserID, Name: s.Name}
		if s.Email != "" {
			id.Emails = []email{{Addr: s.Email, Verified: true}}
		}
	}
	d := m.policy.authorize(id)
	if !d.allowed {
		return nil, fmt.Errorf("%w: %s", errRevoked, denyReason(id))
	}
	ns := *s
	applyIdentity(&ns, id, d)
	ns.Token = tok
	ns.Checked = m.now().Unix()
	ns.Policy = m.digest
	return &ns, nil
}

// applyIdentity puts what the upstream is told about the user into s.
func applyIdentity(s *session, id *identity, d decision) {
	s.UserID, s.Name, s.Email = id.ID, id.Name, d.email
	s.Extra = nil
	if len(id.Extra) > 0 || d.org != "" {
		s.Extra = make(map[string]string, len(id.Extra)+2)
		for k, v := range id.Extra {
			s.Extra[k] = v
		}
	}
	if d.org != "" {
		s.Extra["github-organization"] = d.org
	}
	if d.team != "" {
		s.Extra["github-team"] = d.team
	}
}

func (m *Middleware) newSession(r *http.Request, id *identity, d decision, tok *oauth2.Token) *session {
	now := m.now().Unix()
	s := &session{
		SID:     randToken(18),
		Host:    hostOf(r.Host),
		Created: now,
		Checked: now,
		Seen:    now,
		Policy:  m.digest,
		Token:   storeToken(tok),
	}
	applyIdentity(s, id, d)
	if m.cfg.MaxSessionDuration > 0 {
		s.NotAfter = now + int64(m.cfg.MaxSessionDuration/time.Second)
	} else if m.saml != nil {
		s.NotAfter = now + int64(DefaultSAMLSessionDuration/time.Second)
	}
	if !id.NotAfter.IsZero() && (s.NotAfter == 0 || id.NotAfter.Unix() < s.NotAfter) {
		s.NotAfter = id.NotAfter.Unix()
	}
	return s
}

func (m *Middleware) readSession(r *http.Request) (*session, error) {
	val, err := joinChunks(r, m.cfg.CookiePrefix)
	if err != nil {
		return nil, err
	}
	var s session
	if err := m.sealer.open("session", val, &s); err != nil {
		return nil, err
	}
	if s.SID == "" || s.UserID == "" {
		return nil, errors.New("session cookie without a user")
	}
	if s.Host != hostOf(r.Host) {
		return nil, fmt.Errorf("session cookie is for host %q", s.Host)
	}
	return &s, nil
}

func (m *Middleware) writeSession(w http.ResponseWriter, r *http.Request, s *session) error {
	val, err := m.sealer.seal("session", s)
	if err != nil {
		return err
	}
	parts, err := splitChunks(val)
	if err != nil {
		return err
	}
	maxAge := 0
	if s.NotAfter > 0 {
		maxAge = max(int(s.NotAfter-m.now().Unix()), 1)
	}
	for i, p := range parts {
		c := newCookie(chunkName(m.cfg.CookiePrefix, i), p, http.SameSiteLaxMode)
		c.MaxAge = maxAge
		http.SetCookie(w, c)
	}
	for i := len(parts); i < maxChunks; i++ {
		if _, err := r.Cookie(chunkName(m.cfg.CookiePrefix, i)); err == nil {
			expireCookie(w, chunkName(m.cfg.CookiePrefix, i), http.SameSiteLaxMode)
		}
	}
	return nil
}

// clearSession deletes the session cookies r carries.
func (m *Middleware) clearSession(w http.ResponseWriter, r *http.Request) {
	for i := range maxChunks {
		name := chunkName(m.cfg.CookiePrefix, i)
		if _, err := r.Cookie(name); err == nil {
			expireCookie(w, name, http.SameSiteLaxMode)
		}
	}
}

// stateCookieName names the cookie of the login whose state parameter is state, so
// that logins in several tabs do not overwrite each other.
func (m *Middleware) stateCookieName(state string) string {
	return m.cfg.CookiePrefix + stateSuffix + state[:16]
}

func (m *Middleware) stateSameSite() http.SameSite {
	if m.saml != nil {
		// The IdP POSTs to the ACS from its own site: a Lax cookie would not come along.
		return http.SameSiteNoneMode
	}
	return http.SameSiteLaxMode
}

// stateCookies lists the names of the login-in-progress cookies r carries.
func (m *Middleware) stateCookies(r *http.Request) []string {
	var names []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, m.cfg.CookiePrefix+stateSuffix) && !slices.Contains(names, c.Name) {
			names = append(names, c.Name)
		}
	}
	return names
}

// startLogin sends the browser to the provider; after login it comes back to
// returnTo (a path on this host).
func (m *Middleware) startLogin(w http.ResponseWriter, r *http.Request, returnTo string) {
	st := &loginState{
		State:    randToken(32),
		Verifier: oauth2.GenerateVerifier(),
		Nonce:    randToken(24),
		Return:   returnTo,
		Host:     hostOf(r.Host),
		Expires:  m.now().Add(stateLifetime).Unix(),
	}
	if old := m.stateCookies(r); len(old) >= maxStateCookies {
		for _, name := range old {
			expireCookie(w, name, m.stateSameSite())
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), providerTimeout)
	defer cancel()
	if m.saml != nil {
		m.startSAML(ctx, w, r, st)
		return
	}
	cfg, err := m.oauthConfig(ctx, r.Host)
	if err != nil {
		m.providerDown(w, r, err)
		return
	}
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(st.Verifier)}, m.oauth.authOptions(st)...)
	dest := cfg.AuthCodeURL(st.State, opts...)
	if err := m.setState(w, st); err != nil {
		m.internalError(w, r, err)
		return
	}
	securityHeaders(w.Header())
	http.Redirect(w, r, dest, http.StatusFound)
}

func (m *Middleware) startSAML(ctx context.Context, w http.ResponseWriter, r *http.Request, st *loginState) {
	sp, err := m.saml.serviceProvider(ctx, r.Host, true)
	if err != nil {
		m.providerDown(w, r, err)
		return
	}
	binding := saml.HTTPRedirectBinding
	dest := sp.GetSSOBindingLocation(binding)
	if dest == "" {
		binding = saml.HTTPPostBinding
		dest = sp.GetSSOBindingLocation(binding)
	}
	req, err := sp.MakeAuthenticationRequest(dest, binding, saml.HTTPPostBinding)
	if err != nil {
		m.internalError(w, r, fmt.Errorf("SAML AuthnRequest: %w", err))
		return
	}
	st.Verifier, st.Nonce, st.SAMLID = "", "", req.ID
	if binding == saml.HTTPRedirectBinding {
		u, err := req.Redirect(st.State, sp)
		if err != nil {
			m.internalError(w, r, fmt.Errorf("SAML AuthnRequest: %w", err))
			return
		}
		if err := m.setState(w, st); err != nil {
			m.internalError(w, r, err)
			return
		}
		securityHeaders(w.Header())
		http.Redirect(w, r, u.String(), http.StatusFound)
		return
	}
	form, err := postForm(req)
	if err != nil {
		m.internalError(w, r, fmt.Errorf("SAML AuthnRequest: %w", err))
		return
	}
	if err := m.setState(w, st); err != nil {
		m.internalError(w, r, err)
		return
	}
	writeSAMLPost(w, dest, form, st.State)
}

func (m *Middleware) setState(w http.ResponseWriter, st *loginState) error {
	val, err := m.sealer.seal("state", st)
	if err != nil {
		return err
	}
	c := newCookie(m.stateCookieName(st.State), val, m.stateSameSite())
	c.MaxAge = int(stateLifetime / time.Second)
	http.SetCookie(w, c)
	return nil
}

var errBadState = errors.New("the sign-in state is missing, expired, or from another browser")

// takeState reads and deletes the login state for the state parameter.
func (m *Middleware) takeState(w http.ResponseWriter, r *http.Request, state string) (*loginState, error) {
	if len(state) < 16 || len(state) > 128 {
		return nil, fmt.Errorf("%w: bad state parameter", errBadState)
	}
	name := m.stateCookieName(state)
	c, err := r.Cookie(name)
	if err != nil {
		return nil, fmt.Errorf("%w: no state cookie", errBadState)
	}
	expireCookie(w, name, m.stateSameSite())
	var st loginState
	if err := m.sealer.open("state", c.Value, &st); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadState, err)
	}
	if subtle.ConstantTimeCompare([]byte(st.State), []byte(state)) != 1 {
		return nil, fmt.Errorf("%w: state parameter does not match", errBadState)
	}
	if m.now().Unix() > st.Expires {
		return nil, fmt.Errorf("%w: expired", errBadState)
	}
	if st.Host != hostOf(r.Host) {
		return nil, fmt.Errorf("%w: started on host %q", errBadState, st.Host)
	}
	return &st, nil
}

func (m *Middleware) badState(w http.ResponseWriter, r *http.Request, err error) {
	m.log.Info("oauth: callback refused", "host", r.Host, "remote", r.RemoteAddr, "err", err)
	writePage(w, http.StatusBadRequest, retryLink(page{
		Title:   "Sign-in could not be completed",
		Message: "The sign-in was started in another browser, took too long, or was tampered with.",
	}))
}

func (m *Middleware) oauthConfig(ctx context.Context, host string) (*oauth2.Config, error) {
	ep, err := m.oauth.endpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{
		ClientID:     m.cfg.ClientID,
		ClientSecret: m.cfg.ClientSecret,
		Endpoint:     ep,
		RedirectURL:  "https://" + host + PathCallback,
		Scopes:       m.oauth.scopes(),
	}, nil
}

func (m *Middleware) serveCallback(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	st, err := m.takeState(w, r, q.Get("state"))
	if err != nil {
		m.badState(w, r, err)
		return
	}
	if e := q.Get("error"); e != "" {
		msg := "The identity provider did not sign you in (" + e + ")."
		if d := q.Get("error_description"); d != "" {
			msg = "The identity provider did not sign you in: " + shorten(d, 300)
		}
		m.rejected()
		writePage(w, http.StatusForbidden, retryLink(page{Title: "Sign-in refused", Message: msg}))
		return
	}
	code := q.Get("code")
	if code == "" {
		m.badState(w, r, errors.New("callback without code"))
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), providerTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, m.client)
	cfg, err := m.oauthConfig(ctx, r.Host)
	if err != nil {
		m.providerDown(w, r, err)
		return
	}
	tok, err := cfg.Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		m.loginFailed(w, r, fmt.Errorf("code exchange: %w", err))
		return
	}
	id, err := m.oauth.login(ctx, tok, st)
	if err != nil {
		m.loginFailed(w, r, err)
		return
	}
	m.finishLogin(w, r, id, tok, st, http.StatusFound)
}

// finishLogin applies the constraints and, when they let the user in, sets the
// session and sends the browser back where it was going.
func (m *Middleware) finishLogin(w http.ResponseWriter, r *http.Request, id *identity, tok *oauth2.Token, st *loginState, code int) {
	d := m.policy.authorize(id)
	if !d.allowed {
		m.log.Info("oauth: access denied", "host", r.Host, "provider", m.cfg.Provider, "user", id.ID, "email", d.email)
		m.clearSession(w, r)
		m.rejected()
		writePage(w, http.StatusForbidden, page{
			Title:   "Access denied",
			Message: denyReason(id) + " Ask the owner of this site for access, or sign in with another account.",
			Link:    PathLogout, LinkText: "Sign out",
		})
		return
	}
	s := m.newSession(r, id, d, tok)
	if err := m.writeSession(w, r, s); err != nil {
		m.internalError(w, r, err)
		return
	}
	m.log.Info("oauth: signed in", "host", r.Host, "provider", m.cfg.Provider, "user", s.UserID, "email", s.Email)
	ret := st.Return
	if !safeReturn(ret) {
		ret = "/"
	}
	securityHeaders(w.Header())
	http.Redirect(w, r, ret, code)
}

// rejected counts a refused sign-in.
func (m *Middleware) rejected() {
	if m.cfg.OnReject != nil {
		m.cfg.OnReject()
	}
}

func (m *Middleware) loginFailed(w http.ResponseWriter, r *http.Request, err error) {
	if !rejected(err) {
		m.providerDown(w, r, err)
		return
	}
	m.log.Info("oauth: sign-in failed", "host", r.Host, "provider", m.cfg.Provider, "err", err)
	m.rejected()
	writePage(w, http.StatusForbidden, retryLink(page{
		Title:   "Sign-in failed",
		Message: "The identity provider's answer could not be verified.",
	}))
}

func (m *Middleware) providerDown(w http.ResponseWriter, r *http.Request, err error) {
	m.log.Warn("oauth: identity provider unavailable", "host", r.Host, "provider", m.cfg.Provider, "err", err)
	writePage(w, http.StatusBadGateway, retryLink(page{
		Title:   "Identity provider unavailable",
		Message: "The identity provider could not be reached. Try again in a moment.",
	}))
}

func (m *Middleware) internalError(w http.ResponseWriter, r *http.Request, err error) {
	m.log.Error("oauth: internal error", "host", r.Host, "err", err)
	writePage(w, http.StatusInternalServerError, page{Title: "Sign-in error", Message: "Something went wrong on the relay."})
}

// serveAuthorize starts a login explicitly, dropping any session first; ?next= is
// where to go after (a path on this host; default /).
func (m *Middleware) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	next := r.URL.Query().Get("next")
	if next == "" {
		next = "/"
	} else if !safeReturn(next) {
		writePage(w, http.StatusBadRequest, page{
			Title:   "Bad redirect",
			Message: "The next parameter must be a path on this site, like /dashboard.",
		})
		return
	}
	m.clearSession(w, r)
	m.startLogin(w, r, next)
}

func (m *Middleware) serveLogout(w http.ResponseWriter, r *http.Request) {
	m.clearSession(w, r)
	for _, name := range m.stateCookies(r) {
		expireCookie(w, name, m.stateSameSite())
	}
	writePage(w, http.StatusOK, page{
		Title:   "Signed out",
		Message: "You are signed out of this site.",
		Link:    PathAuthorize, LinkText: "Sign in",
	})
}

func (m *Middleware) serveACS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writePage(w, http.StatusMethodNotAllowed, page{Title: "Method not allowed", Message: "The SAML response must be POSTed."})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxProviderBody)
	if err := r.ParseForm(); err != nil {
		writePage(w, http.StatusBadRequest, page{Title: "Bad SAML response", Message: "The SAML response could not be read."})
		return
	}
	st, err := m.takeState(w, r, r.PostForm.Get("RelayState"))
	if err != nil {
		m.badState(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), providerTimeout)
	defer cancel()
	sp, err := m.saml.serviceProvider(ctx, r.Host, true)
	if err != nil {
		m.providerDown(w, r, err)
		return
	}
	a, err := sp.ParseResponse(r.WithContext(ctx), []string{st.SAMLID})
	if err != nil {
		m.loginFailed(w, r, fmt.Errorf("%w: SAML response: %v", errInvalidIdentity, samlDetail(err)))
		return
	}
	id, err := samlIdentity(a)
	if err != nil {
		m.loginFailed(w, r, err)
		return
	}
	m.finishLogin(w, r, id, nil, st, http.StatusSeeOther)
}

func (m *Middleware) serveMetadata(w http.ResponseWriter, r *http.Request) {
	sp, _ := m.saml.serviceProvider(r.Context(), r.Host, false)
	md := sp.Metadata()
	// crewjam/saml also advertises an HTTP-Artifact consumer service, which this relay
	// does not run (the IdP would have to call back to resolve the artifact): offer only
	// the HTTP-POST one, so an IdP never picks a binding that cannot work.
	for i := range md.SPSSODescriptors {
		acs := md.SPSSODescriptors[i].AssertionConsumerServices[:0]
		for _, e := range md.SPSSODescriptors[i].AssertionConsumerServices {
			if e.Binding == saml.HTTPPostBinding {
				acs = append(acs, e)
			}
		}
		md.SPSSODescriptors[i].AssertionConsumerServices = acs
	}
	buf, err := xml.MarshalIndent(md, "", "  ")
	if err != nil {
		m.internalError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/samlmetadata+xml")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(buf)
}

// captureURI is where to come back to after a login started by r.
func captureURI(r *http.Request) string {
	if u := r.URL.RequestURI(); safeReturn(u) {
		return u
	}
	return "/"
}

// safeReturn accepts only a path on this host: it starts with one "/" (not "//" or
// "/\", which browsers take for another host), has no scheme or host, and no
// control characters.
func safeReturn(s string) bool {
	if s == "" || s[0] != '/' || len(s) > 2048 {
		return false
	}
	if len(s) > 1 && (s[1] == '/' || s[1] == '\\') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "" && u.Host == "" && u.User == nil
}

// hostOf returns the host name of a Host header, lower case, without the port.
func hostOf(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

func randToken(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
