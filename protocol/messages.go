package protocol

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
)

// Tunnel protocols as they appear in Bind.Proto.
const (
	ProtoHTTP = "http"
	ProtoTCP  = "tcp"
	ProtoTLS  = "tls"
	// ProtoLabeled is a labeled tunnel: no public name of its own; edges whose backend
	// selects its labels send it HTTP, TLS or TCP streams (the stream header says which).
	ProtoLabeled = "labeled"
)

// Where a tls tunnel's TLS is terminated (Bind.TerminateAt).
const (
	TerminateEdge     = "edge"
	TerminateAgent    = "agent"
	TerminateUpstream = "upstream"
)

// Hello is the agent's first message (TypeHello).
type Hello struct {
	// Version is the highest protocol version the agent speaks; MinVersion the lowest.
	Version    uint16 `json:"version"`
	MinVersion uint16 `json:"min_version"`
	// AgentVersion is the agent's release, e.g. "0.1.0", for logs and error messages.
	AgentVersion string   `json:"agent_version"`
	Capabilities []string `json:"capabilities,omitempty"`
	OS           string   `json:"os,omitempty"`
	Arch         string   `json:"arch,omitempty"`
}

func (h *Hello) validate() error {
	if h.Version == 0 || h.MinVersion > h.Version {
		return fmt.Errorf("version range %d..%d is empty", h.MinVersion, h.Version)
	}
	return nil
}

// HelloResp is the relay's answer to Hello (TypeHelloResp).
type HelloResp struct {
	// Version is the protocol version both sides use from now on.
	Version      uint16   `json:"version"`
	RelayVersion string   `json:"relay_version"`
	Capabilities []string `json:"capabilities,omitempty"`
}

// Negotiate picks the highest version in both [minA, maxA] and [minB, maxB], or
// returns a CodeVersionMismatch error that says which side must upgrade.
func Negotiate(agentMin, agentMax, relayMin, relayMax uint16) (uint16, error) {
	v := min(agentMax, relayMax)
	if v >= agentMin && v >= relayMin {
		return v, nil
	}
	if agentMax < relayMin {
		return 0, Errorf(CodeVersionMismatch,
			"agent speaks protocol %d..%d but this relay needs %d..%d: upgrade the ferry agent",
			agentMin, agentMax, relayMin, relayMax)
	}
	return 0, Errorf(CodeVersionMismatch,
		"agent needs protocol %d..%d but this relay speaks %d..%d: upgrade ferry-relay or use an older agent",
		agentMin, agentMax, relayMin, relayMax)
}

// Capabilities a relay advertises in HelloResp. An agent must not bind a tunnel that
// needs one the relay did not advertise: an older relay would ignore the Bind fields and
// serve the tunnel without, say, its basic auth.
const (
	CapIPPolicy       = "ip_policy"
	CapBasicAuth      = "basic_auth"
	CapHeaders        = "headers"
	CapCompression    = "compression"
	CapCircuitBreaker = "circuit_breaker"
	CapLabels         = "labels"
	CapWebhook        = "webhook_verification"
	CapOAuth          = "oauth"
)

// RelayCapabilities is what this build's relay enforces.
var RelayCapabilities = []string{CapIPPolicy, CapBasicAuth, CapHeaders, CapCompression, CapCircuitBreaker, CapLabels, CapWebhook, CapOAuth}

// Needs lists the capabilities a relay must have to honour b.
func (b *Bind) Needs() []string {
	var need []string
	if len(b.CIDRAllow)+len(b.CIDRDeny) > 0 {
		need = append(need, CapIPPolicy)
	}
	if len(b.BasicAuth) > 0 {
		need = append(need, CapBasicAuth)
	}
	if len(b.RequestHeaderAdd)+len(b.RequestHeaderRemove)+len(b.ResponseHeaderAdd)+len(b.ResponseHeaderRemove) > 0 {
		need = append(need, CapHeaders)
	}
	if b.Compression {
		need = append(need, CapCompression)
	}
	if b.CircuitBreaker != 0 {
		need = append(need, CapCircuitBreaker)
	}
	if b.Proto == ProtoLabeled {
		need = append(need, CapLabels)
	}
	if b.VerifyWebhook != "" {
		need = append(need, CapWebhook)
	}
	if b.OAuth != nil {
		need = append(need, CapOAuth)
	}
	return need
}

// Auth authenticates the session (TypeAuth).
type Auth struct {
	Authtoken string `json:"authtoken"`
}

func (a *Auth) validate() error {
	if a.Authtoken == "" {
		return errors.New("authtoken is empty")
	}
	return nil
}

