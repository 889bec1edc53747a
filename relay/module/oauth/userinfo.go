package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// userinfoProvider is an OAuth 2.0 provider whose user is read from one JSON
// endpoint: Google, Microsoft (Graph /me) and Facebook (Graph /me).
type userinfoProvider struct {
	client   *http.Client
	ep       oauth2.Endpoint
	userinfo string
	scope    []string
	opts     []oauth2.AuthCodeOption
	// query adds parameters to the user info URL for a token (Facebook's
	// appsecret_proof).
	query func(accessToken string) url.Values
	parse func(body json.RawMessage) (*identity, error)
}

func newGoogle(cfg Config, client *http.Client) *userinfoProvider {
	return &userinfoProvider{
		client: client,
		ep: oauth2.Endpoint{
			AuthURL:   endpointOr(cfg, "authorize", "https://accounts.google.com/o/oauth2/v2/auth"),
			TokenURL:  endpointOr(cfg, "token", "https://oauth2.googleapis.com/token"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
		userinfo: endpointOr(cfg, "userinfo", "https://openidconnect.googleapis.com/v1/userinfo"),
		scope:    unionScopes([]string{"openid", "profile", "email"}, cfg.Scopes),
		// A refresh token lets the session be checked after the hour an access
		// token lives, without sending the user through Google again.
		opts:  []oauth2.AuthCodeOption{oauth2.AccessTypeOffline},
		parse: parseOIDCClaims,
	}
}

// parseOIDCClaims reads standard OpenID Connect claims (Google's user info).
func parseOIDCClaims(body json.RawMessage) (*identity, error) {
	var c struct {
		Sub           string  `json:"sub"`
		Name          string  `json:"name"`
		Username      string  `json:"preferred_username"`
		Email         string  `json:"email"`
		EmailVerified boolish `json:"email_verified"`
	}
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: user info: %v", errInvalidIdentity, err)
	}
	if c.Sub == "" {
		return nil, fmt.Errorf("%w: user info has no sub", errInvalidIdentity)
	}
	id := &identity{ID: c.Sub, Name: c.Name}
	if id.Name == "" {
		id.Name = c.Username
	}
	if c.Email != "" {
		id.Emails = []email{{Addr: c.Email, Verified: bool(c.EmailVerified)}}
	}
	return id, nil
}

func newMicrosoft(cfg Config, client *http.Client) *userinfoProvider {
	return &userinfoProvider{
		client: client,
		ep: oauth2.Endpoint{
			AuthURL:   endpointOr(cfg, "authorize", "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"),
			TokenURL:  endpointOr(cfg, "token", "https://login.microsoftonline.com/common/oauth2/v2.0/token"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
		userinfo: endpointOr(cfg, "userinfo", "https://graph.microsoft.com/v1.0/me"),
		scope:    unionScopes([]string{"openid", "profile", "email", "offline_access", "User.Read"}, cfg.Scopes),
		parse:    parseMicrosoft,
	}
}

// parseMicrosoft reads Graph's /me. The userPrincipalName is the address the user
// signs in with, and its domain must be one the tenant has verified, so it counts as
// verified. The mail attribute can be set to anything by a tenant's admin (the
// "nOAuth" attack), so it is never trusted for constraints. Guest accounts
// (#EXT# in the UPN) have no trustworthy address.
func parseMicrosoft(body json.RawMessage) (*identity, error) {
	var me struct {
		ID          string `json:"id"`
		DisplayName string `json:"displayName"`
		Mail        string `json:"mail"`
		UPN         string `json:"userPrincipalName"`
	}
	if err := json.Unmarshal(body, &me); err != nil {
		return nil, fmt.Errorf("%w: Graph /me: %v", errInvalidIdentity, err)
	}
	if me.ID == "" {
		return nil, fmt.Errorf("%w: Graph /me has no id", errInvalidIdentity)
	}
	id := &identity{ID: me.ID, Name: me.DisplayName}
	if strings.Contains(me.UPN, "@") && !strings.Contains(strings.ToUpper(me.UPN), "#EXT#") {
		id.Emails = append(id.Emails, email{Addr: me.UPN, Verified: true})
	}
	if me.Mail != "" && !strings.EqualFold(me.Mail, me.UPN) {
		id.Emails = append(id.Emails, email{Addr: me.Mail, Verified: false})
	}
	return id, nil
}

func newFacebook(cfg Config, client *http.Client) *userinfoProvider {
	secret := []byte(cfg.ClientSecret)
	return &userinfoProvider{
		client: client,
		ep: oauth2.Endpoint{
			AuthURL:   endpointOr(cfg, "authorize", "https://www.facebook.com/v22.0/dialog/oauth"),
			TokenURL:  endpointOr(cfg, "token", "https://graph.facebook.com/v22.0/oauth/access_token"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
		userinfo: endpointOr(cfg, "userinfo", "https://graph.facebook.com/v22.0/me"),
		scope:    unionScopes([]string{"email", "public_profile"}, cfg.Scopes),
		query: func(token string) url.Values {
			// appsecret_proof: required when the app has "Require App Secret" on.
			mac := hmac.New(sha256.New, secret)
			mac.Write([]byte(token))
			return url.Values{"fields": {"id,name,email"}, "appsecret_proof": {hex.EncodeToString(mac.Sum(nil))}}
		},
		parse: parseFacebook,
	}
}

// parseFacebook reads Graph's /me. Facebook returns only an address the user has
// confirmed, so it counts as verified.
func parseFacebook(body json.RawMessage) (*identity, error) {
	var me struct {
		ID    idString `json:"id"`
		Name  string   `json:"name"`
		Email string   `json:"email"`
	}
	if err := json.Unmarshal(body, &me); err != nil {
		return nil, fmt.Errorf("%w: Graph /me: %v", errInvalidIdentity, err)
	}
	if me.ID == "" {
		return nil, fmt.Errorf("%w: Graph /me has no id", errInvalidIdentity)
	}
	id := &identity{ID: string(me.ID), Name: me.Name}
	if me.Email != "" {
		id.Emails = []email{{Addr: me.Email, Verified: true}}
	}
	return id, nil
}

func (p *userinfoProvider) endpoint(context.Context) (oauth2.Endpoint, error) { return p.ep, nil }
func (p *userinfoProvider) scopes() []string                                  { return p.scope }
func (p *userinfoProvider) authOptions(*loginState) []oauth2.AuthCodeOption   { return p.opts }

func (p *userinfoProvider) login(ctx context.Context, tok *oauth2.Token, _ *loginState) (*identity, error) {
	return p.identify(ctx, tok.AccessToken)
}

func (p *userinfoProvider) recheck(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (*oauth2.Token, *identity, error) {
	nt, err := refresh(ctx, cfg, tok, false)
	if err != nil {
		return nil, nil, err
	}
	id, err := p.identify(ctx, nt.AccessToken)
	return nt, id, err
}

func (p *userinfoProvider) identify(ctx context.Context, token string) (*identity, error) {
	u := p.userinfo
	if p.query != nil {
		sep := "?"
		if strings.Contains(u, "?") {
			sep = "&"
		}
		u += sep + p.query(token).Encode()
	}
	var body json.RawMessage
	if err := getJSON(ctx, p.client, u, token, nil, &body); err != nil {
		return nil, err
	}
	return p.parse(body)
}
