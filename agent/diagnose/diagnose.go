// Package diagnose checks, one step at a time, everything between the agent and its relay
// (`ferry diagnose`): DNS, TCP, TLS over TCP, QUIC over UDP, the authtoken and the
// round-trip time. Each check reports a verdict, and on failure what to do about it.
//
// The checks depend on each other: TLS needs the TCP connection, the authtoken check needs
// QUIC or TLS over TCP (QUIC preferred, as the agent does), and the round-trip check needs
// the authenticated control stream. A check whose prerequisite failed is Skipped with the
// reason rather than run.
package diagnose

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/fatih/color"

	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/transport"
)

// Check names, as they appear in Result.Name, in the order Run performs them.
const (
	CheckDNS  = "DNS"
	CheckTCP  = "TCP"
	CheckTLS  = "TLS (TCP)"
	CheckQUIC = "QUIC (UDP)"
	CheckAuth = "Authtoken"
	CheckRTT  = "Round trip"
)

// DefaultTimeout is the time each check gets when Options.Timeout is zero.
const DefaultTimeout = 5 * time.Second

// Heartbeats is how many heartbeats the round-trip check sends.
const Heartbeats = 5

// Options configures Run.
type Options struct {
	// Relay is the relay's address, HOST:PORT (QUIC on UDP and TLS on TCP, same port).
	Relay string
	// Authtoken is checked against the relay; "" skips the authtoken and round-trip checks.
	Authtoken string
	// RootCAs verifies the relay's certificate; nil means the system roots.
	RootCAs *x509.CertPool
	// Timeout is the time each check gets (default 5s).
	Timeout time.Duration
	// Color colours the verdicts (with fatih/color, whether or not w is a terminal).
	Color bool
	// Version is the agent's release sent in Hello (default "dev").
	Version string
}

// Result is the verdict of one check.
type Result struct {
	// Name is one of the Check constants.
	Name string
	// OK is true when the check passed; false with Skipped false means it failed.
	OK bool
	// Skipped is true when the check was not run; Detail says why.
	Skipped bool
	// Detail says what was found (on success) or what went wrong.
	Detail string
	// Fix says what to do about a failure ("" when there is nothing specific).
	Fix string
	// Took is how long the check ran (0 when skipped).
	Took time.Duration
}

// Failed reports whether any check failed (skipped checks are not failures).
func Failed(results []Result) bool {
	for _, r := range results {
		if !r.OK && !r.Skipped {
			return true
		}
	}
	return false
}

// Run performs the checks in order, writing one line per check to w as it goes, and
// returns every result (one per Check constant, in order). It does not return before
// every connection it opened is closed.
func Run(ctx context.Context, o Options, w io.Writer) []Result {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Version == "" {
		o.Version = "dev"
	}
	r := &runner{o: o, w: w}
	r.tags()
	defer r.close()
	return r.run(ctx)
}

// runner carries what one check hands to the next.
type runner struct {
	o        Options
	w        io.Writer
	tagOK    string
	tagFail  string
	tagSkip  string
	host     string
	port     string
	conf     *tls.Config
	results  []Result
	tcp      net.Conn               // from the TCP check, used by the TLS check
	quic     *transport.QUICSession // from the QUIC check, used by the authtoken check
	sess     transport.Session      // the authenticated session
	ctrl     transport.Stream       // its control stream
	isIP     bool                   // the relay is an IP address: no DNS needed
	tlsOK    bool
	sessName string
}

func (r *runner) tags() {
	r.tagOK, r.tagFail, r.tagSkip = "[ OK ]", "[FAIL]", "[SKIP]"
	if !r.o.Color {
		return
	}
	paint := func(s string, a ...color.Attribute) string {
		c := color.New(a...)
		c.EnableColor() // asked for explicitly: colour even when w is not a terminal
		return c.Sprint(s)
	}
	r.tagOK = paint(r.tagOK, color.FgGreen, color.Bold)
	r.tagFail = paint(r.tagFail, color.FgRed, color.Bold)
	r.tagSkip = paint(r.tagSkip, color.FgYellow)
}

