package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/protocol/transport"
)

// httpProxy serves an http tunnel's streams with an HTTP server whose handler forwards
// each request to the upstream (http or https) and, with inspection on, records it.
type httpProxy struct {
	t   *Tunnel
	q   *transport.ConnQueue
	srv *http.Server
	rp  *httputil.ReverseProxy
	tr  *http.Transport
	// slots give each relay stream its own upstream connection (plain-HTTP upstreams).
	slots transport.Slots
	// upstream is rp, or a file server for file:// tunnels.
	upstream http.Handler
	log      *slog.Logger
	lean     leanSet // streams on the lean path (lean.go)
	// dialUp opens a connection to a plain-HTTP upstream (tcp or unix).
	dialUp func(ctx context.Context) (net.Conn, error)
}

// forwardedHeaders are set by the relay (a trusted peer); ReverseProxy would strip them.
var forwardedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host"}

func newHTTPProxy(t *Tunnel, log *slog.Logger) *httpProxy {
	target := &url.URL{Scheme: t.Scheme, Host: t.Addr}
	if t.Network == "unix" {
		target.Host = "localhost" // dialed as t.Addr; the Host header follows --host-header
	}
	dialer := &net.Dialer{Timeout: DialTimeout}
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if t.Network == "unix" {
			return dialer.DialContext(ctx, "unix", t.Addr)
		}
		return dialer.DialContext(ctx, "tcp", addr)
	}
	tr := &http.Transport{
		DialContext:         func(ctx context.Context, _, addr string) (net.Conn, error) { return dial(ctx, addr) },
		TLSClientConfig:     &tls.Config{InsecureSkipVerify: t.InsecureUpstream}, //nolint:gosec // only when the user asks (--upstream-tls-verify=false)
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   true,
	}
	p := &httpProxy{t: t, q: transport.NewConnQueue(), tr: tr, log: log,
		dialUp: func(ctx context.Context) (net.Conn, error) { return dial(ctx, t.Addr) }}
	var rt http.RoundTripper = tr
	if t.Scheme == "http" {
		// Each relay stream gets a connection of its own to a plain-HTTP upstream, used
		// by the goroutine serving the request (see transport.AffineTransport).
		rt = &transport.AffineTransport{Pool: tr, Dial: p.dialUp}
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			switch t.HostHeader {
			case "rewrite": // SetURL already set the upstream's host
			case "":
				pr.Out.Host = pr.In.Host
			default:
				pr.Out.Host = t.HostHeader
			}
			for _, h := range forwardedHeaders {
				if v := pr.In.Header.Values(h); len(v) > 0 {
					pr.Out.Header[h] = v
				}
			}
		},
		Transport:  rt,
		BufferPool: transport.ProxyBuffers{},
		ErrorLog:   slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) {
				return
			}
			badGateway(w, t, log, publicHost(r.Header.Get("X-Forwarded-Host"), r.Host), err)
		},
	}
	var handler http.Handler = p.rp
	if t.FileRoot != "" {
		h, err := fileServer(t.FileRoot)
		if err != nil {
			log.Error("file server", "tunnel", t.Name, "dir", t.FileRoot, "err", err)
			h = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				http.Error(w, "the agent cannot read its directory", http.StatusBadGateway)
			})
		}
		handler = h
	}
	p.upstream = handler
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: time.Minute, // the relay already bounded the public client
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnContext:       p.slots.ConnContext,
		ConnState: func(c net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				t.Conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				t.Conns.Add(-1)
				p.slots.End(c)
			}
		},
	}
	go p.srv.Serve(p.q) //nolint:errcheck // ends with close
	return p
}

// serve hands one relay stream to the HTTP server.
func (p *httpProxy) serve(st net.Conn) {
	if p.t.leanable() {
		p.serveLean(st)
		return
	}
	if !p.q.Push(st) {
		st.Close()
	}
}

func (p *httpProxy) close() {
	p.lean.closeAll()
	p.q.Close()
	p.srv.Close()
	p.tr.CloseIdleConnections()
}

// ServeHTTP forwards one request, recording it when inspection is on.
func (p *httpProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !p.t.Inspect || p.t.Store == nil {
		p.upstream.ServeHTTP(w, r)
		return
	}
	p.record(w, r, "")
}

