package oauth

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/module/oauth/oauthtest"
)

// oidcWorld starts a fake OIDC provider and the app behind an oidc middleware
// configured by mod.
func oidcWorld(t *testing.T, mod func(*Config)) (*world, *oauthtest.OIDC, *Middleware) {
	t.Helper()
	w := newWorld(t)
	idp := newFakeOIDC(t, w)
	cfg := Config{
		Provider:     "oidc",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		IssuerURL:    idp.Issuer,
		CookieSecret: testSecret(t),
		HTTPClient:   w.providerClient(),
		Now:          w.clk.Now,
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w.startApp(m)
	return w, idp, m
}

func TestOIDCLoginFlow(t *testing.T) {
	w, idp, _ := oidcWorld(t, func(c *Config) { c.AllowDomains = []string{"example.com"} })
	b := w.browser()
	// An app cookie that must reach the upstream.
	b.jar.SetCookies(&url.URL{Scheme: "https", Host: appHost}, []*http.Cookie{{Name: "app", Value: "1"}})

	resp, body := b.get("https://"+appHost+"/private/page?x=1&y=2", map[string]string{
		"Ferry-Auth-User-Email":   "forged@evil.example",
		"ferry-auth-user-id":      "forged",
		"FERRY-AUTH-GITHUB-LOGIN": "forged",
	})
	if resp.StatusCode != 200 || body != "upstream ok /private/page?x=1&y=2" {
		t.Fatalf("GET /private/page = %d %q, want 200 from the upstream at the original URL", resp.StatusCode, body)
	}

	// The provider saw state, PKCE S256 and a nonce, and the scopes.
	q := idp.LastAuthorize()
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(k) == "" {
			t.Errorf("authorize request has no %s: %v", k, q)
		}
	}
	if got := q.Get("scope"); got != "openid profile email" {
		t.Errorf("authorize scope = %q, want %q", got, "openid profile email")
	}

	cb, ok := b.hopTo(appHost, PathCallback)
	if !ok || cb.status != http.StatusFound || cb.location != "/private/page?x=1&y=2" {
		t.Fatalf("callback hop = %+v, want 302 to the original URL", cb)
	}
	checkSessionCookieAttrs(t, cb)

	assertUpstreamIdentity(t, w.up, map[string]string{
		HeaderUserID:    "user-1",
		HeaderUserName:  "Alice Example",
		HeaderUserEmail: "alice@example.com",
	})
	if c := w.up.lastRequest().Header.Get("Cookie"); c != "app=1" {
		t.Errorf("upstream Cookie = %q, want %q", c, "app=1")
	}

	// Logged in: the next request goes straight through, forged headers stripped.
	b.resetHops()
	resp, _ = b.get("https://"+appHost+"/again", map[string]string{"Ferry-Auth-User-Email": "forged@evil.example"})
	if resp.StatusCode != 200 || len(b.hops) != 1 {
		t.Fatalf("second GET = %d after %d hops, want 200 directly", resp.StatusCode, len(b.hops))
	}
	assertUpstreamIdentity(t, w.up, map[string]string{
		HeaderUserID:    "user-1",
		HeaderUserName:  "Alice Example",
		HeaderUserEmail: "alice@example.com",
	})
}