// AuthResp accepts the session (TypeAuthResp).
type AuthResp struct {
	SessionID string `json:"session_id"`
	Account   string `json:"account,omitempty"`
	// DataKey, on TCP sessions, invites the agent to open direct data connections
	// (DataALPN) that prove they belong to this session with DataJoin{session_id,
	// data_key}. Empty: the relay uses the multiplexed streams only.
	DataKey string `json:"data_key,omitempty"`
}

// DataJoin is the first frame of a direct data connection (TypeDataJoin): the session it
// belongs to and the key the relay gave that session in AuthResp.
type DataJoin struct {
	SessionID string `json:"session_id"`
	Key       string `json:"key"`
}

// Bind asks the relay to start a tunnel (TypeBind).
type Bind struct {
	// TunnelID is chosen by the agent, unique within its session; the relay echoes it
	// in BindResp and in every StreamHeader for this tunnel.
	TunnelID uint32 `json:"tunnel_id"`
	// Name is the agent's name for the tunnel, for logs.
	Name  string `json:"name,omitempty"`
	Proto string `json:"proto"`
	// Domain is the requested hostname (http, tls): a full name, or "" for a random
	// name under the relay's base domain.
	Domain string `json:"domain,omitempty"`
	// RemoteAddr is the requested public address (tcp), "" for any free port.
	RemoteAddr string `json:"remote_addr,omitempty"`
	// Rebind says Domain or RemoteAddr is what the relay gave this tunnel before a
	// reconnect: the relay grants it again if it is free and nobody else reserved it,
	// even where a chosen address would need the account's reservation.
	Rebind bool `json:"rebind,omitempty"`
	// TerminateAt says where TLS is terminated for tls tunnels.
	TerminateAt string `json:"terminate_at,omitempty"`
	// MutualTLSCAs is a PEM bundle of CAs the relay requires client certificates to chain
	// to (edge termination only).
	MutualTLSCAs string            `json:"mutual_tls_cas,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	// BasicAuth lists "user:bcrypt-hash" entries (http): the agent hashes the passwords,
	// so the relay never learns them.
	BasicAuth []string `json:"basic_auth,omitempty"`
	// CIDRAllow and CIDRDeny restrict which client addresses reach the tunnel: a client must
	// match an allow rule (when there are any) and no deny rule.
	CIDRAllow []string `json:"cidr_allow,omitempty"`
	CIDRDeny  []string `json:"cidr_deny,omitempty"`
	// Request and response headers the edge adds ("Name: value", ${...} templates) or
	// removes ("Name") on http tunnels.
	RequestHeaderAdd     []string `json:"request_header_add,omitempty"`
	RequestHeaderRemove  []string `json:"request_header_remove,omitempty"`
	ResponseHeaderAdd    []string `json:"response_header_add,omitempty"`
	ResponseHeaderRemove []string `json:"response_header_remove,omitempty"`
	// Compression makes the edge compress responses the client accepts compressed (http).
	Compression bool `json:"compression,omitempty"`
	// CircuitBreaker is the 5xx ratio (0 < r <= 1) that opens the edge's circuit breaker (http).
	CircuitBreaker float64 `json:"circuit_breaker,omitempty"`
	// VerifyWebhook names a webhook provider (github, stripe, ...) whose signature the
	// edge checks with VerifyWebhookSecret before a request reaches the agent (http).
	VerifyWebhook       string `json:"verify_webhook,omitempty"`
	VerifyWebhookSecret string `json:"verify_webhook_secret,omitempty"`
	// OAuth makes the edge require a browser login (http): an OAuth provider with the
	// user's own application, or an OpenID Connect issuer.
	OAuth *BindOAuth `json:"oauth,omitempty"`
}

// BindOAuth is the login an http tunnel requires at the edge.
type BindOAuth struct {
	// Provider is github, google, microsoft, facebook, or oidc (with Issuer).
	Provider     string   `json:"provider"`
	Issuer       string   `json:"issuer,omitempty"`
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	Scopes       []string `json:"scopes,omitempty"`
	AllowEmails  []string `json:"allow_emails,omitempty"`
	AllowDomains []string `json:"allow_domains,omitempty"`
}

func (b *Bind) validate() error {
	switch b.Proto {
	case ProtoHTTP, ProtoTCP, ProtoTLS:
		if len(b.Labels) > 0 {
			return fmt.Errorf("labels are for labeled tunnels (proto %q)", ProtoLabeled)
		}
	case ProtoLabeled:
		if err := ValidLabels(b.Labels); err != nil {
			return err
		}
		if b.Domain != "" || b.RemoteAddr != "" {
			return errors.New("a labeled tunnel has no domain or remote address: the edges that select its labels have them")
		}
	default:
		return fmt.Errorf("proto %q: want http, tcp, tls or labeled", b.Proto)
	}
	switch b.TerminateAt {
	case "", TerminateEdge, TerminateAgent, TerminateUpstream:
	default:
		return fmt.Errorf("terminate_at %q: want edge, agent or upstream", b.TerminateAt)
	}
	if len(b.Domain) > 253 {
		return fmt.Errorf("domain is %d bytes, at most 253", len(b.Domain))
	}
	if len(b.RequestHeaderAdd)+len(b.RequestHeaderRemove)+len(b.ResponseHeaderAdd)+len(b.ResponseHeaderRemove) > MaxHeaderRules {
		return fmt.Errorf("at most %d header rules", MaxHeaderRules)
	}
	if len(b.BasicAuth) > MaxBasicAuth || len(b.CIDRAllow)+len(b.CIDRDeny) > MaxCIDRRules {
		return fmt.Errorf("at most %d basic auth entries and %d CIDR rules", MaxBasicAuth, MaxCIDRRules)
	}
	return nil
}

// ValidLabels checks a labeled tunnel's labels: 1 to MaxLabels, keys and values of
// letters, digits and "-_./:" (keys 1-63 bytes, values 1-255).
func ValidLabels(labels map[string]string) error {
	if len(labels) == 0 {
		return errors.New("a labeled tunnel needs at least one label, e.g. --label edge=web")
	}
	if len(labels) > MaxLabels {
		return fmt.Errorf("%d labels, at most %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if len(k) == 0 || len(k) > 63 || !labelText(k) {
			return fmt.Errorf("label key %q: use 1-63 letters, digits and the marks - _ . / : (e.g. edge=web)", k)
		}
		if len(v) == 0 || len(v) > 255 || !labelText(v) {
			return fmt.Errorf("label %s value %q: use 1-255 letters, digits and the marks - _ . / : (e.g. edge=web)", k, v)
		}
	}
	return nil
}

func labelText(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./:", c)) {
			return false
		}
	}
	return true
}

// Limits on what one Bind may carry.
const (
	MaxLabels      = 20
	MaxBasicAuth   = 100
	MaxCIDRRules   = 1000
	MaxHeaderRules = 100
)

// BindResp answers Bind (TypeBindResp): URLs on success, Error otherwise.
type BindResp struct {
	TunnelID uint32 `json:"tunnel_id"`
	// URLs are the public URLs, e.g. ["https://ab12.example.com", "http://ab12.example.com"].
	URLs     []string `json:"urls,omitempty"`
	Error    *Error   `json:"error,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
}

