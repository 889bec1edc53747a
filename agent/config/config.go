// Package config is the agent's configuration file (TOML): where it lives, how it is
// loaded (unknown keys are an error with file:line), checked and edited.
package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/ferrytunnel/ferry/protocol"

	relayconfig "github.com/ferrytunnel/ferry/relay/config"
)

// File is the agent configuration file. Flags override it; it overrides the defaults.
type File struct {
	// Version is the file format version, "1".
	Version string `toml:"version"`
	// Authtoken authenticates the agent with the relay.
	Authtoken string `toml:"authtoken"`
	// Relay is the relay's address, HOST:PORT.
	Relay string `toml:"relay"`
	// RelayCA is a PEM file of CAs that sign the relay's certificate (default: system roots).
	RelayCA string `toml:"relay_ca"`
	// APIAddr is the local API address (default 127.0.0.1:4040; "false" disables).
	APIAddr string `toml:"api_addr"`
	// APIKey and APIURL are for `ferry api`: the relay's management API key and URL
	// (default http://127.0.0.1:4041).
	APIKey string `toml:"api_key"`
	APIURL string `toml:"api_url"`
	// Log, LogFormat and LogLevel are as the --log, --log-format and --log-level flags.
	Log       string `toml:"log"`
	LogFormat string `toml:"log_format"`
	LogLevel  string `toml:"log_level"`
	// ConnectAttempts is as --connect-attempts: how often the first connection to the relay
	// is tried (nil: 4; 0: until it works).
	ConnectAttempts *int `toml:"connect_attempts"`
	// Tunnels are named tunnels.
	Tunnels map[string]Tunnel `toml:"tunnels"`

	// Path is where the file was read from; Line maps "tunnels.NAME.key" and "key" to lines.
	Path string         `toml:"-"`
	data []byte         `toml:"-"`
	md   *toml.MetaData `toml:"-"`
}

// Tunnel is one named tunnel in the file.
type Tunnel struct {
	// Proto is http, tcp, tls, or labeled (the default when Labels are set).
	Proto string `toml:"proto"`
	// Labels ("key=value") make a labeled tunnel: edges whose backend selects them route to it.
	Labels       []string `toml:"labels"`
	Addr         string   `toml:"addr"`
	Domain       string   `toml:"domain"`
	RemoteAddr   string   `toml:"remote_addr"`
	Crt          string   `toml:"crt"`
	Key          string   `toml:"key"`
	MutualTLSCAs string   `toml:"mutual_tls_cas"`
	TerminateAt  string   `toml:"terminate_at"`
	// Inspect records HTTP requests for the inspection UI (default true).
	Inspect *bool `toml:"inspect"`
	// HostHeader is "rewrite" or a value for the Host header sent upstream (http).
	HostHeader string `toml:"host_header"`
	// BasicAuth lists "user:password" pairs the relay requires (http).
	BasicAuth []string `toml:"basic_auth"`
	// CIDRAllow and CIDRDeny restrict client addresses (CIDRs or IPs).
	CIDRAllow []string `toml:"cidr_allow"`
	CIDRDeny  []string `toml:"cidr_deny"`
	// Header rules: "Name: value" (with ${...} templates) to add, "Name" to remove.
	RequestHeaderAdd     []string `toml:"request_header_add"`
	RequestHeaderRemove  []string `toml:"request_header_remove"`
	ResponseHeaderAdd    []string `toml:"response_header_add"`
	ResponseHeaderRemove []string `toml:"response_header_remove"`
	// Compression compresses responses at the relay; CircuitBreaker is a 5xx ratio (http).
	Compression    bool    `toml:"compression"`
	CircuitBreaker float64 `toml:"circuit_breaker"`
	// VerifyWebhook (a provider: github, stripe, slack, ...) and VerifyWebhookSecret make
	// the relay check each request's webhook signature (http).
	VerifyWebhook       string `toml:"verify_webhook"`
	VerifyWebhookSecret string `toml:"verify_webhook_secret"`
	// OAuth ([tunnels.NAME.oauth]: provider, client_id, client_secret, scopes,
	// allow_emails, allow_domains) or OIDC (the same with issuer) require a browser
	// login at the relay (http).
	OAuth *Login `toml:"oauth"`
	OIDC  *Login `toml:"oidc"`
	// ProxyProto is 1 or 2 to send a PROXY protocol header to the upstream (tcp, tls).
	ProxyProto int `toml:"proxy_proto"`
	// UpstreamTLSVerify checks an https upstream's certificate (default true).
	UpstreamTLSVerify *bool `toml:"upstream_tls_verify"`
}

// DefaultPath is $XDG_CONFIG_HOME/ferry/ferry.toml, or ~/.config/ferry/ferry.toml.
func DefaultPath() string {
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return filepath.Join(".config", "ferry", "ferry.toml")
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "ferry", "ferry.toml")
}

