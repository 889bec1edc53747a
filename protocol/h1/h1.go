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
package h1

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/protocol/transport"
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

// Request is a request head parsed in place (its slices point into the head).
type Request struct {
	Method, Target, Host []byte
	ContentLength        int64 // 0 without a Content-Length
	Close                bool  // Connection: close
}

// Parse checks a request head strictly and reports whether the lean path may forward it.
func (rq *Request) Parse(h []byte) bool {
	*rq = Request{ContentLength: -1}
	line, rest, ok := cutLine(h)
	if !ok {
		return false
	}
	m, rem, ok := bytes.Cut(line, []byte(" "))
	if !ok || !isToken(m) {
		return false
	}
	target, version, ok := bytes.Cut(rem, []byte(" "))
	if !ok || string(version) != "HTTP/1.1" || len(target) == 0 || target[0] != '/' {
		return false // absolute-form, "*", HTTP/1.0, HTTP/2's preface: net/http
	}
	for _, b := range target {
		if b <= ' ' || b >= 0x7f {
			return false
		}
	}
	rq.Method, rq.Target = m, target
	for n := 0; ; n++ {
		if line, rest, ok = cutLine(rest); !ok || n > maxHeaders {
			return false
		}
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !isToken(name) || bytes.IndexByte(name, '_') >= 0 {
			return false // folded lines, space before the colon, underscores (net/http refuses)
		}
		value = bytes.Trim(value, " \t")
		if !fieldValue(value) {
			return false
		}
		switch {
		case EqualFold(name, "host"):
			if rq.Host != nil || !validHost(value) {
				return false
			}
			rq.Host = value
		case EqualFold(name, "content-length"):
			if rq.ContentLength >= 0 || len(value) == 0 || len(value) > 18 {
				return false
			}
			for _, b := range value {
				if b < '0' || b > '9' {
					return false
				}
			}
			rq.ContentLength, _ = strconv.ParseInt(string(value), 10, 64)
		case EqualFold(name, "transfer-encoding"), EqualFold(name, "expect"), EqualFold(name, "upgrade"):
			return false
		case EqualFold(name, "connection"):
			for tok := range bytes.SplitSeq(value, []byte(",")) {
				tok = bytes.Trim(tok, " \t")
				switch {
				case EqualFold(tok, "close"):
					rq.Close = true
				case len(tok) == 0, EqualFold(tok, "keep-alive"):
				default:
					return false // it names other headers to drop: net/http does that
				}
			}
		}
	}
	if rq.Host == nil {
		return false
	}
	if rq.ContentLength < 0 {
		rq.ContentLength = 0
	}
	return true
}

// Detach copies the request's fields out of the head's buffer: call it before reading
// further from the reader the head was peeked from (a body), which may reuse the buffer.
func (rq *Request) Detach() {
	b := make([]byte, 0, len(rq.Method)+len(rq.Target)+len(rq.Host))
	b = append(append(append(b, rq.Method...), rq.Target...), rq.Host...)
	m, t := len(rq.Method), len(rq.Method)+len(rq.Target)
	rq.Method, rq.Target, rq.Host = b[:m:m], b[m:t:t], b[t:]
}

