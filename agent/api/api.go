// Package api is the agent's local API on --api-addr (default 127.0.0.1:4040), shaped
// like ngrok's agent API so existing scripts work: GET /api/tunnels lists the tunnels.
package api

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/agent/session"
)

// TunnelLister returns the agent's tunnels.
type TunnelLister interface {
	Tunnels() []session.Status
	Tunnel(name string) *forward.Tunnel
}

// Tunnel is one public URL of a tunnel, as ngrok's agent API lists it.
type Tunnel struct {
	Name      string       `json:"name"`
	URI       string       `json:"uri"`
	PublicURL string       `json:"public_url"`
	Proto     string       `json:"proto"`
	Config    TunnelConfig `json:"config"`
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
	mux.HandleFunc("GET /api/tunnels/{name}", func(w http.ResponseWriter, r *http.Request) {
		for _, t := range List(l) {
			if t.Name == r.PathValue("name") {
				writeJSON(w, t)
				return
			}
		}
		apiError(w, http.StatusNotFound, "tunnel not found: "+r.PathValue("name"))
	})
	return mux
}

// List flattens tunnels to one entry per public URL; the first keeps the tunnel's name,
// the others are "NAME (scheme)", as ngrok names them.
func List(l TunnelLister) []Tunnel {
	out := []Tunnel{}
	for _, s := range l.Tunnels() {
		for i, u := range s.URLs {
			scheme, _, _ := strings.Cut(u, "://")
			name := s.Tunnel.Name
			if i > 0 {
				name += " (" + scheme + ")"
			}
			out = append(out, Tunnel{Name: name, URI: "/api/tunnels/" + name, PublicURL: u, Proto: scheme,
				Config: TunnelConfig{Addr: s.Tunnel.Upstream()}})
		}
	}
	return out
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
