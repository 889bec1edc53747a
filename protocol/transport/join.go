package transport

import (
	"errors"
	"io"
	"net"
	"sync"
)

// copyBufSize is the buffer each direction of a joined connection uses.
const copyBufSize = 64 << 10

var copyBufPool = sync.Pool{New: func() any { b := make([]byte, copyBufSize); return &b }}

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

// pipe copies src to dst; on EOF it half-closes dst, on error it closes both.
func pipe(dst, src net.Conn) int64 {
	bp := copyBufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *bp)
	copyBufPool.Put(bp)
	if err == nil || errors.Is(err, io.EOF) {
		if cw, ok := dst.(closeWriter); ok {
			if cw.CloseWrite() == nil {
				return n
			}
		}
	}
	// No half-close available, or the copy failed: tear both down so the other
	// direction does not wait forever.
	dst.Close()
	src.Close()
	return n
}

// onlyWriter and onlyReader hide ReadFrom/WriteTo so CopyBuffer uses our pooled buffer
// (TCPConn.ReadFrom would otherwise fall back to its own allocation for non-TCP sources).
type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }
