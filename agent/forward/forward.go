// Package forward is the agent's data path: for each stream the relay opens, it reads
// the stream header, dials the tunnel's local upstream, optionally terminates TLS (with
// the user's certificate, and mutual TLS), and copies bytes both ways.
package forward

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pires/go-proxyproto"
	"golang.org/x/crypto/bcrypt"

	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/agent/tlsconf"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
)

// DialTimeout bounds the dial to a local upstream.
const DialTimeout = 10 * time.Second

// HandshakeTimeout bounds a TLS handshake the agent terminates.
const HandshakeTimeout = 10 * time.Second

// Tunnel is one tunnel the agent serves: what to bind on the relay and where to forward.
type Tunnel struct {
	// Name identifies the tunnel locally (e.g. "http-8080" or a config-file name).
	Name string
	// Proto is http, tcp, tls or labeled.
	Proto string
	// Labels are a labeled tunnel's labels: edges whose backends select them send it
	// HTTP, TLS or TCP streams.
	Labels map[string]string
	// Addr is the upstream, HOST:PORT.
	Addr string
	// Domain is the requested hostname (http, tls); RemoteAddr the requested address (tcp).
	Domain     string
	RemoteAddr string
	// TerminateAt is edge, agent or upstream (tls).
	TerminateAt string
	// Cert terminates TLS at the agent (--crt/--key).
	Cert *tls.Certificate
	// ClientCAs requires client certificates at the agent (--mutual-tls-cas with agent termination).
	ClientCAs *x509.CertPool
	// ClientCAsPEM is sent to the relay for mutual TLS at the edge.
	ClientCAsPEM []byte

	// Network is how Addr is dialed: "tcp" (default) or "unix" (Addr is a socket path).
	Network string
	// FileRoot, when set, makes the agent serve this directory itself (http, file:///dir).
	FileRoot string
	// ProxyProto is 0, or 1 or 2 to send a PROXY protocol header to the upstream (tcp, tls).
	ProxyProto int
	// Scheme is the upstream's scheme for http tunnels: "http" (default) or "https".
	Scheme string
	// InsecureUpstream skips verifying an https upstream's certificate (--upstream-tls-verify=false).
	InsecureUpstream bool
	// HostHeader is "" (pass the public Host through), "rewrite" (the upstream's host:port) or a value.
	HostHeader string
	// BasicAuth lists "user:password" pairs the relay requires (http). Prepare hashes the
	// passwords with bcrypt; only the hashes are sent.
	BasicAuth []string
	// CIDRAllow and CIDRDeny restrict client addresses at the relay's edge.
	CIDRAllow, CIDRDeny []string
	// Header rules the relay's edge applies (http): "Name: value" adds, "Name" removes.
	RequestHeaderAdd, RequestHeaderRemove, ResponseHeaderAdd, ResponseHeaderRemove []string
	// Compression and CircuitBreaker (a 5xx ratio) are applied by the relay's edge (http).
	Compression    bool
	CircuitBreaker float64
	// VerifyWebhook and VerifyWebhookSecret make the relay's edge check a webhook
	// provider's signature on every request (http).
	VerifyWebhook, VerifyWebhookSecret string
	// OAuth makes the relay require a browser login (OAuth provider or OIDC issuer) (http).
	OAuth *protocol.BindOAuth
	// Inspect records HTTP exchanges into Store (http tunnels).
	Inspect bool
	Store   *inspect.Store

	// Conns counts open connections; Total all connections so far.
	Conns, Total atomic.Int64

	tlsConf    *tls.Config
	http       *httpProxy // set for http tunnels that need the agent to speak HTTP
	authHashes []string   // "user:bcrypt-hash", from BasicAuth
}

// needsHTTP reports whether the agent must parse HTTP for this tunnel (otherwise it
// copies bytes, the fastest path).
func (t *Tunnel) needsHTTP() bool {
	return (t.Proto == protocol.ProtoHTTP || t.Proto == protocol.ProtoLabeled) &&
		(t.Inspect && t.Store != nil || t.Scheme == "https" || t.HostHeader != "" || t.FileRoot != "")
}

// Start prepares the tunnel's HTTP server if it needs one; Close stops it.
func (t *Tunnel) Start(log *slog.Logger) {
	if t.http == nil && t.needsHTTP() {
		t.http = newHTTPProxy(t, log)
	}
}

// Close stops what Start started.
func (t *Tunnel) Close() {
	if t.http != nil {
		t.http.close()
		t.http = nil
	}
}