func TestOIDCUnauthenticatedRedirect(t *testing.T) {
	w, _, _ := oidcWorld(t, nil)
	b := w.browser()
	req, _ := http.NewRequest(http.MethodPost, "https://"+appHost+"/api/thing", strings.NewReader("x=1"))
	resp, _ := do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("POST unauthenticated = %d, want 302", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Host != idpHost || loc.Path != "/authorize" {
		t.Fatalf("Location = %s, want the provider's authorize endpoint", loc)
	}
	if loc.Query().Get("redirect_uri") != "https://"+appHost+PathCallback {
		t.Errorf("redirect_uri = %q", loc.Query().Get("redirect_uri"))
	}
	var state *http.Cookie
	for _, c := range resp.Cookies() {
		if strings.HasPrefix(c.Name, DefaultCookiePrefix+stateSuffix) {
			state = c
		}
	}
	if state == nil || !state.Secure || !state.HttpOnly || state.SameSite != http.SameSiteLaxMode || state.MaxAge != 1800 {
		t.Fatalf("state cookie = %+v, want Secure HttpOnly Lax Max-Age 1800", state)
	}
	if w.up.count() != 0 {
		t.Error("the upstream was reached without a session")
	}
}

func TestOIDCDenied(t *testing.T) {
	tests := []struct {
		name string
		cfg  func(*Config)
		user *oauthtest.User
	}{
		{"email not listed", func(c *Config) { c.AllowEmails = []string{"bob@example.com"} }, nil},
		{"domain not listed", func(c *Config) { c.AllowDomains = []string{"corp.example"} }, nil},
		{"unverified email", func(c *Config) { c.AllowDomains = []string{"example.com"} },
			&oauthtest.User{Sub: "user-2", Name: "Mallory", Email: "mallory@example.com", EmailVerified: false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, idp, _ := oidcWorld(t, tt.cfg)
			if tt.user != nil {
				idp.AddUser(*tt.user)
				idp.LoginAs(tt.user.Sub)
			}
			b := w.browser()
			resp, body := b.get("https://"+appHost+"/", nil)
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access denied") {
				t.Fatalf("GET / = %d, want 403 Access denied; body %q", resp.StatusCode, body)
			}
			if w.up.count() != 0 {
				t.Error("the upstream was reached by a denied user")
			}
			if b.sessionCookie() != nil {
				t.Error("a denied user got a session cookie")
			}
		})
	}
}

func TestOIDCAllowedEmailCaseInsensitive(t *testing.T) {
	w, _, _ := oidcWorld(t, func(c *Config) { c.AllowEmails = []string{"ALICE@Example.COM"} })
	resp, _ := w.browser().get("https://"+appHost+"/", nil)
	if resp.StatusCode != 200 {
		t.Fatalf("GET / = %d, want 200", resp.StatusCode)
	}
}

func TestOIDCBadNonce(t *testing.T) {
	w, idp, _ := oidcWorld(t, nil)
	idp.Set(func(b *oauthtest.Behaviour) { b.BadNonce = true })
	resp, _ := w.browser().get("https://"+appHost+"/", nil)
	if resp.StatusCode != http.StatusForbidden || w.up.count() != 0 {
		t.Fatalf("login with a wrong nonce = %d, want 403 and no upstream request", resp.StatusCode)
	}
}

