package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TLSCertificate is a certificate an account uploaded, to serve for its reserved
// domains.
type TLSCertificate struct {
	ID             string
	AccountID      string
	Description    string
	Metadata       string
	CertificatePEM string
	// SealedKey is the private key, already encrypted by the caller; the store keeps
	// the bytes as they are.
	SealedKey []byte
	// Info holds the fields the caller parsed from the certificate, as JSON of its
	// choosing (nil = none).
	Info      json.RawMessage
	NotAfter  time.Time
	CreatedAt time.Time
}

// CertificateAuthority is a CA an account uploaded, e.g. to verify mutual-TLS clients.
type CertificateAuthority struct {
	ID          string
	AccountID   string
	Description string
	Metadata    string
	CAPEM       string
	// Info holds the fields the caller parsed from the CA certificate, as JSON (nil =
	// none).
	Info      json.RawMessage
	CreatedAt time.Time
}

// infoColumn checks and encodes an Info document ("" for none).
func infoColumn(info json.RawMessage) (string, error) {
	if len(info) == 0 {
		return "", nil
	}
	if !json.Valid(info) {
		return "", fmt.Errorf("%w info: not valid JSON", ErrInvalid)
	}
	return string(info), nil
}

func infoValue(v string) json.RawMessage {
	if v == "" {
		return nil
	}
	return json.RawMessage(v)
}

func checkPEM(field, v string) error {
	if v == "" {
		return fmt.Errorf("%w %s: empty", ErrInvalid, field)
	}
	return checkText(field, v, 1<<20)
}

const certCols = "id, account_id, description, metadata, certificate_pem, sealed_key, info, not_after, created_at"

func scanCert(sc scanner) (TLSCertificate, error) {
	var c TLSCertificate
	var info, notAfter, created string
	if err := sc.Scan(&c.ID, &c.AccountID, &c.Description, &c.Metadata, &c.CertificatePEM, &c.SealedKey, &info, &notAfter, &created); err != nil {
		return TLSCertificate{}, err
	}
	c.Info = infoValue(info)
	var err error
	if c.NotAfter, err = parseTime(notAfter); err != nil {
		return TLSCertificate{}, err
	}
	c.CreatedAt, err = parseTime(created)
	return c, err
}

// CreateTLSCertificate stores c for c.AccountID, setting its ID and CreatedAt.
func (s *Store) CreateTLSCertificate(ctx context.Context, c TLSCertificate) (TLSCertificate, error) {
	if err := checkDescMeta(c.Description, c.Metadata); err != nil {
		return TLSCertificate{}, fmt.Errorf("create TLS certificate: %w", err)
	}
	if err := checkPEM("certificate_pem", c.CertificatePEM); err != nil {
		return TLSCertificate{}, fmt.Errorf("create TLS certificate: %w", err)
	}
	info, err := infoColumn(c.Info)
	if err != nil {
		return TLSCertificate{}, fmt.Errorf("create TLS certificate: %w", err)
	}
	c.ID, c.CreatedAt, c.NotAfter = NewID(PrefixTLSCertificate), now(), c.NotAfter.UTC()
	c.Info = infoValue(info)
	if len(c.SealedKey) == 0 {
		c.SealedKey = nil
	}
	_, err = s.exec(ctx, s.db, "INSERT INTO tls_certificates ("+certCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
		c.ID, c.AccountID, c.Description, c.Metadata, c.CertificatePEM, c.SealedKey, info, formatTime(c.NotAfter), formatTime(c.CreatedAt))
	if isForeignKeyViolation(err) {
		return TLSCertificate{}, fmt.Errorf("create TLS certificate: account %s: %w", c.AccountID, ErrNotFound)
	}
	if err != nil {
		return TLSCertificate{}, fmt.Errorf("create TLS certificate: %w", err)
	}
	return c, nil
}

// GetTLSCertificate returns the account's certificate id.
func (s *Store) GetTLSCertificate(ctx context.Context, accountID, id string) (TLSCertificate, error) {
	c, err := scanCert(s.queryRow(ctx, s.ro, "SELECT "+certCols+" FROM tls_certificates WHERE id = ? AND account_id = ?", id, accountID))
	if err != nil {
		return TLSCertificate{}, fmt.Errorf("get TLS certificate %s: %w", id, notFound(err))
	}
	return c, nil
}

// ListTLSCertificates returns a page of the account's certificates, newest first, and
// the BeforeID of the next page ("" after the last).
func (s *Store) ListTLSCertificates(ctx context.Context, accountID string, p Page) ([]TLSCertificate, string, error) {
	out, next, err := listPage(ctx, s, "tls_certificates", certCols, accountID, p, scanCert, func(c TLSCertificate) string { return c.ID })
	if err != nil {
		return nil, "", fmt.Errorf("list TLS certificates: %w", err)
	}
	return out, next, nil
}

// UpdateTLSCertificate sets the description and metadata of the account's certificate
// id.
func (s *Store) UpdateTLSCertificate(ctx context.Context, accountID, id, description, metadata string) (TLSCertificate, error) {
	if err := checkDescMeta(description, metadata); err != nil {
		return TLSCertificate{}, fmt.Errorf("update TLS certificate %s: %w", id, err)
	}
	c, err := scanCert(s.queryRow(ctx, s.db, "UPDATE tls_certificates SET description = ?, metadata = ? WHERE id = ? AND account_id = ? RETURNING "+certCols,
		description, metadata, id, accountID))
	if err != nil {
		return TLSCertificate{}, fmt.Errorf("update TLS certificate %s: %w", id, notFound(err))
	}
	return c, nil
}