func (r *runner) close() {
	if r.ctrl != nil {
		r.ctrl.Close()
	}
	if r.sess != nil {
		r.sess.CloseWithError(protocol.CodeClosed, "diagnose done")
	}
	if r.quic != nil && transport.Session(r.quic) != r.sess {
		r.quic.CloseWithError(protocol.CodeClosed, "diagnose done")
	}
	if r.tcp != nil {
		r.tcp.Close()
	}
}

// check is one step: it returns its verdict, or a skip reason before doing anything.
type check struct {
	name string
	// skip returns why the check cannot run, or "".
	skip func() string
	do   func(ctx context.Context) Result
}

func (r *runner) run(ctx context.Context) []Result {
	checks := []check{
		{CheckDNS, r.skipDNS, r.checkDNS},
		{CheckTCP, r.after(CheckDNS, "DNS resolution failed"), r.checkTCP},
		{CheckTLS, r.after(CheckTCP, "no TCP connection"), r.checkTLS},
		{CheckQUIC, r.after(CheckDNS, "DNS resolution failed"), r.checkQUIC},
		{CheckAuth, r.skipAuth, r.checkAuth},
		{CheckRTT, r.skipRTT, r.checkRTT},
	}
	for _, c := range checks {
		var res Result
		reason := "interrupted"
		if ctx.Err() == nil {
			reason = c.skip()
		}
		if reason != "" {
			res = Result{Skipped: true, Detail: reason}
		} else {
			start := time.Now()
			cctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
			res = c.do(cctx)
			cancel()
			res.Took = time.Since(start)
		}
		res.Name = c.name
		r.results = append(r.results, res)
		r.print(res)
	}
	return r.results
}

func (r *runner) print(res Result) {
	tag, text := r.tagOK, res.Detail
	switch {
	case res.Skipped:
		tag = r.tagSkip
	case !res.OK:
		tag = r.tagFail
		if res.Fix != "" {
			text += "; " + res.Fix
		}
	default:
		text += " (" + round(res.Took).String() + ")"
	}
	fmt.Fprintf(r.w, "%s %-14s %s\n", tag, res.Name, text)
}

// result returns the result of the named check, if it ran.
func (r *runner) result(name string) (Result, bool) {
	for _, res := range r.results {
		if res.Name == name {
			return res, true
		}
	}
	return Result{}, false
}

// after skips a check when the named one did not pass (a DNS check skipped because the
// relay is an IP address counts as passed).
func (r *runner) after(name, reason string) func() string {
	return func() string {
		res, ok := r.result(name)
		if ok && (res.OK || name == CheckDNS && r.isIP) {
			return ""
		}
		if r.host == "" {
			return "no valid relay address"
		}
		return reason
	}
}

// skipDNS parses the relay address; an IP needs no resolving.
func (r *runner) skipDNS() string {
	host, port, err := net.SplitHostPort(r.o.Relay)
	if err != nil || host == "" || port == "" {
		return "" // checkDNS reports the bad address
	}
	r.host, r.port = host, port
	r.conf = &tls.Config{ServerName: host, RootCAs: r.o.RootCAs, MinVersion: tls.VersionTLS13,
		NextProtos: []string{protocol.ALPN}}
	if _, err := netip.ParseAddr(host); err == nil {
		r.isIP = true
		return "relay " + host + " is an IP address"
	}
	return ""
}

func (r *runner) checkDNS(ctx context.Context) Result {
	if r.host == "" {
		return Result{Detail: fmt.Sprintf("relay address %q is not HOST:PORT", r.o.Relay),
			Fix: "pass --relay HOST:PORT, e.g. relay.example.com:443"}
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, r.host)
	if err != nil {
		var dnsErr *net.DNSError
		switch {
		case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
			return Result{Detail: "no such host " + r.host,
				Fix: "check the spelling in --relay, and that the relay's DNS record exists (dig " + r.host + ")"}
		case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &dnsErr) && dnsErr.IsTimeout:
			return Result{Detail: fmt.Sprintf("no answer from the DNS resolver within %v", r.o.Timeout),
				Fix: "check this machine's DNS settings (" + resolverConf() + ")"}
		}
		return Result{Detail: err.Error(), Fix: "check this machine's DNS settings (" + resolverConf() + ")"}
	}
	if len(addrs) > 3 {
		addrs = append(addrs[:3:3], fmt.Sprintf("and %d more", len(addrs)-3))
	}
	return Result{OK: true, Detail: r.host + " -> " + strings.Join(addrs, ", ")}
}

