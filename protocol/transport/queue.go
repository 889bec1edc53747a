package transport

import (
	"net"
	"sync"
)

// ConnQueue is a net.Listener fed by Push: it hands connections that arrived some other
// way (terminated TLS on the relay, relay streams on the agent) to an http.Server.
type ConnQueue struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

// NewConnQueue returns an open queue.
func NewConnQueue() *ConnQueue {
	return &ConnQueue{ch: make(chan net.Conn), done: make(chan struct{})}
}

// Push hands c to Accept; it reports false (and leaves c to the caller) once closed.
func (q *ConnQueue) Push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

// Accept implements net.Listener.
func (q *ConnQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

// Close implements net.Listener.
func (q *ConnQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

// Addr implements net.Listener.
func (q *ConnQueue) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
