package server_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
)

// headerEcho answers with the request's method, host, headers and body as JSON.
func headerEcho(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			wsEcho(w, r)
			return
		}
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{ //nolint:errcheck
			"method": r.Method, "host": r.Host, "path": r.URL.Path, "header": r.Header,
			"body": string(body), "te": r.TransferEncoding, "proto": r.Proto,
		})
	}))
	t.Cleanup(s.Close)
	return s
}

// wsEcho accepts an Upgrade and echoes raw bytes (enough to prove the tunnel carries an upgraded connection).
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer c.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
	brw.Flush()
	io.Copy(c, brw) //nolint:errcheck
}

type echoed struct {
	Method string              `json:"method"`
	Host   string              `json:"host"`
	Path   string              `json:"path"`
	Header map[string][]string `json:"header"`
	Body   string              `json:"body"`
	TE     []string            `json:"te"`
}

func get(t *testing.T, c *http.Client, url string) (*http.Response, echoed) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	var e echoed
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &e); err != nil {
			t.Fatalf("GET %s: body %q: %v", url, body, err)
		}
	} else {
		e.Body = string(body)
	}
	return resp, e
}

// TestHTTPTunnel runs over both transports, with the agent copying bytes (inspection off)
// and with the agent's inspecting HTTP proxy.
func TestHTTPTunnel(t *testing.T) {
	bothTransports(t, func(t *testing.T, r *relayEnv) {
		t.Run("raw", func(t *testing.T) { testHTTPTunnel(t, r, nil) })
		t.Run("inspected", func(t *testing.T) { testHTTPTunnel(t, r, inspect.NewStore()) })
	})
}

func testHTTPTunnel(t *testing.T, r *relayEnv, store *inspect.Store) {
	up := headerEcho(t)
	a := r.startAgent(&forward.Tunnel{Name: "web", Proto: "http", Addr: up.Listener.Addr().String(), Inspect: store != nil, Store: store})
	httpsURL, httpURL := a.url(t, "https"), a.url(t, "http")
	host := strings.Split(strings.TrimPrefix(httpsURL, "https://"), ":")[0]
	if !strings.HasSuffix(host, "."+domain) {
		t.Fatalf("public host %q, want a random name under %s", host, domain)
	}

	for _, tc := range []struct {
		name  string
		url   string
		h2    bool
		proto string
		xfp   string
	}{
		{"https h2", httpsURL, true, "HTTP/2.0", "https"},
		{"https http1.1", httpsURL, false, "HTTP/1.1", "https"},
		{"plain http", httpURL, false, "HTTP/1.1", "http"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, e := get(t, r.httpClient(tc.h2), tc.url+"/some/path?q=1")
			if resp.StatusCode != 200 || resp.Proto != tc.proto {
				t.Fatalf("GET = %d %s, want 200 %s", resp.StatusCode, resp.Proto, tc.proto)
			}
			if e.Path != "/some/path" || e.Host != strings.TrimPrefix(strings.TrimPrefix(tc.url, "https://"), "http://") {
				t.Errorf("upstream saw path %q host %q", e.Path, e.Host)
			}
			h := http.Header(e.Header)
			if got := h.Get("X-Forwarded-For"); got != "127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", got)
			}
			if got := h.Get("X-Forwarded-Proto"); got != tc.xfp {
				t.Errorf("X-Forwarded-Proto = %q, want %s", got, tc.xfp)
			}
			if got := h.Get("X-Forwarded-Host"); got != e.Host {
				t.Errorf("X-Forwarded-Host = %q, want %q", got, e.Host)
			}
		})
	}

	t.Run("spoofed X-Forwarded-For is replaced", func(t *testing.T) {
		req, _ := http.NewRequest("GET", httpsURL, nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := r.httpClient(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e echoed
		json.NewDecoder(resp.Body).Decode(&e) //nolint:errcheck
		if got := http.Header(e.Header).Get("X-Forwarded-For"); got != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q, want 127.0.0.1", got)
		}
	})

	t.Run("chunked upload", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			for i := range 100 {
				fmt.Fprintf(pw, "chunk-%03d;", i)
			}
			pw.Close()
		}()
		req, _ := http.NewRequest("POST", httpsURL+"/upload", pr)
		resp, err := r.httpClient(false).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e echoed
		json.NewDecoder(resp.Body).Decode(&e) //nolint:errcheck
		if len(e.Body) != 1000 || !strings.HasPrefix(e.Body, "chunk-000;") || len(e.TE) == 0 || e.TE[0] != "chunked" {
			t.Errorf("upstream got body of %d bytes, transfer-encoding %v; want 1000 bytes chunked", len(e.Body), e.TE)
		}
	})

	t.Run("keep-alive reuses the connection", func(t *testing.T) {
		c := r.httpClient(false)
		reused := 0
		for range 5 {
			req, _ := http.NewRequest("GET", httpsURL, nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(i httptrace.GotConnInfo) {
					if i.Reused {
						reused++
					}
				},
			}))
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body) //nolint:errcheck
			resp.Body.Close()
		}
		if reused != 4 {
			t.Errorf("reused %d of 5 connections, want 4", reused)
		}
	})

	t.Run("websocket upgrade", func(t *testing.T) {
		c, err := r.dialTLS(&tls.Config{ServerName: host, RootCAs: r.CA.Pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", host)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 101 {
			t.Fatalf("upgrade status = %d, want 101", resp.StatusCode)
		}
		for _, msg := range []string{"hello", "websocket frames are just bytes here"} {
			io.WriteString(c, msg) //nolint:errcheck
			buf := make([]byte, len(msg))
			if _, err := io.ReadFull(br, buf); err != nil || string(buf) != msg {
				t.Fatalf("echo = %q, %v; want %q", buf, err, msg)
			}
		}
	})
}

