package oauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/module/oauth/oauthtest"
)

func TestNewErrors(t *testing.T) {
	secret := make([]byte, 32)
	spKey, spCert := oauthtest.SelfSigned(t, "sp")
	otherKey, _ := oauthtest.SelfSigned(t, "other")
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	gh := func(mod func(*Config)) Config {
		c := Config{Provider: "github", ClientID: "id", ClientSecret: "s", CookieSecret: secret}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	idpMD := []byte(`<EntityDescriptor xmlns="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.com/metadata">
<IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
<SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.com/sso"/>
</IDPSSODescriptor></EntityDescriptor>`)
	sml := func(mod func(*Config)) Config {
		c := Config{Provider: "saml", IdPMetadataXML: idpMD, SPKey: spKey, SPCert: spCert, CookieSecret: secret}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	tests := []struct {
		name string
		cfg  Config
		want string // substring of the error; "" means New succeeds
	}{
		{"valid github", gh(nil), ""},
		{"provider case", gh(func(c *Config) { c.Provider = " GitHub " }), ""},
		{"unknown provider", gh(func(c *Config) { c.Provider = "gitlab" }), `unknown provider "gitlab": use one of facebook, github, google, microsoft, oidc, saml`},
		{"no client id", gh(func(c *Config) { c.ClientID = "" }), "oauth: client_id is required for provider github"},
		{"no client secret", gh(func(c *Config) { c.ClientSecret = "" }), "oauth: client_secret is required for provider github"},
		{"google no secret", Config{Provider: "google", ClientID: "x", CookieSecret: secret}, "client_secret is required for provider google"},
		{"oidc no issuer", Config{Provider: "oidc", ClientID: "x", ClientSecret: "y", CookieSecret: secret}, "issuer_url is required for provider oidc"},
		{"oidc http issuer", Config{Provider: "oidc", ClientID: "x", ClientSecret: "y", IssuerURL: "http://idp.example.com", CookieSecret: secret}, "issuer_url"},
		{"issuer on github", gh(func(c *Config) { c.IssuerURL = "https://x.example" }), "issuer_url applies to provider oidc only"},
		{"scope with space", gh(func(c *Config) { c.Scopes = []string{"read:org repo"} }), "one scope per entry"},
		{"short secret", gh(func(c *Config) { c.CookieSecret = make([]byte, 16) }), "cookie_secret must be at least 32 bytes (got 16)"},
		{"bad prefix", gh(func(c *Config) { c.CookiePrefix = "a b" }), "cookie_prefix"},
		{"interval too short", gh(func(c *Config) { c.AuthCheckInterval = 2 * time.Minute }), "auth_check_interval 2m0s is below the minimum of 3m0s"},
		{"interval 1s", gh(func(c *Config) { c.AuthCheckInterval = time.Second }), "auth_check_interval"},
		{"interval minimum", gh(func(c *Config) { c.AuthCheckInterval = 3 * time.Minute }), ""},
		{"interval longer", gh(func(c *Config) { c.AuthCheckInterval = time.Hour }), ""},
		{"negative inactivity", gh(func(c *Config) { c.InactivityTimeout = -1 }), "inactivity_timeout"},
		{"negative max", gh(func(c *Config) { c.MaxSessionDuration = -1 }), "max_session_duration"},
		{"bad email", gh(func(c *Config) { c.AllowEmails = []string{"alice"} }), `allow_emails entry "alice"`},
		{"bad domain", gh(func(c *Config) { c.AllowDomains = []string{"@example.com"} }), "allow_domains"},
		{"bad team", gh(func(c *Config) { c.AllowGitHubTeams = []string{"justorg"} }), "want org/team-slug"},
		{"bad org", gh(func(c *Config) { c.AllowGitHubOrgs = []string{"org/team"} }), "allow_github_orgs"},
		{"orgs on google", Config{Provider: "google", ClientID: "x", ClientSecret: "y", CookieSecret: secret, AllowGitHubOrgs: []string{"o"}}, "apply to provider github only"},
		{"unknown endpoint", gh(func(c *Config) { c.Endpoints = map[string]string{"userinfo": "https://x.example"} }), `endpoints key "userinfo" does not apply to provider github (known: api, authorize, token)`},
		{"relative endpoint", gh(func(c *Config) { c.Endpoints = map[string]string{"api": "/api"} }), "endpoints api"},
		{"valid saml", sml(nil), ""},
		{"saml no metadata", sml(func(c *Config) { c.IdPMetadataXML = nil }), "idp_metadata_xml or idp_metadata_url is required"},
		{"saml both metadata", sml(func(c *Config) { c.IdPMetadataURL = "https://idp.example.com/md" }), "not both"},
		{"saml bad metadata", sml(func(c *Config) { c.IdPMetadataXML = []byte("<nope/>") }), "idp_metadata_xml"},
		{"saml http metadata url", sml(func(c *Config) { c.IdPMetadataXML, c.IdPMetadataURL = nil, "http://idp.example.com/md" }), "idp_metadata_url"},
		{"saml no key", sml(func(c *Config) { c.SPKey = nil }), "sp_key and sp_cert are required"},
		{"saml key mismatch", sml(func(c *Config) { c.SPKey = otherKey }), "sp_cert does not match sp_key"},
		{"saml ec key", sml(func(c *Config) { c.SPKey = ecKey }), "SAML needs an RSA key"},
		{"saml client id", sml(func(c *Config) { c.ClientID = "x" }), "do not apply to provider saml"},
		{"saml fields on github", gh(func(c *Config) { c.SPKey = spKey }), "apply to provider saml only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("New = %v, want no error", err)
			case tt.want != "" && err == nil:
				t.Fatalf("New = nil error, want one containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("New = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	m, err := New(Config{Provider: "github", ClientID: "id", ClientSecret: "s", CookieSecret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	if m.cfg.AuthCheckInterval != 3*time.Minute || m.cfg.CookiePrefix != "ferry_session" {
		t.Errorf("defaults: interval %s prefix %q, want 3m0s and ferry_session", m.cfg.AuthCheckInterval, m.cfg.CookiePrefix)
	}
}
