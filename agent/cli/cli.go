// Package cli is the `ferry` command line: flags, commands, and the mapping of
// failures to one-line messages and exit codes.
package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferrytunnel/ferry/agent/api"
	"github.com/ferrytunnel/ferry/agent/config"
	"github.com/ferrytunnel/ferry/agent/console"
	"github.com/ferrytunnel/ferry/agent/diagnose"
	"github.com/ferrytunnel/ferry/agent/forward"
	"github.com/ferrytunnel/ferry/agent/inspect"
	"github.com/ferrytunnel/ferry/agent/service"
	"github.com/ferrytunnel/ferry/agent/session"
	"github.com/ferrytunnel/ferry/agent/tlsconf"
	"github.com/ferrytunnel/ferry/protocol"
	"github.com/ferrytunnel/ferry/protocol/pprof"
	"github.com/ferrytunnel/ferry/relay/cert"
	"github.com/ferrytunnel/ferry/relay/module/webhook"
)

// Exit codes, documented in docs/agent.md.
const (
	ExitOK          = 0
	ExitError       = 1 // anything not listed below
	ExitUsage       = 2 // bad flag, argument or configuration file
	ExitAuth        = 3 // the relay refused the authtoken
	ExitUnreachable = 4 // the relay could not be reached (after retries)
	ExitBind        = 5 // the relay refused a tunnel (name taken, not allowed)
	ExitUntrusted   = 6 // the relay's certificate is not trusted
	ExitVersion     = 7 // agent and relay share no protocol version
)

// ExitError is an error with an exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitError{code: ExitUsage, err: fmt.Errorf(format, args...)}
}

// Env is what the command line runs with (replaceable in tests).
type Env struct {
	Stdout, Stderr io.Writer
	// Terminal says stdout is a terminal (status block and colour).
	Terminal bool
	Version  string
}

// Main runs the command line and returns the process exit code.
func Main(ctx context.Context, args []string, env Env) int {
	app := newApp(env)
	if n := len(args); n > 1 && args[n-1] == completionFlag {
		complete(app, args[1:n-1], env.Stdout)
		return ExitOK
	}
	err := app.RunContext(ctx, Reorder(app, args))
	if err == nil {
		return ExitOK
	}
	code := ExitError
	var ee *exitError
	var se *session.Error
	switch {
	case errors.As(err, &ee):
		code = ee.code
	case errors.As(err, &se):
		code = map[session.Kind]int{session.KindAuth: ExitAuth, session.KindUnreachable: ExitUnreachable,
			session.KindBind: ExitBind, session.KindUntrusted: ExitUntrusted, session.KindVersion: ExitVersion}[se.Kind]
		if code == 0 {
			code = ExitError
		}
	case isUsage(err):
		code = ExitUsage
	}
	fmt.Fprintf(env.Stderr, "ferry: %v\n", err)
	return code
}

func isUsage(err error) bool {
	s := err.Error()
	return strings.HasPrefix(s, "flag provided but not defined") || strings.HasPrefix(s, "invalid value") ||
		strings.Contains(s, "flag needs an argument") || strings.HasPrefix(s, "No help topic")
}

func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "relay", Usage: "relay address `HOST:PORT`", EnvVars: []string{"FERRY_RELAY"}},
		&cli.StringFlag{Name: "authtoken", Usage: "authtoken `TOKEN` (create one on the relay: ferry-relay token create)", EnvVars: []string{"FERRY_AUTHTOKEN"}},
		&cli.StringFlag{Name: "relay-ca", Usage: "PEM `FILE` of CAs that sign the relay's certificate (default: system roots)", EnvVars: []string{"FERRY_RELAY_CA"}},
		&cli.StringFlag{Name: "config", Usage: "configuration `FILE` (default " + config.DefaultPath() + ")"},
		&cli.StringFlag{Name: "log", Usage: "where logs go: stdout, stderr, false or a file `PATH` (default: stdout when it is not a terminal, else none)"},
		&cli.StringFlag{Name: "log-format", Usage: "log format: term, logfmt or json (default: term on a terminal, else logfmt)"},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info"},
		&cli.StringFlag{Name: "api-addr", Usage: "local API address `HOST:PORT`, or false to disable", Value: "127.0.0.1:4040"},
		&cli.StringFlag{Name: "exec", Usage: "run `COMMAND` (with sh -c) once every tunnel is up, with FERRY_URL and FERRY_URLS set; then close the tunnels and exit with its status"},
		&cli.StringFlag{Name: "url-file", Usage: "write the public URLs, one per line, to `PATH` once every tunnel is up"},
		&cli.StringFlag{Name: "pprof-addr", Usage: "serve Go's pprof profiles on `ADDR` (e.g. 127.0.0.1:6061); off by default"},
		&cli.StringFlag{Name: "transport", Usage: "how to reach the relay: quic, tcp (TLS over TCP, for networks that block UDP) or auto (QUIC, then TCP)", Value: "auto"},
		&cli.IntFlag{Name: "connect-attempts", Usage: "how often to try the first connection to the relay before giving up with exit 4 (`N`; 0: until it works, for devices that start before their network)", Value: 4},
	}
}

