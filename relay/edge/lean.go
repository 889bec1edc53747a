package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
)

// The lean HTTP/1.1 path.
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
	// leanBufSize sizes the public connection's buffered reader and writer: a request
	// head must fit the reader to take the lean path.
	leanBufSize = 4 << 10
	// maxLeanHeaders bounds the header lines of a lean request.
	maxLeanHeaders = 100
	// maxAnswerHead bounds an answer's head (status line and headers) from the agent.
	maxAnswerHead = 64 << 10
	// leanIdleTimeout is how long a keep-alive connection may sit between requests
	// (the net/http servers' IdleTimeout).
	leanIdleTimeout = 2 * time.Minute
	// leanDialTimeout bounds opening a stream to the agent.
	leanDialTimeout = 10 * time.Second
)

// errHandOff means the request is not for the lean path: the connection goes to net/http.
var errHandOff = errors.New("edge: not for the lean path")

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

	// The connection's own stream to its tunnel's agent, or none yet.
	t      *route.Tunnel
	st     net.Conn
	sbr    *bufio.Reader
	sbw    *bufio.Writer
	answer []byte // an answer's head, rewritten for the client

	mu   sync.Mutex // guards idle against Drain
	idle bool
}

// serveLean serves an HTTP/1.x connection (c over the accepted raw) on the lean path
// until it closes or hands it to the net/http server behind queue.
func (e *Edge) serveLean(raw, c net.Conn, state *tls.ConnectionState, queue *transport.ConnQueue) {
	lc := &leanConn{e: e, c: c, raw: raw, tls: state, queue: queue, plain: state == nil,
		remote: raw.RemoteAddr().String(), br: bufio.NewReaderSize(c, leanBufSize)}
	lc.clientIP = hostOnly(lc.remote)
	if !e.lean.add(lc) {
		c.Close()
		return
	}
	defer e.lean.remove(lc)
	if lc.serve() {
		return // handed off
	}
	lc.dropStream()
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
		head, err := lc.peekHead()
		if errors.Is(err, errHandOff) {
			return lc.handOff()
		}
		if err != nil {
			return false // the client went away or was too slow
		}
		var rq leanRequest
		if !rq.parse(head) {
			return lc.handOff()
		}
		t := lc.route(&rq)
		if t == nil {
			return lc.handOff()
		}
		lc.c.SetReadDeadline(time.Time{}) //nolint:errcheck // bodies: as net/http, no deadline
		keep, err := lc.forward(t, &rq, head)
		if errors.Is(err, errHandOff) {
			return lc.handOff()
		}
		if !keep {
			lc.bw.Flush() //nolint:errcheck // closing anyway
			return false
		}
		if lc.bw != nil {
			if err := lc.bw.Flush(); err != nil {
				return false
			}
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
		if lc.st != nil {
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
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && lc.st != nil && time.Now().Before(deadline) && !lc.e.lean.isDraining() {
			lc.dropStream()
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

// peekHead returns the next request's head (through its blank line) without consuming it.
func (lc *leanConn) peekHead() ([]byte, error) {
	for {
		n := lc.br.Buffered()
		b, _ := lc.br.Peek(n)
		if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
			return b[:i+3], nil
		}
		if bytes.Contains(b, []byte("\n\n")) || n == lc.br.Size() {
			return nil, errHandOff // bare LF, or a head over the buffer: net/http decides
		}
		if _, err := lc.br.Peek(n + 1); err != nil {
			if n > 0 && !isTimeout(err) {
				return nil, errHandOff // let net/http answer a truncated head
			}
			return nil, err
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// route returns the tunnel that serves rq on the lean path, or nil when net/http must
// serve it (the checks and answers of Edge.serveHTTP, modules, edges).
func (lc *leanConn) route(rq *leanRequest) *route.Tunnel {
	e := lc.e
	if lc.plain && e.cfg.PlainHTTP != nil && bytes.HasPrefix(rq.target, []byte("/.well-known/acme-challenge/")) {
		return nil
	}
	host := rq.host
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
// answer back. It reports whether the connection may serve another request; errHandOff
// means nothing was sent or consumed and net/http should serve the request.
func (lc *leanConn) forward(t *route.Tunnel, rq *leanRequest, head []byte) (keep bool, err error) {
	start := time.Now()
	if lc.bw == nil {
		lc.bw = bufio.NewWriterSize(lc.c, leanBufSize)
	}
	var a leanAnswer
	for attempt := 0; ; attempt++ {
		reused := lc.st != nil && lc.t == t
		if !reused {
			lc.dropStream()
			if err := lc.dial(t); err != nil {
				return false, errHandOff // net/http dials again and explains the failure
			}
		}
		rq.writeHead(lc.sbw, head, lc.clientIP, lc.tls != nil)
		if rq.contentLength == 0 {
			err = lc.sbw.Flush()
			if err == nil {
				err = a.readHead(lc.sbr, rq.head(), lc.bw, &lc.answer)
			}
			if err == nil {
				lc.br.Discard(len(head)) //nolint:errcheck // peeked
				break
			}
			lc.dropStream()
			// A stream that sat idle may have been closed by the agent just as this
			// request went out: try a fresh one, once, for requests safe to send twice.
			if reused && attempt == 0 && a.interim == 0 && idempotent(rq.method) {
				continue
			}
			lc.br.Discard(len(head)) //nolint:errcheck
			return lc.fail(t, rq, err)
		}
		lc.br.Discard(len(head)) //nolint:errcheck
		if _, err = copyBody(lc.sbw, lc.br, rq.contentLength); err == nil {
			err = lc.sbw.Flush()
		}
		if err != nil {
			lc.dropStream()
			t.Log.Info("request body not forwarded", "remote", lc.remote, "err", err)
			return false, nil
		}
		if err = a.readHead(lc.sbr, rq.head(), lc.bw, &lc.answer); err != nil {
			lc.dropStream()
			return lc.fail(t, rq, err)
		}
		break
	}
	closeAfter := rq.close || a.untilEOF
	if _, err := lc.bw.Write(lc.answer); err != nil {
		lc.dropStream()
		return false, nil
	}
	if closeAfter {
		lc.bw.WriteString("Connection: close\r\n") //nolint:errcheck // sticky error
	}
	lc.bw.WriteString("\r\n") //nolint:errcheck
	if cap(lc.answer) > leanBufSize {
		lc.answer = nil // an unusual head: don't keep its buffer
	}
	var out int64
	switch {
	case a.noBody:
	case a.chunked:
		out, err = copyChunked(lc.bw, lc.sbr)
	case a.untilEOF:
		out, err = copyBody(lc.bw, lc.sbr, -1)
	default:
		out, err = copyBody(lc.bw, lc.sbr, a.contentLength)
	}
	if err != nil || a.untilEOF || a.close {
		lc.dropStream()
	}
	lc.observe(t, rq, a.status, start, out)
	if err != nil {
		t.Log.Info("answer not fully forwarded", "remote", lc.remote, "err", err)
		return false, nil
	}
	return !closeAfter, nil
}

// fail answers a request whose answer never came with the 502 page net/http's proxy
// would have served, and closes the connection after it.
func (lc *leanConn) fail(t *route.Tunnel, rq *leanRequest, err error) (bool, error) {
	rec := &rawResponse{h: make(http.Header)}
	proxyError(rec, t.Log, t.Host, lc.remote, string(rq.path()), err)
	if rec.code != 0 {
		rec.writeTo(lc.bw) //nolint:errcheck // closing anyway
		lc.observe(t, rq, rec.code, time.Now(), int64(rec.body.Len()))
	}
	return false, nil
}

// observe reports a finished request to the metrics and events, as Observer.HTTP does.
func (lc *leanConn) observe(t *route.Tunnel, rq *leanRequest, status int, start time.Time, out int64) {
	o := lc.e.cfg.Observer
	if o == nil || (o.Metrics == nil && o.Events == nil) {
		return
	}
	url := ""
	if len(t.URLs) > 0 {
		url = t.URLs[0]
	}
	o.HTTPDone(&route.HTTPRequest{Account: t.AccountID, TunnelID: t.PublicID, URL: url, Remote: lc.remote,
		Host: rq.host, Method: rq.method, Path: rq.path(), Status: status, Duration: time.Since(start),
		BytesIn: max(rq.contentLength, 0), BytesOut: out})
}

// dial opens a stream to t's agent for this connection.
func (lc *leanConn) dial(t *route.Tunnel) error {
	ctx, cancel := context.WithTimeout(context.Background(), leanDialTimeout)
	defer cancel()
	st, err := t.Dial(ctx, protocol.StreamHTTP, "", t.Host)
	if err != nil {
		return err
	}
	lc.t, lc.st = t, st
	lc.sbr, lc.sbw = bufio.NewReaderSize(st, leanBufSize), bufio.NewWriterSize(st, leanBufSize)
	return nil
}

func (lc *leanConn) dropStream() {
	if lc.st != nil {
		lc.st.Close()
		lc.t, lc.st, lc.sbr, lc.sbw = nil, nil, nil, nil
	}
}

// handOff gives the connection, with what it has buffered, to the net/http server.
func (lc *leanConn) handOff() bool {
	lc.dropStream()
	lc.c.SetReadDeadline(time.Time{}) //nolint:errcheck
	pc := &prefixConn{Conn: lc.c, r: lc.br, tls: lc.tls}
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

// prefixConn is a connection whose first bytes were already read into r.
type prefixConn struct {
	net.Conn
	r   *bufio.Reader
	tls *tls.ConnectionState // the terminated TLS connection's state (net/http sees no *tls.Conn)
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if c.r != nil {
		if c.r.Buffered() > 0 {
			return c.r.Read(p)
		}
		c.r = nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the wrapped connection.
func (c *prefixConn) NetConn() net.Conn { return c.Conn }

// tlsStateKey is the context key of a handed-off connection's TLS state.
type tlsStateKey struct{}

// connContext is the HTTP servers' ConnContext: the connection's slot, and the TLS state
// of a connection the lean path handed off.
func (e *Edge) connContext(ctx context.Context, c net.Conn) context.Context {
	ctx = e.slots.ConnContext(ctx, c)
	if pc, ok := c.(*prefixConn); ok && pc.tls != nil {
		ctx = context.WithValue(ctx, tlsStateKey{}, pc.tls)
	}
	return ctx
}

// leanRequest is a request head parsed in place (its slices point into the head).
type leanRequest struct {
	method, target, host []byte
	contentLength        int64 // -1: none
	close                bool  // Connection: close
}

// parse checks a request head strictly and reports whether the lean path may forward it.
func (rq *leanRequest) parse(h []byte) bool {
	rq.contentLength = -1
	line, rest, ok := cutLine(h)
	if !ok {
		return false
	}
	m, rem, ok := bytes.Cut(line, []byte(" "))
	if !ok || !isToken(m) {
		return false
	}
	target, version, ok := bytes.Cut(rem, []byte(" "))
	if !ok || string(version) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return false // absolute-form, "*", HTTP/1.0, HTTP/2's preface: net/http
	}
	for _, b := range target {
		if b <= ' ' || b >= 0x7f {
			return false
		}
	}
	rq.method, rq.target = m, target
	for n := 0; ; n++ {
		if line, rest, ok = cutLine(rest); !ok || n > maxLeanHeaders {
			return false
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) || bytes.IndexByte(name, '_') >= 0 {
			return false // folded lines, space before the colon, underscores (net/http refuses)
		}
		value = bytes.Trim(value, " \t")
		if !fieldValue(value) {
			return false
		}
		switch {
		case equalFold(name, "host"):
			if rq.host != nil || !validHost(value) {
				return false
			}
			rq.host = value
		case equalFold(name, "content-length"):
			if rq.contentLength >= 0 || len(value) == 0 || len(value) > 18 {
				return false
			}
			for _, b := range value {
				if b < '0' || b > '9' {
					return false
				}
			}
			rq.contentLength, _ = strconv.ParseInt(string(value), 10, 64)
		case equalFold(name, "transfer-encoding"), equalFold(name, "expect"), equalFold(name, "upgrade"):
			return false
		case equalFold(name, "connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case equalFold(tok, "close"):
					rq.close = true
				case len(tok) == 0, equalFold(tok, "keep-alive"):
				default:
					return false // it names other headers to drop: net/http does that
				}
			}
		}
	}
	if rq.host == nil {
		return false
	}
	if rq.contentLength < 0 {
		rq.contentLength = 0
	}
	return true
}

// head reports whether the request is a HEAD (its answer has no body).
func (rq *leanRequest) head() bool { return string(rq.method) == http.MethodHead }

// path is the target without its query.
func (rq *leanRequest) path() []byte {
	p, _, _ := bytes.Cut(rq.target, []byte("?"))
	return p
}

// writeHead writes the request head for the agent: the client's lines in their order,
// less hop-by-hop and forwarding headers, then X-Forwarded-For/Host/Proto as
// httputil.ProxyRequest.SetXForwarded sets them.
func (rq *leanRequest) writeHead(w *bufio.Writer, h []byte, clientIP string, https bool) {
	line, rest, _ := cutLine(h)
	w.Write(line) //nolint:errcheck // sticky: Flush reports it
	w.WriteString("\r\n")
	for {
		line, rest, _ = cutLine(rest)
		if len(line) == 0 {
			break
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		if oneOf(name, droppedRequest) {
			continue
		}
		w.Write(line) //nolint:errcheck
		w.WriteString("\r\n")
	}
	w.WriteString("X-Forwarded-For: ")
	w.WriteString(clientIP)
	w.WriteString("\r\nX-Forwarded-Host: ")
	w.Write(rq.host) //nolint:errcheck
	if https {
		w.WriteString("\r\nX-Forwarded-Proto: https\r\n\r\n")
	} else {
		w.WriteString("\r\nX-Forwarded-Proto: http\r\n\r\n")
	}
}

// droppedRequest are the request headers the relay does not pass on: hop-by-hop ones,
// and forwarding ones a client could forge (the relay sets its own).
var droppedRequest = []string{"connection", "keep-alive", "te", "trailer", "proxy-connection",
	"proxy-authorization", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"}

// droppedAnswer are the answer headers the relay does not pass on (hop-by-hop;
// Transfer-Encoding and Trailer stay: the body is passed on chunked as it came).
var droppedAnswer = []string{"keep-alive", "te", "upgrade", "proxy-connection", "proxy-authenticate"}

// oneOf reports whether name is one of the lower-case names, ignoring case.
func oneOf(name []byte, names []string) bool {
	for _, n := range names {
		if equalFold(name, n) {
			return true
		}
	}
	return false
}

// leanAnswer is what forward needs of an answer's head.
type leanAnswer struct {
	status        int
	contentLength int64
	chunked       bool
	untilEOF      bool // no length: the body ends when the agent closes the stream
	noBody        bool
	close         bool // the agent's side will close: don't reuse the stream
	interim       int  // 1xx answers passed on
}

// readHead reads the answer's head from r into out, rewritten for the client (without
// its blank line). Interim answers (1xx other than 100) go straight to w; 100 is
// dropped (the lean path sends no Expect), 101 is an error (it sends no Upgrade).
func (a *leanAnswer) readHead(r *bufio.Reader, isHead bool, w *bufio.Writer, out *[]byte) error {
	for {
		*a = leanAnswer{contentLength: -1, interim: a.interim}
		b := (*out)[:0]
		line, err := readLine(r, maxAnswerHead)
		if err != nil {
			return err
		}
		version, rest, ok := bytes.Cut(line, []byte(" "))
		code, _, _ := bytes.Cut(rest, []byte(" "))
		if !ok || (string(version) != "HTTP/1.1" && string(version) != "HTTP/1.0") || len(code) != 3 {
			return errors.New("malformed answer from the agent: " + strconv.Quote(string(line)))
		}
		a.status, err = strconv.Atoi(string(code))
		if err != nil || a.status < 100 || a.status > 599 {
			return errors.New("malformed status in the agent's answer: " + strconv.Quote(string(line)))
		}
		a.close = string(version) == "HTTP/1.0"
		b = append(b, "HTTP/1.1 "...)
		b = append(b, rest...)
		b = append(b, "\r\n"...)
		var drop [][]byte // headers the agent's Connection header names
		hasCL, hasTE := false, false
		for n := 0; ; n++ {
			line, err := readLine(r, maxAnswerHead-len(b))
			if err != nil {
				return err
			}
			if len(line) == 0 {
				break
			}
			if n == maxAnswerHeaders || line[0] == ' ' || line[0] == '\t' {
				return errors.New("malformed header in the agent's answer")
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok || !isToken(name) {
				return errors.New("malformed header in the agent's answer: " + strconv.Quote(string(line)))
			}
			value = bytes.Trim(value, " \t")
			if !fieldValue(value) {
				return errors.New("malformed header value in the agent's answer: " + strconv.Quote(string(line)))
			}
			switch {
			case equalFold(name, "content-length"):
				v, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || v < 0 || (hasCL && v != a.contentLength) {
					return errors.New("bad Content-Length in the agent's answer")
				}
				hasCL, a.contentLength = true, v
			case equalFold(name, "transfer-encoding"):
				if hasTE || !equalFold(value, "chunked") {
					return errors.New("unsupported Transfer-Encoding in the agent's answer: " + strconv.Quote(string(value)))
				}
				hasTE = true
			case equalFold(name, "connection"):
				for tok := range bytes.SplitSeq(value, []byte(",")) {
					tok = bytes.Trim(tok, " \t")
					switch {
					case equalFold(tok, "close"):
						a.close = true
					case equalFold(tok, "keep-alive"):
						a.close = false
					case len(tok) > 0:
						drop = append(drop, bytes.ToLower(tok))
					}
				}
				continue
			}
			if oneOf(name, droppedAnswer) {
				continue
			}
			b = append(b, line...)
			b = append(b, "\r\n"...)
		}
		if len(drop) > 0 {
			b = dropHeaders(b, drop)
		}
		*out = b
		switch {
		case a.status == http.StatusSwitchingProtocols:
			return errors.New("the agent switched protocols on a request without Upgrade")
		case a.status < 200:
			a.interim++
			if a.interim > maxInterim {
				return errors.New("too many 1xx answers from the agent")
			}
			if a.status == http.StatusContinue {
				continue
			}
			w.Write(b)            //nolint:errcheck // sticky
			w.WriteString("\r\n") //nolint:errcheck
			if err := w.Flush(); err != nil {
				return err
			}
			continue
		case isHead || a.status == http.StatusNoContent || a.status == http.StatusNotModified:
			a.noBody = true
		case hasTE:
			a.chunked = true
			if hasCL { // RFC 9112 6.3: chunked wins, the length must go, and the connection
				*out = dropHeaders(b, [][]byte{[]byte("content-length")})
				a.close = true
			}
		case !hasCL:
			a.untilEOF = true
		}
		return nil
	}
}

// maxAnswerHeaders bounds an answer's header lines.
const maxAnswerHeaders = 1000

// maxInterim is how many 1xx answers one request may get (http.Transport allows 5).
const maxInterim = 5

// dropHeaders removes the header lines named in names from head (status line first).
func dropHeaders(head []byte, names [][]byte) []byte {
	status, rest, _ := cutLine(head)
	out := append([]byte(nil), status...)
	out = append(out, "\r\n"...)
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = cutLine(rest)
		name, _, _ := bytes.Cut(line, []byte(":"))
		skip := false
		for _, n := range names {
			if equalFold(name, string(n)) {
				skip = true
			}
		}
		if !skip {
			out = append(out, line...)
			out = append(out, "\r\n"...)
		}
	}
	return out
}

// readLine reads a line of at most max bytes, without its CRLF (or LF).
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(long) <= max {
			line, err = r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("answer head from the agent too large")
		}
		return nil, err
	}
	if len(line) > max {
		return nil, errors.New("answer head from the agent too large")
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// copyBody copies n bytes (n < 0: until EOF) from src to dst, flushing dst whenever src
// has nothing buffered, so a slow stream's bytes are not held back.
func copyBody(dst *bufio.Writer, src *bufio.Reader, n int64) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	if n > 0 && n <= int64(src.Buffered()) {
		b, _ := src.Peek(int(n))
		w, err := dst.Write(b)
		src.Discard(w) //nolint:errcheck // buffered
		return int64(w), err
	}
	buf := transport.ProxyBuffers{}.Get()
	defer transport.ProxyBuffers{}.Put(buf)
	var total int64
	for n < 0 || total < n {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		p := buf
		if n >= 0 && int64(len(p)) > n-total {
			p = p[:n-total]
		}
		r, err := src.Read(p)
		if r > 0 {
			if _, werr := dst.Write(p[:r]); werr != nil {
				return total, werr
			}
			total += int64(r)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if n < 0 {
					return total, nil
				}
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	return total, nil
}

// copyChunked copies a chunked body as it came (chunk lines, data, trailers) and returns
// its data bytes.
func copyChunked(dst *bufio.Writer, src *bufio.Reader) (int64, error) {
	var total int64
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			return total, chunkErr(err)
		}
		sz, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		sz = bytes.TrimRight(sz, " \t")
		size, err := strconv.ParseUint(string(sz), 16, 62)
		if err != nil || len(sz) == 0 {
			return total, errors.New("malformed chunk size in the agent's answer")
		}
		dst.Write(line) //nolint:errcheck // sticky
		if size == 0 {
			for n := 0; ; n++ { // trailers, then the blank line
				line, err := src.ReadSlice('\n')
				if err != nil || n == maxAnswerHeaders {
					return total, chunkErr(err)
				}
				if _, err := dst.Write(line); err != nil {
					return total, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return total, nil
				}
			}
		}
		w, err := copyBody(dst, src, int64(size))
		total += w
		if err != nil {
			return total, err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return total, errors.New("malformed chunk in the agent's answer")
		}
		if _, err := dst.Write(crlf); err != nil {
			return total, err
		}
	}
}

func chunkErr(err error) error {
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		return errors.New("malformed chunked body in the agent's answer")
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// rawResponse records an answer the relay makes itself (an error page) for the lean path.
type rawResponse struct {
	h    http.Header
	code int
	body bytes.Buffer
}

func (r *rawResponse) Header() http.Header { return r.h }

func (r *rawResponse) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *rawResponse) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// writeTo writes the answer, closing the connection after it.
func (r *rawResponse) writeTo(w *bufio.Writer) error {
	w.WriteString("HTTP/1.1 " + strconv.Itoa(r.code) + " " + http.StatusText(r.code) + "\r\n") //nolint:errcheck
	r.h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	r.h.Set("Connection", "close")
	r.h.Write(w)          //nolint:errcheck
	w.WriteString("\r\n") //nolint:errcheck
	r.body.WriteTo(w)     //nolint:errcheck
	return w.Flush()
}

// cutLine splits off h's first CRLF-terminated line; ok is false without a CRLF or with
// a bare CR or LF inside the line.
func cutLine(h []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(h, '\n')
	if i < 1 || h[i-1] != '\r' {
		return nil, nil, false
	}
	line = h[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, h[i+1:], true
}

// tokenChars are RFC 9110's tchar.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// fieldValue reports whether v has no control characters but HTAB (RFC 9110 5.5).
func fieldValue(v []byte) bool {
	for _, b := range v {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts the Host values the lean path routes: a name or address with an
// optional port (anything else goes to net/http, which refuses it or serves a 404).
func validHost(h []byte) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// equalFold reports whether b equals the lower-case ASCII s, ignoring case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func hostOnly(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func idempotent(method []byte) bool {
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}
