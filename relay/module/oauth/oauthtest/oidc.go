package oauthtest

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

// User is an account at the fake OIDC provider.
type User struct {
	Sub           string
	Name          string
	Email         string
	EmailVerified bool
}

// Alice is the user every OIDC provider starts with and signs in until LoginAs says
// otherwise.
var Alice = User{Sub: "user-1", Name: "Alice Example", Email: "alice@example.com", EmailVerified: true}

// OIDCOptions shape a fake OIDC provider.
type OIDCOptions struct {
	// Issuer is the URL the provider is served at and names itself by; the caller then
	// serves the OIDC value (an http.Handler) there. Empty: NewOIDC starts its own TLS
	// server on 127.0.0.1 and Issuer is its URL (https://127.0.0.1:PORT).
	Issuer string
	// ClientID and ClientSecret are the one registered client (default ClientID and
	// ClientSecret).
	ClientID, ClientSecret string
	// RedirectURI says whether an authorize request's redirect_uri is registered (nil:
	// any https URL whose path is CallbackPath).
	RedirectURI func(uri string) bool
}

// Behaviour are the provider's switches; change them with OIDC.Set. The zero value is
// a well-behaved provider.
type Behaviour struct {
	// NoRefreshToken leaves refresh tokens out of token answers.
	NoRefreshToken bool
	// RotateRefresh makes a refresh token single-use.
	RotateRefresh bool
	// UserinfoStatus, when not 0, answers user info (and the Graph and Facebook /me)
	// with this status.
	UserinfoStatus int
	// BadNonce puts the wrong nonce in ID tokens.
	BadNonce bool
	// TokenError, when set, answers every token request 400 with this OAuth error.
	TokenError string
}

// OIDC is a fake OpenID Connect provider: discovery, JWKS, an authorize endpoint that
// signs the LoginAs user in at once (no page), a token endpoint (authorization code
// with PKCE S256, refresh) issuing RS256 ID tokens, and user info. It also answers
// like Microsoft Graph at /graph/me (the email is the userPrincipalName, with a
// spoofed mail) and like Facebook at /fb/me (checking appsecret_proof), for the
// microsoft and facebook providers.
type OIDC struct {
	// Issuer is the issuer URL (https).
	Issuer string
	// ClientID and ClientSecret are the registered client's credentials.
	ClientID, ClientSecret string
	// Server is the provider's own server when Options.Issuer was empty.
	Server

	t          testing.TB
	key        *rsa.PrivateKey
	redirectOK func(string) bool
	mux        *http.ServeMux

	mu            sync.Mutex
	b             Behaviour
	users         map[string]*account
	loginAs       string
	codes         map[string]codeGrant
	access        map[string]string // access token → sub
	refresh       map[string]string // refresh token → sub
	authorizeReqs []url.Values
	refreshCalls  int
	userinfoCalls int
}

type account struct {
	User
	revoked bool
}

type codeGrant struct {
	sub, nonce, challenge, redirect string
}

// NewOIDC returns a provider knowing Alice and signing her in.
func NewOIDC(t testing.TB, o OIDCOptions) *OIDC {
	t.Helper()
	f := &OIDC{
		Issuer:       strings.TrimSuffix(o.Issuer, "/"),
		ClientID:     o.ClientID,
		ClientSecret: o.ClientSecret,
		t:            t,
		key:          RSAKey(t, "oidc"),
		redirectOK:   o.RedirectURI,
		users:        map[string]*account{},
		codes:        map[string]codeGrant{},
		access:       map[string]string{},
		refresh:      map[string]string{},
	}
	if f.ClientID == "" {
		f.ClientID = ClientID
	}
	if f.ClientSecret == "" {
		f.ClientSecret = ClientSecret
	}
	if f.redirectOK == nil {
		f.redirectOK = func(s string) bool {
			u, err := url.Parse(s)
			return err == nil && u.Scheme == "https" && u.Host != "" && u.Path == CallbackPath && u.RawQuery == ""
		}
	}
	f.AddUser(Alice)
	f.loginAs = Alice.Sub
	f.mux = http.NewServeMux()
	f.mux.HandleFunc("GET /.well-known/openid-configuration", f.discovery)
	f.mux.HandleFunc("GET /jwks", f.jwks)
	f.mux.HandleFunc("GET /authorize", f.authorize)
	f.mux.HandleFunc("POST /token", f.token)
	f.mux.HandleFunc("GET /userinfo", f.userinfo)
	f.mux.HandleFunc("GET /graph/me", f.graphMe)
	f.mux.HandleFunc("GET /fb/me", f.fbMe)
	if f.Issuer == "" {
		f.HTTPS, f.CA = startTLS(t, "Fake OIDC Issuer CA", f, func(u string) { f.Issuer = u })
	}
	return f
}

