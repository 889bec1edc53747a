package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Conn is the connection Peek returns: it replays the bytes Peek read, then reads from the
// underlying connection directly. Writes, deadlines, addresses and Close go to the underlying
// connection unchanged.
type Conn struct {
	conn net.Conn

	drained atomic.Bool // set once buf is empty; then Read skips the lock
	mu      sync.Mutex  // guards buf
	buf     []byte      // peeked bytes not yet returned by Read
}

var (
	_ net.Conn      = (*Conn)(nil)
	_ io.WriterTo   = (*Conn)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)

func newConn(c net.Conn, peeked []byte) *Conn {
	rc := &Conn{conn: c, buf: peeked}
	if len(peeked) == 0 {
		rc.buf = nil
		rc.drained.Store(true)
	}
	return rc
}

// Read returns the replayed bytes first, then reads from the underlying connection.
func (c *Conn) Read(p []byte) (int, error) {
	if c.drained.Load() {
		return c.conn.Read(p)
	}
	c.mu.Lock()
	if len(c.buf) == 0 {
		c.mu.Unlock()
		return c.conn.Read(p)
	}
	n := copy(p, c.buf)
	c.buf = c.buf[n:]
	if len(c.buf) == 0 {
		c.buf = nil
		c.drained.Store(true)
	}
	c.mu.Unlock()
	return n, nil
}

// WriteTo writes the replayed bytes to w, then copies the underlying connection to w with
// io.Copy, so TCP-to-TCP copies can still use splice(2) once the buffer is drained.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	var written int64
	if !c.drained.Load() {
		c.mu.Lock()
		if len(c.buf) > 0 {
			n, err := w.Write(c.buf)
			written, c.buf = int64(n), c.buf[n:]
			if err == nil && len(c.buf) > 0 {
				err = io.ErrShortWrite
			}
			if err != nil {
				c.mu.Unlock()
				return written, err
			}
		}
		c.buf = nil
		c.drained.Store(true)
		c.mu.Unlock()
	}
	n, err := io.Copy(w, c.conn)
	return written + n, err
}

// ReadFrom copies r to the underlying connection, using its ReadFrom (and so splice(2) for TCP)
// when it has one.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(c.conn, r)
}

// CloseWrite half-closes the underlying connection when it supports it (*net.TCPConn,
// *net.UnixConn, *tls.Conn, *Conn); otherwise it returns an error matching errors.ErrUnsupported.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("close write on %T: %w", c.conn, errors.ErrUnsupported)
}

// CloseRead stops reading (the relay's half-close when the other side stops accepting
// bytes) when the underlying connection supports it, e.g. *net.TCPConn.
func (c *Conn) CloseRead() error {
	if cr, ok := c.conn.(interface{ CloseRead() error }); ok {
		return cr.CloseRead()
	}
	return fmt.Errorf("close read on %T: %w", c.conn, errors.ErrUnsupported)
}

// NetConn returns the underlying connection. Reading from it directly skips bytes that have
// not been replayed yet.
func (c *Conn) NetConn() net.Conn { return c.conn }

// Write writes to the underlying connection.
func (c *Conn) Write(p []byte) (int, error) { return c.conn.Write(p) }

// Close closes the underlying connection.
func (c *Conn) Close() error { return c.conn.Close() }

// LocalAddr returns the underlying connection's local address.
func (c *Conn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the underlying connection's remote address.
func (c *Conn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the underlying connection's deadlines; replayed bytes are returned regardless.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// SetReadDeadline sets the underlying connection's read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// SetWriteDeadline sets the underlying connection's write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.conn.SetWriteDeadline(t) }
