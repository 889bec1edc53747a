//go:build linux

package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The upstream's TCP protocol. A client's first byte picks the mode:
//
//	'B' N (uint64, big endian): bulk. The upstream reads exactly N bytes, answers with the
//	    count it read (uint64), then sends N bytes, half-closes, and waits for the client
//	    to close.
//	'E': echo. Every byte after it comes back, until the client half-closes.
//
// A tunnel tool in the middle only copies bytes, so the same protocol runs direct, through
// ferry, and through a --peer.
const (
	modeBulk = 'B'
	modeEcho = 'E'
)

const (
	// bulkBufSize is the copy buffer of the bulk sink, source and client.
	bulkBufSize = 256 << 10
	// echoBufSize is small: 10,000 idle echo connections each hold one.
	echoBufSize = 4 << 10
	// smallBody is the size of the small HTTP responses and echo messages.
	smallBody = 1 << 10
)

// upstream is the in-process service the tunnels forward to: a TCP server speaking the
// protocol above and an HTTP server (/1k, /upload, /download?n=N).
type upstream struct {
	tcpLn   net.Listener
	httpSrv *http.Server
	httpLn  net.Listener
	pattern []byte // what the bulk source sends

	wg    sync.WaitGroup
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	open  atomic.Int64 // TCP connections open now
}

func startUpstream() (*upstream, error) {
	u := &upstream{pattern: make([]byte, bulkBufSize), conns: make(map[net.Conn]struct{})}
	for i := range u.pattern {
		u.pattern[i] = byte(i*7 + i>>8)
	}
	var err error
	if u.tcpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("upstream tcp: %w", err)
	}
	if u.httpLn, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		u.tcpLn.Close()
		return nil, fmt.Errorf("upstream http: %w", err)
	}
	u.httpSrv = &http.Server{Handler: u.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	u.wg.Go(func() { u.httpSrv.Serve(u.httpLn) }) //nolint:errcheck // ends with Close
	u.wg.Go(u.acceptLoop)
	return u, nil
}

func (u *upstream) tcpAddr() string  { return u.tcpLn.Addr().String() }
func (u *upstream) httpAddr() string { return u.httpLn.Addr().String() }

// close stops both servers and every connection, and waits for their goroutines.
func (u *upstream) close() {
	u.tcpLn.Close()
	u.httpSrv.Close()
	u.mu.Lock()
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
}

func (u *upstream) acceptLoop() {
	for {
		c, err := u.tcpLn.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // EMFILE and the like: back off, retry
			continue
		}
		u.mu.Lock()
		u.conns[c] = struct{}{}
		u.mu.Unlock()
		u.open.Add(1)
		u.wg.Go(func() {
			defer func() {
				c.Close()
				u.mu.Lock()
				delete(u.conns, c)
				u.mu.Unlock()
				u.open.Add(-1)
			}()
			u.serve(c)
		})
	}
}

// serve runs one TCP connection; a client that breaks the protocol is just closed (the
// client side reports what it saw).
func (u *upstream) serve(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case modeEcho:
		buf := make([]byte, echoBufSize)
		copyBuffer(c, c, buf) //nolint:errcheck // the client checks what came back
		closeWrite(c)
	case modeBulk:
		u.serveBulk(c)
	}
}

func (u *upstream) serveBulk(c net.Conn) {
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	n := int64(binary.BigEndian.Uint64(hdr[:]))
	buf := make([]byte, bulkBufSize)
	got, _ := copyBuffer(io.Discard, io.LimitReader(c, n), buf)
	binary.BigEndian.PutUint64(hdr[:], uint64(got))
	if _, err := c.Write(hdr[:]); err != nil || got != n {
		return
	}
	if err := writePattern(c, u.pattern, n); err != nil {
		return
	}
	closeWrite(c)
	copyBuffer(io.Discard, c, buf) //nolint:errcheck // until the client closes
}

// writePattern writes n bytes from pattern (repeated) to w.
func writePattern(w io.Writer, pattern []byte, n int64) error {
	for n > 0 {
		chunk := pattern[:min(int64(len(pattern)), n)]
		if _, err := w.Write(chunk); err != nil {
			return err
		}
		n -= int64(len(chunk))
	}
	return nil
}

func (u *upstream) httpHandler() http.Handler {
	small := make([]byte, smallBody)
	copy(small, u.pattern)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /1k", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(small)))
		w.Write(small) //nolint:errcheck // the client checks the length
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, bulkBufSize)
		n, err := copyBuffer(io.Discard, r.Body, buf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("GET /download", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 {
			http.Error(w, "want ?n=BYTES", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		writePattern(w, u.pattern, n) //nolint:errcheck // the client counts what came
	})
	return mux
}

// copyBuffer copies src to dst through buf until EOF (returning nil) or an error. Unlike
// io.CopyBuffer it never hands the copy to a ReaderFrom or WriterTo, which would use
// buffers (or splice) of their own: the buffer size here is the one chosen.
func copyBuffer(dst io.Writer, src io.Reader, buf []byte) (int64, error) {
	var n int64
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite() //nolint:errcheck // the connection closes next anyway
	}
}
