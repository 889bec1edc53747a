package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

	"github.com/ferrytunnel/ferry/relay/acme/dnszone"
)

// ErrClosed is returned by Manage and the DNS serving methods after Close.
var ErrClosed = errors.New("acme: manager closed")

// Manager obtains and renews certificates for the relay's reserved domains with certmagic, and
// answers the ACME challenges that prove control of them. Create it with New; it is safe for
// concurrent use.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	zlog    *zap.Logger
	storage certmagic.Storage
	cache   *certmagic.Cache
	plain   *certmagic.Config // plain names: HTTP-01 and TLS-ALPN-01
	wild    *certmagic.Config // wildcards: DNS-01 through the challenge zone; nil without one
	issuer  *certmagic.ACMEIssuer
	zone    *dnszone.Zone // nil without ChallengeZone

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // runs and ListenDNS servers
	once   sync.Once

	mu       sync.Mutex
	closed   bool
	domains  map[string]*managed
	stopping map[string]chan struct{} // runs of unmanaged domains that have not ended yet
	dnsConns []io.Closer              // DNS sockets to close at Close
	dnsAddr  string                   // where our own DNS answers, for certmagic's lookups
}

// managed is one domain under management.
type managed struct {
	name   string
	cancel context.CancelFunc // ends the domain's run (Unmanage, Close)
	done   chan struct{}      // closed when the run has ended

	// notifyMu orders one domain's status changes and OnStatus calls.
	notifyMu sync.Mutex
	// st and failures are guarded by Manager.mu.
	st       Status
	failures int
}

// New checks cfg, prepares the storage directory and starts certmagic's certificate cache (its
// renewal loop). Nothing is asked of the CA until Manage.
func New(cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StorageDir, 0o700); err != nil {
		return nil, fmt.Errorf("acme: storage: %w", err)
	}
	files := &certmagic.FileStorage{Path: cfg.StorageDir}
	var storage certmagic.Storage = files
	if cfg.StorageKey != nil {
		storage = &sealedStorage{FileStorage: files, key: cfg.StorageKey}
	}

	m := &Manager{
		cfg:      cfg,
		log:      cfg.Log.With("component", "acme"),
		zlog:     zapToSlog(cfg.Log.With("component", "acme")),
		storage:  storage,
		domains:  make(map[string]*managed),
		stopping: make(map[string]chan struct{}),
	}
	if cfg.ChallengeZone != "" {
		zone, err := dnszone.New(dnszone.Config{
			Name:            cfg.ChallengeZone,
			NameServers:     cfg.NameServers,
			NameServerAddrs: cfg.NameServerAddrs,
		})
		if err != nil {
			return nil, fmt.Errorf("acme: challenge zone: %w", err)
		}
		m.zone = zone
	}

	template := certmagic.Config{
		RenewalWindowRatio: cfg.RenewalWindowRatio,
		OnEvent:            m.onEvent,
		Storage:            storage,
		Logger:             m.zlog,
	}
	issuer := certmagic.ACMEIssuer{
		CA:                cfg.DirectoryURL,
		Email:             cfg.Email,
		Agreed:            true,
		TrustedRoots:      cfg.RootCAs,
		CertObtainTimeout: cfg.CertObtainTimeout,
		Logger:            m.zlog,
	}
	// The configs must exist before the cache can ask for them; the cache is empty until Manage.
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   m.configForCert,
		RenewCheckInterval: cfg.RenewCheckInterval,
		Logger:             m.zlog,
	})
	m.plain = certmagic.New(m.cache, template)
	plainIssuer := issuer
	plainIssuer.DisableHTTPChallenge = cfg.DisableHTTP01
	plainIssuer.DisableTLSALPNChallenge = cfg.DisableTLSALPN01
	plainIssuer.AltHTTPPort = cfg.HTTPPort
	plainIssuer.AltTLSALPNPort = cfg.TLSPort
	m.issuer = certmagic.NewACMEIssuer(m.plain, plainIssuer)
	m.plain.Issuers = []certmagic.Issuer{m.issuer}
	if m.zone != nil {
		// A DNS-01 solver makes certmagic use DNS-01 only, hence a config of its own.
		m.wild = certmagic.New(m.cache, template)
		wildIssuer := issuer
		wildIssuer.DNS01Solver = &dns01Solver{m: m, active: make(map[string]*certmagic.DNS01Solver)}
		m.wild.Issuers = []certmagic.Issuer{certmagic.NewACMEIssuer(m.wild, wildIssuer)}
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	return m, nil
}

