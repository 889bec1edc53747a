package edge

import (
	"net"
	"sync"
	"sync/atomic"
)

// countedConn counts a public HTTP connection's bytes (for https: on the wire, under TLS)
// and reports them to the metrics when it closes.
type countedConn struct {
	net.Conn
	in, out atomic.Int64
	done    func(in, out int64)
	once    sync.Once
}

// countHTTP wraps a public connection that an HTTP server will serve (proto "http" or
// "https") so it appears in connections and bytes_total.
func (e *Edge) countHTTP(c net.Conn, proto string) net.Conn {
	done := e.cfg.Observer.PublicConn(proto)
	if done == nil {
		return c
	}
	return &countedConn{Conn: c, done: done}
}

func (c *countedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.done(c.in.Load(), c.out.Load()) })
	return c.Conn.Close()
}

// NetConn returns the wrapped connection.
func (c *countedConn) NetConn() net.Conn { return c.Conn }
