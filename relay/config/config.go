// Package config is ferry-relay's configuration: one struct whose fields are both TOML
// keys (--config FILE) and command-line flags, defaults filled in one place, and checks
// in Validate with messages that name the key and the fix.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the relay's configuration. Precedence: flags over the file over dev defaults
// over defaults.
type Config struct {
	// QUICAddr is the UDP address agents connect to. Default ":443" (dev "127.0.0.1:4443").
	QUICAddr string `toml:"quic_addr"`
	// HTTPSAddr is the TCP address for public TLS (SNI dispatch). Default ":443" (dev "127.0.0.1:4443").
	HTTPSAddr string `toml:"https_addr"`
	// HTTPAddr is the TCP address for public plain HTTP. Default ":80" (dev "127.0.0.1:4080").
	HTTPAddr string `toml:"http_addr"`
	// TCPPorts is the public port range for tcp tunnels, "LOW-HIGH". Default "10000-10999"
	// (dev "40000-40099"). Tunnel listeners bind on the host of HTTPSAddr.
	TCPPorts string `toml:"tcp_ports"`
	// Domain is the base domain: tunnels get <random>.<domain>. Required (dev "localhost").
	Domain string `toml:"domain"`
	// TLSCert and TLSKey are the relay's own certificate and key (PEM): used for QUIC and as
	// the default certificate for <domain> and *.<domain>. Required (dev: issued by the dev CA).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// Data is the data directory (database, secret key, ACME state, dev CA). Default "./ferry-data".
	Data string `toml:"data"`
	// Database is where accounts, credentials, reserved domains and certificates live:
	// empty (default) for SQLite in DATA/ferry.db, "sqlite:PATH", or "postgres://...".
	Database string `toml:"database"`
	// SecretKeyFile holds the key that encrypts uploaded private keys at rest (NaCl
	// secretbox). Default DATA/secret.key, created 0600 on first start.
	SecretKeyFile string `toml:"secret_key_file"`
	// APIAddr is the management API's address (HTTP, bearer API keys). Default
	// "127.0.0.1:4041"; empty disables it.
	APIAddr string `toml:"api_addr"`
	// CNAMETarget is the host users point their custom domains' CNAME records at
	// (shown as cname_target). Default: Domain.
	CNAMETarget string `toml:"cname_target"`
	// ACMEEmail turns on automated certificates (ACME) for reserved domains, with this
	// contact address. Empty (default) disables ACME.
	ACMEEmail string `toml:"acme_email"`
	// ACMECA is the ACME directory URL. Default Let's Encrypt's production directory.
	ACMECA string `toml:"acme_ca"`
	// ACMECARoot is a PEM file of roots to trust for the ACME server (a private CA such
	// as Pebble); empty uses the system roots.
	ACMECARoot string `toml:"acme_ca_root"`
	// ACMEZone is the DNS zone this relay serves for DNS-01 challenges of wildcard
	// domains (e.g. acme.tunnel.example.com, delegated to the relay with an NS record).
	// Default "acme." + Domain.
	ACMEZone string `toml:"acme_zone"`
	// DNSAddr is where the relay answers DNS for ACMEZone (UDP and TCP), e.g. ":53".
	// Empty (default) disables it, and with it wildcard certificates.
	DNSAddr string `toml:"dns_addr"`
	// LogFormat is "logfmt" (default) or "json".
	LogFormat string `toml:"log_format"`
	// LogLevel is "debug", "info" (default), "warn" or "error".
	LogLevel string `toml:"log_level"`
	// Dev runs everything on 127.0.0.1 with a throwaway CA and prints the agent command.
	Dev bool `toml:"dev"`
	// OAuthCARoots is a PEM file of CAs trusted, besides the system roots, for calls to
	// OAuth/OIDC providers and SAML metadata URLs (a company's own issuer); empty: the
	// system roots only.
	OAuthCARoots string `toml:"oauth_ca_roots"`
	// DrainTimeout is how long a stopping relay (SIGTERM, Ctrl-C) lets connections in
	// flight finish after it stopped accepting and told agents to reconnect. Default "30s";
	// "0s" closes everything at once.
	DrainTimeout string `toml:"drain_timeout"`
	// AgentSilence is how long an agent may send nothing before the relay takes it for
	// gone and frees its names. Default "15s" (agents heartbeat every 2 s).
	AgentSilence string `toml:"agent_silence"`
	// MaxStreamsPerAccount bounds the public connections open at once to one account's
	// agents, over all its tunnels (default 20000; -1: no limit).
	MaxStreamsPerAccount int `toml:"max_streams_per_account"`
	// MaxTunnelsPerAccount bounds the tunnels one account may have online at once, over
	// all its agents (default 5000; -1: no limit).
	MaxTunnelsPerAccount int `toml:"max_tunnels_per_account"`
	// MaxConnsPerIP bounds the public connections one client address may hold open at
	// once (default 1000; -1: no limit).
	MaxConnsPerIP int `toml:"max_conns_per_ip"`
	// MetricsAddr serves Prometheus metrics at /metrics on this address; empty (default)
	// disables.
	MetricsAddr string `toml:"metrics_addr"`
	// EventsDir is the only directory event subscriptions may write JSON-lines files in;
	// empty (default) refuses file destinations.
	EventsDir string `toml:"events_dir"`
	// EventsAllowPrivate lets event webhooks reach private and loopback addresses
	// (default false: refused, so a subscription cannot probe the relay's network;
	// dev mode allows them).
	EventsAllowPrivate bool `toml:"events_allow_private"`
	// PprofAddr serves Go's pprof profiles on this address; empty (default) disables.
	PprofAddr string `toml:"pprof_addr"`
}

