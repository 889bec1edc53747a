package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/protocol/h1"
)

// The agent's lean HTTP/1.1 path (package h1 reads and copies the bytes).
//
// With inspection on (the default), the agent's net/http server, ReverseProxy and client
// cost about 115 µs of CPU per small request, more than the relay and the upstream
// together. For a plain-HTTP upstream (tcp or unix), each relay stream now gets an
// upstream connection of its own; request heads are checked in place and written on
// (Host replaced for --host-header), bodies and answers copied by their framing, and the
// exchange recorded from the heads and the copied bytes. Whatever package h1 does not
// read exactly (Upgrade, Expect, chunked request bodies, heads over 4 KiB, ...) goes,
// unread, to the net/http server, for the rest of the stream; so do requests whose
// upstream cannot be dialed, which then get its 502 page and their record.

const (
	// leanIdle bounds the wait for a stream's next request (the HTTP server's IdleTimeout).
	leanIdle = 2 * time.Minute
	// leanHeaderTimeout bounds reading a request head (the HTTP server's ReadHeaderTimeout;
	// the relay already bounded the public client).
	leanHeaderTimeout = time.Minute
)

// leanable reports whether t's streams may take the lean path: a plain-HTTP upstream.
func (t *Tunnel) leanable() bool {
	return t.Scheme == "http" && t.FileRoot == ""
}

// leanStream is one relay stream on the lean path.
type leanStream struct {
	p   *httpProxy
	log *slog.Logger
	st  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	// The stream's own upstream connection, or none yet.
	up     net.Conn
	ubr    *bufio.Reader
	ubw    *bufio.Writer
	answer []byte // an answer's head
	host   []byte // the Host to send (--host-header), nil: the client's
}

// leanSet tracks the streams on the lean path, so close can end them.
type leanSet struct {
	mu     sync.Mutex
	m      map[net.Conn]struct{}
	closed bool
}

func (s *leanSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.m == nil {
		s.m = make(map[net.Conn]struct{})
	}
	s.m[c] = struct{}{}
	return true
}

func (s *leanSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.m, c)
	s.mu.Unlock()
}

func (s *leanSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for c := range s.m {
		c.Close()
	}
	s.mu.Unlock()
}

// serveLean serves one relay stream (StreamOK written) until it ends or is handed to
// the HTTP server.
func (p *httpProxy) serveLean(st net.Conn) {
	if !p.lean.add(st) {
		st.Close()
		return
	}
	defer p.lean.remove(st)
	t := p.t
	t.Conns.Add(1)
	ls := &leanStream{p: p, log: p.log, st: st, br: bufio.NewReaderSize(st, h1.BufSize)}
	switch t.HostHeader {
	case "":
	case "rewrite":
		ls.host = []byte(t.Addr)
		if t.Network == "unix" {
			ls.host = []byte("localhost")
		}
	default:
		ls.host = []byte(t.HostHeader)
	}
	handed := ls.serve()
	t.Conns.Add(-1)
	if handed {
		pc := &h1.PrefixConn{Conn: st, R: ls.br}
		if !p.q.Push(pc) {
			st.Close()
		}
		return
	}
	st.Close()
}

// serve runs requests until the stream ends (false) or must go to net/http (true).
func (ls *leanStream) serve() bool {
	defer ls.dropUpstream()
	for {
		ls.st.SetReadDeadline(time.Now().Add(leanIdle)) //nolint:errcheck
		if _, err := ls.br.Peek(1); err != nil {
			return false
		}
		ls.st.SetReadDeadline(time.Now().Add(leanHeaderTimeout)) //nolint:errcheck
		head, err := h1.PeekHead(ls.br)
		if err != nil {
			ls.st.SetReadDeadline(time.Time{}) //nolint:errcheck
			return errors.Is(err, h1.ErrHandOff)
		}
		ls.st.SetReadDeadline(time.Time{}) //nolint:errcheck
		var rq h1.Request
		if !rq.Parse(head) {
			return true
		}
		keep, err := ls.forward(&rq, head)
		if errors.Is(err, h1.ErrHandOff) {
			return true
		}
		if ls.bw.Flush() != nil || !keep {
			return false
		}
	}
}