// Unbind stops a tunnel (TypeUnbind); answered by UnbindResp with the same TunnelID.
type Unbind struct {
	TunnelID uint32 `json:"tunnel_id"`
}

// UnbindResp confirms Unbind (TypeUnbindResp).
type UnbindResp struct {
	TunnelID uint32 `json:"tunnel_id"`
}

// Heartbeat asks the peer to echo Seq (TypeHeartbeat, answered by TypeHeartbeatAck with the same body).
type Heartbeat struct {
	Seq uint64 `json:"seq"`
	// Pad makes the packet big enough that a relay restarted after a crash answers it
	// with a QUIC stateless reset (quic-go ignores packets of 42 bytes or fewer), so the
	// agent notices within one heartbeat. Ignored by the receiver.
	Pad string `json:"pad,omitempty"`
}

// HeartbeatPad is what agents put in Heartbeat.Pad.
const HeartbeatPad = "................................"

// GoAway tells the agent the relay is shutting down (TypeGoAway).
type GoAway struct {
	Reason string `json:"reason"`
}

// NewHello returns the agent's Hello for this build's protocol range.
func NewHello(agentVersion string) *Hello {
	return &Hello{Version: Version, MinVersion: MinVersion, AgentVersion: agentVersion, OS: runtime.GOOS, Arch: runtime.GOARCH}
}

// Handshake runs the agent's side of steps 1 and 2 of the protocol flow on the control
// stream: Hello, then Auth. A refusal comes back as an *Error (wrapped with the step).
func Handshake(rw io.ReadWriter, hello *Hello, authtoken string) (*HelloResp, *AuthResp, error) {
	if err := WriteMsg(rw, TypeHello, hello); err != nil {
		return nil, nil, fmt.Errorf("send hello: %w", err)
	}
	var hr HelloResp
	if err := ReadMsg(rw, MaxControlFrame, TypeHelloResp, &hr); err != nil {
		return nil, nil, fmt.Errorf("hello: %w", err)
	}
	if err := WriteMsg(rw, TypeAuth, &Auth{Authtoken: authtoken}); err != nil {
		return nil, nil, fmt.Errorf("send auth: %w", err)
	}
	var ar AuthResp
	if err := ReadMsg(rw, MaxControlFrame, TypeAuthResp, &ar); err != nil {
		return nil, nil, fmt.Errorf("auth: %w", err)
	}
	return &hr, &ar, nil
}
