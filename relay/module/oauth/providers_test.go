package oauth

import (
	"encoding/json"
	"net/http"
	"testing"
)

// The Google, Microsoft and Facebook providers run against the fake OIDC server's
// authorize and token endpoints, with their own user info endpoints.
func TestUserinfoProviders(t *testing.T) {
	tests := []struct {
		provider, userinfo, scope string
		cfg                       func(*Config)
		wantEmail                 string
		wantStatus                int
	}{
		{provider: "google", userinfo: "/userinfo", scope: "openid profile email", wantEmail: "alice@example.com", wantStatus: 200},
		{provider: "google", userinfo: "/userinfo", scope: "openid profile email", wantStatus: 403,
			cfg: func(c *Config) { c.AllowDomains = []string{"corp.example"} }},
		{provider: "microsoft", userinfo: "/graph/me", scope: "openid profile email offline_access User.Read", wantEmail: "alice@example.com", wantStatus: 200,
			cfg: func(c *Config) { c.AllowDomains = []string{"example.com"} }},
		// Graph's mail attribute is set by the tenant admin: it must not pass a constraint.
		{provider: "microsoft", userinfo: "/graph/me", scope: "openid profile email offline_access User.Read", wantStatus: 403,
			cfg: func(c *Config) { c.AllowEmails = []string{"spoofed@victim.example"} }},
		{provider: "facebook", userinfo: "/fb/me", scope: "email public_profile", wantEmail: "alice@example.com", wantStatus: 200,
			cfg: func(c *Config) { c.Scopes = []string{"email"} }},
	}
	for _, tt := range tests {
		t.Run(tt.provider, func(t *testing.T) {
			w := newWorld(t)
			idp := newFakeOIDC(t, w)
			cfg := Config{
				Provider:     tt.provider,
				ClientID:     testClientID,
				ClientSecret: testClientSecret,
				CookieSecret: testSecret(t),
				HTTPClient:   w.providerClient(),
				Now:          w.clk.Now,
				Endpoints: map[string]string{
					"authorize": idp.Issuer + "/authorize",
					"token":     idp.Issuer + "/token",
					"userinfo":  idp.Issuer + tt.userinfo,
				},
			}
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			m, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			w.startApp(m)
			b := w.browser()
			resp, body := b.get("https://"+appHost+"/x", nil)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("GET /x = %d %q, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			if got := idp.LastAuthorize().Get("scope"); got != tt.scope {
				t.Errorf("scope = %q, want %q", got, tt.scope)
			}
			if tt.provider == "google" && idp.LastAuthorize().Get("access_type") != "offline" {
				t.Errorf("google authorize without access_type=offline")
			}
			if tt.wantStatus != 200 {
				return
			}
			assertUpstreamIdentity(t, w.up, map[string]string{
				HeaderUserID: "user-1", HeaderUserName: "Alice Example", HeaderUserEmail: tt.wantEmail,
			})

			// Re-check: user info again; revoked → logged out.
			w.clk.Advance(DefaultAuthCheckInterval)
			if resp, _ := b.get("https://"+appHost+"/y", nil); resp.StatusCode != 200 {
				t.Fatalf("GET after the interval = %d, want 200", resp.StatusCode)
			}
			idp.Revoke("user-1")
			w.clk.Advance(DefaultAuthCheckInterval)
			req, _ := http.NewRequest(http.MethodGet, "https://"+appHost+"/z", nil)
			if resp, _ := do(t, b.noFollow(), req); resp.StatusCode != http.StatusFound {
				t.Fatalf("GET after revocation = %d, want 302 to login", resp.StatusCode)
			}
		})
	}
}

func TestParseMicrosoft(t *testing.T) {
	tests := []struct {
		body string
		want []email
	}{
		{`{"id":"1","displayName":"A","userPrincipalName":"a@corp.example","mail":"a@corp.example"}`,
			[]email{{"a@corp.example", true}}},
		{`{"id":"1","displayName":"A","userPrincipalName":"a@corp.example","mail":"ceo@victim.example"}`,
			[]email{{"a@corp.example", true}, {"ceo@victim.example", false}}},
		{`{"id":"1","displayName":"A","userPrincipalName":"a_gmail.com#EXT#@corp.onmicrosoft.com","mail":"a@gmail.com"}`,
			[]email{{"a@gmail.com", false}}},
	}
	for _, tt := range tests {
		id, err := parseMicrosoft(json.RawMessage(tt.body))
		if err != nil {
			t.Fatalf("parseMicrosoft(%s): %v", tt.body, err)
		}
		if len(id.Emails) != len(tt.want) {
			t.Fatalf("parseMicrosoft(%s) emails = %v, want %v", tt.body, id.Emails, tt.want)
		}
		for i := range tt.want {
			if id.Emails[i] != tt.want[i] {
				t.Errorf("parseMicrosoft(%s) emails = %v, want %v", tt.body, id.Emails, tt.want)
			}
		}
	}
	if _, err := parseMicrosoft(json.RawMessage(`{"displayName":"no id"}`)); err == nil {
		t.Error("parseMicrosoft without id = nil error")
	}
}

func TestParseOIDCClaimsStringBool(t *testing.T) {
	id, err := parseOIDCClaims(json.RawMessage(`{"sub":"s","email":"a@b.example","email_verified":"true","preferred_username":"ab"}`))
	if err != nil || !id.Emails[0].Verified || id.Name != "ab" {
		t.Fatalf("parseOIDCClaims = %+v, %v; want a verified email and name ab", id, err)
	}
}

func TestUserinfoTooLarge(t *testing.T) {
	w := newWorld(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(rw http.ResponseWriter, _ *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		_, _ = rw.Write([]byte(`{"sub":"`))
		chunk := make([]byte, 64<<10)
		for i := range chunk {
			chunk[i] = 'a'
		}
		for range 20 { // 1.25 MiB
			if _, err := rw.Write(chunk); err != nil {
				return
			}
		}
		_, _ = rw.Write([]byte(`"}`))
	})
	w.serve("big.example.com", mux)
	c := providerClient(w.providerClient())
	var out json.RawMessage
	err := getJSON(t.Context(), c, "https://big.example.com/big", "tok", nil, &out)
	if err == nil {
		t.Fatal("a 1.25 MiB user info answer was accepted")
	}
	if rejected(err) {
		t.Errorf("an oversized answer counts as a rejection (%v); want a transient failure", err)
	}
}