func TestHTTPErrorsPages(t *testing.T) {
	r := newRelay(t)
	// An upstream address nothing listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	a := r.startAgent(&forward.Tunnel{Name: "dead", Proto: "http", Addr: dead})
	host := strings.Split(strings.TrimPrefix(a.url(t, "https"), "https://"), ":")[0]

	resp, e := get(t, r.httpClient(true), a.url(t, "https"))
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(e.Body, host) || !strings.Contains(e.Body, "connection refused") {
		t.Errorf("GET dead upstream = %d %q; want 502 naming %s and the cause", resp.StatusCode, e.Body, host)
	}
	unknown := "https://nobody." + domain + ":" + port(r.Srv.HTTPSAddr().String())
	// TLS to an unknown name gets an alert; over plain HTTP the relay answers 404 naming the host.
	if _, err := r.httpClient(true).Get(unknown); err == nil || !strings.Contains(err.Error(), "unrecognized name") {
		t.Errorf("GET %s err = %v, want TLS alert unrecognized name", unknown, err)
	}
	plainUnknown := "http://nobody." + domain + ":" + port(r.Srv.HTTPAddr().String())
	resp, e = get(t, r.httpClient(false), plainUnknown)
	if resp.StatusCode != 404 || !strings.Contains(e.Body, "nobody."+domain) {
		t.Errorf("GET %s = %d %q, want 404 naming the host", plainUnknown, resp.StatusCode, e.Body)
	}
}

