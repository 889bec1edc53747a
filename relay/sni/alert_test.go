package sni

import (
	"bytes"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestWriteAlertBytes(t *testing.T) {
	tests := []struct {
		desc uint8
		want []byte
	}{
		{AlertHandshakeFailure, []byte{21, 3, 3, 0, 2, 2, 40}},
		{AlertUnrecognizedName, []byte{21, 3, 3, 0, 2, 2, 112}},
		{AlertCertificateRequired, []byte{21, 3, 3, 0, 2, 2, 116}},
	}
	for _, tc := range tests {
		var buf bytes.Buffer
		if err := WriteAlert(&buf, tc.desc); err != nil {
			t.Fatalf("WriteAlert(%d) = %v, want nil", tc.desc, err)
		}
		if !bytes.Equal(buf.Bytes(), tc.want) {
			t.Errorf("WriteAlert(%d) wrote %x, want %x", tc.desc, buf.Bytes(), tc.want)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.ErrUnsupported }

func TestWriteAlertError(t *testing.T) {
	if err := WriteAlert(failingWriter{}, AlertInternalError); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("WriteAlert to a failing writer = %v, want the write error wrapped", err)
	}
}

// TestWriteAlertSeenByTLSClient peeks a real crypto/tls client's hello, answers with an alert,
// and checks the client reports that alert.
func TestWriteAlertSeenByTLSClient(t *testing.T) {
	tests := []struct {
		desc uint8
		want string
	}{
		{AlertUnrecognizedName, "remote error: tls: unrecognized name"},
		{AlertHandshakeFailure, "remote error: tls: handshake failure"},
		{AlertBadCertificate, "remote error: tls: bad certificate"},
		{AlertProtocolVersion, "remote error: tls: protocol version not supported"},
		{AlertInternalError, "remote error: tls: internal error"},
		{AlertCertificateRequired, "remote error: tls: certificate required"},
		{AlertDecodeError, "remote error: tls: error decoding message"},
		{AlertNoApplicationProtocol, "remote error: tls: no application protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			client, server := tcpPair(t)
			clientDone := make(chan error, 1)
			go func() {
				clientDone <- tls.Client(client, &tls.Config{ServerName: "relay.example"}).Handshake()
			}()
			_, rc, err := Peek(server, 5*time.Second, DefaultMaxBytes)
			if err != nil {
				t.Fatalf("Peek = %v, want nil error", err)
			}
			if err := WriteAlert(rc, tc.desc); err != nil {
				t.Fatalf("WriteAlert = %v, want nil", err)
			}
			rc.Close()
			err = <-clientDone
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("client Handshake = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
