// Package session runs the relay's side of one agent session: the Hello and Auth
// handshake on the control stream, then Bind, Unbind and Heartbeat until the session
// ends, when every tunnel it bound is released.
package session

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ferrytunnel/ferry/agent/tlsconf"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/edge"
	"github.com/ferrytunnel/ferry/relay/metrics"
	"github.com/ferrytunnel/ferry/relay/module"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
	"github.com/ferrytunnel/ferry/relay/reserve"
	"github.com/ferrytunnel/ferry/relay/route"
	"github.com/ferrytunnel/ferry/relay/sni"
	"github.com/ferrytunnel/ferry/relay/store"
)

// HandshakeTimeout bounds Hello and Auth: an agent that says nothing is dropped.
const HandshakeTimeout = 10 * time.Second

// MaxTunnelsPerSession bounds how many tunnels one agent session may bind.
const MaxTunnelsPerSession = 1000

// DefaultAgentSilence is how long an agent may send nothing on its control stream
// before the relay takes it for gone and frees its names (agents heartbeat every 2 s;
// older ones every 10 s).
const DefaultAgentSilence = 15 * time.Second

// DefaultMaxStreamsPerAccount bounds the public connections open at once to one
// account's agents, over all its tunnels.
const DefaultMaxStreamsPerAccount = 20000

// DefaultMaxTunnelsPerAccount bounds the tunnels one account may have online at once,
// across all its agents.
const DefaultMaxTunnelsPerAccount = 5000

// Authenticator checks an authtoken and returns its account.
type Authenticator interface {
	Verify(token string) (Account, error)
}

// Account is who an authtoken belongs to: ID decides which names it may bind, Name is
// shown to the agent and in logs. CredentialID names the authtoken itself (Revoke).
type Account struct{ ID, Name, CredentialID string }

// Config configures the session server.
type Config struct {
	Table *route.Table
	Edge  *edge.Edge
	Auth  Authenticator
	// Domain is the base domain for random names.
	Domain string
	// Domains holds the reserved domains and decides which names an account may bind
	// (nil: any name under Domain and no other).
	Domains *reserve.Domains
	// Addrs holds the reserved TCP addresses: a chosen --remote-addr must be one of the
	// account's, and random ports skip them (nil: no reservations, any port may be chosen).
	Addrs *reserve.Addrs
	// HTTPSPort and HTTPPort are the public ports put in URLs (0: that listener is off).
	HTTPSPort, HTTPPort int
	// TCPHost is the address tcp tunnel listeners bind on ("" for all); TCPPorts their range.
	TCPHost  string
	TCPPorts config.PortRange
	// HasCert reports whether the relay holds a certificate for a name (edge termination).
	HasCert func(name string) bool
	// Version is the relay's release.
	Version string
	// OAuth builds the login module an http tunnel asked for (nil: refused).
	OAuth func(name string, o *protocol.BindOAuth) (route.Middleware, error)
	// EdgeServes reports whether an HTTPS or TLS edge serves a name (edges take the
	// name's traffic, so a tunnel binding it would get none); nil: no edges.
	EdgeServes func(name string) bool
	// AgentSilence is how long an agent may stay silent before it is dropped (0: the default).
	AgentSilence time.Duration
	// MaxStreamsPerAccount bounds the connections open at once to an account's agents
	// (0: DefaultMaxStreamsPerAccount; negative: no limit).
	MaxStreamsPerAccount int
	// MaxTunnelsPerAccount bounds an account's online tunnels (0: the default; negative:
	// no limit).
	MaxTunnelsPerAccount int
	// PortFreed runs after a tcp tunnel let its port go (nil: nothing): a TCP edge
	// waiting for the port can listen now.
	PortFreed func(port int)
	// Observer reports sessions and tunnels (metrics, events); nil reports nothing.
	Observer *route.Observer
	// Capabilities overrides what the relay advertises (nil: protocol.RelayCapabilities);
	// tests use it to play an older relay.
	Capabilities []string
	Log          *slog.Logger
}

// Server serves agent sessions.
type Server struct {
	cfg       Config
	authLimit *authLimiter

	mu      sync.Mutex
	streams map[string]*route.StreamLimit     // open connections per account
	online  map[string]int                    // online tunnels per account
	agents  map[*agent]struct{}               // connected agents, for GoAwayAll
	data    map[string]transport.DataAcceptor // TCP sessions taking data connections, by session id
}

