package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Credential is an authtoken: what an agent presents to bind tunnels for its account.
// The store keeps only the token's SHA-256.
type Credential struct {
	ID          string
	AccountID   string
	Description string
	Metadata    string
	CreatedAt   time.Time
	// Token is the plaintext token, set only in CreateCredential's result: it cannot be
	// read back.
	Token string
}

// APIKey is a bearer key for the management API. Like a Credential, only its SHA-256
// is kept.
type APIKey struct {
	ID          string
	AccountID   string
	Description string
	Metadata    string
	CreatedAt   time.Time
	// Token is the plaintext key, set only in CreateAPIKey's result.
	Token string
}

// Token prefixes: an authtoken is "fy_" and an API key "fyk_", then 48 hex digits
// (24 random bytes).
const (
	CredentialTokenPrefix = "fy_"
	APIKeyTokenPrefix     = "fyk_"
)

// secretKind is one table of hashed secrets.
type secretKind struct {
	table       string
	idPrefix    string
	tokenPrefix string
	noun        string
}

var (
	credentials = secretKind{"credentials", PrefixCredential, CredentialTokenPrefix, "credential"}
	apiKeys     = secretKind{"api_keys", PrefixAPIKey, APIKeyTokenPrefix, "API key"}
)

const secretCols = "id, account_id, description, metadata, created_at"

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func scanSecret(sc scanner) (Credential, error) {
	var c Credential
	var created string
	if err := sc.Scan(&c.ID, &c.AccountID, &c.Description, &c.Metadata, &created); err != nil {
		return Credential{}, err
	}
	var err error
	c.CreatedAt, err = parseTime(created)
	return c, err
}

func (s *Store) createSecret(ctx context.Context, k secretKind, accountID, description, metadata string) (Credential, error) {
	if err := checkDescMeta(description, metadata); err != nil {
		return Credential{}, fmt.Errorf("create %s: %w", k.noun, err)
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return Credential{}, fmt.Errorf("create %s: %w", k.noun, err)
	}
	c := Credential{
		ID:          NewID(k.idPrefix),
		AccountID:   accountID,
		Description: description,
		Metadata:    metadata,
		CreatedAt:   now(),
		Token:       k.tokenPrefix + hex.EncodeToString(raw[:]),
	}
	_, err := s.exec(ctx, s.db, "INSERT INTO "+k.table+" (id, account_id, token_hash, description, metadata, created_at) VALUES (?, ?, ?, ?, ?, ?)",
		c.ID, c.AccountID, hashToken(c.Token), c.Description, c.Metadata, formatTime(c.CreatedAt))
	if isForeignKeyViolation(err) {
		return Credential{}, fmt.Errorf("create %s: account %s: %w", k.noun, accountID, ErrNotFound)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("create %s: %w", k.noun, err)
	}
	return c, nil
}

// verifySecret finds the row whose hash is token's. The lookup is by the hash (which
// says nothing about the token); the match is then confirmed in constant time.
func (s *Store) verifySecret(ctx context.Context, k secretKind, token string) (Credential, error) {
	want := hashToken(token)
	var stored string
	var c Credential
	var created string
	err := s.queryRow(ctx, s.ro, "SELECT token_hash, "+secretCols+" FROM "+k.table+" WHERE token_hash = ?", want).
		Scan(&stored, &c.ID, &c.AccountID, &c.Description, &c.Metadata, &created)
	if errors.Is(err, sql.ErrNoRows) || err == nil && subtle.ConstantTimeCompare([]byte(stored), []byte(want)) != 1 {
		return Credential{}, fmt.Errorf("%s: %w", k.noun, ErrUnknownToken)
	}
	if err != nil {
		return Credential{}, fmt.Errorf("verify %s: %w", k.noun, err)
	}
	if c.CreatedAt, err = parseTime(created); err != nil {
		return Credential{}, fmt.Errorf("verify %s: %w", k.noun, err)
	}
	return c, nil
}

func (s *Store) getSecret(ctx context.Context, k secretKind, accountID, id string) (Credential, error) {
	c, err := scanSecret(s.queryRow(ctx, s.ro, "SELECT "+secretCols+" FROM "+k.table+" WHERE id = ? AND account_id = ?", id, accountID))
	if err != nil {
		return Credential{}, fmt.Errorf("get %s %s: %w", k.noun, id, notFound(err))
	}
	return c, nil
}