func resolverConf() string {
	if runtime.GOOS == "windows" {
		return "the network adapter's DNS servers"
	}
	return "/etc/resolv.conf"
}

func (r *runner) checkTCP(ctx context.Context) Result {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", r.o.Relay)
	if err != nil {
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return Result{Detail: "connection refused by " + r.o.Relay,
				Fix: "nothing listens on TCP port " + r.port + " there: is ferry-relay running, with --https-addr on that port?"}
		case isTimeout(ctx, err):
			return Result{Detail: fmt.Sprintf("no answer within %v", r.o.Timeout),
				Fix: "a firewall may drop TCP to port " + r.port + "; check the relay's firewall and this network's outbound rules"}
		case errors.Is(err, syscall.EHOSTUNREACH) || errors.Is(err, syscall.ENETUNREACH):
			return Result{Detail: err.Error(), Fix: "check this machine's network connection and its route to the relay"}
		}
		return Result{Detail: err.Error()}
	}
	r.tcp = c
	return Result{OK: true, Detail: "connected to " + c.RemoteAddr().String()}
}

func (r *runner) checkTLS(ctx context.Context) Result {
	tc := tls.Client(r.tcp, r.conf)
	r.tcp = nil
	// The check ends here either way: the authtoken check opens its own session.
	defer tc.Close()
	if err := tc.HandshakeContext(ctx); err != nil {
		if detail, fix, ok := certProblem(err); ok {
			return Result{Detail: detail, Fix: fix}
		}
		if isTimeout(ctx, err) {
			return Result{Detail: fmt.Sprintf("handshake did not finish within %v", r.o.Timeout),
				Fix: "something between here and the relay may hold or intercept TLS; check that --relay points at ferry-relay's public TLS port"}
		}
		return Result{Detail: "handshake failed: " + err.Error(),
			Fix: "check that --relay points at ferry-relay's public TLS port (--https-addr, usually 443)"}
	}
	st := tc.ConnectionState()
	if st.NegotiatedProtocol != protocol.ALPN {
		return Result{Detail: fmt.Sprintf("the server did not select ALPN %s (selected %q)", protocol.ALPN, st.NegotiatedProtocol),
			Fix: "it is not a ferry relay, or one too old for this agent: check --relay, or upgrade ferry-relay"}
	}
	r.tlsOK = true
	leaf := st.PeerCertificates[0]
	return Result{OK: true, Detail: fmt.Sprintf("%s, ALPN %s, certificate for %s issued by %s, valid until %s",
		tls.VersionName(st.Version), st.NegotiatedProtocol, certNames(leaf), issuer(leaf), leaf.NotAfter.Format(time.DateOnly))}
}

// certProblem explains a certificate verification failure, or returns ok false.
func certProblem(err error) (detail, fix string, ok bool) {
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var cve *tls.CertificateVerificationError
	switch {
	case errors.As(err, &uae):
		name := "an unknown authority"
		if uae.Cert != nil {
			name = fmt.Sprintf("an unknown authority (%s)", issuer(uae.Cert))
		}
		return "certificate signed by " + name, "pass --relay-ca FILE (a dev relay writes DATA/ca.pem)", true
	case errors.As(err, &hne):
		names := "other names"
		if hne.Certificate != nil {
			names = certNames(hne.Certificate)
		}
		return fmt.Sprintf("name mismatch: the certificate is for %s, not %s", names, hne.Host),
			"use a name the certificate covers in --relay, or give the relay a certificate for " + hne.Host + " (--tls-cert)", true
	case errors.As(err, &cie) && cie.Reason == x509.Expired:
		detail := "certificate expired or not yet valid"
		if c := cie.Cert; c != nil {
			if now := time.Now(); now.Before(c.NotBefore) {
				detail = "certificate not valid until " + c.NotBefore.UTC().Format(time.RFC3339)
			} else {
				detail = "certificate expired on " + c.NotAfter.UTC().Format(time.RFC3339)
			}
		}
		return detail, "renew the relay's certificate (--tls-cert), or correct this machine's clock", true
	case errors.As(err, &cve):
		return "certificate rejected: " + cve.Err.Error(), "check --relay-ca and the relay's --tls-cert", true
	}
	return "", "", false
}

