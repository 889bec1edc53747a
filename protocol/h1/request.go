package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"net/textproto"
	"strconv"
)

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
