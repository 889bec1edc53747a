package sni

import (
	"fmt"
	"io"
)

// Alert descriptions (RFC 8446 §6), for WriteAlert. The relay sends them before any
// ServerHello, so they travel as plaintext records.
const (
	AlertUnexpectedMessage     uint8 = 10  // a non-ClientHello message arrived first
	AlertHandshakeFailure      uint8 = 40  // no acceptable parameters; generic refusal
	AlertAccessDenied          uint8 = 49  // the client may not connect (IP restrictions)
	AlertBadCertificate        uint8 = 42  // a client certificate was rejected
	AlertDecodeError           uint8 = 50  // the ClientHello could not be parsed (ErrMalformed)
	AlertProtocolVersion       uint8 = 70  // no TLS version in common
	AlertInternalError         uint8 = 80  // the relay failed, not the client
	AlertUnrecognizedName      uint8 = 112 // no tunnel serves the SNI name
	AlertCertificateRequired   uint8 = 116 // the route needs a client certificate
	AlertNoApplicationProtocol uint8 = 120 // no ALPN protocol in common
)

// alertLevelFatal is the AlertLevel byte of a fatal alert.
const alertLevelFatal = 2

// WriteAlert writes one fatal alert record with description desc to w: plaintext, record
// version 0x0303, in a single Write.
func WriteAlert(w io.Writer, desc uint8) error {
	rec := [7]byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, desc}
	if _, err := w.Write(rec[:]); err != nil {
		return fmt.Errorf("write TLS alert %d: %w", desc, err)
	}
	return nil
}
