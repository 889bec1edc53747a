package h1

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strconv"
)

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
