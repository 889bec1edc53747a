package oauth

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// The test world: several TLS servers on 127.0.0.1, reached by name on port 443
// through a dialer that maps names to listeners. httptest's certificate covers
// *.example.com, so every server uses it and clients trust it.
const (
	appHost = "app.example.com"
	idpHost = "idp.example.com"
)

type world struct {
	t     *testing.T
	mu    sync.Mutex
	addrs map[string]string // host → listener address
	roots *x509.CertPool
	clk   *fakeClock
	up    *upstream
	app   *httptest.Server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return &world{
		t:     t,
		addrs: make(map[string]string),
		clk:   &fakeClock{t: time.Now()},
		up:    &upstream{},
	}
}

// serve starts h as https://host.
func (w *world) serve(host string, h http.Handler) *httptest.Server {
	w.t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.StartTLS()
	w.t.Cleanup(srv.Close)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.addrs[host] = srv.Listener.Addr().String()
	if w.roots == nil {
		w.roots = x509.NewCertPool()
		w.roots.AddCert(srv.Certificate())
	}
	return srv
}

// transport dials the world's servers by name.
func (w *world) transport() *http.Transport {
	w.mu.Lock()
	roots := w.roots
	w.mu.Unlock()
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, err
			}
			w.mu.Lock()
			real, ok := w.addrs[host]
			w.mu.Unlock()
			if !ok {
				return nil, &net.AddrError{Err: "unknown test host", Addr: addr}
			}
			var d net.Dialer
			return d.DialContext(ctx, network, real)
		},
		TLSClientConfig:   &tls.Config{RootCAs: roots},
		ForceAttemptHTTP2: true,
	}
}

// providerClient is what the middleware uses to reach the providers.
func (w *world) providerClient() *http.Client {
	return &http.Client{Transport: w.transport()}
}

// startApp serves the middleware in front of the recording upstream as appHost.
func (w *world) startApp(m *Middleware) {
	w.t.Helper()
	w.app = w.serve(appHost, m.Wrap(w.up))
	w.t.Cleanup(w.transport().CloseIdleConnections)
}

// browser is a client with a cookie jar that records every response it sees.
type browser struct {
	*http.Client
	w    *world
	jar  *cookiejar.Jar
	mu   sync.Mutex
	hops []hop
}

type hop struct {
	method, url string
	status      int
	location    string
	setCookies  []*http.Cookie
}

func (w *world) browser() *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		w.t.Fatal(err)
	}
	b := &browser{w: w, jar: jar}
	tr := w.transport()
	w.t.Cleanup(tr.CloseIdleConnections)
	b.Client = &http.Client{Jar: jar, Transport: recorder{b, tr}}
	return b
}

type recorder struct {
	b  *browser
	rt http.RoundTripper
}

func (r recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.rt.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	r.b.mu.Lock()
	r.b.hops = append(r.b.hops, hop{
		method: req.Method, url: req.URL.String(), status: resp.StatusCode,
		location: resp.Header.Get("Location"), setCookies: resp.Cookies(),
	})
	r.b.mu.Unlock()
	return resp, nil
}

// noFollow returns a client sharing b's jar that does not follow redirects.
func (b *browser) noFollow() *http.Client {
	c := *b.Client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

func (b *browser) resetHops() {
	b.mu.Lock()
	b.hops = nil
	b.mu.Unlock()
}

// hopTo returns the last recorded response for a URL with this path on host.
func (b *browser) hopTo(host, path string) (hop, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.hops) - 1; i >= 0; i-- {
		u, _ := url.Parse(b.hops[i].url)
		if u.Hostname() == host && u.Path == path {
			return b.hops[i], true
		}
	}
	return hop{}, false
}

// get fetches rawURL (following redirects) and returns the status and body.
func (b *browser) get(rawURL string, hdr map[string]string) (*http.Response, string) {
	b.w.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.w.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = append(req.Header[k], v) // as sent, case kept
	}
	return do(b.w.t, b.Client, req)
}

func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return resp, string(body)
}

// sessionCookie returns the session cookie the jar holds for the app.
func (b *browser) sessionCookie() *http.Cookie {
	for _, c := range b.jar.Cookies(&url.URL{Scheme: "https", Host: appHost, Path: "/"}) {
		if c.Name == DefaultCookiePrefix {
			return c
		}
	}
	return nil
}

// upstream records what reached the handler behind the middleware.
type upstream struct {
	mu    sync.Mutex
	calls int
	last  *http.Request
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.calls++
	u.last = r.Clone(context.Background())
	u.mu.Unlock()
	_, _ = io.WriteString(w, "upstream ok "+r.URL.RequestURI())
}

func (u *upstream) lastRequest() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *upstream) count() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.calls
}

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func testSecret(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// assertUpstreamIdentity checks the identity headers the upstream saw and that the
// client's forged ones and the session cookie did not get through.
func assertUpstreamIdentity(t *testing.T, up *upstream, want map[string]string) {
	t.Helper()
	r := up.lastRequest()
	if r == nil {
		t.Fatal("upstream saw no request")
	}
	for k, v := range want {
		if got := r.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("upstream header %s = %q, want [%q]", k, got, v)
		}
	}
	for k, vs := range r.Header {
		if strings.HasPrefix(strings.ToLower(k), headerPrefix) {
			if _, ok := want[k]; !ok {
				t.Errorf("upstream got unexpected header %s: %q", k, vs)
			}
			for _, v := range vs {
				if strings.Contains(v, "forged") {
					t.Errorf("upstream got the client's forged %s: %q", k, v)
				}
			}
		}
	}
	if c := r.Header.Get("Cookie"); strings.Contains(c, DefaultCookiePrefix) {
		t.Errorf("upstream Cookie header = %q, want no %s cookies", c, DefaultCookiePrefix)
	}
}

func checkSessionCookieAttrs(t *testing.T, h hop) {
	t.Helper()
	var found bool
	for _, c := range h.setCookies {
		if c.Name != DefaultCookiePrefix {
			continue
		}
		found = true
		if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("session cookie = Secure %v HttpOnly %v SameSite %v Path %q Domain %q, want Secure HttpOnly Lax / host-only",
				c.Secure, c.HttpOnly, c.SameSite, c.Path, c.Domain)
		}
	}
	if !found {
		t.Errorf("%s %s set no %s cookie", h.method, h.url, DefaultCookiePrefix)
	}
}
