package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestGuard(t *testing.T) {
	h := guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(299) }))
	for _, tc := range []struct {
		name, method, host, origin, ctype, body string
		want                                    int
	}{
		{"localhost", "GET", "localhost:4040", "", "", "", 299},
		{"loopback ip", "GET", "127.0.0.1:4040", "", "", "", 299},
		{"ipv6 loopback", "GET", "[::1]:4040", "", "", "", 299},
		{"lan ip (api bound to 0.0.0.0 on purpose)", "GET", "192.0.2.10:4040", "", "", "", 299},
		{"rebinding name", "GET", "evil.example:4040", "", "", "", 403},
		{"rebinding name, no port", "GET", "attacker.test", "", "", "", 403},
		{"same-origin json post", "POST", "127.0.0.1:4040", "http://127.0.0.1:4040", "application/json", "{}", 299},
		{"no-origin json post (curl)", "POST", "127.0.0.1:4040", "", "application/json", "{}", 299},
		{"cross-origin post", "POST", "127.0.0.1:4040", "https://evil.example", "application/json", "{}", 403},
		{"form post", "POST", "127.0.0.1:4040", "", "text/plain", `{"id":"x"}`, 415},
		{"empty delete", "DELETE", "127.0.0.1:4040", "", "", "", 299},
		{"cross-origin delete", "DELETE", "127.0.0.1:4040", "http://evil.example", "", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/api/requests/http", strings.NewReader(tc.body))
			r.Host = tc.host
			if tc.origin != "" {
				r.Header.Set("Origin", tc.origin)
			}
			if tc.ctype != "" {
				r.Header.Set("Content-Type", tc.ctype)
			}
			if tc.body == "" {
				r.ContentLength = 0
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("%s %s Host %s Origin %q = %d, want %d", tc.method, r.URL.Path, tc.host, tc.origin, w.Code, tc.want)
			}
		})
	}
}
