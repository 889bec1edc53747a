package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/module/oauth"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
	"github.com/ferrytunnel/ferry/relay/reserve"
	"github.com/ferrytunnel/ferry/relay/router"
	"github.com/ferrytunnel/ferry/relay/store"
)

// objectKind is a collection kept as documents: edges, backends, IP policies.
type objectKind struct {
	kind, prefix, what string
	// check decodes, validates and normalises a document for account; self is the
	// object's id ("" on create).
	check func(a *API, r *http.Request, account, self string, doc []byte) (any, *Error)
	// out hides secrets in a stored document before it is shown (nil: as stored).
	out func(doc map[string]any)
}

var objectKinds = []objectKind{
	{router.KindIPPolicy, router.PrefixIPPolicy, "IP policy", checkIPPolicy, nil},
	{router.KindTunnelGroup, router.PrefixTunnelGroup, "tunnel group backend", checkTunnelGroup, nil},
	{router.KindFailover, router.PrefixFailover, "failover backend", checkFailover, nil},
	{router.KindWeighted, router.PrefixWeighted, "weighted backend", checkWeighted, nil},
	{router.KindHTTPResponse, router.PrefixHTTPResp, "HTTP response backend", checkHTTPResponse, nil},
	{router.KindHTTPSEdge, router.PrefixHTTPSEdge, "HTTPS edge", checkHTTPSEdge, hideRouteSecrets},
	{router.KindTLSEdge, router.PrefixTLSEdge, "TLS edge", checkTLSEdge, nil},
	{router.KindTCPEdge, router.PrefixTCPEdge, "TCP edge", checkTCPEdge, nil},
	{kindEventSubscription, prefixEventSubscription, "event subscription", checkEventSubscription, hideSecrets},
}

func (a *API) routeObjects() {
	for _, k := range objectKinds {
		c := "/" + k.kind
		a.mux.HandleFunc("GET "+c, func(w http.ResponseWriter, r *http.Request) {
			p, e := page(r)
			if e != nil {
				writeErr(w, e)
				return
			}
			items, next, err := a.cfg.Store.ListObjects(r.Context(), account(r), k.kind, p)
			if err != nil {
				writeErr(w, storeErr(k.what, p.BeforeID, err))
				return
			}
			out := make([]any, len(items))
			for i, o := range items {
				out[i] = a.objectOut(k, o)
			}
			list(w, r, strings.ReplaceAll(k.kind, "/", "_"), out, next)
		})
		a.mux.HandleFunc("POST "+c, func(w http.ResponseWriter, r *http.Request) { a.createObject(w, r, k) })
		a.mux.HandleFunc("GET "+c+"/{id}", func(w http.ResponseWriter, r *http.Request) {
			o, err := a.cfg.Store.GetObject(r.Context(), account(r), k.kind, r.PathValue("id"))
			if err != nil {
				writeErr(w, storeErr(k.what, r.PathValue("id"), err))
				return
			}
			writeJSON(w, http.StatusOK, a.objectOut(k, o))
		})
		a.mux.HandleFunc("PATCH "+c+"/{id}", func(w http.ResponseWriter, r *http.Request) { a.patchObject(w, r, k) })
		a.mux.HandleFunc("DELETE "+c+"/{id}", func(w http.ResponseWriter, r *http.Request) { a.deleteObject(w, r, k) })
	}
	a.routeEdgeRoutes()
}

func (a *API) objectOut(k objectKind, o store.Object) map[string]any {
	out := map[string]any{}
	json.Unmarshal(o.Doc, &out) //nolint:errcheck // written by checkObject
	if k.out != nil {
		k.out(out)
	}
	out["id"], out["uri"], out["created_at"] = o.ID, "/"+k.kind+"/"+o.ID, o.CreatedAt.UTC()
	if k.kind == router.KindTunnelGroup && a.cfg.Tunnels != nil {
		var doc router.TunnelGroup
		json.Unmarshal(o.Doc, &doc) //nolint:errcheck
		out["tunnels"] = a.cfg.Tunnels(o.AccountID, doc.Labels)
	}
	return out
}