// Load reads path. A missing file at the default path is not an error (an empty File);
// a missing file the user named with --config is.
func Load(path string, named bool) (*File, error) {
	f := &File{Path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) && !named {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	f.data = data
	md, err := toml.Decode(string(data), f)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%s:%d: %s", path, perr.Position.Line, perr.Message)
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.md = &md
	return f, nil
}

// Check returns every problem in the file, each naming file:line and the fix.
func (f *File) Check() []error {
	var errs []error
	at := func(k toml.Key) string {
		return fmt.Sprintf("%s:%d", f.Path, relayconfig.KeyLine(f.data, k))
	}
	if f.md != nil {
		for _, k := range f.md.Undecoded() {
			errs = append(errs, fmt.Errorf("%s: unknown key %q: see docs/agent.md for the keys of the configuration file", at(k), k.String()))
		}
	}
	if f.Version != "" && f.Version != "1" {
		errs = append(errs, fmt.Errorf("%s: version %q: this agent reads version \"1\"", at(toml.Key{"version"}), f.Version))
	}
	for _, name := range slices.Sorted(maps.Keys(f.Tunnels)) {
		t := f.Tunnels[name]
		switch {
		case t.Proto == "http", t.Proto == "tcp", t.Proto == "tls":
			if len(t.Labels) > 0 {
				errs = append(errs, fmt.Errorf("%s: tunnels.%s.labels: labels make a labeled tunnel; drop proto %q (or set proto = \"labeled\")", at(toml.Key{"tunnels", name, "labels"}), name, t.Proto))
			}
		case t.Proto == "labeled", t.Proto == "" && len(t.Labels) > 0:
			if _, err := ParseLabels(t.Labels); err != nil {
				errs = append(errs, fmt.Errorf("%s: tunnels.%s.labels: %v", at(toml.Key{"tunnels", name, "labels"}), name, err))
			}
		default:
			errs = append(errs, fmt.Errorf("%s: tunnels.%s.proto %q: want http, tcp, tls, or labels = [\"key=value\"] for a labeled tunnel", at(toml.Key{"tunnels", name, "proto"}), name, t.Proto))
		}
		if t.Addr == "" {
			errs = append(errs, fmt.Errorf("%s: tunnels.%s: addr is required (a port, HOST:PORT or URL)", at(toml.Key{"tunnels", name}), name))
		}
		if t.OAuth != nil && t.OIDC != nil {
			errs = append(errs, fmt.Errorf("%s: tunnels.%s: an [oauth] and an [oidc] table: keep one", at(toml.Key{"tunnels", name, "oidc"}), name))
		}
		if (t.OAuth != nil || t.OIDC != nil) && t.Proto != "http" {
			errs = append(errs, fmt.Errorf("%s: tunnels.%s: a login ([oauth] or [oidc]) is for http tunnels", at(toml.Key{"tunnels", name}), name))
		}
		switch t.TerminateAt {
		case "", "edge", "agent", "upstream":
		default:
			errs = append(errs, fmt.Errorf("%s: tunnels.%s.terminate_at %q: want edge, agent or upstream", at(toml.Key{"tunnels", name, "terminate_at"}), name, t.TerminateAt))
		}
	}
	return errs
}

var authtokenLine = regexp.MustCompile(`(?m)^[ \t]*authtoken[ \t]*=.*$`)

// AddAuthtoken writes token into the file at path, keeping everything else as it is
// (creating the file, mode 0600, and its directory if needed).
func AddAuthtoken(path, token string) error {
	if token == "" || strings.ContainsAny(token, "\"\n\\") {
		return errors.New("authtoken is empty or has a quote, backslash or newline in it")
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	line := fmt.Sprintf("authtoken = %q", token)
	var out string
	switch {
	case len(data) == 0:
		out = "version = \"1\"\n" + line + "\n"
	case authtokenLine.Match(data):
		out = authtokenLine.ReplaceAllLiteralString(string(data), line)
	default:
		out = line + "\n" + string(data)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600) // an existing file keeps its mode on write: it now holds a secret
}

// Login is a tunnel's OAuth or OIDC table.
type Login struct {
	Provider     string   `toml:"provider"`
	Issuer       string   `toml:"issuer"`
	ClientID     string   `toml:"client_id"`
	ClientSecret string   `toml:"client_secret"`
	Scopes       []string `toml:"scopes"`
	AllowEmails  []string `toml:"allow_emails"`
	AllowDomains []string `toml:"allow_domains"`
}

// Bind returns the login as the relay takes it ("oidc" for an OIDC table).
func (l *Login) Bind(oidc bool) *protocol.BindOAuth {
	if l == nil {
		return nil
	}
	b := &protocol.BindOAuth{Provider: l.Provider, Issuer: l.Issuer, ClientID: l.ClientID, ClientSecret: l.ClientSecret,
		Scopes: l.Scopes, AllowEmails: l.AllowEmails, AllowDomains: l.AllowDomains}
	if oidc {
		b.Provider = "oidc"
	}
	return b
}

// ParseLabels turns "key=value" strings into a label map, checked as the relay checks them.
func ParseLabels(in []string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			return nil, fmt.Errorf("label %q: want KEY=VALUE, e.g. edge=web", l)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("label %q given twice", k)
		}
		out[k] = v
	}
	if err := protocol.ValidLabels(out); err != nil {
		return nil, err
	}
	return out, nil
}