// Revoke ends the sessions of agents that authenticated with the credential id (its
// authtoken was deleted): their tunnels go offline at once, and the agents are told why.
// It returns how many sessions it ended.
func (s *Server) Revoke(credentialID string) int {
	if credentialID == "" {
		return 0
	}
	hit := s.agentsWhere(func(a *agent) bool { c := a.cred.Load(); return c != nil && *c == credentialID })
	for _, a := range hit {
		a.log.Info("agent session ended", "reason", "its authtoken was deleted")
		a.end(&protocol.Error{Code: protocol.CodeAuthFailed, Message: "this agent's authtoken was deleted on the relay: create another (`ferry-relay token create`, or POST /credentials) and start the agent with it"})
	}
	return len(hit)
}

// agentsWhere returns the connected agents for which keep is true.
func (s *Server) agentsWhere(keep func(*agent) bool) []*agent {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*agent
	for a := range s.agents {
		if keep(a) {
			out = append(out, a)
		}
	}
	return out
}

// end tells the agent why the relay ends its session, then ends it.
func (a *agent) end(perr *protocol.Error) {
	a.send(protocol.TypeError, perr) //nolint:errcheck // best effort before closing
	a.sess.CloseWithError(perr.Code, perr.Message)
}

// Unreserved ends the sessions of the account's agents that hold a tunnel on a name the
// deleted reservation name covered and that the account may no longer bind; the agents are
// told which reservation went. It returns how many sessions it ended.
func (s *Server) Unreserved(account, name string) int {
	return s.endUnbindable(account, func(host string) bool { return route.WildcardCovers(name, host) || host == name },
		func(host string) string {
			return fmt.Sprintf("tunnel %s went offline: the reservation %s was deleted on the relay; reserve the name again (POST /reserved_domains) or use a name under %s", host, name, s.cfg.Domain)
		})
}

// Recheck ends the sessions of agents holding a tunnel on a name their account may no
// longer bind: a reservation deleted through another relay sharing the store, seen when
// this one reloads its reservations. It returns how many sessions it ended.
func (s *Server) Recheck() int {
	return s.endUnbindable("", func(string) bool { return true }, func(host string) string {
		return fmt.Sprintf("tunnel %s went offline: its account no longer holds a reservation for it (deleted through another relay); reserve the name again (POST /reserved_domains) or use a name under %s", host, s.cfg.Domain)
	})
}

// endUnbindable ends the sessions holding a tunnel of account ("": any) on a name that
// matches and that its account may no longer bind, telling each agent why.
func (s *Server) endUnbindable(account string, match func(host string) bool, why func(host string) string) int {
	ix := s.cfg.Domains
	if ix == nil {
		return 0
	}
	gone := map[route.Opener]string{}
	for _, t := range s.cfg.Table.HostTunnels(account) {
		if !match(t.Host) || ix.CanBind(t.AccountID, t.Host) == nil {
			continue // another reservation (or the base domain) still covers it
		}
		gone[t.Session] = t.Host
	}
	if len(gone) == 0 {
		return 0
	}
	hit := s.agentsWhere(func(a *agent) bool { _, ok := gone[route.Opener(a.sess)]; return ok })
	for _, a := range hit {
		host := gone[route.Opener(a.sess)]
		a.log.Info("agent session ended", "reason", "the reservation of a name it serves was deleted", "tunnel", host)
		a.end(&protocol.Error{Code: protocol.CodeBindRefused, Message: why(host)})
	}
	return len(hit)
}

// RevokeMissing ends the sessions whose authtoken's credential no longer exists (deleted
// through another relay sharing the store); exists is asked once per credential in use.
func (s *Server) RevokeMissing(exists func(credentialID string) bool) int {
	ids := map[string]bool{}
	for _, a := range s.agentsWhere(func(*agent) bool { return true }) {
		if c := a.cred.Load(); c != nil {
			ids[*c] = true
		}
	}
	n := 0
	for id := range ids {
		if !exists(id) {
			n += s.Revoke(id)
		}
	}
	return n
}

// JoinData takes a direct data connection (ALPN protocol.DataALPN) an agent opened for
// its TCP session: it reads the DataJoin, checks the session's key and hands the
// connection over, or closes it.
func (s *Server) JoinData(c *tls.Conn) {
	c.SetReadDeadline(time.Now().Add(HandshakeTimeout))
	var j protocol.DataJoin
	err := protocol.ReadMsg(c, protocol.MaxPreAuthFrame, protocol.TypeDataJoin, &j)
	c.SetReadDeadline(time.Time{})
	if err == nil {
		s.mu.Lock()
		da := s.data[j.SessionID]
		s.mu.Unlock()
		if da != nil && da.JoinData(j.Key, c) {
			return
		}
		err = errors.New("no such session, wrong key, or the session holds as many as it may")
	}
	s.cfg.Log.Debug("data connection refused", "remote", c.RemoteAddr(), "err", err)
	c.Close()
}

