// Package store keeps the relay's durable state in its data directory. For now that is
// the authtoken file; the SQLite store (accounts, domains, certificates) replaces it
// behind the same methods.
package store

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// TokenFile is the name of the authtoken file inside the data directory. Each line is
// "sha256-hex account created-RFC3339"; the tokens themselves are never stored.
const TokenFile = "authtokens"

// ErrUnknownToken is returned by Verify for a token that is not in the store.
var ErrUnknownToken = errors.New("authtoken not recognised")

// Tokens stores authtokens hashed in a file in the data directory. The file is re-read
// on every Verify (it is small), so tokens created by `ferry-relay token create` work
// without a relay restart.
type Tokens struct {
	path string
	mu   sync.Mutex // serialises writers in this process
}

// OpenTokens opens (creating the directory if needed) the token store in dir.
func OpenTokens(dir string) (*Tokens, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir %s: %w", dir, err)
	}
	return &Tokens{path: filepath.Join(dir, TokenFile)}, nil
}

// Create makes a new random authtoken for account, stores its hash and returns it.
func (t *Tokens) Create(account string) (string, error) {
	if account == "" {
		account = "default"
	}
	if strings.ContainsAny(account, " \t\n") {
		return "", fmt.Errorf("account %q: no spaces allowed", account)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := "fy_" + hex.EncodeToString(raw[:])
	sum := sha256.Sum256([]byte(token))
	line := fmt.Sprintf("%s %s %s\n", hex.EncodeToString(sum[:]), account, time.Now().UTC().Format(time.RFC3339))
	t.mu.Lock()
	defer t.mu.Unlock()
	f, err := os.OpenFile(t.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return "", fmt.Errorf("token store: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return "", fmt.Errorf("token store %s: %w", t.path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("token store %s: %w", t.path, err)
	}
	return token, nil
}

// Verify returns the account of token, or ErrUnknownToken. Every stored hash is compared
// in constant time, so timing says nothing about which hashes exist.
func (t *Tokens) Verify(token string) (string, error) {
	data, err := os.ReadFile(t.path)
	if errors.Is(err, os.ErrNotExist) {
		return "", ErrUnknownToken
	}
	if err != nil {
		return "", fmt.Errorf("token store: %w", err)
	}
	sum := sha256.Sum256([]byte(token))
	want := []byte(hex.EncodeToString(sum[:]))
	account := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if subtle.ConstantTimeCompare([]byte(fields[0]), want) == 1 && account == "" {
			account = fields[1]
		}
	}
	if account == "" {
		return "", ErrUnknownToken
	}
	return account, nil
}
