package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"time"
)

// tlsChain is the floor the TCP fallback cannot go below: the same three loopback hops
// (client → "relay" → "agent" → upstream) with one TLS leg in the middle, copied by
// plain io.Copy with no framing, multiplexing or routing. Its ratio to direct is what the
// kernel and AES-GCM alone allow on this machine.
type tlsChain struct {
	front, back net.Listener
}

// startTLSChain listens on two loopback ports: front accepts the client and dials back
// over TLS; back terminates TLS and dials the upstream.
func startTLSChain(upstream string) (*tlsChain, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"chain.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	back, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	if err != nil {
		return nil, err
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		back.Close()
		return nil, err
	}
	c := &tlsChain{front: front, back: back}
	go c.serve(back, func() (net.Conn, error) { return net.Dial("tcp", upstream) })
	go c.serve(front, func() (net.Conn, error) {
		return tls.Dial("tcp", back.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // a local benchmark leg
	})
	return c, nil
}

func (c *tlsChain) addr() string { return c.front.Addr().String() }

func (c *tlsChain) close() {
	c.front.Close()
	c.back.Close()
}

func (c *tlsChain) serve(ln net.Listener, dial func() (net.Conn, error)) {
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer in.Close()
			out, err := dial()
			if err != nil {
				return
			}
			defer out.Close()
			done := make(chan struct{})
			go func() {
				io.Copy(out, in) //nolint:errcheck
				if cw, ok := out.(interface{ CloseWrite() error }); ok {
					cw.CloseWrite()
				}
				close(done)
			}()
			io.Copy(in, out) //nolint:errcheck
			if cw, ok := in.(interface{ CloseWrite() error }); ok {
				cw.CloseWrite()
			}
			<-done
		}()
	}
}
