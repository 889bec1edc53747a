package oauth

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// discoveryRetry is how long a failed OIDC discovery or SAML metadata fetch is
// remembered before the next request tries again.
const discoveryRetry = 5 * time.Second

// oidcProvider signs users in with any OpenID Connect issuer: the ID token (signed,
// with the login's nonce) identifies the user, the user info endpoint completes it.
type oidcProvider struct {
	issuer, clientID string
	client           *http.Client
	now              func() time.Time
	scope            []string

	mu       sync.Mutex
	prov     *oidc.Provider
	verifier *oidc.IDTokenVerifier
	lastErr  error
	lastTry  time.Time
}

func newOIDC(cfg Config, client *http.Client) *oidcProvider {
	return &oidcProvider{
		issuer:   cfg.IssuerURL,
		clientID: cfg.ClientID,
		client:   client,
		now:      cfg.Now,
		scope:    unionScopes([]string{oidc.ScopeOpenID, "profile", "email"}, cfg.Scopes),
	}
}

// discover fetches the issuer's configuration once; a failure is retried after
// discoveryRetry.
func (o *oidcProvider) discover(ctx context.Context) (*oidc.Provider, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.prov != nil {
		return o.prov, o.verifier, nil
	}
	if o.lastErr != nil && o.now().Sub(o.lastTry) < discoveryRetry {
		return nil, nil, o.lastErr
	}
	o.lastTry = o.now()
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.issuer)
	if err != nil {
		o.lastErr = fmt.Errorf("OIDC discovery for %s: %w", o.issuer, err)
		return nil, nil, o.lastErr
	}
	o.prov, o.lastErr = p, nil
	o.verifier = p.Verifier(&oidc.Config{ClientID: o.clientID, Now: o.now})
	return o.prov, o.verifier, nil
}

func (o *oidcProvider) endpoint(ctx context.Context) (oauth2.Endpoint, error) {
	p, _, err := o.discover(ctx)
	if err != nil {
		return oauth2.Endpoint{}, err
	}
	return p.Endpoint(), nil
}

func (o *oidcProvider) scopes() []string { return o.scope }

func (o *oidcProvider) authOptions(st *loginState) []oauth2.AuthCodeOption {
	return []oauth2.AuthCodeOption{oidc.Nonce(st.Nonce)}
}

func (o *oidcProvider) login(ctx context.Context, tok *oauth2.Token, st *loginState) (*identity, error) {
	p, _, err := o.discover(ctx)
	if err != nil {
		return nil, err
	}
	id, idt, err := o.verifyIDToken(ctx, tok)
	if err != nil {
		return nil, err
	}
	if idt == nil {
		return nil, fmt.Errorf("%w: the token response has no id_token (is the openid scope allowed?)", errInvalidIdentity)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(st.Nonce)) != 1 {
		return nil, fmt.Errorf("%w: the ID token's nonce is not this login's", errInvalidIdentity)
	}
	if p.UserInfoEndpoint() == "" {
		return id, nil
	}
	ui, err := o.userinfo(ctx, p, tok.AccessToken)
	if err != nil {
		return nil, err
	}
	return mergeUserInfo(id, ui)
}

// recheck refreshes the grant when there is a refresh token (the provider decides
// again), verifies a new ID token if one comes back, and asks the user info
// endpoint. With neither a refresh token nor a user info endpoint there is no way
// to check, and the user signs in again.
func (o *oidcProvider) recheck(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (*oauth2.Token, *identity, error) {
	p, _, err := o.discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	nt, err := refresh(ctx, cfg, tok, true)
	if err != nil {
		return nil, nil, err
	}
	var id *identity
	if nt != tok {
		if id, _, err = o.verifyIDToken(ctx, nt); err != nil {
			return nil, nil, err
		}
	}
	if p.UserInfoEndpoint() != "" {
		ui, err := o.userinfo(ctx, p, nt.AccessToken)
		if err != nil {
			return nil, nil, err
		}
		if id == nil {
			return nt, ui, nil
		}
		id, err = mergeUserInfo(id, ui)
		return nt, id, err
	}
	if id == nil {
		return nil, nil, fmt.Errorf("%w: the issuer has no user info endpoint and gave no refresh token, so the session cannot be re-checked", errInvalidIdentity)
	}
	return nt, id, nil
}

// verifyIDToken verifies the ID token in tok, if there is one.
func (o *oidcProvider) verifyIDToken(ctx context.Context, tok *oauth2.Token) (*identity, *oidc.IDToken, error) {
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, nil, nil
	}
	_, v, err := o.discover(ctx)
	if err != nil {
		return nil, nil, err
	}
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: ID token: %v", errInvalidIdentity, err)
	}
	if idt.AccessTokenHash != "" {
		if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			return nil, nil, fmt.Errorf("%w: ID token: %v", errInvalidIdentity, err)
		}
	}
	var claims json.RawMessage
	if err := idt.Claims(&claims); err != nil {
		return nil, nil, fmt.Errorf("%w: ID token claims: %v", errInvalidIdentity, err)
	}
	id, err := parseOIDCClaims(claims)
	if err != nil {
		return nil, nil, err
	}
	return id, idt, nil
}

func (o *oidcProvider) userinfo(ctx context.Context, p *oidc.Provider, accessToken string) (*identity, error) {
	var body json.RawMessage
	if err := getJSON(ctx, o.client, p.UserInfoEndpoint(), accessToken, nil, &body); err != nil {
		return nil, err
	}
	return parseOIDCClaims(body)
}

// mergeUserInfo completes the ID token's identity with the user info answer, which
// must be about the same subject (OpenID Connect Core 5.3.2).
func mergeUserInfo(id, ui *identity) (*identity, error) {
	if ui.ID != id.ID {
		return nil, fmt.Errorf("%w: user info is about subject %q, the ID token about %q", errInvalidIdentity, ui.ID, id.ID)
	}
	out := *id
	if ui.Name != "" {
		out.Name = ui.Name
	}
	if len(ui.Emails) > 0 {
		out.Emails = ui.Emails
	}
	return &out, nil
}