// GoAwayAll tells every connected agent the relay is going away, so they connect again
// (to this relay once it is back, or another); their sessions stay up, so connections
// already flowing finish, until the sessions' context ends.
func (s *Server) GoAwayAll(reason string) {
	// Agents still in their handshake are closed with their sessions.
	for _, a := range s.agentsWhere(func(a *agent) bool { return a.ready.Load() }) {
		a.send(protocol.TypeGoAway, &protocol.GoAway{Reason: reason}) //nolint:errcheck // best effort
	}
}

// streamLimit returns the account's shared connection limit.
func (s *Server) streamLimit(account string) *route.StreamLimit {
	max := s.cfg.MaxStreamsPerAccount
	if max == 0 {
		max = DefaultMaxStreamsPerAccount
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.streams == nil {
		s.streams = make(map[string]*route.StreamLimit)
	}
	l, ok := s.streams[account]
	if !ok {
		l = route.NewStreamLimit(max)
		s.streams[account] = l
	}
	return l
}

// take reserves a tunnel slot for account, or says the account is full.
func (s *Server) take(account string) bool {
	max := s.cfg.MaxTunnelsPerAccount
	if max == 0 {
		max = DefaultMaxTunnelsPerAccount
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if max > 0 && s.online[account] >= max {
		return false
	}
	if s.online == nil {
		s.online = make(map[string]int)
	}
	s.online[account]++
	return true
}

func (s *Server) give(account string) {
	s.mu.Lock()
	if s.online[account]--; s.online[account] <= 0 {
		delete(s.online, account)
	}
	s.mu.Unlock()
}

func (s *Server) capabilities() []string {
	if s.cfg.Capabilities != nil {
		return s.cfg.Capabilities
	}
	return protocol.RelayCapabilities
}

func (s *Server) metrics() *metrics.Metrics {
	if s.cfg.Observer == nil {
		return nil
	}
	return s.cfg.Observer.Metrics
}

// NewServer returns a session server.
func NewServer(cfg Config) *Server { return &Server{cfg: cfg, authLimit: newAuthLimiter()} }

// agent is one connected agent session.
type agent struct {
	srv     *Server
	sess    transport.Session
	log     *slog.Logger
	ctrl    transport.Stream
	writeMu sync.Mutex
	tunnels map[uint32]*route.Tunnel
	account string                 // set by a successful Auth
	cred    atomic.Pointer[string] // the authtoken's credential id, set by a successful Auth
	ready   atomic.Bool            // the control stream is set up (GoAwayAll may write to it)
	stopped atomic.Bool            // the relay or the session is ending: stop refreshing read deadlines
}

// Serve runs one agent session until it ends, then releases its tunnels.
func (s *Server) Serve(ctx context.Context, sess transport.Session) error {
	a := &agent{srv: s, sess: sess, tunnels: make(map[uint32]*route.Tunnel),
		log: s.cfg.Log.With("agent", sess.RemoteAddr().String())}
	s.mu.Lock()
	if s.agents == nil {
		s.agents = make(map[*agent]struct{})
	}
	s.agents[a] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.agents, a)
		s.mu.Unlock()
	}()
	defer a.releaseAll()
	err := a.run(ctx)
	var perr *protocol.Error
	switch {
	case errors.As(err, &perr):
		a.log.Info("agent session refused", "code", perr.Code, "reason", perr.Message)
		a.end(perr)
	case ctx.Err() != nil:
		a.send(protocol.TypeGoAway, &protocol.GoAway{Reason: "relay shutting down"}) //nolint:errcheck // best effort
		sess.CloseWithError(protocol.CodeShuttingDown, "relay shutting down")
	default:
		sess.CloseWithError(protocol.CodeClosed, "")
	}
	return err
}