func TestTamperedCookie(t *testing.T) {
	w, _, _ := oidcWorld(t, nil)
	b := w.browser()
	if resp, _ := b.get("https://"+appHost+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	c := b.sessionCookie()
	if c == nil {
		t.Fatal("no session cookie after login")
	}
	// Flip one character in the middle of the sealed value.
	v := []byte(c.Value)
	i := len(v) / 2
	if v[i] == 'A' {
		v[i] = 'B'
	} else {
		v[i] = 'A'
	}
	b.jar.SetCookies(&url.URL{Scheme: "https", Host: appHost}, []*http.Cookie{{Name: DefaultCookiePrefix, Value: string(v), Path: "/", Secure: true}})

	before := w.up.count()
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/secret", nil)
	resp, _ := do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://"+idpHost+"/authorize") {
		t.Fatalf("GET with a tampered cookie = %d to %q, want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
	cleared := false
	for _, sc := range resp.Cookies() {
		if sc.Name == DefaultCookiePrefix && sc.MaxAge < 0 {
			cleared = true
		}
	}
	if !cleared {
		t.Error("the tampered cookie was not cleared")
	}
	if w.up.count() != before {
		t.Error("the upstream was reached with a tampered cookie")
	}
}

func TestCookieFromOtherClientRefused(t *testing.T) {
	// Same secret, different client id: the session does not carry over.
	secret := testSecret(t)
	w, _, m := oidcWorld(t, func(c *Config) { c.CookieSecret = secret })
	b := w.browser()
	if resp, _ := b.get("https://"+appHost+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	other := m.cfg
	other.ClientID = "another-client"
	m2, err := New(other)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	for _, c := range b.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	if _, err := m2.readSession(req); err == nil {
		t.Fatal("a session from another client id was accepted")
	}
	if _, err := m.readSession(req); err != nil {
		t.Fatalf("the session is refused by its own middleware: %v", err)
	}
}

func TestStateMismatch(t *testing.T) {
	w, _, _ := oidcWorld(t, nil)
	b := w.browser()
	nf := b.noFollow()

	start := func(nf *http.Client) *url.URL {
		req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
		resp, _ := do(t, nf, req)
		loc, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("start login = %d %v", resp.StatusCode, err)
		}
		// Let the provider issue a code for it.
		req, _ = http.NewRequest(http.MethodGet, loc.String(), nil)
		resp, _ = do(t, nf, req)
		cb, err := url.Parse(resp.Header.Get("Location"))
		if resp.StatusCode != http.StatusFound || err != nil {
			t.Fatalf("authorize = %d %v", resp.StatusCode, err)
		}
		return cb
	}
	callback := func(c *http.Client, cb *url.URL, state string) int {
		q := cb.Query()
		q.Set("state", state)
		u := *cb
		u.RawQuery = q.Encode()
		req, _ := http.NewRequest(http.MethodGet, u.String(), nil)
		resp, _ := do(t, c, req)
		return resp.StatusCode
	}

	cb := start(nf)
	good := cb.Query().Get("state")
	tests := []struct {
		name  string
		state string
	}{
		{"other state", randToken(32)},
		{"same cookie name, different state", good[:16] + strings.Repeat("x", len(good)-16)},
		{"empty", ""},
	}
	for _, tt := range tests {
		if got := callback(nf, cb, tt.state); got != http.StatusBadRequest {
			t.Errorf("callback with %s = %d, want 400", tt.name, got)
		}
	}
	// The state cookie is single-use: the mismatch with the same name consumed it.
	if got := callback(nf, cb, good); got != http.StatusBadRequest {
		t.Errorf("callback after its state cookie was used = %d, want 400", got)
	}

	// Another browser cannot complete this browser's login.
	cb = start(nf)
	other := w.browser().noFollow()
	if got := callback(other, cb, cb.Query().Get("state")); got != http.StatusBadRequest {
		t.Errorf("callback from another browser = %d, want 400", got)
	}
	// This browser can.
	if got := callback(nf, cb, cb.Query().Get("state")); got != http.StatusFound {
		t.Errorf("callback from the right browser = %d, want 302", got)
	}

	// An expired login state is refused.
	nf = w.browser().noFollow()
	cb = start(nf)
	w.clk.Advance(stateLifetime + time.Minute)
	if got := callback(nf, cb, cb.Query().Get("state")); got != http.StatusBadRequest {
		t.Errorf("callback after the state expired = %d, want 400", got)
	}
}

func TestProviderError(t *testing.T) {
	w, _, _ := oidcWorld(t, nil)
	nf := w.browser().noFollow()
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	resp, _ := do(t, nf, req)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	u := "https://" + appHost + PathCallback + "?" + url.Values{
		"state": {loc.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"<script>alert(1)</script>"},
	}.Encode()
	req, _ = http.NewRequest(http.MethodGet, u, nil)
	resp, body := do(t, nf, req)
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("callback with error = %d, want 403", resp.StatusCode)
	}
	if strings.Contains(body, "<script>") {
		t.Errorf("error description is not escaped: %s", body)
	}
}

func TestOpenRedirect(t *testing.T) {
	w, _, _ := oidcWorld(t, nil)
	b := w.browser()
	for _, next := range []string{"https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "http:/evil.example"} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+PathAuthorize+"?next="+url.QueryEscape(next), nil)
		resp, _ := do(t, b.noFollow(), req)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("/oauth2/authorize?next=%s = %d (Location %q), want 400", next, resp.StatusCode, resp.Header.Get("Location"))
		}
	}

	// A relative next is honoured.
	resp, body := b.get("https://"+appHost+PathAuthorize+"?next="+url.QueryEscape("/dash?tab=1"), nil)
	if resp.StatusCode != 200 || body != "upstream ok /dash?tab=1" {
		t.Fatalf("/oauth2/authorize?next=/dash = %d %q, want the upstream at /dash?tab=1", resp.StatusCode, body)
	}

	// A captured path that a browser would read as another host comes back as /.
	b2 := w.browser()
	b2.get("https://"+appHost+"//evil.example/x", nil)
	cb, ok := b2.hopTo(appHost, PathCallback)
	if !ok || cb.location != "/" {
		t.Fatalf("callback after capturing //evil.example/x redirects to %q, want /", cb.location)
	}
}

func TestAuthorizeForcesNewLogin(t *testing.T) {
	w, idp, _ := oidcWorld(t, nil)
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	n := idp.AuthorizeCount()
	resp, _ := b.get("https://"+appHost+PathAuthorize, nil)
	if resp.StatusCode != 200 || idp.AuthorizeCount() != n+1 {
		t.Fatalf("/oauth2/authorize = %d with %d new authorize requests, want 200 after 1", resp.StatusCode, idp.AuthorizeCount()-n)
	}
}

