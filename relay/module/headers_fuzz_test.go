package module

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzHeaderTemplate: any "Name: value" rule either is refused or, applied to a request,
// yields one header whose value has no line break (no header injection).
func FuzzHeaderTemplate(f *testing.F) {
	for _, s := range []string{"X-Client: ${conn.client_ip}", "X-Host: ${req.host}${req.path}", "X-A: ${", "X-B: $${x}",
		"Bad Name: v", "X-C: ${req.method} on ${conn.tls.sni}", "X-D: \r\nInjected: 1", ""} {
		f.Add(s, "/p?q=1", "example.com")
	}
	f.Fuzz(func(t *testing.T, rule, path, host string) {
		h, err := NewHeaders("t.example", []string{rule}, nil, nil, nil)
		if err != nil || h == nil {
			return
		}
		r := httptest.NewRequest("GET", "http://example.com/", nil)
		r.Host, r.URL.Path, r.RemoteAddr = host, path, "192.0.2.1:1234"
		out := http.Header{}
		h.Request(out, r)
		for name, vs := range out {
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(name, "\r\n: ") {
					t.Fatalf("rule %q made header %q: %q", rule, name, v)
				}
			}
		}
	})
}
