// Package cli is the `ferry-relay` command line: serving (with --dev), and the account,
// token and apikey commands that work on its store.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/ferrytunnel/ferry/protocol/pprof"
	"github.com/ferrytunnel/ferry/relay/cert"
	"github.com/ferrytunnel/ferry/relay/config"
	"github.com/ferrytunnel/ferry/relay/server"
	"github.com/ferrytunnel/ferry/relay/store"
)

// Env is what the command line runs with.
type Env struct {
	Stdout, Stderr io.Writer
	Version        string
}

// devTokenFile keeps the dev relay's authtoken in plain text so the printed agent
// command stays the same across restarts. Only --dev writes it.
const devTokenFile = "dev-authtoken"

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	err := newApp(env).RunContext(ctx, args)
	if err == nil {
		return 0
	}
	fmt.Fprintf(env.Stderr, "ferry-relay: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

type usageError struct{ error }

func (u usageError) Unwrap() error { return u.error }

// flag names map to config keys by replacing - with _.
func serveFlags() []cli.Flag {
	d := config.Defaults()
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "TOML configuration `FILE` (every flag is also a key, with _ for -)"},
		&cli.BoolFlag{Name: "dev", Usage: "run everything on 127.0.0.1 with a throwaway CA and print the agent command"},
		&cli.StringFlag{Name: "quic-addr", Usage: "UDP `ADDR` agents connect to (QUIC)", DefaultText: d.QUICAddr + ", dev 127.0.0.1:4443"},
		&cli.StringFlag{Name: "https-addr", Usage: "public TLS `ADDR` (SNI dispatch); empty disables", DefaultText: d.HTTPSAddr + ", dev 127.0.0.1:4443"},
		&cli.StringFlag{Name: "http-addr", Usage: "public HTTP `ADDR`; empty disables", DefaultText: d.HTTPAddr + ", dev 127.0.0.1:4080"},
		&cli.StringFlag{Name: "tcp-ports", Usage: "public port `RANGE` LOW-HIGH for tcp tunnels", DefaultText: d.TCPPorts + ", dev 40000-40099"},
		&cli.StringFlag{Name: "domain", Usage: "base `DOMAIN`: tunnels get <random>.DOMAIN", DefaultText: "required, dev localhost"},
		&cli.StringFlag{Name: "tls-cert", Usage: "the relay's certificate `FILE` (PEM chain) for DOMAIN and *.DOMAIN"},
		&cli.StringFlag{Name: "tls-key", Usage: "the private key `FILE` (PEM) for --tls-cert"},
		&cli.StringFlag{Name: "data", Usage: "data `DIR` (database, secret key, ACME state, dev CA)", DefaultText: d.Data},
		&cli.StringFlag{Name: "database", Usage: "`DSN` of the store: sqlite:PATH or postgres://USER@HOST/DB", DefaultText: "SQLite in DATA/ferry.db"},
		&cli.StringFlag{Name: "secret-key-file", Usage: "`FILE` with the key that encrypts uploaded private keys", DefaultText: "DATA/secret.key, created 0600"},
		&cli.StringFlag{Name: "api-addr", Usage: "management API `ADDR` (bearer API keys); empty disables", DefaultText: d.APIAddr},
		&cli.StringFlag{Name: "cname-target", Usage: "`HOST` custom domains point their CNAME at", DefaultText: "DOMAIN"},
		&cli.StringFlag{Name: "acme-email", Usage: "turn on automated certificates for reserved domains, with this contact `EMAIL`"},
		&cli.StringFlag{Name: "acme-ca", Usage: "ACME directory `URL`", DefaultText: "Let's Encrypt"},
		&cli.StringFlag{Name: "acme-ca-root", Usage: "PEM `FILE` of roots to trust for the ACME server (private CAs such as Pebble)"},
		&cli.StringFlag{Name: "acme-zone", Usage: "DNS `ZONE` the relay serves for wildcard DNS-01 challenges", DefaultText: "acme.DOMAIN"},
		&cli.StringFlag{Name: "dns-addr", Usage: "`ADDR` (UDP+TCP) where the relay answers DNS for --acme-zone, e.g. :53; empty disables"},
		&cli.StringFlag{Name: "log-format", Usage: "logfmt or json", DefaultText: d.LogFormat},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", DefaultText: d.LogLevel},
		&cli.StringFlag{Name: "oauth-ca-roots", Usage: "PEM `FILE` of CAs trusted (besides the system's) for OAuth/OIDC issuers and SAML metadata"},
		&cli.StringFlag{Name: "agent-silence", Usage: "free an agent's names after `DURATION` without a word from it", DefaultText: "15s"},
		&cli.StringFlag{Name: "drain-timeout", Usage: "on SIGTERM/Ctrl-C, let connections in flight finish for up to `DURATION` (0s: close at once)", DefaultText: "30s"},
		&cli.IntFlag{Name: "max-streams-per-account", Usage: "most public connections open at once to one account's agents (-1: no limit)", DefaultText: "20000"},
		&cli.IntFlag{Name: "max-tunnels-per-account", Usage: "most tunnels one account may have online (-1: no limit)", DefaultText: "5000"},
		&cli.IntFlag{Name: "max-conns-per-ip", Usage: "most public connections one client address may hold open (-1: no limit)", DefaultText: "1000"},
		&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics at /metrics on `ADDR` (e.g. 127.0.0.1:9090); off by default"},
		&cli.StringFlag{Name: "events-dir", Usage: "the only `DIR` event subscriptions may write files in (default: file destinations refused)"},
		&cli.BoolFlag{Name: "events-allow-private", Usage: "let event webhooks reach private and loopback addresses (dev mode: on)"},
		&cli.StringFlag{Name: "pprof-addr", Usage: "serve Go's pprof profiles on `ADDR` (e.g. 127.0.0.1:6060); off by default"},
	}
}

