package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// ReservedDomain is a hostname (or a wildcard, "*.example.com") an account holds for
// its tunnels. Domains are unique across every account and stored in lower case.
type ReservedDomain struct {
	ID          string
	AccountID   string
	Domain      string
	Description string
	Metadata    string
	// CertificateID is the account's TLS certificate served for the domain ("" = none).
	// While set, that certificate cannot be deleted.
	CertificateID string
	// CertPolicy asks for an automatically managed certificate (nil = none).
	CertPolicy *CertPolicy
	// CertStatus is the managed certificate's state, written by the certificate
	// manager with SetCertStatus (nil = none).
	CertStatus *CertStatus
	// TLS is how the edge terminates TLS for the domain (nil = the relay's defaults).
	TLS       *TLSSettings
	CreatedAt time.Time
}

// TLSSettings are a reserved domain's edge TLS settings.
type TLSSettings struct {
	// MinVersion is the lowest TLS version accepted: "1.0", "1.1", "1.2" or "1.3" ("" = 1.2).
	MinVersion string `json:"min_version,omitempty"`
	// ClientCAIDs are certificate authorities of the account; when set, clients must
	// present a certificate one of them signed (mutual TLS).
	ClientCAIDs []string `json:"client_ca_ids,omitempty"`
}

// CertPolicy is how a managed certificate is obtained.
type CertPolicy struct {
	Authority      string `json:"authority"`
	PrivateKeyType string `json:"private_key_type"`
}

// CertStatus is the state of a domain's managed certificate.
type CertStatus struct {
	RenewsAt        *time.Time       `json:"renews_at"`
	ProvisioningJob *ProvisioningJob `json:"provisioning_job"`
}

// ProvisioningJob is a certificate issuance in progress (or failed and waiting to
// retry).
type ProvisioningJob struct {
	ErrorCode string     `json:"error_code"`
	Msg       string     `json:"msg"`
	StartedAt *time.Time `json:"started_at"`
	RetriesAt *time.Time `json:"retries_at"`
}

// NormalizeDomain lower-cases domain, drops one trailing dot and checks it is a DNS
// name of letters, digits and hyphens (labels of 1-63, 253 in all), optionally
// starting with a "*." wildcard label. Internationalised names must come as punycode.
func NormalizeDomain(domain string) (string, error) {
	d := strings.TrimSuffix(strings.ToLower(domain), ".")
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w domain %q: %s", ErrInvalid, domain, why)
	}
	if d == "" {
		return bad("empty")
	}
	if len(d) > 253 {
		return bad("longer than 253 characters")
	}
	rest := strings.TrimPrefix(d, "*.")
	if rest == "" {
		return bad("a wildcard needs a domain after \"*.\"")
	}
	for _, label := range strings.Split(rest, ".") {
		if label == "" || len(label) > 63 {
			return bad("each dot-separated label must be 1-63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return bad("a label cannot start or end with '-'")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				if c == '*' {
					return bad("'*' is allowed only as the whole first label (\"*.example.com\")")
				}
				return bad("only letters, digits, '-' and '.' are allowed (punycode for international names)")
			}
		}
	}
	return d, nil
}

const domainCols = "id, account_id, domain, description, metadata, certificate_id, cert_policy, cert_status, created_at, tls_settings"

func scanDomain(sc scanner) (ReservedDomain, error) {
	var d ReservedDomain
	var certID, policy, status, tlsSettings sql.NullString
	var created string
	if err := sc.Scan(&d.ID, &d.AccountID, &d.Domain, &d.Description, &d.Metadata, &certID, &policy, &status, &created, &tlsSettings); err != nil {
		return ReservedDomain{}, err
	}
	if tlsSettings.Valid {
		d.TLS = new(TLSSettings)
		if err := json.Unmarshal([]byte(tlsSettings.String), d.TLS); err != nil {
			return ReservedDomain{}, fmt.Errorf("stored tls_settings of %s: %w", d.ID, err)
		}
	}
	d.CertificateID = certID.String
	if policy.Valid {
		d.CertPolicy = new(CertPolicy)
		if err := json.Unmarshal([]byte(policy.String), d.CertPolicy); err != nil {
			return ReservedDomain{}, fmt.Errorf("stored cert_policy of %s: %w", d.ID, err)
		}
	}
	if status.Valid {
		d.CertStatus = new(CertStatus)
		if err := json.Unmarshal([]byte(status.String), d.CertStatus); err != nil {
			return ReservedDomain{}, fmt.Errorf("stored cert_status of %s: %w", d.ID, err)
		}
	}
	var err error
	d.CreatedAt, err = parseTime(created)
	return d, err
}