// Upstream returns the URL shown to people for the upstream.
func (t *Tunnel) Upstream() string {
	switch {
	case t.FileRoot != "":
		return "file://" + t.FileRoot
	case t.Network == "unix":
		return t.Proto + "+unix:" + t.Addr
	case t.Proto == protocol.ProtoHTTP || t.Proto == protocol.ProtoLabeled:
		if t.Scheme == "https" {
			return "https://" + t.Addr
		}
		return "http://" + t.Addr
	case t.Cert != nil:
		return "tcp://" + t.Addr + " (TLS terminated by the agent)"
	case t.TerminateAt == protocol.TerminateEdge:
		return "tcp://" + t.Addr + " (TLS terminated at the relay)"
	default:
		return t.Proto + "://" + t.Addr
	}
}

// Bind returns the Bind message for this tunnel.
func (t *Tunnel) Bind(id uint32) *protocol.Bind {
	return &protocol.Bind{TunnelID: id, Name: t.Name, Proto: t.Proto, Labels: t.Labels, Domain: t.Domain,
		RemoteAddr: t.RemoteAddr, TerminateAt: t.TerminateAt, MutualTLSCAs: string(t.ClientCAsPEM),
		BasicAuth: t.authHashes, CIDRAllow: t.CIDRAllow, CIDRDeny: t.CIDRDeny,
		RequestHeaderAdd: t.RequestHeaderAdd, RequestHeaderRemove: t.RequestHeaderRemove,
		ResponseHeaderAdd: t.ResponseHeaderAdd, ResponseHeaderRemove: t.ResponseHeaderRemove,
		Compression: t.Compression, CircuitBreaker: t.CircuitBreaker,
		VerifyWebhook: t.VerifyWebhook, VerifyWebhookSecret: t.VerifyWebhookSecret, OAuth: t.OAuth}
}

// Prepare checks the tunnel's options and builds its TLS configuration.
func (t *Tunnel) Prepare() error {
	if t.Scheme == "" {
		t.Scheme = "http"
	}
	if t.Network == "" {
		t.Network = "tcp"
	}
	if t.FileRoot != "" && t.Proto != protocol.ProtoHTTP {
		return fmt.Errorf("file:// upstreams are for http tunnels")
	}
	if err := t.prepareModules(); err != nil {
		return err
	}
	if t.ProxyProto != 0 && (t.ProxyProto < 1 || t.ProxyProto > 2 || t.Proto == protocol.ProtoHTTP) {
		return fmt.Errorf("--proxy-proto %d: want 1 or 2, on tcp and tls tunnels (http tunnels get X-Forwarded-For)", t.ProxyProto)
	}
	httpish := t.Proto == protocol.ProtoHTTP || t.Proto == protocol.ProtoLabeled
	if !httpish && (t.Scheme != "http" || t.HostHeader != "") {
		return fmt.Errorf("https:// upstreams and --host-header are for http and labeled tunnels")
	}
	switch t.Proto {
	case protocol.ProtoLabeled:
		if err := protocol.ValidLabels(t.Labels); err != nil {
			return err
		}
		if t.Domain != "" || t.RemoteAddr != "" || t.Cert != nil || t.ClientCAs != nil || t.TerminateAt != "" {
			return fmt.Errorf("a labeled tunnel takes no --domain, --remote-addr or TLS options: the edges that select it have them")
		}
		if len(t.CIDRAllow)+len(t.CIDRDeny)+len(t.BasicAuth)+len(t.RequestHeaderAdd)+len(t.RequestHeaderRemove)+
			len(t.ResponseHeaderAdd)+len(t.ResponseHeaderRemove) > 0 || t.Compression || t.CircuitBreaker != 0 ||
			t.VerifyWebhook != "" || t.OAuth != nil || t.ProxyProto != 0 {
			return fmt.Errorf("a labeled tunnel takes no edge modules (--cidr-*, --basic-auth, headers, ...): set them on the edge routes that select it (docs/edges.md)")
		}
	case protocol.ProtoHTTP, protocol.ProtoTCP:
		if t.Cert != nil || t.ClientCAs != nil || t.TerminateAt != "" {
			return fmt.Errorf("--crt, --key, --mutual-tls-cas and --terminate-at are for tls tunnels")
		}
	case protocol.ProtoTLS:
		if t.TerminateAt == "" {
			t.TerminateAt = protocol.TerminateUpstream
			if t.Cert != nil {
				t.TerminateAt = protocol.TerminateAgent
			}
		}
		switch t.TerminateAt {
		case protocol.TerminateAgent:
			if t.Cert == nil {
				return fmt.Errorf("--terminate-at agent needs --crt and --key: the certificate and key the agent terminates TLS with")
			}
		case protocol.TerminateUpstream:
			if t.Cert != nil {
				return fmt.Errorf("--terminate-at upstream passes TLS through untouched, so --crt/--key would not be used: drop them, or use --terminate-at agent")
			}
			if t.ClientCAs != nil {
				return fmt.Errorf("--mutual-tls-cas needs TLS terminated by ferry: add --crt/--key (agent) or --terminate-at edge")
			}
		case protocol.TerminateEdge:
			if t.Cert != nil {
				return fmt.Errorf("--terminate-at edge: the relay terminates TLS with its own certificate and never holds your key; drop --crt/--key, or use --terminate-at agent")
			}
		default:
			return fmt.Errorf("--terminate-at %q: want edge, agent or upstream", t.TerminateAt)
		}
		if t.Cert != nil {
			t.tlsConf = &tls.Config{Certificates: []tls.Certificate{*t.Cert}, MinVersion: tls.VersionTLS12}
			if t.ClientCAs != nil {
				t.tlsConf = tlsconf.RequireClientCerts(t.tlsConf, t.ClientCAs)
			}
		}
		if t.TerminateAt != protocol.TerminateEdge {
			t.ClientCAsPEM = nil // enforced here, not at the edge
		}
	default:
		return fmt.Errorf("proto %q: want http, tcp, tls or labeled", t.Proto)
	}
	return nil
}

