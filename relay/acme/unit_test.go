package acme

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
	"go.uber.org/zap"
)

type certmagicDNS01 = certmagic.DNS01Solver

func slogDiscard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func testChallenge(identifier, token string) acme.Challenge {
	return acme.Challenge{
		Type:             acme.ChallengeTypeDNS01,
		Token:            token,
		KeyAuthorization: token + ".thumbprint",
		Identifier:       acme.Identifier{Type: "dns", Value: identifier},
	}
}

func TestNormalizeDomain(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"App.Example.COM.", "app.example.com"},
		{" *.Example.com ", "*.example.com"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
		{"a-b.c9.example.com", "a-b.c9.example.com"},
		{"", ""},
		{"localhost", ""},
		{"*.com", ""},
		{"a..example.com", ""},
		{"-a.example.com", ""},
		{"a_b.example.com", ""},
		{"*.*.example.com", ""},
		{"a.*.example.com", ""},
		{"192.0.2.1", ""},
		{"bücher.example", ""},
		{strings.Repeat("a", 64) + ".example.com", ""},
	} {
		got, err := normalizeDomain(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("normalizeDomain(%q) = %q, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("normalizeDomain(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestChallengeTarget(t *testing.T) {
	m, err := New(Config{StorageDir: t.TempDir(), ChallengeZone: "Acme.Relay.Example.com.", Log: slogDiscard()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a := m.ChallengeTarget("*.example.com")
	label, zone, _ := strings.Cut(a, ".")
	if zone != "acme.relay.example.com" || len(label) != 26 || strings.ToLower(label) != label {
		t.Errorf("ChallengeTarget = %q, want <26 lower-case chars>.acme.relay.example.com", a)
	}
	if b := m.ChallengeTarget("EXAMPLE.com."); b != a {
		t.Errorf("ChallengeTarget(example.com) = %q, want the wildcard's %q (same CNAME owner)", b, a)
	}
	if c := m.ChallengeTarget("*.other.example.com"); c == a {
		t.Errorf("two domains share the target %q", c)
	}
	// Stable: a pure function of the name, so users' CNAMEs survive restarts.
	m2, err := New(Config{StorageDir: t.TempDir(), ChallengeZone: "acme.relay.example.com", Log: slogDiscard()})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close()
	if b := m2.ChallengeTarget("*.example.com"); b != a {
		t.Errorf("another Manager gives %q, want %q", b, a)
	}

	noZone, err := New(Config{StorageDir: t.TempDir(), Log: slogDiscard()})
	if err != nil {
		t.Fatal(err)
	}
	defer noZone.Close()
	if got := noZone.ChallengeTarget("*.example.com"); got != "" {
		t.Errorf("ChallengeTarget without a zone = %q, want empty", got)
	}
	if err := noZone.Manage("*.example.com"); err == nil || !strings.Contains(err.Error(), "challenge zone") {
		t.Errorf("Manage(wildcard) without a zone = %v, want an error about the challenge zone", err)
	}
	if _, err := noZone.ListenDNS("127.0.0.1:0"); err == nil {
		t.Error("ListenDNS without a zone = nil error")
	}
	if err := noZone.Manage("bad name"); err == nil {
		t.Error("Manage(bad name) = nil error")
	}
	noZone.Close()
	if err := noZone.Manage("ok.example.com"); !errors.Is(err, ErrClosed) {
		t.Errorf("Manage after Close = %v, want ErrClosed", err)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "StorageDir"},
		{Config{StorageDir: "x", DirectoryURL: "http://ca.example/dir"}, "https"},
		{Config{StorageDir: "x", DisableHTTP01: true, DisableTLSALPN01: true}, "DisableHTTP01"},
		{Config{StorageDir: "x", ChallengeZone: "bad zone"}, "ChallengeZone"},
		{Config{StorageDir: "x", RenewalWindowRatio: 1.5}, "RenewalWindowRatio"},
		{Config{StorageDir: "x", HTTPPort: 70000}, "HTTPPort"},
	} {
		err := tc.cfg.withDefaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	if err := (Config{StorageDir: "x"}).withDefaults().Validate(); err != nil {
		t.Errorf("Validate(minimal) = %v", err)
	}
}

func TestSealedStorage(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var key [32]byte
	key[0] = 1
	s := &sealedStorage{FileStorage: &certmagic.FileStorage{Path: dir}, key: &key}
	pemKey := []byte("-----BEGIN EC PRIVATE KEY-----\nMHc...\n-----END EC PRIVATE KEY-----\n")
	if err := s.Store(ctx, "certificates/ca/a.example/a.example.key", pemKey); err != nil {
		t.Fatal(err)
	}
	if err := s.Store(ctx, "certificates/ca/a.example/a.example.crt", []byte("CERT")); err != nil {
		t.Fatal(err)
	}
	raw, err := s.FileStorage.Load(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil || !bytes.HasPrefix(raw, sealedMagic) || bytes.Contains(raw, []byte("PRIVATE KEY")) {
		t.Fatalf("key on disk = %q, %v; want sealed", raw, err)
	}
	if raw, _ := s.FileStorage.Load(ctx, "certificates/ca/a.example/a.example.crt"); string(raw) != "CERT" {
		t.Errorf("certificate on disk = %q, want plain", raw)
	}
	got, err := s.Load(ctx, "certificates/ca/a.example/a.example.key")
	if err != nil || !bytes.Equal(got, pemKey) {
		t.Fatalf("Load = %q, %v; want the PEM back", got, err)
	}
	// A key written before sealing was turned on still loads.
	if err := s.FileStorage.Store(ctx, "users/x/old.key", pemKey); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Load(ctx, "users/x/old.key"); err != nil || !bytes.Equal(got, pemKey) {
		t.Errorf("Load(plain key) = %q, %v", got, err)
	}
	var other [32]byte
	wrong := &sealedStorage{FileStorage: s.FileStorage, key: &other}
	if _, err := wrong.Load(ctx, "certificates/ca/a.example/a.example.key"); !errors.Is(err, errWrongStorageKey) {
		t.Errorf("Load with another key = %v, want errWrongStorageKey", err)
	}
}

func TestRetryDelay(t *testing.T) {
	for n, want := range map[int]time.Duration{0: time.Minute, 1: time.Minute, 2: 2 * time.Minute, 4: 5 * time.Minute, 25: 6 * time.Hour, 1000: 6 * time.Hour} {
		if got := retryDelay(n); got != want {
			t.Errorf("retryDelay(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestZapToSlog(t *testing.T) {
	var buf bytes.Buffer
	l := zapToSlog(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Named("obtain").With(zap.String("identifier", "a.example")).Error("could not get certificate", zap.Error(errors.New("boom")), zap.Int("attempt", 2))
	l.Info("chatty")
	out := buf.String()
	for _, want := range []string{"level=WARN", `msg="could not get certificate"`, "logger=certmagic.obtain", "identifier=a.example", "error=boom", "attempt=2", "level=DEBUG msg=chatty"} {
		if !strings.Contains(out, want) {
			t.Errorf("log output %q lacks %q", out, want)
		}
	}
	buf.Reset()
	quiet := zapToSlog(slog.New(slog.NewTextHandler(&buf, nil)))
	quiet.Info("dropped")
	if buf.Len() != 0 {
		t.Errorf("Info reached an Info-level handler: %q", buf.String())
	}
}

func TestChallengeHooksPassThrough(t *testing.T) {
	// A CA that refuses connections: the domain is managed, nothing is ever obtained.
	m, err := New(Config{StorageDir: t.TempDir(), DirectoryURL: "https://127.0.0.1:1/dir", Log: slogDiscard()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.Manage("managed.example.test"); err != nil {
		t.Fatal(err)
	}

	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := m.HTTPHandler(next)
	for _, tc := range []struct{ host, path string }{
		{"managed.example.test", "/"},
		{"other.example.test", "/.well-known/acme-challenge/abc"},
		{"managed.example.test:80", "/.well-known/acme-challenge/no-such-token"},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "http://"+tc.host+tc.path, nil)
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusTeapot {
			t.Errorf("GET %s%s = %d, want it passed to next (%d)", tc.host, tc.path, rec.Code, http.StatusTeapot)
		}
	}

	for _, tc := range []struct {
		name string
		alpn []string
		want bool
	}{
		{"a.example", []string{"acme-tls/1"}, true},
		{"", []string{"acme-tls/1"}, false},
		{"a.example", []string{"acme-tls/1", "h2"}, false},
		{"a.example", []string{"h2"}, false},
		{"a.example", nil, false},
	} {
		if got := IsTLSALPN(tc.name, tc.alpn); got != tc.want {
			t.Errorf("IsTLSALPN(%q, %q) = %v, want %v", tc.name, tc.alpn, got, tc.want)
		}
		if got := m.IsTLSALPNChallenge(&tls.ClientHelloInfo{ServerName: tc.name, SupportedProtos: tc.alpn}); got != tc.want {
			t.Errorf("IsTLSALPNChallenge(%q, %q) = %v, want %v", tc.name, tc.alpn, got, tc.want)
		}
	}
	get := m.TLSALPNConfig().GetCertificate
	if _, err := get(&tls.ClientHelloInfo{ServerName: "managed.example.test", SupportedProtos: []string{"h2"}}); err == nil {
		t.Error("TLSALPNConfig answered a handshake that is not a validation")
	}
	if _, err := get(&tls.ClientHelloInfo{ServerName: "other.example.test", SupportedProtos: []string{"acme-tls/1"}}); err == nil {
		t.Error("TLSALPNConfig answered a validation for an unmanaged name")
	}
}