// TestTunnelIsolation: one tunnel's failing upstream never disturbs another tunnel.
func TestTunnelIsolation(t *testing.T) {
	r := newRelay(t)
	up := headerEcho(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	good := r.startAgent(&forward.Tunnel{Name: "good", Proto: "http", Addr: up.Listener.Addr().String()})
	bad := r.startAgent(&forward.Tunnel{Name: "bad", Proto: "http", Addr: dead})
	c := r.httpClient(true)
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for range 4 {
		wg.Go(func() {
			for range 50 {
				resp, err := c.Get(bad.url(t, "https"))
				if err != nil {
					errs <- fmt.Errorf("bad tunnel: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode != 502 {
					errs <- fmt.Errorf("bad tunnel = %d, want 502", resp.StatusCode)
				}
			}
		})
		wg.Go(func() {
			for range 50 {
				resp, err := c.Get(good.url(t, "https"))
				if err != nil {
					errs <- fmt.Errorf("good tunnel: %v", err)
					continue
				}
				io.Copy(io.Discard, resp.Body) //nolint:errcheck
				resp.Body.Close()
				if resp.StatusCode != 200 {
					errs <- fmt.Errorf("good tunnel = %d, want 200", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestHTTPKeepAliveMixedRequests: one keep-alive client connection alternates GETs (each
// connection's own stream at the relay, and its own upstream connection at the agent) and
// POSTs with bodies (the pooled transports), through both transports, inspected or not;
// every answer must be the one to its own request, and the upstream sees few connections.
func TestHTTPKeepAliveMixedRequests(t *testing.T) {
	bothTransports(t, func(t *testing.T, r *relayEnv) {
		for _, inspected := range []bool{false, true} {
			t.Run(fmt.Sprintf("inspect=%v", inspected), func(t *testing.T) {
				var conns atomic.Int64
				up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
					b, _ := io.ReadAll(req.Body)
					fmt.Fprintf(w, "%s %s %s", req.Method, req.URL.Path, b)
				}))
				up.Config.ConnState = func(_ net.Conn, s http.ConnState) {
					if s == http.StateNew {
						conns.Add(1)
					}
				}
				up.Start()
				defer up.Close()
				var store *inspect.Store
				if inspected {
					store = inspect.NewStore()
				}
				a := r.startAgent(&forward.Tunnel{Name: "ka", Proto: "http", Addr: up.Listener.Addr().String(), Inspect: inspected, Store: store})
				defer a.stop(t)
				base := a.url(t, "http")
				c := r.httpClient(false)
				c.Transport.(*http.Transport).MaxConnsPerHost = 1
				defer c.CloseIdleConnections()
				for i := range 30 {
					method, body := "GET", ""
					if i%3 == 2 {
						method, body = "POST", fmt.Sprintf("body-%d", i)
					}
					req, _ := http.NewRequest(method, fmt.Sprintf("%s/r%d", base, i), strings.NewReader(body))
					resp, err := c.Do(req)
					if err != nil {
						t.Fatalf("request %d: %v", i, err)
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if want := fmt.Sprintf("%s /r%d %s", method, i, body); resp.StatusCode != 200 || string(got) != want {
						t.Fatalf("request %d: %d %q, want 200 %q", i, resp.StatusCode, got, want)
					}
				}
				if n := conns.Load(); n > 3 {
					t.Errorf("30 requests on one client connection opened %d upstream connections, want at most 3", n)
				}
			})
		}
	})
}

// TestHTTPEarlyHints: a 103 Early Hints from the upstream reaches the public client
// before the answer, with the agent copying bytes and with it inspecting.
func TestHTTPEarlyHints(t *testing.T) {
	r := newRelayTransport(t, "tcp")
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "page") //nolint:errcheck
	}))
	defer up.Close()
	for _, inspected := range []bool{false, true} {
		t.Run(fmt.Sprintf("inspect=%v", inspected), func(t *testing.T) {
			var store *inspect.Store
			if inspected {
				store = inspect.NewStore()
			}
			a := r.startAgent(&forward.Tunnel{Name: "hints", Proto: "http", Addr: up.Listener.Addr().String(), Inspect: inspected, Store: store})
			defer a.stop(t)
			for _, scheme := range []string{"http", "https"} {
				var hints []string
				trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
					hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
					return nil
				}}
				req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", a.url(t, scheme)+"/", nil)
				c := r.httpClient(false)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatalf("%s: %v", scheme, err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				c.CloseIdleConnections()
				if resp.StatusCode != 200 || string(body) != "page" {
					t.Fatalf("%s: %d %q", scheme, resp.StatusCode, body)
				}
				if len(hints) != 1 || hints[0] != "103 </app.css>; rel=preload" {
					t.Fatalf("%s: interim answers %q, want one 103 with its Link", scheme, hints)
				}
			}
		})
	}
}