func (m *Manager) configForCert(c certmagic.Certificate) (*certmagic.Config, error) {
	for _, n := range c.Names {
		if strings.HasPrefix(n, "*.") && m.wild != nil {
			return m.wild, nil
		}
	}
	return m.plain, nil
}

func (m *Manager) configFor(name string) *certmagic.Config {
	if strings.HasPrefix(name, "*.") {
		return m.wild
	}
	return m.plain
}

// Manage starts managing domain ("app.example.com", or "*.example.com" for a wildcard): it loads
// the certificate from storage or obtains one (HTTP-01 or TLS-ALPN-01 for plain names, DNS-01
// through ChallengeTarget for wildcards), in the background, retrying with backoff; then the
// certificate is renewed before it expires until Unmanage or Close. Status tells how it goes.
// Managing a domain twice is a no-op. It fails for names that cannot get a certificate, for
// wildcards without ChallengeZone, and after Close.
func (m *Manager) Manage(domain string) error {
	name, err := normalizeDomain(domain)
	if err != nil {
		return err
	}
	if strings.HasPrefix(name, "*.") && m.wild == nil {
		return fmt.Errorf("acme: %s: wildcard certificates need a challenge zone (DNS-01 through CNAME delegation)", name)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	if _, ok := m.domains[name]; ok {
		m.mu.Unlock()
		return nil
	}
	ctx, cancel := context.WithCancel(m.ctx)
	d := &managed{name: name, cancel: cancel, done: make(chan struct{}), st: Status{State: StatePending}}
	prev := m.stopping[name]
	m.domains[name] = d
	m.wg.Add(1)
	m.mu.Unlock()

	m.report(d) // pending
	go m.run(ctx, d, prev)
	return nil
}

// Unmanage stops managing domain: its provisioning stops, its renewals stop, and Certificate no
// longer returns its certificate. The files stay in storage, so managing it again reuses them.
func (m *Manager) Unmanage(domain string) {
	name, err := normalizeDomain(domain)
	if err != nil {
		return
	}
	m.mu.Lock()
	d := m.domains[name]
	if d == nil {
		m.mu.Unlock()
		return
	}
	delete(m.domains, name)
	m.stopping[name] = d.done
	m.mu.Unlock()
	d.cancel()
	m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: name}})
}

// Keep stops managing every domain that is not in domains (as given to Manage): those
// whose reservation or policy went away through another relay sharing the store.
func (m *Manager) Keep(domains []string) {
	keep := make(map[string]bool, len(domains))
	for _, d := range domains {
		if n, err := normalizeDomain(d); err == nil {
			keep[n] = true
		}
	}
	m.mu.Lock()
	var drop []string
	for name := range m.domains {
		if !keep[name] {
			drop = append(drop, name)
		}
	}
	m.mu.Unlock()
	for _, name := range drop {
		m.Unmanage(name)
	}
}