func certNames(c *x509.Certificate) string {
	names := append([]string(nil), c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	if len(names) == 0 && c.Subject.CommonName != "" {
		names = []string{c.Subject.CommonName}
	}
	if len(names) > 4 {
		names = append(names[:4:4], fmt.Sprintf("and %d more", len(names)-4))
	}
	if len(names) == 0 {
		return "no names"
	}
	return strings.Join(names, ", ")
}

func issuer(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return fmt.Sprintf("%q", c.Issuer.CommonName)
	}
	return c.Issuer.String()
}

func (r *runner) checkQUIC(ctx context.Context) Result {
	s, err := transport.DialQUIC(ctx, r.o.Relay, r.conf)
	if err != nil {
		if detail, fix, ok := certProblem(err); ok {
			return Result{Detail: detail, Fix: fix}
		}
		if transport.IsALPNMismatch(err) {
			return Result{Detail: "the server does not speak " + protocol.ALPN + " over QUIC",
				Fix: "it is not a ferry relay, or one too old for this agent: check --relay, or upgrade ferry-relay"}
		}
		detail := fmt.Sprintf("no answer within %v", r.o.Timeout)
		if !isTimeout(ctx, err) {
			detail = err.Error()
		}
		return Result{Detail: detail + " — UDP to port " + r.port + " may be blocked",
			Fix: "the agent falls back to TCP automatically (--transport auto) or force --transport tcp"}
	}
	r.quic = s
	return Result{OK: true, Detail: fmt.Sprintf("handshake with %s, ALPN %s", s.RemoteAddr(), protocol.ALPN)}
}

func (r *runner) skipAuth() string {
	if r.o.Authtoken == "" {
		return "no authtoken given (pass --authtoken or set FERRY_AUTHTOKEN)"
	}
	if r.quic == nil && !r.tlsOK {
		return "neither QUIC nor TLS over TCP reached the relay"
	}
	return ""
}

// checkAuth says Hello and authenticates, as agent/session does, on QUIC if it worked
// and on TLS over TCP otherwise.
func (r *runner) checkAuth(ctx context.Context) Result {
	var sess transport.Session
	if r.quic != nil {
		sess = r.quic
	} else {
		s, err := transport.DialTCP(ctx, r.o.Relay, r.conf)
		if err != nil {
			return Result{Detail: "connect over TLS/TCP again: " + err.Error()}
		}
		sess = s
	}
	r.sess = sess
	r.sessName = sess.Name()
	ctrl, err := sess.OpenStream(ctx)
	if err != nil {
		return Result{Detail: "open control stream over " + sess.Name() + ": " + err.Error()}
	}
	r.ctrl = ctrl
	if d, ok := ctx.Deadline(); ok {
		ctrl.SetDeadline(d)
	}
	defer ctrl.SetDeadline(time.Time{})
	hr, ar, err := protocol.Handshake(ctrl, protocol.NewHello(r.o.Version), r.o.Authtoken)
	if err != nil {
		return r.authError("handshake", err)
	}
	detail := "accepted"
	if ar.Account != "" {
		detail = fmt.Sprintf("accepted for account %q", ar.Account)
	}
	var about []string
	if hr.RelayVersion != "" {
		about = append(about, "relay "+hr.RelayVersion)
	}
	about = append(about, fmt.Sprintf("protocol %d", hr.Version), "over "+sess.Name())
	return Result{OK: true, Detail: detail + " (" + strings.Join(about, ", ") + ")"}
}