// globalFlagsUsing returns the global flags with only the named ones in the command's
// help: the others are still accepted (a --log or --exec from a shell alias or a
// script does no harm) but do nothing for the command, so they are not offered.
func globalFlagsUsing(names ...string) []cli.Flag {
	flags := globalFlags()
	for _, f := range flags {
		if slices.Contains(names, f.Names()[0]) {
			continue
		}
		switch f := f.(type) {
		case *cli.StringFlag:
			f.Hidden = true
		case *cli.IntFlag:
			f.Hidden = true
		}
	}
	return flags
}

func newApp(env Env) *cli.App {
	tunnelFlags := func(extra ...cli.Flag) []cli.Flag {
		cidr := []cli.Flag{
			&cli.StringSliceFlag{Name: "cidr-allow", Usage: "only clients in `CIDR` may connect (repeatable; IPv4 or IPv6, or a single address)"},
			&cli.StringSliceFlag{Name: "cidr-deny", Usage: "clients in `CIDR` may not connect (repeatable)"},
		}
		return append(append(extra, cidr...), globalFlags()...)
	}
	// A labeled tunnel takes its modules from the edges that select it: its --cidr-* flags
	// are kept out of its help, and parsed only to refuse them with that explanation.
	labeledFlags := func(extra ...cli.Flag) []cli.Flag {
		flags := tunnelFlags(extra...)
		for _, f := range flags {
			if sf, ok := f.(*cli.StringSliceFlag); ok && strings.HasPrefix(sf.Name, "cidr-") {
				sf.Hidden = true
			}
		}
		return flags
	}
	proxyProto := &cli.IntFlag{Name: "proxy-proto", Usage: "send a PROXY protocol `VERSION` (1 or 2) header to the upstream with the client's address"}
	domain := &cli.StringFlag{Name: "domain", Usage: "public hostname `NAME` (a full name, or a label under the relay's domain; default: random)"}
	app := &cli.App{
		Name:                 "ferry",
		Usage:                "put local services on the internet through your own relay",
		Version:              env.Version,
		Writer:               env.Stdout,
		ErrWriter:            env.Stderr,
		Flags:                globalFlags(),
		EnableBashCompletion: true,
		HideHelpCommand:      true,
		ExitErrHandler:       func(*cli.Context, error) {}, // Main prints and picks the code
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageErr("unknown command %q (see ferry --help)", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			if c.Command == nil || c.Command.Name == "" || c.Command.Name == c.App.Name {
				return usageErr("%v (see ferry --help)", err)
			}
			return usageErr("%v (see ferry %s --help)", err, c.Command.Name)
		},
		Commands: []*cli.Command{
			{
				Name:      "http",
				Usage:     "expose a local HTTP server",
				ArgsUsage: "PORT|HOST:PORT|URL|unix:PATH|file:///DIR",
				Flags: tunnelFlags(domain,
					&cli.BoolFlag{Name: "inspect", Value: true, Usage: "record requests for the inspection UI and local API (--inspect=false to turn off)"},
					&cli.StringSliceFlag{Name: "basic-auth", Usage: "require HTTP basic auth `USER:PASSWORD` at the relay (repeatable; password at least 8 characters; only a bcrypt hash leaves this machine)"},
					&cli.StringSliceFlag{Name: "request-header-add", Usage: "header `\"NAME: VALUE\"` the relay adds to requests (repeatable; ${conn.client_ip}, ${req.path}, ... templates)"},
					&cli.StringSliceFlag{Name: "request-header-remove", Usage: "header `NAME` the relay removes from requests (repeatable)"},
					&cli.StringSliceFlag{Name: "response-header-add", Usage: "header `\"NAME: VALUE\"` the relay adds to responses (repeatable)"},
					&cli.StringSliceFlag{Name: "response-header-remove", Usage: "header `NAME` the relay removes from responses (repeatable)"},
					&cli.BoolFlag{Name: "compression", Usage: "the relay compresses responses (br, zstd, gzip, deflate) for clients that accept it"},
					&cli.StringFlag{Name: "oauth", Usage: "require a browser login at the relay with this `PROVIDER` (github, google, microsoft, facebook), with your own OAuth application"},
					&cli.StringFlag{Name: "oauth-client-id", Usage: "your OAuth application's client `ID`"},
					&cli.StringFlag{Name: "oauth-client-secret", Usage: "your OAuth application's client `SECRET`"},
					&cli.StringSliceFlag{Name: "oauth-scope", Usage: "extra OAuth `SCOPE` (repeatable)"},
					&cli.StringSliceFlag{Name: "oauth-allow-email", Usage: "let in only this `EMAIL` (repeatable; with --oauth-allow-domain: either)"},
					&cli.StringSliceFlag{Name: "oauth-allow-domain", Usage: "let in only emails in this `DOMAIN` (repeatable)"},
					&cli.StringFlag{Name: "oidc", Usage: "require a browser login with this OpenID Connect `ISSUER` URL"},
					&cli.StringFlag{Name: "oidc-client-id", Usage: "client `ID` registered with the issuer"},
					&cli.StringFlag{Name: "oidc-client-secret", Usage: "client `SECRET` registered with the issuer"},
					&cli.StringSliceFlag{Name: "oidc-scope", Usage: "extra `SCOPE` (repeatable)"},
					&cli.StringSliceFlag{Name: "oidc-allow-email", Usage: "let in only this `EMAIL` (repeatable)"},
					&cli.StringSliceFlag{Name: "oidc-allow-domain", Usage: "let in only emails in this `DOMAIN` (repeatable)"},
					&cli.StringFlag{Name: "verify-webhook", Usage: "the relay checks each request's signature from this webhook `PROVIDER` (" + strings.Join(webhook.Providers(), ", ") + ")"},
					&cli.StringFlag{Name: "verify-webhook-secret", Usage: "the webhook's signing `SECRET` (for sendgrid its public key; for sns the topic ARN)"},
					&cli.Float64Flag{Name: "circuit-breaker", Usage: "open the relay's circuit breaker (503 for 10s) when this `RATIO` of answers in 10s are 5xx (at least 20 requests)"},
					&cli.StringFlag{Name: "host-header", Usage: "Host header sent upstream: rewrite (the upstream's host:port) or a `VALUE` (default: the public host)"},
					&cli.BoolFlag{Name: "upstream-tls-verify", Value: true, Usage: "verify an https:// upstream's certificate (--upstream-tls-verify=false for self-signed)"},
				),
				Action: func(c *cli.Context) error { return runTunnel(c, env, "http") },
			},
			{
				Name:      "tcp",
				Usage:     "expose a local TCP service",
				ArgsUsage: "PORT|HOST:PORT",
				Flags:     tunnelFlags(proxyProto, &cli.StringFlag{Name: "remote-addr", Usage: "public `[HOST:]PORT` to bind, in the relay's tcp range (default: any free port)"}),
				Action:    func(c *cli.Context) error { return runTunnel(c, env, "tcp") },
			},
			{
				Name:      "tls",
				Usage:     "expose a local TLS service, routed by SNI",
				ArgsUsage: "PORT|HOST:PORT",
				Flags: tunnelFlags(domain, proxyProto,
					&cli.StringFlag{Name: "crt", Usage: "PEM certificate `FILE`: the agent terminates TLS with it (the relay never sees the key)"},
					&cli.StringFlag{Name: "key", Usage: "PEM private key `FILE` for --crt"},
					&cli.StringFlag{Name: "mutual-tls-cas", Usage: "PEM `FILE` of CAs; clients must present a certificate signed by one"},
					&cli.StringFlag{Name: "terminate-at", Usage: "where TLS is terminated: edge, agent or upstream (default: agent with --crt/--key, else upstream)"},
				),
				Action: func(c *cli.Context) error { return runTunnel(c, env, "tls") },
			},
			{
				Name:      "tunnel",
				Usage:     "start a labeled tunnel: edges whose backend selects its labels route traffic to it",
				ArgsUsage: "PORT|HOST:PORT|URL",
				Flags: labeledFlags(
					&cli.StringSliceFlag{Name: "label", Usage: "`KEY=VALUE` label (repeatable, at least one), e.g. --label edge=web"},
					&cli.BoolFlag{Name: "inspect", Value: true, Usage: "record HTTP requests for the inspection UI and local API (--inspect=false to turn off)"},
					&cli.StringFlag{Name: "host-header", Usage: "Host header sent upstream: rewrite (the upstream's host:port) or a `VALUE` (default: the public host)"},
					&cli.BoolFlag{Name: "upstream-tls-verify", Value: true, Usage: "verify an https:// upstream's certificate (--upstream-tls-verify=false for self-signed)"},
				),
				Action: func(c *cli.Context) error { return runTunnel(c, env, "labeled") },
			},
			{
				Name:      "start",
				Usage:     "start tunnels defined in the configuration file",
				ArgsUsage: "NAME... | --all",
				Flags:     tunnelFlags(&cli.BoolFlag{Name: "all", Usage: "start every tunnel in the configuration file"}),
				Action:    func(c *cli.Context) error { return runStart(c, env) },
			},
			{
				Name:  "config",
				Usage: "manage the configuration file",
				Subcommands: []*cli.Command{
					{
						Name: "add-authtoken", Usage: "save an authtoken in the configuration file", ArgsUsage: "TOKEN",
						Flags: globalFlagsUsing("config"),
						Action: func(c *cli.Context) error {
							if c.NArg() != 1 {
								return usageErr("usage: ferry config add-authtoken TOKEN")
							}
							path, _ := configPath(c)
							if err := config.AddAuthtoken(path, c.Args().First()); err != nil {
								return err
							}
							fmt.Fprintf(env.Stdout, "Authtoken saved to configuration file: %s\n", path)
							return nil
						},
					},
					{
						Name: "path", Usage: "print the configuration file's path", Flags: globalFlagsUsing("config"),
						Action: func(c *cli.Context) error {
							path, _ := configPath(c)
							fmt.Fprintln(env.Stdout, path)
							return nil
						},
					},
					{
						Name: "edit", Usage: "open the configuration file in $EDITOR, then check it", Flags: globalFlagsUsing("config"),
						Action: func(c *cli.Context) error {
							path, _ := configPath(c)
							if err := editFile(path); err != nil {
								return err
							}
							f, err := config.Load(path, true)
							if err != nil {
								return usageErr("%v", err)
							}
							if errs := f.Check(); len(errs) > 0 {
								return usageErr("%v", errors.Join(errs...))
							}
							fmt.Fprintf(env.Stdout, "Valid configuration file at %s\n", path)
							return nil
						},
					},
					{
						Name: "check", Usage: "check the configuration file", Flags: globalFlagsUsing("config"),
						Action: func(c *cli.Context) error {
							path, named := configPath(c)
							f, err := config.Load(path, named)
							if err != nil {
								return usageErr("%v", err)
							}
							if errs := f.Check(); len(errs) > 0 {
								return usageErr("%v", errors.Join(errs...))
							}
							if _, err := os.Stat(path); err != nil {
								fmt.Fprintf(env.Stdout, "No configuration file at %s: defaults and flags apply (create one with ferry config add-authtoken or ferry config edit)\n", path)
								return nil
							}
							fmt.Fprintf(env.Stdout, "Valid configuration file at %s\n", path)
							return nil
						},
					},
				},
			},
			{
				Name:  "diagnose",
				Usage: "check DNS, TCP, TLS, QUIC, the authtoken and latency to the relay",
				Flags: globalFlagsUsing("relay", "authtoken", "relay-ca", "config"),
				Action: func(c *cli.Context) error {
					file, path, err := loadFile(c)
					if err != nil {
						return err
					}
					relay, token, relayCA := settings(c, file)
					if relay == "" {
						return usageErr("no relay to diagnose: pass --relay HOST:PORT, set FERRY_RELAY, or put relay in %s", path)
					}
					var roots *x509.CertPool
					if relayCA != "" {
						if roots, _, err = tlsconf.LoadCAs(relayCA, "--relay-ca"); err != nil {
							return usageErr("%v", err)
						}
					}
					results := diagnose.Run(c.Context, diagnose.Options{Relay: relay, Authtoken: token, RootCAs: roots,
						Color: env.Terminal, Version: env.Version}, env.Stdout)
					if diagnose.Failed(results) {
						return &exitError{code: ExitError, err: errors.New("some checks failed (see above)")}
					}
					return nil
				},
			},
			apiCommand(env),
			{
				Name:  "service",
				Usage: "run `ferry start --all` as a systemd service",
				Subcommands: []*cli.Command{
					serviceCommand(env, "install", "write and enable the systemd unit", func(o service.Options) error {
						p, err := service.Install(o)
						if err == nil {
							fmt.Fprintf(env.Stdout, "Installed %s (runs %s start --all --config %s). Start it with: ferry service start", p, o.Binary, o.ConfigPath)
							if o.User {
								fmt.Fprint(env.Stdout, "\nUser units run only while you are logged in, unless you run: loginctl enable-linger")
							}
							fmt.Fprintln(env.Stdout)
						}
						return err
					}),
					serviceCommand(env, "uninstall", "stop, disable and remove the systemd unit", service.Uninstall),
					serviceCommand(env, "start", "start the service", service.Start),
					serviceCommand(env, "stop", "stop the service", service.Stop),
				},
			},
			{
				Name:      "completion",
				Usage:     "print a shell completion script",
				ArgsUsage: "bash|zsh|fish",
				Action: func(c *cli.Context) error {
					script, err := completionScript(c.App, c.Args().First())
					if err != nil {
						return usageErr("%v", err)
					}
					fmt.Fprint(env.Stdout, script)
					return nil
				},
			},
			{
				Name:  "version",
				Usage: "print the version",
				Action: func(c *cli.Context) error {
					fmt.Fprintf(env.Stdout, "ferry version %s\n", env.Version)
					return nil
				},
			},
		},
	}
	quietUsage(app.Commands)
	return app
}