// run provisions one domain: load or obtain, then hand it to certmagic's renewal loop (the cache).
func (m *Manager) run(ctx context.Context, d *managed, prev <-chan struct{}) {
	defer m.wg.Done()
	defer func() {
		if ctx.Err() != nil {
			// Unmanaged (or closed) while we were caching: take the certificate back out.
			m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: d.name}})
		}
		close(d.done)
		m.mu.Lock()
		if m.stopping[d.name] == d.done {
			delete(m.stopping, d.name)
		}
		m.mu.Unlock()
	}()
	if prev != nil { // the same name, unmanaged a moment ago: let that run clean up first
		select {
		case <-prev:
		case <-ctx.Done():
			return
		}
	}

	cfg := m.configFor(d.name)
	cert, err := cfg.CacheManagedCertificate(ctx, d.name)
	switch {
	case err == nil:
		m.setIssued(d, cert.Leaf)
		if !cert.NeedsRenewal(cfg) {
			return
		}
		// Expired or due while the relay was down: renew now rather than at the next check.
		if err := cfg.RenewCertAsync(ctx, d.name, false); err != nil {
			m.gaveUp(ctx, d, err)
			return
		}
		renewed, err := cfg.CacheManagedCertificate(ctx, d.name)
		if err != nil {
			m.gaveUp(ctx, d, fmt.Errorf("loading renewed certificate: %w", err))
			return
		}
		if renewed.Hash() != cert.Hash() {
			m.cache.Remove([]string{cert.Hash()})
		}
		m.setIssued(d, renewed.Leaf)
	case errors.Is(err, fs.ErrNotExist):
		// Blocks through certmagic's retries (with backoff, up to 30 days); events report each try.
		if err := cfg.ObtainCertAsync(ctx, d.name); err != nil {
			m.gaveUp(ctx, d, err)
			return
		}
		cert, err := cfg.CacheManagedCertificate(ctx, d.name)
		if err != nil {
			m.gaveUp(ctx, d, fmt.Errorf("loading new certificate: %w", err))
			return
		}
		m.setIssued(d, cert.Leaf)
	default:
		m.gaveUp(ctx, d, fmt.Errorf("loading stored certificate: %w", err))
	}
}

// onEvent turns certmagic's events into status changes. It runs in certmagic's goroutines, for
// first certificates and renewals alike.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtaining", "cert_failed", "cert_obtained":
	default:
		return nil
	}
	id, _ := data["identifier"].(string)
	m.mu.Lock()
	d := m.domains[id]
	m.mu.Unlock()
	if d == nil {
		return nil
	}
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		m.notify(d, func(d *managed) {
			if d.st.State != StateProvisioning && d.st.State != StateFailed {
				d.st.StartedAt = ptr(time.Now())
			}
			d.st.State = StateProvisioning
			d.st.RetriesAt = nil
		})
	case "cert_failed":
		msg := "unknown error"
		if err, ok := data["error"].(error); ok && err != nil {
			msg = err.Error()
		}
		var retriesAt time.Time
		m.notify(d, func(d *managed) {
			d.failures++
			retriesAt = time.Now().Add(retryDelay(d.failures))
			if d.st.StartedAt == nil {
				d.st.StartedAt = ptr(time.Now())
			}
			d.st.State = StateFailed
			d.st.Error = msg
			d.st.RetriesAt = ptr(retriesAt)
		})
		if !retriesAt.IsZero() {
			m.log.Warn("certificate provisioning failed", "domain", d.name, "renewal", renewal, "error", msg, "retries_at", retriesAt)
		}
	case "cert_obtained":
		if !renewal {
			return nil // run reports it once the certificate is in the cache
		}
		path, _ := data["certificate_path"].(string)
		m.setIssued(d, m.loadLeaf(ctx, path))
	}
	return nil
}

// loadLeaf reads the leaf certificate stored at key; nil if it cannot.
func (m *Manager) loadLeaf(ctx context.Context, key string) *x509.Certificate {
	b, err := m.storage.Load(ctx, key)
	if err != nil {
		m.log.Warn("reading renewed certificate", "key", key, "error", err)
		return nil
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil
	}
	return leaf
}

// setIssued records a certificate held; leaf nil keeps the previous dates.
func (m *Manager) setIssued(d *managed, leaf *x509.Certificate) {
	changed := false
	m.notify(d, func(d *managed) {
		changed = d.st.State != StateIssued
		d.failures = 0
		d.st = Status{State: StateIssued, RenewsAt: d.st.RenewsAt, ExpiresAt: d.st.ExpiresAt}
		if leaf != nil {
			d.st.RenewsAt = ptr(renewsAt(leaf, m.cfg.RenewalWindowRatio))
			d.st.ExpiresAt = ptr(leaf.NotAfter)
		}
	})
	if changed && leaf != nil {
		m.log.Info("certificate issued", "domain", d.name, "expires_at", leaf.NotAfter, "renews_at", renewsAt(leaf, m.cfg.RenewalWindowRatio))
	}
}

// gaveUp records the error that ended a run, unless the run was cancelled.
func (m *Manager) gaveUp(ctx context.Context, d *managed, err error) {
	if ctx.Err() != nil {
		return
	}
	m.log.Error("certificate provisioning gave up", "domain", d.name, "error", err)
	m.notify(d, func(d *managed) {
		d.st.State = StateFailed
		d.st.Error = err.Error()
		d.st.RetriesAt = nil
	})
}

