package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
)

// serveHTTP routes a public HTTP request (plain or terminated TLS) on its Host.
func (e *Edge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil {
		// A TLS connection the lean path handed over arrives without its *tls.Conn.
		r.TLS, _ = r.Context().Value(tlsStateKey{}).(*tls.ConnectionState)
	}
	for k := range r.Header {
		if strings.IndexByte(k, '_') >= 0 {
			// Some servers read X_Forwarded_For as X-Forwarded-For: a client could slip
			// past the headers the edge sets or strips. Refuse the request outright.
			errorPage(w, http.StatusBadRequest, "Bad request",
				fmt.Sprintf("Header %q has an underscore in its name; this relay refuses such headers.", k), "Use hyphens: "+strings.ReplaceAll(k, "_", "-"))
			return
		}
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = sni.Normalize(host)
	if r.TLS == nil && e.cfg.TLSOnly != nil && e.cfg.TLSOnly(host) {
		e.redirectHTTPS(w, r, host)
		return
	}
	if rs := e.routes(); rs != nil {
		if h := rs.HTTPS(host); h != nil {
			if r.TLS == nil { // an HTTPS edge serves HTTPS only
				e.redirectHTTPS(w, r, host)
				return
			}
			if r.TLS.ServerName != "" && sni.Normalize(r.TLS.ServerName) != host {
				// The edge's TLS settings (mutual TLS, minimum version) were chosen for the SNI name.
				errorPage(w, http.StatusMisdirectedRequest, "Misdirected request",
					fmt.Sprintf("This connection was opened for %s, not %s.", r.TLS.ServerName, host), "")
				return
			}
			h.ServeHTTP(w, r)
			return
		}
	}
	t := e.cfg.Table.Host(host)
	if t == nil || t.Handler == nil {
		errorPage(w, http.StatusNotFound, "Tunnel not found",
			fmt.Sprintf("No http tunnel is bound to %s on this relay.", host),
			"Start one with: ferry http --domain "+host+" PORT")
		return
	}
	if r.TLS != nil && r.TLS.ServerName != "" && sni.Normalize(r.TLS.ServerName) != host {
		// One TLS connection may carry requests for several names (HTTP/2 coalescing);
		// the SNI and Host must still agree on the tunnel, or routing could skip a tunnel's checks.
		if e.cfg.Table.Host(sni.Normalize(r.TLS.ServerName)) != t {
			errorPage(w, http.StatusMisdirectedRequest, "Misdirected request",
				fmt.Sprintf("This connection was opened for %s, not %s.", r.TLS.ServerName, host), "")
			return
		}
	}
	t.Handler.ServeHTTP(w, r)
}

// redirectHTTPS sends a plain-HTTP client to the same URL over HTTPS.
func (e *Edge) redirectHTTPS(w http.ResponseWriter, r *http.Request, host string) {
	u := "https://" + host
	if e.cfg.HTTPSPort != 0 && e.cfg.HTTPSPort != 443 {
		u += fmt.Sprintf(":%d", e.cfg.HTTPSPort)
	}
	http.Redirect(w, r, u+r.URL.RequestURI(), http.StatusPermanentRedirect)
}

// NewHTTPHandler returns the handler for an http tunnel's requests: its modules in front
// of a reverse proxy to its agent over pooled streams, and a func that releases the pool
// when the tunnel goes away.
func (e *Edge) NewHTTPHandler(t *route.Tunnel) (http.Handler, func()) {
	host := t.Host
	if host == "" {
		host = "labeled.invalid" // labeled tunnels have no name; the agent ignores it
	}
	dial := func(ctx context.Context) (net.Conn, error) { return t.Dial(ctx, protocol.StreamHTTP, "", t.Host) }
	tr := NewTransport(dial)
	t.Transport = tr // edges whose backends select this tunnel send their requests here
	// Requests from the tunnel's own name use their public connection's stream; edges
	// balancing over tunnels use the pool.
	affine := &transport.AffineTransport{Dial: dial, Pool: tr}
	proxy := NewProxy(ProxyConfig{Name: host, Log: t.Log, Headers: t.Headers, Transport: affine})
	m := HTTPModules{Name: host, Log: t.Log, IPPolicy: t.IPPolicy, BasicAuth: t.BasicAuth,
		Compression: t.Compression, Breaker: t.Breaker, Observer: e.cfg.Observer}
	m.Webhook = t.Webhook
	if t.Auth != nil {
		m.Auth = t.Auth
	}
	url := func() string {
		if len(t.URLs) > 0 {
			return t.URLs[0]
		}
		return ""
	}
	return e.cfg.Observer.HTTP(t.AccountID, t.PublicID, url, m.Wrap(proxy)), tr.CloseIdleConnections
}

// ProxyConfig configures a reverse proxy to agents.
type ProxyConfig struct {
	// Name is the public name, for messages; Log gets proxy errors.
	Name string
	Log  *slog.Logger
	// Transport carries the requests (NewTransport for one tunnel's pooled streams).
	Transport http.RoundTripper
	// Headers adds and removes request and response headers (nil: none).
	Headers *module.Headers
}

// NewTransport returns an HTTP transport over pooled streams that dial opens (stream
// header written).
func NewTransport(dial func(ctx context.Context) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialContext:         func(ctx context.Context, _, _ string) (net.Conn, error) { return dial(ctx) },
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
}

// NewProxy returns a reverse proxy to agents, with X-Forwarded-* set.
func NewProxy(cfg ProxyConfig) http.Handler {
	h := cfg.Headers
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = cfg.Name
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
			h.Request(pr.Out.Header, pr.In)
		},
		ModifyResponse: func(resp *http.Response) error {
			if in, ok := resp.Request.Context().Value(inboundKey{}).(*http.Request); ok {
				h.Response(resp.Header, in)
			}
			return nil
		},
		Transport:  cfg.Transport,
		BufferPool: transport.ProxyBuffers{},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			proxyError(w, cfg.Log, cfg.Name, r.RemoteAddr, r.URL.Path, err)
		},
	}
	if h == nil {
		return p
	}
	// Response templates need the inbound request (client address, TLS); pass it along.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), inboundKey{}, r)))
	})
}

