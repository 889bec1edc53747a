// Package route is the relay's table of online tunnels: which tunnel serves a hostname
// (http and tls tunnels) or a public TCP port (tcp tunnels), and how to open a stream to
// the agent behind it.
package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
)

// Opener opens streams to the agent that serves a tunnel (an agent session).
type Opener interface {
	OpenStream(ctx context.Context) (transport.Stream, error)
}

// Tunnel is one bound tunnel on the relay.
type Tunnel struct {
	// ID is the agent's tunnel id, echoed in every stream header (unique per session only).
	ID uint32
	// PublicID ("tn_…") is unique across sessions, relays and restarts: events and the
	// API name the tunnel by it.
	PublicID string
	// Name is the agent's name for the tunnel (for logs).
	Name string
	// Proto is http, tcp or tls.
	Proto string
	// Host is the public hostname (http, tls); Port the public port (tcp).
	Host string
	Port int
	// TerminateAt is where TLS ends for tls tunnels (edge, agent, upstream).
	TerminateAt string
	// ClientCAs, when set, makes the edge require client certificates (edge termination).
	ClientCAs *x509.CertPool
	// EdgeTLS is the termination config that enforces ClientCAs.
	EdgeTLS *tls.Config
	// IPPolicy restricts client addresses (nil: everyone); BasicAuth guards http tunnels.
	IPPolicy  *module.IPPolicy
	BasicAuth *module.BasicAuth
	// Headers adds and removes request and response headers (http).
	Headers *module.Headers
	// Compression compresses responses; Breaker answers 503 while the upstream fails (http).
	Compression bool
	Breaker     *module.Breaker
	// Webhook checks a webhook provider's signature on each request (http).
	Webhook *webhook.Verifier
	// Auth requires a browser login (OAuth/OIDC) before requests pass (http).
	Auth Middleware
	// URLs are the public URLs (none for labeled tunnels).
	URLs []string
	// AccountID owns the tunnel; Labels are a labeled tunnel's labels.
	AccountID string
	// Streams bounds the connections open to the account's agents (shared by all its
	// tunnels; nil: no limit).
	Streams *StreamLimit
	Labels  map[string]string
	// Session opens streams to the agent.
	Session Opener
	// Log carries the tunnel's fields.
	Log *slog.Logger

	// Handler serves HTTP requests for http tunnels (set by the edge); Transport carries
	// requests to the agent over pooled streams (edges balancing over tunnels use it).
	Handler   http.Handler
	Transport http.RoundTripper
	// OnClose runs once when the tunnel is removed (closes listeners and pools).
	OnClose func()
}

// Middleware wraps an HTTP handler: webhook verification, a login module.
type Middleware interface {
	Wrap(next http.Handler) http.Handler
}

// Dial opens a stream to the agent for one public connection and writes the stream
// header. The agent's StreamResp is read by the first Read, so the client's first bytes
// go out without waiting a round trip; a refused stream makes that Read return the
// agent's *protocol.Error.
func (t *Tunnel) Dial(ctx context.Context, proto protocol.StreamProto, clientAddr, host string) (transport.Stream, error) {
	if !t.Streams.acquire() {
		return nil, fmt.Errorf("tunnel %s: %w", t.Name, ErrTooManyStreams)
	}
	st, err := t.Session.OpenStream(ctx)
	if err != nil {
		t.Streams.release()
		return nil, fmt.Errorf("open stream to agent for %s: %w", t.Host, err)
	}
	h := protocol.StreamHeader{TunnelID: t.ID, Proto: proto, ClientAddr: clientAddr, Host: host}
	var buf [protocol.HeaderLen + 6 + 2*255]byte
	b, err := h.AppendFrame(buf[:0])
	if err != nil {
		st.Abort(protocol.CodeProtocol)
		t.Streams.release()
		return nil, err
	}
	if _, err := st.Write(b); err != nil {
		st.Abort(protocol.CodeInternal)
		t.Streams.release()
		return nil, fmt.Errorf("write stream header: %w", err)
	}
	return &stream{Stream: st, limit: t.Streams}, nil
}

