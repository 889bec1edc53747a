package edge

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// Connection-affine requests.
//
// http.Transport hands every request to two goroutines of a pooled connection (one writes
// the request, one reads the answer) and back; for small requests those hand-offs and the
// pool's bookkeeping cost the relay more than the bytes. So each public HTTP/1.x
// connection gets a stream of its own to the agent (a "slot"), used by one request at a
// time, written and read by the goroutine serving the request. Requests that need the
// pool's machinery (a body to send while the answer may already come back, an Upgrade,
// HTTP/2's concurrent requests on one connection) still go through the pooled transport.

// slotKey is the context key of a public connection's slot (see Edge.connContext).
type slotKey struct{}

// connSlot is one public connection's own stream to an agent, or none yet.
type connSlot struct {
	mu     sync.Mutex // held from a request's write until its answer's body is closed
	owner  *affineTransport
	conn   net.Conn
	br     *bufio.Reader
	bw     *bufio.Writer
	closed bool
}

// drop closes the slot's stream; the next request opens another. Called with mu held.
func (s *connSlot) drop() {
	if s.conn != nil {
		s.conn.Close()
		s.conn, s.owner, s.br, s.bw = nil, nil, nil, nil
	}
}

// close ends the slot with its public connection. A request in flight keeps the lock
// and finds the stream closed when it next reads or writes.
func (s *connSlot) close() {
	s.mu.Lock()
	s.closed = true
	s.drop()
	s.mu.Unlock()
}

// connContext gives each public connection a slot (http.Server.ConnContext).
func (e *Edge) connContext(ctx context.Context, c net.Conn) context.Context {
	s := &connSlot{}
	e.slots.Store(c, s)
	return context.WithValue(ctx, slotKey{}, s)
}

// endSlot closes a connection's slot when the connection ends (from ConnState).
func (e *Edge) endSlot(c net.Conn) {
	if s, ok := e.slots.LoadAndDelete(c); ok {
		s.(*connSlot).close()
	}
}

// affineTransport sends a request over its public connection's slot when it can, and
// through pool otherwise.
type affineTransport struct {
	dial func(ctx context.Context) (net.Conn, error)
	pool http.RoundTripper
}

// slotBufSize sizes a slot's buffered reader and writer (request and answer heads).
const slotBufSize = 4 << 10

// RoundTrip implements http.RoundTripper.
func (t *affineTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	s, _ := req.Context().Value(slotKey{}).(*connSlot)
	if s == nil || req.ProtoMajor != 1 || (req.Body != nil && req.Body != http.NoBody) ||
		req.Header.Get("Upgrade") != "" || !s.mu.TryLock() {
		return t.pool.RoundTrip(req)
	}
	if s.closed {
		s.mu.Unlock()
		return t.pool.RoundTrip(req)
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
func (t *affineTransport) roundTrip(s *connSlot, req *http.Request) (*http.Response, error) {
	for attempt := 0; ; attempt++ {
		reused := s.conn != nil && s.owner == t
		if !reused {
			s.drop()
			c, err := t.dial(req.Context())
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

// readAnswer writes req on the slot's stream and reads the answer's head, skipping
// interim (1xx) answers other than 101.
func readAnswer(s *connSlot, req *http.Request) (*http.Response, error) {
	if err := req.Write(s.bw); err != nil {
		return nil, err
	}
	if err := s.bw.Flush(); err != nil {
		return nil, err
	}
	for {
		resp, err := http.ReadResponse(s.br, req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			return resp, nil
		}
	}
}

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
	}
	b.slot.mu.Unlock()
	return err
}

// CloseIdleConnections closes the pool's idle connections (slots end with their public
// connections).
func (t *affineTransport) CloseIdleConnections() {
	if p, ok := t.pool.(interface{ CloseIdleConnections() }); ok {
		p.CloseIdleConnections()
	}
}