// TCPHost is the address tcp tunnel listeners bind on: the host of HTTPSAddr, else of
// HTTPAddr; in dev mode never anything but loopback.
func (c *Config) TCPHost() string {
	for _, a := range []string{c.HTTPSAddr, c.HTTPAddr} {
		if h, _, err := net.SplitHostPort(a); err == nil && a != "" {
			if c.Dev && h == "" {
				return "127.0.0.1"
			}
			return h
		}
	}
	if c.Dev {
		return "127.0.0.1"
	}
	return ""
}

// Defaults returns the production defaults.
func Defaults() Config {
	return Config{
		QUICAddr:  ":443",
		HTTPSAddr: ":443",
		HTTPAddr:  ":80",
		TCPPorts:  "10000-10999",
		Data:      "./ferry-data",
		APIAddr:   "127.0.0.1:4041",
		ACMECA:    "https://acme-v02.api.letsencrypt.org/directory",
		LogFormat: "logfmt",
		LogLevel:  "info",
	}
}

// ApplyDev sets the dev-mode defaults (callers apply the file and flags afterwards).
func (c *Config) ApplyDev() {
	c.Dev = true
	c.QUICAddr = "127.0.0.1:4443"
	c.HTTPSAddr = "127.0.0.1:4443"
	c.HTTPAddr = "127.0.0.1:4080"
	c.TCPPorts = "40000-40099"
	c.Domain = "localhost"
	c.EventsAllowPrivate = true
}

// Load decodes a TOML file over c. Unknown keys are an error naming the key and its line.
func (c *Config) Load(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	md, err := toml.Decode(string(data), c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		k := und[0]
		line := KeyLine(data, k)
		return fmt.Errorf("%s:%d: unknown key %q; see `ferry-relay --help` for the keys (each flag is also a key, with _ for -)", path, line, k.String())
	}
	return nil
}

// KeyLine returns the 1-based line of data on which the TOML key k is set: the line of
// "name = ..." inside its table, or of the table header "[a.b]" when k is a table. A key
// not written in the file (a missing field) falls back to its table's line. 0 if nothing
// matches. BurntSushi/toml does not expose key positions, so this scans the text.
func KeyLine(data []byte, k toml.Key) int {
	for ; len(k) > 0; k = k[:len(k)-1] {
		if n := keyLine(data, strings.Join(k, ".")); n > 0 {
			return n
		}
	}
	return 0
}

func keyLine(data []byte, want string) int {
	current := ""
	for i, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		if strings.HasPrefix(t, "[") {
			end := strings.LastIndex(t, "]")
			if end < 0 {
				continue
			}
			current = unquoteKey(strings.Trim(t[:end+1], "[]"))
			if current == want {
				return i + 1
			}
			continue
		}
		name, _, ok := strings.Cut(t, "=")
		if !ok || strings.HasPrefix(t, "#") {
			continue
		}
		full := unquoteKey(name)
		if current != "" {
			full = current + "." + full
		}
		if full == want {
			return i + 1
		}
	}
	return 0
}

