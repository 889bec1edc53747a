package oauth

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const githubHost = "github.example.com"

type ghEmail struct {
	Email    string `json:"email"`
	Primary  bool   `json:"primary"`
	Verified bool   `json:"verified"`
}

// fakeGitHub serves the OAuth endpoints and the parts of the REST API the github
// provider uses, for one user.
type fakeGitHub struct {
	mu       sync.Mutex
	login    string
	emails   []ghEmail
	orgs     []string
	teams    []string // org/slug
	revoked  bool
	codes    map[string]string // code → challenge
	tokens   map[string]bool
	apiCalls int
	scopes   string
}

func newFakeGitHub(t *testing.T, w *world) *fakeGitHub {
	t.Helper()
	g := &fakeGitHub{
		login:  "octocat",
		emails: []ghEmail{{Email: "octo@users.example", Primary: true, Verified: true}},
		codes:  map[string]string{},
		tokens: map[string]bool{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /login/oauth/authorize", func(rw http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if q.Get("client_id") != testClientID || q.Get("code_challenge_method") != "S256" {
			http.Error(rw, "bad request", 400)
			return
		}
		code := randToken(10)
		g.mu.Lock()
		g.codes[code] = q.Get("code_challenge")
		g.scopes = q.Get("scope")
		g.mu.Unlock()
		http.Redirect(rw, r, q.Get("redirect_uri")+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
	})
	mux.HandleFunc("POST /login/oauth/access_token", func(rw http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		g.mu.Lock()
		defer g.mu.Unlock()
		ch, ok := g.codes[r.PostForm.Get("code")]
		delete(g.codes, r.PostForm.Get("code"))
		sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
		if !ok || r.PostForm.Get("client_secret") != testClientSecret || base64.RawURLEncoding.EncodeToString(sum[:]) != ch {
			// GitHub answers errors with 200 and an error field.
			writeJSON(rw, 200, map[string]string{"error": "bad_verification_code"})
			return
		}
		tok := "gho_" + randToken(12)
		g.tokens[tok] = true
		writeJSON(rw, 200, map[string]string{"access_token": tok, "token_type": "bearer", "scope": g.scopes})
	})
	api := func(path string, fn func() any) {
		mux.HandleFunc("GET /api"+path, func(rw http.ResponseWriter, r *http.Request) {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.apiCalls++
			tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			if !g.tokens[tok] || g.revoked {
				writeJSON(rw, 401, map[string]string{"message": "Bad credentials"})
				return
			}
			if r.Header.Get("Accept") != "application/vnd.github+json" {
				writeJSON(rw, 415, map[string]string{"message": "want the GitHub media type"})
				return
			}
			if p := r.URL.Query().Get("page"); p != "" && p != "1" {
				writeJSON(rw, 200, []any{})
				return
			}
			writeJSON(rw, 200, fn())
		})
	}
	api("/user", func() any {
		return map[string]any{"id": 583231, "login": g.login, "name": "The Octocat", "email": nil}
	})
	api("/user/emails", func() any { return g.emails })
	api("/user/orgs", func() any {
		out := []map[string]string{}
		for _, o := range g.orgs {
			out = append(out, map[string]string{"login": o})
		}
		return out
	})
	api("/user/teams", func() any {
		out := []map[string]any{}
		for _, t := range g.teams {
			org, slug, _ := strings.Cut(t, "/")
			out = append(out, map[string]any{"slug": slug, "organization": map[string]string{"login": org}})
		}
		return out
	})
	w.serve(githubHost, mux)
	return g
}

func (g *fakeGitHub) update(fn func(g *fakeGitHub)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fn(g)
}