func (a *agent) run(ctx context.Context) error {
	hctx, cancel := context.WithTimeout(ctx, HandshakeTimeout)
	ctrl, err := a.sess.AcceptStream(hctx)
	cancel()
	if err != nil {
		return fmt.Errorf("accept control stream: %w", err)
	}
	a.ctrl = ctrl
	ctrl.SetReadDeadline(time.Now().Add(HandshakeTimeout))

	var hello protocol.Hello
	if err := protocol.ReadMsg(ctrl, protocol.MaxPreAuthFrame, protocol.TypeHello, &hello); err != nil {
		return handshakeErr("hello", err)
	}
	v, err := protocol.Negotiate(hello.MinVersion, hello.Version, protocol.MinVersion, protocol.Version)
	if err != nil {
		return err
	}
	if err := a.send(protocol.TypeHelloResp, &protocol.HelloResp{Version: v, RelayVersion: a.srv.cfg.Version, Capabilities: a.srv.capabilities()}); err != nil {
		return err
	}
	var auth protocol.Auth
	if err := protocol.ReadMsg(ctrl, protocol.MaxPreAuthFrame, protocol.TypeAuth, &auth); err != nil {
		return handshakeErr("auth", err)
	}
	ip := sourceIP(a.sess.RemoteAddr())
	if ok, wait, log, refused := a.srv.authLimit.allow(ip); !ok {
		if log {
			a.log.Warn("authentication rate limited", "source", ip, "refused_since_last_line", refused,
				"reason", "too many wrong authtokens from this address")
		}
		return protocol.Errorf(protocol.CodeAuthFailed,
			"too many wrong authtokens from %s: wait %s, then try again with a valid one", ip, wait.Round(time.Second))
	}
	acct, err := a.srv.cfg.Auth.Verify(auth.Authtoken)
	if err != nil {
		a.srv.authLimit.failed(ip)
		a.srv.metrics().AuthFailure()
		return protocol.Errorf(protocol.CodeAuthFailed,
			"authtoken not recognised by this relay: create one on the relay with `ferry-relay token create` and pass it with --authtoken or FERRY_AUTHTOKEN")
	}
	sid := randomName(12)
	a.account = acct.ID
	a.cred.Store(&acct.CredentialID)
	a.log = a.log.With("session", sid, "account", acct.Name)
	resp := &protocol.AuthResp{SessionID: sid, Account: acct.Name}
	if da, ok := a.sess.(transport.DataAcceptor); ok {
		resp.DataKey = da.AcceptDataConns()
		a.srv.mu.Lock()
		if a.srv.data == nil {
			a.srv.data = make(map[string]transport.DataAcceptor)
		}
		a.srv.data[sid] = da
		a.srv.mu.Unlock()
		defer func() {
			a.srv.mu.Lock()
			delete(a.srv.data, sid)
			a.srv.mu.Unlock()
		}()
	}
	if err := a.send(protocol.TypeAuthResp, resp); err != nil {
		return err
	}
	ctrl.SetReadDeadline(time.Time{})
	a.ready.Store(true)
	a.log.Info("agent connected", "agent_version", hello.AgentVersion, "os", hello.OS, "transport", a.sess.Name())
	a.srv.metrics().SessionOpened(a.sess.Name())
	defer a.srv.metrics().SessionClosed(a.sess.Name())

	silence := a.srv.silence()
	done := make(chan struct{})
	defer close(done)
	go func() { // unblock the read loop when the relay shuts down or the session ends
		select {
		case <-ctx.Done():
		case <-a.sess.Context().Done():
		case <-done:
			return
		}
		a.stopped.Store(true)
		ctrl.SetReadDeadline(time.Now())
	}()
	for {
		if !a.stopped.Load() {
			// Agents heartbeat every few seconds; one that says nothing for this long is
			// gone (killed, or its network died) even if QUIC still acknowledges packets.
			ctrl.SetReadDeadline(time.Now().Add(silence))
			if a.stopped.Load() { // the relay began stopping meanwhile: do not wait
				ctrl.SetReadDeadline(time.Now())
			}
		}
		t, body, err := protocol.ReadFrame(ctrl, protocol.MaxControlFrame)
		if err != nil {
			if errors.Is(err, protocol.ErrFrameTooLarge) {
				return protocol.Errorf(protocol.CodeProtocol, "%v", err)
			}
			if isTimeout(err) && !a.stopped.Load() {
				a.log.Info("agent disconnected", "reason", fmt.Sprintf("silent for %v: no heartbeat", silence))
				return nil
			}
			var reason any = transport.SessionError(context.Cause(a.sess.Context()))
			switch {
			case reason != nil:
			case a.stopped.Load():
				reason = "the relay is stopping"
			default:
				reason = err // the control stream ended before the session did
			}
			a.log.Info("agent disconnected", "reason", reason)
			return nil
		}
		if err := a.handle(t, body); err != nil {
			return err
		}
	}
}

func handshakeErr(step string, err error) error {
	var perr *protocol.Error
	if errors.As(err, &perr) {
		return perr
	}
	return fmt.Errorf("%s: %w", step, err)
}