// ErrTooManyStreams says an account has as many connections open as the relay allows.
var ErrTooManyStreams = errors.New("the account has the most connections open this relay allows (max_streams_per_account)")

// StreamLimit counts the streams (public connections) open to one account's agents.
// A nil limit counts nothing.
type StreamLimit struct {
	max int64
	n   atomic.Int64
}

// NewStreamLimit returns a limit of max open streams (max <= 0: none).
func NewStreamLimit(max int) *StreamLimit {
	if max <= 0 {
		return nil
	}
	return &StreamLimit{max: int64(max)}
}

func (l *StreamLimit) acquire() bool {
	if l == nil {
		return true
	}
	if l.n.Add(1) > l.max {
		l.n.Add(-1)
		return false
	}
	return true
}

func (l *StreamLimit) release() {
	if l != nil {
		l.n.Add(-1)
	}
}

// stream reads the agent's StreamResp before the first byte of data.
type stream struct {
	transport.Stream
	once    sync.Once
	respErr error
	limit   *StreamLimit
	closed  sync.Once
}

// Close closes the stream and gives its slot back to the account's limit.
func (s *stream) Close() error {
	s.closed.Do(s.limit.release)
	return s.Stream.Close()
}

// Abort resets the stream and gives its slot back.
func (s *stream) Abort(code protocol.ErrorCode) {
	s.closed.Do(s.limit.release)
	s.Stream.Abort(code)
}

func (s *stream) Read(p []byte) (int, error) {
	if err := s.resp(); err != nil {
		return 0, err
	}
	return s.Stream.Read(p)
}

// Write reports the agent's refusal rather than the bare write error when the agent
// refused the stream: its StreamResp arrived before it stopped reading.
func (s *stream) Write(p []byte) (int, error) {
	n, err := s.Stream.Write(p)
	if err != nil {
		s.Stream.SetReadDeadline(time.Now().Add(time.Second))
		if rerr := s.resp(); rerr != nil {
			var perr *protocol.Error
			if errors.As(rerr, &perr) {
				return n, perr
			}
		}
	}
	return n, err
}

// Ready waits for the agent's answer to the stream header: nil when the agent reached
// its upstream, its *protocol.Error otherwise (failover tries the next backend).
func (s *stream) Ready() error { return s.resp() }

func (s *stream) resp() error {
	s.once.Do(func() { s.respErr = protocol.ReadStreamResp(s.Stream) })
	return s.respErr
}

// Table maps public hostnames and ports to online tunnels. It is safe for concurrent use;
// lookups take a read lock only.
type Table struct {
	mu    sync.RWMutex
	hosts map[string]*Tunnel // exact names and "*.suffix" wildcards
	ports map[int]*Tunnel
	// wildcards counts the "*." entries in hosts, so lookups skip the suffix walk
	// while no wildcard tunnel is online.
	wildcards int
	// labeled holds each account's labeled tunnels, in the order they came online.
	labeled map[string][]*Tunnel
}

// AddLabeled puts a labeled tunnel online for its account's tunnel groups.
func (tb *Table) AddLabeled(t *Tunnel) {
	tb.mu.Lock()
	if tb.labeled == nil {
		tb.labeled = make(map[string][]*Tunnel)
	}
	tb.labeled[t.AccountID] = append(tb.labeled[t.AccountID], t)
	tb.mu.Unlock()
}

// Group returns the account's online labeled tunnels that carry every label of
// selector (a tunnel group), in the order they came online.
func (tb *Table) Group(account string, selector map[string]string) []*Tunnel {
	tb.mu.RLock()
	defer tb.mu.RUnlock()
	var out []*Tunnel
	for _, t := range tb.labeled[account] {
		if matches(t.Labels, selector) {
			out = append(out, t)
		}
	}
	return out
}

func matches(labels, selector map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{hosts: make(map[string]*Tunnel), ports: make(map[int]*Tunnel)}
}

// ConflictError says a name or port is already bound.
type ConflictError struct{ What string }

func (e *ConflictError) Error() string { return e.What + " is already bound by another tunnel" }

