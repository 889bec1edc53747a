package router

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/edge"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/module/oauth"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
	"github.com/ferrytunnel/ferry/relay/store"
)

// Router holds the current routing snapshot; Set swaps it atomically.
type Router struct {
	cur atomic.Pointer[Snapshot]
}

// Current returns the snapshot in use (never nil after the first Set).
func (r *Router) Current() *Snapshot { return r.cur.Load() }

// Set installs s and releases the previous snapshot's pools.
func (r *Router) Set(s *Snapshot) {
	if old := r.cur.Swap(s); old != nil {
		old.close()
	}
}

// Snapshot is the compiled set of edges: immutable, consulted on every connection.
type Snapshot struct {
	https   map[string]*httpsEdge
	tls     map[string]*edge.Backend
	tcp     map[int]*edge.Backend
	tlsConf map[string]EdgeTLS
	closers []func()
}

// EdgeTLS are an edge's TLS settings for a name: the lowest version and the client CAs.
type EdgeTLS struct {
	AccountID   string
	MinVersion  string
	ClientCAIDs []string
}

// HTTPS returns the handler of the HTTPS edge serving host, or nil.
func (s *Snapshot) HTTPS(host string) http.Handler {
	if s == nil {
		return nil
	}
	if e := lookup(s.https, host); e != nil {
		return e
	}
	return nil
}

// TLS returns the backend of the TLS edge serving host, or nil.
func (s *Snapshot) TLS(host string) *edge.Backend {
	if s == nil {
		return nil
	}
	return lookup(s.tls, host)
}

// TCP returns the backend of the TCP edge on port, or nil.
func (s *Snapshot) TCP(port int) *edge.Backend {
	if s == nil {
		return nil
	}
	return s.tcp[port]
}

// TCPPorts lists the ports TCP edges need listeners on.
func (s *Snapshot) TCPPorts() []int {
	if s == nil {
		return nil
	}
	var out []int
	for p := range s.tcp {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// TLSSettings returns the TLS settings of the HTTPS or TLS edge serving host.
func (s *Snapshot) TLSSettings(host string) (EdgeTLS, bool) {
	if s == nil {
		return EdgeTLS{}, false
	}
	if t, ok := s.tlsConf[host]; ok {
		return t, true
	}
	rest := host
	for {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return EdgeTLS{}, false
		}
		rest = rest[i+1:]
		if t, ok := s.tlsConf["*."+rest]; ok {
			return t, true
		}
	}
}

func (s *Snapshot) close() {
	for _, c := range s.closers {
		c()
	}
}

// lookup finds host exactly, else under the most specific wildcard.
func lookup[V any](m map[string]*V, host string) *V {
	if v := m[host]; v != nil {
		return v
	}
	rest := host
	for {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return nil
		}
		rest = rest[i+1:]
		if v := m["*."+rest]; v != nil {
			return v
		}
	}
}

// Deps are what compiled edges use at run time.
type Deps struct {
	Table *route.Table
	Log   *slog.Logger
	// Observer reports requests, connections and refusals (nil: none).
	Observer *route.Observer
	// CookieSecret keys the oauth/oidc/saml session cookies (stable across restarts).
	CookieSecret []byte
	// SAMLKey returns the relay's SAML service-provider key and certificate.
	SAMLKey func() (crypto.Signer, *x509.Certificate, error)
	// AuthClient calls OAuth/OIDC providers (nil: the module's default client).
	AuthClient *http.Client
	// Breakers keeps routes' circuit breakers across compiles (keyed by route id and
	// threshold), so an unrelated API change does not close an open circuit; nil: fresh.
	Breakers *sync.Map
}

// Compile builds a snapshot from every stored object. An object that cannot be compiled
// (the API checks them, so only a reference deleted since) is logged and skipped, or its
// route answers with an error page; it never stops the others.
func Compile(objs []store.Object, d Deps) *Snapshot {
	c := &compiler{d: d, byID: make(map[string]store.Object), backends: make(map[string]backend),
		s: &Snapshot{https: make(map[string]*httpsEdge), tls: make(map[string]*edge.Backend), tcp: make(map[int]*edge.Backend), tlsConf: make(map[string]EdgeTLS)}}
	for _, o := range objs {
		c.byID[o.ID] = o
	}
	for _, o := range objs {
		var err error
		switch o.Kind {
		case KindHTTPSEdge:
			err = c.httpsEdge(o)
		case KindTLSEdge:
			err = c.tlsEdge(o)
		case KindTCPEdge:
			err = c.tcpEdge(o)
		}
		if err != nil {
			d.Log.Error("edge not served", "id", o.ID, "kind", o.Kind, "err", err)
		}
	}
	return c.s
}

