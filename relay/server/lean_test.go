package server_test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/protocol/h1"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/config"
)

// rawAnswers is an upstream that answers each request with the raw bytes its path names
// (so the relay's lean path meets every framing as an upstream sends it: the agent copies
// bytes), and records the requests it saw.
type rawAnswers struct {
	mu   sync.Mutex
	seen []*http.Request
	raw  bytes.Buffer // every byte received
}

var rawAnswer = map[string]string{
	"/small":   "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nsmall",
	"/chunked": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n4;ext=1\r\nabcd\r\n3\r\nefg\r\n0\r\nX-Sum: 7\r\n\r\n",
	"/eof":     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end",
	"/head":    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
	"/204":     "HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n",
	"/304":     "HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
	"/hop":     "HTTP/1.1 200 OK\r\nConnection: X-Secret, keep-alive\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
	"/both":    "HTTP/1.1 200 OK\r\nContent-Length: 99\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"/bad":     "HTTP/1.1 2xx Nope\r\n\r\n",
	"/hints":   "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\npage",
}

func (u *rawAnswers) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReader(io.TeeReader(c, lockedWriter{&u.mu, &u.raw}))
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body) //nolint:errcheck
		u.mu.Lock()
		u.seen = append(u.seen, req)
		u.mu.Unlock()
		answer, ok := rawAnswer[req.URL.Path]
		if !ok {
			answer = fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
		}
		if _, err := io.WriteString(c, answer); err != nil || req.URL.Path == "/eof" {
			return
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// received reports whether the upstream received s, byte for byte.
func (u *rawAnswers) received(s string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return strings.Contains(u.raw.String(), s)
}

func (u *rawAnswers) last() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.seen[len(u.seen)-1]
}

