// Package router holds the relay's edges: HTTPS, TLS and TCP edges with their endpoints
// (reserved domains and addresses), HTTPS routes (path selectors, most specific wins)
// and backends (tunnel groups selected by labels, failover, weighted, fixed HTTP
// responses), each with its modules. The API stores them as documents; Compile turns
// the documents into a routing snapshot the public edge consults before tunnels.
package router

import (
	"errors"
	"time"

	"github.com/ferrytunnel/ferry/relay/module/oauth"
)

// Collections (store kinds) and id prefixes, named as ngrok's API names them.
const (
	KindHTTPSEdge     = "edges/https"
	KindTLSEdge       = "edges/tls"
	KindTCPEdge       = "edges/tcp"
	KindTunnelGroup   = "backends/tunnel_group"
	KindFailover      = "backends/failover"
	KindWeighted      = "backends/weighted"
	KindHTTPResponse  = "backends/http_response"
	KindIPPolicy      = "ip_policies"
	PrefixHTTPSEdge   = "edghts"
	PrefixTLSEdge     = "edgtls"
	PrefixTCPEdge     = "edgtcp"
	PrefixRoute       = "edghtsrt"
	PrefixTunnelGroup = "bkdtg"
	PrefixFailover    = "bkdfo"
	PrefixWeighted    = "bkdwt"
	PrefixHTTPResp    = "bkdhr"
	PrefixIPPolicy    = "ipp"
)

// Common are the fields every document has.
type Common struct {
	Description string `json:"description"`
	Metadata    string `json:"metadata"`
}

// HTTPSEdge serves HTTPS on its hostports (reserved domains) through its routes.
type HTTPSEdge struct {
	Common
	Hostports      []string        `json:"hostports"`
	MutualTLS      *MutualTLS      `json:"mutual_tls,omitempty"`
	TLSTermination *TLSTermination `json:"tls_termination,omitempty"`
	Routes         []Route         `json:"routes"`
}

// Route is one path selector of an HTTPS edge with its backend and modules.
type Route struct {
	ID        string      `json:"id"`
	MatchType string      `json:"match_type"` // exact_path or path_prefix
	Match     string      `json:"match"`
	Backend   *BackendRef `json:"backend"`
	HTTPModules
}

// HTTPModules are the modules an HTTPS route can have.
type HTTPModules struct {
	IPRestriction       *IPRestriction  `json:"ip_restriction,omitempty"`
	BasicAuth           *BasicAuth      `json:"basic_auth,omitempty"`
	RequestHeaders      *Headers        `json:"request_headers,omitempty"`
	ResponseHeaders     *Headers        `json:"response_headers,omitempty"`
	Compression         *Enabled        `json:"compression,omitempty"`
	CircuitBreaker      *CircuitBreaker `json:"circuit_breaker,omitempty"`
	WebhookVerification *Webhook        `json:"webhook_verification,omitempty"`
	OAuth               *OAuth          `json:"oauth,omitempty"`
	OIDC                *OAuth          `json:"oidc,omitempty"`
	SAML                *OAuth          `json:"saml,omitempty"`
}