type compiler struct {
	d        Deps
	byID     map[string]store.Object
	backends map[string]backend
	s        *Snapshot
}

// hostOf strips the port of a hostport.
func hostOf(hp string) string {
	if h, _, err := net.SplitHostPort(hp); err == nil {
		return sni.Normalize(h)
	}
	return sni.Normalize(hp)
}

func (c *compiler) httpsEdge(o store.Object) error {
	var doc HTTPSEdge
	if err := json.Unmarshal(o.Doc, &doc); err != nil {
		return err
	}
	if len(doc.Hostports) == 0 {
		return errors.New("no hostports")
	}
	name := hostOf(doc.Hostports[0])
	log := c.d.Log.With("edge", o.ID, "name", name)
	e := &httpsEdge{name: name}
	for _, rt := range doc.Routes {
		h, err := c.routeHandler(o.AccountID, name, rt, log)
		if err != nil {
			log.Error("route not served", "route", rt.ID, "err", err)
			h = errorHandler(http.StatusBadGateway, "Bad gateway", fmt.Sprintf("Route %s of %s is misconfigured: %v", rt.Match, name, err))
		}
		url := "https://" + name
		h = c.d.Observer.HTTP(o.AccountID, o.ID, func() string { return url }, h)
		r := compiledRoute{exact: rt.MatchType == "exact_path", match: rt.Match, h: h}
		e.routes = append(e.routes, r)
		if (rt.OAuth != nil || rt.OIDC != nil || rt.SAML != nil) && e.login == nil {
			e.login = h // answers /oauth2/* and /saml/* whatever the routes' paths
		}
	}
	// Exact paths first, then the longest prefix: the most specific route wins.
	slices.SortStableFunc(e.routes, func(a, b compiledRoute) int {
		if a.exact != b.exact {
			if a.exact {
				return -1
			}
			return 1
		}
		return cmp.Compare(len(b.match), len(a.match))
	})
	for _, hp := range doc.Hostports {
		h := hostOf(hp)
		c.s.https[h] = e
		c.s.tlsConf[h] = edgeTLS(o.AccountID, doc.TLSTermination, doc.MutualTLS)
	}
	return nil
}

func edgeTLS(account string, term *TLSTermination, mtls *MutualTLS) EdgeTLS {
	t := EdgeTLS{AccountID: account}
	if term != nil {
		t.MinVersion = term.MinVersion
	}
	if mtls != nil {
		t.ClientCAIDs = mtls.CertificateAuthorityIDs
	}
	return t
}

