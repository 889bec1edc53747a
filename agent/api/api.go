// Package api is the agent's local API on --api-addr (default 127.0.0.1:4040), shaped
// like ngrok's agent API so existing scripts work: GET /api/tunnels lists the tunnels.
package api

import (
	"github.com/ferrytunnel/ferry/protocol"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/ferrytunnel/ferry/agent/api/ui"
	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/agent/session"
)

// TunnelLister returns the agent's tunnels and starts and stops them at run time.
type TunnelLister interface {
	Tunnels() []session.Status
	Tunnel(name string) *forward.Tunnel
	// StartTunnel starts a tunnel described like a config-file tunnel.
	StartTunnel(ctx context.Context, req TunnelRequest) error
	StopTunnel(name string) error
	// Session is the agent's connection to its relay.
	Session() session.SessionStatus
}

// TunnelRequest is the body of POST /api/tunnels: the keys of a [tunnels.NAME] table
// plus its name.
type TunnelRequest struct {
	Name                 string              `json:"name"`
	Proto                string              `json:"proto"`
	Addr                 string              `json:"addr"`
	Domain               string              `json:"domain"`
	RemoteAddr           string              `json:"remote_addr"`
	Crt                  string              `json:"crt"`
	Key                  string              `json:"key"`
	MutualTLSCAs         string              `json:"mutual_tls_cas"`
	Labels               []string            `json:"labels"`
	TerminateAt          string              `json:"terminate_at"`
	Inspect              *bool               `json:"inspect"`
	HostHeader           string              `json:"host_header"`
	UpstreamTLSVerify    *bool               `json:"upstream_tls_verify"`
	ProxyProto           int                 `json:"proxy_proto"`
	BasicAuth            []string            `json:"basic_auth"`
	CIDRAllow            []string            `json:"cidr_allow"`
	CIDRDeny             []string            `json:"cidr_deny"`
	RequestHeaderAdd     []string            `json:"request_header_add"`
	RequestHeaderRemove  []string            `json:"request_header_remove"`
	ResponseHeaderAdd    []string            `json:"response_header_add"`
	ResponseHeaderRemove []string            `json:"response_header_remove"`
	Compression          bool                `json:"compression"`
	CircuitBreaker       float64             `json:"circuit_breaker"`
	VerifyWebhook        string              `json:"verify_webhook"`
	VerifyWebhookSecret  string              `json:"verify_webhook_secret"`
	OAuth                *protocol.BindOAuth `json:"oauth"`
}

// Tunnel is one public URL of a tunnel, as ngrok's agent API lists it.
type Tunnel struct {
	Name      string `json:"name"`
	URI       string `json:"uri"`
	PublicURL string `json:"public_url"`
	Proto     string `json:"proto"`
	// Labels are a labeled tunnel's labels (it has no public URL of its own).
	Labels map[string]string `json:"labels,omitempty"`
	Config TunnelConfig      `json:"config"`

	tunnel string // the agent's name for the tunnel (an http tunnel has an entry per URL)
}

// TunnelConfig is the upstream side of a tunnel.
type TunnelConfig struct {
	Addr    string `json:"addr"`
	Inspect bool   `json:"inspect"`
}