// ServeHTTP serves the provider (for a caller serving it at Options.Issuer).
func (f *OIDC) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.mux.ServeHTTP(w, r) }

// AddUser adds or replaces a user (by Sub); a revoked user is active again.
func (f *OIDC) AddUser(u User) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.users[u.Sub] = &account{User: u}
}

// LoginAs makes the authorize endpoint sign in the user with this sub from now on.
func (f *OIDC) LoginAs(sub string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users[sub] == nil {
		f.t.Errorf("oauthtest: LoginAs(%q): no such user", sub)
	}
	f.loginAs = sub
}

// Revoke makes refresh and user info refuse the user's tokens.
func (f *OIDC) Revoke(sub string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a := f.users[sub]; a != nil {
		a.revoked = true
	}
}

// Set changes the provider's behaviour.
func (f *OIDC) Set(fn func(*Behaviour)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(&f.b)
}

// Counts returns how many refresh grants and user info calls (including /graph/me and
// /fb/me) the provider has answered.
func (f *OIDC) Counts() (refreshes, userinfos int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refreshCalls, f.userinfoCalls
}

// AuthorizeCount returns how many authorize requests the provider has seen.
func (f *OIDC) AuthorizeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.authorizeReqs)
}

// LastAuthorize returns the query of the last authorize request, or nil.
func (f *OIDC) LastAuthorize() url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.authorizeReqs) == 0 {
		return nil
	}
	return f.authorizeReqs[len(f.authorizeReqs)-1]
}

func (f *OIDC) discovery(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, 200, map[string]any{
		"issuer":                                f.Issuer,
		"authorization_endpoint":                f.Issuer + "/authorize",
		"token_endpoint":                        f.Issuer + "/token",
		"userinfo_endpoint":                     f.Issuer + "/userinfo",
		"jwks_uri":                              f.Issuer + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
	})
}

func (f *OIDC) jwks(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, 200, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &f.key.PublicKey, KeyID: "k1", Algorithm: string(jose.RS256), Use: "sig",
	}}})
}

// authorize checks the request and redirects straight back with a code.
func (f *OIDC) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f.mu.Lock()
	f.authorizeReqs = append(f.authorizeReqs, q)
	sub := f.loginAs
	f.mu.Unlock()
	if q.Get("response_type") != "code" || q.Get("client_id") != f.ClientID {
		http.Error(w, "bad response_type or client_id", http.StatusBadRequest)
		return
	}
	if q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" {
		http.Error(w, "PKCE S256 required", http.StatusBadRequest)
		return
	}
	redirect := q.Get("redirect_uri")
	if !f.redirectOK(redirect) {
		http.Error(w, "unregistered redirect_uri "+redirect, http.StatusBadRequest)
		return
	}
	code := RandToken(16)
	f.mu.Lock()
	f.codes[code] = codeGrant{sub: sub, nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: redirect}
	f.mu.Unlock()
	u, _ := url.Parse(redirect)
	u.RawQuery = url.Values{"code": {code}, "state": {q.Get("state")}}.Encode()
	http.Redirect(w, r, u.String(), http.StatusFound)
}

