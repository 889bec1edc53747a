package api

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/ferrytunnel/ferry/relay/reserve"
	"github.com/ferrytunnel/ferry/relay/store"
)

type domainJSON struct {
	meta
	Domain                      string            `json:"domain"`
	CNAMETarget                 *string           `json:"cname_target"`
	Certificate                 *ref              `json:"certificate"`
	CertificateManagementPolicy *store.CertPolicy `json:"certificate_management_policy"`
	CertificateManagementStatus *store.CertStatus `json:"certificate_management_status"`
	ACMEChallengeCNAMETarget    *string           `json:"acme_challenge_cname_target"`
	TLSTermination              *tlsTermination   `json:"tls_termination"`
	MutualTLS                   *mutualTLSOut     `json:"mutual_tls"`
}

// tlsTermination and mutualTLS are the edge TLS modules of a reserved domain (named as
// ngrok's edge modules): the lowest TLS version the edge accepts, and the certificate
// authorities whose client certificates it requires.
type tlsTermination struct {
	MinVersion string `json:"min_version"`
}

type mutualTLSIn struct {
	CertificateAuthorityIDs []string `json:"certificate_authority_ids"`
}

type mutualTLSOut struct {
	CertificateAuthorities []*ref `json:"certificate_authorities"`
}

// MaxClientCAs bounds the certificate authorities of one domain's mutual TLS.
const MaxClientCAs = 10

type domainCreate struct {
	Domain                      string            `json:"domain"`
	Description                 string            `json:"description"`
	Metadata                    string            `json:"metadata"`
	CertificateID               string            `json:"certificate_id"`
	CertificateManagementPolicy *store.CertPolicy `json:"certificate_management_policy"`
	TLSTermination              *tlsTermination   `json:"tls_termination"`
	MutualTLS                   *mutualTLSIn      `json:"mutual_tls"`
}

type domainUpdate struct {
	Description                 optString       `json:"description"`
	Metadata                    optString       `json:"metadata"`
	CertificateID               optString       `json:"certificate_id"`
	CertificateManagementPolicy json.RawMessage `json:"certificate_management_policy"`
	TLSTermination              json.RawMessage `json:"tls_termination"`
	MutualTLS                   json.RawMessage `json:"mutual_tls"`
}

func (a *API) routeDomains() {
	a.mux.HandleFunc("GET /reserved_domains", a.listDomains)
	a.mux.HandleFunc("POST /reserved_domains", a.createDomain)
	a.mux.HandleFunc("GET /reserved_domains/{id}", a.getDomain)
	a.mux.HandleFunc("PATCH /reserved_domains/{id}", a.updateDomain)
	a.mux.HandleFunc("DELETE /reserved_domains/{id}", a.deleteDomain)
	a.mux.HandleFunc("DELETE /reserved_domains/{id}/certificate", a.detachCertificate)
	a.mux.HandleFunc("DELETE /reserved_domains/{id}/certificate_management_policy", a.dropPolicy)
}

func (a *API) domainOut(d store.ReservedDomain) domainJSON {
	out := domainJSON{
		meta:                        metaOf("reserved_domains", d.ID, d.CreatedAt, d.Description, d.Metadata),
		Domain:                      d.Domain,
		Certificate:                 refTo("tls_certificates", d.CertificateID),
		CertificateManagementPolicy: d.CertPolicy,
	}
	if d.CertPolicy != nil { // a stored status outlives the policy it belonged to
		out.CertificateManagementStatus = d.CertStatus
	}
	if a.cfg.CNAMETarget != "" {
		out.CNAMETarget = &a.cfg.CNAMETarget
	}
	if d.TLS != nil && d.TLS.MinVersion != "" {
		out.TLSTermination = &tlsTermination{MinVersion: d.TLS.MinVersion}
	}
	if d.TLS != nil && len(d.TLS.ClientCAIDs) > 0 {
		out.MutualTLS = &mutualTLSOut{}
		for _, id := range d.TLS.ClientCAIDs {
			out.MutualTLS.CertificateAuthorities = append(out.MutualTLS.CertificateAuthorities, refTo("certificate_authorities", id))
		}
	}
	if d.CertPolicy != nil && a.cfg.ACME != nil {
		if st, ok := a.cfg.ACME.Status(d.Domain); ok {
			out.CertificateManagementStatus = &st
		}
		if d.Domain[0] == '*' {
			t := a.cfg.ACME.ChallengeTarget(d.Domain)
			out.ACMEChallengeCNAMETarget = &t
		}
	}
	return out
}

