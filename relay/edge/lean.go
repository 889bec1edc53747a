package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/h1"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
)

// The relay's lean HTTP/1.1 path (package h1 reads and copies the bytes).
//
// Most public HTTP traffic is HTTP/1.1 to an http tunnel without edge modules, where the
// relay only routes each request by its Host and adds X-Forwarded-*. net/http's server,
// ReverseProxy and client cost the relay about 110 µs of CPU per small request (header
// maps, cloning, the response writer's machinery), twice what copying the bytes costs. The
// lean path reads a request head in place, checks it strictly, writes it on to the agent
// with the forwarding headers, and copies the body and the answer by their framing, on
// the connection's own agent stream.
//
// Whatever it does not handle exactly goes, unread, to the net/http server for the rest
// of the connection, which answers as it always did: tunnels with modules, edges, HTTP/1.0
// and HTTP/2, Upgrade, Expect, request bodies without a Content-Length, ambiguous or odd
// header bytes (underscores, folding, bare LF, control characters), heads over 4 KiB,
// ACME challenges, unknown hosts, redirects to HTTPS, refused stream dials.

const (
	// leanIdleTimeout is how long a keep-alive connection may sit between requests
	// (the net/http servers' IdleTimeout).
	leanIdleTimeout = 2 * time.Minute
	// leanDialTimeout bounds opening a stream to the agent.
	leanDialTimeout = 10 * time.Second
)

// leanConns tracks the connections the lean path serves, so Drain can close the idle ones.
type leanConns struct {
	mu       sync.Mutex
	m        map[*leanConn]struct{}
	draining atomic.Bool
}

func (s *leanConns) add(lc *leanConn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.draining.Load() {
		return false
	}
	if s.m == nil {
		s.m = make(map[*leanConn]struct{})
	}
	s.m[lc] = struct{}{}
	return true
}

func (s *leanConns) remove(lc *leanConn) {
	s.mu.Lock()
	delete(s.m, lc)
	s.mu.Unlock()
}

// drain makes every lean connection close once it is idle, waking the idle ones now.
func (s *leanConns) drain() {
	s.draining.Store(true)
	s.mu.Lock()
	conns := make([]*leanConn, 0, len(s.m))
	for lc := range s.m {
		conns = append(conns, lc)
	}
	s.mu.Unlock()
	for _, lc := range conns {
		lc.mu.Lock()
		if lc.idle {
			lc.c.SetReadDeadline(time.Now()) //nolint:errcheck // wakes its wait
		}
		lc.mu.Unlock()
	}
}

func (s *leanConns) isDraining() bool { return s.draining.Load() }

// leanConn is one public HTTP/1.1 connection on the lean path.
type leanConn struct {
	e        *Edge
	c        net.Conn // the public connection (TLS terminated, or plain)
	raw      net.Conn // the accepted connection, tracked in e.conns
	br       *bufio.Reader
	bw       *bufio.Writer
	tls      *tls.ConnectionState // nil: plain HTTP
	queue    *transport.ConnQueue // the net/http server's, for hand-offs
	remote   string
	clientIP string
	plain    bool // on the plain-HTTP port (ACME HTTP-01 answers live there)

	// f carries requests over the connection's own stream to the agent of t.
	f h1.Forwarder
	t *route.Tunnel

	mu   sync.Mutex // guards idle against Drain
	idle bool
}

// serveLean serves an HTTP/1.x connection (c over the accepted raw) on the lean path
// until it closes or hands it to the net/http server behind queue.
func (e *Edge) serveLean(raw, c net.Conn, state *tls.ConnectionState, queue *transport.ConnQueue) {
	lc := &leanConn{e: e, c: c, raw: raw, tls: state, queue: queue, plain: state == nil,
		remote: raw.RemoteAddr().String(), br: bufio.NewReaderSize(c, h1.BufSize)}
	lc.f.In, lc.f.InR = c, lc.br
	lc.clientIP = route.HostOnly(lc.remote)
	if !e.lean.add(lc) {
		c.Close()
		return
	}
	defer e.lean.remove(lc)
	if lc.serve() {
		return // handed off
	}
	lc.f.DropOut()
	c.Close()
}