func (a *API) createObject(w http.ResponseWriter, r *http.Request, k objectKind) {
	raw, e := readBody(r)
	if e != nil {
		writeErr(w, e)
		return
	}
	doc, e := k.check(a, r, account(r), "", raw)
	if e != nil {
		writeErr(w, e)
		return
	}
	b, _ := json.Marshal(doc)
	o, err := a.cfg.Store.CreateObject(r.Context(), store.Object{AccountID: account(r), Kind: k.kind, Doc: b}, k.prefix)
	if err != nil {
		writeErr(w, storeErr(k.what, "", err))
		return
	}
	a.cfg.Log.Info(k.what+" created", "account", o.AccountID, "id", o.ID)
	a.cfg.Changed()
	writeJSON(w, http.StatusCreated, a.objectOut(k, o))
}

// patchObject sets the top-level fields the body gives (null removes one), then checks
// the whole document again.
func (a *API) patchObject(w http.ResponseWriter, r *http.Request, k objectKind) {
	raw, e := readBody(r)
	if e != nil {
		writeErr(w, e)
		return
	}
	id := r.PathValue("id")
	o, err := a.cfg.Store.GetObject(r.Context(), account(r), k.kind, id)
	if err != nil {
		writeErr(w, storeErr(k.what, id, err))
		return
	}
	merged, e := mergeTop(o.Doc, raw)
	if e != nil {
		writeErr(w, e)
		return
	}
	a.saveObject(w, r, k, id, merged)
}

func (a *API) saveObject(w http.ResponseWriter, r *http.Request, k objectKind, id string, raw []byte) {
	doc, e := k.check(a, r, account(r), id, raw)
	if e != nil {
		writeErr(w, e)
		return
	}
	b, _ := json.Marshal(doc)
	o, err := a.cfg.Store.UpdateObject(r.Context(), account(r), k.kind, id, b)
	if err != nil {
		writeErr(w, storeErr(k.what, id, err))
		return
	}
	a.cfg.Changed()
	writeJSON(w, http.StatusOK, a.objectOut(k, o))
}

func (a *API) deleteObject(w http.ResponseWriter, r *http.Request, k objectKind) {
	id := r.PathValue("id")
	user, err := a.referrer(r.Context(), account(r), id)
	if err != nil {
		writeErr(w, internal(err))
		return
	}
	if user != "" {
		writeErr(w, &Error{Status: http.StatusConflict, Code: "FERRY_IN_USE", Msg: fmt.Sprintf("%s %s is used by %s: remove it there first", k.what, id, user)})
		return
	}
	if err := a.cfg.Store.DeleteObject(r.Context(), account(r), k.kind, id); err != nil {
		writeErr(w, storeErr(k.what, id, err))
		return
	}
	a.cfg.Changed()
	w.WriteHeader(http.StatusNoContent)
}

// referrer returns the id of an object of the account whose document names id (as a
// JSON string), or "". A store error is returned, never taken for "unused".
func (a *API) referrer(ctx context.Context, account, id string) (string, error) {
	all, err := a.cfg.Store.AllObjects(ctx)
	if err != nil {
		return "", err
	}
	needle, _ := json.Marshal(id)
	for _, o := range all {
		if o.AccountID == account && o.ID != id && bytes.Contains(o.Doc, needle) {
			return o.ID, nil
		}
	}
	return "", nil
}

func readBody(r *http.Request) ([]byte, *Error) {
	var raw json.RawMessage
	if e := decode(r, &raw); e != nil {
		return nil, e
	}
	return raw, nil
}

// mergeTop overlays the top-level fields of patch onto doc; null deletes a field.
func mergeTop(doc, patch []byte) ([]byte, *Error) {
	var base, over map[string]json.RawMessage
	if err := json.Unmarshal(doc, &base); err != nil {
		return nil, internal(err)
	}
	if err := json.Unmarshal(patch, &over); err != nil {
		return nil, &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_REQUEST", Msg: "want a JSON object: " + err.Error()}
	}
	for k, v := range over {
		if string(v) == "null" {
			delete(base, k)
		} else {
			base[k] = v
		}
	}
	b, _ := json.Marshal(base)
	return b, nil
}