func (s *Store) listSecrets(ctx context.Context, k secretKind, accountID string, p Page) ([]Credential, string, error) {
	out, next, err := listPage(ctx, s, k.table, secretCols, accountID, p, scanSecret, func(c Credential) string { return c.ID })
	if err != nil {
		return nil, "", fmt.Errorf("list %ss: %w", k.noun, err)
	}
	return out, next, nil
}

func (s *Store) updateSecret(ctx context.Context, k secretKind, accountID, id, description, metadata string) (Credential, error) {
	if err := checkDescMeta(description, metadata); err != nil {
		return Credential{}, fmt.Errorf("update %s %s: %w", k.noun, id, err)
	}
	c, err := scanSecret(s.queryRow(ctx, s.db, "UPDATE "+k.table+" SET description = ?, metadata = ? WHERE id = ? AND account_id = ? RETURNING "+secretCols,
		description, metadata, id, accountID))
	if err != nil {
		return Credential{}, fmt.Errorf("update %s %s: %w", k.noun, id, notFound(err))
	}
	return c, nil
}

func (s *Store) deleteSecret(ctx context.Context, k secretKind, accountID, id string) error {
	res, err := s.exec(ctx, s.db, "DELETE FROM "+k.table+" WHERE id = ? AND account_id = ?", id, accountID)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", k.noun, id, err)
	}
	return nil
}

// CreateCredential makes a new authtoken for the account and returns it with its
// plaintext Token, which is not stored: show it to the user once.
func (s *Store) CreateCredential(ctx context.Context, accountID, description, metadata string) (Credential, error) {
	return s.createSecret(ctx, credentials, accountID, description, metadata)
}

// VerifyCredential returns the credential whose token this is, or ErrUnknownToken.
func (s *Store) VerifyCredential(ctx context.Context, token string) (Credential, error) {
	return s.verifySecret(ctx, credentials, token)
}

// GetCredential returns the account's credential id.
func (s *Store) GetCredential(ctx context.Context, accountID, id string) (Credential, error) {
	return s.getSecret(ctx, credentials, accountID, id)
}

// ListCredentials returns a page of the account's credentials, newest first, and the
// BeforeID of the next page ("" after the last).
func (s *Store) ListCredentials(ctx context.Context, accountID string, p Page) ([]Credential, string, error) {
	return s.listSecrets(ctx, credentials, accountID, p)
}

// UpdateCredential sets the description and metadata of the account's credential id.
func (s *Store) UpdateCredential(ctx context.Context, accountID, id, description, metadata string) (Credential, error) {
	return s.updateSecret(ctx, credentials, accountID, id, description, metadata)
}

// DeleteCredential deletes the account's credential id: its token stops working.
func (s *Store) DeleteCredential(ctx context.Context, accountID, id string) error {
	return s.deleteSecret(ctx, credentials, accountID, id)
}

// CreateAPIKey makes a new API key for the account and returns it with its plaintext
// Token, which is not stored.
func (s *Store) CreateAPIKey(ctx context.Context, accountID, description, metadata string) (APIKey, error) {
	c, err := s.createSecret(ctx, apiKeys, accountID, description, metadata)
	return APIKey(c), err
}

// VerifyAPIKey returns the API key whose token this is, or ErrUnknownToken.
func (s *Store) VerifyAPIKey(ctx context.Context, token string) (APIKey, error) {
	c, err := s.verifySecret(ctx, apiKeys, token)
	return APIKey(c), err
}

// GetAPIKey returns the account's API key id.
func (s *Store) GetAPIKey(ctx context.Context, accountID, id string) (APIKey, error) {
	c, err := s.getSecret(ctx, apiKeys, accountID, id)
	return APIKey(c), err
}

// ListAPIKeys returns a page of the account's API keys, newest first, and the BeforeID
// of the next page ("" after the last).
func (s *Store) ListAPIKeys(ctx context.Context, accountID string, p Page) ([]APIKey, string, error) {
	cs, next, err := s.listSecrets(ctx, apiKeys, accountID, p)
	if err != nil {
		return nil, "", err
	}
	out := make([]APIKey, len(cs))
	for i, c := range cs {
		out[i] = APIKey(c)
	}
	return out, next, nil
}

// UpdateAPIKey sets the description and metadata of the account's API key id.
func (s *Store) UpdateAPIKey(ctx context.Context, accountID, id, description, metadata string) (APIKey, error) {
	c, err := s.updateSecret(ctx, apiKeys, accountID, id, description, metadata)
	return APIKey(c), err
}

// DeleteAPIKey deletes the account's API key id.
func (s *Store) DeleteAPIKey(ctx context.Context, accountID, id string) error {
	return s.deleteSecret(ctx, apiKeys, accountID, id)
}
