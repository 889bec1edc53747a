package diagnose

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"
)

func TestCertProblem(t *testing.T) {
	now := time.Now()
	relay := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "relay.example.com"},
		Issuer:      pkix.Name{CommonName: "Example CA"},
		DNSNames:    []string{"relay.example.com"},
		IPAddresses: []net.IP{net.IPv4(203, 0, 113, 7)},
		NotBefore:   now.Add(-48 * time.Hour),
		NotAfter:    now.Add(-24 * time.Hour),
	}
	future := *relay
	future.NotBefore, future.NotAfter = now.Add(24*time.Hour), now.Add(48*time.Hour)
	wrap := func(err error) error {
		// As crypto/tls returns it, wrapped once more by a caller.
		return fmt.Errorf("dial: %w", &tls.CertificateVerificationError{UnverifiedCertificates: []*x509.Certificate{relay}, Err: err})
	}
	tests := []struct {
		name       string
		err        error
		wantDetail string
		wantFix    string
	}{
		{"unknown authority", wrap(x509.UnknownAuthorityError{Cert: relay}),
			`certificate signed by an unknown authority ("Example CA")`, "pass --relay-ca FILE (a dev relay writes DATA/ca.pem)"},
		{"name mismatch", wrap(x509.HostnameError{Certificate: relay, Host: "other.example.com"}),
			"name mismatch: the certificate is for relay.example.com, 203.0.113.7, not other.example.com", "use a name the certificate covers in --relay"},
		{"expired", wrap(x509.CertificateInvalidError{Cert: relay, Reason: x509.Expired}),
			"certificate expired on " + relay.NotAfter.UTC().Format(time.RFC3339), "renew the relay's certificate (--tls-cert)"},
		{"not yet valid", wrap(x509.CertificateInvalidError{Cert: &future, Reason: x509.Expired}),
			"certificate not valid until " + future.NotBefore.UTC().Format(time.RFC3339), "correct this machine's clock"},
		{"other", wrap(x509.CertificateInvalidError{Cert: relay, Reason: x509.NotAuthorizedToSign}),
			"certificate rejected: ", "check --relay-ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			detail, fix, ok := certProblem(tt.err)
			if !ok {
				t.Fatalf("certProblem(%v) ok = false, want true", tt.err)
			}
			if !strings.HasPrefix(detail, tt.wantDetail) {
				t.Errorf("detail = %q, want it to start %q", detail, tt.wantDetail)
			}
			if !strings.Contains(fix, tt.wantFix) {
				t.Errorf("fix = %q, want it to contain %q", fix, tt.wantFix)
			}
		})
	}
	if _, _, ok := certProblem(errors.New("connection reset")); ok {
		t.Errorf("certProblem(connection reset) ok = true, want false")
	}
}

func TestRound(t *testing.T) {
	for _, tt := range []struct{ in, want time.Duration }{
		{3*time.Millisecond + 456*time.Microsecond, 3500 * time.Microsecond},
		{12*time.Millisecond + 600*time.Microsecond, 13 * time.Millisecond},
		{345*time.Microsecond + 678, 346 * time.Microsecond},
		{5 * time.Microsecond, 5 * time.Microsecond},
	} {
		if got := round(tt.in); got != tt.want {
			t.Errorf("round(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
