// Package reserve holds the relay's reserved domains and TCP addresses in memory and applies the domain
// rules to them: who may reserve a name, who may bind it, and which reservation (and so
// which certificate and TLS settings) covers a name the public asks for.
//
// The rules follow ngrok's wildcard domain rules:
//   - a reserved domain belongs to one account;
//   - "*.example.com" covers every name below example.com, nested ones too (not
//     example.com itself);
//   - no account may reserve or bind a name covered by another account's reservation,
//     nor reserve a wildcard that would cover another account's reservation;
//   - names under the relay's base domain need no reservation (unless another account
//     reserved them); any other name must be covered by the binding account's own
//     reservation; wildcards are only bound where the account reserved them.
package reserve

import (
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
)

// Reservation is one reserved domain, as the index needs it.
type Reservation struct {
	ID        string
	AccountID string
	// Domain is normalised: lower case, no trailing dot; "*.example.com" for wildcards.
	Domain string
	// CertificateID is the attached uploaded certificate ("" for none).
	CertificateID string
	// Managed is true when the relay obtains the certificate itself (ACME).
	Managed bool
	// MinTLSVersion is the lowest TLS version the edge accepts for the name (tls.VersionTLS1x; 0 = default).
	MinTLSVersion uint16
	// ClientCAIDs are the certificate authorities whose client certificates the edge requires (mutual TLS).
	ClientCAIDs []string
}

// ErrTaken says another account holds the name; ErrNotReserved that the binding account
// does not hold it. Both are wrapped with the name and the fix.
var (
	ErrTaken       = errors.New("reserved by another account")
	ErrNotReserved = errors.New("not reserved by this account")
)

// Domains is the in-memory set of reserved domains. It is safe for concurrent use; lookups
// take a read lock only.
type Domains struct {
	base string // the relay's base domain, e.g. "tunnel.example.com"
	mu   sync.RWMutex
	m    map[string]Reservation // by Domain
}

// NewDomains returns an empty index for a relay whose random names live under base.
func NewDomains(base string) *Domains {
	return &Domains{base: sni.Normalize(base), m: make(map[string]Reservation)}
}

// Replace swaps the whole set (at startup, from the store).
func (ix *Domains) Replace(all []Reservation) {
	m := make(map[string]Reservation, len(all))
	for _, r := range all {
		m[r.Domain] = r
	}
	ix.mu.Lock()
	ix.m = m
	ix.mu.Unlock()
}

// Put adds or updates one reservation.
func (ix *Domains) Put(r Reservation) {
	ix.mu.Lock()
	ix.m[r.Domain] = r
	ix.mu.Unlock()
}

// Delete removes the reservation of domain.
func (ix *Domains) Delete(domain string) {
	ix.mu.Lock()
	delete(ix.m, domain)
	ix.mu.Unlock()
}

// Lookup returns the most specific reservation covering name: the exact name, else the
// nearest wildcard above it.
func (ix *Domains) Lookup(name string) (Reservation, bool) {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.lookup(name)
}

func (ix *Domains) lookup(name string) (Reservation, bool) {
	if r, ok := ix.m[name]; ok {
		return r, true
	}
	rest := strings.TrimPrefix(name, "*.")
	for {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return Reservation{}, false
		}
		rest = rest[i+1:]
		if r, ok := ix.m["*."+rest]; ok {
			return r, true
		}
	}
}

// Normalize validates a domain for reservation or binding and returns its normal form.
// A wildcard is "*." followed by at least two labels.
func Normalize(domain string) (string, error) {
	d := sni.Normalize(strings.TrimSpace(domain))
	if d == "" {
		return "", errors.New("empty domain")
	}
	name := d
	if rest, ok := strings.CutPrefix(d, "*."); ok {
		name = rest
		if !strings.Contains(rest, ".") {
			return "", fmt.Errorf("%q: a wildcard needs at least two labels after \"*.\", e.g. *.example.com", domain)
		}
	}
	if strings.Contains(name, "*") {
		return "", fmt.Errorf("%q: '*' is only allowed as the whole first label (*.example.com)", domain)
	}
	if err := ValidHostname(name); err != nil {
		return "", fmt.Errorf("%q: %w", domain, err)
	}
	return d, nil
}

// ValidHostname checks a DNS name: labels of letters, digits and hyphens, 1-63 bytes each.
func ValidHostname(h string) error {
	if len(h) > 253 {
		return errors.New("longer than 253 bytes")
	}
	for _, l := range strings.Split(h, ".") {
		if l == "" || len(l) > 63 {
			return fmt.Errorf("label %q must be 1-63 bytes", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q may not start or end with '-'", l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q: only letters, digits and '-' are allowed", l)
			}
		}
	}
	return nil
}

// CanReserve says whether account may reserve domain (normalised): no other account's
// reservation may cover it, and a wildcard may not cover another account's names. The
// relay's base domain itself and a wildcard over it are never reservable: random names
// live there.
func (ix *Domains) CanReserve(account, domain string) error {
	if ix.base != "" && (domain == ix.base || domain == "*."+ix.base || route.WildcardCovers(domain, ix.base)) {
		return fmt.Errorf("%s covers the relay's base domain %s, where random tunnel names live; reserve a name below it, e.g. myapp.%s", domain, ix.base, ix.base)
	}
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if r, ok := ix.m[domain]; ok {
		if r.AccountID == account {
			return fmt.Errorf("%s is already reserved by this account (%s)", domain, r.ID)
		}
		return fmt.Errorf("%s: %w", domain, ErrTaken)
	}
	if r, ok := ix.lookup(domain); ok && r.AccountID != account {
		return fmt.Errorf("%s is covered by %s: %w", domain, r.Domain, ErrTaken)
	}
	if base, ok := strings.CutPrefix(domain, "*."); ok {
		for d, r := range ix.m {
			if r.AccountID != account && strings.HasSuffix(strings.TrimPrefix(d, "*."), "."+base) {
				return fmt.Errorf("%s would cover %s: %w", domain, d, ErrTaken)
			}
		}
	}
	return nil
}

// CanBind says whether account may bind name (normalised; may be a wildcard).
func (ix *Domains) CanBind(account, name string) error {
	r, ok := ix.Lookup(name)
	switch {
	case ok && r.AccountID != account:
		return fmt.Errorf("%s is covered by %s, %w: choose another --domain", name, r.Domain, ErrTaken)
	case ok:
		return nil
	case strings.HasPrefix(name, "*."):
		return fmt.Errorf("%s: %w; reserve it first: ferry api reserved-domains create --domain '%s'", name, ErrNotReserved, name)
	case ix.base != "" && strings.HasSuffix(name, "."+ix.base):
		return nil
	default:
		return fmt.Errorf("%s: %w; reserve it first (ferry api reserved-domains create --domain %s) and point its DNS at the relay, or use a name under %s", name, ErrNotReserved, name, ix.base)
	}
}
