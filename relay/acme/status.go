package acme

import (
	"crypto/x509"
	"time"
)

// States of a managed domain's certificate.
const (
	// StatePending: Manage was called; nothing has been asked of the CA yet.
	StatePending = "pending"
	// StateProvisioning: an order (first certificate or renewal) is in progress.
	StateProvisioning = "provisioning"
	// StateIssued: a certificate is held and served; RenewsAt says when it will be renewed.
	StateIssued = "issued"
	// StateFailed: the last attempt failed (Error says why); another follows at RetriesAt. A
	// previously issued certificate, if any, is still served while it is valid (RenewsAt is set).
	StateFailed = "failed"
)

// Status is a managed domain's certificate_management_status.
type Status struct {
	// State is one of StatePending, StateProvisioning, StateIssued, StateFailed.
	State string `json:"state"`
	// Error is the last failure, in certmagic's and the CA's words; it stays while retries run and
	// is cleared by a success.
	Error string `json:"error,omitempty"`
	// StartedAt is when the current provisioning job (first attempt of an order, retries included)
	// started; nil when no job runs.
	StartedAt *time.Time `json:"started_at,omitempty"`
	// RetriesAt is when the next attempt is due after a failure; nil otherwise, or when certmagic
	// has given up (after 30 days). It follows certmagic's backoff schedule (1, 2, 2, 5, 10 ...
	// minutes, up to 6 hours); a renewal retry starts at the first renewal check after it.
	RetriesAt *time.Time `json:"retries_at,omitempty"`
	// RenewsAt is when the certificate held enters its renewal window; nil while none is held.
	RenewsAt *time.Time `json:"renews_at,omitempty"`
	// ExpiresAt is the NotAfter of the certificate held; nil while none is held.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
}

// retryIntervals mirrors certmagic v0.25's retryIntervals (async.go), which it does not export:
// the wait after the n-th consecutive failure is retryIntervals[min(n, len)-1].
var retryIntervals = []time.Duration{
	1 * time.Minute, 2 * time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 10 * time.Minute, 10 * time.Minute,
	20 * time.Minute, 20 * time.Minute, 20 * time.Minute, 20 * time.Minute,
	30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute,
	1 * time.Hour, 1 * time.Hour, 1 * time.Hour,
	2 * time.Hour, 2 * time.Hour,
	3 * time.Hour, 3 * time.Hour,
	6 * time.Hour,
}

func retryDelay(failures int) time.Duration {
	if failures < 1 {
		failures = 1
	}
	return retryIntervals[min(failures, len(retryIntervals))-1]
}

// renewsAt is when leaf enters the renewal window given by ratio (remaining:lifetime), as certmagic
// computes it.
func renewsAt(leaf *x509.Certificate, ratio float64) time.Time {
	lifetime := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotAfter.Add(-time.Duration(float64(lifetime) * ratio))
}

func ptr[T any](v T) *T { return &v }
