package server_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
)

func TestInspectAndReplay(t *testing.T) {
	r := newRelay(t)
	var hits atomic.Int32
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(req.Body)
		w.Header().Set("X-Upstream", "yes")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "got "+req.Method+" "+req.URL.RequestURI()+" "+string(body)) //nolint:errcheck
	}))
	defer up.Close()
	store := inspect.NewStore()
	tun := &forward.Tunnel{Name: "web", Proto: "http", Addr: up.Listener.Addr().String(), Inspect: true, Store: store}
	a := r.startAgent(tun)
	resp, err := r.httpClient(true).Post(a.url(t, "https")+"/orders?x=1", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()

	list := store.List(0, "")
	if len(list) != 1 {
		t.Fatalf("recorded %d exchanges, want 1", len(list))
	}
	ex := list[0]
	if ex.Request.Method != "POST" || ex.Request.URI != "/orders?x=1" || string(ex.Request.Body.Data) != `{"n":1}` {
		t.Errorf("recorded request %s %s %q", ex.Request.Method, ex.Request.URI, ex.Request.Body.Data)
	}
	if ex.Response == nil || ex.Response.StatusCode != 201 || ex.Response.Header.Get("X-Upstream") != "yes" || string(ex.Response.Body.Data) != `got POST /orders?x=1 {"n":1}` {
		t.Errorf("recorded response %+v", ex.Response)
	}
	if ex.RemoteAddr != "127.0.0.1" || ex.TunnelName != "web" {
		t.Errorf("remote %q tunnel %q, want 127.0.0.1 web", ex.RemoteAddr, ex.TunnelName)
	}

	// Replay as is, then edited: both reach the upstream and are recorded.
	if err := tun.Replay(context.Background(), ex.Request, ex.ID); err != nil {
		t.Fatal(err)
	}
	edited := ex.Request
	edited.Method, edited.URI = "PUT", "/orders/7"
	edited.Body = inspect.Body{Data: []byte("edited")}
	if err := tun.Replay(context.Background(), edited, ex.ID); err != nil {
		t.Fatal(err)
	}
	if got := hits.Load(); got != 3 {
		t.Errorf("upstream saw %d requests, want 3 (original and two replays)", got)
	}
	list = store.List(0, "")
	if len(list) != 3 || list[0].Replay != ex.ID || string(list[0].Response.Body.Data) != "got PUT /orders/7 edited" {
		b, _ := json.Marshal(list[0])
		t.Errorf("after replays: %d exchanges, newest %s", len(list), b)
	}
}

func TestHTTPSUpstreamAndHostHeader(t *testing.T) {
	r := newRelay(t)
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		io.WriteString(w, "host="+req.Host+" tls="+req.Proto) //nolint:errcheck
	}))
	defer up.Close()
	upHost := up.Listener.Addr().String()
	for _, tc := range []struct {
		name, hostHeader, want string
	}{
		{"public host passes through", "", "host=PUBLIC"},
		{"rewrite", "rewrite", "host=" + upHost},
		{"value", "internal.example", "host=internal.example"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := r.startAgent(&forward.Tunnel{Name: tc.name, Proto: "http", Addr: upHost, Scheme: "https", InsecureUpstream: true, HostHeader: tc.hostHeader})
			u := a.url(t, "https")
			resp, err := r.httpClient(false).Get(u)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := strings.Replace(tc.want, "PUBLIC", strings.TrimPrefix(u, "https://"), 1)
			if !strings.HasPrefix(string(body), want) {
				t.Errorf("upstream saw %q, want prefix %q", body, want)
			}
		})
	}
	// Without --upstream-tls-verify=false a self-signed upstream is a 502 naming the cause.
	a := r.startAgent(&forward.Tunnel{Name: "verify", Proto: "http", Addr: upHost, Scheme: "https"})
	resp, e := get(t, r.httpClient(false), a.url(t, "https"))
	if resp.StatusCode != 502 || !strings.Contains(e.Body, "certificate") {
		t.Errorf("self-signed upstream with verification = %d %q, want 502 about the certificate", resp.StatusCode, e.Body)
	}
}