func (p *httpProxy) record(w http.ResponseWriter, r *http.Request, replayOf string) {
	remote := r.RemoteAddr
	if xff := r.Header.Get("X-Forwarded-For"); xff != "" {
		remote, _, _ = strings.Cut(xff, ",")
	}
	ex := &inspect.Exchange{ID: inspect.NewID(), TunnelName: p.t.Name, RemoteAddr: strings.TrimSpace(remote),
		Start: time.Now(), Replay: replayOf,
		Request: inspect.Request{Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host, Header: r.Header.Clone()}}
	var reqBody, respBody inspect.Capture
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = teeBody{r.Body, io.TeeReader(r.Body, &reqBody)}
	}
	rec := &recorder{ResponseWriter: w, body: &respBody}
	p.upstream.ServeHTTP(rec, r)
	ex.Duration = time.Since(ex.Start)
	ex.Request.Body = reqBody.Body()
	if rec.code == 0 {
		ex.Error = "no response"
	} else {
		ex.Response = &inspect.Response{StatusCode: rec.code, Status: fmt.Sprintf("%d %s", rec.code, http.StatusText(rec.code)),
			Proto: "HTTP/1.1", Header: rec.header, Body: respBody.Body()}
	}
	p.t.Store.Add(ex)
}

// Replay sends a recorded request (possibly edited) to the upstream again, through the same
// proxy, and records the new exchange.
func (t *Tunnel) Replay(ctx context.Context, req inspect.Request, replayOf string) error {
	if t.http == nil {
		return fmt.Errorf("tunnel %s is not an inspected http tunnel", t.Name)
	}
	uri := req.URI
	if uri == "" {
		uri = "/"
	}
	r, err := http.NewRequestWithContext(ctx, req.Method, uri, strings.NewReader(string(req.Body.Data)))
	if err != nil {
		return fmt.Errorf("replay: %w", err)
	}
	r.RequestURI = uri
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Host = req.Host
	r.RemoteAddr = "127.0.0.1:0"
	r.ContentLength = int64(len(req.Body.Data))
	r.Header.Del("Content-Length")
	t.http.record(&discardWriter{h: http.Header{}}, r, replayOf)
	return nil
}

// badGateway answers a request whose upstream did not: the agent's 502 page.
func badGateway(w http.ResponseWriter, t *Tunnel, log *slog.Logger, host string, err error) {
	log.Warn("upstream unreachable", "tunnel", t.Name, "upstream", t.Upstream(), "err", err)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Ferry-Error", "502 Bad gateway")
	w.WriteHeader(http.StatusBadGateway)
	fmt.Fprintf(w, "<!doctype html><html><head><title>502 Bad gateway</title></head><body style=\"font-family:sans-serif;max-width:40em;margin:4em auto\"><h1>502 Bad gateway</h1><p>Tunnel %s is online, but the request failed.</p><p>The agent could not reach its upstream %s: %s</p><hr><p><small>ferry agent</small></p></body></html>\n",
		html.EscapeString(host), html.EscapeString(t.Upstream()), html.EscapeString(unwrapOp(err).Error()))
}

// publicHost is the tunnel's public name for an outgoing request: the relay's
// X-Forwarded-Host xfh (the Host header may have been rewritten by --host-header), else
// the Host.
func publicHost(xfh, host string) string {
	h := xfh
	if h == "" {
		h = host
	}
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

// fileServer serves dir read-only. os.Root confines every open to dir: neither ".." nor a
// symlink can reach outside it.
func fileServer(dir string) (http.Handler, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	return http.FileServerFS(root.FS()), nil
}

type teeBody struct {
	io.Closer
	io.Reader
}

// recorder captures the status, headers and body the client is sent.
type recorder struct {
	http.ResponseWriter
	body   *inspect.Capture
	code   int
	header http.Header
}

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 || code == http.StatusSwitchingProtocols {
		r.code = code
		r.header = r.ResponseWriter.Header().Clone()
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.code == 0 {
		r.WriteHeader(http.StatusOK)
	}
	r.body.Write(p) //nolint:errcheck // never fails
	return r.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach Flush and Hijack (streaming, websockets).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

type discardWriter struct {
	h    http.Header
	code int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(code int)        { d.code = code }
