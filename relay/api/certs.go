package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/ferrytunnel/ferry/relay/cert"
	"github.com/ferrytunnel/ferry/relay/store"
)

type certCreate struct {
	Description    string `json:"description"`
	Metadata       string `json:"metadata"`
	CertificatePEM string `json:"certificate_pem"`
	PrivateKeyPEM  string `json:"private_key_pem"`
}

type caCreate struct {
	Description string `json:"description"`
	Metadata    string `json:"metadata"`
	CAPEM       string `json:"ca_pem"`
}

func (a *API) routeCertificates() {
	st := a.cfg.Store
	resource[store.TLSCertificate]{
		kind: "TLS certificate", collection: "tls_certificates",
		list: st.ListTLSCertificates, get: st.GetTLSCertificate, update: st.UpdateTLSCertificate,
		del: st.DeleteTLSCertificate, out: func(c store.TLSCertificate) any { return certOut(c) },
		fields:  func(c *store.TLSCertificate) (*string, *string) { return &c.Description, &c.Metadata },
		deleted: func(*http.Request, string) { a.cfg.Changed() },
	}.route(a)
	a.mux.HandleFunc("POST /tls_certificates", a.createCert)

	resource[store.CertificateAuthority]{
		kind: "certificate authority", collection: "certificate_authorities",
		list: st.ListCertificateAuthorities, get: st.GetCertificateAuthority, update: st.UpdateCertificateAuthority,
		del: a.deleteCA, out: func(c store.CertificateAuthority) any { return caOut(c) },
		fields:  func(c *store.CertificateAuthority) (*string, *string) { return &c.Description, &c.Metadata },
		deleted: func(*http.Request, string) { a.cfg.Changed() },
	}.route(a)
	a.mux.HandleFunc("POST /certificate_authorities", a.createCA)
}

// flatten merges an object's parsed-certificate fields (stored as JSON) with its common
// fields and extra ones into one JSON object, as ngrok's API shows them.
func flatten(m meta, info json.RawMessage, extra map[string]any) map[string]any {
	out := map[string]any{}
	if len(info) > 0 {
		json.Unmarshal(info, &out) //nolint:errcheck // written by this package
	}
	out["id"], out["uri"], out["created_at"] = m.ID, m.URI, m.CreatedAt
	out["description"], out["metadata"] = m.Description, m.Metadata
	for k, v := range extra {
		out[k] = v
	}
	return out
}

func certOut(c store.TLSCertificate) map[string]any {
	return flatten(metaOf("tls_certificates", c.ID, c.CreatedAt, c.Description, c.Metadata), c.Info,
		map[string]any{"certificate_pem": c.CertificatePEM})
}

func caOut(c store.CertificateAuthority) map[string]any {
	return flatten(metaOf("certificate_authorities", c.ID, c.CreatedAt, c.Description, c.Metadata), c.Info,
		map[string]any{"ca_pem": c.CAPEM})
}

// createCert checks the bundle and key (leaf first, each next certificate signs the one
// before, key matches the leaf), seals the key and stores both. The key never comes back.
func (a *API) createCert(w http.ResponseWriter, r *http.Request) {
	var in certCreate
	if e := decode(r, &in); e != nil {
		writeErr(w, e)
		return
	}
	b, err := cert.ParseBundle([]byte(in.CertificatePEM), []byte(in.PrivateKeyPEM))
	if err != nil {
		var be *cert.BundleError
		if errors.As(err, &be) {
			writeErr(w, &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_CERTIFICATE", Field: be.Field, Msg: be.Error()})
			return
		}
		writeErr(w, badField("certificate_pem", "%v", err))
		return
	}
	info, err := json.Marshal(b.Info)
	if err != nil {
		writeErr(w, internal(err))
		return
	}
	c, err := a.cfg.Store.CreateTLSCertificate(r.Context(), store.TLSCertificate{
		AccountID: account(r), Description: in.Description, Metadata: in.Metadata,
		CertificatePEM: string(b.CertPEM()), SealedKey: a.cfg.Keybox.Seal(b.KeyPEM()),
		Info: info, NotAfter: b.Leaf.NotAfter,
	})
	if err != nil {
		writeErr(w, storeErr("TLS certificate", "", err))
		return
	}
	a.cfg.Log.Info("TLS certificate uploaded", "account", c.AccountID, "id", c.ID, "subject", b.Leaf.Subject.CommonName, "not_after", b.Leaf.NotAfter)
	writeJSON(w, http.StatusCreated, certOut(c))
}

func (a *API) createCA(w http.ResponseWriter, r *http.Request) {
	var in caCreate
	if e := decode(r, &in); e != nil {
		writeErr(w, e)
		return
	}
	_, ci, err := cert.ParseCertificateAuthority([]byte(in.CAPEM))
	if err != nil {
		writeErr(w, &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_CERTIFICATE", Field: "ca_pem", Msg: err.Error()})
		return
	}
	info, err := json.Marshal(ci)
	if err != nil {
		writeErr(w, internal(err))
		return
	}
	c, err := a.cfg.Store.CreateCertificateAuthority(r.Context(), store.CertificateAuthority{
		AccountID: account(r), Description: in.Description, Metadata: in.Metadata, CAPEM: in.CAPEM, Info: info})
	if err != nil {
		writeErr(w, storeErr("certificate authority", "", err))
		return
	}
	writeJSON(w, http.StatusCreated, caOut(c))
}

// deleteCA refuses while a reserved domain's mutual TLS uses the CA.
func (a *API) deleteCA(ctx context.Context, account, id string) error {
	ds, err := a.cfg.Store.AllReservedDomains(ctx)
	if err != nil {
		return err
	}
	for _, d := range ds {
		if d.AccountID == account && d.TLS != nil && slices.Contains(d.TLS.ClientCAIDs, id) {
			return fmt.Errorf("used by the mutual TLS of reserved domain %s (%s): %w", d.Domain, d.ID, store.ErrInUse)
		}
	}
	user, err := a.referrer(ctx, account, id)
	if err != nil {
		return err
	}
	if user != "" {
		return fmt.Errorf("used by the mutual TLS of edge %s: %w", user, store.ErrInUse)
	}
	return a.cfg.Store.DeleteCertificateAuthority(ctx, account, id)
}