func newApp(env Env) *cli.App {
	return &cli.App{
		Name:            "ferry-relay",
		Usage:           "the relay ferry agents connect to; serves their tunnels to the public",
		Version:         env.Version,
		Writer:          env.Stdout,
		ErrWriter:       env.Stderr,
		Flags:           serveFlags(),
		HideHelpCommand: true,
		ExitErrHandler:  func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return usageError{fmt.Errorf("%w (see ferry-relay --help)", err)}
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return usageError{fmt.Errorf("unknown command %q (see ferry-relay --help)", c.Args().First())}
			}
			return serve(c, env)
		},
		Commands: []*cli.Command{
			{
				Name:  "account",
				Usage: "manage accounts (each has its own authtokens, API keys, domains and addresses)",
				Subcommands: []*cli.Command{
					{
						Name:      "create",
						Usage:     "create an account",
						ArgsUsage: "NAME",
						Flags:     storeFlags(),
						Action: func(c *cli.Context) error {
							if c.NArg() != 1 {
								for _, a := range c.Args().Slice()[1:] {
									if strings.HasPrefix(a, "-") {
										return usageError{fmt.Errorf("flag %s after NAME: put flags before it, e.g. ferry-relay account create %s %s", a, strings.Join(c.Args().Slice()[1:], " "), c.Args().First())}
									}
								}
								return usageError{errors.New("account create needs one NAME, e.g. ferry-relay account create acme")}
							}
							return withStore(c, func(ctx context.Context, st *store.Store) error {
								a, err := st.CreateAccount(ctx, c.Args().First())
								if err != nil {
									return err
								}
								fmt.Fprintf(env.Stdout, "%s\t%s\n", a.ID, a.Name)
								return nil
							})
						},
					},
					{
						Name:  "list",
						Usage: "list accounts",
						Flags: storeFlags(),
						Action: func(c *cli.Context) error {
							return withStore(c, func(ctx context.Context, st *store.Store) error {
								as, err := st.ListAccounts(ctx)
								for _, a := range as {
									fmt.Fprintf(env.Stdout, "%s\t%s\t%s\n", a.ID, a.Name, a.CreatedAt.Format(time.RFC3339))
								}
								return err
							})
						},
					},
				},
			},
			{
				Name:  "token",
				Usage: "manage agent authtokens",
				Subcommands: []*cli.Command{{
					Name:   "create",
					Usage:  "create an authtoken and print it (only its hash is stored)",
					Flags:  secretFlags(),
					Action: func(c *cli.Context) error { return createSecret(c, env, (*store.Store).CreateCredential) },
				}},
			},
			{
				Name:  "apikey",
				Usage: "manage management-API keys",
				Subcommands: []*cli.Command{{
					Name:   "create",
					Usage:  "create an API key and print it (only its hash is stored)",
					Flags:  secretFlags(),
					Action: func(c *cli.Context) error { return createSecret(c, env, (*store.Store).CreateAPIKey) },
				}},
			},
			{
				Name:   "version",
				Usage:  "print the version",
				Action: func(*cli.Context) error { fmt.Fprintf(env.Stdout, "ferry-relay version %s\n", env.Version); return nil },
			},
		},
	}
}

