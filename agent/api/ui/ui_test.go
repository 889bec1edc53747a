package ui

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/agent/inspect"
)

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func TestServesPageAndAssets(t *testing.T) {
	srv := httptest.NewServer(Handler(inspect.NewStore()))
	defer srv.Close()

	resp, body := get(t, srv.URL+"/")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(body, "<title>ferry inspect</title>") {
		t.Errorf("GET /: no title in %.200q", body)
	}
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "script-src 'self'") {
		t.Errorf("GET /: Content-Security-Policy %q", csp)
	}

	// Every asset the page names is served, with its type; and nothing is loaded from
	// elsewhere.
	for _, tc := range []struct{ path, ctype, has string }{
		{"/ui/app.js", "text/javascript", "EventSource"},
		{"/ui/style.css", "text/css", "--accent"},
		{"/ui/favicon.svg", "image/svg+xml", "<svg"},
	} {
		if !strings.Contains(body, `"`+tc.path+`"`) {
			t.Errorf("index.html does not reference %s", tc.path)
		}
		resp, b := get(t, srv.URL+tc.path)
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || !strings.Contains(b, tc.has) {
			t.Errorf("GET %s: %d %q, %d bytes", tc.path, resp.StatusCode, resp.Header.Get("Content-Type"), len(b))
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: no nosniff", tc.path)
		}
		for _, ext := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(b, ext) && tc.path != "/ui/favicon.svg" {
				t.Errorf("%s mentions %q: no external requests allowed", tc.path, ext)
			}
		}
		// Revalidation with the ETag is a 304.
		if etag := resp.Header.Get("ETag"); etag == "" {
			t.Errorf("GET %s: no ETag", tc.path)
		} else if r2, _ := get(t, srv.URL+tc.path, "If-None-Match", etag); r2.StatusCode != http.StatusNotModified {
			t.Errorf("GET %s If-None-Match: %d, want 304", tc.path, r2.StatusCode)
		}
	}
	for _, ext := range []string{"http://", "https://"} {
		if strings.Contains(body, ext) {
			t.Errorf("index.html mentions %q: no external requests allowed", ext)
		}
	}

	if resp, _ := get(t, srv.URL+"/nope"); resp.StatusCode != 404 {
		t.Errorf("GET /nope: %d", resp.StatusCode)
	}
	resp, b := get(t, srv.URL+"/api/nope")
	if resp.StatusCode != 404 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(b, `"status_code":404`) {
		t.Errorf("GET /api/nope: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	req, _ := http.NewRequest("POST", srv.URL+"/", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
}

func exchange(id, uri string, status int) *inspect.Exchange {
	e := &inspect.Exchange{ID: id, TunnelName: "web", RemoteAddr: "127.0.0.1", Start: time.Now(), Duration: 1500 * time.Microsecond,
		Request: inspect.Request{Method: "POST", URI: uri, Host: "web.localhost", Proto: "HTTP/2.0",
			Header: http.Header{"Content-Type": {"application/json"}}, Body: inspect.Body{Data: []byte(`{"a":1}`), Size: 7}}}
	if status > 0 {
		e.Response = &inspect.Response{StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1",
			Header: http.Header{"Content-Type": {"text/plain"}}, Body: inspect.Body{Data: []byte("hi"), Size: 2}}
	} else {
		e.Error = "no response"
	}
	return e
}

type listJSON struct {
	Requests []summary `json:"requests"`
}

func TestRequestsSummary(t *testing.T) {
	store := inspect.NewStore()
	srv := httptest.NewServer(Handler(store))
	defer srv.Close()

	_, body := get(t, srv.URL+"/ui/requests")
	if strings.TrimSpace(body) != `{"requests":[]}` {
		t.Fatalf("empty store: %s", body)
	}
	store.Add(exchange("req_1", "/a?x=1", 200))
	e := exchange("req_2", "/b", 0)
	e.Replay = "req_1"
	store.Add(e)

	resp, body := get(t, srv.URL+"/ui/requests")
	if resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("content-type %q", resp.Header.Get("Content-Type"))
	}
	if strings.Contains(body, "base64") || strings.Contains(body, `{\"a\":1}`) {
		t.Errorf("summaries carry bodies: %s", body)
	}
	var got listJSON
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Requests) != 2 {
		t.Fatalf("got %d requests: %s", len(got.Requests), body)
	}
	newest, oldest := got.Requests[0], got.Requests[1]
	if newest.ID != "req_2" || newest.ReplayOf != "req_1" || newest.Error != "no response" || newest.StatusCode != 0 {
		t.Errorf("newest: %+v", newest)
	}
	if oldest.ID != "req_1" || oldest.Method != "POST" || oldest.URI != "/a?x=1" || oldest.StatusCode != 200 ||
		oldest.Duration != int64(1500*time.Microsecond) || oldest.RequestSize != 7 || oldest.ResponseSize != 2 ||
		oldest.ContentType != "text/plain" || oldest.TunnelName != "web" || oldest.Host != "web.localhost" {
		t.Errorf("oldest: %+v", oldest)
	}
}