// edgeOnDomain returns an edge of account with a hostport the reservation id covers, or "".
func (a *API) edgeOnDomain(ctx context.Context, account, id string) (string, error) {
	return a.edgeWith(ctx, account, "", func(hp string) bool {
		host, _, err := net.SplitHostPort(hp)
		if err != nil {
			host = hp
		}
		res, ok := a.cfg.Domains.Lookup(host)
		return ok && res.ID == id
	})
}

// Reservation converts a stored reserved domain for the in-memory index.
func Reservation(d store.ReservedDomain) reserve.Reservation {
	r := reserve.Reservation{ID: d.ID, AccountID: d.AccountID, Domain: d.Domain,
		CertificateID: d.CertificateID, Managed: d.CertPolicy != nil}
	if d.TLS != nil {
		r.MinTLSVersion = tlsVersions[d.TLS.MinVersion]
		r.ClientCAIDs = d.TLS.ClientCAIDs
	}
	return r
}

// TLSVersion maps a min_version value ("1.0".."1.3") to its crypto/tls constant (0 if unknown).
func TLSVersion(v string) uint16 { return tlsVersions[v] }

// tlsVersions maps min_version values to crypto/tls constants.
var tlsVersions = map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}

// setTLS applies the tls_termination and mutual_tls modules to d, checking them.
func (a *API) setTLS(r *http.Request, d *store.ReservedDomain, term *tlsTermination, mtls *mutualTLSIn, clearTerm, clearMTLS bool) *Error {
	t := store.TLSSettings{}
	if d.TLS != nil {
		t = *d.TLS
	}
	if clearTerm {
		t.MinVersion = ""
	}
	if clearMTLS {
		t.ClientCAIDs = nil
	}
	if term != nil {
		if _, ok := tlsVersions[term.MinVersion]; !ok {
			return badField("tls_termination.min_version", "want \"1.0\", \"1.1\", \"1.2\" or \"1.3\", got %q", term.MinVersion)
		}
		t.MinVersion = term.MinVersion
	}
	if mtls != nil {
		ids := mtls.CertificateAuthorityIDs
		if len(ids) > MaxClientCAs {
			return badField("mutual_tls.certificate_authority_ids", "at most %d certificate authorities per domain, got %d", MaxClientCAs, len(ids))
		}
		for _, id := range ids {
			if _, err := a.cfg.Store.GetCertificateAuthority(r.Context(), d.AccountID, id); err != nil {
				return badField("mutual_tls.certificate_authority_ids", "no certificate authority %s in this account (upload one with POST /certificate_authorities)", id)
			}
		}
		t.ClientCAIDs = ids
	}
	d.TLS = &t
	if t.MinVersion == "" && len(t.ClientCAIDs) == 0 {
		d.TLS = nil
	}
	return nil
}

// optObject decodes a PATCH field that is an object or null: absent → (nil, false),
// null → (nil, true), an object → (v, false).
func optObject[T any](field string, raw json.RawMessage) (v *T, null bool, e *Error) {
	if len(raw) == 0 {
		return nil, false, nil
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, false, badField(field, "want an object or null: %v", err)
	}
	return v, v == nil, nil
}

func (a *API) listDomains(w http.ResponseWriter, r *http.Request) {
	p, e := page(r)
	if e != nil {
		writeErr(w, e)
		return
	}
	items, next, err := a.cfg.Store.ListReservedDomains(r.Context(), account(r), p)
	if err != nil {
		writeErr(w, storeErr("reserved domain", p.BeforeID, err))
		return
	}
	out := make([]domainJSON, len(items))
	for i, d := range items {
		out[i] = a.domainOut(d)
	}
	list(w, r, "reserved_domains", out, next)
}

func (a *API) getDomain(w http.ResponseWriter, r *http.Request) {
	d, err := a.cfg.Store.GetReservedDomain(r.Context(), account(r), r.PathValue("id"))
	if err != nil {
		writeErr(w, storeErr("reserved domain", r.PathValue("id"), err))
		return
	}
	writeJSON(w, http.StatusOK, a.domainOut(d))
}