// Header returns the header lines of a head (request or answer; its first line and any
// Host line skipped), as net/http would have read them: keys canonical, values trimmed.
func Header(head []byte) http.Header {
	h := make(http.Header)
	_, rest, ok := cutLine(head)
	for ok {
		var line []byte
		if line, rest, ok = cutLine(rest); !ok || len(line) == 0 {
			break
		}
		name, value, _ := bytes.Cut(line, []byte(":"))
		if EqualFold(name, "host") {
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(string(name))
		h[k] = append(h[k], string(bytes.Trim(value, " \t")))
	}
	return h
}

// IsHead reports whether the request is a HEAD (its answer has no body).
func (rq *Request) IsHead() bool { return string(rq.Method) == http.MethodHead }

// Path is the target without its query.
func (rq *Request) Path() []byte {
	p, _, _ := bytes.Cut(rq.Target, []byte("?"))
	return p
}

// WriteHead writes the request head h (which rq parsed) less its blank line: the request
// line and the header lines in their order, without the headers named in drop (lower
// case) and with the Host value replaced by host unless host is nil. The caller adds
// its own header lines and the blank line.
func (rq *Request) WriteHead(w *bufio.Writer, h []byte, drop []string, host []byte) {
	line, rest, _ := cutLine(h)
	w.Write(line) //nolint:errcheck // sticky: Flush reports it
	w.WriteString("\r\n")
	for {
		line, rest, _ = cutLine(rest)
		if len(line) == 0 {
			return
		}
		name, _, _ := bytes.Cut(line, []byte(":"))
		if OneOf(name, drop) {
			continue
		}
		if host != nil && EqualFold(name, "host") {
			w.WriteString("Host: ")
			w.Write(host) //nolint:errcheck
		} else {
			w.Write(line) //nolint:errcheck
		}
		w.WriteString("\r\n")
	}
}

// HopByHop are the request headers that concern one connection only (RFC 9110 7.6.1),
// and proxies' credentials: a proxy does not pass them on. Lower case, for WriteHead.
var HopByHop = []string{"connection", "keep-alive", "te", "trailer", "upgrade", "proxy-connection", "proxy-authorization"}

// droppedAnswer are the answer headers not passed on (hop-by-hop; Transfer-Encoding and
// Trailer stay: the body is passed on chunked as it came).
var droppedAnswer = []string{"keep-alive", "te", "upgrade", "proxy-connection", "proxy-authenticate"}

// OneOf reports whether name is one of the lower-case names, ignoring case.
func OneOf(name []byte, names []string) bool {
	for _, n := range names {
		if EqualFold(name, n) {
			return true
		}
	}
	return false
}

// Answer is what a proxy needs of an answer's head.
type Answer struct {
	Status        int
	ContentLength int64
	Chunked       bool
	UntilEOF      bool // no length: the body ends when the sender closes the connection
	NoBody        bool
	Close         bool // the sender will close: don't reuse the connection
	Interim       int  // 1xx answers passed on
}

// ReadHead reads the answer's head from r into out, rewritten for the client (without
// its blank line). Interim answers (1xx other than 100) go straight to w; 100 is
// dropped (the lean path sends no Expect), 101 is an error (it sends no Upgrade).
func (a *Answer) ReadHead(r *bufio.Reader, isHead bool, w *bufio.Writer, out *[]byte) error {
	for {
		*a = Answer{ContentLength: -1, Interim: a.Interim}
		b := (*out)[:0]
		line, err := readLine(r, maxAnswerHead)
		if err != nil {
			return err
		}
		version, rest, ok := bytes.Cut(line, []byte(" "))
		code, _, _ := bytes.Cut(rest, []byte(" "))
		if !ok || (string(version) != "HTTP/1.1" && string(version) != "HTTP/1.0") || len(code) != 3 {
			return errors.New("malformed answer: " + strconv.Quote(string(line)))
		}
		a.Status, err = strconv.Atoi(string(code))
		if err != nil || a.Status < 100 || a.Status > 599 {
			return errors.New("malformed status in the answer: " + strconv.Quote(string(line)))
		}
		a.Close = string(version) == "HTTP/1.0"
		b = append(b, "HTTP/1.1 "...)
		b = append(b, rest...)
		b = append(b, "\r\n"...)
		var drop [][]byte // headers the answer's Connection header names
		hasCL, hasTE := false, false
		for n := 0; ; n++ {
			line, err := readLine(r, maxAnswerHead-len(b))
			if err != nil {
				return err
			}
			if len(line) == 0 {
				break
			}
			if n == maxAnswerHeaders || line[0] == ' ' || line[0] == '\t' {
				return errors.New("malformed header in the answer")
			}
			name, value, ok := bytes.Cut(line, []byte(":"))
			if !ok || !isToken(name) {
				return errors.New("malformed header in the answer: " + strconv.Quote(string(line)))
			}
			value = bytes.Trim(value, " \t")
			if !fieldValue(value) {
				return errors.New("malformed header value in the answer: " + strconv.Quote(string(line)))
			}
			switch {
			case EqualFold(name, "content-length"):
				v, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || v < 0 || (hasCL && v != a.ContentLength) {
					return errors.New("bad Content-Length in the answer")
				}
				hasCL, a.ContentLength = true, v
			case EqualFold(name, "transfer-encoding"):
				if hasTE || !EqualFold(value, "chunked") {
					return errors.New("unsupported Transfer-Encoding in the answer: " + strconv.Quote(string(value)))
				}
				hasTE = true
			case EqualFold(name, "connection"):
				for tok := range bytes.SplitSeq(value, []byte(",")) {
					tok = bytes.Trim(tok, " \t")
					switch {
					case EqualFold(tok, "close"):
						a.Close = true
					case EqualFold(tok, "keep-alive"):
						a.Close = false
					case len(tok) > 0:
						drop = append(drop, bytes.ToLower(tok))
					}
				}
				continue
			}
			if OneOf(name, droppedAnswer) {
				continue
			}
			b = append(b, line...)
			b = append(b, "\r\n"...)
		}
		if len(drop) > 0 {
			b = dropHeaders(b, drop)
		}
		*out = b
		switch {
		case a.Status == http.StatusSwitchingProtocols:
			return errors.New("the upstream switched protocols on a request without Upgrade")
		case a.Status < 200:
			a.Interim++
			if a.Interim > maxInterim {
				return errors.New("too many 1xx answers ")
			}
			if a.Status == http.StatusContinue {
				continue
			}
			w.Write(b)            //nolint:errcheck // sticky
			w.WriteString("\r\n") //nolint:errcheck
			if err := w.Flush(); err != nil {
				return err
			}
			continue
		case isHead || a.Status == http.StatusNoContent || a.Status == http.StatusNotModified:
			a.NoBody = true
		case hasTE:
			a.Chunked = true
			if hasCL { // RFC 9112 6.3: chunked wins, the length must go, and the connection
				*out = dropHeaders(b, [][]byte{[]byte("content-length")})
				a.Close = true
			}
		case !hasCL:
			a.UntilEOF = true
		}
		return nil
	}
}

// maxAnswerHeaders bounds an answer's header lines.
const maxAnswerHeaders = 1000

// maxInterim is how many 1xx answers one request may get (http.Transport allows 5).
const maxInterim = 5

// dropHeaders removes the header lines named in names from head (status line first).
func dropHeaders(head []byte, names [][]byte) []byte {
	status, rest, _ := cutLine(head)
	out := append([]byte(nil), status...)
	out = append(out, "\r\n"...)
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = cutLine(rest)
		name, _, _ := bytes.Cut(line, []byte(":"))
		skip := false
		for _, n := range names {
			if EqualFold(name, string(n)) {
				skip = true
			}
		}
		if !skip {
			out = append(out, line...)
			out = append(out, "\r\n"...)
		}
	}
	return out
}

