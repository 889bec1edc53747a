package acme

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"

	"github.com/caddyserver/certmagic"
	"golang.org/x/crypto/nacl/secretbox"
)

// sealedMagic starts every value sealedStorage has encrypted.
var sealedMagic = []byte("ferry-secretbox-v1\n")

// sealedStorage is certmagic's file storage with private keys sealed by NaCl secretbox: values whose
// key ends in ".key" (certificate keys under certificates/, account keys under users/). Locks,
// listing and everything else are the file storage's own.
type sealedStorage struct {
	*certmagic.FileStorage
	key *[32]byte
}

func isPrivateKey(key string) bool { return strings.HasSuffix(key, ".key") }

func (s *sealedStorage) Store(ctx context.Context, key string, value []byte) error {
	if isPrivateKey(key) {
		var nonce [24]byte
		if _, err := rand.Read(nonce[:]); err != nil {
			return fmt.Errorf("seal %s: %w", key, err)
		}
		out := append(bytes.Clone(sealedMagic), nonce[:]...)
		value = secretbox.Seal(out, value, &nonce, s.key)
	}
	return s.FileStorage.Store(ctx, key, value)
}

func (s *sealedStorage) Load(ctx context.Context, key string) ([]byte, error) {
	value, err := s.FileStorage.Load(ctx, key)
	if err != nil || !bytes.HasPrefix(value, sealedMagic) {
		return value, err // plain values, and keys written before sealing was turned on
	}
	box := value[len(sealedMagic):]
	if len(box) < 24+secretbox.Overhead {
		return nil, fmt.Errorf("open %s: sealed value too short", key)
	}
	var nonce [24]byte
	copy(nonce[:], box)
	plain, ok := secretbox.Open(nil, box[24:], &nonce, s.key)
	if !ok {
		return nil, fmt.Errorf("open %s: %w", key, errWrongStorageKey)
	}
	return plain, nil
}

var errWrongStorageKey = errors.New("cannot decrypt: wrong StorageKey or corrupted file")