// loadConfig applies defaults, dev defaults, the file, then flags.
func loadConfig(c *cli.Context) (config.Config, error) {
	cfg := config.Defaults()
	dev := c.Bool("dev")
	if path := c.String("config"); path != "" && !dev {
		var peek config.Config
		if err := peek.Load(path); err != nil {
			return cfg, usageError{err}
		}
		dev = peek.Dev
	}
	if dev {
		cfg.ApplyDev()
	}
	if path := c.String("config"); path != "" {
		if err := cfg.Load(path); err != nil {
			return cfg, usageError{err}
		}
	}
	fields := map[string]*string{
		"quic-addr": &cfg.QUICAddr, "https-addr": &cfg.HTTPSAddr, "http-addr": &cfg.HTTPAddr,
		"tcp-ports": &cfg.TCPPorts, "domain": &cfg.Domain, "tls-cert": &cfg.TLSCert, "tls-key": &cfg.TLSKey,
		"data": &cfg.Data, "log-format": &cfg.LogFormat, "log-level": &cfg.LogLevel, "pprof-addr": &cfg.PprofAddr,
		"database": &cfg.Database, "secret-key-file": &cfg.SecretKeyFile, "api-addr": &cfg.APIAddr,
		"cname-target": &cfg.CNAMETarget, "acme-email": &cfg.ACMEEmail, "acme-ca": &cfg.ACMECA,
		"acme-ca-root": &cfg.ACMECARoot, "acme-zone": &cfg.ACMEZone, "dns-addr": &cfg.DNSAddr,
		"metrics-addr": &cfg.MetricsAddr, "events-dir": &cfg.EventsDir, "oauth-ca-roots": &cfg.OAuthCARoots,
		"drain-timeout": &cfg.DrainTimeout, "agent-silence": &cfg.AgentSilence,
	}
	for name, field := range fields {
		if c.IsSet(name) {
			*field = c.String(name)
		}
	}
	if c.IsSet("max-streams-per-account") {
		cfg.MaxStreamsPerAccount = c.Int("max-streams-per-account")
	}
	if c.IsSet("max-tunnels-per-account") {
		cfg.MaxTunnelsPerAccount = c.Int("max-tunnels-per-account")
	}
	if c.IsSet("max-conns-per-ip") {
		cfg.MaxConnsPerIP = c.Int("max-conns-per-ip")
	}
	if c.IsSet("events-allow-private") {
		cfg.EventsAllowPrivate = c.Bool("events-allow-private")
	}
	if dev {
		cfg.Dev = true
	}
	return cfg, nil
}

