package oauth

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSafeReturn(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"/", true},
		{"/a/b?c=d&e=%2F%2F", true},
		{"/path//double", true},
		{"/#frag", true},
		{"", false},
		{"a/b", false},
		{"//evil.example", false},
		{"/\\evil.example", false},
		{"/a\\b", false},
		{"https://evil.example/", false},
		{"javascript:alert(1)", false},
		{"/\r\nSet-Cookie: x=y", false},
		{"/\x00", false},
		{"/" + strings.Repeat("a", 3000), false},
	}
	for _, tt := range tests {
		if got := safeReturn(tt.in); got != tt.want {
			t.Errorf("safeReturn(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestStripOwnCookies(t *testing.T) {
	tests := []struct {
		in   []string
		want string // "" means no Cookie header
	}{
		{[]string{"a=1; ferry_session=x; b=2"}, "a=1; b=2"},
		{[]string{"ferry_session=x; ferry_session_1=y; ferry_session_state_abc=z"}, ""},
		{[]string{"ferry_sessionx=keep"}, "ferry_sessionx=keep"},
		{[]string{"a=1", "ferry_session=x", "c=3"}, "a=1; c=3"},
		{[]string{"  a = 1 ;; b=2"}, "a = 1; b=2"},
	}
	for _, tt := range tests {
		h := http.Header{"Cookie": tt.in}
		stripOwnCookies(h, "ferry_session")
		if got := h.Get("Cookie"); got != tt.want || len(h.Values("Cookie")) > 1 {
			t.Errorf("stripOwnCookies(%q) = %q, want %q", tt.in, h.Values("Cookie"), tt.want)
		}
	}
}

func TestSealer(t *testing.T) {
	s1, _ := newSealer(bytes.Repeat([]byte{1}, 32), "bind-a")
	s2, _ := newSealer(bytes.Repeat([]byte{1}, 32), "bind-b")
	s3, _ := newSealer(bytes.Repeat([]byte{2}, 32), "bind-a")
	val, err := s1.seal("session", map[string]string{"u": "alice"})
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]string
	if err := s1.open("session", val, &out); err != nil || out["u"] != "alice" {
		t.Fatalf("open = %v %v", out, err)
	}
	if s1.open("state", val, &out) == nil {
		t.Error("a session value opened as a state value")
	}
	if s2.open("session", val, &out) == nil {
		t.Error("a value opened under another binding")
	}
	if s3.open("session", val, &out) == nil {
		t.Error("a value opened under another secret")
	}
	for i := range val {
		b := []byte(val)
		b[i] ^= 1
		if s1.open("session", string(b), &out) == nil {
			t.Fatalf("a value with byte %d changed opened", i)
		}
	}
}

func TestSessionChunks(t *testing.T) {
	m, err := New(Config{Provider: "oidc", ClientID: "c", ClientSecret: "s", IssuerURL: "https://idp.example.com", CookieSecret: make([]byte, 32)})
	if err != nil {
		t.Fatal(err)
	}
	big := &session{SID: "sid", Host: "app.example.com", UserID: "u", Token: &storedToken{Access: strings.Repeat("a", 5000), Refresh: strings.Repeat("r", 2000)}}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	if err := m.writeSession(rec, req, big); err != nil {
		t.Fatal(err)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) < 3 {
		t.Fatalf("a %d-byte session used %d cookies, want it split", 7000, len(cookies))
	}
	for _, c := range cookies {
		if len(c.String()) > 4096 {
			t.Errorf("cookie %s is %d bytes, over the browsers' 4096", c.Name, len(c.String()))
		}
	}
	req2 := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	for _, c := range cookies {
		req2.AddCookie(c)
	}
	got, err := m.readSession(req2)
	if err != nil || got.Token.Access != big.Token.Access {
		t.Fatalf("readSession of a split session: %v", err)
	}

	// A smaller session written later deletes the chunks it no longer uses.
	small := &session{SID: "sid", Host: "app.example.com", UserID: "u"}
	rec = httptest.NewRecorder()
	if err := m.writeSession(rec, req2, small); err != nil {
		t.Fatal(err)
	}
	var deleted int
	for _, c := range rec.Result().Cookies() {
		if c.MaxAge < 0 {
			deleted++
		}
	}
	if deleted != len(cookies)-1 {
		t.Errorf("deleted %d stale chunks, want %d", deleted, len(cookies)-1)
	}

	// A missing chunk makes the session invalid.
	req3 := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	req3.AddCookie(cookies[0])
	if _, err := m.readSession(req3); err == nil {
		t.Error("a session with a missing chunk was accepted")
	}

	huge := &session{SID: "sid", Host: "app.example.com", UserID: "u", Token: &storedToken{Access: strings.Repeat("a", 20000)}}
	if err := m.writeSession(httptest.NewRecorder(), req, huge); err == nil {
		t.Error("a session over the cookie budget was written")
	}
}

func TestPolicy(t *testing.T) {
	alice := &identity{ID: "1", Emails: []email{{"Alice@Example.com", true}, {"alice@corp.example", true}, {"alice@unverified.example", false}}}
	octo := &identity{ID: "2", Emails: []email{{"octo@users.example", true}},
		GitHubOrgs: []string{"other", "ferrytunnel"}, GitHubTeams: []string{"acme/ops", "ferrytunnel/devs"}}
	tests := []struct {
		name           string
		p              policy
		id             *identity
		allowed        bool
		email, org, tm string
	}{
		{"no constraints", policy{}, alice, true, "Alice@Example.com", "", ""},
		{"email", policy{emails: []string{"alice@example.com"}}, alice, true, "Alice@Example.com", "", ""},
		{"domain picks the matching address", policy{domains: []string{"corp.example"}}, alice, true, "alice@corp.example", "", ""},
		{"unverified does not count", policy{domains: []string{"unverified.example"}}, alice, false, "Alice@Example.com", "", ""},
		{"subdomain is not the domain", policy{domains: []string{"example.com"}}, &identity{Emails: []email{{"a@sub.example.com", true}}}, false, "a@sub.example.com", "", ""},
		{"org", policy{orgs: []string{"ferrytunnel"}}, octo, true, "octo@users.example", "ferrytunnel", ""},
		{"team", policy{teams: []string{"ferrytunnel/devs"}}, octo, true, "octo@users.example", "ferrytunnel", "ferrytunnel/devs"},
		{"team's org first", policy{orgs: []string{"other", "acme"}}, octo, true, "octo@users.example", "acme", ""},
		{"no match", policy{orgs: []string{"nope"}, teams: []string{"x/y"}, emails: []string{"z@z.example"}}, octo, false, "octo@users.example", "", ""},
		{"any one match is enough", policy{orgs: []string{"nope"}, domains: []string{"users.example"}}, octo, true, "octo@users.example", "", ""},
	}
	for _, tt := range tests {
		d := tt.p.authorize(tt.id)
		if d.allowed != tt.allowed || d.email != tt.email || d.org != tt.org || d.team != tt.tm {
			t.Errorf("%s: authorize = %+v, want allowed %v email %q org %q team %q", tt.name, d, tt.allowed, tt.email, tt.org, tt.tm)
		}
	}
}

func TestLimitedBody(t *testing.T) {
	for _, n := range []int{0, 10, 99, 100} {
		b := &limitedBody{rc: io.NopCloser(strings.NewReader(strings.Repeat("x", n))), left: 100}
		got, err := io.ReadAll(b)
		if err != nil || len(got) != n {
			t.Errorf("%d-byte body under a 100-byte cap: %d bytes, %v", n, len(got), err)
		}
	}
	b := &limitedBody{rc: io.NopCloser(strings.NewReader(strings.Repeat("x", 101))), left: 100}
	if _, err := io.ReadAll(b); !errors.Is(err, errBodyTooLarge) {
		t.Errorf("101-byte body under a 100-byte cap: %v, want errBodyTooLarge", err)
	}
}

func TestHeaderValue(t *testing.T) {
	if got := headerValue("Ann\r\nX-Evil: 1\tÆ"); got != "Ann  X-Evil: 1\tÆ" {
		t.Errorf("headerValue = %q", got)
	}
}