func (a *API) createDomain(w http.ResponseWriter, r *http.Request) {
	var in domainCreate
	if e := decode(r, &in); e != nil {
		writeErr(w, e)
		return
	}
	acct := account(r)
	name, err := reserve.Normalize(in.Domain)
	if err != nil {
		writeErr(w, badField("domain", "%v", err))
		return
	}
	if err := a.cfg.Domains.CanReserve(acct, name); err != nil {
		e := badField("domain", "%v", err)
		if errors.Is(err, reserve.ErrTaken) {
			e.Status, e.Code = http.StatusConflict, "FERRY_DOMAIN_TAKEN"
		}
		writeErr(w, e)
		return
	}
	d := store.ReservedDomain{AccountID: acct, Domain: name, Description: in.Description, Metadata: in.Metadata,
		CertificateID: in.CertificateID, CertPolicy: in.CertificateManagementPolicy}
	if d.CertificateID != "" && d.CertPolicy != nil {
		writeErr(w, badField("certificate_id", "a domain uses either an uploaded certificate or certificate_management_policy, not both"))
		return
	}
	if d.CertificateID == "" && d.CertPolicy == nil && a.cfg.ACME != nil && (name[0] != '*' || a.cfg.ACME.ChallengeTarget(name) != "") {
		d.CertPolicy = &store.CertPolicy{Authority: "letsencrypt", PrivateKeyType: "ecdsa"} // automated by default
	}
	if e := a.checkDomainCert(r, &d); e != nil {
		writeErr(w, e)
		return
	}
	if e := a.setTLS(r, &d, in.TLSTermination, in.MutualTLS, false, false); e != nil {
		writeErr(w, e)
		return
	}
	d, err = a.cfg.Store.CreateReservedDomain(r.Context(), d)
	if err != nil {
		writeErr(w, storeErr("reserved domain", name, err))
		return
	}
	a.cfg.Domains.Put(Reservation(d))
	if d.CertPolicy != nil {
		a.cfg.ACME.Manage(d.Domain)
	}
	a.cfg.Changed()
	a.cfg.Log.Info("reserved domain created", "account", acct, "id", d.ID, "domain", d.Domain)
	writeJSON(w, http.StatusCreated, a.domainOut(d))
}

// checkDomainCert validates the certificate fields of d: the certificate belongs to the
// account and covers the domain; a management policy is one this relay can carry out.
func (a *API) checkDomainCert(r *http.Request, d *store.ReservedDomain) *Error {
	if p := d.CertPolicy; p != nil {
		if a.cfg.ACME == nil {
			return badField("certificate_management_policy", "this relay has no ACME account configured (start it with --acme-email); upload a certificate and set certificate_id instead")
		}
		if d.Domain[0] == '*' && a.cfg.ACME.ChallengeTarget(d.Domain) == "" {
			return badField("certificate_management_policy", "automated certificates for a wildcard need DNS-01: start the relay with --dns-addr (and delegate --acme-zone to it), or upload a certificate for %s", d.Domain)
		}
		if p.Authority == "" {
			p.Authority = "letsencrypt"
		}
		if p.PrivateKeyType == "" {
			p.PrivateKeyType = "ecdsa"
		}
		if p.Authority != "letsencrypt" {
			return badField("certificate_management_policy.authority", "want \"letsencrypt\" (the relay's ACME CA), got %q", p.Authority)
		}
		if p.PrivateKeyType != "ecdsa" {
			return badField("certificate_management_policy.private_key_type", "want \"ecdsa\" (the relay's ACME client issues ECDSA P-256 keys), got %q", p.PrivateKeyType)
		}
	}
	if d.CertificateID == "" {
		return nil
	}
	c, err := a.cfg.Store.GetTLSCertificate(r.Context(), d.AccountID, d.CertificateID)
	if errors.Is(err, store.ErrNotFound) {
		return badField("certificate_id", "no TLS certificate %s in this account (list them with GET /tls_certificates)", d.CertificateID)
	}
	if err != nil {
		return internal(err)
	}
	if err := covers([]byte(c.CertificatePEM), d.Domain); err != nil {
		return badField("certificate_id", "%v", err)
	}
	return nil
}