// jsonColumn encodes v (a nil pointer is NULL).
func jsonColumn[T any](v *T) (sql.NullString, error) {
	if v == nil {
		return sql.NullString{}, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return sql.NullString{}, err
	}
	return sql.NullString{String: string(b), Valid: true}, nil
}

// checkCertificate reports ErrNotFound unless the account has certificate id.
func (s *Store) checkCertificate(ctx context.Context, tx *sql.Tx, accountID, id string) error {
	var one int
	err := s.queryRow(ctx, tx, "SELECT 1 FROM tls_certificates WHERE id = ? AND account_id = ?", id, accountID).Scan(&one)
	if err != nil {
		return fmt.Errorf("certificate %s: %w", id, notFound(err))
	}
	return nil
}

// CreateReservedDomain reserves d.Domain for d.AccountID, with d's Description,
// Metadata, CertificateID and CertPolicy; it sets ID and CreatedAt (CertStatus starts
// empty). ErrConflict if any account holds the domain; ErrNotFound if the account or
// the certificate does not exist.
func (s *Store) CreateReservedDomain(ctx context.Context, d ReservedDomain) (ReservedDomain, error) {
	name, err := NormalizeDomain(d.Domain)
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("create reserved domain: %w", err)
	}
	if err := checkDescMeta(d.Description, d.Metadata); err != nil {
		return ReservedDomain{}, fmt.Errorf("create reserved domain %s: %w", name, err)
	}
	policy, err := jsonColumn(d.CertPolicy)
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("create reserved domain %s: %w", name, err)
	}
	tlsSettings, err := jsonColumn(d.TLS)
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("create reserved domain %s: %w", name, err)
	}
	d.ID, d.Domain, d.CertStatus, d.CreatedAt = NewID(PrefixReservedDomain), name, nil, now()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := s.queryRow(ctx, tx, "SELECT 1 FROM accounts WHERE id = ?", d.AccountID).Scan(&one); err != nil {
			return fmt.Errorf("account %s: %w", d.AccountID, notFound(err))
		}
		if d.CertificateID != "" {
			if err := s.checkCertificate(ctx, tx, d.AccountID, d.CertificateID); err != nil {
				return err
			}
		}
		_, err := s.exec(ctx, tx, "INSERT INTO reserved_domains ("+domainCols+") VALUES (?, ?, ?, ?, ?, ?, ?, NULL, ?, ?)",
			d.ID, d.AccountID, d.Domain, d.Description, d.Metadata, nullString(d.CertificateID), policy, formatTime(d.CreatedAt), tlsSettings)
		switch {
		case isUniqueViolation(err):
			return ErrConflict
		case isForeignKeyViolation(err): // a certificate deleted meanwhile (PostgreSQL)
			return fmt.Errorf("account %s or certificate %s: %w", d.AccountID, d.CertificateID, ErrNotFound)
		}
		return err
	})
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("create reserved domain %s: %w", name, err)
	}
	return d, nil
}

// GetReservedDomain returns the account's reserved domain id.
func (s *Store) GetReservedDomain(ctx context.Context, accountID, id string) (ReservedDomain, error) {
	d, err := scanDomain(s.queryRow(ctx, s.ro, "SELECT "+domainCols+" FROM reserved_domains WHERE id = ? AND account_id = ?", id, accountID))
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("get reserved domain %s: %w", id, notFound(err))
	}
	return d, nil
}

// ListReservedDomains returns a page of the account's reserved domains, newest first,
// and the BeforeID of the next page ("" after the last).
func (s *Store) ListReservedDomains(ctx context.Context, accountID string, p Page) ([]ReservedDomain, string, error) {
	out, next, err := listPage(ctx, s, "reserved_domains", domainCols, accountID, p, scanDomain, func(d ReservedDomain) string { return d.ID })
	if err != nil {
		return nil, "", fmt.Errorf("list reserved domains: %w", err)
	}
	return out, next, nil
}

