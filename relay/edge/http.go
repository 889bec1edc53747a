package edge

import (
	"context"
	"errors"
	"fmt"
	"html"
	"net"
	"net/http"
	"net/http/httputil"
	"strconv"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
)

// serveHTTP routes a public HTTP request (plain or terminated TLS) on its Host.
func (e *Edge) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = sni.Normalize(host)
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
	if !t.IPPolicy.Allows(r.RemoteAddr) { // plain HTTP; TLS clients were checked at the handshake
		t.Log.Info("refused request", "remote", r.RemoteAddr, "reason", "client address not allowed by the tunnel's CIDR rules")
		errorPage(w, http.StatusForbidden, "Forbidden", "Your address may not reach "+host+".", "")
		return
	}
	if t.BasicAuth != nil && !t.BasicAuth.Check(r) {
		w.Header().Set("WWW-Authenticate", `Basic realm="`+host+`", charset="UTF-8"`)
		errorPage(w, http.StatusUnauthorized, "Authentication required", host+" asks for a user name and password.", "")
		return
	}
	t.Handler.ServeHTTP(w, r)
}

// NewHTTPHandler returns the reverse proxy that forwards an http tunnel's requests to its
// agent over pooled streams, and a func that releases the pool when the tunnel goes away.
func (e *Edge) NewHTTPHandler(t *route.Tunnel) (http.Handler, func()) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return t.Dial(ctx, protocol.StreamHTTP, "", t.Host)
		},
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	urlHost := t.Host
	if urlHost == "" {
		urlHost = "labeled.invalid" // labeled tunnels have no name; the agent ignores it
	}
	p := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = urlHost
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
			t.Headers.Request(pr.Out.Header, pr.In)
		},
		ModifyResponse: func(resp *http.Response) error {
			if in, ok := resp.Request.Context().Value(inboundKey{}).(*http.Request); ok {
				t.Headers.Response(resp.Header, in)
			}
			return nil
		},
		Transport:  tr,
		BufferPool: transport.ProxyBuffers{},
		ErrorLog:   nil,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return // the client went away
			}
			var perr *protocol.Error
			detail := "The relay could not reach the agent serving this tunnel."
			if errors.As(err, &perr) && perr.Code == protocol.CodeUpstreamRefused {
				detail = "The agent could not reach its upstream: " + perr.Message
			}
			t.Log.Warn("proxy error", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
			errorPage(w, http.StatusBadGateway, "Bad gateway",
				fmt.Sprintf("Tunnel %s is online, but the request failed.", t.Host), detail)
		},
	}
	var h http.Handler = p
	if t.Headers != nil {
		// Response templates need the inbound request (client address, TLS); pass it along.
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), inboundKey{}, r)))
		})
	}
	if t.Compression {
		h = module.Compress(h)
	}
	if t.Breaker != nil {
		h = breaker(t, h)
	}
	return h, tr.CloseIdleConnections
}

// breaker answers 503 while t's circuit is open and counts the 5xx answers that pass.
func breaker(t *route.Tunnel, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		done, err := t.Breaker.Allow()
		if err != nil {
			w.Header().Set("Retry-After", strconv.Itoa(int(module.BreakerOpen.Seconds())))
			errorPage(w, http.StatusServiceUnavailable, "Service unavailable",
				fmt.Sprintf("Tunnel %s is resting its upstream after too many errors.", t.Host), "Try again in a few seconds.")
			return
		}
		rec := &module.StatusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		done(rec.Status)
	})
}

type inboundKey struct{}

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
