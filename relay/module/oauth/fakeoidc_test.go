package oauth

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const (
	testClientID     = "ferry-test-client"
	testClientSecret = "ferry-test-secret"
)

// fakeUser is an account at a fake provider.
type fakeUser struct {
	Sub           string
	Name          string
	Email         string
	EmailVerified bool
	Revoked       bool // refresh and user info refuse the user's tokens
}

// fakeOIDC is an OpenID Connect provider: discovery, JWKS, an authorize endpoint
// that signs the configured user in at once, a token endpoint (code with PKCE,
// refresh) issuing RS256 ID tokens, user info. It also serves Graph-like /graph/me
// and /fb/me for the Microsoft and Facebook providers.
type fakeOIDC struct {
	t      *testing.T
	issuer string
	key    *rsa.PrivateKey

	mu            sync.Mutex
	users         map[string]*fakeUser
	loginAs       string
	giveRefresh   bool
	rotateRefresh bool
	failUserinfo  int // status to answer user info with (0: normal)
	badNonce      bool
	codes         map[string]codeGrant
	access        map[string]string // access token → sub
	refresh       map[string]string // refresh token → sub
	authorizeReqs []url.Values
	refreshCalls  int
	userinfoCalls int
	tokenErr      string
}

type codeGrant struct {
	sub, nonce, challenge, redirect string
}

func newFakeOIDC(t *testing.T, w *world) *fakeOIDC {
	t.Helper()
	key := rsaKey(t, "oidc")
	f := &fakeOIDC{
		t:           t,
		issuer:      "https://" + idpHost,
		key:         key,
		users:       map[string]*fakeUser{},
		giveRefresh: true,
		codes:       map[string]codeGrant{},
		access:      map[string]string{},
		refresh:     map[string]string{},
	}
	f.addUser(&fakeUser{Sub: "user-1", Name: "Alice Example", Email: "alice@example.com", EmailVerified: true})
	f.loginAs = "user-1"
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	mux.HandleFunc("GET /jwks", f.jwks)
	mux.HandleFunc("GET /authorize", f.authorize)
	mux.HandleFunc("POST /token", f.token)
	mux.HandleFunc("GET /userinfo", f.userinfo)
	mux.HandleFunc("GET /graph/me", f.graphMe)
	mux.HandleFunc("GET /fb/me", f.fbMe)
	w.serve(idpHost, mux)
	return f
}

func (f *fakeOIDC) addUser(u *fakeUser) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[u.Sub] = u
}

func (f *fakeOIDC) setLoginAs(sub string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loginAs = sub
}

func (f *fakeOIDC) update(fn func(f *fakeOIDC)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeOIDC) counts() (refreshes, userinfos int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshCalls, f.userinfoCalls
}

func (f *fakeOIDC) authorizeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.authorizeReqs)
}

func (f *fakeOIDC) lastAuthorize() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.authorizeReqs) == 0 {
		return nil
	}
	return f.authorizeReqs[len(f.authorizeReqs)-1]
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeOIDC) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, map[string]any{
		"issuer":                                f.issuer,
		"authorization_endpoint":                f.issuer + "/authorize",
		"token_endpoint":                        f.issuer + "/token",
		"userinfo_endpoint":                     f.issuer + "/userinfo",
		"jwks_uri":                              f.issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (f *fakeOIDC) jwks(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &f.key.PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// authorize checks the request and redirects straight back with a code.
func (f *fakeOIDC) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.authorizeReqs = append(f.authorizeReqs, q)
	sub := f.loginAs
	f.mu.Unlock()
	if q.Get("response_type") != "code" || q.Get("client_id") != testClientID {
		http.Error(w, "bad response_type or client_id", http.StatusBadRequest)
		return
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "PKCE S256 required", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	if redirect != "https://"+appHost+PathCallback {
		http.Error(w, "unregistered redirect_uri "+redirect, http.StatusBadRequest)
		return
	}
	code := randToken(16)
	f.mu.Lock()
	f.codes[code] = codeGrant{sub: sub, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: redirect}
	f.mu.Unlock()
	u, _ := url.Parse(redirect)
	u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (f *fakeOIDC) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != testClientID || secret != testClientSecret {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.tokenErr != "" {
		writeJSON(w, 400, map[string]string{"error": f.tokenErr})
		return
	}
	var sub, nonce string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		if !ok {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "PKCE verifier mismatch"})
			return
		}
		if r.PostForm.Get("redirect_uri") != g.redirect {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
			return
		}
		sub, nonce = g.sub, g.nonce
		if f.badNonce {
			nonce = "not-the-nonce"
		}
	case "refresh_token":
		f.refreshCalls++
		rt := r.PostForm.Get("refresh_token")
		s, ok := f.refresh[rt]
		if !ok || f.users[s] == nil || f.users[s].Revoked {
			writeJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		if f.rotateRefresh {
			delete(f.refresh, rt)
		}
		sub = s
	default:
		writeJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	u := f.users[sub]
	at := randToken(24)
	f.access[at] = sub
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   3600,
		"id_token":     f.idToken(u, nonce),
	}
	if f.giveRefresh {
		rt := randToken(24)
		f.refresh[rt] = sub
		resp["refresh_token"] = rt
	}
	writeJSON(w, 200, resp)
}

func (f *fakeOIDC) idToken(u *fakeUser, nonce string) string {
	now := time.Now()
	claims := map[string]any{
		"iss":            f.issuer,
		"sub":            u.Sub,
		"aud":            testClientID,
		"iat":            now.Unix(),
		"exp":            now.Add(time.Hour).Unix(),
		"email":          u.Email,
		"email_verified": u.EmailVerified,
		"name":           u.Name,
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	payload, _ := json.Marshal(claims)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: f.key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		f.t.Error(err)
		return ""
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		f.t.Error(err)
		return ""
	}
	s, _ := jws.CompactSerialize()
	return s
}

// bearerUser returns the user an access token belongs to, or answers 401.
func (f *fakeOIDC) bearerUser(w http.ResponseWriter, r *http.Request) (*fakeUser, bool) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userinfoCalls++
	if f.failUserinfo != 0 {
		writeJSON(w, f.failUserinfo, map[string]string{"error": "unavailable"})
		return nil, false
	}
	sub, ok := f.access[tok]
	if !ok || f.users[sub].Revoked {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, 401, map[string]string{"error": "invalid_token"})
		return nil, false
	}
	u := *f.users[sub]
	return &u, true
}

func (f *fakeOIDC) userinfo(w http.ResponseWriter, r *http.Request) {
	u, ok := f.bearerUser(w, r)
	if !ok {
		return
	}
	writeJSON(w, 200, map[string]any{"sub": u.Sub, "name": u.Name, "email": u.Email, "email_verified": u.EmailVerified})
}

// graphMe answers like Microsoft Graph's /me: the Email is the UPN.
func (f *fakeOIDC) graphMe(w http.ResponseWriter, r *http.Request) {
	u, ok := f.bearerUser(w, r)
	if !ok {
		return
	}
	writeJSON(w, 200, map[string]any{"id": u.Sub, "displayName": u.Name, "userPrincipalName": u.Email, "mail": "spoofed@victim.example"})
}

// fbMe answers like Facebook's Graph /me and checks appsecret_proof.
func (f *fakeOIDC) fbMe(w http.ResponseWriter, r *http.Request) {
	u, ok := f.bearerUser(w, r)
	if !ok {
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	mac := hmac.New(sha256.New, []byte(testClientSecret))
	mac.Write([]byte(tok))
	if r.URL.Query().Get("appsecret_proof") != hex.EncodeToString(mac.Sum(nil)) {
		writeJSON(w, 400, map[string]string{"error": "bad appsecret_proof"})
		return
	}
	if r.URL.Query().Get("fields") != "id,name,email" {
		writeJSON(w, 400, map[string]string{"error": "fields"})
		return
	}
	writeJSON(w, 200, map[string]any{"id": u.Sub, "name": u.Name, "email": u.Email})
}