// UpdateReservedDomain sets the Description, Metadata, CertificateID, CertPolicy and TLS of
// the reserved domain d.ID of d.AccountID and returns it. The domain name and the
// CertStatus are not changed. ErrNotFound if the certificate is not the account's.
func (s *Store) UpdateReservedDomain(ctx context.Context, d ReservedDomain) (ReservedDomain, error) {
	if err := checkDescMeta(d.Description, d.Metadata); err != nil {
		return ReservedDomain{}, fmt.Errorf("update reserved domain %s: %w", d.ID, err)
	}
	policy, err := jsonColumn(d.CertPolicy)
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("update reserved domain %s: %w", d.ID, err)
	}
	tlsSettings, err := jsonColumn(d.TLS)
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("update reserved domain %s: %w", d.ID, err)
	}
	var out ReservedDomain
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if d.CertificateID != "" {
			if err := s.checkCertificate(ctx, tx, d.AccountID, d.CertificateID); err != nil {
				// Say "not found" about the domain, not the certificate, when the
				// domain is not the account's either.
				var one int
				if e := s.queryRow(ctx, tx, "SELECT 1 FROM reserved_domains WHERE id = ? AND account_id = ?", d.ID, d.AccountID).Scan(&one); e != nil {
					return notFound(e)
				}
				return err
			}
		}
		var err error
		out, err = scanDomain(s.queryRow(ctx, tx, "UPDATE reserved_domains SET description = ?, metadata = ?, certificate_id = ?, cert_policy = ?, tls_settings = ? WHERE id = ? AND account_id = ? RETURNING "+domainCols,
			d.Description, d.Metadata, nullString(d.CertificateID), policy, tlsSettings, d.ID, d.AccountID))
		if isForeignKeyViolation(err) {
			return fmt.Errorf("certificate %s: %w", d.CertificateID, ErrNotFound)
		}
		return notFound(err)
	})
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("update reserved domain %s: %w", d.ID, err)
	}
	return out, nil
}

// DeleteReservedDomain releases the account's reserved domain id.
func (s *Store) DeleteReservedDomain(ctx context.Context, accountID, id string) error {
	res, err := s.exec(ctx, s.db, "DELETE FROM reserved_domains WHERE id = ? AND account_id = ?", id, accountID)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("delete reserved domain %s: %w", id, err)
	}
	return nil
}

// SetCertStatus records the managed-certificate state of reserved domain id (of any
// account; nil clears it). Times are stored in UTC.
func (s *Store) SetCertStatus(ctx context.Context, id string, st *CertStatus) error {
	if st != nil {
		st = st.utc()
	}
	status, err := jsonColumn(st)
	if err != nil {
		return fmt.Errorf("set cert status of %s: %w", id, err)
	}
	res, err := s.exec(ctx, s.db, "UPDATE reserved_domains SET cert_status = ? WHERE id = ?", status, id)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("set cert status of %s: %w", id, err)
	}
	return nil
}

// utc returns a copy of st with its times in UTC.
func (st *CertStatus) utc() *CertStatus {
	u := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		v := t.UTC()
		return &v
	}
	out := &CertStatus{RenewsAt: u(st.RenewsAt)}
	if j := st.ProvisioningJob; j != nil {
		out.ProvisioningJob = &ProvisioningJob{ErrorCode: j.ErrorCode, Msg: j.Msg, StartedAt: u(j.StartedAt), RetriesAt: u(j.RetriesAt)}
	}
	return out
}

// AllReservedDomains returns the reserved domains of every account, oldest first: the
// relay's routing index loads them at start.
func (s *Store) AllReservedDomains(ctx context.Context) ([]ReservedDomain, error) {
	rows, err := s.query(ctx, s.ro, "SELECT "+domainCols+" FROM reserved_domains ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list all reserved domains: %w", err)
	}
	out, err := collect(rows, scanDomain)
	if err != nil {
		return nil, fmt.Errorf("list all reserved domains: %w", err)
	}
	return out, nil
}

// DomainByName returns the reservation of domain (of any account; case and a trailing
// dot do not matter). A wildcard reservation is found by its own name
// ("*.example.com"), not by the names it covers.
func (s *Store) DomainByName(ctx context.Context, domain string) (ReservedDomain, error) {
	name, err := NormalizeDomain(domain)
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("reserved domain %q: %w", domain, ErrNotFound)
	}
	d, err := scanDomain(s.queryRow(ctx, s.ro, "SELECT "+domainCols+" FROM reserved_domains WHERE domain = ?", name))
	if err != nil {
		return ReservedDomain{}, fmt.Errorf("reserved domain %s: %w", name, notFound(err))
	}
	return d, nil
}
