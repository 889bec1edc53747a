package cert

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func newTestKeybox(t *testing.T) (*Keybox, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), SecretKeyFile)
	kb, err := CreateKeybox(path)
	if err != nil {
		t.Fatalf("CreateKeybox: %v", err)
	}
	return kb, path
}

func TestKeyboxRoundTrip(t *testing.T) {
	kb, path := newTestKeybox(t)
	for _, plain := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("-----BEGIN PRIVATE KEY-----"), 100)} {
		sealed := kb.Seal(plain)
		if got, want := len(sealed), 1+24+len(plain)+16; got != want {
			t.Errorf("len(Seal(%d bytes)) = %d, want %d", len(plain), got, want)
		}
		if sealed[0] != 1 {
			t.Errorf("version byte = %d, want 1", sealed[0])
		}
		if len(plain) >= 16 && bytes.Contains(sealed, plain[:16]) { // shorter ones may occur by chance
			t.Error("sealed bytes contain the plaintext")
		}
		got, err := kb.Open(sealed)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		if !bytes.Equal(got, plain) {
			t.Errorf("Open = %q, want %q", got, plain)
		}
	}
	// The same key loaded from its file opens what the created keybox sealed.
	loaded, err := LoadKeybox(path)
	if err != nil {
		t.Fatalf("LoadKeybox: %v", err)
	}
	if got, err := loaded.Open(kb.Seal([]byte("secret"))); err != nil || string(got) != "secret" {
		t.Errorf("loaded.Open = %q, %v, want \"secret\", nil", got, err)
	}
	// Fresh nonces: sealing the same plaintext twice differs.
	if a, b := kb.Seal([]byte("same")), kb.Seal([]byte("same")); bytes.Equal(a, b) {
		t.Error("two Seals of the same plaintext are equal; the nonce is not random")
	}
	// The key does not leak through fmt.
	for _, s := range []string{fmt.Sprint(kb), fmt.Sprintf("%v %+v %#v %s", kb, kb, kb, kb), fmt.Sprintf("%v %+v %#v", *kb, *kb, *kb)} {
		if strings.Contains(s, "[") {
			t.Errorf("formatted Keybox = %q, want no key bytes", s)
		}
	}
}