// strict decodes a document, refusing unknown fields with the field's name.
func strict(raw []byte, v any) *Error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return badField(typeErr.Field, "want a JSON %s, got %s", typeErr.Type.Kind(), typeErr.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return badField(strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`), "unknown field")
	}
	return &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_REQUEST", Msg: "invalid JSON: " + err.Error()}
}

func checkCommon(c router.Common) *Error {
	if len(c.Description) > 255 {
		return badField("description", "at most 255 characters")
	}
	if len(c.Metadata) > 4096 {
		return badField("metadata", "at most 4096 characters")
	}
	return nil
}

func checkIPPolicy(_ *API, _ *http.Request, _, _ string, raw []byte) (any, *Error) {
	var d router.IPPolicy
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if d.Action != "allow" && d.Action != "deny" {
		return nil, badField("action", "want \"allow\" or \"deny\", got %q", d.Action)
	}
	if len(d.CIDRs) > protocol.MaxCIDRRules {
		return nil, badField("cidrs", "at most %d", protocol.MaxCIDRRules)
	}
	for i, c := range d.CIDRs {
		p, err := module.ParsePrefix(c)
		if err != nil {
			return nil, badField(fmt.Sprintf("cidrs[%d]", i), "%v", err)
		}
		d.CIDRs[i] = p.String()
	}
	return d, checkCommon(d.Common)
}

func checkTunnelGroup(_ *API, _ *http.Request, _, _ string, raw []byte) (any, *Error) {
	var d router.TunnelGroup
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if err := protocol.ValidLabels(d.Labels); err != nil {
		return nil, badField("labels", "%v", err)
	}
	return d, checkCommon(d.Common)
}

// maxBackends bounds the backends of a failover or weighted backend.
const maxBackends = 10

// checkBackendRef checks that id is one of the account's backends (HTTP responses
// only where allowed).
func (a *API) checkBackendRef(r *http.Request, account, self, field, id string, allowResponse bool) *Error {
	if id == "" {
		return badField(field, "a backend id is required")
	}
	if id == self {
		return badField(field, "a backend cannot refer to itself")
	}
	kinds := []string{router.KindTunnelGroup, router.KindFailover, router.KindWeighted}
	if allowResponse {
		kinds = append(kinds, router.KindHTTPResponse)
	}
	for _, k := range kinds {
		if _, err := a.cfg.Store.GetObject(r.Context(), account, k, id); err == nil {
			return nil
		}
	}
	if !allowResponse {
		if _, err := a.cfg.Store.GetObject(r.Context(), account, router.KindHTTPResponse, id); err == nil {
			return badField(field, "%s is an HTTP response backend: only HTTPS edge routes can use it", id)
		}
	}
	return badField(field, "no backend %s in this account", id)
}

func checkFailover(a *API, r *http.Request, account, self string, raw []byte) (any, *Error) {
	var d router.Failover
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if len(d.Backends) == 0 || len(d.Backends) > maxBackends {
		return nil, badField("backends", "want 1 to %d backend ids, in order of preference", maxBackends)
	}
	for i, id := range d.Backends {
		if e := a.checkBackendRef(r, account, self, fmt.Sprintf("backends[%d]", i), id, false); e != nil {
			return nil, e
		}
	}
	return d, checkCommon(d.Common)
}

func checkWeighted(a *API, r *http.Request, account, self string, raw []byte) (any, *Error) {
	var d router.Weighted
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if len(d.Backends) == 0 || len(d.Backends) > maxBackends {
		return nil, badField("backends", "want 1 to %d entries {\"backend id\": weight}", maxBackends)
	}
	for id, wgt := range d.Backends {
		if wgt < 0 || wgt > 10000 {
			return nil, badField("backends."+id, "weight %d: want 0 to 10000", wgt)
		}
		if e := a.checkBackendRef(r, account, self, "backends."+id, id, false); e != nil {
			return nil, e
		}
	}
	return d, checkCommon(d.Common)
}

func checkHTTPResponse(_ *API, _ *http.Request, _, _ string, raw []byte) (any, *Error) {
	var d router.HTTPResponse
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if d.StatusCode < 100 || d.StatusCode > 599 {
		return nil, badField("status_code", "want 100 to 599, got %d", d.StatusCode)
	}
	if len(d.Body) > 64<<10 {
		return nil, badField("body", "at most 64 KiB")
	}
	for k, v := range d.Headers {
		if !validHeaderName(k) || strings.ContainsAny(v, "\r\n") {
			return nil, badField("headers."+k, "not a valid header name and value")
		}
	}
	return d, checkCommon(d.Common)
}

func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}

// checkHostports checks that each name:port is covered by the account's own reserved
// domain and used by no other edge; it returns them normalised ("name:443").
func (a *API) checkHostports(r *http.Request, account, self string, hps []string) ([]string, *Error) {
	if len(hps) == 0 || len(hps) > 10 {
		return nil, badField("hostports", "want 1 to 10 \"name:443\" entries")
	}
	out := make([]string, len(hps))
	for i, hp := range hps {
		field := fmt.Sprintf("hostports[%d]", i)
		host, port, err := net.SplitHostPort(hp)
		if err != nil {
			host, port = hp, "443"
		}
		if port != "443" {
			return nil, badField(field, "port %s: HTTPS and TLS edges serve on the relay's TLS port, write NAME:443", port)
		}
		name, err := reserve.Normalize(host)
		if err != nil {
			return nil, badField(field, "%v", err)
		}
		res, ok := a.cfg.Domains.Lookup(name)
		if !ok || res.AccountID != account {
			return nil, badField(field, "%s is not covered by a reserved domain of this account: reserve it first (POST /reserved_domains)", name)
		}
		out[i] = name + ":443"
		if other, err := a.hostportUser(r.Context(), account, self, out[i]); other != "" || err != nil {
			return nil, inUse(field, out[i], other, err)
		}
	}
	return out, nil
}

// hostportUser returns the edge (other than self) that serves hostport, or "".
func (a *API) hostportUser(ctx context.Context, account, self, hp string) (string, error) {
	return a.edgeWith(ctx, account, self, func(h string) bool { return h == hp })
}

// edgeWith returns the first edge of account (other than self) with a hostport match
// accepts, or "". A store error is returned, never taken for "no edge".
func (a *API) edgeWith(ctx context.Context, account, self string, match func(hostport string) bool) (string, error) {
	all, err := a.cfg.Store.AllObjects(ctx)
	if err != nil {
		return "", err
	}
	for _, o := range all {
		if o.AccountID != account || o.ID == self || !strings.HasPrefix(o.Kind, "edges/") {
			continue
		}
		var d struct {
			Hostports []string `json:"hostports"`
		}
		json.Unmarshal(o.Doc, &d) //nolint:errcheck // written by checkObject
		if slices.ContainsFunc(d.Hostports, match) {
			return o.ID, nil
		}
	}
	return "", nil
}

// inUse answers a hostport already served by another edge.
func inUse(field, hp, other string, err error) *Error {
	if err != nil {
		return internal(err)
	}
	if other != "" {
		return &Error{Status: http.StatusConflict, Code: "FERRY_CONFLICT", Field: field, Msg: fmt.Sprintf("%s: %s is already served by edge %s", field, hp, other)}
	}
	return nil
}

func (a *API) checkIPRestriction(r *http.Request, account, field string, ipr *router.IPRestriction) *Error {
	if ipr == nil {
		return nil
	}
	if len(ipr.IPPolicyIDs) == 0 || len(ipr.IPPolicyIDs) > 10 {
		return badField(field+".ip_policy_ids", "want 1 to 10 IP policy ids")
	}
	for i, id := range ipr.IPPolicyIDs {
		if _, err := a.cfg.Store.GetObject(r.Context(), account, router.KindIPPolicy, id); err != nil {
			return badField(fmt.Sprintf("%s.ip_policy_ids[%d]", field, i), "no IP policy %s in this account", id)
		}
	}
	return nil
}

func (a *API) checkEdgeTLS(r *http.Request, account string, term *router.TLSTermination, mtls *router.MutualTLS, tlsEdge bool) *Error {
	if term != nil {
		if term.MinVersion != "" {
			if _, ok := tlsVersions[term.MinVersion]; !ok {
				return badField("tls_termination.min_version", "want \"1.0\", \"1.1\", \"1.2\" or \"1.3\", got %q", term.MinVersion)
			}
		}
		switch {
		case !tlsEdge && term.TerminateAt != "" && term.TerminateAt != protocol.TerminateEdge:
			return badField("tls_termination.terminate_at", "HTTPS edges terminate at the edge")
		case tlsEdge && term.TerminateAt != "" && term.TerminateAt != protocol.TerminateEdge && term.TerminateAt != protocol.TerminateUpstream:
			return badField("tls_termination.terminate_at", "want \"edge\" or \"upstream\", got %q", term.TerminateAt)
		}
	}
	if tlsEdge && term != nil && term.MinVersion != "" && term.TerminateAt != protocol.TerminateEdge {
		return badField("tls_termination.min_version", "a minimum TLS version needs terminate_at \"edge\": when TLS passes through, the upstream chooses the version")
	}
	if mtls != nil {
		if tlsEdge && (term == nil || term.TerminateAt != protocol.TerminateEdge) {
			return badField("mutual_tls", "mutual TLS needs tls_termination.terminate_at \"edge\": the relay must terminate TLS to check client certificates")
		}
		ids := mtls.CertificateAuthorityIDs
		if len(ids) == 0 || len(ids) > MaxClientCAs {
			return badField("mutual_tls.certificate_authority_ids", "want 1 to %d certificate authority ids", MaxClientCAs)
		}
		for i, id := range ids {
			if _, err := a.cfg.Store.GetCertificateAuthority(r.Context(), account, id); err != nil {
				return badField(fmt.Sprintf("mutual_tls.certificate_authority_ids[%d]", i), "no certificate authority %s in this account", id)
			}
		}
	}
	return nil
}

func checkHTTPSEdge(a *API, r *http.Request, account, self string, raw []byte) (any, *Error) {
	var d router.HTTPSEdge
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	var e *Error
	if d.Hostports, e = a.checkHostports(r, account, self, d.Hostports); e != nil {
		return nil, e
	}
	if e := a.checkEdgeTLS(r, account, d.TLSTermination, d.MutualTLS, false); e != nil {
		return nil, e
	}
	if len(d.Routes) > 100 {
		return nil, badField("routes", "at most 100 routes")
	}
	var stored map[string]router.Route // the routes as stored, for secrets shown hidden
	if self != "" {
		if o, err := a.cfg.Store.GetObject(r.Context(), account, router.KindHTTPSEdge, self); err == nil {
			var old router.HTTPSEdge
			json.Unmarshal(o.Doc, &old) //nolint:errcheck
			stored = make(map[string]router.Route)
			for _, rt := range old.Routes {
				stored[rt.ID] = rt
			}
		}
	}
	seen := map[string]bool{}
	for i := range d.Routes {
		rt := &d.Routes[i]
		if rt.ID == "" {
			rt.ID = store.NewID(router.PrefixRoute)
		}
		if e := restoreHidden(fmt.Sprintf("routes[%d]", i), rt, stored[rt.ID]); e != nil {
			return nil, e
		}
		if e := a.checkRoute(r, account, fmt.Sprintf("routes[%d]", i), rt); e != nil {
			return nil, e
		}
		key := rt.MatchType + " " + rt.Match
		if seen[key] {
			return nil, badField(fmt.Sprintf("routes[%d].match", i), "another route already matches %s %q", rt.MatchType, rt.Match)
		}
		seen[key] = true
	}
	if d.Routes == nil {
		d.Routes = []router.Route{}
	}
	return d, checkCommon(d.Common)
}

func (a *API) checkRoute(r *http.Request, account, field string, rt *router.Route) *Error {
	if rt.MatchType != "exact_path" && rt.MatchType != "path_prefix" {
		return badField(field+".match_type", "want \"exact_path\" or \"path_prefix\", got %q", rt.MatchType)
	}
	if !strings.HasPrefix(rt.Match, "/") || len(rt.Match) > 1024 {
		return badField(field+".match", "want a path starting with /, got %q", rt.Match)
	}
	if rt.Backend == nil {
		return badField(field+".backend", "required: {\"backend_id\": ...}")
	}
	if e := a.checkBackendRef(r, account, "", field+".backend.backend_id", rt.Backend.BackendID, true); e != nil {
		return e
	}
	if e := a.checkIPRestriction(r, account, field+".ip_restriction", rt.IPRestriction); e != nil {
		return e
	}
	if ba := rt.BasicAuth; ba != nil {
		if len(ba.Credentials) == 0 || len(ba.Credentials) > protocol.MaxBasicAuth {
			return badField(field+".basic_auth.credentials", "want 1 to %d \"user:password\" entries", protocol.MaxBasicAuth)
		}
		for i, c := range ba.Credentials {
			user, pass, ok := strings.Cut(c, ":")
			if !ok || user == "" {
				return badField(fmt.Sprintf("%s.basic_auth.credentials[%d]", field, i), "want \"user:password\"")
			}
			if strings.HasPrefix(pass, "$2") && len(pass) == 60 {
				continue // already a bcrypt hash (a stored route checked again)
			}
			if len(pass) < 8 {
				return badField(fmt.Sprintf("%s.basic_auth.credentials[%d]", field, i), "password of %s: at least 8 characters", user)
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.DefaultCost)
			if err != nil {
				return badField(fmt.Sprintf("%s.basic_auth.credentials[%d]", field, i), "%v", err)
			}
			ba.Credentials[i] = user + ":" + string(h)
		}
	}
	if _, err := routerHeaders(rt); err != nil {
		f := field + ".request_headers"
		if strings.Contains(err.Error(), "response_header") {
			f = field + ".response_headers"
		}
		return badField(f, "%v", err)
	}
	if cb := rt.CircuitBreaker; cb != nil && (cb.ErrorThresholdPercentage <= 0 || cb.ErrorThresholdPercentage > 1) {
		return badField(field+".circuit_breaker.error_threshold_percentage", "want a fraction above 0, at most 1 (0.5 = half the answers 5xx)")
	}
	if cfg, ok, err := rt.AuthConfig(); err != nil {
		return badField(field, "%v", err)
	} else if ok {
		cfg.CookieSecret = a.cfg.CookieSecret
		if cfg.Provider == "saml" && a.cfg.SAMLKey != nil {
			if cfg.SPKey, cfg.SPCert, err = a.cfg.SAMLKey(); err != nil {
				return internal(err)
			}
		}
		if _, err := oauth.New(cfg); err != nil {
			return badField(field+"."+authField(rt), "%v", err)
		}
	}
	if wv := rt.WebhookVerification; wv != nil {
		if _, err := webhook.New(webhook.Config{Provider: wv.Provider, Secret: wv.Secret}); err != nil {
			return badField(field+".webhook_verification", "%v", err)
		}
	}
	return nil
}

// authField names the route's authentication module.
func authField(rt *router.Route) string {
	switch {
	case rt.OIDC != nil:
		return "oidc"
	case rt.SAML != nil:
		return "saml"
	}
	return "oauth"
}

// routerHeaders checks a route's header rules by building them.
func routerHeaders(rt *router.Route) (*module.Headers, error) {
	var adds [2][]string
	for i, h := range []*router.Headers{rt.RequestHeaders, rt.ResponseHeaders} {
		if h != nil {
			for k, v := range h.Add {
				adds[i] = append(adds[i], k+": "+v)
			}
		}
	}
	var rr, pr []string
	if rt.RequestHeaders != nil {
		rr = rt.RequestHeaders.Remove
	}
	if rt.ResponseHeaders != nil {
		pr = rt.ResponseHeaders.Remove
	}
	return module.NewHeaders("route", adds[0], rr, adds[1], pr)
}

func checkTLSEdge(a *API, r *http.Request, account, self string, raw []byte) (any, *Error) {
	var d router.TLSEdge
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	var e *Error
	if d.Hostports, e = a.checkHostports(r, account, self, d.Hostports); e != nil {
		return nil, e
	}
	if d.Backend == nil {
		return nil, badField("backend", "required: {\"backend_id\": ...}")
	}
	if e := a.checkBackendRef(r, account, "", "backend.backend_id", d.Backend.BackendID, false); e != nil {
		return nil, e
	}
	if e := a.checkIPRestriction(r, account, "ip_restriction", d.IPRestriction); e != nil {
		return nil, e
	}
	if e := a.checkEdgeTLS(r, account, d.TLSTermination, d.MutualTLS, true); e != nil {
		return nil, e
	}
	return d, checkCommon(d.Common)
}

func checkTCPEdge(a *API, r *http.Request, account, self string, raw []byte) (any, *Error) {
	var d router.TCPEdge
	if e := strict(raw, &d); e != nil {
		return nil, e
	}
	if len(d.Hostports) == 0 || len(d.Hostports) > 10 {
		return nil, badField("hostports", "want 1 to 10 reserved addresses (HOST:PORT from POST /reserved_addrs)")
	}
	for i, hp := range d.Hostports {
		field := fmt.Sprintf("hostports[%d]", i)
		_, p, err := net.SplitHostPort(hp)
		port, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil {
			return nil, badField(field, "want HOST:PORT of a reserved address, got %q", hp)
		}
		if err := a.cfg.Addrs.CanBind(account, port); err != nil {
			return nil, badField(field, "%s is not a reserved address of this account: reserve one with POST /reserved_addrs and use the addr it returns", hp)
		}
		if other, err := a.hostportUser(r.Context(), account, self, hp); other != "" || err != nil {
			return nil, inUse(field, hp, other, err)
		}
	}
	if d.Backend == nil {
		return nil, badField("backend", "required: {\"backend_id\": ...}")
	}
	if e := a.checkBackendRef(r, account, "", "backend.backend_id", d.Backend.BackendID, false); e != nil {
		return nil, e
	}
	if e := a.checkIPRestriction(r, account, "ip_restriction", d.IPRestriction); e != nil {
		return nil, e
	}
	return d, checkCommon(d.Common)
}

// hidden is what answers show in place of a secret.
const hidden = "<hidden>"

// restoreHidden puts back the stored secrets where a route sent back as shown still says
// "<hidden>" (a client that GETs, edits and PATCHes whole routes), and refuses the
// placeholder where there is nothing stored to put back.
func restoreHidden(field string, rt *router.Route, old router.Route) *Error {
	for _, p := range []struct {
		name     string
		cur, was *router.OAuth
	}{{"oauth", rt.OAuth, old.OAuth}, {"oidc", rt.OIDC, old.OIDC}, {"saml", rt.SAML, old.SAML}} {
		if p.cur != nil && p.cur.ClientSecret == hidden {
			if p.was == nil || p.was.ClientSecret == "" {
				return badField(field+"."+p.name+".client_secret", "send the secret itself (%s is how answers hide it)", hidden)
			}
			p.cur.ClientSecret = p.was.ClientSecret
		}
	}
	if w := rt.WebhookVerification; w != nil && w.Secret == hidden {
		if old.WebhookVerification == nil {
			return badField(field+".webhook_verification.secret", "send the secret itself (%s is how answers hide it)", hidden)
		}
		w.Secret = old.WebhookVerification.Secret
	}
	if ba := rt.BasicAuth; ba != nil {
		for i, c := range ba.Credentials {
			user, pass, _ := strings.Cut(c, ":")
			if pass != hidden {
				continue
			}
			found := false
			if old.BasicAuth != nil {
				for _, oc := range old.BasicAuth.Credentials {
					if ou, _, _ := strings.Cut(oc, ":"); ou == user {
						ba.Credentials[i], found = oc, true
					}
				}
			}
			if !found {
				return badField(fmt.Sprintf("%s.basic_auth.credentials[%d]", field, i), "send %s's password itself (%s is how answers hide it)", user, hidden)
			}
		}
	}
	return nil
}

// hideRouteSecrets shows basic-auth users without their hashes and no webhook secrets.
func hideRouteSecrets(doc map[string]any) {
	routes, _ := doc["routes"].([]any)
	for _, r := range routes {
		rt, _ := r.(map[string]any)
		if ba, ok := rt["basic_auth"].(map[string]any); ok {
			creds, _ := ba["credentials"].([]any)
			for i, c := range creds {
				if s, ok := c.(string); ok {
					user, _, _ := strings.Cut(s, ":")
					creds[i] = user + ":" + hidden
				}
			}
		}
		if wv, ok := rt["webhook_verification"].(map[string]any); ok {
			wv["secret"] = hidden
		}
		for _, k := range []string{"oauth", "oidc", "saml"} {
			if m, ok := rt[k].(map[string]any); ok && m["client_secret"] != nil {
				m["client_secret"] = hidden
			}
		}
	}
}

// routeEdgeRoutes adds /edges/https/{id}/routes[/{route_id}] on top of the edge document.
func (a *API) routeEdgeRoutes() {
	k := objectKinds[5] // HTTPS edges
	edgeDoc := func(w http.ResponseWriter, r *http.Request) (router.HTTPSEdge, bool) {
		var d router.HTTPSEdge
		o, err := a.cfg.Store.GetObject(r.Context(), account(r), k.kind, r.PathValue("id"))
		if err != nil {
			writeErr(w, storeErr(k.what, r.PathValue("id"), err))
			return d, false
		}
		json.Unmarshal(o.Doc, &d) //nolint:errcheck
		return d, true
	}
	save := func(w http.ResponseWriter, r *http.Request, d router.HTTPSEdge, status int, routeID string) {
		raw, _ := json.Marshal(d)
		doc, e := k.check(a, r, account(r), r.PathValue("id"), raw)
		if e != nil {
			writeErr(w, e)
			return
		}
		b, _ := json.Marshal(doc)
		o, err := a.cfg.Store.UpdateObject(r.Context(), account(r), k.kind, r.PathValue("id"), b)
		if err != nil {
			writeErr(w, storeErr(k.what, r.PathValue("id"), err))
			return
		}
		a.cfg.Changed()
		out := a.objectOut(k, o)
		for _, rt := range out["routes"].([]any) {
			if m := rt.(map[string]any); m["id"] == routeID {
				m["edge_id"] = o.ID
				writeJSON(w, status, m)
				return
			}
		}
		writeJSON(w, status, out)
	}
	a.mux.HandleFunc("POST /edges/https/{id}/routes", func(w http.ResponseWriter, r *http.Request) {
		d, ok := edgeDoc(w, r)
		if !ok {
			return
		}
		var rt router.Route
		raw, e := readBody(r)
		if e == nil {
			e = strict(raw, &rt)
		}
		if e != nil {
			writeErr(w, e)
			return
		}
		rt.ID = store.NewID(router.PrefixRoute)
		d.Routes = append(d.Routes, rt)
		save(w, r, d, http.StatusCreated, rt.ID)
	})
	find := func(w http.ResponseWriter, r *http.Request, d router.HTTPSEdge) int {
		for i, rt := range d.Routes {
			if rt.ID == r.PathValue("route_id") {
				return i
			}
		}
		writeErr(w, &Error{Status: http.StatusNotFound, Code: "FERRY_NOT_FOUND", Msg: fmt.Sprintf("route %s not found on edge %s", r.PathValue("route_id"), r.PathValue("id"))})
		return -1
	}
	a.mux.HandleFunc("GET /edges/https/{id}/routes/{route_id}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := edgeDoc(w, r)
		if !ok {
			return
		}
		if i := find(w, r, d); i >= 0 {
			b, _ := json.Marshal(map[string]any{"routes": []router.Route{d.Routes[i]}})
			m := map[string]any{}
			json.Unmarshal(b, &m) //nolint:errcheck
			hideRouteSecrets(m)
			out := m["routes"].([]any)[0].(map[string]any)
			out["edge_id"] = r.PathValue("id")
			writeJSON(w, http.StatusOK, out)
		}
	})
	a.mux.HandleFunc("PATCH /edges/https/{id}/routes/{route_id}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := edgeDoc(w, r)
		if !ok {
			return
		}
		i := find(w, r, d)
		if i < 0 {
			return
		}
		raw, e := readBody(r)
		if e != nil {
			writeErr(w, e)
			return
		}
		cur, _ := json.Marshal(d.Routes[i])
		merged, e := mergeTop(cur, raw)
		if e != nil {
			writeErr(w, e)
			return
		}
		var rt router.Route
		if e := strict(merged, &rt); e != nil {
			writeErr(w, e)
			return
		}
		rt.ID = d.Routes[i].ID
		d.Routes[i] = rt
		save(w, r, d, http.StatusOK, rt.ID)
	})
	a.mux.HandleFunc("DELETE /edges/https/{id}/routes/{route_id}", func(w http.ResponseWriter, r *http.Request) {
		d, ok := edgeDoc(w, r)
		if !ok {
			return
		}
		i := find(w, r, d)
		if i < 0 {
			return
		}
		d.Routes = append(d.Routes[:i], d.Routes[i+1:]...)
		raw, _ := json.Marshal(d)
		if _, err := a.cfg.Store.UpdateObject(r.Context(), account(r), k.kind, r.PathValue("id"), raw); err != nil {
			writeErr(w, storeErr(k.what, r.PathValue("id"), err))
			return
		}
		a.cfg.Changed()
		w.WriteHeader(http.StatusNoContent)
	})
}
