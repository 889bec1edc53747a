package transport

import (
	"errors"
	"io"
	"net"
	"sync"
)

// Copy buffers. A connection starts with a small buffer and moves to a large one only
// while reads keep filling it, so the many idle connections a relay holds cost 4 KiB per
// direction, not 64 KiB, and bulk transfers still move 64 KiB per system call.
const (
	smallBufSize = 4 << 10
	largeBufSize = 64 << 10
)

var (
	smallBufs = sync.Pool{New: func() any { b := make([]byte, smallBufSize); return &b }}
	largeBufs = sync.Pool{New: func() any { b := make([]byte, largeBufSize); return &b }}
)

// ProxyBuffers is an httputil.BufferPool over the large copy buffers, shared by the
// relay's and the agent's reverse proxies.
type ProxyBuffers struct{}

// Get implements httputil.BufferPool.
func (ProxyBuffers) Get() []byte { return *largeBufs.Get().(*[]byte) }

// Put implements httputil.BufferPool.
func (ProxyBuffers) Put(b []byte) { largeBufs.Put(&b) }

type closeWriter interface{ CloseWrite() error }

// Join copies bytes both ways between a and b until both directions have ended.
// When one side's reader reaches EOF, the other side's writer is half-closed, so a
// half-close propagates; an error in either direction closes both. Join closes both
// connections before returning and returns the bytes copied a→b and b→a.
func Join(a, b net.Conn) (aToB, bToA int64) {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		bToA = pipe(a, b)
	}()
	aToB = pipe(b, a)
	wg.Wait()
	a.Close()
	b.Close()
	return aToB, bToA
}

// pipe copies src to dst. On EOF it half-closes dst. When dst stops accepting bytes (a
// write error), it stops reading src but leaves the other direction alone: the peer that
// refused may still be sending its last words (a TLS alert, an HTTP error) the other way.
// A read error aborts both.
func pipe(dst, src net.Conn) int64 {
	n, rerr, werr := copyAdaptive(dst, src)
	switch {
	case rerr == nil && werr == nil: // EOF
		if cw, ok := dst.(closeWriter); ok && cw.CloseWrite() == nil {
			return n
		}
	case werr != nil:
		if cr, ok := src.(closeReader); ok && cr.CloseRead() == nil {
			return n
		}
		src.Close()
		return n
	}
	// No half-close available, or the read failed: tear both down so the other
	// direction does not wait forever.
	dst.Close()
	src.Close()
	return n
}

type closeReader interface{ CloseRead() error }

// copyAdaptive copies until EOF (both errors nil), a read error or a write error.
func copyAdaptive(dst io.Writer, src io.Reader) (total int64, readErr, writeErr error) {
	small := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(small)
	var large *[]byte
	defer func() {
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	buf := *small
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			total += int64(nw)
			if werr != nil {
				return total, nil, werr
			}
			if nw != nr {
				return total, nil, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return total, nil, nil
			}
			return total, rerr, nil
		}
		switch {
		case nr == len(buf) && large == nil: // the stream is busy: read more per call
			large = largeBufs.Get().(*[]byte)
			buf = *large
		case nr < smallBufSize && large != nil: // quiet again: give the large buffer back
			largeBufs.Put(large)
			large = nil
			buf = *small
		}
	}
}