func githubWorld(t *testing.T, mod func(*Config)) (*world, *fakeGitHub) {
	t.Helper()
	w := newWorld(t)
	g := newFakeGitHub(t, w)
	cfg := Config{
		Provider:     "github",
		ClientID:     testClientID,
		ClientSecret: testClientSecret,
		CookieSecret: testSecret(t),
		HTTPClient:   w.providerClient(),
		Now:          w.clk.Now,
		Endpoints: map[string]string{
			"authorize": "https://" + githubHost + "/login/oauth/authorize",
			"token":     "https://" + githubHost + "/login/oauth/access_token",
			"api":       "https://" + githubHost + "/api",
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	w.startApp(m)
	return w, g
}

func TestGitHubFlow(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*Config)
		setup func(*fakeGitHub)
		want  map[string]string
		scope string
	}{
		{
			name:  "no constraints",
			want:  map[string]string{"Ferry-Auth-Github-Login": "octocat"},
			scope: "read:user user:email",
		},
		{
			name:  "org",
			cfg:   func(c *Config) { c.AllowGitHubOrgs = []string{"FerryTunnel"} },
			setup: func(g *fakeGitHub) { g.orgs = []string{"other", "ferrytunnel"} },
			want:  map[string]string{"Ferry-Auth-Github-Login": "octocat", "Ferry-Auth-Github-Organization": "ferrytunnel"},
			scope: "read:user user:email read:org",
		},
		{
			name:  "team",
			cfg:   func(c *Config) { c.AllowGitHubTeams = []string{"ferrytunnel/devs"} },
			setup: func(g *fakeGitHub) { g.teams = []string{"ferrytunnel/ops", "FerryTunnel/Devs"} },
			want: map[string]string{"Ferry-Auth-Github-Login": "octocat",
				"Ferry-Auth-Github-Organization": "ferrytunnel", "Ferry-Auth-Github-Team": "ferrytunnel/devs"},
			scope: "read:user user:email read:org",
		},
		{
			name:  "org via a team membership",
			cfg:   func(c *Config) { c.AllowGitHubOrgs = []string{"ferrytunnel"} },
			setup: func(g *fakeGitHub) { g.teams = []string{"ferrytunnel/ops"} },
			want:  map[string]string{"Ferry-Auth-Github-Login": "octocat", "Ferry-Auth-Github-Organization": "ferrytunnel"},
			scope: "read:user user:email read:org",
		},
		{
			name: "verified secondary email on an allowed domain",
			cfg:  func(c *Config) { c.AllowDomains = []string{"corp.example"} },
			setup: func(g *fakeGitHub) {
				g.emails = append(g.emails, ghEmail{Email: "octo@corp.example", Verified: true})
			},
			want:  map[string]string{"Ferry-Auth-Github-Login": "octocat", HeaderUserEmail: "octo@corp.example"},
			scope: "read:user user:email",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, g := githubWorld(t, tt.cfg)
			if tt.setup != nil {
				g.update(tt.setup)
			}
			resp, body := w.browser().get("https://"+appHost+"/repo", map[string]string{"Ferry-Auth-Github-Login": "forged"})
			if resp.StatusCode != 200 {
				t.Fatalf("GET /repo = %d %q, want 200", resp.StatusCode, body)
			}
			want := map[string]string{HeaderUserID: "583231", HeaderUserName: "The Octocat", HeaderUserEmail: "octo@users.example"}
			for k, v := range tt.want {
				want[k] = v
			}
			assertUpstreamIdentity(t, w.up, want)
			g.update(func(g *fakeGitHub) {
				if g.scopes != tt.scope {
					t.Errorf("scope = %q, want %q", g.scopes, tt.scope)
				}
			})
		})
	}
}

func TestGitHubDenied(t *testing.T) {
	tests := []struct {
		name  string
		cfg   func(*Config)
		setup func(*fakeGitHub)
	}{
		{"not in org", func(c *Config) { c.AllowGitHubOrgs = []string{"ferrytunnel"} }, func(g *fakeGitHub) { g.orgs = []string{"other"} }},
		{"not in team", func(c *Config) { c.AllowGitHubTeams = []string{"ferrytunnel/devs"} }, func(g *fakeGitHub) { g.teams = []string{"ferrytunnel/ops"} }},
		{"unverified email on domain", func(c *Config) { c.AllowDomains = []string{"corp.example"} },
			func(g *fakeGitHub) { g.emails = append(g.emails, ghEmail{Email: "octo@corp.example", Verified: false}) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, g := githubWorld(t, tt.cfg)
			g.update(tt.setup)
			resp, _ := w.browser().get("https://"+appHost+"/", nil)
			if resp.StatusCode != http.StatusForbidden || w.up.count() != 0 {
				t.Fatalf("GET / = %d (upstream calls %d), want 403 and none", resp.StatusCode, w.up.count())
			}
		})
	}
}

func TestGitHubRecheckRemovedFromOrg(t *testing.T) {
	w, g := githubWorld(t, func(c *Config) { c.AllowGitHubOrgs = []string{"ferrytunnel"} })
	g.update(func(g *fakeGitHub) { g.orgs = []string{"ferrytunnel"} })
	b := w.browser()
	if resp, _ := b.get("https://"+appHost+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("login = %d", resp.StatusCode)
	}

	// Removed from the org: within the interval nothing changes...
	g.update(func(g *fakeGitHub) { g.orgs = nil })
	w.clk.Advance(time.Minute)
	if resp, _ := b.get("https://"+appHost+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("GET within the interval = %d, want 200", resp.StatusCode)
	}
	// ...after it the session ends, and logging in again is refused.
	w.clk.Advance(3 * time.Minute)
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	resp, _ := do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "https://"+githubHost+"/login/oauth/authorize") {
		t.Fatalf("GET after removal = %d to %q, want 302 to GitHub", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, _ := b.get("https://"+appHost+"/", nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("login after removal = %d, want 403", resp.StatusCode)
	}
}

func TestGitHubRecheckRevokedToken(t *testing.T) {
	w, g := githubWorld(t, nil)
	b := w.browser()
	b.get("https://"+appHost+"/", nil)
	g.update(func(g *fakeGitHub) { g.revoked = true })
	w.clk.Advance(DefaultAuthCheckInterval)
	req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/", nil)
	resp, _ := do(t, b.noFollow(), req)
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("GET with a revoked token = %d, want 302 to login", resp.StatusCode)
	}
}

func TestGitHubPagination(t *testing.T) {
	// 100 orgs on page 1 make the provider ask for page 2, which the fake answers empty.
	w, g := githubWorld(t, func(c *Config) { c.AllowGitHubOrgs = []string{"org-99"} })
	g.update(func(g *fakeGitHub) {
		for i := range 100 {
			g.orgs = append(g.orgs, "org-"+strconv.Itoa(i))
		}
	})
	if resp, _ := w.browser().get("https://"+appHost+"/", nil); resp.StatusCode != 200 {
		t.Fatalf("GET = %d, want 200", resp.StatusCode)
	}
	g.update(func(g *fakeGitHub) {
		// user, emails, orgs p1, orgs p2, teams p1
		if g.apiCalls != 5 {
			t.Errorf("API calls = %d, want 5", g.apiCalls)
		}
	})
}
