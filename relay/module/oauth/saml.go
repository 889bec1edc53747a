package oauth

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/beevik/etree"
	"github.com/crewjam/saml"
	dsig "github.com/russellhaering/goxmldsig"
)

// metadataRefresh is how often IdP metadata given by URL is fetched again (the IdP
// may rotate its signing certificate).
const metadataRefresh = 24 * time.Hour

// samlProvider is the relay's side of SAML 2.0 Web Browser SSO: a service provider
// per host (entity ID https://HOST/saml/metadata, ACS https://HOST/saml/acs) that
// sends signed AuthnRequests and accepts signed assertions, encrypted or not, in
// response to its own requests only (no IdP-initiated logins).
type samlProvider struct {
	key     crypto.Signer
	cert    *x509.Certificate
	client  *http.Client
	metaURL string
	now     func() time.Time

	mu      sync.Mutex
	md      *saml.EntityDescriptor
	fetched time.Time
	lastErr error
	lastTry time.Time
}

func newSAML(cfg Config, client *http.Client) *samlProvider {
	p := &samlProvider{
		key:     cfg.SPKey,
		cert:    cfg.SPCert,
		client:  client,
		metaURL: cfg.IdPMetadataURL,
		now:     cfg.Now,
	}
	if len(cfg.IdPMetadataXML) > 0 {
		p.md, _ = parseIdPMetadata(cfg.IdPMetadataXML) // checked in normalize
	}
	return p
}

// metadata returns the IdP's metadata, fetching it when it is given by URL. A
// failed refresh keeps the metadata fetched before.
func (p *samlProvider) metadata(ctx context.Context) (*saml.EntityDescriptor, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.md != nil && (p.metaURL == "" || now.Sub(p.fetched) < metadataRefresh) {
		return p.md, nil
	}
	if p.lastErr != nil && now.Sub(p.lastTry) < discoveryRetry {
		if p.md != nil {
			return p.md, nil
		}
		return nil, p.lastErr
	}
	p.lastTry = now
	md, err := p.fetch(ctx)
	if err != nil {
		p.lastErr = fmt.Errorf("SAML IdP metadata from %s: %w", p.metaURL, err)
		if p.md != nil {
			return p.md, nil
		}
		return nil, p.lastErr
	}
	p.md, p.fetched, p.lastErr = md, now, nil
	return md, nil
}

func (p *samlProvider) fetch(ctx context.Context) (*saml.EntityDescriptor, error) {
	ctx, cancel := context.WithTimeout(ctx, providerTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.metaURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxProviderBody {
		return nil, errBodyTooLarge
	}
	return parseIdPMetadata(body)
}

// serviceProvider returns the SP for host. With needIdP false it may have no IdP
// metadata (enough to serve the SP's own metadata).
func (p *samlProvider) serviceProvider(ctx context.Context, host string, needIdP bool) (*saml.ServiceProvider, error) {
	md, err := p.metadata(ctx)
	if err != nil && needIdP {
		return nil, err
	}
	base := url.URL{Scheme: "https", Host: host}
	meta, acs := base, base
	meta.Path, acs.Path = PathSAMLMetadata, PathSAMLACS
	return &saml.ServiceProvider{
		EntityID:          meta.String(),
		Key:               p.key,
		Certificate:       p.cert,
		HTTPClient:        p.client,
		MetadataURL:       meta,
		AcsURL:            acs,
		IDPMetadata:       md,
		AuthnNameIDFormat: saml.UnspecifiedNameIDFormat,
		SignatureMethod:   dsig.RSASHA256SignatureMethod,
	}, nil
}

// postForm renders an AuthnRequest for the HTTP-POST binding as the fields of a
// form to submit to the IdP.
func postForm(req *saml.AuthnRequest) (string, error) {
	doc := etree.NewDocument()
	doc.SetRoot(req.Element())
	b, err := doc.WriteToBytes()
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// SAML attribute names (matched case-insensitively against Name and FriendlyName).
var (
	samlEmailAttrs = []string{
		"email", "mail", "emailaddress", "urn:oid:0.9.2342.19200300.100.1.3",
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
	}
	samlNameAttrs = []string{
		"displayname", "http://schemas.microsoft.com/identity/claims/displayname",
		"urn:oid:2.16.840.1.113730.3.1.241", "name", "cn", "urn:oid:2.5.4.3",
		"http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name",
	}
)

// samlIdentity reads the user from a verified assertion: the NameID is the user id,
// the email and display name come from the usual attributes (or the NameID when its
// format is an email address). What a signed assertion says counts as verified.
func samlIdentity(a *saml.Assertion) (*identity, error) {
	if a.Subject == nil || a.Subject.NameID == nil || strings.TrimSpace(a.Subject.NameID.Value) == "" {
		return nil, fmt.Errorf("%w: the assertion has no NameID", errInvalidIdentity)
	}
	nameID := a.Subject.NameID
	attrs := map[string]string{}
	for _, st := range a.AttributeStatements {
		for _, at := range st.Attributes {
			if len(at.Values) == 0 || at.Values[0].Value == "" {
				continue
			}
			for _, k := range []string{at.Name, at.FriendlyName} {
				k = strings.ToLower(k)
				if _, seen := attrs[k]; !seen && k != "" {
					attrs[k] = at.Values[0].Value
				}
			}
		}
	}
	first := func(names []string) string {
		for _, n := range names {
			if v := attrs[n]; v != "" {
				return v
			}
		}
		return ""
	}
	id := &identity{ID: strings.TrimSpace(nameID.Value), Name: first(samlNameAttrs)}
	mail := first(samlEmailAttrs)
	if mail == "" && nameID.Format == string(saml.EmailAddressNameIDFormat) {
		mail = id.ID
	}
	if mail != "" {
		id.Emails = []email{{Addr: mail, Verified: true}}
	}
	if id.Name == "" {
		id.Name = id.ID
	}
	for _, s := range a.AuthnStatements {
		if t := s.SessionNotOnOrAfter; t != nil && (id.NotAfter.IsZero() || t.Before(id.NotAfter)) {
			id.NotAfter = *t
		}
	}
	return id, nil
}

// samlDetail returns the reason crewjam/saml keeps out of its error text.
func samlDetail(err error) error {
	var ire *saml.InvalidResponseError
	if errors.As(err, &ire) && ire.PrivateErr != nil {
		return ire.PrivateErr
	}
	return err
}
