package oauth

import (
	"crypto"
	"crypto/rsa"
	"crypto/x509"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/crewjam/saml"
)

// Defaults and limits.
const (
	// DefaultCookiePrefix names the session cookie when Config.CookiePrefix is empty.
	DefaultCookiePrefix = "ferry_session"
	// DefaultAuthCheckInterval is how often a session is re-checked with the provider
	// when Config.AuthCheckInterval is 0. It is also the minimum.
	DefaultAuthCheckInterval = 3 * time.Minute
	// MinAuthCheckInterval is the shortest re-check interval New accepts, so that a
	// busy endpoint cannot hammer the provider.
	MinAuthCheckInterval = 3 * time.Minute
	// DefaultSAMLSessionDuration bounds a SAML session when neither the assertion's
	// SessionNotOnOrAfter nor Config.MaxSessionDuration does: SAML has no back channel
	// to re-check a user with.
	DefaultSAMLSessionDuration = 24 * time.Hour
	// MinCookieSecret is the shortest Config.CookieSecret New accepts.
	MinCookieSecret = 32

	// maxProviderBody caps every response body read from a provider.
	maxProviderBody = 1 << 20
	// providerTimeout bounds each exchange with a provider (token, API, discovery).
	providerTimeout = 15 * time.Second
	// stateLifetime is how long a started login may take.
	stateLifetime = 30 * time.Minute
)

// Providers lists the values Config.Provider accepts.
func Providers() []string {
	return []string{"facebook", "github", "google", "microsoft", "oidc", "saml"}
}

// Config selects an identity provider and who it lets in. Field names in error
// messages are the snake_case keys of the relay's configuration (client_id, ...).
type Config struct {
	// Provider is one of Providers(): "github", "google", "microsoft", "facebook"
	// (OAuth 2.0 with the user's own application), "oidc" (any OpenID Connect issuer)
	// or "saml" (the relay is a SAML service provider). Case does not matter.
	Provider string
	// ClientID and ClientSecret are the OAuth application's credentials (oauth and
	// oidc providers; required).
	ClientID, ClientSecret string
	// Scopes are requested in addition to the ones the middleware needs itself
	// (github: read:user user:email, and read:org with org or team constraints;
	// google, microsoft, oidc: openid profile email; microsoft also offline_access
	// User.Read; facebook: email public_profile).
	Scopes []string
	// IssuerURL is the OpenID Connect issuer (oidc only; required, https). Discovery
	// runs on first use, not in New, and is retried if it fails.
	IssuerURL string

	// IdPMetadataXML is the SAML identity provider's metadata; IdPMetadataURL is where
	// to fetch it (https; fetched on first use and every 24 h after). Exactly one is
	// required for saml.
	IdPMetadataXML []byte
	IdPMetadataURL string
	// SPKey and SPCert are the service provider's own RSA key and certificate (saml;
	// required). The caller generates them once and keeps them: IdPs pin the
	// certificate from the SP metadata.
	SPKey  crypto.Signer
	SPCert *x509.Certificate

	// AllowEmails lets in users with one of these (verified) email addresses; case
	// does not matter. AllowDomains lets in users whose verified email is in one of
	// these domains (exactly: "example.com" does not cover "sub.example.com").
	AllowEmails, AllowDomains []string
	// AllowGitHubOrgs lets in members of these GitHub organizations (login, without
	// @); AllowGitHubTeams members of these teams ("org/team-slug"). github only.
	//
	// A user is let in when no constraint is set at all, or when any one of them
	// matches.
	AllowGitHubOrgs, AllowGitHubTeams []string

	// CookieSecret keys the encryption and authentication (AES-256-GCM) of the
	// cookies; at least 32 bytes, required. Keep it stable across restarts and the
	// same on every relay serving the endpoint, or sessions end.
	CookieSecret []byte
	// CookiePrefix names the cookies: the session is PREFIX (split over PREFIX_1,
	// PREFIX_2, ... when large), logins in progress PREFIX_state_*. Every cookie whose
	// name starts with PREFIX belongs to the middleware and is not passed upstream.
	// Default "ferry_session"; "__Host-ferry_session" adds the browser's __Host-
	// protections against cookies set by sibling subdomains.
	CookiePrefix string

	// AuthCheckInterval is how long a session is trusted before the identity is checked
	// again with the provider (refresh token and/or user info call, constraints
	// evaluated again). Default and minimum 3 minutes.
	AuthCheckInterval time.Duration
	// InactivityTimeout ends a session unused for this long (0: never).
	InactivityTimeout time.Duration
	// MaxSessionDuration ends a session this long after login (0: no limit for oauth
	// and oidc; DefaultSAMLSessionDuration for saml unless the assertion says sooner).
	MaxSessionDuration time.Duration

	// HTTPClient makes the calls to the provider (nil: a plain client). Its Timeout
	// is set to 15 s if zero, and every body read through it is capped at 1 MiB.
	HTTPClient *http.Client
	// Endpoints overrides provider URLs (absolute https URLs), for tests, GitHub
	// Enterprise and special tenants (e.g. a Microsoft tenant instead of "common").
	// Keys: "authorize", "token" (github, google, microsoft, facebook), "userinfo"
	// (google, microsoft, facebook), "api" (github: the REST API base, default
	// https://api.github.com). oidc and saml take none: discovery and metadata say.
	Endpoints map[string]string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Logger receives provider failures and denials (nil: discarded).
	Logger *slog.Logger
	// OnReject, when set, is called for each sign-in the module refuses: the provider
	// said no, its answer did not verify, or the user is not allowed (metrics).
	OnReject func()
}