func (c *compiler) routeHandler(account, name string, rt Route, log *slog.Logger) (http.Handler, error) {
	m := edge.HTTPModules{Name: name, Log: log, Observer: c.d.Observer}
	var err error
	if m.IPPolicy, err = c.ipPolicy(account, rt.IPRestriction); err != nil {
		return nil, err
	}
	if rt.BasicAuth != nil {
		if m.BasicAuth, err = module.NewBasicAuth(rt.BasicAuth.Credentials); err != nil {
			return nil, err
		}
	}
	if w := rt.WebhookVerification; w != nil {
		v, err := webhook.New(webhook.Config{Provider: w.Provider, Secret: w.Secret})
		if err != nil {
			return nil, err
		}
		m.Webhook = v
	}
	if cb := rt.CircuitBreaker; cb != nil {
		key := fmt.Sprintf("%s|%g", rt.ID, cb.ErrorThresholdPercentage)
		var kept any
		if c.d.Breakers != nil {
			kept, _ = c.d.Breakers.Load(key)
		}
		if b, ok := kept.(*module.Breaker); ok {
			m.Breaker = b
		} else {
			if m.Breaker, err = module.NewBreaker(name+rt.Match, cb.ErrorThresholdPercentage); err != nil {
				return nil, err
			}
			if c.d.Breakers != nil {
				c.d.Breakers.Store(key, m.Breaker)
			}
		}
	}
	m.Compression = rt.Compression != nil && rt.Compression.Enabled
	if cfg, ok, err := rt.AuthConfig(); err != nil {
		return nil, err
	} else if ok {
		cfg.CookieSecret, cfg.Logger, cfg.HTTPClient = c.d.CookieSecret, log, c.d.AuthClient
		cfg.OnReject = func() { c.d.Observer.Rejected("oauth") }
		if cfg.Provider == "saml" {
			if c.d.SAMLKey == nil {
				return nil, errors.New("saml: the relay has no service-provider key")
			}
			if cfg.SPKey, cfg.SPCert, err = c.d.SAMLKey(); err != nil {
				return nil, err
			}
		}
		mw, err := oauth.New(cfg)
		if err != nil {
			return nil, err
		}
		m.Auth = mw
	}
	headers, err := compileHeaders(name, rt.RequestHeaders, rt.ResponseHeaders)
	if err != nil {
		return nil, err
	}
	if rt.Backend == nil {
		return nil, errors.New("no backend")
	}
	if hr, ok := c.byID[rt.Backend.BackendID]; ok && hr.Kind == KindHTTPResponse && hr.AccountID == account {
		var doc HTTPResponse
		if err := json.Unmarshal(hr.Doc, &doc); err != nil {
			return nil, err
		}
		return m.Wrap(fixedResponse(doc)), nil
	}
	b := c.backend(account, rt.Backend.BackendID, 0)
	proxy := edge.NewProxy(edge.ProxyConfig{Name: name, Log: log, Headers: headers, Transport: balancer{b}})
	return m.Wrap(proxy), nil
}

func compileHeaders(name string, req, resp *Headers) (*module.Headers, error) {
	if req == nil && resp == nil {
		return nil, nil
	}
	adds := func(h *Headers) (add, remove []string) {
		if h == nil {
			return nil, nil
		}
		for _, k := range slices.Sorted(maps.Keys(h.Add)) {
			add = append(add, k+": "+h.Add[k])
		}
		return add, h.Remove
	}
	ra, rr := adds(req)
	pa, pr := adds(resp)
	return module.NewHeaders(name, ra, rr, pa, pr)
}

func fixedResponse(doc HTTPResponse) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range doc.Headers {
			w.Header().Set(k, v)
		}
		if w.Header().Get("Content-Type") == "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(doc.Body)))
		w.WriteHeader(doc.StatusCode)
		w.Write([]byte(doc.Body)) //nolint:errcheck // the client went away
	})
}

func errorHandler(code int, title, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Ferry-Error", fmt.Sprintf("%d %s", code, title))
		http.Error(w, msg, code)
	})
}

func (c *compiler) ipPolicy(account string, r *IPRestriction) (*module.IPPolicy, error) {
	if r == nil || len(r.IPPolicyIDs) == 0 {
		return nil, nil
	}
	var allow, deny []string
	for _, id := range r.IPPolicyIDs {
		o, ok := c.byID[id]
		if !ok || o.Kind != KindIPPolicy || o.AccountID != account {
			return nil, fmt.Errorf("IP policy %s not found", id)
		}
		var p IPPolicy
		if err := json.Unmarshal(o.Doc, &p); err != nil {
			return nil, err
		}
		if p.Action == "deny" {
			deny = append(deny, p.CIDRs...)
		} else {
			allow = append(allow, p.CIDRs...)
		}
	}
	if len(allow) == 0 && len(deny) == 0 {
		// Policies with no CIDRs: an allow list that allows nothing is still a list.
		return module.NewIPPolicy(nil, []string{"0.0.0.0/0", "::/0"})
	}
	return module.NewIPPolicy(allow, deny)
}