// DeleteTLSCertificate deletes the account's certificate id; ErrInUse while a reserved
// domain uses it.
func (s *Store) DeleteTLSCertificate(ctx context.Context, accountID, id string) error {
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		// The foreign key makes a domain's certificate its own account's, so this
		// finds no domain of another account's certificate.
		var domain string
		err := s.queryRow(ctx, tx, "SELECT domain FROM reserved_domains WHERE certificate_id = ? AND account_id = ? ORDER BY domain LIMIT 1", id, accountID).Scan(&domain)
		if err == nil {
			return fmt.Errorf("%w by reserved domain %s", ErrInUse, domain)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		res, err := s.exec(ctx, tx, "DELETE FROM tls_certificates WHERE id = ? AND account_id = ?", id, accountID)
		if isForeignKeyViolation(err) { // attached meanwhile (PostgreSQL)
			return fmt.Errorf("%w by a reserved domain", ErrInUse)
		}
		if err != nil {
			return err
		}
		return affected(res)
	})
	if err != nil {
		return fmt.Errorf("delete TLS certificate %s: %w", id, err)
	}
	return nil
}

// AllTLSCertificates returns the certificates of every account, oldest first.
func (s *Store) AllTLSCertificates(ctx context.Context) ([]TLSCertificate, error) {
	rows, err := s.query(ctx, s.ro, "SELECT "+certCols+" FROM tls_certificates ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list all TLS certificates: %w", err)
	}
	out, err := collect(rows, scanCert)
	if err != nil {
		return nil, fmt.Errorf("list all TLS certificates: %w", err)
	}
	return out, nil
}

const caCols = "id, account_id, description, metadata, ca_pem, info, created_at"

func scanCA(sc scanner) (CertificateAuthority, error) {
	var c CertificateAuthority
	var info, created string
	if err := sc.Scan(&c.ID, &c.AccountID, &c.Description, &c.Metadata, &c.CAPEM, &info, &created); err != nil {
		return CertificateAuthority{}, err
	}
	c.Info = infoValue(info)
	var err error
	c.CreatedAt, err = parseTime(created)
	return c, err
}

// CreateCertificateAuthority stores ca for ca.AccountID, setting its ID and CreatedAt.
func (s *Store) CreateCertificateAuthority(ctx context.Context, ca CertificateAuthority) (CertificateAuthority, error) {
	if err := checkDescMeta(ca.Description, ca.Metadata); err != nil {
		return CertificateAuthority{}, fmt.Errorf("create certificate authority: %w", err)
	}
	if err := checkPEM("ca_pem", ca.CAPEM); err != nil {
		return CertificateAuthority{}, fmt.Errorf("create certificate authority: %w", err)
	}
	info, err := infoColumn(ca.Info)
	if err != nil {
		return CertificateAuthority{}, fmt.Errorf("create certificate authority: %w", err)
	}
	ca.ID, ca.CreatedAt, ca.Info = NewID(PrefixCertificateAuthority), now(), infoValue(info)
	_, err = s.exec(ctx, s.db, "INSERT INTO certificate_authorities ("+caCols+") VALUES (?, ?, ?, ?, ?, ?, ?)",
		ca.ID, ca.AccountID, ca.Description, ca.Metadata, ca.CAPEM, info, formatTime(ca.CreatedAt))
	if isForeignKeyViolation(err) {
		return CertificateAuthority{}, fmt.Errorf("create certificate authority: account %s: %w", ca.AccountID, ErrNotFound)
	}
	if err != nil {
		return CertificateAuthority{}, fmt.Errorf("create certificate authority: %w", err)
	}
	return ca, nil
}

// GetCertificateAuthority returns the account's certificate authority id.
func (s *Store) GetCertificateAuthority(ctx context.Context, accountID, id string) (CertificateAuthority, error) {
	c, err := scanCA(s.queryRow(ctx, s.ro, "SELECT "+caCols+" FROM certificate_authorities WHERE id = ? AND account_id = ?", id, accountID))
	if err != nil {
		return CertificateAuthority{}, fmt.Errorf("get certificate authority %s: %w", id, notFound(err))
	}
	return c, nil
}

// ListCertificateAuthorities returns a page of the account's certificate authorities,
// newest first, and the BeforeID of the next page ("" after the last).
func (s *Store) ListCertificateAuthorities(ctx context.Context, accountID string, p Page) ([]CertificateAuthority, string, error) {
	out, next, err := listPage(ctx, s, "certificate_authorities", caCols, accountID, p, scanCA, func(c CertificateAuthority) string { return c.ID })
	if err != nil {
		return nil, "", fmt.Errorf("list certificate authorities: %w", err)
	}
	return out, next, nil
}

// UpdateCertificateAuthority sets the description and metadata of the account's
// certificate authority id.
func (s *Store) UpdateCertificateAuthority(ctx context.Context, accountID, id, description, metadata string) (CertificateAuthority, error) {
	if err := checkDescMeta(description, metadata); err != nil {
		return CertificateAuthority{}, fmt.Errorf("update certificate authority %s: %w", id, err)
	}
	c, err := scanCA(s.queryRow(ctx, s.db, "UPDATE certificate_authorities SET description = ?, metadata = ? WHERE id = ? AND account_id = ? RETURNING "+caCols,
		description, metadata, id, accountID))
	if err != nil {
		return CertificateAuthority{}, fmt.Errorf("update certificate authority %s: %w", id, notFound(err))
	}
	return c, nil
}

// DeleteCertificateAuthority deletes the account's certificate authority id.
func (s *Store) DeleteCertificateAuthority(ctx context.Context, accountID, id string) error {
	res, err := s.exec(ctx, s.db, "DELETE FROM certificate_authorities WHERE id = ? AND account_id = ?", id, accountID)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("delete certificate authority %s: %w", id, err)
	}
	return nil
}