func (a *agent) handle(t protocol.MsgType, body []byte) error {
	switch t {
	case protocol.TypeBind:
		var b protocol.Bind
		if err := protocol.Decode(t, body, &b); err != nil {
			return err
		}
		return a.send(protocol.TypeBindResp, a.bind(&b))
	case protocol.TypeUnbind:
		var u protocol.Unbind
		if err := protocol.Decode(t, body, &u); err != nil {
			return err
		}
		if tun := a.tunnels[u.TunnelID]; tun != nil {
			a.stop(u.TunnelID, tun, "the agent unbound it")
		}
		return a.send(protocol.TypeUnbindResp, &protocol.UnbindResp{TunnelID: u.TunnelID})
	case protocol.TypeHeartbeat:
		a.writeMu.Lock()
		defer a.writeMu.Unlock()
		return protocol.WriteFrame(a.ctrl, protocol.TypeHeartbeatAck, body)
	case protocol.TypeHeartbeatAck:
		return nil
	case protocol.TypeError:
		var e protocol.Error
		protocol.Decode(t, body, &e) //nolint:errcheck // logged either way
		a.log.Info("agent closed the session", "code", e.Code, "reason", e.Message)
		return nil
	default:
		return protocol.Errorf(protocol.CodeProtocol, "unexpected %v on the control stream", t)
	}
}

func (a *agent) send(t protocol.MsgType, m any) error {
	if a.ctrl == nil {
		return net.ErrClosed
	}
	a.writeMu.Lock()
	defer a.writeMu.Unlock()
	return protocol.WriteMsg(a.ctrl, t, m)
}

func (a *agent) releaseAll() {
	for id, t := range a.tunnels {
		a.stop(id, t, "agent session ended")
	}
}

// stop takes a bound tunnel offline: out of the table, its account slot given back,
// reported, and its port (tcp) offered to a TCP edge waiting for it.
func (a *agent) stop(id uint32, t *route.Tunnel, reason string) {
	delete(a.tunnels, id)
	a.srv.cfg.Table.Remove(t)
	a.srv.give(a.account)
	a.srv.cfg.Observer.TunnelStopped(t)
	t.Log.Info("tunnel stopped", "reason", reason)
	if t.Port != 0 && a.srv.cfg.PortFreed != nil {
		a.srv.cfg.PortFreed(t.Port)
	}
}

