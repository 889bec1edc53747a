package oauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Cookie layout.
const (
	// chunkSize is the most value bytes put in one cookie: browsers keep 4096 bytes
	// per cookie, name and attributes included.
	chunkSize = 3800
	// maxChunks bounds how many cookies one session may use.
	maxChunks = 4
	// maxStateCookies is how many logins in progress a browser may have on one host;
	// starting one more clears the others (a page cannot pile up cookies this way).
	maxStateCookies = 5
	// stateSuffix follows the prefix in the name of a login-in-progress cookie.
	stateSuffix = "_state_"
)

var errNoCookie = errors.New("no cookie")

// sealer encrypts and authenticates cookie values with AES-256-GCM. The additional
// data binds a value to its purpose (session or login state) and to the provider
// configuration, so a state cookie cannot pass for a session and a session from
// another provider or client id is not accepted.
type sealer struct {
	aead    cipher.AEAD
	binding string
}

func newSealer(secret []byte, binding string) (*sealer, error) {
	key, err := hkdf.Key(sha256.New, secret, nil, "ferry relay oauth cookie v1", 32)
	if err != nil {
		return nil, fmt.Errorf("derive cookie key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: aead, binding: binding}, nil
}

func (s *sealer) ad(purpose string) []byte {
	return []byte(purpose + "\x00" + s.binding)
}

// seal returns v as JSON, encrypted, in unpadded base64url.
func (s *sealer) seal(purpose string, v any) (string, error) {
	pt, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(pt)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(s.aead.Seal(nonce, nonce, pt, s.ad(purpose))), nil
}

// open reverses seal; any change to the value makes it fail.
func (s *sealer) open(purpose, val string, v any) error {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(val) // Strict: one encoding per value
	if err != nil {
		return errors.New("cookie is not base64url")
	}
	ns := s.aead.NonceSize()
	if len(raw) < ns+s.aead.Overhead() {
		return errors.New("cookie too short")
	}
	pt, err := s.aead.Open(nil, raw[:ns], raw[ns:], s.ad(purpose))
	if err != nil {
		return errors.New("cookie fails authentication")
	}
	return json.Unmarshal(pt, v)
}

// chunkName names the i-th cookie of the session (the first is the prefix itself).
func chunkName(prefix string, i int) string {
	if i == 0 {
		return prefix
	}
	return prefix + "_" + strconv.Itoa(i)
}

// splitChunks cuts a sealed session value over cookies. The first value starts with
// the count and a dot ("2.xxxx"), so stale extra cookies are never read.
func splitChunks(val string) ([]string, error) {
	n := (len(val) + chunkSize - 1) / chunkSize
	if n == 0 {
		n = 1
	}
	if n > maxChunks {
		return nil, fmt.Errorf("session is %d bytes, more than %d cookies can hold", len(val), maxChunks)
	}
	parts := make([]string, n)
	for i := range n {
		parts[i] = val[i*chunkSize : min(len(val), (i+1)*chunkSize)]
	}
	parts[0] = strconv.Itoa(n) + "." + parts[0]
	return parts, nil
}

// joinChunks reads the session value from r's cookies.
func joinChunks(r *http.Request, prefix string) (string, error) {
	c, err := r.Cookie(prefix)
	if err != nil {
		return "", errNoCookie
	}
	ns, first, ok := strings.Cut(c.Value, ".")
	n, err := strconv.Atoi(ns)
	if !ok || err != nil || n < 1 || n > maxChunks {
		return "", errors.New("malformed session cookie")
	}
	var b strings.Builder
	b.WriteString(first)
	for i := 1; i < n; i++ {
		c, err := r.Cookie(chunkName(prefix, i))
		if err != nil {
			return "", fmt.Errorf("session cookie %s is missing", chunkName(prefix, i))
		}
		b.WriteString(c.Value)
	}
	return b.String(), nil
}

// newCookie returns a cookie with the attributes every cookie of the middleware has:
// host-only (no Domain), Path=/, Secure, HttpOnly.
func newCookie(name, value string, sameSite http.SameSite) *http.Cookie {
	return &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Secure:   true,
		HttpOnly: true,
		SameSite: sameSite,
	}
}

// expireCookie tells the browser to delete the cookie name.
func expireCookie(w http.ResponseWriter, name string, sameSite http.SameSite) {
	c := newCookie(name, "", sameSite)
	c.MaxAge = -1
	c.Expires = time.Unix(1, 0)
	http.SetCookie(w, c)
}

// ownCookie reports whether a cookie name belongs to the middleware.
func ownCookie(prefix, name string) bool {
	return name == prefix || strings.HasPrefix(name, prefix+"_")
}

// stripOwnCookies removes the middleware's cookies from the Cookie header(s) of h,
// leaving the others exactly as the client sent them.
func stripOwnCookies(h http.Header, prefix string) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var kept []string
	for _, line := range lines {
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			name, _, _ := strings.Cut(p, "=")
			if ownCookie(prefix, strings.TrimSpace(name)) {
				continue
			}
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		h.Del("Cookie")
		return
	}
	h.Set("Cookie", strings.Join(kept, "; "))
}
