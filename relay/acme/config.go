package acme

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// LetsEncryptDirectory is the default ACME directory.
const LetsEncryptDirectory = certmagic.LetsEncryptProductionCA

// Config configures a Manager. The zero value of every field but StorageDir is usable.
type Config struct {
	// DirectoryURL is the ACME server's directory. Default: LetsEncryptDirectory. With the default,
	// certmagic retries failed orders against Let's Encrypt staging first, to spare production rate
	// limits.
	DirectoryURL string
	// RootCAs verifies the ACME server's TLS certificate. Default (nil): the system roots.
	RootCAs *x509.CertPool
	// Email is the ACME account's contact address. Optional. Using the Manager means agreeing to the
	// CA's terms of service on the operator's behalf.
	Email string

	// StorageDir holds certmagic's file storage: account, certificates, keys, locks (created 0700,
	// files 0600). Required; e.g. "<data>/acme". Several relays sharing it (a network file system)
	// coordinate through its locks.
	StorageDir string
	// StorageKey, when set, seals every private key (certificate and ACME account keys) with NaCl
	// secretbox before it is written to StorageDir. Keys written in plain PEM before the key was set
	// are still read. Default: nil, keys in plain PEM.
	StorageKey *[32]byte

	// ChallengeZone is the DNS zone this relay is authoritative for (e.g. "acme.relay.example.com"),
	// delegated to it by NS records in the parent zone. A domain's acme_challenge_cname_target is
	// "<label>.<ChallengeZone>". Required for wildcard domains; without it only plain names can be
	// managed.
	ChallengeZone string
	// NameServers are the NS names answered at the zone apex. Default: the parent of ChallengeZone
	// ("acme.relay.example.com" → "relay.example.com"), the relay's own host name in the usual set-up.
	NameServers []string
	// NameServerAddrs are answered as A/AAAA for name servers inside ChallengeZone (glue). Optional.
	NameServerAddrs []netip.Addr
	// DNSResolvers ("host:port") are what certmagic asks to find the challenge zone (SOA) and to check
	// that a challenge record is visible before telling the CA to look. Default: the relay's own DNS
	// listener when ListenDNS or ServeDNS runs (we are authoritative, so the record is live the moment
	// it is written and the propagation check is skipped), else the system resolvers. When set, the
	// propagation check runs against them.
	DNSResolvers []string

	// HTTPPort and TLSPort are the local ports of the relay's own :80 and :443 listeners when they are
	// not 80 and 443 (a port forward in front, or a test). certmagic's AltHTTPPort/AltTLSALPNPort: it
	// probes that port before each challenge and, finding it taken, relies on HTTPHandler and
	// ServeTLSALPN; if the port is free it binds it itself for the challenge. Default: 80 and 443.
	HTTPPort, TLSPort int
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off for plain names (e.g. when the
	// relay does not listen on :80). At least one must stay on. Wildcards always use DNS-01.
	DisableHTTP01, DisableTLSALPN01 bool

	// RenewalWindowRatio is the part of a certificate's lifetime, at its end, in which it is renewed:
	// 1/3 renews a 90-day certificate 30 days before it expires. Default: certmagic's, 1/3. The CA's
	// renewal information (ARI) may schedule a renewal earlier.
	RenewalWindowRatio float64
	// RenewCheckInterval is how often certificates are checked for renewal. Default: certmagic's,
	// 10 minutes.
	RenewCheckInterval time.Duration
	// CertObtainTimeout bounds how long one attempt polls the CA for its validation and its
	// certificate (certmagic's ACMEIssuer.CertObtainTimeout). Default: acmez's, 5 minutes.
	CertObtainTimeout time.Duration

	// Log receives the Manager's logs, certmagic's included (its Info level is logged at Debug).
	// Default: slog.Default().
	Log *slog.Logger
	// OnStatus, if set, is called after every change of a managed domain's status (the relay stores it
	// as certificate_management_status), never after Close has begun. Calls for one domain come in
	// order; calls for different domains may be concurrent. It runs in certmagic's goroutines, so it
	// must return quickly and must not call Close.
	OnStatus func(domain string, st Status)
}

// withDefaults returns cfg with defaults filled in.
func (cfg Config) withDefaults() Config {
	if cfg.DirectoryURL == "" {
		cfg.DirectoryURL = LetsEncryptDirectory
	}
	cfg.ChallengeZone = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(cfg.ChallengeZone), "."))
	if cfg.ChallengeZone != "" && len(cfg.NameServers) == 0 {
		if _, parent, ok := strings.Cut(cfg.ChallengeZone, "."); ok && strings.Contains(parent, ".") {
			cfg.NameServers = []string{parent}
		} else {
			cfg.NameServers = []string{"ns." + cfg.ChallengeZone}
		}
	}
	if cfg.RenewalWindowRatio == 0 {
		cfg.RenewalWindowRatio = certmagic.DefaultRenewalWindowRatio
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return cfg
}

// Validate checks cfg, naming the setting at fault.
func (cfg Config) Validate() error {
	var errs []error
	if cfg.StorageDir == "" {
		errs = append(errs, errors.New("acme: StorageDir is required (e.g. <data dir>/acme)"))
	}
	if cfg.DirectoryURL != "" && !strings.HasPrefix(cfg.DirectoryURL, "https://") {
		errs = append(errs, fmt.Errorf("acme: DirectoryURL %q must be an https:// URL", cfg.DirectoryURL))
	}
	if cfg.ChallengeZone != "" {
		if _, err := normalizeDomain(cfg.ChallengeZone); err != nil || strings.HasPrefix(cfg.ChallengeZone, "*") {
			errs = append(errs, fmt.Errorf("acme: ChallengeZone %q is not a DNS name", cfg.ChallengeZone))
		}
	}
	if cfg.DisableHTTP01 && cfg.DisableTLSALPN01 {
		errs = append(errs, errors.New("acme: DisableHTTP01 and DisableTLSALPN01 are both set; plain names would have no challenge left"))
	}
	if cfg.HTTPPort < 0 || cfg.HTTPPort > 65535 || cfg.TLSPort < 0 || cfg.TLSPort > 65535 {
		errs = append(errs, fmt.Errorf("acme: HTTPPort %d / TLSPort %d out of range", cfg.HTTPPort, cfg.TLSPort))
	}
	if cfg.RenewalWindowRatio < 0 || cfg.RenewalWindowRatio >= 1 {
		errs = append(errs, fmt.Errorf("acme: RenewalWindowRatio %v must be in (0, 1)", cfg.RenewalWindowRatio))
	}
	return errors.Join(errs...)
}
