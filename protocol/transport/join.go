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
	n, err := copyAdaptive(dst, src)
	if err == nil {
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

// copyAdaptive copies until EOF (returning a nil error) or a read or write error.
func copyAdaptive(dst io.Writer, src io.Reader) (int64, error) {
	small := smallBufs.Get().(*[]byte)
	defer smallBufs.Put(small)
	var large *[]byte
	defer func() {
		if large != nil {
			largeBufs.Put(large)
		}
	}()
	buf := *small
	var total int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			total += int64(nw)
			if werr != nil {
				return total, werr
			}
			if nw != nr {
				return total, io.ErrShortWrite
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return total, nil
			}
			return total, rerr
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