func (f *OIDC) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != f.ClientID || secret != f.ClientSecret {
		WriteJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.b.TokenError != "" {
		WriteJSON(w, 400, map[string]string{"error": f.b.TokenError})
		return
	}
	var sub, nonce string
	switch r.PostForm.Get("grant_type") {
	case "authorization_code":
		g, ok := f.codes[r.PostForm.Get("code")]
		delete(f.codes, r.PostForm.Get("code"))
		if !ok {
			WriteJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if base64.RawURLEncoding.EncodeToString(sum[:]) != g.challenge {
			WriteJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "PKCE verifier mismatch"})
			return
		}
		if r.PostForm.Get("redirect_uri") != g.redirect {
			WriteJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "redirect_uri mismatch"})
			return
		}
		sub, nonce = g.sub, g.nonce
		if f.b.BadNonce {
			nonce = "not-the-nonce"
		}
	case "refresh_token":
		f.refreshCalls++
		rt := r.PostForm.Get("refresh_token")
		s, ok := f.refresh[rt]
		if !ok || f.users[s] == nil || f.users[s].revoked {
			WriteJSON(w, 400, map[string]string{"error": "invalid_grant"})
			return
		}
		if f.b.RotateRefresh {
			delete(f.refresh, rt)
		}
		sub = s
	default:
		WriteJSON(w, 400, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	u := f.users[sub]
	if u == nil {
		WriteJSON(w, 400, map[string]string{"error": "invalid_grant", "error_description": "no such user"})
		return
	}
	at := RandToken(24)
	f.access[at] = sub
	resp := map[string]any{
		"access_token": at,
		"token_type":   "Bearer",
		"expires_in":   3600,
		"id_token":     f.idToken(u.User, nonce),
	}
	if !f.b.NoRefreshToken {
		rt := RandToken(24)
		f.refresh[rt] = sub
		resp["refresh_token"] = rt
	}
	WriteJSON(w, 200, resp)
}

func (f *OIDC) idToken(u User, nonce string) string {
	now := time.Now()
	claims := map[string]any{
		"iss":            f.Issuer,
		"sub":            u.Sub,
		"aud":            f.ClientID,
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
func (f *OIDC) bearerUser(w http.ResponseWriter, r *http.Request) (User, bool) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.userinfoCalls++
	if f.b.UserinfoStatus != 0 {
		WriteJSON(w, f.b.UserinfoStatus, map[string]string{"error": "unavailable"})
		return User{}, false
	}
	sub, ok := f.access[tok]
	if !ok || f.users[sub] == nil || f.users[sub].revoked {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		WriteJSON(w, 401, map[string]string{"error": "invalid_token"})
		return User{}, false
	}
	return f.users[sub].User, true
}

func (f *OIDC) userinfo(w http.ResponseWriter, r *http.Request) {
	u, ok := f.bearerUser(w, r)
	if !ok {
		return
	}
	WriteJSON(w, 200, map[string]any{"sub": u.Sub, "name": u.Name, "email": u.Email, "email_verified": u.EmailVerified})
}

// graphMe answers like Microsoft Graph's /me: the Email is the UPN.
func (f *OIDC) graphMe(w http.ResponseWriter, r *http.Request) {
	u, ok := f.bearerUser(w, r)
	if !ok {
		return
	}
	WriteJSON(w, 200, map[string]any{"id": u.Sub, "displayName": u.Name, "userPrincipalName": u.Email, "mail": "spoofed@victim.example"})
}

// fbMe answers like Facebook's Graph /me and checks appsecret_proof.
func (f *OIDC) fbMe(w http.ResponseWriter, r *http.Request) {
	u, ok := f.bearerUser(w, r)
	if !ok {
		return
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	mac := hmac.New(sha256.New, []byte(f.ClientSecret))
	mac.Write([]byte(tok))
	if r.URL.Query().Get("appsecret_proof") != hex.EncodeToString(mac.Sum(nil)) {
		WriteJSON(w, 400, map[string]string{"error": "bad appsecret_proof"})
		return
	}
	if r.URL.Query().Get("fields") != "id,name,email" {
		WriteJSON(w, 400, map[string]string{"error": "fields"})
		return
	}
	WriteJSON(w, 200, map[string]any{"id": u.Sub, "name": u.Name, "email": u.Email})
}