func TestLogout(t *testing.T) {
	w, _, _ := oidcWorld(t, nil)
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	if b.sessionCookie() == nil {
		t.Fatal("no session after login")
	}
	resp, body := b.get("https://"+appHost+PathLogout, nil)
	if resp.StatusCode != 200 || !strings.Contains(body, "Signed out") {
		t.Fatalf("logout = %d %q", resp.StatusCode, body)
	}
	if b.sessionCookie() != nil {
		t.Fatal("session cookie survived logout")
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	resp, _ = do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET after logout = %d, want 302 to login", resp.StatusCode)
	}
}

func TestRecheckAfterInterval(t *testing.T) {
	w, idp, _ := oidcWorld(t, nil)
	b := w.browser()
	if resp, _ := b.get("https://"+appHost+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("login = %d", resp.StatusCode)
	}
	r0, u0 := idp.Counts()

	// Within the interval: no provider call.
	w.clk.Advance(2 * time.Minute)
	if resp, _ := b.get("https://"+appHost+"/a", nil); resp.StatusCode != 200 {
		t.Fatalf("GET within interval = %d", resp.StatusCode)
	}
	if r, u := idp.Counts(); r != r0 || u != u0 {
		t.Fatalf("provider called within the interval: refresh %d→%d, userinfo %d→%d", r0, r, u0, u)
	}

	// After it: refresh and user info, and the request passes.
	w.clk.Advance(2 * time.Minute)
	if resp, _ := b.get("https://"+appHost+"/b", nil); resp.StatusCode != 200 {
		t.Fatalf("GET after interval = %d", resp.StatusCode)
	}
	if r, u := idp.Counts(); r != r0+1 || u != u0+1 {
		t.Fatalf("re-check made refresh %d, userinfo %d calls, want 1 and 1", r-r0, u-u0)
	}
	// The new check time is in the cookie: no further call right away.
	if resp, _ := b.get("https://"+appHost+"/c", nil); resp.StatusCode != 200 {
		t.Fatalf("GET = %d", resp.StatusCode)
	}
	if r, _ := idp.Counts(); r != r0+1 {
		t.Fatalf("re-checked again right after a re-check")
	}

	// The user is revoked at the provider: the next re-check logs them out.
	idp.Revoke("user-1")
	w.clk.Advance(4 * time.Minute)
	before := w.up.count()
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/d", nil)
	resp, _ := do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://"+idpHost+"/authorize") {
		t.Fatalf("GET after revocation = %d to %q, want 302 to the provider", resp.StatusCode, resp.Header.Get("Location"))
	}
	if w.up.count() != before {
		t.Error("a revoked user reached the upstream")
	}
	if b.sessionCookie() != nil {
		t.Error("the revoked session's cookie was not cleared")
	}
}

func TestRecheckWithoutRefreshToken(t *testing.T) {
	w, idp, _ := oidcWorld(t, nil)
	idp.Set(func(b *oauthtest.Behaviour) { b.NoRefreshToken = true })
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	w.clk.Advance(4 * time.Minute)
	_, u0 := idp.Counts()
	if resp, _ := b.get("https://"+appHost+"/x", nil); resp.StatusCode != 200 {
		t.Fatalf("GET after interval = %d", resp.StatusCode)
	}
	if _, u := idp.Counts(); u != u0+1 {
		t.Fatalf("userinfo calls = %d, want 1", u-u0)
	}
}

func TestRecheckProviderDown(t *testing.T) {
	w, idp, _ := oidcWorld(t, nil)
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	idp.Set(func(b *oauthtest.Behaviour) { b.UserinfoStatus = http.StatusServiceUnavailable })
	w.clk.Advance(4 * time.Minute)
	resp, _ := b.get("https://"+appHost+"/x", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET while the provider fails = %d, want 502", resp.StatusCode)
	}
	if b.sessionCookie() == nil {
		t.Fatal("a provider outage ended the session")
	}
	_, u0 := idp.Counts()
	idp.Set(func(b *oauthtest.Behaviour) { b.UserinfoStatus = 0 })
	// The failure is remembered briefly: no provider call for a retry right away.
	if resp, _ := b.get("https://"+appHost+"/x", nil); resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("GET right after the failure = %d, want the remembered 502", resp.StatusCode)
	}
	if _, u := idp.Counts(); u != u0 {
		t.Fatalf("user info called %d times within the failure TTL, want 0", u-u0)
	}
	w.clk.Advance(failureTTL)
	if resp, _ := b.get("https://"+appHost+"/y", nil); resp.StatusCode != 200 {
		t.Fatalf("GET after the provider is back = %d, want 200", resp.StatusCode)
	}
}

