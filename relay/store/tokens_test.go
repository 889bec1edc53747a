package store_test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/store"
)

func open(t *testing.T, dir string) *store.Tokens {
	t.Helper()
	s, err := store.OpenTokens(dir)
	if err != nil {
		t.Fatalf("OpenTokens(%s) = %v, want nil", dir, err)
	}
	return s
}

var tokenRE = regexp.MustCompile(`^fy_[0-9a-f]{48}$`)

func TestCreateVerify(t *testing.T) {
	s := open(t, t.TempDir())
	seen := map[string]bool{}
	for _, account := range []string{"alice", "bob", "alice"} {
		tok, err := s.Create(account)
		if err != nil {
			t.Fatalf("Create(%q) = %v, want nil", account, err)
		}
		if !tokenRE.MatchString(tok) {
			t.Errorf("Create(%q) = %q, want fy_ and 48 hex digits", account, tok)
		}
		if seen[tok] {
			t.Errorf("Create(%q) = %q twice, want distinct tokens", account, tok)
		}
		seen[tok] = true
		got, err := s.Verify(tok)
		if err != nil || got != account {
			t.Errorf("Verify(token of %s) = %q, %v; want %q, nil", account, got, err, account)
		}
	}
}

func TestCreateDefaultAccount(t *testing.T) {
	s := open(t, t.TempDir())
	tok, err := s.Create("")
	if err != nil {
		t.Fatalf("Create(\"\") = %v, want nil", err)
	}
	if got, err := s.Verify(tok); err != nil || got != "default" {
		t.Errorf("Verify = %q, %v; want \"default\", nil", got, err)
	}
}

func TestVerifyUnknown(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	// Before any token exists (no file yet).
	if got, err := s.Verify("fy_nothing"); !errors.Is(err, store.ErrUnknownToken) || got != "" {
		t.Errorf("Verify on an empty store = %q, %v; want \"\", ErrUnknownToken", got, err)
	}
	tok, err := s.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(tok))
	for _, bad := range []string{"", "fy_", tok[:len(tok)-1], tok + "0", strings.ToUpper(tok), " " + tok, hex.EncodeToString(sum[:])} {
		if got, err := s.Verify(bad); !errors.Is(err, store.ErrUnknownToken) || got != "" {
			t.Errorf("Verify(%q) = %q, %v; want \"\", ErrUnknownToken", bad, got, err)
		}
	}
}

func TestFileHoldsNoToken(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	var toks []string
	for _, account := range []string{"alice", "bob"} {
		tok, err := s.Create(account)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	path := filepath.Join(dir, store.TokenFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range toks {
		if strings.Contains(string(data), tok) || strings.Contains(string(data), strings.TrimPrefix(tok, "fy_")) {
			t.Errorf("%s holds the token %s", path, tok)
		}
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != len(toks) {
		t.Fatalf("%s has %d lines, want %d: %q", path, len(lines), len(toks), data)
	}
	lineRE := regexp.MustCompile(`^([0-9a-f]{64}) (\S+) (\S+)$`)
	for i, line := range lines {
		m := lineRE.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("line %d = %q, want \"SHA256-HEX ACCOUNT CREATED\"", i+1, line)
			continue
		}
		sum := sha256.Sum256([]byte(toks[i]))
		if want := hex.EncodeToString(sum[:]); m[1] != want {
			t.Errorf("line %d hash = %s, want sha256(token) = %s", i+1, m[1], want)
		}
		if want := []string{"alice", "bob"}[i]; m[2] != want {
			t.Errorf("line %d account = %q, want %q", i+1, m[2], want)
		}
		if _, err := time.Parse(time.RFC3339, m[3]); err != nil {
			t.Errorf("line %d created = %q, want RFC 3339: %v", i+1, m[3], err)
		}
	}
}

func TestFileMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s := open(t, dir)
	if _, err := s.Create("alice"); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, store.TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode().Perm(); got != 0o600 {
		t.Errorf("%s mode = %v, want 0600", store.TokenFile, got)
	}
	dst, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := dst.Mode().Perm(); got != 0o700 {
		t.Errorf("data directory mode = %v, want 0700", got)
	}
}

func TestCreateRefusesBadAccount(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	for _, account := range []string{"al ice", "tab\tbed", "new\nline", " ", "trailing "} {
		tok, err := s.Create(account)
		if err == nil {
			t.Errorf("Create(%q) = %q, nil; want an error", account, tok)
		}
		if tok != "" {
			t.Errorf("Create(%q) returned token %q with the error, want \"\"", account, tok)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, store.TokenFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused accounts created %s (stat: %v), want no file", store.TokenFile, err)
	}
}

func TestSecondStoreSeesNewTokens(t *testing.T) {
	dir := t.TempDir()
	relay := open(t, dir) // the running relay
	if _, err := relay.Verify("fy_x"); !errors.Is(err, store.ErrUnknownToken) {
		t.Fatalf("Verify before any token = %v, want ErrUnknownToken", err)
	}
	cli := open(t, dir) // `ferry-relay token create` in another process
	tok, err := cli.Create("carol")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := relay.Verify(tok); err != nil || got != "carol" {
		t.Errorf("Verify on the first store of a token the second created = %q, %v; want \"carol\", nil", got, err)
	}
	tok2, err := relay.Create("dave")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := cli.Verify(tok2); err != nil || got != "dave" {
		t.Errorf("Verify on the second store = %q, %v; want \"dave\", nil", got, err)
	}
}

func TestVerifySkipsDamagedLines(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	tok, err := s.Create("alice")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, store.TokenFile)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	damaged := "\n# comment\nonlyonefield\n" + string(data) + "   \n"
	if err := os.WriteFile(path, []byte(damaged), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Verify(tok); err != nil || got != "alice" {
		t.Errorf("Verify with damaged lines around = %q, %v; want \"alice\", nil", got, err)
	}
}

func TestConcurrentCreate(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	const n = 20
	toks := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			tok, err := s.Create("acct")
			if err != nil {
				t.Errorf("Create = %v", err)
			}
			toks[i] = tok
		})
	}
	wg.Wait()
	for i, tok := range toks {
		if got, err := s.Verify(tok); err != nil || got != "acct" {
			t.Errorf("Verify(token %d) = %q, %v; want \"acct\", nil", i, got, err)
		}
	}
}

func TestOpenTokensBadDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := store.OpenTokens(filepath.Join(file, "sub")); err == nil {
		t.Fatal("OpenTokens(under a regular file) = nil, want an error")
	}
}