// HTTPModules are the request-level edge modules, applied in this order: IP policy,
// basic auth, webhook verification, circuit breaker, compression, then the handler
// (which applies header rules while proxying).
type HTTPModules struct {
	Name        string // public name, for messages
	Log         *slog.Logger
	IPPolicy    *module.IPPolicy
	BasicAuth   *module.BasicAuth
	Webhook     *webhook.Verifier
	Breaker     *module.Breaker
	Compression bool
	// Auth is an OAuth/OIDC/SAML module (nil: none).
	Auth route.Middleware
	// Observer counts refusals (nil: not counted).
	Observer *route.Observer
}

// Wrap puts the modules in front of next.
func (m HTTPModules) Wrap(next http.Handler) http.Handler {
	h := next
	if m.Compression {
		h = module.Compress(h)
	}
	if m.Breaker != nil {
		h = breaker(m.Name, m.Breaker, m.Observer, h)
	}
	if m.Webhook != nil {
		h = m.Webhook.Guard(h, func() { m.Observer.Rejected("webhook") })
	}
	if m.Auth != nil {
		h = m.Auth.Wrap(h)
	}
	if m.BasicAuth != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !m.BasicAuth.Check(r) {
				m.Observer.Rejected("basic_auth")
				w.Header().Set("WWW-Authenticate", `Basic realm="`+m.Name+`", charset="UTF-8"`)
				errorPage(w, http.StatusUnauthorized, "Authentication required", m.Name+" asks for a user name and password.", "")
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	if m.IPPolicy != nil {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !m.IPPolicy.Allows(r.RemoteAddr) {
				m.Observer.Rejected("ip_policy")
				m.Log.Info("refused request", "remote", r.RemoteAddr, "reason", "client address not allowed by the CIDR rules")
				errorPage(w, http.StatusForbidden, "Forbidden", "Your address may not reach "+m.Name+".", "")
				return
			}
			inner.ServeHTTP(w, r)
		})
	}
	return h
}

// breaker answers 503 while the circuit is open and counts the 5xx answers that pass.
func breaker(name string, b *module.Breaker, obs *route.Observer, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done, err := b.Allow()
		if err != nil {
			obs.Rejected("circuit_breaker")
			w.Header().Set("Retry-After", strconv.Itoa(int(module.BreakerOpen.Seconds())))
			errorPage(w, http.StatusServiceUnavailable, "Service unavailable",
				fmt.Sprintf("Tunnel %s is resting its upstream after too many errors.", name), "Try again in a few seconds.")
			return
		}
		rec := &module.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		done(rec.Status)
	})
}

type inboundKey struct{}

// proxyError answers a request to the tunnel or edge name whose agent did not answer.
func proxyError(w http.ResponseWriter, log *slog.Logger, name, remote, path string, err error) {
	if errors.Is(err, context.Canceled) {
		return // the client went away
	}
	if errors.Is(err, ErrNoTunnel) {
		log.Info("no tunnel online", "remote", remote, "path", path)
		errorPage(w, http.StatusBadGateway, "Bad gateway",
			fmt.Sprintf("No agent serving %s is online.", name), "Start one: ferry tunnel --label KEY=VALUE PORT, with the labels this edge's backend selects.")
		return
	}
	var perr *protocol.Error
	detail := "The relay could not reach the agent serving this tunnel."
	if errors.As(err, &perr) && perr.Code == protocol.CodeUpstreamRefused {
		detail = "The agent could not reach its upstream: " + perr.Message
	}
	log.Warn("proxy error", "remote", remote, "path", path, "err", err)
	errorPage(w, http.StatusBadGateway, "Bad gateway",
		fmt.Sprintf("Tunnel %s is online, but the request failed.", name), detail)
}

// errorPage writes a small HTML page the relay serves itself (not the upstream), marked
// with the header Ferry-Error so scripts can tell it apart.
func errorPage(w http.ResponseWriter, code int, title, msg, hint string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Ferry-Error", fmt.Sprintf("%d %s", code, title))
	w.WriteHeader(code)
	fmt.Fprintf(w, "<!doctype html><html><head><title>%d %s</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>%d %s</h1><p>%s</p>",
		code, html.EscapeString(title), code, html.EscapeString(title), html.EscapeString(msg))
	if hint != "" {
		fmt.Fprintf(w, "<p>%s</p>", html.EscapeString(hint))
	}
	fmt.Fprint(w, "<hr><p><small>ferry-relay</small></p></body></html>\n")
}