func TestKeyboxOpenRefusals(t *testing.T) {
	kb, _ := newTestKeybox(t)
	other, _ := newTestKeybox(t)
	sealed := kb.Seal([]byte("private key"))
	flip := func(i int) []byte {
		b := bytes.Clone(sealed)
		b[i] ^= 0x01
		return b
	}
	tests := []struct {
		name   string
		kb     *Keybox
		sealed []byte
		want   []string
	}{
		{"wrong key", other, sealed, []string{"decryption failed: the secret key may have changed", "--secret-key-file"}},
		{"tampered nonce", kb, flip(5), []string{"decryption failed"}},
		{"tampered ciphertext", kb, flip(1 + 24 + 16 + 2), []string{"decryption failed"}},
		{"tampered tag", kb, flip(1 + 24 + 3), []string{"decryption failed"}},
		{"unknown version", kb, flip(0), []string{"unknown format version 0"}},
		{"truncated", kb, sealed[:1+24+15], []string{"too short"}},
		{"empty", kb, nil, []string{"empty"}},
		{"zero keybox", &Keybox{}, sealed, []string{"holds no key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.kb.Open(tt.sealed)
			if err == nil {
				t.Fatalf("Open = %q, nil, want an error", got)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestKeyboxZeroSealPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Seal on a zero Keybox did not panic")
		}
	}()
	(&Keybox{}).Seal([]byte("x"))
}

func TestCreateKeybox(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // created on demand
	path := filepath.Join(dir, SecretKeyFile)
	if _, err := CreateKeybox(path); err != nil {
		t.Fatalf("CreateKeybox: %v", err)
	}
	if got := fileMode(t, path); got != 0o600 {
		t.Errorf("key file mode = %o, want 600", got)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}\n$`).Match(content) {
		t.Errorf("key file = %q, want 64 hex digits and a newline", content)
	}

	_, err = CreateKeybox(path)
	if !errors.Is(err, fs.ErrExist) || !strings.Contains(err.Error(), "already exists; refusing to replace it") {
		t.Errorf("second CreateKeybox: err = %v, want fs.ErrExist and a refusal", err)
	}
	if again, _ := os.ReadFile(path); !bytes.Equal(again, content) {
		t.Error("second CreateKeybox changed the key file")
	}
}

func TestOpenOrCreateKeybox(t *testing.T) {
	path := filepath.Join(t.TempDir(), SecretKeyFile)
	kb1, created, err := OpenOrCreateKeybox(path)
	if err != nil || !created {
		t.Fatalf("first OpenOrCreateKeybox = created %v, err %v, want true, nil", created, err)
	}
	kb2, created, err := OpenOrCreateKeybox(path)
	if err != nil || created {
		t.Fatalf("second OpenOrCreateKeybox = created %v, err %v, want false, nil", created, err)
	}
	if got, err := kb2.Open(kb1.Seal([]byte("k"))); err != nil || string(got) != "k" {
		t.Errorf("reopened keybox cannot open what the first sealed: %q, %v", got, err)
	}
	// A damaged file is an error, never silently replaced.
	writeFile(t, path, []byte("short\n"))
	if _, _, err := OpenOrCreateKeybox(path); err == nil {
		t.Error("OpenOrCreateKeybox on a damaged file = nil error, want refusal")
	}
}

func TestLoadKeybox(t *testing.T) {
	const hexKey = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF"
	dir := t.TempDir()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
		want    []string // empty: must load
	}{
		{"with newline", hexKey + "\n", 0o600, nil},
		{"without newline", hexKey, 0o600, nil},
		{"CRLF", hexKey + "\r\n", 0o600, nil},
		{"read-only", hexKey + "\n", 0o400, nil},
		{"world-readable", hexKey + "\n", 0o644, []string{"is readable by others (mode 0644); chmod 600 "}},
		{"group-readable", hexKey + "\n", 0o640, []string{"is readable by others (mode 0640)"}},
		{"group-writable", hexKey + "\n", 0o620, []string{"is writable by others (mode 0620)"}},
		{"too short", hexKey[:62] + "\n", 0o600, []string{"holds 62 characters; want 64 hex digits (a 32-byte key)", "openssl rand -hex 32"}},
		{"too long", hexKey + "00\n", 0o600, []string{"holds 66 characters"}},
		{"two newlines", hexKey + "\n\n", 0o600, []string{"holds 65 characters"}},
		{"not hex", strings.Repeat("zz", 32) + "\n", 0o600, []string{"is not hex"}},
		{"all zeros", strings.Repeat("0", 64) + "\n", 0o600, []string{"all-zero key"}},
		{"empty", "", 0o600, []string{"holds 0 characters"}},
		{"huge", strings.Repeat("a", 4096), 0o600, []string{"holds 4096 bytes"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, fmt.Sprintf("key%d", i))
			writeFile(t, path, []byte(tt.content))
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			kb, err := LoadKeybox(path)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("LoadKeybox: %v", err)
				}
				if got, err := kb.Open(kb.Seal([]byte("x"))); err != nil || string(got) != "x" {
					t.Errorf("round trip = %q, %v", got, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("LoadKeybox = nil error, want one containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("err = %q, want it to name %s", err, path)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %q, want it to contain %q", err, w)
				}
			}
		})
	}

	// The same key in upper and lower case hex is the same key.
	a, b := filepath.Join(dir, "lower"), filepath.Join(dir, "upper")
	writeFile(t, a, []byte(strings.ToLower(hexKey)))
	writeFile(t, b, []byte(strings.ToUpper(hexKey)))
	ka, errA := LoadKeybox(a)
	kb, errB := LoadKeybox(b)
	if errA != nil || errB != nil {
		t.Fatalf("LoadKeybox: %v, %v", errA, errB)
	}
	if got, err := kb.Open(ka.Seal([]byte("x"))); err != nil || string(got) != "x" {
		t.Errorf("upper-case key file differs from lower-case one: %q, %v", got, err)
	}

	if _, err := LoadKeybox(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadKeybox(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := LoadKeybox(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("LoadKeybox(directory) = %v, want a not-a-regular-file error", err)
	}
}

func TestLoadSealed(t *testing.T) {
	kb, _ := newTestKeybox(t)
	other, _ := newTestKeybox(t)
	pki := newTestPKI(t)
	key := newECKey(t)
	leaf := pki.leaf(t, key, nil)
	b, err := ParseBundle(pemCerts(leaf, pki.inter), pemKey(t, key, "sec1"))
	if err != nil {
		t.Fatal(err)
	}
	sealed := kb.Seal(b.KeyPEM())
	if bytes.Contains(sealed, b.KeyPEM()[30:60]) {
		t.Error("sealed key contains the key PEM")
	}

	c, err := LoadSealed(string(b.CertPEM()), sealed, kb)
	if err != nil {
		t.Fatalf("LoadSealed: %v", err)
	}
	if c.Leaf == nil || !c.Leaf.Equal(leaf) || len(c.Certificate) != 2 {
		t.Errorf("LoadSealed = leaf %v, %d certificates, want the uploaded leaf and 2", c.Leaf != nil, len(c.Certificate))
	}
	roots := x509NewPool(pki)
	if err := handshake(t, *c, roots, "www.example.com"); err != nil {
		t.Errorf("handshake with the loaded certificate: %v", err)
	}

	if _, err := LoadSealed(string(b.CertPEM()), sealed, other); err == nil || !strings.Contains(err.Error(), "--secret-key-file") {
		t.Errorf("LoadSealed with another secret key = %v, want an error naming --secret-key-file", err)
	}
	otherKey := newECKey(t)
	if _, err := LoadSealed(string(b.CertPEM()), kb.Seal(pemKey(t, otherKey, "pkcs8")), kb); err == nil || !strings.Contains(err.Error(), "does not match the private key") {
		t.Errorf("LoadSealed with a key of another certificate = %v, want a mismatch error", err)
	}
	if _, err := LoadSealed(string(b.CertPEM()), sealed, nil); err == nil {
		t.Error("LoadSealed with a nil keybox = nil error")
	}
}