// unquoteKey turns ` tunnels . "my app" ` into `tunnels.my app`.
func unquoteKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ Low, High int }

// Contains reports whether p is in the range.
func (r PortRange) Contains(p int) bool { return p >= r.Low && p <= r.High }

// ParsePorts parses "LOW-HIGH" (or a single port).
func ParsePorts(s string) (PortRange, error) {
	lo, hi, found := strings.Cut(strings.TrimSpace(s), "-")
	if !found {
		hi = lo
	}
	l, err1 := strconv.Atoi(strings.TrimSpace(lo))
	h, err2 := strconv.Atoi(strings.TrimSpace(hi))
	if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return PortRange{}, fmt.Errorf("tcp_ports %q: want LOW-HIGH with 1 <= LOW <= HIGH <= 65535, e.g. --tcp-ports 10000-10999", s)
	}
	return PortRange{Low: l, High: h}, nil
}

// Validate checks the configuration and says which key to fix.
func (c *Config) Validate() error {
	var errs []error
	for _, a := range []struct{ key, v string }{{"quic_addr", c.QUICAddr}, {"https_addr", c.HTTPSAddr}, {"http_addr", c.HTTPAddr}, {"api_addr", c.APIAddr}, {"dns_addr", c.DNSAddr}, {"metrics_addr", c.MetricsAddr}} {
		if a.v == "" {
			continue // empty disables the listener
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			errs = append(errs, fmt.Errorf("--%s %q: want HOST:PORT, e.g. :443 or 127.0.0.1:4443", strings.ReplaceAll(a.key, "_", "-"), a.v))
		}
	}
	if c.QUICAddr == "" {
		errs = append(errs, errors.New("--quic-addr is empty: agents need it to connect"))
	}
	if _, err := ParsePorts(c.TCPPorts); err != nil {
		errs = append(errs, err)
	}
	if c.Domain == "" {
		errs = append(errs, errors.New("--domain is required: the base domain tunnels get names under (e.g. --domain tunnel.example.com, with a wildcard DNS record *.tunnel.example.com pointing at this server)"))
	} else if strings.Contains(c.Domain, "*") || strings.Contains(c.Domain, ":") || strings.HasPrefix(c.Domain, ".") {
		errs = append(errs, fmt.Errorf("--domain %q: want a plain domain such as tunnel.example.com (no wildcard, port or leading dot)", c.Domain))
	}
	if !c.Dev && (c.TLSCert == "" || c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key are required: a certificate for the domain and *.domain (or run with --dev to try ferry on this machine)"))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together: give both"))
	}
	if d := c.Database; d != "" && !strings.HasPrefix(d, "sqlite:") && !strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") {
		errs = append(errs, fmt.Errorf("--database %q: want empty (SQLite in --data), sqlite:PATH or postgres://USER@HOST/DB", d))
	}
	if d := c.AgentSilence; d != "" {
		if v, err := time.ParseDuration(d); err != nil || v < time.Second {
			errs = append(errs, fmt.Errorf("--agent-silence %q: want a duration of at least 1s, such as 15s", d))
		}
	}
	if d := c.DrainTimeout; d != "" {
		if v, err := time.ParseDuration(d); err != nil || v < 0 {
			errs = append(errs, fmt.Errorf("--drain-timeout %q: want a duration such as 30s or 2m (0s: no draining)", d))
		}
	}
	if c.ACMEEmail != "" && !strings.Contains(c.ACMEEmail, "@") {
		errs = append(errs, fmt.Errorf("--acme-email %q: want an email address for the ACME account", c.ACMEEmail))
	}
	switch c.LogFormat {
	case "logfmt", "json":
	default:
		errs = append(errs, fmt.Errorf("--log-format %q: want logfmt or json", c.LogFormat))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("--log-level %q: want debug, info, warn or error", c.LogLevel))
	}
	return errors.Join(errs...)
}

// Drain returns DrainTimeout as a duration (30 s when unset).
func (c *Config) Drain() time.Duration {
	if c.DrainTimeout == "" {
		return 30 * time.Second
	}
	d, _ := time.ParseDuration(c.DrainTimeout)
	return d
}

// Silence returns AgentSilence as a duration (0: the session server's default).
func (c *Config) Silence() time.Duration {
	d, _ := time.ParseDuration(c.AgentSilence)
	return d
}