func TestRecheckConstraintChange(t *testing.T) {
	// The same cookie secret and client, but now only bob may in: the old session is
	// re-checked at once and refused.
	secret := testSecret(t)
	w, _, m := oidcWorld(t, func(c *Config) { c.CookieSecret = secret })
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	strict := m.cfg
	strict.AllowEmails = []string{"bob@example.com"}
	m2, err := New(strict)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	for _, c := range b.jar.Cookies(req.URL) {
		req.AddCookie(c)
	}
	req.Host = appHost
	rec := httptest.NewRecorder()
	m2.Wrap(w.up).ServeHTTP(rec, req)
	if rec.Code != http.StatusFound {
		t.Fatalf("old session under new constraints = %d, want 302 to login", rec.Code)
	}
}

func TestConcurrentRecheckSharesRefresh(t *testing.T) {
	w, idp, _ := oidcWorld(t, nil)
	idp.Set(func(b *oauthtest.Behaviour) { b.RotateRefresh = true })
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	cookies := b.jar.Cookies(&url.URL{Scheme: "https", Host: appHost})
	w.clk.Advance(4 * time.Minute)
	r0, _ := idp.Counts()

	// Parallel requests with the same (old) cookie, none of them storing the new one.
	var wg sync.WaitGroup
	codes := make([]int, 8)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &http.Client{Transport: w.transport()}
			req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/p", nil)
			for _, ck := range cookies {
				req.AddCookie(ck)
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("request %d = %d, want 200", i, c)
		}
	}
	if r, _ := idp.Counts(); r != r0+1 {
		t.Errorf("refreshes = %d, want 1 shared by all requests (the refresh token rotates)", r-r0)
	}
}

func TestInactivityAndMaxDuration(t *testing.T) {
	t.Run("inactivity", func(t *testing.T) {
		w, _, _ := oidcWorld(t, func(c *Config) { c.InactivityTimeout = 10 * time.Minute })
		b := w.browser()
		b.get("https://"+appHost+"/", nil)
		for range 3 { // activity keeps it alive past 10 minutes in total
			w.clk.Advance(6 * time.Minute)
			req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
			if resp, _ := do(t, b.noFollow(), req); resp.StatusCode != 200 {
				t.Fatalf("active session = %d, want 200", resp.StatusCode)
			}
		}
		w.clk.Advance(11 * time.Minute)
		req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
		if resp, _ := do(t, b.noFollow(), req); resp.StatusCode != http.StatusFound {
			t.Fatalf("idle session = %d, want 302 to login", resp.StatusCode)
		}
	})
	t.Run("max duration", func(t *testing.T) {
		w, _, _ := oidcWorld(t, func(c *Config) { c.MaxSessionDuration = time.Hour })
		b := w.browser()
		b.get("https://"+appHost+"/", nil)
		if c := b.sessionCookie(); c == nil {
			t.Fatal("no session")
		}
		if cb, _ := b.hopTo(appHost, PathCallback); cb.setCookies[len(cb.setCookies)-1].MaxAge != 3600 {
			t.Errorf("session cookie Max-Age = %d, want 3600", cb.setCookies[len(cb.setCookies)-1].MaxAge)
		}
		w.clk.Advance(61 * time.Minute)
		req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
		if resp, _ := do(t, b.noFollow(), req); resp.StatusCode != http.StatusFound {
			t.Fatalf("session past its maximum duration = %d, want 302 to login", resp.StatusCode)
		}
	})
}

func TestOtherHostRefused(t *testing.T) {
	w, _, m := oidcWorld(t, nil)
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	req, _ := http.NewRequest(http.MethodGet, "https://other.example.com/", nil)
	for _, c := range b.jar.Cookies(&url.URL{Scheme: "https", Host: appHost}) {
		req.AddCookie(c)
	}
	if _, err := m.readSession(req); err == nil {
		t.Fatal("a session for app.example.com was accepted on other.example.com")
	}
}