// quietUsage makes a bad flag on any command a one-line error with a pointer to its
// help, instead of the whole help text.
func quietUsage(cmds []*cli.Command) {
	for _, cmd := range cmds {
		name := cmd.Name
		cmd.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return usageErr("%v (see ferry %s --help)", err, name)
		}
		quietUsage(cmd.Subcommands)
	}
}

// lookup returns a global flag's value: set on the command, else on the app, else its env
// var or default as seen by the command.
func lookup(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return cc.String(name)
		}
	}
	return c.String(name)
}

// lookupSet reports whether the flag was given on this command or an enclosing one.
func lookupSet(c *cli.Context, name string) bool {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) {
			return true
		}
	}
	return false
}

func configPath(c *cli.Context) (string, bool) {
	if p := lookup(c, "config"); p != "" {
		return p, true
	}
	return config.DefaultPath(), false
}

// tunnelSpec is one tunnel as the user wrote it, on the command line or in the file;
// optKey(name) names the flag or the file key in error messages.
type tunnelSpec struct {
	name, proto, addr, domain, remoteAddr, terminateAt, crt, key, mutualTLSCAs string
	hostHeader                                                                 string
	proxyProto                                                                 int
	basicAuth, cidrAllow, cidrDeny                                             []string
	headers                                                                    [4][]string // request add, remove; response add, remove
	compression                                                                bool
	circuitBreaker                                                             float64
	inspect, upstreamTLSVerify                                                 bool
	labels                                                                     []string  // KEY=VALUE, labeled tunnels
	webhook                                                                    [2]string // provider, secret
	oauth                                                                      *protocol.BindOAuth
	optKey                                                                     func(option string) string
}