func serve(c *cli.Context, env Env) error {
	cfg, err := loadConfig(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.Data, 0o700); err != nil {
		return fmt.Errorf("--data %s: %w", cfg.Data, err)
	}
	st, err := store.Open(c.Context, cfg.Database, cfg.Data)
	if err != nil {
		return err // store.Open names --database
	}
	defer st.Close()
	var dev devSecrets
	var devCA *cert.DevCA
	if cfg.Dev {
		if devCA, dev, err = prepareDev(c.Context, &cfg, st); err != nil {
			return err
		}
	}
	if err := cfg.Validate(); err != nil {
		return usageError{err}
	}
	var lvl slog.Level
	lvl.UnmarshalText([]byte(cfg.LogLevel)) //nolint:errcheck // Validate checked it
	opts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(env.Stderr, opts)
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(env.Stderr, opts)
	}
	log := slog.New(h)

	if addr := cfg.PprofAddr; addr != "" {
		stop, err := pprof.Serve(addr, log)
		if err != nil {
			return usageError{fmt.Errorf("--pprof-addr: %w", err)}
		}
		defer stop()
	}
	srv, err := server.New(server.Options{Config: cfg, Store: st, Log: log, Version: env.Version, DevCA: devCA})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if cfg.Dev {
		printDev(env.Stdout, cfg, srv, dev)
	}
	return srv.Serve(c.Context)
}

// devSecrets are the dev relay's authtoken and API key.
type devSecrets struct{ token, apiKey string }

// prepareDev creates the dev CA, the relay certificate, and the "dev" account with an
// authtoken and an API key. Both are kept in plain text in the data dir (dev only) so the
// printed commands stay the same across restarts.
func prepareDev(ctx context.Context, cfg *config.Config, st *store.Store) (*cert.DevCA, devSecrets, error) {
	var sec devSecrets
	ca, err := cert.LoadOrCreateDevCA(cfg.Data)
	if err != nil {
		return nil, sec, err
	}
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		names := []string{cfg.Domain, "*." + cfg.Domain}
		if _, err := cert.LoadOrCreateDevLeaf(cfg.Data, ca, names, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}); err != nil {
			return nil, sec, err
		}
		cfg.TLSCert = filepath.Join(cfg.Data, cert.LeafCertFile)
		cfg.TLSKey = filepath.Join(cfg.Data, cert.LeafKeyFile)
	}
	acct, err := st.AccountByName(ctx, "dev")
	if errors.Is(err, store.ErrNotFound) {
		acct, err = st.CreateAccount(ctx, "dev")
	}
	if err != nil {
		return nil, sec, err
	}
	sec.token, err = devSecret(filepath.Join(cfg.Data, devTokenFile),
		func(t string) error { _, err := st.VerifyCredential(ctx, t); return err },
		func() (string, error) {
			c, err := st.CreateCredential(ctx, acct.ID, "dev relay", "")
			return c.Token, err
		})
	if err != nil {
		return nil, sec, err
	}
	sec.apiKey, err = devSecret(filepath.Join(cfg.Data, devAPIKeyFile),
		func(t string) error { _, err := st.VerifyAPIKey(ctx, t); return err },
		func() (string, error) { k, err := st.CreateAPIKey(ctx, acct.ID, "dev relay", ""); return k.Token, err })
	return ca, sec, err
}

// devAPIKeyFile keeps the dev relay's API key in plain text (dev only).
const devAPIKeyFile = "dev-apikey"

// devSecret returns the secret kept in path if the store still knows it, else a new one.
func devSecret(path string, verify func(string) error, create func() (string, error)) (string, error) {
	if b, err := os.ReadFile(path); err == nil {
		if tok := strings.TrimSpace(string(b)); verify(tok) == nil {
			return tok, nil
		}
	}
	tok, err := create()
	if err != nil {
		return "", err
	}
	return tok, os.WriteFile(path, []byte(tok+"\n"), 0o600)
}

