package cert

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/crypto/nacl/secretbox"
)

// SecretKeyFile is the name of the secret key file the relay creates in its data dir when
// --secret-key-file is not given.
const SecretKeyFile = "secret.key"

const (
	secretKeyFlag      = "--secret-key-file"
	secretKeySize      = 32
	keyboxVersion      = 1
	keyboxNonceSize    = 24
	keyboxHeaderSize   = 1 + keyboxNonceSize
	maxSecretKeyFile   = 1 << 10 // far more than 64 hex digits; refuse larger files unread
	secretKeyFormat    = "64 hex digits (a 32-byte key), optionally followed by a newline"
	secretKeyCreateCmd = "(umask 077; openssl rand -hex 32 > %s)"
)

// Keybox seals and opens the private keys the relay stores (uploaded certificates' keys, and
// any other secret at rest) with NaCl secretbox (XSalsa20-Poly1305) under one 32-byte secret
// key kept in a file. Its methods are safe for concurrent use.
//
// Sealed format, version 1: the byte 0x01, a random 24-byte nonce, then secretbox.Seal's
// output (ciphertext and 16-byte tag).
//
// The zero Keybox is not usable: get one from LoadKeybox, CreateKeybox or OpenOrCreateKeybox.
type Keybox struct {
	key  [secretKeySize]byte
	path string // the key file, for messages
}

// String and GoString keep the key out of logs and %v, for a Keybox and a *Keybox alike.
func (k Keybox) String() string   { return "cert.Keybox(" + k.path + ")" }
func (k Keybox) GoString() string { return k.String() }

// LoadKeybox reads the secret key file at path: 64 hex digits and an optional newline, mode
// 0600 or stricter (no permission at all for group or others). Errors name the file and
// the fix; a missing file's error matches fs.ErrNotExist.
func LoadKeybox(path string) (*Keybox, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read secret key file: %w", err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read secret key file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("secret key file %s is not a regular file (%v); pass a file holding %s", path, fi.Mode().Type(), secretKeyFormat)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		how := "accessible"
		switch {
		case perm&0o044 != 0:
			how = "readable"
		case perm&0o022 != 0:
			how = "writable"
		}
		return nil, fmt.Errorf("secret key file %s is %s by others (mode %04o); chmod 600 %s", path, how, perm, path)
	}
	if fi.Size() > maxSecretKeyFile {
		return nil, fmt.Errorf("secret key file %s holds %d bytes; want %s (a new key is made with: "+secretKeyCreateCmd+")", path, fi.Size(), secretKeyFormat, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxSecretKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read secret key file %s: %w", path, err)
	}
	kb, err := parseSecretKey(data)
	if err != nil {
		return nil, fmt.Errorf("secret key file %s %v; want %s (a new key is made with: "+secretKeyCreateCmd+")", path, err, secretKeyFormat, path)
	}
	kb.path = path
	return kb, nil
}

// parseSecretKey parses a secret key file's content. Its errors complete "secret key file X".
func parseSecretKey(data []byte) (*Keybox, error) {
	text := bytes.TrimSuffix(data, []byte("\n"))
	text = bytes.TrimSuffix(text, []byte("\r"))
	if len(text) != 2*secretKeySize {
		return nil, fmt.Errorf("holds %d characters", len(text))
	}
	kb := &Keybox{}
	if _, err := hex.Decode(kb.key[:], text); err != nil {
		return nil, fmt.Errorf("is not hex (%v)", err)
	}
	if kb.key == [secretKeySize]byte{} {
		return nil, errors.New("holds an all-zero key")
	}
	return kb, nil
}