// build reads the spec's files and checks its options.
func (s tunnelSpec) build() (*forward.Tunnel, error) {
	addr, err := forward.ParseAddr(s.proto, s.addr)
	if err != nil {
		if k := s.optKey("addr"); k != "upstream" { // ParseAddr's errors already say "upstream"
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		return nil, err
	}
	t := &forward.Tunnel{Name: s.name, Proto: s.proto, Addr: addr, Domain: s.domain, RemoteAddr: s.remoteAddr, TerminateAt: s.terminateAt,
		HostHeader: s.hostHeader, Inspect: s.inspect, InsecureUpstream: !s.upstreamTLSVerify}
	if s.proto == "labeled" {
		if t.Labels, err = config.ParseLabels(s.labels); err != nil {
			return nil, fmt.Errorf("%s: %w", s.optKey("label"), err)
		}
	}
	switch {
	case strings.HasPrefix(s.addr, "https://"):
		t.Scheme = "https"
	case strings.HasPrefix(s.addr, "unix:"):
		t.Network = "unix"
	case strings.HasPrefix(s.addr, "file://"):
		t.FileRoot, t.Addr = addr, ""
		if fi, err := os.Stat(addr); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("%s %q: not a directory the agent can read", s.optKey("addr"), s.addr)
		}
	}
	t.ProxyProto = s.proxyProto
	t.BasicAuth, t.CIDRAllow, t.CIDRDeny = s.basicAuth, s.cidrAllow, s.cidrDeny
	t.RequestHeaderAdd, t.RequestHeaderRemove, t.ResponseHeaderAdd, t.ResponseHeaderRemove = s.headers[0], s.headers[1], s.headers[2], s.headers[3]
	t.Compression, t.CircuitBreaker = s.compression, s.circuitBreaker
	t.VerifyWebhook, t.VerifyWebhookSecret = s.webhook[0], s.webhook[1]
	t.OAuth = s.oauth
	if (s.crt == "") != (s.key == "") {
		return nil, fmt.Errorf("%s and %s go together: give both, or neither to pass TLS through to the upstream", s.optKey("crt"), s.optKey("key"))
	}
	if s.crt != "" {
		cert, err := cert.LoadKeyPair(s.crt, s.key, s.optKey("crt"), s.optKey("key"))
		if err != nil {
			return nil, err
		}
		t.Cert = &cert
	}
	if s.mutualTLSCAs != "" {
		pool, pemData, err := tlsconf.LoadCAs(s.mutualTLSCAs, s.optKey("mutual-tls-cas"))
		if err != nil {
			return nil, err
		}
		t.ClientCAs, t.ClientCAsPEM = pool, pemData
	}
	if err := t.Prepare(); err != nil {
		if s.name != "" && !strings.HasPrefix(s.name, s.proto+"-") {
			return nil, fmt.Errorf("tunnel %s: %w", s.name, err)
		}
		return nil, err
	}
	return t, nil
}