func (c *compiler) tlsEdge(o store.Object) error {
	var doc TLSEdge
	if err := json.Unmarshal(o.Doc, &doc); err != nil {
		return err
	}
	b, err := c.connBackend(o.AccountID, o.ID, doc.Hostports, doc.Backend, doc.IPRestriction)
	if err != nil {
		return err
	}
	b.Name = "tls://" + hostOf(doc.Hostports[0])
	if doc.TLSTermination != nil && doc.TLSTermination.TerminateAt == protocol.TerminateEdge {
		b.TerminateAt = protocol.TerminateEdge
	}
	for _, hp := range doc.Hostports {
		h := hostOf(hp)
		c.s.tls[h] = b
		c.s.tlsConf[h] = edgeTLS(o.AccountID, doc.TLSTermination, doc.MutualTLS)
	}
	return nil
}

func (c *compiler) tcpEdge(o store.Object) error {
	var doc TCPEdge
	if err := json.Unmarshal(o.Doc, &doc); err != nil {
		return err
	}
	b, err := c.connBackend(o.AccountID, o.ID, doc.Hostports, doc.Backend, doc.IPRestriction)
	if err != nil {
		return err
	}
	b.Name = "tcp://" + doc.Hostports[0]
	for _, hp := range doc.Hostports {
		_, p, err := net.SplitHostPort(hp)
		port, err2 := strconv.Atoi(p)
		if err != nil || err2 != nil {
			return fmt.Errorf("hostport %q: want HOST:PORT", hp)
		}
		c.s.tcp[port] = b
	}
	return nil
}

func (c *compiler) connBackend(account, id string, hostports []string, ref *BackendRef, ipr *IPRestriction) (*edge.Backend, error) {
	if len(hostports) == 0 {
		return nil, errors.New("no hostports")
	}
	if ref == nil {
		return nil, errors.New("no backend")
	}
	pol, err := c.ipPolicy(account, ipr)
	if err != nil {
		return nil, err
	}
	b := c.backend(account, ref.BackendID, 0)
	return &edge.Backend{Name: hostports[0], ID: id, AccountID: account, IPPolicy: pol, Log: c.d.Log.With("edge", id, "name", hostports[0]),
		Dial: func(ctx context.Context, proto protocol.StreamProto, client, host string) (transport.Stream, error) {
			return dial(ctx, b, proto, client, host)
		}}, nil
}

// maxBackendDepth bounds nested failover/weighted backends (and so reference cycles).
const maxBackendDepth = 5

// backend compiles the backend id of account (memoised).
func (c *compiler) backend(account, id string, depth int) backend {
	if b, ok := c.backends[id]; ok {
		return b
	}
	o, ok := c.byID[id]
	if !ok || o.AccountID != account || depth > maxBackendDepth {
		return missing{id}
	}
	var b backend = missing{id}
	switch o.Kind {
	case KindTunnelGroup:
		var doc TunnelGroup
		if json.Unmarshal(o.Doc, &doc) == nil {
			b = &group{table: c.d.Table, account: account, labels: doc.Labels}
		}
	case KindFailover:
		var doc Failover
		if json.Unmarshal(o.Doc, &doc) == nil {
			f := &failover{}
			for _, sub := range doc.Backends {
				f.list = append(f.list, c.backend(account, sub, depth+1))
			}
			b = f
		}
	case KindWeighted:
		var doc Weighted
		if json.Unmarshal(o.Doc, &doc) == nil {
			w := &weighted{}
			for _, sub := range slices.Sorted(maps.Keys(doc.Backends)) {
				w.list = append(w.list, c.backend(account, sub, depth+1))
				w.weights = append(w.weights, doc.Backends[sub])
			}
			b = w
		}
	}
	c.backends[id] = b
	return b
}

// backend picks tunnels for a connection.
type backend interface {
	// candidates returns the tunnels to try, most preferred first.
	candidates() []*route.Tunnel
}

// missing is a backend that was deleted or never existed.
type missing struct{ id string }

func (missing) candidates() []*route.Tunnel { return nil }

// group balances over the account's online tunnels carrying every label, round robin.
type group struct {
	table   *route.Table
	account string
	labels  map[string]string
	next    atomic.Uint64
}

func (g *group) candidates() []*route.Tunnel {
	ts := g.table.Group(g.account, g.labels)
	if len(ts) > 1 {
		k := int(g.next.Add(1) % uint64(len(ts)))
		ts = append(ts[k:], ts[:k]...)
	}
	return ts
}

// failover prefers its backends in order: the next one's tunnels come after.
type failover struct{ list []backend }