// bind validates a Bind, allocates the name or port and answers with URLs or an error.
func (a *agent) bind(b *protocol.Bind) *protocol.BindResp {
	resp := &protocol.BindResp{TunnelID: b.TunnelID}
	fail := func(code protocol.ErrorCode, format string, args ...any) *protocol.BindResp {
		resp.Error = protocol.Errorf(code, format, args...)
		a.log.Info("bind refused", "tunnel", b.Name, "proto", b.Proto, "domain", b.Domain, "remote_addr", b.RemoteAddr, "reason", resp.Error.Message)
		return resp
	}
	if _, dup := a.tunnels[b.TunnelID]; dup {
		return fail(protocol.CodeBindRefused, "tunnel id %d is already in use in this session", b.TunnelID)
	}
	if len(a.tunnels) >= MaxTunnelsPerSession {
		return fail(protocol.CodeNoCapacity, "this session already has %d tunnels, the most one agent may bind", MaxTunnelsPerSession)
	}
	if !a.srv.take(a.account) {
		return fail(protocol.CodeNoCapacity, "this account already has the most tunnels online this relay allows (max_tunnels_per_account); stop some first")
	}
	bound := false
	defer func() {
		if !bound {
			a.srv.give(a.account)
		}
	}()
	t := &route.Tunnel{ID: b.TunnelID, PublicID: store.NewID("tn"), Name: b.Name, Proto: b.Proto, TerminateAt: b.TerminateAt, Session: a.sess,
		AccountID: a.account, Labels: b.Labels, Streams: a.srv.streamLimit(a.account)}
	var err error
	if t.IPPolicy, err = module.NewIPPolicy(b.CIDRAllow, b.CIDRDeny); err != nil {
		return fail(protocol.CodeBindRefused, "%v", err)
	}
	if len(b.BasicAuth) > 0 && b.Proto != protocol.ProtoHTTP {
		return fail(protocol.CodeBindRefused, "basic auth is for http tunnels")
	}
	if t.BasicAuth, err = module.NewBasicAuth(b.BasicAuth); err != nil {
		return fail(protocol.CodeBindRefused, "%v", err)
	}
	if b.Proto != protocol.ProtoHTTP && (len(b.RequestHeaderAdd)+len(b.RequestHeaderRemove)+len(b.ResponseHeaderAdd)+len(b.ResponseHeaderRemove) > 0 || b.Compression || b.CircuitBreaker != 0) {
		return fail(protocol.CodeBindRefused, "header rules, compression and the circuit breaker are for http tunnels")
	}
	t.Compression = b.Compression
	if b.OAuth != nil {
		if b.Proto != protocol.ProtoHTTP {
			return fail(protocol.CodeBindRefused, "--oauth and --oidc are for http tunnels")
		}
		if a.srv.cfg.OAuth == nil {
			return fail(protocol.CodeBindRefused, "this relay does not run OAuth logins")
		}
		if t.Auth, err = a.srv.cfg.OAuth(b.Name, b.OAuth); err != nil {
			return fail(protocol.CodeBindRefused, "--%s: %v", map[bool]string{true: "oidc", false: "oauth"}[b.OAuth.Provider == "oidc"], err)
		}
	}
	if b.VerifyWebhook != "" {
		if b.Proto != protocol.ProtoHTTP {
			return fail(protocol.CodeBindRefused, "webhook verification is for http tunnels")
		}
		if t.Webhook, err = webhook.New(webhook.Config{Provider: b.VerifyWebhook, Secret: b.VerifyWebhookSecret}); err != nil {
			return fail(protocol.CodeBindRefused, "--verify-webhook: %v", err)
		}
	}
	if t.Breaker, err = module.NewBreaker(b.Name, b.CircuitBreaker); err != nil {
		return fail(protocol.CodeBindRefused, "%v", err)
	}
	switch b.Proto {
	case protocol.ProtoHTTP:
		err = a.bindHTTP(b, t, resp)
	case protocol.ProtoTLS:
		err = a.bindTLS(b, t, resp)
	case protocol.ProtoTCP:
		err = a.bindTCP(b, t)
	case protocol.ProtoLabeled:
		err = a.bindLabeled(t)
	}
	if err != nil {
		var perr *protocol.Error
		if errors.As(err, &perr) {
			return fail(perr.Code, "%s", perr.Message)
		}
		return fail(protocol.CodeInternal, "%v", err)
	}
	resp.URLs = t.URLs
	a.tunnels[b.TunnelID] = t
	bound = true
	a.srv.cfg.Observer.TunnelStarted(t)
	if t.Proto == protocol.ProtoLabeled {
		t.Log.Info("tunnel started")
	} else {
		t.Log.Info("tunnel started", "url", strings.Join(t.URLs, " "))
	}
	return resp
}

func (a *agent) bindHTTP(b *protocol.Bind, t *route.Tunnel, resp *protocol.BindResp) error {
	cfg := &a.srv.cfg
	// Everything a request reads is set before the name goes into the table (prepare
	// runs once the name is chosen): the edge may route a request to it at once.
	prepare := func() error {
		var err error
		if t.Headers, err = module.NewHeaders(t.Host, b.RequestHeaderAdd, b.RequestHeaderRemove, b.ResponseHeaderAdd, b.ResponseHeaderRemove); err != nil {
			return protocol.Errorf(protocol.CodeBindRefused, "%v", err)
		}
		t.Handler, t.OnClose = cfg.Edge.NewHTTPHandler(t)
		t.URLs = nil
		if cfg.HTTPSPort != 0 {
			t.URLs = append(t.URLs, hostURL("https", t.Host, cfg.HTTPSPort, 443))
		}
		if cfg.HTTPPort != 0 {
			t.URLs = append(t.URLs, hostURL("http", t.Host, cfg.HTTPPort, 80))
		}
		return nil
	}
	if err := a.bindHost(b, t, prepare); err != nil {
		return err
	}
	if cfg.HTTPSPort != 0 && !cfg.HasCert(t.Host) {
		resp.Warnings = append(resp.Warnings, fmt.Sprintf("the relay has no certificate for %s: HTTPS clients will see a certificate for %s instead", t.Host, cfg.Domain))
	}
	return nil
}