// tunnelName names a command-line tunnel after its upstream, in characters that are safe
// in /api/tunnels/NAME: "http-8080", "http-https-127.0.0.1-8443".
func tunnelName(proto, upstream string) string {
	var b strings.Builder
	b.WriteString(proto)
	dash := true
	for _, r := range upstream {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' {
			if dash {
				b.WriteByte('-')
			}
			b.WriteRune(r)
			dash = false
		} else {
			dash = true
		}
	}
	return b.String()
}

func flagKey(option string) string {
	if option == "addr" {
		return "upstream"
	}
	return "--" + option
}

// runTunnel starts one tunnel from the command line and serves until interrupted.
func runTunnel(c *cli.Context, env Env, proto string) error {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			return usageErr("flag %s needs a value (see ferry %s --help)", a, proto)
		}
	}
	if c.NArg() != 1 {
		return usageErr("ferry %s needs exactly one upstream (%s), got %d arguments: %q", proto, c.Command.ArgsUsage, c.NArg(), c.Args().Slice())
	}
	file, path, err := loadFile(c)
	if err != nil {
		return err
	}
	spec := tunnelSpec{name: tunnelName(proto, c.Args().First()), proto: proto, addr: c.Args().First(),
		domain: c.String("domain"), remoteAddr: c.String("remote-addr"), terminateAt: c.String("terminate-at"),
		crt: c.String("crt"), key: c.String("key"), mutualTLSCAs: c.String("mutual-tls-cas"), optKey: flagKey,
		basicAuth: c.StringSlice("basic-auth"), cidrAllow: c.StringSlice("cidr-allow"), cidrDeny: c.StringSlice("cidr-deny"),
		headers:     [4][]string{c.StringSlice("request-header-add"), c.StringSlice("request-header-remove"), c.StringSlice("response-header-add"), c.StringSlice("response-header-remove")},
		compression: c.Bool("compression"), circuitBreaker: c.Float64("circuit-breaker"),
		webhook: [2]string{c.String("verify-webhook"), c.String("verify-webhook-secret")}, oauth: loginFlags(c),
		proxyProto: c.Int("proxy-proto"), hostHeader: c.String("host-header"), upstreamTLSVerify: !c.IsSet("upstream-tls-verify") || c.Bool("upstream-tls-verify"),
		inspect: (proto == "http" || proto == "labeled") && c.Bool("inspect"), labels: c.StringSlice("label")}
	if proto == "labeled" && len(spec.labels) == 0 {
		return usageErr("ferry tunnel needs at least one --label KEY=VALUE (the labels an edge's tunnel_group backend selects)")
	}
	if proto != "tls" && (spec.crt != "" || spec.mutualTLSCAs != "" || spec.terminateAt != "") {
		return usageErr("--crt, --key, --mutual-tls-cas and --terminate-at are for ferry tls")
	}
	t, err := spec.build()
	if err != nil {
		return usageErr("%v", err)
	}
	return runAgent(c, env, file, path, []*forward.Tunnel{t})
}

