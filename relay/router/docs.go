// Package router holds the relay's edges: HTTPS, TLS and TCP edges with their endpoints
// (reserved domains and addresses), HTTPS routes (path selectors, most specific wins)
// and backends (tunnel groups selected by labels, failover, weighted, fixed HTTP
// responses), each with its modules. The API stores them as documents; Compile turns
// the documents into a routing snapshot the public edge consults before tunnels.
package router

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
