package transport

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"time"
)

// Connection-affine requests, for the relay's and the agent's reverse proxies.
//
// http.Transport hands every request to two goroutines of a pooled connection (one writes
// the request, one reads the answer) and back; for small requests those hand-offs and the
// pool's bookkeeping cost more than the bytes. So each inbound HTTP/1.x connection (a
// public client's at the relay, a relay stream at the agent) gets an outbound connection
// of its own (a "slot"), used by one request at a time, written and read by the goroutine
// serving the request. Requests that need the pool's machinery (a body to send while the
// answer may already come back, an Upgrade, HTTP/2's concurrent requests on one
// connection) still go through the pooled transport.

// slotKey is the context key of an inbound connection's slot (see Slots.ConnContext).
type slotKey struct{}

// Slots holds the slots of an http.Server's inbound connections: set its ConnContext to
// ConnContext and call End from its ConnState when a connection closes or is hijacked.
type Slots struct{ m sync.Map } // net.Conn → *connSlot

// ConnContext gives an inbound connection a slot (http.Server.ConnContext).
func (s *Slots) ConnContext(ctx context.Context, c net.Conn) context.Context {
	slot := &connSlot{}
	s.m.Store(c, slot)
	return context.WithValue(ctx, slotKey{}, slot)
}

// End closes a connection's slot when the connection ends (from ConnState).
func (s *Slots) End(c net.Conn) {
	if slot, ok := s.m.LoadAndDelete(c); ok {
		slot.(*connSlot).close()
	}
}

// SlotIdle is how long a slot keeps its outbound connection between requests: an idle
// keep-alive client does not hold a stream (and the agent's goroutine and buffers) for
// longer; its next request opens another.
var SlotIdle = 30 * time.Second

// connSlot is one inbound connection's own outbound connection, or none yet.
type connSlot struct {
	mu     sync.Mutex // held from a request's write until its answer's body is closed
	owner  *AffineTransport
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	closed bool
	idle   *time.Timer // drops conn after SlotIdle without a request
}

// rest arms the idle timer after a request (mu held).
func (s *connSlot) rest() {
	if s.idle == nil {
		s.idle = time.AfterFunc(SlotIdle, s.expire)
		return
	}
	s.idle.Reset(SlotIdle)
}

// expire drops an idle slot's connection, unless a request holds the slot just now.
func (s *connSlot) expire() {
	if s.mu.TryLock() {
		s.drop()
		s.mu.Unlock()
	}
}

// drop closes the slot's stream; the next request opens another. Called with mu held.
func (s *connSlot) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.owner, s.br, s.bw = nil, nil, nil, nil
	}
}

// close ends the slot with its inbound connection (after the request in flight, if any,
// lets go of the slot).
func (s *connSlot) close() {
	s.mu.Lock()
	s.closed = true
	if s.idle != nil {
		s.idle.Stop()
	}
	s.drop()
	s.mu.Unlock()
}

// AffineTransport sends a request over its inbound connection's slot when it can, and
// through Pool otherwise.
type AffineTransport struct {
	// Dial opens a slot's outbound connection.
	Dial func(ctx context.Context) (net.Conn, error)
	// Pool carries the requests a slot cannot.
	Pool http.RoundTripper
}

// slotBufSize sizes a slot's buffered reader and writer (request and answer heads).
const slotBufSize = 4 << 10

// RoundTrip implements http.RoundTripper.
func (t *AffineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s, _ := req.Context().Value(slotKey{}).(*connSlot)
	if s == nil || req.ProtoMajor != 1 || (req.Body != nil && req.Body != http.NoBody) ||
		req.Header.Get("Upgrade") != "" || !s.mu.TryLock() {
		return t.Pool.RoundTrip(req)
	}
	if s.closed {
		s.mu.Unlock()
		return t.Pool.RoundTrip(req)
	}
	if s.idle != nil {
		s.idle.Stop()
	}
	resp, err := t.roundTrip(s, req)
	if err != nil {
		s.drop()
		s.mu.Unlock()
		return nil, err
	}
	return resp, nil
}

// roundTrip runs one request over s (locked); on success s stays locked until the
// answer's body is closed.
func (t *AffineTransport) roundTrip(s *connSlot, req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		reused := s.conn != nil && s.owner == t
		if !reused {
			s.drop()
			c, err := t.Dial(req.Context())
			if err != nil {
				return nil, err
			}
			s.conn, s.owner = c, t
			s.br, s.bw = bufio.NewReaderSize(c, slotBufSize), bufio.NewWriterSize(c, slotBufSize)
		}
		c := s.conn
		stop := context.AfterFunc(req.Context(), func() { c.SetDeadline(time.Now()) })
		resp, err := readAnswer(s, req)
		if err == nil {
			resp.Body = &slotBody{body: resp.Body, slot: s, stop: stop, keep: !resp.Close && !req.Close, eof: resp.Body == http.NoBody}
			return resp, nil
		}
		stop()
		s.drop()
		// A stream that sat idle may have been closed by the agent just as this request
		// went out: try a fresh one, once, for requests that are safe to send twice.
		if !reused || attempt > 0 || req.Context().Err() != nil || !idempotent(req.Method) {
			return nil, err
		}
	}
}

// readAnswer writes req on the slot's stream and reads the answer's head, passing
// interim (1xx) answers other than 100 and 101 on to the request's trace.
func readAnswer(s *connSlot, req *http.Request) (*http.Response, error) {
	if err := req.Write(s.bw); err != nil {
		return nil, err
	}
	if err := s.bw.Flush(); err != nil {
		return nil, err
	}
	trace := httptrace.ContextClientTrace(req.Context())
	for interim := 0; ; interim++ {
		resp, err := http.ReadResponse(s.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
		// An interim answer (103 Early Hints, 102): passed on to the client through the
		// trace ReverseProxy installs, as http.Transport does, and capped like there.
		if interim == maxInterim {
			return nil, errors.New("transport: too many 1xx answers")
		}
		if resp.StatusCode != http.StatusContinue && trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, err
			}
		}
	}
}

// maxInterim is how many 1xx answers one request may get (http.Transport allows 5).
const maxInterim = 5

func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// slotBody is an answer's body read from a slot: closing it frees the slot, keeping the
// stream for the next request if the body was read to its end.
type slotBody struct {
	body io.ReadCloser
	slot *connSlot
	stop func() bool
	keep bool
	eof  bool
	done bool
}

func (b *slotBody) Read(p []byte) (int, error) {
	n, err := b.body.Read(p)
	if errors.Is(err, io.EOF) {
		b.eof = true
	}
	return n, err
}

func (b *slotBody) Close() error {
	if b.done {
		return nil
	}
	b.done = true
	err := b.body.Close()
	stopped := b.stop() // false: the client went away and the deadline was set
	if !b.eof || !b.keep || !stopped {
		b.slot.drop()
	} else {
		b.slot.rest()
	}
	b.slot.mu.Unlock()
	return err
}

// CloseIdleConnections closes the pool's idle connections (slots end with their inbound
// connections).
func (t *AffineTransport) CloseIdleConnections() {
	if p, ok := t.Pool.(interface{ CloseIdleConnections() }); ok {
		p.CloseIdleConnections()
	}
}