// runStart starts tunnels defined in the configuration file.
func runStart(c *cli.Context, env Env) error {
	file, path, err := loadFile(c)
	if err != nil {
		return err
	}
	names := c.Args().Slice()
	if c.Bool("all") {
		if len(names) > 0 {
			return usageErr("ferry start: give tunnel names or --all, not both")
		}
		names = slices.Sorted(maps.Keys(file.Tunnels))
	}
	if len(names) == 0 {
		return usageErr("ferry start: name the tunnels to start (%s), or --all", strings.Join(slices.Sorted(maps.Keys(file.Tunnels)), ", "))
	}
	var tunnels []*forward.Tunnel
	for _, name := range names {
		ft, ok := file.Tunnels[name]
		if !ok {
			return usageErr("ferry start: no tunnel %q in %s (defined: %s)", name, path, strings.Join(slices.Sorted(maps.Keys(file.Tunnels)), ", "))
		}
		proto := ft.Proto
		if proto == "" && len(ft.Labels) > 0 {
			proto = "labeled"
		}
		spec := tunnelSpec{name: name, proto: proto, labels: ft.Labels, addr: ft.Addr, domain: ft.Domain, remoteAddr: ft.RemoteAddr,
			terminateAt: ft.TerminateAt, crt: ft.Crt, key: ft.Key, mutualTLSCAs: ft.MutualTLSCAs, hostHeader: ft.HostHeader, proxyProto: ft.ProxyProto,
			basicAuth: ft.BasicAuth, cidrAllow: ft.CIDRAllow, cidrDeny: ft.CIDRDeny,
			headers:     [4][]string{ft.RequestHeaderAdd, ft.RequestHeaderRemove, ft.ResponseHeaderAdd, ft.ResponseHeaderRemove},
			compression: ft.Compression, circuitBreaker: ft.CircuitBreaker, webhook: [2]string{ft.VerifyWebhook, ft.VerifyWebhookSecret}, oauth: fileLogin(ft),
			inspect: (proto == "http" || proto == "labeled") && (ft.Inspect == nil || *ft.Inspect), upstreamTLSVerify: ft.UpstreamTLSVerify == nil || *ft.UpstreamTLSVerify,
			optKey: func(o string) string {
				return fmt.Sprintf("%s: tunnels.%s.%s", path, name, strings.ReplaceAll(o, "-", "_"))
			}}
		t, err := spec.build()
		if err != nil {
			return usageErr("%v", err)
		}
		tunnels = append(tunnels, t)
	}
	return runAgent(c, env, file, path, tunnels)
}

func loadFile(c *cli.Context) (*config.File, string, error) {
	path, named := configPath(c)
	file, err := config.Load(path, named)
	if err != nil {
		return nil, path, usageErr("%v", err)
	}
	if errs := file.Check(); len(errs) > 0 {
		return nil, path, usageErr("%v (run `ferry config check`)", errors.Join(errs...))
	}
	return file, path, nil
}