// readLine reads a line of at most max bytes, without its CRLF (or LF).
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long := append([]byte(nil), line...)
		for errors.Is(err, bufio.ErrBufferFull) && len(long) <= max {
			line, err = r.ReadSlice('\n')
			long = append(long, line...)
		}
		line = long
	}
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return nil, errors.New("answer head too large")
		}
		return nil, err
	}
	if len(line) > max {
		return nil, errors.New("answer head too large")
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

// CopyBody copies n bytes (n < 0: until EOF) from src to dst, and to tee unless it is
// nil, flushing dst whenever src has nothing buffered, so a slow sender's bytes are not
// held back.
func CopyBody(dst *bufio.Writer, src *bufio.Reader, n int64, tee io.Writer) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	if n > 0 && n <= int64(src.Buffered()) {
		b, _ := src.Peek(int(n))
		w, err := dst.Write(b)
		if tee != nil {
			tee.Write(b[:w]) //nolint:errcheck // a capture
		}
		src.Discard(w) //nolint:errcheck // buffered
		return int64(w), err
	}
	buf := transport.ProxyBuffers{}.Get()
	defer transport.ProxyBuffers{}.Put(buf)
	var total int64
	for n < 0 || total < n {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		p := buf
		if n >= 0 && int64(len(p)) > n-total {
			p = p[:n-total]
		}
		r, err := src.Read(p)
		if r > 0 {
			if _, werr := dst.Write(p[:r]); werr != nil {
				return total, werr
			}
			if tee != nil {
				tee.Write(p[:r]) //nolint:errcheck
			}
			total += int64(r)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if n < 0 {
					return total, nil
				}
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	return total, nil
}

// CopyChunked copies a chunked body as it came (chunk lines, data, trailers) and returns
// its data bytes; tee (nil: none) gets the data.
func CopyChunked(dst *bufio.Writer, src *bufio.Reader, tee io.Writer) (int64, error) {
	var total int64
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			return total, chunkErr(err)
		}
		sz, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		sz = bytes.TrimRight(sz, " \t")
		size, err := strconv.ParseUint(string(sz), 16, 62)
		if err != nil || len(sz) == 0 {
			return total, errors.New("malformed chunk size in the answer")
		}
		dst.Write(line) //nolint:errcheck // sticky
		if size == 0 {
			for n := 0; ; n++ { // trailers, then the blank line
				line, err := src.ReadSlice('\n')
				if err != nil || n == maxAnswerHeaders {
					return total, chunkErr(err)
				}
				if _, err := dst.Write(line); err != nil {
					return total, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return total, nil
				}
			}
		}
		w, err := CopyBody(dst, src, int64(size), tee)
		total += w
		if err != nil {
			return total, err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return total, errors.New("malformed chunk in the answer")
		}
		if _, err := dst.Write(crlf); err != nil {
			return total, err
		}
	}
}

