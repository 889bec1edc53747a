// Package api is the relay's management API: a JSON REST API on its own listener
// (--api-addr, default 127.0.0.1:4041) with resource names and fields shaped like
// ngrok's (reserved_domains, tls_certificates, certificate_authorities, reserved_addrs,
// credentials, api_keys). Every request carries an API key as a bearer token; a key sees
// and changes only its own account's objects.
//
// Errors are JSON: {"error_code": "FERRY_...", "status_code": 400, "msg": "...",
// "details": {"field": "domain"}} — error_code is stable for scripts, msg names the
// field and the fix. Lists are newest first and paged with ?limit=N&before_id=ID; the
// answer's next_page_uri is null on the last page.
package api

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/ferrytunnel/ferry/relay/cert"
	"github.com/ferrytunnel/ferry/relay/events"
	"github.com/ferrytunnel/ferry/relay/reserve"
	"github.com/ferrytunnel/ferry/relay/store"
)

// MaxBody bounds a request body (a certificate bundle with its key fits many times over).
const MaxBody = 1 << 20

// Certificates is what the API needs from the relay's automated-certificate manager.
type Certificates interface {
	// Manage starts obtaining (and then renewing) a certificate for domain; Unmanage stops.
	Manage(domain string)
	Unmanage(domain string)
	// Status is the provisioning state shown as certificate_management_status.
	Status(domain string) (store.CertStatus, bool)
	// ChallengeTarget is the acme_challenge_cname_target of a wildcard domain.
	ChallengeTarget(domain string) string
}

// Config configures the API.
type Config struct {
	Store  *store.Store
	Keybox *cert.Keybox
	// Domains and Addrs are the relay's in-memory reservations, kept in step with the store.
	Domains *reserve.Domains
	Addrs   *reserve.Addrs
	// ACME manages automated certificates (nil: not available on this relay).
	ACME Certificates
	// CNAMETarget is the host users point their custom domains' CNAME records at.
	CNAMETarget string
	// AddrHost is the host shown in reserved addresses (the relay's domain); TCPLow and
	// TCPHigh bound the relay's tcp port range, where reserved addresses are picked.
	AddrHost        string
	TCPLow, TCPHigh int
	// PortFree reports whether a port can be listened on now (nil: assume it can).
	PortFree func(port int) bool
	// Changed runs after a reservation, certificate, edge, backend or IP policy changes
	// (the relay drops cached TLS state and compiles its edges again).
	Changed func()
	// Revoked runs after an agent credential (authtoken) is deleted: the relay ends the
	// sessions that authenticated with it (nil: nothing).
	Revoked func(credentialID string)
	// Unreserved runs after an account's reserved domain is deleted: the relay ends the
	// sessions serving names only it covered (nil: nothing).
	Unreserved func(account, name string)
	// CookieSecret and SAMLKey are what oauth/oidc/saml route modules are built with
	// (to check them as the relay will build them).
	CookieSecret []byte
	SAMLKey      func() (crypto.Signer, *x509.Certificate, error)
	// Events checks event subscriptions' destinations (nil: only their shape is checked).
	Events *events.Bus
	// Tunnels lists the account's online labeled tunnels matching labels (shown on tunnel
	// group backends); nil shows none.
	Tunnels func(account string, labels map[string]string) []map[string]any
	Log     *slog.Logger
}

// API serves the management API.
type API struct {
	cfg Config
	mux *http.ServeMux
}

// New returns the API handler.
func New(cfg Config) *API {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Changed == nil {
		cfg.Changed = func() {}
	}
	if cfg.Revoked == nil {
		cfg.Revoked = func(string) {}
	}
	if cfg.Unreserved == nil {
		cfg.Unreserved = func(string, string) {}
	}
	a := &API{cfg: cfg, mux: http.NewServeMux()}
	a.routeDomains()
	a.routeCertificates()
	a.routeAddrs()
	a.routeKeys()
	a.routeObjects()
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeErr(w, &Error{Status: http.StatusNotFound, Code: "FERRY_NOT_FOUND",
			Msg: fmt.Sprintf("no such resource: %s %s (see docs/api.md for the list)", r.Method, r.URL.Path)})
	})
	return a
}

