// Package cli is the `ferry-relay` command line: serving (with --dev), and `token create`.
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
		&cli.StringFlag{Name: "data", Usage: "data `DIR` (authtokens, dev CA)", DefaultText: d.Data},
		&cli.StringFlag{Name: "log-format", Usage: "logfmt or json", DefaultText: d.LogFormat},
		&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", DefaultText: d.LogLevel},
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
				Name:  "token",
				Usage: "manage authtokens",
				Subcommands: []*cli.Command{{
					Name:  "create",
					Usage: "create an authtoken and print it (only its hash is stored)",
					Flags: []cli.Flag{
						&cli.StringFlag{Name: "data", Usage: "data `DIR`", Value: config.Defaults().Data},
						&cli.StringFlag{Name: "account", Usage: "account `NAME` the token belongs to", Value: "default"},
					},
					Action: func(c *cli.Context) error {
						tokens, err := store.OpenTokens(c.String("data"))
						if err != nil {
							return err
						}
						tok, err := tokens.Create(c.String("account"))
						if err != nil {
							return err
						}
						fmt.Fprintln(env.Stdout, tok)
						return nil
					},
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
	}
	for name, field := range fields {
		if c.IsSet(name) {
			*field = c.String(name)
		}
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
	var devToken string
	var devCA *cert.DevCA
	if cfg.Dev {
		if devCA, devToken, err = prepareDev(&cfg); err != nil {
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
	srv, err := server.New(server.Options{Config: cfg, Log: log, Version: env.Version, DevCA: devCA})
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	if cfg.Dev {
		printDev(env.Stdout, cfg, srv, devToken)
	}
	return srv.Serve(c.Context)
}

// prepareDev creates the dev CA, the relay certificate and an authtoken in the data dir.
func prepareDev(cfg *config.Config) (*cert.DevCA, string, error) {
	ca, err := cert.LoadOrCreateDevCA(cfg.Data)
	if err != nil {
		return nil, "", err
	}
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		names := []string{cfg.Domain, "*." + cfg.Domain}
		if _, err := cert.LoadOrCreateDevLeaf(cfg.Data, ca, names, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}); err != nil {
			return nil, "", err
		}
		cfg.TLSCert = filepath.Join(cfg.Data, cert.LeafCertFile)
		cfg.TLSKey = filepath.Join(cfg.Data, cert.LeafKeyFile)
	}
	tokens, err := store.OpenTokens(cfg.Data)
	if err != nil {
		return nil, "", err
	}
	path := filepath.Join(cfg.Data, devTokenFile)
	if b, err := os.ReadFile(path); err == nil {
		tok := strings.TrimSpace(string(b))
		if _, err := tokens.Verify(tok); err == nil {
			return ca, tok, nil
		}
	}
	tok, err := tokens.Create("dev")
	if err != nil {
		return nil, "", err
	}
	return ca, tok, os.WriteFile(path, []byte(tok+"\n"), 0o600)
}

func printDev(w io.Writer, cfg config.Config, srv *server.Server, token string) {
	ca := filepath.Join(cfg.Data, cert.CACertFile)
	fmt.Fprintf(w, "ferry-relay is running in dev mode: everything on 127.0.0.1, throwaway CA in %s\n\n", ca)
	fmt.Fprintf(w, "  agents (QUIC):  %s/udp\n", srv.QUICAddr())
	if a := srv.HTTPSAddr(); a != nil {
		fmt.Fprintf(w, "  public TLS:     %s\n", a)
	}
	if a := srv.HTTPAddr(); a != nil {
		fmt.Fprintf(w, "  public HTTP:    %s\n", a)
	}
	fmt.Fprintf(w, "  tcp tunnels:    ports %s\n\n", cfg.TCPPorts)
	fmt.Fprintf(w, "Expose a local port (here 8080) with:\n\n  ferry http 8080 --relay %s --relay-ca %s --authtoken %s\n\n", srv.QUICAddr(), ca, token)
}
