// Package module holds the relay's edge modules: checks that run where a public
// connection or request arrives, before anything reaches the agent. IP restrictions apply
// to every tunnel kind; basic auth to http tunnels.
package module

import (
	"crypto/sha256"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"
)

// IPPolicy allows a client when it matches an allow rule (if there are any) and no deny rule.
type IPPolicy struct {
	allow, deny []netip.Prefix
}

// ParsePrefix accepts a CIDR ("10.0.0.0/8", "2001:db8::/32") or a single address.
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR (like 203.0.113.0/24 or 2001:db8::/32) or an IP address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// NewIPPolicy parses allow and deny rules; nil when there are none.
func NewIPPolicy(allow, deny []string) (*IPPolicy, error) {
	if len(allow) == 0 && len(deny) == 0 {
		return nil, nil
	}
	p := &IPPolicy{}
	for _, list := range []struct {
		in   []string
		out  *[]netip.Prefix
		name string
	}{{allow, &p.allow, "cidr_allow"}, {deny, &p.deny, "cidr_deny"}} {
		for _, s := range list.in {
			pr, err := ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", list.name, err)
			}
			*list.out = append(*list.out, pr)
		}
	}
	return p, nil
}

// Allows reports whether the client at addr ("ip:port" or "ip") may connect. A nil
// policy allows everyone; an unparsable address is refused.
func (p *IPPolicy) Allows(addr string) bool {
	if p == nil {
		return true
	}
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap() // ::ffff:10.1.2.3 is 10.1.2.3 for the rules
	for _, d := range p.deny {
		if d.Contains(a) {
			return false
		}
	}
	if len(p.allow) == 0 {
		return true
	}
	for _, al := range p.allow {
		if al.Contains(a) {
			return true
		}
	}
	return false
}

// BasicAuth checks HTTP Basic credentials against bcrypt hashes. bcrypt is slow on
// purpose, so a credential that verified once is remembered by its SHA-256 and later
// requests cost microseconds (the map is keyed by a hash of the secret, so lookup timing
// tells an attacker nothing about it).
type BasicAuth struct {
	users map[string][]byte // user → bcrypt hash

	mu       sync.Mutex
	verified map[[32]byte]struct{}
}

// maxVerified bounds the cache of verified credentials.
const maxVerified = 1024

// NewBasicAuth parses "user:bcrypt-hash" entries; nil when there are none.
func NewBasicAuth(entries []string) (*BasicAuth, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	b := &BasicAuth{users: make(map[string][]byte), verified: make(map[[32]byte]struct{})}
	for _, e := range entries {
		user, hash, ok := strings.Cut(e, ":")
		if !ok || user == "" {
			return nil, fmt.Errorf("basic_auth entry %q: want user:bcrypt-hash", redact(e))
		}
		if _, err := bcrypt.Cost([]byte(hash)); err != nil {
			return nil, fmt.Errorf("basic_auth for user %q: not a bcrypt hash (the agent sends hashes, never passwords)", user)
		}
		b.users[user] = []byte(hash)
	}
	return b, nil
}

// Check reports whether r carries valid credentials.
func (b *BasicAuth) Check(r *http.Request) bool {
	user, pass, ok := r.BasicAuth()
	if !ok {
		return false
	}
	hash, known := b.users[user]
	digest := sha256.Sum256([]byte(user + "\x00" + pass))
	b.mu.Lock()
	_, hit := b.verified[digest]
	b.mu.Unlock()
	if hit {
		return true
	}
	if !known {
		// Spend the same time as a wrong password, so timing does not reveal user names.
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(pass)) //nolint:errcheck
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	b.mu.Lock()
	if len(b.verified) >= maxVerified {
		clear(b.verified)
	}
	b.verified[digest] = struct{}{}
	b.mu.Unlock()
	return true
}

var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("ferry-dummy-password"), bcrypt.DefaultCost)
	return h
})

func redact(e string) string {
	if u, _, ok := strings.Cut(e, ":"); ok {
		return u + ":…"
	}
	return "…"
}
