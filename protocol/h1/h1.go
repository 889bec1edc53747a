// Package h1 is the lean HTTP/1.1 path the relay and the agent share: a request head
// checked in place and forwarded as it came, bodies and answers copied by their framing,
// no net/http server, ReverseProxy or client in between.
//
// net/http's server, ReverseProxy and client cost about 110 µs of CPU per small request
// on the machines the benchmark runs on (header maps, cloning, the response writer's
// machinery), twice what copying the request's bytes costs. The lean path reads what it
// must (method, target, Host, Content-Length, Connection) and refuses everything it does
// not handle exactly: Parse says no to HTTP/1.0 and HTTP/2, Upgrade, Expect,
// Transfer-Encoding, duplicate Host or Content-Length, folded lines, bare LF or CR,
// control characters, underscores in names. The caller then hands the connection, unread
// (PrefixConn), to its net/http server, which answers as it always did. FuzzRequest
// checks that net/http reads every head Parse accepts the same way.
//
// Files: request.go (Parse, WriteHead), answer.go (ReadHead), copy.go (bodies),
// forward.go (Forwarder: one request and its answer, retried once on a stale
// connection), watch.go (Watch: the client leaving while its answer is awaited).
package h1

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strconv"
)

const (
	// BufSize sizes the buffered readers and writers of a lean connection: a request
	// head must fit the reader.
	BufSize = 4 << 10
	// maxHeaders bounds the header lines of a lean request.
	maxHeaders = 100
	// maxAnswerHead bounds an answer's head (status line and headers).
	maxAnswerHead = 64 << 10
)

// ErrHandOff means a request is not for the lean path: the connection goes to net/http.
var ErrHandOff = errors.New("h1: not for the lean path")

// Recorder records an answer a proxy makes itself (an error page), for WriteTo.
type Recorder struct {
	h    http.Header
	code int
	body bytes.Buffer
}

// NewRecorder returns an empty Recorder.
func NewRecorder() *Recorder { return &Recorder{h: make(http.Header)} }

// Code is the recorded status (0: nothing was written).
func (r *Recorder) Code() int { return r.code }

// Len is the recorded body's length.
func (r *Recorder) Len() int { return r.body.Len() }

func (r *Recorder) Header() http.Header { return r.h }

func (r *Recorder) WriteHeader(code int) {
	if r.code == 0 {
		r.code = code
	}
}

func (r *Recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

// WriteTo writes the answer, closing the connection after it.
func (r *Recorder) WriteTo(w *bufio.Writer) error {
	w.WriteString("HTTP/1.1 " + strconv.Itoa(r.code) + " " + http.StatusText(r.code) + "\r\n") //nolint:errcheck
	r.h.Set("Content-Length", strconv.Itoa(r.body.Len()))
	r.h.Set("Connection", "close")
	r.h.Write(w)          //nolint:errcheck
	w.WriteString("\r\n") //nolint:errcheck
	r.body.WriteTo(w)     //nolint:errcheck
	return w.Flush()
}

// cutLine splits off h's first CRLF-terminated line; ok is false without a CRLF or with
// a bare CR or LF inside the line.
func cutLine(h []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(h, '\n')
	if i < 1 || h[i-1] != '\r' {
		return nil, nil, false
	}
	line = h[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, h[i+1:], true
}

// tokenChars are RFC 9110's tchar.
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !tokenChars[c] {
			return false
		}
	}
	return true
}

// fieldValue reports whether v has no control characters but HTAB (RFC 9110 5.5).
func fieldValue(v []byte) bool {
	for _, b := range v {
		if (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// validHost accepts the Host values the lean path routes: a name or address with an
// optional port (anything else goes to net/http, which refuses it or serves a 404).
func validHost(h []byte) bool {
	if len(h) == 0 || len(h) > 255 {
		return false
	}
	for _, c := range h {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.', c == ':', c == '[', c == ']':
		default:
			return false
		}
	}
	return true
}

// EqualFold reports whether b equals the lower-case ASCII s, ignoring case.
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// Idempotent reports whether a request with method may be sent twice (RFC 9110 9.2.2).
func Idempotent(method []byte) bool {
	switch string(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// PrefixConn is a connection whose first bytes were already read into R: what a lean
// proxy hands to its net/http server.
type PrefixConn struct {
	net.Conn
	R *bufio.Reader
	// TLS is the terminated TLS connection's state (net/http sees no *tls.Conn), or nil.
	TLS *tls.ConnectionState
}

func (c *PrefixConn) Read(p []byte) (int, error) {
	if c.R != nil {
		if c.R.Buffered() > 0 {
			return c.R.Read(p)
		}
		c.R = nil
	}
	return c.Conn.Read(p)
}

// NetConn returns the wrapped connection.
func (c *PrefixConn) NetConn() net.Conn { return c.Conn }

// PeekHead returns the next request's head in br (through its blank line) without
// consuming it. ErrHandOff means the head is not one a lean proxy reads (a bare LF, or
// longer than br's buffer) or was cut short: hand the connection, unread, to net/http.
func PeekHead(br *bufio.Reader) ([]byte, error) {
	for {
		n := br.Buffered()
		b, _ := br.Peek(n)
		if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
			return b[:i+3], nil
		}
		if bytes.Contains(b, []byte("\n\n")) || n == br.Size() {
			return nil, ErrHandOff
		}
		if _, err := br.Peek(n + 1); err != nil {
			if n > 0 && !IsTimeout(err) {
				return nil, ErrHandOff // let net/http answer a truncated head
			}
			return nil, err
		}
	}
}

// IsTimeout reports whether err is a deadline passing.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