// runAgent connects to the relay and serves the tunnels until interrupted, or until the
// --exec command ends.
func runAgent(c *cli.Context, env Env, file *config.File, path string, tunnels []*forward.Tunnel) error {
	relay, token, relayCA := settings(c, file)
	if relay == "" {
		return usageErr("no relay: pass --relay HOST:PORT, set FERRY_RELAY, or put relay = \"HOST:PORT\" in %s", path)
	}
	if _, _, err := net.SplitHostPort(relay); err != nil {
		return usageErr("--relay %q: want HOST:PORT, e.g. relay.example.com:443", relay)
	}
	if token == "" {
		return usageErr("no authtoken: pass --authtoken TOKEN, set FERRY_AUTHTOKEN, or run `ferry config add-authtoken TOKEN` (create one on the relay with `ferry-relay token create`)")
	}
	transportChoice := lookup(c, "transport")
	switch transportChoice {
	case "auto", "quic", "tcp":
	default:
		return usageErr("--transport %q: want auto, quic or tcp", transportChoice)
	}
	attempts := 4
	if file != nil && file.ConnectAttempts != nil {
		attempts = *file.ConnectAttempts
	}
	if lookupSet(c, "connect-attempts") {
		attempts = c.Int("connect-attempts")
	}
	if attempts < 0 {
		return usageErr("--connect-attempts %d: want 0 (until it works) or more", attempts)
	}
	if attempts == 0 {
		attempts = -1 // session.Config: keep trying
	}
	var roots *x509.CertPool
	if relayCA != "" {
		var err error
		roots, _, err = tlsconf.LoadCAs(relayCA, "--relay-ca")
		if err != nil {
			return usageErr("%v", err)
		}
	}
	log, closeLog, err := openLog(c, env, file)
	if err != nil {
		return usageErr("%v", err)
	}
	defer closeLog()

	if addr := lookup(c, "pprof-addr"); addr != "" {
		stop, err := pprof.Serve(addr, log)
		if err != nil {
			return usageErr("--pprof-addr: %v", err)
		}
		defer stop()
	}
	store := inspect.NewStore()
	for _, t := range tunnels {
		t.Store = store
	}
	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	ci := &ciMode{command: lookup(c, "exec"), urlFile: lookup(c, "url-file"), stdout: env.Stdout, stderr: env.Stderr, log: log, cancel: cancel, parent: c.Context,
		interactive: console.IsTerminal(os.Stdin)}
	client := session.New(session.Config{
		Relay: relay, Authtoken: token, RootCAs: roots, Tunnels: tunnels, Transport: transportChoice, ConnectAttempts: attempts,
		Log: log, Version: env.Version,
		OnReady: ci.ready,
	})
	apiURL := ""
	if apiAddr := pick(c, "api-addr", file.APIAddr); apiAddr != "" && apiAddr != "false" {
		ln, err := net.Listen("tcp", apiAddr)
		if err != nil {
			log.Warn("local API disabled: cannot listen; pass --api-addr HOST:PORT or --api-addr false", "addr", apiAddr, "err", err)
		} else {
			apiURL = "http://" + ln.Addr().String()
			apiSrv := &http.Server{Handler: api.Handler(agentTunnels{client, store}, store), ReadHeaderTimeout: 5 * time.Second}
			go apiSrv.Serve(ln) //nolint:errcheck // ends with Close
			defer apiSrv.Close()
		}
	}
	// On a terminal without --log, the live UI is the output; otherwise logs are.
	if env.Terminal && !tuiOff(c, file) {
		wake, stopWake := store.Subscribe()
		defer stopWake()
		view := func() console.View { return tuiView(client, store, relay, env.Version, apiURL) }
		tui := console.NewTUI(env.Stdout, view, wake)
		tctx, tcancel := context.WithCancel(ctx)
		tuiDone := make(chan struct{})
		go func() { tui.Run(tctx); close(tuiDone) }()
		defer func() {
			tcancel()
			<-tuiDone
			v := view()
			v.Online = false
			printFinal(env.Stdout, v)
		}()
	}
	runErr := client.Run(ctx)
	if ci.command != "" && ci.started() {
		return ci.wait()
	}
	return runErr
}

// pick returns a setting: the flag if set, else the file's value, else the flag's env
// var or default.
func pick(c *cli.Context, name, fromFile string) string {
	if v := setValue(c, name); v != "" { // set on the command line (before or after the command) or by env
		return v
	}
	if fromFile != "" {
		return fromFile
	}
	return lookup(c, name)
}

// settings returns the relay, authtoken and relay CA from flags, env and the file.
func settings(c *cli.Context, file *config.File) (relay, token, relayCA string) {
	return pick(c, "relay", file.Relay), pick(c, "authtoken", file.Authtoken), pick(c, "relay-ca", file.RelayCA)
}

// tuiOff reports whether --log (flag or file) asks for logs instead of the live UI.
func tuiOff(c *cli.Context, file *config.File) bool {
	return setValue(c, "log") != "" || file.Log != ""
}

func tuiView(client *session.Client, store *inspect.Store, relay, version, apiURL string) console.View {
	v := console.View{Online: client.Connected(), Relay: relay, Transport: client.Transport(), RTT: client.RTT(),
		Version: version, APIURL: apiURL, Requests: store.List(10, "")}
	for _, st := range client.Tunnels() {
		urls := st.URLs
		if len(st.Tunnel.Labels) > 0 && len(urls) == 0 && client.Connected() {
			// A labeled tunnel has no URL of its own: show what edges select it by.
			urls = []string{"labels " + protocol.LabelString(st.Tunnel.Labels)}
		}
		for _, u := range urls {
			v.Tunnels = append(v.Tunnels, console.TunnelView{URL: u, Upstream: st.Tunnel.Upstream(),
				Open: st.Tunnel.Conns.Load(), Total: st.Tunnel.Total.Load()})
		}
	}
	return v
}

// printFinal leaves the forwarding lines on the normal screen after the live UI ends.
func printFinal(w io.Writer, v console.View) {
	s := console.Status{Relay: v.Relay, Version: v.Version, APIURL: v.APIURL, Closed: !v.Online}
	for _, t := range v.Tunnels {
		s.Forwards = append(s.Forwards, console.Forward{URL: t.URL, Upstream: t.Upstream})
	}
	console.PrintStatus(w, s)
}

// agentTunnels gives the local API the client's tunnels, and builds tunnels it starts at
// run time the way config-file tunnels are built.
type agentTunnels struct {
	c     *session.Client
	store *inspect.Store
}

func (a agentTunnels) Tunnels() []session.Status          { return a.c.Tunnels() }
func (a agentTunnels) Tunnel(name string) *forward.Tunnel { return a.c.Tunnel(name) }
func (a agentTunnels) StopTunnel(name string) error       { return a.c.RemoveTunnel(name) }
func (a agentTunnels) Session() session.SessionStatus     { return a.c.Session() }

