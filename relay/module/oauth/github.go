package oauth

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/oauth2"
)

// githubPages bounds how many pages of 100 organizations or teams are read, so
// memberships are checked against the user's first 200 of each.
const githubPages = 2

// githubProvider signs users in with a GitHub OAuth app and reads the user, their
// emails and, when there are org or team constraints, their memberships from the
// REST API.
type githubProvider struct {
	client   *http.Client
	ep       oauth2.Endpoint
	api      string
	scope    []string
	wantOrgs bool
}

func newGitHub(cfg Config, client *http.Client) *githubProvider {
	g := &githubProvider{
		client: client,
		ep: oauth2.Endpoint{
			AuthURL:   endpointOr(cfg, "authorize", "https://github.com/login/oauth/authorize"),
			TokenURL:  endpointOr(cfg, "token", "https://github.com/login/oauth/access_token"),
			AuthStyle: oauth2.AuthStyleInParams,
		},
		api:      strings.TrimSuffix(endpointOr(cfg, "api", "https://api.github.com"), "/"),
		wantOrgs: len(cfg.AllowGitHubOrgs) > 0 || len(cfg.AllowGitHubTeams) > 0,
	}
	base := []string{"read:user", "user:email"}
	if g.wantOrgs {
		base = append(base, "read:org")
	}
	g.scope = unionScopes(base, cfg.Scopes)
	return g
}

func (g *githubProvider) endpoint(context.Context) (oauth2.Endpoint, error) { return g.ep, nil }
func (g *githubProvider) scopes() []string                                  { return g.scope }
func (g *githubProvider) authOptions(*loginState) []oauth2.AuthCodeOption   { return nil }

func (g *githubProvider) login(ctx context.Context, tok *oauth2.Token, _ *loginState) (*identity, error) {
	return g.identify(ctx, tok.AccessToken)
}

func (g *githubProvider) recheck(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (*oauth2.Token, *identity, error) {
	// OAuth app tokens do not expire; GitHub App user tokens expire after 8 h and
	// come with a refresh token.
	nt, err := refresh(ctx, cfg, tok, false)
	if err != nil {
		return nil, nil, err
	}
	id, err := g.identify(ctx, nt.AccessToken)
	return nt, id, err
}

var githubHeaders = http.Header{
	"Accept":               {"application/vnd.github+json"},
	"X-Github-Api-Version": {"2022-11-28"},
}

func (g *githubProvider) identify(ctx context.Context, token string) (*identity, error) {
	var user struct {
		ID    idString `json:"id"`
		Login string   `json:"login"`
		Name  string   `json:"name"`
	}
	if err := getJSON(ctx, g.client, g.api+"/user", token, githubHeaders, &user); err != nil {
		return nil, err
	}
	if user.ID == "" || user.Login == "" {
		return nil, fmt.Errorf("%w: GitHub /user has no id or login", errInvalidIdentity)
	}
	var emails []struct {
		Email    string `json:"email"`
		Primary  bool   `json:"primary"`
		Verified bool   `json:"verified"`
	}
	if err := getJSON(ctx, g.client, g.api+"/user/emails?per_page=100", token, githubHeaders, &emails); err != nil {
		return nil, err
	}
	id := &identity{
		ID:    string(user.ID),
		Name:  user.Name,
		Extra: map[string]string{"github-login": user.Login},
	}
	if id.Name == "" {
		id.Name = user.Login
	}
	for _, primaryPass := range []bool{true, false} {
		for _, e := range emails {
			if e.Primary == primaryPass && e.Email != "" {
				id.Emails = append(id.Emails, email{Addr: e.Email, Verified: e.Verified})
			}
		}
	}
	if !g.wantOrgs {
		return id, nil
	}
	for page := 1; page <= githubPages; page++ {
		var orgs []struct {
			Login string `json:"login"`
		}
		if err := getJSON(ctx, g.client, fmt.Sprintf("%s/user/orgs?per_page=100&page=%d", g.api, page), token, githubHeaders, &orgs); err != nil {
			return nil, err
		}
		for _, o := range orgs {
			id.GitHubOrgs = append(id.GitHubOrgs, strings.ToLower(o.Login))
		}
		if len(orgs) < 100 {
			break
		}
	}
	for page := 1; page <= githubPages; page++ {
		var teams []struct {
			Slug         string `json:"slug"`
			Organization struct {
				Login string `json:"login"`
			} `json:"organization"`
		}
		if err := getJSON(ctx, g.client, fmt.Sprintf("%s/user/teams?per_page=100&page=%d", g.api, page), token, githubHeaders, &teams); err != nil {
			return nil, err
		}
		for _, t := range teams {
			id.GitHubTeams = append(id.GitHubTeams, strings.ToLower(t.Organization.Login+"/"+t.Slug))
		}
		if len(teams) < 100 {
			break
		}
	}
	return id, nil
}

// endpointOr returns cfg.Endpoints[key] or def.
func endpointOr(cfg Config, key, def string) string {
	if v := cfg.Endpoints[key]; v != "" {
		return v
	}
	return def
}