// serve runs requests until the connection ends (false) or is handed off (true).
func (lc *leanConn) serve() bool {
	for n := 0; ; n++ {
		wait := ReadHeaderTimeout
		if n > 0 {
			wait = leanIdleTimeout
		}
		if !lc.waitRequest(wait) {
			return false
		}
		lc.c.SetReadDeadline(time.Now().Add(ReadHeaderTimeout)) //nolint:errcheck
		head, err := h1.PeekHead(lc.br)
		if errors.Is(err, h1.ErrHandOff) {
			return lc.handOff()
		}
		if err != nil {
			return false // the client went away or was too slow
		}
		var rq h1.Request
		if !rq.Parse(head) {
			return lc.handOff()
		}
		t := lc.route(&rq)
		if t == nil {
			return lc.handOff()
		}
		lc.c.SetReadDeadline(time.Time{}) //nolint:errcheck // bodies: as net/http, no deadline
		keep, handOff := lc.forward(t, &rq, head)
		if handOff {
			return lc.handOff()
		}
		if err := lc.bw.Flush(); err != nil || !keep {
			return false
		}
	}
}

// waitRequest waits up to wait for a request's first byte. A stream idle for
// transport.SlotIdle is closed meanwhile, so an idle client holds no agent resources.
func (lc *leanConn) waitRequest(wait time.Duration) bool {
	if lc.br.Buffered() > 0 {
		return !lc.e.lean.isDraining() // pipelined
	}
	deadline := time.Now().Add(wait)
	defer lc.setIdle(false)
	for {
		d := time.Until(deadline)
		if lc.f.Out != nil {
			d = min(d, transport.SlotIdle)
		}
		if !lc.setIdle(true) {
			return false
		}
		lc.c.SetReadDeadline(time.Now().Add(d)) //nolint:errcheck
		if lc.e.lean.isDraining() {
			return false
		}
		_, err := lc.br.Peek(1)
		lc.setIdle(false)
		if err == nil {
			return true
		}
		if h1.IsTimeout(err) && lc.f.Out != nil && time.Now().Before(deadline) && !lc.e.lean.isDraining() {
			lc.f.DropOut()
			continue
		}
		return false
	}
}

// setIdle marks the connection idle (Drain may wake it) or busy; it reports false when
// the relay is draining and the connection should close instead of waiting.
func (lc *leanConn) setIdle(idle bool) bool {
	lc.mu.Lock()
	lc.idle = idle
	lc.mu.Unlock()
	return !idle || !lc.e.lean.isDraining()
}

// route returns the tunnel that serves rq on the lean path, or nil when net/http must
// serve it (the checks and answers of Edge.serveHTTP, modules, edges).
func (lc *leanConn) route(rq *h1.Request) *route.Tunnel {
	e := lc.e
	if lc.plain && e.cfg.PlainHTTP != nil && bytes.HasPrefix(rq.Target, []byte("/.well-known/acme-challenge/")) {
		return nil
	}
	host := rq.Host
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host, ']') < i {
		host = host[:i]
	}
	name := sni.Normalize(string(host))
	if lc.plain && e.cfg.TLSOnly != nil && e.cfg.TLSOnly(name) {
		return nil
	}
	if rs := e.routes(); rs != nil && rs.HTTPS(name) != nil {
		return nil
	}
	t := e.cfg.Table.Host(name)
	if t == nil || t.Handler == nil || !leanTunnel(t) {
		return nil
	}
	if lc.tls != nil && lc.tls.ServerName != "" {
		if sn := sni.Normalize(lc.tls.ServerName); sn != name && e.cfg.Table.Host(sn) != t {
			return nil // 421 from serveHTTP
		}
	}
	return t
}

// leanTunnel reports whether t has no request-level modules (they need net/http).
func leanTunnel(t *route.Tunnel) bool {
	return t.Proto == protocol.ProtoHTTP && t.IPPolicy == nil && t.BasicAuth == nil && t.Headers == nil &&
		!t.Compression && t.Breaker == nil && t.Webhook == nil && t.Auth == nil
}