func (a *agent) bindTLS(b *protocol.Bind, t *route.Tunnel, _ *protocol.BindResp) error {
	cfg := &a.srv.cfg
	if cfg.HTTPSPort == 0 {
		return protocol.Errorf(protocol.CodeBindRefused, "this relay has no TLS listener (--https-addr is empty)")
	}
	if t.TerminateAt == "" {
		t.TerminateAt = protocol.TerminateUpstream
	}
	if b.MutualTLSCAs != "" && t.TerminateAt != protocol.TerminateEdge {
		return protocol.Errorf(protocol.CodeBindRefused, "mutual TLS CAs were sent for a tunnel that terminates at the %s; the agent enforces them itself", t.TerminateAt)
	}
	if b.MutualTLSCAs != "" {
		pool, err := tlsconf.ParseCAs([]byte(b.MutualTLSCAs), "--mutual-tls-cas")
		if err != nil {
			return protocol.Errorf(protocol.CodeBindRefused, "%v", err)
		}
		t.ClientCAs = pool
		t.EdgeTLS = cfg.Edge.MutualTLSConfig(pool)
	}
	prepare := func() error {
		if t.TerminateAt == protocol.TerminateEdge && !cfg.HasCert(t.Host) {
			return protocol.Errorf(protocol.CodeBindRefused,
				"--terminate-at edge: the relay has no certificate for %s; use a name under %s, or terminate at the agent with --crt/--key", t.Host, cfg.Domain)
		}
		t.URLs = []string{hostURL("tls", t.Host, cfg.HTTPSPort, 443)}
		return nil
	}
	return a.bindHost(b, t, prepare)
}

// bindHost picks the tunnel's hostname (random, a label under the base domain, a full
// name or a wildcard) and binds it in the table, by the domain rules. prepare runs once
// t.Host is chosen and before the tunnel goes into the table, where requests may reach it
// at once: it sets whatever they read. A tunnel prepared but not bound is closed again.
func (a *agent) bindHost(b *protocol.Bind, t *route.Tunnel, prepare func() error) error {
	cfg := &a.srv.cfg
	ix := cfg.Domains
	if ix == nil {
		ix = reserve.NewDomains(cfg.Domain)
	}
	want := sni.Normalize(strings.TrimSpace(b.Domain))
	if want != "" && !strings.Contains(want, ".") {
		want += "." + cfg.Domain
	}
	if want != "" {
		name, err := reserve.Normalize(want)
		if err != nil {
			return protocol.Errorf(protocol.CodeBindRefused, "--domain %v", err)
		}
		if err := ix.CanBind(a.account, name); err != nil {
			code := protocol.CodeBindRefused
			if errors.Is(err, reserve.ErrTaken) {
				code = protocol.CodeBindConflict
			}
			return protocol.Errorf(code, "--domain %v", err)
		}
		if cfg.EdgeServes != nil && cfg.EdgeServes(name) {
			return protocol.Errorf(protocol.CodeBindConflict,
				"--domain %s is served by an edge, which would take all its traffic: run a labeled tunnel (ferry tunnel --label ...) that the edge's backend selects, or remove the edge", name)
		}
		t.Host = name
		if added, err := a.addHost(t, prepare); err != nil || added {
			return err
		}
		return a.hostTaken(name)
	}
	for range 10 {
		t.Host = randomName(8) + "." + cfg.Domain
		if ix.CanBind(a.account, t.Host) != nil {
			continue // reserved by another account
		}
		if added, err := a.addHost(t, prepare); err != nil || added {
			return err
		}
	}
	return protocol.Errorf(protocol.CodeInternal, "could not find a free random name")
}

func (a *agent) bindTCP(b *protocol.Bind, t *route.Tunnel) error {
	cfg := &a.srv.cfg
	pr := cfg.TCPPorts
	var ports []int
	if b.RemoteAddr != "" {
		ps := b.RemoteAddr
		var err error
		if strings.Contains(ps, ":") {
			_, ps, err = net.SplitHostPort(b.RemoteAddr)
		}
		p, err2 := strconv.Atoi(ps)
		if err != nil || err2 != nil {
			return protocol.Errorf(protocol.CodeBindRefused, "--remote-addr %q: want [HOST:]PORT, e.g. %s:%d", b.RemoteAddr, cfg.Domain, pr.Low)
		}
		if !pr.Contains(p) {
			return protocol.Errorf(protocol.CodeBindRefused, "--remote-addr %q: port %d is outside this relay's tcp range %d-%d", b.RemoteAddr, p, pr.Low, pr.High)
		}
		if cfg.Addrs != nil {
			err := cfg.Addrs.CanBind(a.account, p)
			if b.Rebind && errors.Is(err, reserve.ErrNotReserved) {
				err = nil // the port this tunnel had before the agent reconnected, unreserved
			}
			if err != nil {
				code := protocol.CodeBindRefused
				if errors.Is(err, reserve.ErrTaken) {
					code = protocol.CodeBindConflict
				}
				return protocol.Errorf(code, "--remote-addr %v", err)
			}
		}
		ports = []int{p}
	} else {
		n := pr.High - pr.Low + 1
		start, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
		for i := range n {
			ports = append(ports, pr.Low+(int(start.Int64())+i)%n)
		}
	}
	for _, p := range ports {
		if cfg.Table.Port(p) != nil || (b.RemoteAddr == "" && cfg.Addrs != nil && cfg.Addrs.Reserved(p)) {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.TCPHost, strconv.Itoa(p)))
		if err != nil {
			continue // taken by another program
		}
		t.Port = p
		a.initTunnel(t)
		t.OnClose = func() { ln.Close() } // set before the table holds it, like everything read from it
		t.URLs = []string{fmt.Sprintf("tcp://%s:%d", cfg.Domain, p)}
		if err := cfg.Table.AddPort(p, t); err != nil {
			t.OnClose, t.URLs = nil, nil
			ln.Close()
			continue
		}
		go cfg.Edge.ServeTCP(ln, t) //nolint:errcheck // ends when the listener closes
		return nil
	}
	if b.RemoteAddr != "" {
		return protocol.Errorf(protocol.CodeBindConflict, "--remote-addr %s is already in use: choose another port in %d-%d, or leave --remote-addr out for a free one", b.RemoteAddr, pr.Low, pr.High)
	}
	return protocol.Errorf(protocol.CodeNoCapacity, "no free port left in this relay's tcp range %d-%d", pr.Low, pr.High)
}