// forward sends rq to the upstream and copies the answer back, recording the exchange
// when the tunnel inspects. errHandOff: nothing was sent or consumed.
func (ls *leanStream) forward(rq *h1.Request, head []byte) (keep bool, err error) {
	t := ls.p.t
	var ex *inspect.Exchange
	var reqBody, respBody *inspect.Capture
	if t.Inspect && t.Store != nil {
		ex = ls.exchange(rq, head)
		reqBody, respBody = &inspect.Capture{}, &inspect.Capture{}
	}
	if ls.bw == nil {
		ls.bw = bufio.NewWriterSize(ls.st, h1.BufSize)
	}
	var a h1.Answer
	for attempt := 0; ; attempt++ {
		reused := ls.up != nil
		if !reused {
			if err := ls.dial(); err != nil {
				return false, h1.ErrHandOff // the HTTP server dials again and answers 502
			}
		}
		rq.WriteHead(ls.ubw, head, h1.HopByHop, ls.host)
		ls.ubw.WriteString("\r\n") //nolint:errcheck // sticky
		if rq.ContentLength == 0 {
			err = ls.ubw.Flush()
			if err == nil {
				err = a.ReadHead(ls.ubr, rq.IsHead(), ls.bw, &ls.answer)
			}
			if err == nil {
				ls.br.Discard(len(head)) //nolint:errcheck // peeked
				break
			}
			ls.dropUpstream()
			// An upstream connection that sat idle may have been closed by the upstream
			// just as this request went out: try a fresh one, once, for requests safe to
			// send twice. The head is still unread: a hand-off passes it on whole.
			if reused && attempt == 0 && a.Interim == 0 && h1.Idempotent(rq.Method) {
				continue
			}
			ls.br.Discard(len(head)) //nolint:errcheck
			return ls.fail(rq, ex, err)
		}
		rq.Detach()
		ls.br.Discard(len(head)) //nolint:errcheck
		if _, err = h1.CopyBody(ls.ubw, ls.br, rq.ContentLength, captureOrNil(reqBody)); err == nil {
			err = ls.ubw.Flush()
		}
		if err == nil {
			err = a.ReadHead(ls.ubr, rq.IsHead(), ls.bw, &ls.answer)
		}
		if err != nil {
			ls.dropUpstream()
			return ls.fail(rq, ex, err)
		}
		break
	}
	if _, err := ls.bw.Write(ls.answer); err != nil {
		return false, nil
	}
	if a.UntilEOF {
		ls.bw.WriteString("Connection: close\r\n") //nolint:errcheck // sticky
	}
	ls.bw.WriteString("\r\n") //nolint:errcheck
	if ex != nil {
		ex.Response = &inspect.Response{StatusCode: a.Status, Status: fmt.Sprintf("%d %s", a.Status, http.StatusText(a.Status)),
			Proto: "HTTP/1.1", Header: h1.Header(ls.answer)}
	}
	if cap(ls.answer) > h1.BufSize {
		ls.answer = nil // an unusual head: don't keep its buffer
	}
	switch {
	case a.NoBody:
	case a.Chunked:
		_, err = h1.CopyChunked(ls.bw, ls.ubr, captureOrNil(respBody))
	case a.UntilEOF:
		_, err = h1.CopyBody(ls.bw, ls.ubr, -1, captureOrNil(respBody))
	default:
		_, err = h1.CopyBody(ls.bw, ls.ubr, a.ContentLength, captureOrNil(respBody))
	}
	if err != nil || a.UntilEOF || a.Close {
		ls.dropUpstream()
	}
	if ex != nil {
		ex.Duration = time.Since(ex.Start)
		ex.Request.Body, ex.Response.Body = reqBody.Body(), respBody.Body()
		t.Store.Add(ex)
	}
	if err != nil {
		ls.log.Info("answer not fully forwarded", "tunnel", t.Name, "err", err)
		return false, nil
	}
	return !a.UntilEOF, nil
}

// fail answers a request whose upstream did not answer with the agent's 502 page (the
// stream closes after it) and records the exchange with the error.
func (ls *leanStream) fail(rq *h1.Request, ex *inspect.Exchange, err error) (bool, error) {
	rec := h1.NewRecorder()
	// The stream's Host is the public name (--host-header applies to the upstream's copy).
	badGateway(rec, ls.p.t, ls.log, publicHost("", string(rq.Host)), err)
	rec.WriteTo(ls.bw) //nolint:errcheck // closing anyway
	if ex != nil {
		ex.Duration = time.Since(ex.Start)
		ex.Error = unwrapOp(err).Error()
		ls.p.t.Store.Add(ex)
	}
	return false, nil
}

// exchange starts the record of rq.
func (ls *leanStream) exchange(rq *h1.Request, head []byte) *inspect.Exchange {
	hdr := h1.Header(head)
	remote := "" // the relay always sets X-Forwarded-For
	if xff := hdr.Get("X-Forwarded-For"); xff != "" {
		remote, _, _ = strings.Cut(xff, ",")
	}
	return &inspect.Exchange{ID: inspect.NewID(), TunnelName: ls.p.t.Name, RemoteAddr: strings.TrimSpace(remote), Start: time.Now(),
		Request: inspect.Request{Method: string(rq.Method), URI: string(rq.Target), Proto: "HTTP/1.1", Host: string(rq.Host), Header: hdr}}
}

// dial opens the stream's own upstream connection.
func (ls *leanStream) dial() error {
	t := ls.p.t
	ctx, cancel := context.WithTimeout(context.Background(), DialTimeout)
	defer cancel()
	var d net.Dialer
	network := "tcp"
	if t.Network == "unix" {
		network = "unix"
	}
	c, err := d.DialContext(ctx, network, t.Addr)
	if err != nil {
		return err
	}
	ls.up, ls.ubr, ls.ubw = c, bufio.NewReaderSize(c, h1.BufSize), bufio.NewWriterSize(c, h1.BufSize)
	return nil
}

func (ls *leanStream) dropUpstream() {
	if ls.up != nil {
		ls.up.Close()
		ls.up, ls.ubr, ls.ubw = nil, nil, nil
	}
}

// captureOrNil keeps a nil *Capture from becoming a non-nil io.Writer.
func captureOrNil(c *inspect.Capture) io.Writer {
	if c == nil {
		return nil
	}
	return c
}