// covers checks that the leaf of a PEM bundle is valid for domain ("*.x" needs a "*.x" SAN).
func covers(bundle []byte, domain string) error {
	blk, _ := pem.Decode(bundle)
	if blk == nil {
		return errors.New("stored certificate has no PEM block")
	}
	leaf, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return err
	}
	if domain[0] == '*' {
		if !slices.ContainsFunc(leaf.DNSNames, func(n string) bool { return strings.EqualFold(n, domain) }) {
			return fmt.Errorf("the certificate's names %v do not include %s", leaf.DNSNames, domain)
		}
	} else if err := leaf.VerifyHostname(domain); err != nil {
		return fmt.Errorf("the certificate's names %v do not cover %s", leaf.DNSNames, domain)
	}
	if time.Now().After(leaf.NotAfter) {
		return fmt.Errorf("the certificate expired on %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	return nil
}

func (a *API) updateDomain(w http.ResponseWriter, r *http.Request) {
	var in domainUpdate
	if e := decode(r, &in); e != nil {
		writeErr(w, e)
		return
	}
	a.changeDomain(w, r, func(d *store.ReservedDomain) *Error {
		apply(&d.Description, in.Description)
		apply(&d.Metadata, in.Metadata)
		if in.CertificateID != nil {
			d.CertificateID = *in.CertificateID
			if d.CertificateID != "" {
				d.CertPolicy = nil // an uploaded certificate replaces automated management
			}
		}
		if len(in.CertificateManagementPolicy) > 0 {
			var p *store.CertPolicy
			if err := json.Unmarshal(in.CertificateManagementPolicy, &p); err != nil {
				return badField("certificate_management_policy", "want an object {\"authority\": ..., \"private_key_type\": ...} or null: %v", err)
			}
			if p != nil && in.CertificateID != nil && *in.CertificateID != "" {
				return badField("certificate_id", "a domain uses either an uploaded certificate or certificate_management_policy, not both")
			}
			d.CertPolicy = p
			if p != nil {
				d.CertificateID = ""
			}
		}
		if e := a.checkDomainCert(r, d); e != nil {
			return e
		}
		term, clearTerm, e := optObject[tlsTermination]("tls_termination", in.TLSTermination)
		if e != nil {
			return e
		}
		mtls, clearMTLS, e := optObject[mutualTLSIn]("mutual_tls", in.MutualTLS)
		if e != nil {
			return e
		}
		return a.setTLS(r, d, term, mtls, clearTerm, clearMTLS)
	})
}

func (a *API) detachCertificate(w http.ResponseWriter, r *http.Request) {
	a.changeDomain(w, r, func(d *store.ReservedDomain) *Error { d.CertificateID = ""; return nil })
}

func (a *API) dropPolicy(w http.ResponseWriter, r *http.Request) {
	a.changeDomain(w, r, func(d *store.ReservedDomain) *Error { d.CertPolicy = nil; return nil })
}

// changeDomain loads a reserved domain, applies change, stores it and brings the index
// and the certificate manager in step; the next TLS handshake sees the change.
func (a *API) changeDomain(w http.ResponseWriter, r *http.Request, change func(*store.ReservedDomain) *Error) {
	id := r.PathValue("id")
	d, err := a.cfg.Store.GetReservedDomain(r.Context(), account(r), id)
	if err != nil {
		writeErr(w, storeErr("reserved domain", id, err))
		return
	}
	wasManaged := d.CertPolicy != nil
	if e := change(&d); e != nil {
		writeErr(w, e)
		return
	}
	if d, err = a.cfg.Store.UpdateReservedDomain(r.Context(), d); err != nil {
		writeErr(w, storeErr("reserved domain", id, err))
		return
	}
	a.cfg.Domains.Put(Reservation(d))
	switch managed := d.CertPolicy != nil; {
	case managed && !wasManaged:
		a.cfg.ACME.Manage(d.Domain)
	case !managed && wasManaged && a.cfg.ACME != nil:
		a.cfg.ACME.Unmanage(d.Domain)
	}
	a.cfg.Changed()
	writeJSON(w, http.StatusOK, a.domainOut(d))
}

func (a *API) deleteDomain(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	d, err := a.cfg.Store.GetReservedDomain(r.Context(), account(r), id)
	if err == nil {
		var edge string
		if edge, err = a.edgeOnDomain(r.Context(), account(r), d.ID); edge != "" {
			writeErr(w, &Error{Status: http.StatusConflict, Code: "FERRY_IN_USE",
				Msg: fmt.Sprintf("reserved domain %s (%s) is served by edge %s: delete the edge or drop the hostport first", id, d.Domain, edge)})
			return
		}
	}
	if err == nil {
		err = a.cfg.Store.DeleteReservedDomain(r.Context(), account(r), id)
	}
	if err != nil {
		writeErr(w, storeErr("reserved domain", id, err))
		return
	}
	a.cfg.Domains.Delete(d.Domain)
	if d.CertPolicy != nil && a.cfg.ACME != nil {
		a.cfg.ACME.Unmanage(d.Domain)
	}
	a.cfg.Changed()
	a.cfg.Unreserved(account(r), d.Domain) // tunnels it alone allowed go offline now
	w.WriteHeader(http.StatusNoContent)
}