// forward sends rq (its head is head, still unread in br) to t's agent and copies the
// answer back. It reports whether the connection may serve another request, and
// handOff when nothing was sent or consumed and net/http should serve the request.
func (lc *leanConn) forward(t *route.Tunnel, rq *h1.Request, head []byte) (keep, handOff bool) {
	start := time.Now()
	if lc.bw == nil {
		lc.bw = bufio.NewWriterSize(lc.c, h1.BufSize)
		lc.f.InW = lc.bw
	}
	if lc.t != t {
		lc.f.DropOut()
		lc.t = t
		lc.f.Dial = func() (net.Conn, error) { return lc.dial(t) }
	}
	res := lc.f.Forward(&h1.Exchange{Req: rq, Head: head,
		WriteHead: func(w *bufio.Writer) { writeHead(w, rq, head, lc.clientIP, lc.tls != nil) }})
	switch {
	case res.HandOff:
		return false, true // net/http dials again and explains the failure
	case res.Failed != nil:
		lc.fail(t, rq, res.Failed, start)
		return false, false
	}
	if res.Answered {
		lc.observe(t, rq, res.Answer.Status, start, res.BytesOut)
	}
	if res.Err != nil && !res.Gone {
		t.Log.Info("request not completed", "remote", lc.remote, "err", res.Err)
	}
	return res.Keep, false
}

// fail answers a request whose answer never came with the 502 page net/http's proxy
// would have served, and closes the connection after it.
func (lc *leanConn) fail(t *route.Tunnel, rq *h1.Request, err error, start time.Time) {
	rec := h1.NewRecorder()
	proxyError(rec, t.Log, t.Host, lc.remote, string(rq.Path()), err)
	if rec.Code() != 0 {
		rec.WriteTo(lc.bw) //nolint:errcheck // closing anyway
		lc.observe(t, rq, rec.Code(), start, int64(rec.Len()))
	}
}

// observe reports a finished request to the metrics and events, as Observer.HTTP does.
func (lc *leanConn) observe(t *route.Tunnel, rq *h1.Request, status int, start time.Time, out int64) {
	o := lc.e.cfg.Observer
	if o == nil || (o.Metrics == nil && o.Events == nil) {
		return
	}
	url := ""
	if len(t.URLs) > 0 {
		url = t.URLs[0]
	}
	route.HTTPDone(o, &route.HTTPRequest{Account: t.AccountID, TunnelID: t.PublicID, URL: url, Remote: lc.remote,
		Status: status, Duration: time.Since(start), BytesIn: max(rq.ContentLength, 0), BytesOut: out}, rq.Host, rq.Method, rq.Path())
}

// dial opens a stream to t's agent for this connection.
func (lc *leanConn) dial(t *route.Tunnel) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), leanDialTimeout)
	defer cancel()
	return t.Dial(ctx, protocol.StreamHTTP, "", t.Host)
}

// handOff gives the connection, with what it has buffered, to the net/http server.
func (lc *leanConn) handOff() bool {
	lc.f.DropOut()
	lc.c.SetReadDeadline(time.Time{}) //nolint:errcheck
	pc := &h1.PrefixConn{Conn: lc.c, R: lc.br, TLS: lc.tls}
	if lc.bw != nil && lc.bw.Buffered() > 0 {
		if lc.bw.Flush() != nil {
			return false
		}
	}
	lc.e.conns.remove(lc.raw) // the server tracks it from here
	if !lc.queue.Push(pc) {
		lc.c.Close()
	}
	return true
}

// tlsStateKey is the context key of a handed-off connection's TLS state.
type tlsStateKey struct{}

// connContext is the HTTP servers' ConnContext: the connection's slot, and the TLS state
// of a connection the lean path handed off.
func (e *Edge) connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = e.slots.ConnContext(ctx, c)
	if pc, ok := c.(*h1.PrefixConn); ok && pc.TLS != nil {
		ctx = context.WithValue(ctx, tlsStateKey{}, pc.TLS)
	}
	return ctx
}

// forwardedHeaders are the request headers the relay does not pass on: hop-by-hop ones,
// and forwarding ones a client could forge (the relay sets its own).
var forwardedHeaders = append([]string{"forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}, h1.HopByHop...)

// writeHead writes rq's head for the agent with X-Forwarded-For/Host/Proto as
// httputil.ProxyRequest.SetXForwarded sets them.
func writeHead(w *bufio.Writer, rq *h1.Request, head []byte, clientIP string, https bool) {
	rq.WriteHead(w, head, forwardedHeaders, nil)
	w.WriteString("X-Forwarded-For: ")
	w.WriteString(clientIP)
	w.WriteString("\r\nX-Forwarded-Host: ")
	w.Write(rq.Host) //nolint:errcheck // sticky: Flush reports it
	if https {
		w.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	} else {
		w.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	}
}
