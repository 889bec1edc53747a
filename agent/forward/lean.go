package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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
	// f carries requests over the stream's own upstream connection.
	f    h1.Forwarder
	host []byte // the Host to send (--host-header), nil: the client's
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
	ls.f.In, ls.f.InR, ls.f.Dial = st, ls.br, func() (net.Conn, error) { return p.dialUp(context.Background()) }
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
	defer ls.f.DropOut()
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
		keep, handOff := ls.forward(&rq, head)
		if handOff {
			return true
		}
		if ls.bw.Flush() != nil || !keep {
			return false
		}
	}
}

// forward sends rq to the upstream and copies the answer back, recording the exchange
// when the tunnel inspects. handOff: nothing was sent or consumed.
func (ls *leanStream) forward(rq *h1.Request, head []byte) (keep, handOff bool) {
	t := ls.p.t
	if ls.bw == nil {
		ls.bw = bufio.NewWriterSize(ls.st, h1.BufSize)
		ls.f.InW = ls.bw
	}
	x := &h1.Exchange{Req: rq, Head: head, WriteHead: func(w *bufio.Writer) {
		rq.WriteHead(w, head, h1.HopByHop, ls.host)
		w.WriteString("\r\n") //nolint:errcheck // sticky
	}}
	var ex *inspect.Exchange
	var reqBody, respBody inspect.Capture
	if t.Inspect && t.Store != nil {
		ex = ls.exchange(rq, head)
		x.ReqTee, x.RespTee = &reqBody, &respBody
		x.AnswerHead = func(a *h1.Answer, h []byte) {
			ex.Response = &inspect.Response{StatusCode: a.Status, Status: fmt.Sprintf("%d %s", a.Status, http.StatusText(a.Status)),
				Proto: "HTTP/1.1", Header: h1.Header(h)}
		}
	}
	res := ls.f.Forward(x)
	switch {
	case res.HandOff:
		return false, true // the HTTP server dials again, answers 502 and records it
	case res.Failed != nil:
		ls.fail(rq, ex, res.Failed)
		return false, false
	}
	if ex != nil {
		// Recorded also when the public client left or the request's body broke off
		// before an answer, as the HTTP server's path records "no response".
		ex.Duration = time.Since(ex.Start)
		ex.Request.Body = reqBody.Body()
		if res.Answered {
			ex.Response.Body = respBody.Body()
		} else {
			ex.Error = "no response"
		}
		t.Store.Add(ex)
	}
	if res.Err != nil && !res.Gone {
		ls.log.Info("request not completed", "tunnel", t.Name, "err", res.Err)
	}
	return res.Keep, false
}

// fail answers a request whose upstream did not answer with the agent's 502 page (the
// stream closes after it) and records the exchange with the error.
func (ls *leanStream) fail(rq *h1.Request, ex *inspect.Exchange, err error) {
	rec := h1.NewRecorder()
	// The stream's Host is the public name (--host-header applies to the upstream's copy).
	badGateway(rec, ls.p.t, ls.log, publicHost("", string(rq.Host)), err)
	rec.WriteTo(ls.bw) //nolint:errcheck // closing anyway
	if ex != nil {
		ex.Duration = time.Since(ex.Start)
		ex.Error = unwrapOp(err).Error()
		ls.p.t.Store.Add(ex)
	}
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
