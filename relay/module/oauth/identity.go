package oauth

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"slices"
	"strings"
	"time"
)

// identity is what a provider tells about the signed-in user.
type identity struct {
	ID   string
	Name string
	// Emails are the user's addresses, primary first. Only verified ones count for
	// constraints and the email header.
	Emails []email
	// Extra are provider-specific headers, by name after "ferry-auth-"
	// ("github-login").
	Extra map[string]string
	// GitHubOrgs and GitHubTeams are the memberships the GitHub API lists (lower
	// case; teams as "org/slug").
	GitHubOrgs, GitHubTeams []string
	// NotAfter ends the session (SAML SessionNotOnOrAfter); zero: no limit.
	NotAfter time.Time
}

type email struct {
	Addr     string
	Verified bool
}

// errInvalidIdentity marks an answer from the provider that cannot identify a user
// (a bad ID token, no subject): the login or the session is refused.
var errInvalidIdentity = errors.New("invalid identity")

// policy holds the authorization constraints.
type policy struct {
	emails, domains, orgs, teams []string
}

func (p *policy) empty() bool {
	return len(p.emails) == 0 && len(p.domains) == 0 && len(p.orgs) == 0 && len(p.teams) == 0
}

// digest identifies the constraints, so sessions are checked again at once when
// they change.
func (p *policy) digest() string {
	h := sha256.New()
	for _, l := range [][]string{p.emails, p.domains, p.orgs, p.teams} {
		s := slices.Clone(l)
		slices.Sort(s)
		h.Write([]byte(strings.Join(s, "\x00") + "\x01"))
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// decision is the outcome of authorize.
type decision struct {
	allowed bool
	// email is the verified address shown upstream: the one that matched an email
	// constraint, or the primary verified one.
	email string
	// org and team are the first GitHub memberships that matched a constraint.
	org, team string
}

// authorize decides whether id may in. With no constraints everyone the provider
// signs in may; otherwise one match of any kind is enough.
func (p *policy) authorize(id *identity) decision {
	var d decision
	for _, e := range id.Emails {
		if e.Verified {
			d.email = e.Addr
			break
		}
	}
	if p.empty() {
		d.allowed = true
		return d
	}
	for _, e := range id.Emails {
		if !e.Verified {
			continue
		}
		addr := strings.ToLower(e.Addr)
		at := strings.LastIndexByte(addr, '@')
		if at < 0 {
			continue
		}
		if slices.Contains(p.emails, addr) || slices.Contains(p.domains, addr[at+1:]) {
			d.allowed, d.email = true, e.Addr
			break
		}
	}
	// GitHub: a matching team gives both headers; else a team's parent organization,
	// else an organization membership.
	for _, t := range id.GitHubTeams {
		if slices.Contains(p.teams, t) {
			d.team = t
			d.org, _, _ = strings.Cut(t, "/")
			break
		}
	}
	if d.org == "" && len(p.orgs) > 0 {
		for _, t := range id.GitHubTeams {
			if org, _, _ := strings.Cut(t, "/"); slices.Contains(p.orgs, org) {
				d.org = org
				break
			}
		}
	}
	if d.org == "" {
		for _, o := range id.GitHubOrgs {
			if slices.Contains(p.orgs, o) {
				d.org = o
				break
			}
		}
	}
	if d.team != "" || d.org != "" {
		d.allowed = true
	}
	return d
}

// denyReason says, for the 403 page, who was refused.
func denyReason(id *identity) string {
	for _, e := range id.Emails {
		if e.Verified {
			return e.Addr + " is not allowed to access this site."
		}
	}
	if len(id.Emails) > 0 {
		return id.Emails[0].Addr + " is not verified with the identity provider, and this site only lets in certain verified addresses."
	}
	if id.Name != "" {
		return id.Name + " is not allowed to access this site."
	}
	return "Your account is not allowed to access this site."
}