func (r *runner) authError(step string, err error) Result {
	// The relay refuses with an Error frame and closes the session with the same code;
	// whichever arrives first carries the reason.
	err = transport.SessionError(err)
	var perr *protocol.Error
	if !errors.As(err, &perr) && r.sess.Context().Err() != nil {
		errors.As(transport.SessionError(context.Cause(r.sess.Context())), &perr)
	}
	if perr != nil {
		switch perr.Code {
		case protocol.CodeAuthFailed:
			return Result{Detail: "refused by the relay (" + perr.Code.String() + ")",
				Fix: "create one with `ferry-relay token create` on the relay, and pass it with --authtoken or FERRY_AUTHTOKEN"}
		case protocol.CodeVersionMismatch:
			return Result{Detail: perr.Message, Fix: "upgrade the older of agent and relay"}
		case protocol.CodeRateLimited:
			return Result{Detail: "refused by the relay (" + perr.Code.String() + "): " + perr.Message, Fix: "wait a minute and try again"}
		}
		return Result{Detail: fmt.Sprintf("refused by the relay (%s): %s", perr.Code, perr.Message)}
	}
	if errors.Is(err, context.DeadlineExceeded) || isNetTimeout(err) {
		return Result{Detail: fmt.Sprintf("%s: no answer from the relay within %v", step, r.o.Timeout),
			Fix: "the relay is overloaded or something between here and the relay stalls the connection"}
	}
	return Result{Detail: step + ": " + err.Error()}
}

func (r *runner) skipRTT() string {
	if res, ok := r.result(CheckAuth); !ok || !res.OK {
		return "needs an authenticated session"
	}
	return ""
}

// checkRTT sends Heartbeats on the authenticated control stream, one at a time, and times
// each HeartbeatAck.
func (r *runner) checkRTT(ctx context.Context) Result {
	if d, ok := ctx.Deadline(); ok {
		r.ctrl.SetDeadline(d)
	}
	defer r.ctrl.SetDeadline(time.Time{})
	var lo, sum time.Duration
	for seq := uint64(1); seq <= Heartbeats; seq++ {
		start := time.Now()
		if err := protocol.WriteMsg(r.ctrl, protocol.TypeHeartbeat, &protocol.Heartbeat{Seq: seq}); err != nil {
			return r.rttError(seq, err)
		}
		if err := r.awaitAck(seq); err != nil {
			return r.rttError(seq, err)
		}
		rtt := time.Since(start)
		sum += rtt
		if seq == 1 || rtt < lo {
			lo = rtt
		}
	}
	return Result{OK: true, Detail: fmt.Sprintf("min %v, avg %v over %d heartbeats (%s)",
		round(lo), round(sum/Heartbeats), Heartbeats, r.sessName)}
}

// awaitAck reads control frames until the HeartbeatAck for seq, answering the relay's own
// heartbeats on the way.
func (r *runner) awaitAck(seq uint64) error {
	for {
		t, body, err := protocol.ReadFrame(r.ctrl, protocol.MaxControlFrame)
		if err != nil {
			return err
		}
		switch t {
		case protocol.TypeHeartbeatAck:
			var h protocol.Heartbeat
			if err := protocol.Decode(t, body, &h); err != nil {
				return err
			}
			if h.Seq == seq {
				return nil
			}
		case protocol.TypeHeartbeat:
			if err := protocol.WriteFrame(r.ctrl, protocol.TypeHeartbeatAck, body); err != nil {
				return err
			}
		case protocol.TypeGoAway:
			var g protocol.GoAway
			protocol.Decode(t, body, &g) //nolint:errcheck // the reason is best effort
			return fmt.Errorf("relay is going away: %s", g.Reason)
		case protocol.TypeError:
			var e protocol.Error
			if err := protocol.Decode(t, body, &e); err != nil {
				return err
			}
			return &e
		}
	}
}

func (r *runner) rttError(seq uint64, err error) Result {
	if errors.Is(err, context.DeadlineExceeded) || isNetTimeout(err) {
		return Result{Detail: fmt.Sprintf("no answer to heartbeat %d within %v", seq, r.o.Timeout),
			Fix: "the relay is overloaded or the path to it loses packets"}
	}
	return Result{Detail: fmt.Sprintf("heartbeat %d: %v", seq, transport.SessionError(err))}
}

// isTimeout reports whether a dial or handshake ended because the check's time ran out.
func isTimeout(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) || isNetTimeout(err)
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// round keeps two or three significant digits of a duration for display.
func round(d time.Duration) time.Duration {
	switch {
	case d >= 10*time.Millisecond:
		return d.Round(time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(100 * time.Microsecond)
	case d >= 10*time.Microsecond:
		return d.Round(time.Microsecond)
	}
	return d
}