// CreateKeybox creates the secret key file at path with a new random key, mode 0600, and
// its directory (mode 0700) if missing. It never overwrites: if path exists, the error
// matches fs.ErrExist, since the keys sealed with the old secret key could no longer be opened.
func CreateKeybox(path string) (kb *Keybox, err error) {
	kb = &Keybox{path: path}
	_, _ = rand.Read(kb.key[:]) // crypto/rand.Read never fails; it crashes the program instead
	if err := os.MkdirAll(filepath.Dir(path), dirMode); err != nil {
		return nil, fmt.Errorf("create secret key file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, keyFileMode)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("create secret key file %s: it already exists; refusing to replace it, since the private keys sealed with it could no longer be opened: %w", path, err)
	}
	if err != nil {
		return nil, fmt.Errorf("create secret key file: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("create secret key file: %w", cerr)
		}
		if err != nil {
			kb = nil
			_ = os.Remove(path)
		}
	}()
	line := make([]byte, 0, 2*secretKeySize+1)
	line = hex.AppendEncode(line, kb.key[:])
	if _, err := f.Write(append(line, '\n')); err != nil {
		return nil, fmt.Errorf("create secret key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("create secret key file: %w", err)
	}
	syncDir(filepath.Dir(path))
	return kb, nil
}

// syncDir makes a new directory entry durable; best effort, since not every system can.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync()
	_ = d.Close()
}

// OpenOrCreateKeybox loads the secret key file at path, or creates it (see CreateKeybox) if
// it does not exist; created reports which. The relay uses it for the default
// DATA/secret.key; a --secret-key-file the operator names should be loaded with LoadKeybox,
// so that a typo is an error rather than a new key.
func OpenOrCreateKeybox(path string) (kb *Keybox, created bool, err error) {
	kb, err = LoadKeybox(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return kb, false, err
	}
	kb, err = CreateKeybox(path)
	if errors.Is(err, fs.ErrExist) { // another process created it between the two calls
		kb, err = LoadKeybox(path)
		return kb, false, err
	}
	return kb, err == nil, err
}

// Seal encrypts and authenticates plaintext under a fresh random nonce. It panics on a
// Keybox that was not loaded or created (its key would be all zeros).
func (k *Keybox) Seal(plaintext []byte) []byte {
	if k.key == [secretKeySize]byte{} {
		panic("cert: Seal on a zero Keybox; get one from LoadKeybox, CreateKeybox or OpenOrCreateKeybox")
	}
	out := make([]byte, keyboxHeaderSize, keyboxHeaderSize+len(plaintext)+secretbox.Overhead)
	out[0] = keyboxVersion
	var nonce [keyboxNonceSize]byte
	_, _ = rand.Read(nonce[:]) // never fails, see CreateKeybox
	copy(out[1:], nonce[:])
	return secretbox.Seal(out, plaintext, &nonce, &k.key)
}

// Open decrypts what Seal returned. It fails if sealed was made with another secret key or
// altered, naming --secret-key-file as the likely fix.
func (k *Keybox) Open(sealed []byte) ([]byte, error) {
	if k.key == [secretKeySize]byte{} {
		return nil, errors.New("open sealed key: the keybox holds no key; get one from LoadKeybox, CreateKeybox or OpenOrCreateKeybox")
	}
	if len(sealed) == 0 {
		return nil, errors.New("open sealed key: it is empty; the stored data is damaged")
	}
	if v := sealed[0]; v != keyboxVersion {
		return nil, fmt.Errorf("open sealed key: unknown format version %d (this ferry-relay reads version %d); was it written by a newer ferry-relay?", v, keyboxVersion)
	}
	if len(sealed) < keyboxHeaderSize+secretbox.Overhead {
		return nil, fmt.Errorf("open sealed key: %d bytes is too short for sealed data (at least %d); the stored data is damaged", len(sealed), keyboxHeaderSize+secretbox.Overhead)
	}
	var nonce [keyboxNonceSize]byte
	copy(nonce[:], sealed[1:keyboxHeaderSize])
	plain, ok := secretbox.Open(nil, sealed[keyboxHeaderSize:], &nonce, &k.key)
	if !ok {
		return nil, fmt.Errorf("open sealed key: decryption failed: the secret key may have changed since it was sealed (this relay uses %s; pass the original file with %s), or the stored data was altered", k.path, secretKeyFlag)
	}
	return plain, nil
}

// LoadSealed rebuilds a stored certificate: it opens the sealed private key (Bundle.KeyPEM
// sealed with kb) and checks it with certPEM as ParseBundle does, returning a certificate
// with Leaf set, ready for tls.Config.
func LoadSealed(certPEM string, sealed []byte, kb *Keybox) (*tls.Certificate, error) {
	if kb == nil {
		return nil, errors.New("load stored certificate: no keybox; load the secret key with LoadKeybox or OpenOrCreateKeybox")
	}
	keyPEM, err := kb.Open(sealed)
	if err != nil {
		return nil, fmt.Errorf("load stored certificate: %w", err)
	}
	defer clear(keyPEM)
	b, err := ParseBundle([]byte(certPEM), keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load stored certificate: %w", err)
	}
	return &b.Certificate, nil
}

// DeriveKey returns a 32-byte key for one purpose (e.g. "acme storage"), derived from
// the keybox key with HMAC-SHA256, so other stores can seal with keys that are distinct
// from the keybox's own but need no file of their own.
func (k *Keybox) DeriveKey(purpose string) *[32]byte {
	mac := hmac.New(sha256.New, k.key[:])
	mac.Write([]byte("ferry keybox derive: " + purpose))
	var out [32]byte
	copy(out[:], mac.Sum(nil))
	return &out
}