// rawClient speaks HTTP/1.1 by hand to the relay's plain or TLS port.
type rawClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, r *relayEnv, scheme, url string) *rawClient {
	t.Helper()
	var c net.Conn
	var err error
	host := strings.Split(strings.TrimPrefix(strings.TrimPrefix(url, "https://"), "http://"), ":")[0]
	if scheme == "https" {
		c, err = r.dialTLS(&tls.Config{ServerName: host, RootCAs: r.CA.Pool, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = net.Dial("tcp", r.Srv.HTTPAddr().String())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawClient{t: t, c: c, br: bufio.NewReader(c)}
}

func (rc *rawClient) send(s string) {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, s); err != nil {
		rc.t.Fatal(err)
	}
}

func (rc *rawClient) read(method string) (*http.Response, string) {
	rc.t.Helper()
	rc.c.SetReadDeadline(time.Now().Add(5 * time.Second)) //nolint:errcheck
	resp, err := http.ReadResponse(rc.br, &http.Request{Method: method})
	if err != nil {
		rc.t.Fatalf("reading the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		rc.t.Fatalf("reading the body: %v", err)
	}
	return resp, string(body)
}

// TestLeanHTTP1: HTTP/1.1 requests to a tunnel without modules take the relay's lean
// path (the agent copying bytes, so every framing an upstream uses reaches the relay as
// sent); each answer must arrive whole and in order, hop-by-hop headers must go, and
// everything the lean path does not handle must still be served, by net/http.
func TestLeanHTTP1(t *testing.T) {
	for _, inspected := range []bool{false, true} {
		t.Run(fmt.Sprintf("inspect=%v", inspected), func(t *testing.T) { testLeanHTTP1(t, inspected) })
	}
}

func testLeanHTTP1(t *testing.T, inspected bool) {
	r := newRelayTransport(t, "tcp")
	up := &rawAnswers{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go up.serve(c)
		}
	}()
	var store *inspect.Store
	if inspected {
		store = inspect.NewStore()
	}
	a := r.startAgent(&forward.Tunnel{Name: "raw", Proto: "http", Addr: ln.Addr().String(), Inspect: inspected, Store: store})
	for _, scheme := range []string{"http", "https"} {
		url := a.url(t, scheme)
		host := strings.TrimPrefix(strings.TrimPrefix(url, "https://"), "http://")
		req := func(method, path, extra string) string {
			return method + " " + path + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "\r\n"
		}
		t.Run(scheme, func(t *testing.T) {
			rc := dialRaw(t, r, scheme, url)
			// Pipelined, with a forged X-Forwarded-For and hop-by-hop headers.
			rc.send(req("GET", "/one", "X-Forwarded-For: 6.6.6.6\r\nKeep-Alive: 5\r\nTE: trailers\r\nConnection: keep-alive\r\nx-lean-"+scheme+": as sent\r\n") + req("GET", "/two?x=1", ""))
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "/one" {
				t.Fatalf("first pipelined answer: %d %q", resp.StatusCode, body)
			}
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "/two" {
				t.Fatalf("second pipelined answer: %d %q", resp.StatusCode, body)
			}
			// Header names arrive as the client wrote them (net/http would have
			// canonicalized it): the request took the lean path.
			if !up.received("\r\nx-lean-" + scheme + ": as sent\r\n") {
				t.Error("the request did not take the lean path: its header's case changed")
			}
			seen := up.last()
			if got := seen.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("upstream saw X-Forwarded-For %q, want only 127.0.0.1", got)
			}
			if got := seen.Header.Get("X-Forwarded-Proto"); got != scheme {
				t.Errorf("X-Forwarded-Proto = %q, want %s", got, scheme)
			}
			rc.send(req("GET", "/one", "X-Forwarded-For: 6.6.6.6\r\nKeep-Alive: 5\r\nTE: trailers\r\n"))
			rc.read("GET")
			if h := up.last().Header; h.Get("Keep-Alive") != "" || h.Get("Te") != "" || h.Get("X-Forwarded-For") != "127.0.0.1" {
				t.Errorf("hop-by-hop or forged headers reached the upstream: %v", h)
			}

			rc.send(req("GET", "/chunked", ""))
			resp, body := rc.read("GET")
			if body != "abcdefg" || resp.Trailer.Get("X-Sum") != "7" {
				t.Errorf("chunked answer: %q trailer %v", body, resp.Trailer)
			}
			if store != nil {
				ex := store.List(1, "")[0]
				if ex.Request.URI != "/chunked" || ex.Response == nil || string(ex.Response.Body.Data) != "abcdefg" ||
					ex.Response.Header.Get("Transfer-Encoding") != "chunked" || ex.Request.Header.Get("X-Forwarded-For") != "127.0.0.1" {
					t.Errorf("recorded exchange: %+v %+v", ex.Request, ex.Response)
				}
			}
			rc.send(req("HEAD", "/head", ""))
			if resp, body := rc.read("HEAD"); resp.StatusCode != 200 || resp.ContentLength != 5 || body != "" {
				t.Errorf("HEAD: %d length %d body %q", resp.StatusCode, resp.ContentLength, body)
			}
			for _, p := range []string{"/204", "/304"} {
				rc.send(req("GET", p, ""))
				if resp, body := rc.read("GET"); body != "" || resp.StatusCode != map[string]int{"/204": 204, "/304": 304}[p] {
					t.Errorf("%s: %d %q", p, resp.StatusCode, body)
				}
			}
			rc.send(req("GET", "/hop", ""))
			resp, body = rc.read("GET")
			if body != "ok" || resp.Header.Get("X-Secret") != "" || resp.Header.Get("Keep-Alive") != "" || resp.Header.Get("X-Kept") != "yes" {
				t.Errorf("hop-by-hop answer headers: %v %q", resp.Header, body)
			}
			rc.send(req("GET", "/hints", ""))
			if resp, body := rc.read("GET"); resp.StatusCode != 103 || resp.Header.Get("Link") != "</a.css>" || body != "" {
				t.Errorf("interim answer: %d %v", resp.StatusCode, resp.Header)
			}
			if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "page" {
				t.Errorf("answer after 103: %d %q", resp.StatusCode, body)
			}
			// A POST with a body, then the same connection goes on.
			rc.send(req("POST", "/post", "Content-Length: 11\r\n") + "hello world")
			if resp, body := rc.read("POST"); resp.StatusCode != 200 || body != "/post" {
				t.Errorf("POST: %d %q", resp.StatusCode, body)
			}
			if store != nil {
				if ex := store.List(1, "")[0]; ex.Request.Method != "POST" || string(ex.Request.Body.Data) != "hello world" || string(ex.Response.Body.Data) != "/post" {
					t.Errorf("recorded POST: %s %q -> %q", ex.Request.Method, ex.Request.Body.Data, ex.Response.Body.Data)
				}
			}
			// Both lengths: chunked wins, the stale length goes.
			rc.send(req("GET", "/both", ""))
			if resp, body := rc.read("GET"); body != "ok" || resp.Header.Get("Content-Length") != "" {
				t.Errorf("answer with both lengths: %q %v", body, resp.Header)
			}
			// A malformed answer: 502, and the connection closes.
			rc.send(req("GET", "/bad", ""))
			if resp, _ := rc.read("GET"); resp.StatusCode != 502 || resp.Header.Get("Ferry-Error") == "" {
				t.Errorf("malformed answer: %d %v, want the relay's 502", resp.StatusCode, resp.Header)
			}

			// An answer that ends with the stream: passed on, then the connection closes.
			rc = dialRaw(t, r, scheme, url)
			rc.send(req("GET", "/eof", ""))
			if resp, body := rc.read("GET"); body != "until the end" || !resp.Close {
				t.Errorf("answer until EOF: %q close=%v", body, resp.Close)
			}

			// What the lean path hands to net/http still works, and later requests on the
			// connection too.
			for _, tc := range []struct{ name, req, method string }{
				{"expect", req("POST", "/expect", "Content-Length: 2\r\nExpect: 100-continue\r\n") + "hi", "POST"},
				{"chunked body", req("POST", "/chunkedbody", "Transfer-Encoding: chunked\r\n") + "2\r\nhi\r\n0\r\n\r\n", "POST"},
				{"big head", req("GET", "/bighead", "x-handed-"+scheme+": 1\r\nCookie: "+strings.Repeat("c", 6000)+"\r\n"), "GET"},
				{"http/1.0", "GET /old HTTP/1.0\r\nHost: " + host + "\r\nConnection: keep-alive\r\n\r\n", "GET"},
			} {
				rc := dialRaw(t, r, scheme, url)
				rc.send(tc.req)
				resp, body := rc.read(tc.method)
				for resp.StatusCode == 100 { // from the relay, and from the agent when it inspects
					resp, body = rc.read(tc.method)
				}
				if resp.StatusCode != 200 || !strings.HasPrefix(body, "/") {
					t.Errorf("%s: %d %q", tc.name, resp.StatusCode, body)
				}
				if tc.name == "big head" && !up.received("\r\nX-Handed-"+strings.ToUpper(scheme[:1])+scheme[1:]+": 1\r\n") {
					t.Error("a head over 4 KiB was not handed to net/http")
				}
				if tc.name != "http/1.0" {
					rc.send(req("GET", "/after", ""))
					if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != "/after" {
						t.Errorf("%s, next request: %d %q", tc.name, resp.StatusCode, body)
					}
				}
			}
			// Refusals net/http makes: an underscore header, two different lengths.
			for _, bad := range []string{
				req("GET", "/x", "X_Forwarded_For: 1.2.3.4\r\n"),
				req("POST", "/x", "Content-Length: 1\r\nContent-Length: 2\r\n") + "ab",
			} {
				rc := dialRaw(t, r, scheme, url)
				rc.send(bad)
				if resp, _ := rc.read("GET"); resp.StatusCode != 400 {
					t.Errorf("%q: %d, want 400", bad, resp.StatusCode)
				}
			}
		})
	}
}

// TestLeanIdleStream: a keep-alive client idle past transport.SlotIdle lets go of its
// agent stream; its next request opens another and is answered.
func TestLeanIdleStream(t *testing.T) {
	old := transport.SlotIdle
	transport.SlotIdle = 150 * time.Millisecond
	t.Cleanup(func() { transport.SlotIdle = old })
	r := newRelayTransport(t, "tcp")
	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "idle", Proto: "http", Addr: up.Listener.Addr().String()})
	url := a.url(t, "http")
	host := strings.TrimPrefix(url, "http://")
	rc := dialRaw(t, r, "http", url)
	for i := range 3 {
		rc.send("GET /p" + fmt.Sprint(i) + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
		if resp, _ := rc.read("GET"); resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		time.Sleep(400 * time.Millisecond)
	}
}