// oauthProviders are the providers that use the OAuth 2.0 code flow.
var oauthProviders = []string{"facebook", "github", "google", "microsoft", "oidc"}

// endpointKeys lists the Endpoints keys each provider accepts.
var endpointKeys = map[string][]string{
	"github":    {"api", "authorize", "token"},
	"google":    {"authorize", "token", "userinfo"},
	"microsoft": {"authorize", "token", "userinfo"},
	"facebook":  {"authorize", "token", "userinfo"},
}

// normalize checks cfg, fills in defaults and returns the result; errors name the
// configuration key and say how to fix it.
func normalize(cfg Config) (Config, error) {
	cfg.Provider = strings.ToLower(strings.TrimSpace(cfg.Provider))
	p := cfg.Provider
	if !slices.Contains(Providers(), p) {
		return cfg, fmt.Errorf("oauth: unknown provider %q: use one of %s", cfg.Provider, strings.Join(Providers(), ", "))
	}
	isOAuth := slices.Contains(oauthProviders, p)

	if isOAuth {
		if cfg.ClientID == "" {
			return cfg, fmt.Errorf("oauth: client_id is required for provider %s", p)
		}
		if cfg.ClientSecret == "" {
			return cfg, fmt.Errorf("oauth: client_secret is required for provider %s", p)
		}
	} else {
		if cfg.ClientID != "" || cfg.ClientSecret != "" {
			return cfg, fmt.Errorf("oauth: client_id and client_secret do not apply to provider %s", p)
		}
		if len(cfg.Scopes) > 0 {
			return cfg, fmt.Errorf("oauth: scopes do not apply to provider %s", p)
		}
	}
	for _, s := range cfg.Scopes {
		if s == "" || strings.ContainsAny(s, " \t\r\n") {
			return cfg, fmt.Errorf("oauth: scopes entry %q: one scope per entry, without spaces", s)
		}
	}

	if p == "oidc" {
		if cfg.IssuerURL == "" {
			return cfg, errors.New("oauth: issuer_url is required for provider oidc")
		}
		if err := checkHTTPS(cfg.IssuerURL); err != nil {
			return cfg, fmt.Errorf("oauth: issuer_url: %w", err)
		}
	} else if cfg.IssuerURL != "" {
		return cfg, fmt.Errorf("oauth: issuer_url applies to provider oidc only, not %s", p)
	}

	if p == "saml" {
		if err := checkSAML(cfg); err != nil {
			return cfg, err
		}
	} else if len(cfg.IdPMetadataXML) > 0 || cfg.IdPMetadataURL != "" || cfg.SPKey != nil || cfg.SPCert != nil {
		return cfg, fmt.Errorf("oauth: idp_metadata, sp_key and sp_cert apply to provider saml only, not %s", p)
	}

	for k, v := range cfg.Endpoints {
		if !slices.Contains(endpointKeys[p], k) {
			known := "none"
			if len(endpointKeys[p]) > 0 {
				known = strings.Join(endpointKeys[p], ", ")
			}
			return cfg, fmt.Errorf("oauth: endpoints key %q does not apply to provider %s (known: %s)", k, p, known)
		}
		if err := checkHTTPS(v); err != nil {
			return cfg, fmt.Errorf("oauth: endpoints %s: %w", k, err)
		}
	}

	var err error
	if cfg.AllowEmails, err = cleanList(cfg.AllowEmails, "allow_emails", func(s string) error {
		if i := strings.LastIndexByte(s, '@'); i <= 0 || i == len(s)-1 {
			return errors.New("want an address like alice@example.com")
		}
		return nil
	}); err != nil {
		return cfg, err
	}
	if cfg.AllowDomains, err = cleanList(cfg.AllowDomains, "allow_domains", func(s string) error {
		if strings.ContainsAny(s, "@/: ") || strings.HasPrefix(s, ".") || !strings.Contains(s, ".") {
			return errors.New("want a bare domain like example.com")
		}
		return nil
	}); err != nil {
		return cfg, err
	}
	if cfg.AllowGitHubOrgs, err = cleanList(cfg.AllowGitHubOrgs, "allow_github_orgs", func(s string) error {
		if strings.ContainsAny(s, "@/ ") {
			return errors.New("want the organization's login, like ferrytunnel")
		}
		return nil
	}); err != nil {
		return cfg, err
	}
	if cfg.AllowGitHubTeams, err = cleanList(cfg.AllowGitHubTeams, "allow_github_teams", func(s string) error {
		org, team, ok := strings.Cut(s, "/")
		if !ok || org == "" || team == "" || strings.ContainsAny(team, "/@ ") || strings.ContainsAny(org, "@ ") {
			return errors.New("want org/team-slug, like ferrytunnel/developers")
		}
		return nil
	}); err != nil {
		return cfg, err
	}
	if p != "github" && (len(cfg.AllowGitHubOrgs) > 0 || len(cfg.AllowGitHubTeams) > 0) {
		return cfg, fmt.Errorf("oauth: allow_github_orgs and allow_github_teams apply to provider github only, not %s", p)
	}

	if len(cfg.CookieSecret) < MinCookieSecret {
		return cfg, fmt.Errorf("oauth: cookie_secret must be at least %d bytes (got %d): generate it once from a CSPRNG and keep it", MinCookieSecret, len(cfg.CookieSecret))
	}
	if cfg.CookiePrefix == "" {
		cfg.CookiePrefix = DefaultCookiePrefix
	}
	for _, c := range cfg.CookiePrefix {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return cfg, fmt.Errorf("oauth: cookie_prefix %q: use letters, digits, '_', '-' and '.' only", cfg.CookiePrefix)
		}
	}

	switch {
	case cfg.AuthCheckInterval == 0:
		cfg.AuthCheckInterval = DefaultAuthCheckInterval
	case cfg.AuthCheckInterval < MinAuthCheckInterval:
		return cfg, fmt.Errorf("oauth: auth_check_interval %s is below the minimum of %s", cfg.AuthCheckInterval, MinAuthCheckInterval)
	}
	if cfg.InactivityTimeout < 0 {
		return cfg, fmt.Errorf("oauth: inactivity_timeout %s is negative: use 0 for none", cfg.InactivityTimeout)
	}
	if cfg.MaxSessionDuration < 0 {
		return cfg, fmt.Errorf("oauth: max_session_duration %s is negative: use 0 for none", cfg.MaxSessionDuration)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// cleanList trims and lower-cases entries, drops duplicates and checks each.
func cleanList(in []string, key string, check func(string) error) ([]string, error) {
	var out []string
	for _, s := range in {
		s = strings.ToLower(strings.TrimSpace(s))
		if err := check(s); err != nil {
			return nil, fmt.Errorf("oauth: %s entry %q: %w", key, s, err)
		}
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out, nil
}

func checkHTTPS(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", s, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("%q: want an https:// URL", s)
	}
	return nil
}

func checkSAML(cfg Config) error {
	switch {
	case len(cfg.IdPMetadataXML) > 0 && cfg.IdPMetadataURL != "":
		return errors.New("oauth: set one of idp_metadata_xml and idp_metadata_url for provider saml, not both")
	case len(cfg.IdPMetadataXML) > 0:
		if _, err := parseIdPMetadata(cfg.IdPMetadataXML); err != nil {
			return fmt.Errorf("oauth: idp_metadata_xml: %w", err)
		}
	case cfg.IdPMetadataURL != "":
		if err := checkHTTPS(cfg.IdPMetadataURL); err != nil {
			return fmt.Errorf("oauth: idp_metadata_url: %w", err)
		}
	default:
		return errors.New("oauth: idp_metadata_xml or idp_metadata_url is required for provider saml")
	}
	if cfg.SPKey == nil || cfg.SPCert == nil {
		return errors.New("oauth: sp_key and sp_cert are required for provider saml: generate an RSA key and a self-signed certificate once and keep them")
	}
	if _, ok := cfg.SPKey.(*rsa.PrivateKey); !ok {
		return fmt.Errorf("oauth: sp_key is a %T: SAML needs an RSA key (to decrypt assertions)", cfg.SPKey)
	}
	pub, ok := cfg.SPCert.PublicKey.(*rsa.PublicKey)
	if !ok || !pub.Equal(cfg.SPKey.Public()) {
		return errors.New("oauth: sp_cert does not match sp_key")
	}
	return nil
}

// parseIdPMetadata reads IdP metadata: an EntityDescriptor, or the first
// EntityDescriptor with an IDPSSODescriptor in an EntitiesDescriptor.
func parseIdPMetadata(b []byte) (*saml.EntityDescriptor, error) {
	var ed saml.EntityDescriptor
	if err := xml.Unmarshal(b, &ed); err != nil {
		var eds saml.EntitiesDescriptor
		if err2 := xml.Unmarshal(b, &eds); err2 != nil {
			return nil, fmt.Errorf("not SAML metadata: %w", err)
		}
		found := false
		for _, e := range eds.EntityDescriptors {
			if len(e.IDPSSODescriptors) > 0 {
				ed, found = e, true
				break
			}
		}
		if !found {
			return nil, errors.New("no IdP (IDPSSODescriptor) in the metadata")
		}
	}
	if ed.EntityID == "" {
		return nil, errors.New("the metadata has no entityID")
	}
	if len(ed.IDPSSODescriptors) == 0 {
		return nil, errors.New("no IdP (IDPSSODescriptor) in the metadata")
	}
	hasSSO := false
	for _, d := range ed.IDPSSODescriptors {
		for _, s := range d.SingleSignOnServices {
			if s.Binding == saml.HTTPRedirectBinding || s.Binding == saml.HTTPPostBinding {
				hasSSO = true
			}
		}
	}
	if !hasSSO {
		return nil, errors.New("the IdP offers no SingleSignOnService with the HTTP-Redirect or HTTP-POST binding")
	}
	return &ed, nil
}
