package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"strings"
	"testing"
)

var leanSeeds = []string{
	"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n",
	"POST /p?q=1 HTTP/1.1\r\nHost: a.example:8080\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n folded\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nContent-Length : 1\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nKeep-Alive: 1\r\nConnection: keep-alive, close\r\n\r\n",
	"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n",
	"GET / HTTP/1.1\nHost: a\n\n",
}

// FuzzRequest: whatever request head the lean path accepts, net/http reads the same
// way (method, target, host, length, no transfer coding, keep-alive), before and after
// the relay rewrites it: a request the two parsers disagree on could be smuggled.
func FuzzRequest(f *testing.F) {
	for _, s := range leanSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		i := bytes.Index(b, []byte("\n\r\n"))
		if i < 0 {
			return
		}
		head := b[:i+3]
		var rq Request
		if !rq.Parse(head) {
			return
		}
		check := func(what string, h []byte) {
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(h)))
			if err != nil {
				t.Fatalf("%s: lean path accepted %q, net/http refuses it: %v", what, h, err)
			}
			if req.Method != string(rq.Method) || req.RequestURI != string(rq.Target) || req.Host != string(rq.Host) ||
				req.ContentLength != rq.ContentLength || len(req.TransferEncoding) != 0 {
				t.Fatalf("%s: %q: lean reads %s %s host %q length %d; net/http %s %s host %q length %d te %v", what, h,
					rq.Method, rq.Target, rq.Host, rq.ContentLength, req.Method, req.RequestURI, req.Host, req.ContentLength, req.TransferEncoding)
			}
			if what == "rewritten" {
				for _, name := range []string{"Connection", "Keep-Alive", "Te", "Trailer", "Forwarded", "Proxy-Connection", "Proxy-Authorization"} {
					if _, ok := req.Header[name]; ok {
						t.Fatalf("rewritten head %q keeps %s", h, name)
					}
				}
				if got := req.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "192.0.2.1" {
					t.Fatalf("rewritten head %q: X-Forwarded-For %q", h, got)
				}
			} else if req.Close != rq.Close {
				t.Fatalf("%q: lean close=%v, net/http %v", h, rq.Close, req.Close)
			}
		}
		check("received", head)
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		rq.WriteHead(w, head, append([]string{"x-forwarded-for"}, HopByHop...), nil)
		w.WriteString("X-Forwarded-For: 192.0.2.1\r\n\r\n")
		w.Flush()
		check("rewritten", out.Bytes())
	})
}

// FuzzAnswer: an answer head the lean path accepts is one net/http reads with the
// same status and framing, and the rewritten head it sends the client reads the same.
func FuzzAnswer(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: X-A, keep-alive\r\nX-A: 1\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 1\n\n",
		"HTTP/1.1 200\r\nX: a\rb\r\n\r\n",
	} {
		f.Add([]byte(s), false)
	}
	f.Fuzz(func(t *testing.T, b []byte, isHead bool) {
		var a Answer
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		var head []byte
		if err := a.ReadHead(bufio.NewReader(bytes.NewReader(b)), isHead, w, &head); err != nil {
			return
		}
		method := "GET"
		if isHead {
			method = "HEAD"
		}
		resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(append(head, "\r\n"...))), &http.Request{Method: method})
		if err != nil {
			t.Fatalf("lean path accepted %q and wrote %q, which net/http refuses: %v", b, head, err)
		}
		if resp.StatusCode != a.Status {
			t.Fatalf("%q: status %d, net/http reads %d", b, a.Status, resp.StatusCode)
		}
		switch {
		case a.Chunked:
			if len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" {
				t.Fatalf("%q: lean reads chunked, net/http %v", head, resp.TransferEncoding)
			}
		case !a.NoBody && !a.UntilEOF && resp.ContentLength != a.ContentLength:
			t.Fatalf("%q: lean reads length %d, net/http %d", head, a.ContentLength, resp.ContentLength)
		}
		if strings.Contains(string(head), "\r\n\r\n") {
			t.Fatalf("rewritten head %q has a blank line inside", head)
		}
	})
}