// Handler serves the local API.
func Handler(l TunnelLister, store *inspect.Store) http.Handler {
	mux := http.NewServeMux()
	requestRoutes(mux, l, store)
	mux.HandleFunc("GET /api/tunnels", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"tunnels": List(l), "uri": "/api/tunnels"})
	})
	mux.HandleFunc("POST /api/tunnels", func(w http.ResponseWriter, r *http.Request) {
		var req TunnelRequest
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields() // a misspelled "basic_auht" must not start an open tunnel
		if err := dec.Decode(&req); err != nil {
			apiError(w, http.StatusBadRequest, "body: want JSON {\"name\", \"proto\", \"addr\", ...}: "+err.Error())
			return
		}
		if req.Name == "" || req.Proto == "" || req.Addr == "" {
			apiError(w, http.StatusBadRequest, "name, proto and addr are required")
			return
		}
		if err := l.StartTunnel(r.Context(), req); err != nil {
			code := http.StatusBadRequest
			var perr *protocol.Error
			if errors.Is(err, session.ErrDuplicateName) || errors.As(err, &perr) && perr.Code == protocol.CodeBindConflict {
				code = http.StatusConflict // this agent's name, or the relay's name or port, is taken
			}
			apiError(w, code, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		writeJSON(w, map[string]any{"tunnels": listOne(l, req.Name)})
	})
	mux.HandleFunc("DELETE /api/tunnels/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		for _, t := range List(l) {
			if t.Name == name {
				name = t.tunnel // "web (http)", an http tunnel's second entry, stops tunnel web
			}
		}
		if err := l.StopTunnel(name); err != nil {
			apiError(w, http.StatusNotFound, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/tunnels/{name}", func(w http.ResponseWriter, r *http.Request) {
		for _, t := range List(l) {
			if t.Name == r.PathValue("name") {
				writeJSON(w, t)
				return
			}
		}
		apiError(w, http.StatusNotFound, "tunnel not found: "+r.PathValue("name"))
	})
	mux.HandleFunc("GET /api/status", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, map[string]any{"session": l.Session(), "uri": "/api/status"})
	})
	mux.Handle("GET /", ui.Handler(store))
	return guard(mux)
}

func listOne(l TunnelLister, name string) []Tunnel {
	out := []Tunnel{}
	for _, t := range List(l) {
		if t.Name == name || strings.HasPrefix(t.Name, name+" (") {
			out = append(out, t)
		}
	}
	return out
}

// List flattens tunnels to one entry per public URL; the first keeps the tunnel's name,
// the others are "NAME (scheme)", as ngrok names them.
func List(l TunnelLister) []Tunnel {
	out := []Tunnel{}
	for _, s := range l.Tunnels() {
		if len(s.Tunnel.Labels) > 0 {
			name := s.Tunnel.Name
			out = append(out, Tunnel{Name: name, URI: "/api/tunnels/" + url.PathEscape(name), Proto: "labeled", Labels: s.Tunnel.Labels,
				Config: TunnelConfig{Addr: s.Tunnel.Upstream(), Inspect: s.Tunnel.Inspect}, tunnel: s.Tunnel.Name})
			continue
		}
		for i, u := range s.URLs {
			scheme, _, _ := strings.Cut(u, "://")
			name := s.Tunnel.Name
			if i > 0 {
				name += " (" + scheme + ")"
			}
			out = append(out, Tunnel{Name: name, URI: "/api/tunnels/" + url.PathEscape(name), PublicURL: u, Proto: scheme,
				Config: TunnelConfig{Addr: s.Tunnel.Upstream(), Inspect: s.Tunnel.Inspect}, tunnel: s.Tunnel.Name})
		}
	}
	return out
}

// guard protects the local API from web pages the user visits. A DNS-rebinding page
// reaches 127.0.0.1 under its own name, so only localhost and IP Host headers are served; a
// cross-site form or fetch can send a POST or DELETE, so those need a JSON body (or none)
// and, when the browser names an Origin, the API's own.
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !allowedHost(host) {
			apiError(w, http.StatusForbidden, fmt.Sprintf("host %q: the local API answers only to localhost or an IP address", r.Host))
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if o := r.Header.Get("Origin"); o != "" {
				u, err := url.Parse(o)
				if err != nil || u.Host != r.Host {
					apiError(w, http.StatusForbidden, "cross-origin requests are not allowed")
					return
				}
			}
			if ct := r.Header.Get("Content-Type"); r.ContentLength != 0 && !strings.HasPrefix(ct, "application/json") {
				apiError(w, http.StatusUnsupportedMediaType, "send the body as Content-Type: application/json")
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// allowedHost accepts localhost and IP literals: a rebinding attack always arrives with
// its own domain name, and an IP literal keeps --api-addr 0.0.0.0:4040 usable from the LAN.
func allowedHost(h string) bool {
	return strings.EqualFold(h, "localhost") || net.ParseIP(strings.Trim(h, "[]")) != nil
}

func apiError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"status_code": status, "msg": msg}) //nolint:errcheck
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) //nolint:errcheck // the client went away
}
