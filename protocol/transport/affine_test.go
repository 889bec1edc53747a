package transport

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream is an agent stand-in: an HTTP server on loopback that counts the
// connections opened to it and can close them all (an agent dropping idle streams).
type countingUpstream struct {
	addr   string
	conns  atomic.Int64 // opened
	closed atomic.Int64
	srv    *http.Server
}

func newCountingUpstream(t *testing.T, h http.HandlerFunc) *countingUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &countingUpstream{addr: ln.Addr().String()}
	u.srv = &http.Server{Handler: h, ConnState: func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			u.conns.Add(1)
		case http.StateClosed:
			u.closed.Add(1)
		}
	}}
	go u.srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { u.srv.Close() })
	return u
}

func (u *countingUpstream) dial(ctx context.Context) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", u.addr)
}

// affineFront is the relay's side: a public HTTP server whose connections get slots,
// proxying to the upstream through an affineTransport (pool on a second upstream).
func affineFront(t *testing.T, slot, pool *countingUpstream) string {
	t.Helper()
	tr := &AffineTransport{Dial: slot.dial, Pool: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return pool.dial(ctx) }}}
	var slots Slots
	target := &url.URL{Scheme: "http", Host: "app.test"}
	proxy := &httputil.ReverseProxy{Transport: tr, Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(target) }}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy, ConnContext: slots.ConnContext, ConnState: func(c net.Conn, s http.ConnState) {
		if s == http.StateClosed || s == http.StateHijacked {
			slots.End(c)
		}
	}}
	go srv.Serve(ln) //nolint:errcheck
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, c *http.Client, method, url, body string) string {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, url, r)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, b)
	}
	return string(b)
}

// TestAffineRequestsShareTheirConnectionsStream: a keep-alive client's requests go over
// one stream of their own, requests with bodies through the pool, and a stream the agent
// closed while idle is replaced without the client seeing an error.
func TestAffineRequestsShareTheirConnectionsStream(t *testing.T) {
	echo := func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
	}
	slot, pool := newCountingUpstream(t, echo), newCountingUpstream(t, echo)
	front := affineFront(t, slot, pool)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()

	for i := range 20 {
		if got := get(t, client, "GET", front+"/a", ""); got != "GET /a " {
			t.Fatalf("request %d: %q", i, got)
		}
	}
	if n := slot.conns.Load(); n != 1 {
		t.Fatalf("20 requests on one public connection opened %d streams, want 1", n)
	}
	if got := get(t, client, "POST", front+"/p", "body"); got != "POST /p body" {
		t.Fatalf("POST: %q", got)
	}
	if n := pool.conns.Load(); n != 1 {
		t.Fatalf("a request with a body went to the pool %d times, want 1", n)
	}

	// The agent closes its idle streams (SetKeepAlivesEnabled(false) does): the next GET
	// finds its stream closed and is retried on a fresh one, answered with Connection:
	// close, so the slot lets that one go too.
	slot.srv.SetKeepAlivesEnabled(false)
	get(t, client, "GET", front+"/b", "")
	slot.srv.SetKeepAlivesEnabled(true)
	before := slot.conns.Load()
	for range 3 {
		get(t, client, "GET", front+"/c", "")
	}
	if n := slot.conns.Load() - before; n != 1 {
		t.Fatalf("after the agent closed the stream, 3 requests opened %d streams, want 1", n)
	}

	// A second public connection gets a stream of its own.
	other := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	defer other.CloseIdleConnections()
	before = slot.conns.Load()
	get(t, other, "GET", front+"/d", "")
	if n := slot.conns.Load() - before; n != 1 {
		t.Fatalf("a second public connection opened %d streams, want 1", n)
	}
}

// TestAffineClientGoneMidAnswer: a client that leaves while its answer streams drops the
// slot's stream (it is mid-body), and the relay's next client is served normally.
func TestAffineClientGoneMidAnswer(t *testing.T) {
	started, finished := make(chan struct{}, 1), make(chan struct{}, 1)
	slow := func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			w.Write([]byte(strings.Repeat("x", 1<<10)))
			w.(http.Flusher).Flush()
			started <- struct{}{}
			<-r.Context().Done() // until the relay drops the stream
			finished <- struct{}{}
			return
		}
		io.WriteString(w, "ok")
	}
	slot, pool := newCountingUpstream(t, slow), newCountingUpstream(t, slow)
	front := affineFront(t, slot, pool)

	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", front+"/slow", nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	<-started
	cancel()
	resp.Body.Close()

	select {
	case <-finished:
	case <-time.After(5 * time.Second):
		t.Fatal("the slot's stream was not closed after its client left")
	}
	c := &http.Client{Timeout: 10 * time.Second}
	if got := get(t, c, "GET", front+"/x", ""); got != "ok" {
		t.Fatalf("next client: %q", got)
	}
}

// TestAffineIdleSlotLetsGo: a keep-alive client that goes quiet does not hold its stream
// past SlotIdle; its next request opens another and is answered.
func TestAffineIdleSlotLetsGo(t *testing.T) {
	old := SlotIdle
	SlotIdle = 100 * time.Millisecond
	defer func() { SlotIdle = old }()
	echo := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }
	slot, pool := newCountingUpstream(t, echo), newCountingUpstream(t, echo)
	front := affineFront(t, slot, pool)
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	get(t, client, "GET", front+"/a", "")
	deadline := time.Now().Add(5 * time.Second)
	for slot.closed.Load() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("an idle slot still holds its stream after SlotIdle")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := get(t, client, "GET", front+"/b", ""); got != "ok" {
		t.Fatalf("after the idle slot let go: %q", got)
	}
	if n := slot.conns.Load(); n != 2 {
		t.Fatalf("%d streams opened, want 2 (one before the pause, one after)", n)
	}
}

// TestAffinePassesEarlyHints: a 103 the upstream sends before the answer to a bodiless
// request (which takes the slot path) reaches the client, as through the pool.
func TestAffinePassesEarlyHints(t *testing.T) {
	hints := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "ok")
	}
	slot, pool := newCountingUpstream(t, hints), newCountingUpstream(t, hints)
	front := affineFront(t, slot, pool)
	var got []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", front+"/", nil)
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("answer %d %q", resp.StatusCode, body)
	}
	if want := []string{"103 </app.css>; rel=preload"}; !slices.Equal(got, want) {
		t.Fatalf("interim answers %q, want %q", got, want)
	}
	if slot.conns.Load() != 1 || pool.conns.Load() != 0 {
		t.Fatalf("slot conns %d, pool conns %d: the request did not take the slot path", slot.conns.Load(), pool.conns.Load())
	}
}