// StartTunnel builds a tunnel like a config-file one and starts it.
func (a agentTunnels) StartTunnel(ctx context.Context, req api.TunnelRequest) error {
	if req.Proto == "" && len(req.Labels) > 0 {
		req.Proto = "labeled"
	}
	spec := tunnelSpec{name: req.Name, proto: req.Proto, addr: req.Addr, domain: req.Domain, remoteAddr: req.RemoteAddr,
		terminateAt: req.TerminateAt, crt: req.Crt, key: req.Key, mutualTLSCAs: req.MutualTLSCAs, hostHeader: req.HostHeader,
		proxyProto: req.ProxyProto, basicAuth: req.BasicAuth, cidrAllow: req.CIDRAllow, cidrDeny: req.CIDRDeny,
		headers:     [4][]string{req.RequestHeaderAdd, req.RequestHeaderRemove, req.ResponseHeaderAdd, req.ResponseHeaderRemove},
		compression: req.Compression, circuitBreaker: req.CircuitBreaker, webhook: [2]string{req.VerifyWebhook, req.VerifyWebhookSecret}, oauth: req.OAuth, labels: req.Labels, inspect: (req.Proto == "http" || req.Proto == "labeled") && (req.Inspect == nil || *req.Inspect),
		upstreamTLSVerify: req.UpstreamTLSVerify == nil || *req.UpstreamTLSVerify,
		optKey:            func(o string) string { return strings.ReplaceAll(o, "-", "_") }}
	t, err := spec.build()
	if err != nil {
		return err
	}
	t.Store = a.store
	_, err = a.c.AddTunnel(ctx, t)
	return err
}

// openLog builds the logger from --log, --log-format and --log-level (flags over file).
func openLog(c *cli.Context, env Env, file *config.File) (*slog.Logger, func(), error) {
	dest := firstNonEmpty(setValue(c, "log"), file.Log)
	format := firstNonEmpty(setValue(c, "log-format"), file.LogFormat)
	level := firstNonEmpty(setValue(c, "log-level"), file.LogLevel, "info")
	if dest == "" {
		dest = "stdout"
		if env.Terminal {
			dest = "false" // the status block is the output; --log stdout to see logs too
		}
	}
	if format == "" {
		format = "logfmt"
		if env.Terminal && dest != "false" {
			format = "term"
		}
	}
	lvl, err := console.ParseLevel(level)
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer
	closer := func() {}
	switch dest {
	case "stdout":
		w = env.Stdout
	case "stderr":
		w = env.Stderr
	case "false", "none":
		w = io.Discard
	default:
		f, err := os.OpenFile(dest, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--log %s: %w", dest, err)
		}
		w = f
		closer = func() { f.Close() }
	}
	log, err := console.NewLogger(w, format, lvl)
	if err != nil {
		return nil, nil, err
	}
	return log, closer, nil
}

// setValue returns the first non-empty value set for a flag anywhere in the command line
// (or its env var): a set-but-empty FERRY_RELAY must not hide --relay before the command.
func setValue(c *cli.Context, name string) string {
	for _, cc := range c.Lineage() {
		if cc.IsSet(name) && cc.String(name) != "" {
			return cc.String(name)
		}
	}
	return ""
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// loginFlags reads --oauth or --oidc and their options (nil: neither).
func loginFlags(c *cli.Context) *protocol.BindOAuth {
	switch {
	case c.String("oauth") != "" && c.String("oidc") != "":
		return &protocol.BindOAuth{Provider: "--oauth and --oidc together"}
	case c.String("oauth") != "":
		return &protocol.BindOAuth{Provider: c.String("oauth"), ClientID: c.String("oauth-client-id"), ClientSecret: c.String("oauth-client-secret"),
			Scopes: c.StringSlice("oauth-scope"), AllowEmails: c.StringSlice("oauth-allow-email"), AllowDomains: c.StringSlice("oauth-allow-domain")}
	case c.String("oidc") != "":
		return &protocol.BindOAuth{Provider: "oidc", Issuer: c.String("oidc"), ClientID: c.String("oidc-client-id"), ClientSecret: c.String("oidc-client-secret"),
			Scopes: c.StringSlice("oidc-scope"), AllowEmails: c.StringSlice("oidc-allow-email"), AllowDomains: c.StringSlice("oidc-allow-domain")}
	}
	for _, f := range []string{"oauth-client-id", "oauth-client-secret", "oauth-scope", "oauth-allow-email", "oauth-allow-domain",
		"oidc-client-id", "oidc-client-secret", "oidc-scope", "oidc-allow-email", "oidc-allow-domain"} {
		if c.IsSet(f) {
			// A login option without its provider must not start an open tunnel.
			return &protocol.BindOAuth{Provider: "--" + f + " without --oauth PROVIDER or --oidc ISSUER"}
		}
	}
	return nil
}

// fileLogin reads a config-file tunnel's [oauth] or [oidc] table.
func fileLogin(ft config.Tunnel) *protocol.BindOAuth {
	if ft.OIDC != nil {
		return ft.OIDC.Bind(true)
	}
	return ft.OAuth.Bind(false)
}