// bindLabeled puts a labeled tunnel online: it has no public name of its own; edges of
// its account whose backends select its labels route to it.
func (a *agent) bindLabeled(t *route.Tunnel) error {
	t.Log = a.log.With("tunnel", t.Name, "proto", t.Proto, "labels", protocol.LabelString(t.Labels))
	t.Handler, t.OnClose = a.srv.cfg.Edge.NewHTTPHandler(t)
	a.srv.cfg.Table.AddLabeled(t)
	return nil
}

// addHost prepares t for its chosen t.Host and puts it in the table; false when another
// tunnel holds the name. What prepare made is released unless t went online.
func (a *agent) addHost(t *route.Tunnel, prepare func() error) (bool, error) {
	a.initTunnel(t)
	err := prepare()
	if err == nil && a.srv.cfg.Table.AddHost(t.Host, t) == nil {
		return true, nil
	}
	if t.OnClose != nil {
		t.OnClose()
		t.OnClose = nil
	}
	t.Handler = nil
	return false, err
}

// silence is how long an agent may stay silent before it is dropped.
func (s *Server) silence() time.Duration {
	if s.cfg.AgentSilence == 0 {
		return DefaultAgentSilence
	}
	return s.cfg.AgentSilence
}

// hostTaken explains why name cannot be bound: another agent holds it, or this one does.
func (a *agent) hostTaken(name string) error {
	cur := a.srv.cfg.Table.Host(name)
	switch {
	case cur != nil && cur.Session == route.Opener(a.sess):
		return protocol.Errorf(protocol.CodeBindConflict, "%s is already bound by this agent's tunnel %s: stop that one first, or choose another --domain", name, cur.Name)
	case cur != nil && cur.AccountID == a.account:
		return protocol.Errorf(protocol.CodeBindConflict,
			"%s is already bound by another agent of your account: stop it, or choose another --domain. (An agent killed without a word, or whose network went away, holds it until the relay has heard nothing from it for %v.)", name, a.srv.silence())
	}
	return protocol.Errorf(protocol.CodeBindConflict, "%s is already bound by another agent: choose another --domain, or stop the other agent", name)
}

func (a *agent) initTunnel(t *route.Tunnel) {
	key := t.Host
	if t.Port != 0 {
		key = strconv.Itoa(t.Port)
	}
	t.Log = a.log.With("tunnel", key, "proto", t.Proto)
}

func hostURL(scheme, host string, port, defPort int) string {
	if port == defPort {
		return scheme + "://" + host
	}
	return fmt.Sprintf("%s://%s:%d", scheme, host, port)
}

const nameAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

func randomName(n int) string {
	b := make([]byte, n)
	rand.Read(b) //nolint:errcheck // crypto/rand.Read never fails
	for i := range b {
		b[i] = nameAlphabet[int(b[i])%len(nameAlphabet)]
	}
	if b[0] >= '0' && b[0] <= '9' {
		b[0] = 'a' + b[0] - '0'
	}
	return string(b)
}

// CertCovers reports whether a certificate covers name (exact or one-level wildcard).
func CertCovers(c *tls.Certificate, name string) bool {
	return c != nil && c.Leaf != nil && c.Leaf.VerifyHostname(name) == nil
}

// isTimeout reports whether err is a read deadline passing (QUIC or smux stream).
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}