// ParseAddr turns what the user typed (PORT, HOST:PORT, or a URL) into HOST:PORT.
func ParseAddr(proto, s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("missing upstream: give a port (8080), HOST:PORT or a URL")
	}
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return "", fmt.Errorf("upstream %q: want unix:/path/to/socket", s)
		}
		return path, nil
	}
	if path, ok := strings.CutPrefix(s, "file://"); ok {
		if proto != protocol.ProtoHTTP || path == "" {
			return "", fmt.Errorf("upstream %q: file:///DIR is for ferry http", s)
		}
		return path, nil
	}
	if p, err := strconv.Atoi(s); err == nil {
		if p < 1 || p > 65535 {
			return "", fmt.Errorf("port %d: want 1-65535", p)
		}
		return net.JoinHostPort("localhost", s), nil
	}
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("upstream %q: %w", s, err)
		}
		def := map[string]string{"http": "80", "https": "443", "tcp": "", "tls": ""}
		d, ok := def[u.Scheme]
		if !ok {
			return "", fmt.Errorf("upstream %q: scheme %q is not supported; use http://HOST:PORT or HOST:PORT", s, u.Scheme)
		}
		if u.Path != "" && u.Path != "/" {
			return "", fmt.Errorf("upstream %q: a path is not supported; give HOST:PORT", s)
		}
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = d
		}
		if host == "" || port == "" {
			return "", fmt.Errorf("upstream %q: want %s://HOST:PORT", s, u.Scheme)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return "", fmt.Errorf("upstream %q: port must be 1-65535", s)
		}
		return net.JoinHostPort(host, port), nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", fmt.Errorf("upstream %q: want a port (8080), HOST:PORT or a URL", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
		return "", fmt.Errorf("upstream %q: port must be 1-65535", s)
	}
	if host == "" {
		host = "localhost"
	}
	return net.JoinHostPort(host, port), nil
}

// Serve handles one stream the relay opened for t: dial, answer, (terminate TLS), copy.
func Serve(ctx context.Context, t *Tunnel, st transport.Stream, h protocol.StreamHeader, log *slog.Logger) {
	t.Total.Add(1)
	if h.Proto == protocol.StreamHTTP && t.http != nil {
		if protocol.WriteStreamOK(st) != nil {
			st.Close()
			return
		}
		t.http.serve(st) // the HTTP server counts it open until it closes
		return
	}
	t.Conns.Add(1)
	defer t.Conns.Add(-1)
	d := net.Dialer{Timeout: DialTimeout}
	up, err := d.DialContext(ctx, t.Network, t.Addr)
	if err != nil {
		log.Warn("upstream unreachable", "tunnel", t.Name, "upstream", t.Addr, "remote", h.ClientAddr, "err", err)
		resp := protocol.StreamResp{Code: protocol.CodeUpstreamRefused, Message: fmt.Sprintf("dial %s: %v", t.Addr, unwrapOp(err))}
		st.Write(resp.AppendFrame(nil)) //nolint:errcheck // the stream ends either way
		st.CloseWrite()
		st.Close()
		return
	}
	if t.ProxyProto != 0 {
		if err := writeProxyHeader(up, t.ProxyProto, h.ClientAddr); err != nil {
			log.Warn("PROXY header to upstream", "tunnel", t.Name, "err", err)
		}
	}
	if err := protocol.WriteStreamOK(st); err != nil {
		up.Close()
		st.Close()
		return
	}
	var client net.Conn = st
	if h.Proto == protocol.StreamTLS && t.tlsConf != nil {
		tc := tls.Server(st, t.tlsConf)
		hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			log.Info("TLS handshake failed", "tunnel", t.Name, "remote", h.ClientAddr, "err", err)
			tc.Close()
			up.Close()
			return
		}
		client = tc
	}
	in, out := transport.Join(client, up)
	log.Debug("connection closed", "tunnel", t.Name, "remote", h.ClientAddr, "bytes_in", in, "bytes_out", out)
}