// ServeHTTP authenticates the API key and dispatches.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || key == "" {
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry-relay"`)
		writeErr(w, &Error{Status: http.StatusUnauthorized, Code: "FERRY_AUTH_REQUIRED",
			Msg: "missing API key: send 'Authorization: Bearer KEY' (create one with: ferry-relay apikey create --account NAME)"})
		return
	}
	k, err := a.cfg.Store.VerifyAPIKey(r.Context(), key)
	if err != nil {
		if !errors.Is(err, store.ErrUnknownToken) {
			a.cfg.Log.Error("api key check", "err", err)
			writeErr(w, internal(err))
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="ferry-relay", error="invalid_token"`)
		writeErr(w, &Error{Status: http.StatusUnauthorized, Code: "FERRY_AUTH_FAILED", Msg: "API key not recognised by this relay"})
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxBody)
	a.mux.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), accountKey{}, k.AccountID)))
}

type accountKey struct{}

func account(r *http.Request) string { return r.Context().Value(accountKey{}).(string) }

// Error is an API error answer.
type Error struct {
	Status int    `json:"status_code"`
	Code   string `json:"error_code"`
	Msg    string `json:"msg"`
	Field  string `json:"-"`
}

func (e *Error) Error() string { return e.Msg }

func badField(field, format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_FIELD", Field: field,
		Msg: field + ": " + fmt.Sprintf(format, args...)}
}

func internal(err error) *Error {
	return &Error{Status: http.StatusInternalServerError, Code: "FERRY_INTERNAL", Msg: "internal error: " + err.Error()}
}

// storeErr maps a store error to an API error about the resource kind and id.
func storeErr(kind, id string, err error) *Error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &Error{Status: http.StatusNotFound, Code: "FERRY_NOT_FOUND", Msg: fmt.Sprintf("%s %s not found", kind, id)}
	case errors.Is(err, store.ErrConflict):
		return &Error{Status: http.StatusConflict, Code: "FERRY_CONFLICT", Msg: err.Error()}
	case errors.Is(err, store.ErrInvalid):
		field := ""
		for _, f := range []string{"description", "metadata"} {
			if strings.Contains(err.Error(), f) {
				field = f
			}
		}
		return &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_FIELD", Field: field, Msg: err.Error()}
	case errors.Is(err, store.ErrInUse):
		return &Error{Status: http.StatusConflict, Code: "FERRY_IN_USE", Msg: fmt.Sprintf("%s %s is in use: %v", kind, id, err)}
	}
	return internal(err)
}

func writeErr(w http.ResponseWriter, e *Error) {
	body := map[string]any{"error_code": e.Code, "status_code": e.Status, "msg": e.Msg, "details": map[string]string{}}
	if e.Field != "" {
		body["details"] = map[string]string{"field": e.Field}
	}
	writeJSON(w, e.Status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	enc.Encode(v) //nolint:errcheck // the client went away
}

// decode reads a JSON body into v, refusing unknown fields, bad types and trailing data
// with a message naming the field.
func decode(r *http.Request, v any) *Error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	var (
		typeErr *json.UnmarshalTypeError
		syntax  *json.SyntaxError
		maxErr  *http.MaxBytesError
	)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, io.EOF):
		return &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_REQUEST", Msg: "empty body: send a JSON object"}
	case errors.As(err, &maxErr):
		return &Error{Status: http.StatusRequestEntityTooLarge, Code: "FERRY_TOO_LARGE", Msg: fmt.Sprintf("body larger than %d bytes", MaxBody)}
	case errors.As(err, &typeErr):
		return badField(typeErr.Field, "want a JSON %s, got %s", typeErr.Type.Kind(), typeErr.Value)
	case errors.As(err, &syntax):
		return &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_REQUEST", Msg: fmt.Sprintf("invalid JSON at byte %d: %v", syntax.Offset, err)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return badField(f, "unknown field")
	}
	return &Error{Status: http.StatusBadRequest, Code: "FERRY_BAD_REQUEST", Msg: "invalid JSON: " + err.Error()}
}

// page reads ?limit and ?before_id.
func page(r *http.Request) (store.Page, *Error) {
	q := r.URL.Query()
	p := store.Page{BeforeID: q.Get("before_id")}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 1000 {
			return p, badField("limit", "want a number from 1 to 1000, got %q", l)
		}
		p.Limit = n
	}
	return p, nil
}

// list writes a list answer {"<kind>": [...], "uri": ..., "next_page_uri": ...}.
func list[T any](w http.ResponseWriter, r *http.Request, kind string, items []T, next string) {
	if items == nil {
		items = []T{}
	}
	var nextURI *string
	if next != "" {
		q := url.Values{"before_id": {next}}
		if l := r.URL.Query().Get("limit"); l != "" {
			q.Set("limit", l)
		}
		u := r.URL.Path + "?" + q.Encode()
		nextURI = &u
	}
	writeJSON(w, http.StatusOK, map[string]any{kind: items, "uri": r.URL.RequestURI(), "next_page_uri": nextURI})
}

// ref is a reference to another object: {"id": ..., "uri": ...}.
type ref struct {
	ID  string `json:"id"`
	URI string `json:"uri"`
}

func refTo(collection, id string) *ref {
	if id == "" {
		return nil
	}
	return &ref{ID: id, URI: "/" + collection + "/" + id}
}

// common fields of every object.
type meta struct {
	ID          string    `json:"id"`
	URI         string    `json:"uri"`
	CreatedAt   time.Time `json:"created_at"`
	Description string    `json:"description"`
	Metadata    string    `json:"metadata"`
}

func metaOf(collection, id string, created time.Time, desc, md string) meta {
	return meta{ID: id, URI: "/" + collection + "/" + id, CreatedAt: created.UTC(), Description: desc, Metadata: md}
}

// optString is a PATCH field: absent leaves the value, present sets it.
type optString = *string

func apply(dst *string, v optString) {
	if v != nil {
		*dst = *v
	}
}