// TestLeanDrain: a stopping relay closes an idle keep-alive connection at once instead of
// waiting out its idle timeout.
func TestLeanDrain(t *testing.T) {
	r := newRelayConfigured(t, "tcp", func(c *config.Config) { c.DrainTimeout = "20s" })
	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "drain", Proto: "http", Addr: up.Listener.Addr().String()})
	url := a.url(t, "http")
	rc := dialRaw(t, r, "http", url)
	rc.send("GET / HTTP/1.1\r\nHost: " + strings.TrimPrefix(url, "http://") + "\r\n\r\n")
	rc.read("GET")
	start := time.Now()
	r.Stop()
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("relay took %v to stop with an idle keep-alive client", d)
	}
	rc.c.SetReadDeadline(time.Now().Add(2 * time.Second)) //nolint:errcheck
	if _, err := rc.br.ReadByte(); err == nil {
		t.Error("the idle connection is still open after the relay stopped")
	}
}

// TestLeanUpstreamClosesIdle: an upstream that closes idle keep-alive connections
// quickly (as many do) must not turn the next request into an error: the agent retries a
// safe request once on a fresh connection. Inspected, so the agent's lean path reads it.
func TestLeanUpstreamClosesIdle(t *testing.T) {
	r := newRelayTransport(t, "tcp")
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, req.URL.Path) //nolint:errcheck
	}))
	up.Config.IdleTimeout = 50 * time.Millisecond
	up.Start()
	t.Cleanup(up.Close)
	store := inspect.NewStore()
	a := r.startAgent(&forward.Tunnel{Name: "idle-up", Proto: "http", Addr: up.Listener.Addr().String(), Inspect: true, Store: store})
	url := a.url(t, "http")
	rc := dialRaw(t, r, "http", url)
	for i := range 4 {
		rc.send(fmt.Sprintf("GET /r%d HTTP/1.1\r\nHost: %s\r\n\r\n", i, strings.TrimPrefix(url, "http://")))
		if resp, body := rc.read("GET"); resp.StatusCode != 200 || body != fmt.Sprintf("/r%d", i) {
			t.Fatalf("request %d after the upstream closed its idle connection: %d %q", i, resp.StatusCode, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(store.List(10, "")); n != 4 {
		t.Errorf("%d exchanges recorded, want 4", n)
	}
}

// TestLeanUpstreamGone: after the upstream goes away, a request on a relay stream the
// agent already served (HTTP/2 at the edge reuses pooled streams) gets the agent's 502
// page, not a hang: the retry on a fresh upstream connection fails to dial and hands the
// request, unread, to the agent's HTTP server.
func TestLeanUpstreamGone(t *testing.T) {
	r := newRelayTransport(t, "quic")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, req.URL.Path) //nolint:errcheck
	}))
	store := inspect.NewStore()
	a := r.startAgent(&forward.Tunnel{Name: "gone", Proto: "http", Addr: up.Listener.Addr().String(), Inspect: true, Store: store})
	c := r.httpClient(true)
	fetch := func(path string) (int, string) {
		resp, err := c.Get(a.url(t, "https") + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for range 3 {
		if code, _ := fetch("/here"); code != 200 {
			t.Fatalf("before: %d", code)
		}
	}
	up.Close()
	c.Timeout = 5 * time.Second
	if code, body := fetch("/gone"); code != 502 || !strings.Contains(body, "could not reach its upstream") {
		t.Fatalf("after the upstream went away: %d %q, want the agent's 502", code, body)
	}
	if ex := store.List(1, "")[0]; ex.Request.URI != "/gone" || ex.Error == "" && (ex.Response == nil || ex.Response.StatusCode != 502) {
		t.Errorf("recorded: %+v", ex)
	}
}

// TestLeanClientGone: a client that leaves while its request waits on a slow upstream
// ends the request all the way to the upstream (whose request context is canceled), as
// net/http's server would: the relay's and the agent's lean paths watch the connection
// they answer to.
func TestLeanClientGone(t *testing.T) {
	old := h1.WatchDelay
	h1.WatchDelay = 50 * time.Millisecond
	t.Cleanup(func() { h1.WatchDelay = old })
	r := newRelayTransport(t, "tcp")
	canceled := make(chan string, 4)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		select {
		case <-req.Context().Done():
			canceled <- req.URL.Path
		case <-time.After(20 * time.Second):
		}
	}))
	t.Cleanup(up.Close)
	for _, inspected := range []bool{false, true} {
		t.Run(fmt.Sprintf("inspect=%v", inspected), func(t *testing.T) {
			var store *inspect.Store
			if inspected {
				store = inspect.NewStore()
			}
			a := r.startAgent(&forward.Tunnel{Name: fmt.Sprint("slow", inspected), Proto: "http", Addr: up.Listener.Addr().String(), Inspect: inspected, Store: store})
			defer a.stop(t)
			for _, scheme := range []string{"http", "https"} {
				url := a.url(t, scheme)
				rc := dialRaw(t, r, scheme, url)
				host := strings.TrimPrefix(strings.TrimPrefix(url, "https://"), "http://")
				rc.send("GET /slow-" + scheme + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n")
				time.Sleep(200 * time.Millisecond)
				rc.c.Close()
				select {
				case p := <-canceled:
					if p != "/slow-"+scheme {
						t.Errorf("canceled %s, want /slow-%s", p, scheme)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("%s: the upstream still serves a request whose client left 5 s ago", scheme)
				}
				if store != nil { // recorded without an answer, as the agent's HTTP server would
					waitFor(t, "the abandoned request recorded", func() bool {
						ex := store.List(1, "")
						return len(ex) == 1 && ex[0].Request.URI == "/slow-"+scheme && ex[0].Error == "no response" && ex[0].Response == nil
					})
					store.Clear()
				}
			}
		})
	}
}