// MinPasswordLen is the shortest --basic-auth password accepted.
const MinPasswordLen = 8

// prepareModules checks the edge-module options and hashes basic-auth passwords (once).
func (t *Tunnel) prepareModules() error {
	if _, err := module.NewIPPolicy(t.CIDRAllow, t.CIDRDeny); err != nil {
		return err
	}
	if len(t.BasicAuth) > 0 && t.Proto != protocol.ProtoHTTP {
		return fmt.Errorf("--basic-auth is for http tunnels")
	}
	if _, err := module.NewHeaders(t.Name, t.RequestHeaderAdd, t.RequestHeaderRemove, t.ResponseHeaderAdd, t.ResponseHeaderRemove); err != nil {
		return err
	}
	if t.Proto != protocol.ProtoHTTP && len(t.RequestHeaderAdd)+len(t.RequestHeaderRemove)+len(t.ResponseHeaderAdd)+len(t.ResponseHeaderRemove) > 0 {
		return fmt.Errorf("--request-header-* and --response-header-* are for http tunnels")
	}
	if t.Proto != protocol.ProtoHTTP && (t.Compression || t.CircuitBreaker != 0) {
		return fmt.Errorf("--compression and --circuit-breaker are for http tunnels")
	}
	if o := t.OAuth; o != nil {
		flag := "--oauth"
		if o.Provider == "oidc" {
			flag = "--oidc"
		}
		switch {
		case t.Proto != protocol.ProtoHTTP:
			return fmt.Errorf("%s is for http tunnels", flag)
		case strings.HasPrefix(o.Provider, "--"):
			return fmt.Errorf("%s: a login needs its provider, or the tunnel would be open to anyone", o.Provider)
		case !slices.Contains([]string{"github", "google", "microsoft", "facebook", "oidc"}, o.Provider):
			return fmt.Errorf("--oauth %q: want github, google, microsoft or facebook (or --oidc ISSUER)", o.Provider)
		case o.ClientID == "" || o.ClientSecret == "":
			return fmt.Errorf("%s needs %s-client-id and %s-client-secret: the OAuth application you registered with the provider, with redirect URL https://YOUR-NAME/oauth2/callback", flag, flag, flag)
		case o.Provider == "oidc" && !strings.HasPrefix(o.Issuer, "https://"):
			return fmt.Errorf("--oidc %q: want the issuer's https:// URL", o.Issuer)
		}
	}
	if t.VerifyWebhook != "" || t.VerifyWebhookSecret != "" {
		if t.Proto != protocol.ProtoHTTP {
			return fmt.Errorf("--verify-webhook is for http tunnels")
		}
		if _, err := webhook.New(webhook.Config{Provider: t.VerifyWebhook, Secret: t.VerifyWebhookSecret}); err != nil {
			return fmt.Errorf("--verify-webhook %s: %w", t.VerifyWebhook, err)
		}
	}
	if _, err := module.NewBreaker(t.Name, t.CircuitBreaker); err != nil {
		return fmt.Errorf("--%s", strings.ReplaceAll(err.Error(), "_", "-"))
	}
	if len(t.authHashes) == len(t.BasicAuth) {
		return nil
	}
	t.authHashes = nil
	for _, e := range t.BasicAuth {
		user, pass, ok := strings.Cut(e, ":")
		if !ok || user == "" {
			return fmt.Errorf("--basic-auth %q: want USER:PASSWORD", user)
		}
		if len(pass) < MinPasswordLen {
			return fmt.Errorf("--basic-auth for %q: the password must be at least %d characters", user, MinPasswordLen)
		}
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
		if err != nil {
			return fmt.Errorf("--basic-auth for %q: %w", user, err)
		}
		t.authHashes = append(t.authHashes, user+":"+string(hash))
	}
	return nil
}

// writeProxyHeader sends a PROXY protocol v1 or v2 header naming the public client.
func writeProxyHeader(up net.Conn, version int, client string) error {
	src, err := net.ResolveTCPAddr("tcp", client)
	if err != nil {
		return fmt.Errorf("client address %q: %w", client, err)
	}
	dst, ok := up.RemoteAddr().(*net.TCPAddr)
	if !ok { // unix socket upstream: use an address of the client's family
		dst = &net.TCPAddr{IP: net.IPv4zero}
		if src.IP.To4() == nil {
			dst.IP = net.IPv6zero
		}
	}
	_, err = proxyproto.HeaderProxyFromAddrs(byte(version), src, dst).WriteTo(up)
	return err
}

// unwrapOp drops the "dial tcp" prefix net.OpError adds, keeping the cause.
func unwrapOp(err error) error {
	if oe, ok := err.(*net.OpError); ok && oe.Err != nil {
		return oe.Err
	}
	return err
}