// notify applies change to d's status and, if the status changed, reports it to OnStatus. A domain
// no longer managed is left alone.
func (m *Manager) notify(d *managed, change func(*managed)) {
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	m.mu.Lock()
	if m.closed || m.domains[d.name] != d {
		m.mu.Unlock()
		return
	}
	before := d.st
	change(d)
	after := d.st
	m.mu.Unlock()
	if m.cfg.OnStatus != nil && !sameStatus(before, after) {
		m.cfg.OnStatus(d.name, copyStatus(after))
	}
}

// report calls OnStatus with d's current status.
func (m *Manager) report(d *managed) {
	d.notifyMu.Lock()
	defer d.notifyMu.Unlock()
	m.mu.Lock()
	st := copyStatus(d.st)
	current := !m.closed && m.domains[d.name] == d
	m.mu.Unlock()
	if m.cfg.OnStatus != nil && current {
		m.cfg.OnStatus(d.name, st)
	}
}

func sameStatus(a, b Status) bool {
	eq := func(x, y *time.Time) bool { return (x == nil) == (y == nil) && (x == nil || x.Equal(*y)) }
	return a.State == b.State && a.Error == b.Error && eq(a.StartedAt, b.StartedAt) &&
		eq(a.RetriesAt, b.RetriesAt) && eq(a.RenewsAt, b.RenewsAt) && eq(a.ExpiresAt, b.ExpiresAt)
}

func copyStatus(s Status) Status {
	cp := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		return ptr(*t)
	}
	s.StartedAt, s.RetriesAt, s.RenewsAt, s.ExpiresAt = cp(s.StartedAt), cp(s.RetriesAt), cp(s.RenewsAt), cp(s.ExpiresAt)
	return s
}

// Status returns domain's certificate_management_status; the zero Status (State "") if the domain
// is not managed.
func (m *Manager) Status(domain string) Status {
	name, err := normalizeDomain(domain)
	if err != nil {
		return Status{}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if d := m.domains[name]; d != nil {
		return copyStatus(d.st)
	}
	return Status{}
}

// Certificate returns the managed certificate that covers name (an SNI server name): the domain's
// own, else that of the managed wildcard one label up ("*.example.com" for "a.example.com"). Only
// certificates valid now are returned, the one that expires last first. It never asks the CA for
// anything, so it is cheap enough for every handshake.
func (m *Manager) Certificate(name string) (*tls.Certificate, bool) {
	name, err := normalizeDomain(name)
	if err != nil || strings.HasPrefix(name, "*.") {
		return nil, false
	}
	var candidates []string
	m.mu.Lock()
	if m.domains[name] != nil {
		candidates = append(candidates, name)
	}
	if _, parent, ok := strings.Cut(name, "."); ok && m.domains["*."+parent] != nil {
		candidates = append(candidates, "*."+parent)
	}
	m.mu.Unlock()

	now := time.Now()
	for _, cand := range candidates {
		var best *certmagic.Certificate
		for _, c := range m.cache.AllMatchingCertificates(cand) {
			if c.Leaf == nil || !slices.Contains(c.Names, cand) || now.Before(c.Leaf.NotBefore) || now.After(c.Leaf.NotAfter) {
				continue
			}
			if best == nil || c.Leaf.NotAfter.After(best.Leaf.NotAfter) {
				best = &c
			}
		}
		if best != nil {
			tc := best.Certificate
			return &tc, true
		}
	}
	return nil, false
}

// Close stops all provisioning and renewal, closes the DNS sockets the Manager serves, and waits
// for its goroutines. Renewals already started by certmagic's cache are cancelled but not waited
// for (they run in certmagic's own job queue).
func (m *Manager) Close() error {
	m.once.Do(func() {
		m.mu.Lock()
		m.closed = true
		conns := m.dnsConns
		m.dnsConns = nil
		m.mu.Unlock()
		m.cancel()
		for _, c := range conns {
			_ = c.Close()
		}
		m.wg.Wait()
		m.cache.Stop()
	})
	return nil
}