// sse reads Server-Sent Events.
type sse struct {
	t  *testing.T
	r  *bufio.Reader
	ch chan event
}

type event struct {
	name, data string
	err        error
}

func openSSE(t *testing.T, ctx context.Context, url string) *sse {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("GET %s: %d %q", url, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	s := &sse{t: t, r: bufio.NewReader(resp.Body), ch: make(chan event, 16)}
	go func() {
		var ev event
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				s.ch <- event{err: err}
				close(s.ch)
				return
			}
			line = strings.TrimRight(line, "\n")
			switch {
			case line == "":
				if ev.name != "" || ev.data != "" {
					s.ch <- ev
				}
				ev = event{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next returns the next event's request IDs, failing after a while.
func (s *sse) next() []string {
	s.t.Helper()
	select {
	case ev := <-s.ch:
		if ev.err != nil {
			s.t.Fatalf("event stream: %v", ev.err)
		}
		if ev.name != "requests" {
			s.t.Fatalf("event %q, want requests", ev.name)
		}
		var l listJSON
		if err := json.Unmarshal([]byte(ev.data), &l); err != nil {
			s.t.Fatalf("event data %q: %v", ev.data, err)
		}
		ids := []string{}
		for _, r := range l.Requests {
			ids = append(ids, r.ID)
		}
		return ids
	case <-time.After(5 * time.Second):
		s.t.Fatal("no event within 5s")
		return nil
	}
}

func (s *sse) quiet(d time.Duration) {
	s.t.Helper()
	select {
	case ev := <-s.ch:
		s.t.Fatalf("unexpected event %+v", ev)
	case <-time.After(d):
	}
}

func TestEvents(t *testing.T) {
	defer func(a, b time.Duration) { minInterval, checkInterval = a, b }(minInterval, checkInterval)
	minInterval, checkInterval = 20*time.Millisecond, 50*time.Millisecond

	store := inspect.NewStore()
	store.Add(exchange("req_1", "/one", 200))
	srv := httptest.NewServer(Handler(store))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := openSSE(t, ctx, srv.URL+"/ui/events")

	if ids := s.next(); strings.Join(ids, ",") != "req_1" {
		t.Fatalf("first snapshot: %v", ids)
	}
	s.quiet(150 * time.Millisecond) // nothing changed: no event

	store.Add(exchange("req_2", "/two", 201))
	if ids := s.next(); strings.Join(ids, ",") != "req_2,req_1" {
		t.Fatalf("after add: %v", ids)
	}

	// A burst is coalesced into few snapshots, and the last one has everything.
	for _, id := range []string{"req_3", "req_4", "req_5", "req_6"} {
		store.Add(exchange(id, "/burst", 200))
	}
	var ids []string
	for n := 0; ; n++ {
		if n == 4 {
			t.Fatalf("a burst of 4 took more than 3 snapshots; last %v", ids)
		}
		if ids = s.next(); len(ids) == 6 {
			break
		}
	}

	// Clear does not notify subscribers; the stream notices it anyway.
	store.Clear()
	if ids := s.next(); len(ids) != 0 {
		t.Fatalf("after clear: %v", ids)
	}

	// The handler returns when the client goes away.
	done := make(chan struct{})
	go func() {
		cancel()
		for range s.ch { // drain until the stream ends
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end after the client went away")
	}
}

func TestEventsHead(t *testing.T) {
	srv := httptest.NewServer(Handler(inspect.NewStore()))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "HEAD", srv.URL+"/ui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Errorf("HEAD /ui/events: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

func TestEventsKeepAlive(t *testing.T) {
	defer func(a, b time.Duration) { checkInterval, keepAlive = a, b }(checkInterval, keepAlive)
	checkInterval, keepAlive = 20*time.Millisecond, 50*time.Millisecond

	srv := httptest.NewServer(Handler(inspect.NewStore()))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/ui/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	deadline := time.AfterFunc(5*time.Second, cancel)
	defer deadline.Stop()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("no keep-alive comment: %v", err)
		}
		if strings.HasPrefix(line, ": keep-alive") {
			return
		}
	}
}