// OAuth configures the oauth (github, google, microsoft, facebook with the user's own
// application), oidc (any issuer) and saml (the relay as service provider) modules: a
// browser must log in before its requests pass, and the upstream gets Ferry-Auth-*
// identity headers. Unset constraints let in anyone the provider signs in.
type OAuth struct {
	Provider     string   `json:"provider,omitempty"` // oauth: github, google, microsoft, facebook
	ClientID     string   `json:"client_id,omitempty"`
	ClientSecret string   `json:"client_secret,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	Issuer       string   `json:"issuer,omitempty"` // oidc
	// IdPMetadata (XML) or IdPMetadataURL is the SAML identity provider (saml).
	IdPMetadata    string   `json:"idp_metadata,omitempty"`
	IdPMetadataURL string   `json:"idp_metadata_url,omitempty"`
	EmailAddresses []string `json:"email_addresses,omitempty"`
	EmailDomains   []string `json:"email_domains,omitempty"`
	Organizations  []string `json:"organizations,omitempty"` // github
	Teams          []string `json:"teams,omitempty"`         // github: "org/team-slug"
	// AuthCheckInterval, InactivityTimeout and MaximumDuration are seconds (the check
	// interval defaults to, and may not be below, 180).
	AuthCheckInterval int `json:"auth_check_interval,omitempty"`
	InactivityTimeout int `json:"inactivity_timeout,omitempty"`
	MaximumDuration   int `json:"maximum_duration,omitempty"`
}

// AuthConfig turns a route's oauth, oidc or saml module into the middleware's config
// (without the relay-wide cookie secret and SAML key), or returns false when the route
// has none. More than one is an error.
func (m HTTPModules) AuthConfig() (oauth.Config, bool, error) {
	var a *OAuth
	provider := ""
	n := 0
	if m.OAuth != nil {
		a, provider, n = m.OAuth, m.OAuth.Provider, n+1
	}
	if m.OIDC != nil {
		a, provider, n = m.OIDC, "oidc", n+1
	}
	if m.SAML != nil {
		a, provider, n = m.SAML, "saml", n+1
	}
	if n == 0 {
		return oauth.Config{}, false, nil
	}
	if n > 1 {
		return oauth.Config{}, true, errors.New("a route takes one of oauth, oidc and saml")
	}
	return oauth.Config{Provider: provider, ClientID: a.ClientID, ClientSecret: a.ClientSecret, Scopes: a.Scopes,
		IssuerURL: a.Issuer, IdPMetadataXML: []byte(a.IdPMetadata), IdPMetadataURL: a.IdPMetadataURL,
		AllowEmails: a.EmailAddresses, AllowDomains: a.EmailDomains, AllowGitHubOrgs: a.Organizations, AllowGitHubTeams: a.Teams,
		AuthCheckInterval: time.Duration(a.AuthCheckInterval) * time.Second, InactivityTimeout: time.Duration(a.InactivityTimeout) * time.Second,
		MaxSessionDuration: time.Duration(a.MaximumDuration) * time.Second}, true, nil
}

// TLSEdge serves TLS on its hostports, terminated at the edge or passed through.
type TLSEdge struct {
	Common
	Hostports      []string        `json:"hostports"`
	Backend        *BackendRef     `json:"backend"`
	IPRestriction  *IPRestriction  `json:"ip_restriction,omitempty"`
	MutualTLS      *MutualTLS      `json:"mutual_tls,omitempty"`
	TLSTermination *TLSTermination `json:"tls_termination,omitempty"`
}

// TCPEdge serves TCP on its hostports (reserved addresses).
type TCPEdge struct {
	Common
	Hostports     []string       `json:"hostports"`
	Backend       *BackendRef    `json:"backend"`
	IPRestriction *IPRestriction `json:"ip_restriction,omitempty"`
}

// BackendRef names a backend.
type BackendRef struct {
	BackendID string `json:"backend_id"`
}

// IPRestriction lists IP policies: a client passes when it matches at least one allow
// policy (if there are any) and no deny policy.
type IPRestriction struct {
	IPPolicyIDs []string `json:"ip_policy_ids"`
}

// MutualTLS requires client certificates signed by one of the account's CAs.
type MutualTLS struct {
	CertificateAuthorityIDs []string `json:"certificate_authority_ids"`
}

// TLSTermination says where TLS ends (TLS edges: edge or upstream) and the lowest
// version accepted at the edge.
type TLSTermination struct {
	TerminateAt string `json:"terminate_at,omitempty"`
	MinVersion  string `json:"min_version,omitempty"`
}

// BasicAuth holds "user:bcrypt-hash" entries (the API hashes the passwords it is given).
type BasicAuth struct {
	Credentials []string `json:"credentials"`
}

// Headers adds ("Name": "value with ${templates}") and removes headers.
type Headers struct {
	Add    map[string]string `json:"add,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Enabled turns a module on.
type Enabled struct {
	Enabled bool `json:"enabled"`
}

// CircuitBreaker opens (503 at the edge) when this fraction of answers are 5xx.
type CircuitBreaker struct {
	ErrorThresholdPercentage float64 `json:"error_threshold_percentage"`
}

// Webhook verifies requests with a provider's signature scheme.
type Webhook struct {
	Provider string `json:"provider"`
	Secret   string `json:"secret"`
}

// TunnelGroup selects the account's online labeled tunnels carrying all Labels.
type TunnelGroup struct {
	Common
	Labels map[string]string `json:"labels"`
}

// Failover uses the first backend that has an online tunnel that accepts the connection.
type Failover struct {
	Common
	Backends []string `json:"backends"`
}

// Weighted spreads connections over backends in proportion to their weights.
type Weighted struct {
	Common
	Backends map[string]int `json:"backends"`
}

// HTTPResponse answers every request itself.
type HTTPResponse struct {
	Common
	StatusCode int               `json:"status_code"`
	Headers    map[string]string `json:"headers,omitempty"`
	Body       string            `json:"body"`
}

// IPPolicy is a list of CIDRs that allow or deny.
type IPPolicy struct {
	Common
	Action string   `json:"action"` // allow or deny
	CIDRs  []string `json:"cidrs"`
}
