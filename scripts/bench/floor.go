package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrytunnel/ferry/protocol/transport"
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
	cert, err := chainCert()
	if err != nil {
		return nil, err
	}
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

// chainCert is a throwaway self-signed certificate for the floor chains.
func chainCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"chain.test"}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
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

// quicChain is the floor of the QUIC transport: the same three loopback hops with one
// quic-go connection in the middle (the relay's and agent's QUIC configuration), one
// stream per client connection, copied by plain io.Copy.
type quicChain struct {
	front net.Listener
	back  *quic.Listener
	conn  *quic.Conn
}

func startQUICChain(upstream string) (*quicChain, error) {
	cert, err := chainCert()
	if err != nil {
		return nil, err
	}
	back, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"floor"},
		MinVersion: tls.VersionTLS13}, transport.QUICConfig())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(ctx, back.Addr().String(), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"floor"}, //nolint:gosec // a local benchmark leg
		MinVersion: tls.VersionTLS13}, transport.QUICConfig())
	if err != nil {
		back.Close()
		return nil, err
	}
	front, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.CloseWithError(0, "")
		back.Close()
		return nil, err
	}
	c := &quicChain{front: front, back: back, conn: conn}
	go c.serveBack(upstream)
	go func() {
		for {
			in, err := front.Accept()
			if err != nil {
				return
			}
			go func() {
				st, err := conn.OpenStreamSync(context.Background())
				if err != nil {
					in.Close()
					return
				}
				copyBoth(in, st)
			}()
		}
	}()
	return c, nil
}

func (c *quicChain) serveBack(upstream string) {
	sc, err := c.back.Accept(context.Background())
	if err != nil {
		return
	}
	for {
		st, err := sc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		go func() {
			out, err := net.Dial("tcp", upstream)
			if err != nil {
				st.CancelRead(0)
				st.CancelWrite(0)
				return
			}
			copyBoth(out, st)
		}()
	}
}

// copyBoth copies between a TCP connection and a QUIC stream both ways, passing on each
// direction's end (FIN), and closes both when done.
func copyBoth(c net.Conn, st *quic.Stream) {
	done := make(chan struct{})
	go func() {
		io.Copy(st, c) //nolint:errcheck
		st.Close()     // FIN on the stream's write side
		close(done)
	}()
	io.Copy(c, st) //nolint:errcheck
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	<-done
	c.Close()
	st.CancelRead(0)
}

func (c *quicChain) addr() string { return c.front.Addr().String() }

func (c *quicChain) close() {
	c.front.Close()
	c.conn.CloseWithError(0, "")
	c.back.Close()
}