func printDev(w io.Writer, cfg config.Config, srv *server.Server, sec devSecrets) {
	ca := filepath.Join(cfg.Data, cert.CACertFile)
	fmt.Fprintf(w, "ferry-relay is running in dev mode: everything on 127.0.0.1, throwaway CA in %s\n\n", ca)
	fmt.Fprintf(w, "  agents (QUIC):  %s/udp\n", srv.QUICAddr())
	if a := srv.HTTPSAddr(); a != nil {
		fmt.Fprintf(w, "  public TLS:     %s\n", a)
	}
	if a := srv.HTTPAddr(); a != nil {
		fmt.Fprintf(w, "  public HTTP:    %s\n", a)
	}
	fmt.Fprintf(w, "  tcp tunnels:    ports %s\n", cfg.TCPPorts)
	if a := srv.APIAddr(); a != nil {
		fmt.Fprintf(w, "  management API: http://%s (API key %s)\n", a, sec.apiKey)
	}
	fmt.Fprintf(w, "\nExpose a local port (here 8080) with:\n\n  ferry http 8080 --relay %s --relay-ca %s --authtoken %s\n\n", srv.QUICAddr(), ca, sec.token)
}

// storeFlags locate the relay's store for the management subcommands.
func storeFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Usage: "the relay's TOML configuration `FILE` (for data and database)"},
		&cli.StringFlag{Name: "data", Usage: "data `DIR`", DefaultText: config.Defaults().Data},
		&cli.StringFlag{Name: "database", Usage: "`DSN`: sqlite:PATH or postgres://... (default: SQLite in --data)"},
	}
}

func secretFlags() []cli.Flag {
	return append(storeFlags(),
		&cli.StringFlag{Name: "account", Usage: "account `NAME` it belongs to (default: the store's only account, e.g. dev on a dev relay's data; else \"default\", created when first used)"},
		&cli.StringFlag{Name: "description", Usage: "what it is for, shown in the API"},
	)
}

// withStore opens the store the relay's flags or config name and runs fn.
func withStore(c *cli.Context, fn func(context.Context, *store.Store) error) error {
	cfg := config.Defaults()
	if path := c.String("config"); path != "" {
		if err := cfg.Load(path); err != nil {
			return usageError{err}
		}
	}
	if c.IsSet("data") {
		cfg.Data = c.String("data")
	}
	if c.IsSet("database") {
		cfg.Database = c.String("database")
	}
	st, err := store.Open(c.Context, cfg.Database, cfg.Data)
	if err != nil {
		return err
	}
	defer st.Close()
	return fn(c.Context, st)
}

// accountID finds an account by name; "default" is created on first use.
func accountID(ctx context.Context, st *store.Store, name string) (string, error) {
	a, err := st.AccountByName(ctx, name)
	if errors.Is(err, store.ErrNotFound) && name == "default" {
		a, err = st.CreateAccount(ctx, name)
	}
	if errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("no account %q: create it with `ferry-relay account create %s`", name, name)
	}
	return a.ID, err
}

// soleAccount names the account a token or key goes to without --account: the store's
// only one (a dev relay's "dev"), else "default".
func soleAccount(ctx context.Context, st *store.Store) (string, error) {
	as, err := st.ListAccounts(ctx)
	if err != nil {
		return "", err
	}
	if len(as) == 1 {
		return as[0].Name, nil
	}
	names := make([]string, 0, len(as))
	for _, a := range as {
		if a.Name == "default" {
			return a.Name, nil
		}
		names = append(names, a.Name)
	}
	if len(as) > 1 {
		return "", usageError{fmt.Errorf("this store has several accounts (%s): pass --account NAME", strings.Join(names, ", "))}
	}
	return "default", nil
}

// createSecret creates an authtoken or API key and prints it once.
func createSecret[T interface {
	store.Credential | store.APIKey
}](c *cli.Context, env Env, create func(*store.Store, context.Context, string, string, string) (T, error)) error {
	return withStore(c, func(ctx context.Context, st *store.Store) error {
		name := c.String("account")
		if name == "" {
			var err error
			if name, err = soleAccount(ctx, st); err != nil {
				return err
			}
		}
		id, err := accountID(ctx, st, name)
		if err != nil {
			return err
		}
		k, err := create(st, ctx, id, c.String("description"), "")
		if err != nil {
			return err
		}
		switch k := any(k).(type) {
		case store.Credential:
			fmt.Fprintln(env.Stdout, k.Token)
		case store.APIKey:
			fmt.Fprintln(env.Stdout, k.Token)
		}
		return nil
	})
}
