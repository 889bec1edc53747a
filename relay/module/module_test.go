package module

import (
	"net/http/httptest"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

func TestIPPolicy(t *testing.T) {
	for _, tc := range []struct {
		name        string
		allow, deny []string
		addr        string
		want        bool
	}{
		{"no rules", nil, nil, "203.0.113.9:1", true},
		{"allow match", []string{"203.0.113.0/24"}, nil, "203.0.113.9:1", true},
		{"allow miss", []string{"203.0.113.0/24"}, nil, "198.51.100.1:1", false},
		{"deny only", nil, []string{"198.51.100.0/24"}, "198.51.100.7:1", false},
		{"deny beats allow", []string{"0.0.0.0/0"}, []string{"198.51.100.7"}, "198.51.100.7:1", false},
		{"ipv6 allow", []string{"2001:db8::/32"}, nil, "[2001:db8::5]:1", true},
		{"ipv6 miss", []string{"2001:db8::/32"}, nil, "[2001:db9::5]:1", false},
		{"ipv4-mapped is ipv4", []string{"10.0.0.0/8"}, nil, "[::ffff:10.1.2.3]:1", true},
		{"ipv4-mapped denied", nil, []string{"10.0.0.0/8"}, "[::ffff:10.1.2.3]:1", false},
		{"bare address", []string{"10.0.0.0/8"}, nil, "10.9.9.9", true},
		{"garbage address refused", []string{"10.0.0.0/8"}, nil, "not-an-ip:1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := NewIPPolicy(tc.allow, tc.deny)
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Allows(tc.addr); got != tc.want {
				t.Errorf("allow %v deny %v: Allows(%s) = %v, want %v", tc.allow, tc.deny, tc.addr, got, tc.want)
			}
		})
	}
	if _, err := NewIPPolicy([]string{"10.0.0.300/8"}, nil); err == nil || !strings.Contains(err.Error(), "cidr_allow") {
		t.Errorf("bad CIDR: err = %v, want one naming cidr_allow", err)
	}
}

func TestBasicAuth(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("s3cret-pass"), bcrypt.MinCost)
	b, err := NewBasicAuth([]string{"alice:" + string(hash)})
	if err != nil {
		t.Fatal(err)
	}
	check := func(user, pass string) bool {
		r := httptest.NewRequest("GET", "/", nil)
		if user != "" {
			r.SetBasicAuth(user, pass)
		}
		return b.Check(r)
	}
	if check("", "") || check("alice", "wrong") || check("bob", "s3cret-pass") {
		t.Error("wrong or missing credentials accepted")
	}
	if !check("alice", "s3cret-pass") {
		t.Error("right credentials refused on the first (bcrypt) check")
	}
	if !check("alice", "s3cret-pass") {
		t.Error("right credentials refused on the second (cached) check")
	}
	for _, bad := range []string{"nocolon", ":hash", "alice:plaintext-password"} {
		if _, err := NewBasicAuth([]string{bad}); err == nil {
			t.Errorf("NewBasicAuth(%q) accepted, want an error", bad)
		} else if strings.Contains(err.Error(), "plaintext-password") {
			t.Errorf("error %q repeats the secret", err)
		}
	}
}

func TestHeaderTemplates(t *testing.T) {
	h, err := NewHeaders("t.example", []string{"X-A: ${req.method} ${req.host}${req.path} from ${conn.client_ip}", "X-B: plain"}, []string{"x-drop"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "http://app.example/p?q=1", nil)
	r.RemoteAddr = "[2001:db8::1]:5555"
	out := r.Header.Clone()
	out.Set("X-Drop", "gone")
	h.Request(out, r)
	if got := out.Get("X-A"); got != "POST app.example/p from 2001:db8::1" {
		t.Errorf("X-A = %q", got)
	}
	if out.Get("X-B") != "plain" || out.Get("X-Drop") != "" {
		t.Errorf("X-B = %q, X-Drop = %q; want plain and removed", out.Get("X-B"), out.Get("X-Drop"))
	}
	for _, bad := range [][]string{{"NoColon"}, {"Bad Name: v"}, {"X: ${unclosed"}, {"X: ${req.nope}"}} {
		if _, err := NewHeaders("t", bad, nil, nil, nil); err == nil {
			t.Errorf("NewHeaders(%q) accepted, want an error", bad)
		}
	}
	if h, _ := NewHeaders("t", nil, nil, nil, nil); h != nil {
		t.Error("no rules should give a nil *Headers")
	}
}

func TestNegotiate(t *testing.T) {
	for accept, want := range map[string]string{
		"": "", "identity": "", "gzip": "gzip", "GZIP": "gzip", "gzip, deflate, br": "br",
		"gzip;q=1.0, br;q=0.5": "gzip", "br;q=0, zstd": "zstd", "*": "", "deflate;q=0.1, gzip;q=0.2": "gzip",
	} {
		if got := negotiate(accept); got != want {
			t.Errorf("negotiate(%q) = %q, want %q", accept, got, want)
		}
	}
	for ct, want := range map[string]bool{
		"text/html; charset=utf-8": true, "application/json": true, "application/vnd.api+json": true,
		"image/svg+xml": true, "image/png": false, "video/mp4": false, "application/zip": false, "font/woff2": false,
	} {
		if got := compressible(ct); got != want {
			t.Errorf("compressible(%q) = %v, want %v", ct, got, want)
		}
	}
}