func (f *failover) candidates() []*route.Tunnel {
	var out []*route.Tunnel
	for _, b := range f.list {
		out = append(out, b.candidates()...)
	}
	return out
}

// weighted picks one of its backends that has tunnels, in proportion to the weights;
// the others' tunnels follow as a fallback.
type weighted struct {
	list    []backend
	weights []int
}

func (w *weighted) candidates() []*route.Tunnel {
	per := make([][]*route.Tunnel, len(w.list))
	total := 0
	for i, b := range w.list {
		per[i] = b.candidates()
		if len(per[i]) > 0 {
			total += w.weights[i]
		}
	}
	if total == 0 {
		return nil
	}
	pick := rand.IntN(total)
	first := 0
	for i := range w.list {
		if len(per[i]) == 0 {
			continue
		}
		if pick < w.weights[i] {
			first = i
			break
		}
		pick -= w.weights[i]
	}
	out := append([]*route.Tunnel(nil), per[first]...)
	for i := range per {
		if i != first {
			out = append(out, per[i]...)
		}
	}
	return out
}

// ErrNoTunnel says no online tunnel serves a backend.
var ErrNoTunnel = edge.ErrNoTunnel

type readier interface{ Ready() error }

// dial opens a stream to the first candidate that takes it. With more than one
// candidate, each stream waits for the agent's answer, so a tunnel whose upstream
// refuses is skipped for the next (failover); a single candidate answers lazily.
func dial(ctx context.Context, b backend, proto protocol.StreamProto, client, host string) (transport.Stream, error) {
	cands := b.candidates()
	if len(cands) == 0 {
		return nil, ErrNoTunnel
	}
	var last error
	for i, t := range cands {
		st, err := t.Dial(ctx, proto, client, host)
		if err != nil {
			last = err
			continue
		}
		if i < len(cands)-1 {
			if r, ok := st.(readier); ok {
				if err := r.Ready(); err != nil {
					st.Close()
					last = err
					continue
				}
			}
		}
		return st, nil
	}
	return nil, last
}

// balancer sends each request to the backend's first candidate tunnel (over that
// tunnel's pooled streams), so groups balance and weights apply per request; when the
// request can be sent again (no body), a tunnel that fails is skipped for the next.
type balancer struct{ b backend }

func (bl balancer) RoundTrip(req *http.Request) (*http.Response, error) {
	cands := bl.b.candidates()
	if len(cands) == 0 {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, ErrNoTunnel
	}
	var last error
	for i, t := range cands {
		if i > 0 && req.Body != nil && req.Body != http.NoBody {
			break // the body went to the first tunnel
		}
		if t.Transport == nil {
			continue
		}
		resp, err := t.Transport.RoundTrip(req)
		if err == nil && resp.StatusCode == http.StatusBadGateway && resp.Header.Get("Ferry-Error") != "" &&
			i < len(cands)-1 && (req.Body == nil || req.Body == http.NoBody) {
			// The agent answered for its upstream (it inspects HTTP, so it took the
			// stream before dialing): that upstream refused; try the next tunnel.
			resp.Body.Close()
			last = fmt.Errorf("tunnel %s: upstream refused", t.Name)
			continue
		}
		if err == nil {
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		last = err
	}
	return nil, last
}

// httpsEdge routes a request by path to the most specific route.
type httpsEdge struct {
	name   string
	routes []compiledRoute
	// login is the first route with a login module: the provider's callback comes back
	// to /oauth2/callback (or /saml/acs), which a route for /app/ would not match.
	login http.Handler
}

type compiledRoute struct {
	exact bool
	match string
	h     http.Handler
}

func (e *httpsEdge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if e.login != nil && (strings.HasPrefix(p, "/oauth2/") || strings.HasPrefix(p, "/saml/")) {
		e.login.ServeHTTP(w, r)
		return
	}
	for _, rt := range e.routes {
		if rt.exact && p == rt.match || !rt.exact && strings.HasPrefix(p, rt.match) {
			rt.h.ServeHTTP(w, r)
			return
		}
	}
	w.Header().Set("Ferry-Error", "404 No route")
	http.Error(w, fmt.Sprintf("No route of %s matches %s.", e.name, p), http.StatusNotFound)
}