// AddHost binds host to t, or returns a *ConflictError.
func (tb *Table) AddHost(host string, t *Tunnel) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if _, ok := tb.hosts[host]; ok {
		return &ConflictError{What: host}
	}
	tb.hosts[host] = t
	if strings.HasPrefix(host, "*.") {
		tb.wildcards++
	}
	return nil
}

// AddPort binds a public TCP port to t, or returns a *ConflictError.
func (tb *Table) AddPort(port int, t *Tunnel) error {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if _, ok := tb.ports[port]; ok {
		return &ConflictError{What: fmt.Sprintf("port %d", port)}
	}
	tb.ports[port] = t
	return nil
}

// Host returns the tunnel that serves a normalised hostname, or nil: the tunnel bound to
// exactly that name, else the one bound to the most specific wildcard covering it
// ("*.b.example.com" before "*.example.com"; a wildcard covers nested names too).
func (tb *Table) Host(host string) *Tunnel {
	tb.mu.RLock()
	defer tb.mu.RUnlock()
	if t := tb.hosts[host]; t != nil {
		return t
	}
	if tb.wildcards == 0 {
		return nil
	}
	for rest := host; ; {
		i := strings.IndexByte(rest, '.')
		if i < 0 {
			return nil
		}
		rest = rest[i+1:]
		if t := tb.hosts["*."+rest]; t != nil {
			return t
		}
	}
}

// WildcardCovers reports whether pattern ("*.example.com" or a plain name) covers name
// by the wildcard rules: "*.example.com" covers every name below example.com, nested
// ones too, but not example.com itself.
func WildcardCovers(pattern, name string) bool {
	if base, ok := strings.CutPrefix(pattern, "*."); ok {
		return strings.HasSuffix(name, "."+base)
	}
	return pattern == name
}

// HostTunnels returns the account's tunnels bound to a hostname (http and tls); "" gives
// every account's.
func (tb *Table) HostTunnels(account string) []*Tunnel {
	tb.mu.RLock()
	defer tb.mu.RUnlock()
	var out []*Tunnel
	for _, t := range tb.hosts {
		if account == "" || t.AccountID == account {
			out = append(out, t)
		}
	}
	return out
}

// Port returns the tunnel bound to a public port, or nil.
func (tb *Table) Port(port int) *Tunnel {
	tb.mu.RLock()
	t := tb.ports[port]
	tb.mu.RUnlock()
	return t
}

// Remove unbinds t (if it is still the one bound) and runs its OnClose.
func (tb *Table) Remove(t *Tunnel) {
	tb.mu.Lock()
	removed := false
	if t.Host != "" && tb.hosts[t.Host] == t {
		delete(tb.hosts, t.Host)
		if strings.HasPrefix(t.Host, "*.") {
			tb.wildcards--
		}
		removed = true
	}
	if t.Port != 0 && tb.ports[t.Port] == t {
		delete(tb.ports, t.Port)
		removed = true
	}
	if i := slices.Index(tb.labeled[t.AccountID], t); i >= 0 {
		tb.labeled[t.AccountID] = slices.Delete(tb.labeled[t.AccountID], i, i+1)
		if len(tb.labeled[t.AccountID]) == 0 {
			delete(tb.labeled, t.AccountID)
		}
		removed = true
	}
	tb.mu.Unlock()
	if removed && t.OnClose != nil {
		t.OnClose()
	}
}

// RemoveAll unbinds every tunnel (closing tcp tunnels' listeners): a stopping relay
// routes no new connection, while the ones already joined carry on.
func (tb *Table) RemoveAll() {
	tb.mu.RLock()
	var all []*Tunnel
	for _, t := range tb.hosts {
		all = append(all, t)
	}
	for _, t := range tb.ports {
		all = append(all, t)
	}
	for _, ts := range tb.labeled {
		all = append(all, ts...)
	}
	tb.mu.RUnlock()
	for _, t := range all {
		tb.Remove(t)
	}
}

// Len returns the number of bound names and ports.
func (tb *Table) Len() int {
	tb.mu.RLock()
	defer tb.mu.RUnlock()
	return len(tb.hosts) + len(tb.ports)
}