func chunkErr(err error) error {
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		return errors.New("malformed chunked body in the answer")
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

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

// Watch notices a client that goes away while a proxy waits on the other side (an answer
// that takes long, a stream of events that is silent): after a delay, a goroutine peeks
// the client's connection, and if that read fails (EOF, reset) it calls gone, which
// should end the other side so the waiting proxy returns. Most requests finish before
// the delay and cost only a timer. net/http's server does the same with a background
// read on every request.
type Watch struct {
	c     net.Conn
	br    *bufio.Reader
	skip  int // bytes at the front of br that are the request in flight
	gone  func()
	timer *time.Timer
	mu    sync.Mutex
	state int // watchWaiting, watchReading, watchStopped
	done  chan struct{}
}

const (
	watchWaiting = iota
	watchReading
	watchStopped
)

// WatchDelay is how long a request may wait before Watch starts reading the client.
var WatchDelay = time.Second

// StartWatch watches c, read through br, until Stop; br must not be read meanwhile. The
// first skip buffered bytes are the request in flight (a head not yet discarded).
func StartWatch(c net.Conn, br *bufio.Reader, skip int, gone func()) *Watch {
	w := &Watch{c: c, br: br, skip: skip, gone: gone}
	w.timer = time.AfterFunc(WatchDelay, w.run)
	return w
}

func (w *Watch) run() {
	w.mu.Lock()
	if w.state == watchStopped {
		w.mu.Unlock()
		return
	}
	w.state, w.done = watchReading, make(chan struct{})
	w.mu.Unlock()
	defer close(w.done)
	_, err := w.br.Peek(w.skip + 1)
	w.mu.Lock()
	stopped := w.state == watchStopped
	w.mu.Unlock()
	if err != nil && !stopped && !errors.Is(err, bufio.ErrBufferFull) {
		w.gone()
	}
}

// Stop ends the watch; when it returns, br may be read again.
func (w *Watch) Stop() {
	w.timer.Stop()
	w.mu.Lock()
	reading := w.state == watchReading
	w.state = watchStopped
	w.mu.Unlock()
	if reading {
		w.c.SetReadDeadline(time.Unix(1, 0)) //nolint:errcheck // wakes the peek
		<-w.done
		w.c.SetReadDeadline(time.Time{}) //nolint:errcheck
	}
}

// Forwarder carries one inbound HTTP/1.1 connection's requests to an outbound connection
// of its own (the relay: a stream to the agent; the agent: a connection to the upstream)
// and their answers back.
type Forwarder struct {
	// In is the inbound connection, read through InR (request heads are peeked there)
	// and written through InW.
	In  net.Conn
	InR *bufio.Reader
	InW *bufio.Writer
	// Out is the outbound connection (nil: none yet), with its buffers.
	Out  net.Conn
	OutR *bufio.Reader
	OutW *bufio.Writer
	// Dial opens Out when there is none.
	Dial func() (net.Conn, error)

	answer []byte // an answer's head, rewritten for the inbound side
}

// Exchange is one request for Forward.
type Exchange struct {
	Req  *Request
	Head []byte // Req's head, peeked from InR
	// WriteHead writes the head for the outbound side, blank line included.
	WriteHead func(w *bufio.Writer)
	// ReqTee and RespTee get the request's and the answer's body bytes (nil: none).
	ReqTee, RespTee io.Writer
	// AnswerHead, when set, is called with the answer's head before its body is copied.
	AnswerHead func(a *Answer, head []byte)
}

// Result is what Forward did.
type Result struct {
	Answer   Answer
	BytesOut int64 // the answer's body bytes
	// HandOff: nothing was sent (Out could not be dialed) and nothing consumed from
	// InR; serve the connection with net/http.
	HandOff bool
	// Failed is set when no answer came: the caller answers (a 502 page) and closes.
	Failed error
	// Gone: the inbound side went away while the answer was awaited or copied.
	Gone bool
	// Answered: the answer's head went to InW.
	Answered bool
	// Keep: the inbound connection may carry another request.
	Keep bool
	// Err is set when the exchange broke after the answer began; close the connection.
	Err error
}

// DropOut closes the outbound connection; the next request dials another.
func (f *Forwarder) DropOut() {
	if f.Out != nil {
		f.Out.Close()
		f.Out, f.OutR, f.OutW = nil, nil, nil
	}
}

func (f *Forwarder) dial() error {
	c, err := f.Dial()
	if err != nil {
		return err
	}
	f.Out, f.OutR, f.OutW = c, bufio.NewReaderSize(c, BufSize), bufio.NewWriterSize(c, BufSize)
	return nil
}

// Forward sends one request and copies its answer back into InW (not flushed). A safe
// request whose reused outbound connection fails before answering is sent once more on
// a fresh one (the other side may have closed it while idle). While the answer is
// awaited and copied, a Watch notices the inbound side going away and closes Out.
func (f *Forwarder) Forward(x *Exchange) (res Result) {
	rq := x.Req
	var w *Watch
	var gone atomic.Bool
	unread := len(x.Head) // the head stays in InR until the watch stops: InR is the watch's meanwhile
	settle := func() {
		if w != nil {
			w.Stop()
			w = nil
		}
		f.InR.Discard(unread) //nolint:errcheck // peeked
		unread = 0
	}
	defer settle()
	a := &res.Answer
	for attempt := 0; ; attempt++ {
		reused := f.Out != nil
		if !reused {
			if err := f.dial(); err != nil {
				unread = 0 // the request stays in InR for net/http
				res.HandOff = true
				return res
			}
		}
		x.WriteHead(f.OutW)
		var err error
		if rq.ContentLength > 0 {
			rq.Detach() // the body's bytes may reuse the head's buffer
			settle()
			if _, err = CopyBody(f.OutW, f.InR, rq.ContentLength, x.ReqTee); err == nil {
				err = f.OutW.Flush()
			}
			if err != nil {
				f.DropOut()
				res.Err = fmt.Errorf("request body: %w", err)
				return res
			}
		} else if err = f.OutW.Flush(); err != nil {
			err = fmt.Errorf("request: %w", err)
		}
		if err == nil {
			out := f.Out
			w = StartWatch(f.In, f.InR, unread, func() { gone.Store(true); out.Close() })
			err = a.ReadHead(f.OutR, rq.IsHead(), f.InW, &f.answer)
		}
		if err == nil {
			break
		}
		f.DropOut()
		if w != nil {
			w.Stop()
			w = nil
		}
		if gone.Load() {
			res.Gone = true
			return res
		}
		if reused && attempt == 0 && a.Interim == 0 && rq.ContentLength == 0 && Idempotent(rq.Method) {
			continue
		}
		res.Failed = err
		return res
	}
	if x.AnswerHead != nil {
		x.AnswerHead(a, f.answer)
	}
	closeAfter := rq.Close || a.UntilEOF
	f.InW.Write(f.answer) //nolint:errcheck // sticky: the body's copy or Flush reports it
	if closeAfter {
		f.InW.WriteString("Connection: close\r\n") //nolint:errcheck
	}
	f.InW.WriteString("\r\n") //nolint:errcheck
	res.Answered = true
	if cap(f.answer) > BufSize {
		f.answer = nil // an unusual head: don't keep its buffer
	}
	var err error
	switch {
	case a.NoBody:
	case a.Chunked:
		res.BytesOut, err = CopyChunked(f.InW, f.OutR, x.RespTee)
	case a.UntilEOF:
		res.BytesOut, err = CopyBody(f.InW, f.OutR, -1, x.RespTee)
	default:
		res.BytesOut, err = CopyBody(f.InW, f.OutR, a.ContentLength, x.RespTee)
	}
	if err != nil || a.UntilEOF || a.Close {
		f.DropOut()
	}
	res.Gone = gone.Load()
	if err != nil {
		res.Err = err
		return res
	}
	res.Keep = !closeAfter
	return res
}
