//go:build linux

package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/ferrytunnel/ferry/protocol/transport"
)

// The floors: the same three loopback hops as a tunnel (client → "relay" → "agent" →
// upstream) with the transport's own protocol in the middle (one TLS connection per
// client connection, or one quic-go connection with a stream each), copied by plain
// io.Copy with no framing, multiplexing or routing. Like the relay and the agent, each
// half runs in a process of its own (this program again, with the hidden command below),
// so the floor pays the same cross-process scheduling a tunnel does. Its ratio to direct
// is what the kernel, the cipher and the transport library alone allow on this machine.
const (
	floorHelperCmd   = "floor-helper"
	floorReadyPrefix = "BENCH_FLOOR_READY "
)

// floorHelper is the helper's main: floor-helper tls|quic front|back TARGET. It listens
// on a loopback port the kernel picks, prints it, and serves until SIGINT.
func floorHelper(args []string) int {
	if len(args) != 3 {
		fmt.Fprintf(os.Stderr, "usage: %s tls|quic front|back TARGET\n", floorHelperCmd)
		return 2
	}
	kind, role, target := args[0], args[1], args[2]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var addr string
	var err error
	switch kind + " " + role {
	case "tls back":
		addr, err = tlsBack(ctx, target)
	case "tls front":
		addr, err = tlsFront(ctx, target)
	case "quic back":
		addr, err = quicBack(ctx, target)
	case "quic front":
		addr, err = quicFront(ctx, target)
	default:
		err = fmt.Errorf("unknown floor %q", kind+" "+role)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", floorHelperCmd, err)
		return 1
	}
	fmt.Printf("%s%s\n", floorReadyPrefix, addr)
	<-ctx.Done()
	return 0
}

// startFloor runs a floor's two halves towards upstream and returns the address clients
// connect to; stop ends both.
func (b *bench) startFloor(kind, upstream string) (addr string, stop func(), err error) {
	exe, err := os.Executable()
	if err != nil {
		return "", nil, err
	}
	var children []*child
	stop = func() {
		for _, c := range children {
			b.stopChild(c)
		}
	}
	target := upstream
	for _, role := range []string{"back", "front"} {
		c, err := startChild("floor "+kind+" "+role, exe, []string{floorHelperCmd, kind, role, target}, nil, b.exited)
		if err != nil {
			stop()
			return "", nil, err
		}
		children = append(children, c)
		target, err = c.waitLine(b.ctx, startTimeout, "its address", lineValue(floorReadyPrefix))
		if err != nil {
			stop()
			return "", nil, err
		}
	}
	return target, stop, nil
}

// chainCert is a throwaway self-signed certificate for the floors.
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

var floorTLSClient = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{"floor"}} //nolint:gosec // a local benchmark leg

// tlsBack terminates TLS and dials target (the upstream) for each connection.
func tlsBack(ctx context.Context, target string) (string, error) {
	cert, err := chainCert()
	if err != nil {
		return "", err
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13, NextProtos: []string{"floor"}})
	if err != nil {
		return "", err
	}
	go serveFloor(ctx, ln, func() (net.Conn, error) { return net.Dial("tcp", target) })
	return ln.Addr().String(), nil
}

// tlsFront accepts plain TCP and dials target (the back) over TLS for each connection.
func tlsFront(ctx context.Context, target string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	go serveFloor(ctx, ln, func() (net.Conn, error) { return tls.Dial("tcp", target, floorTLSClient) })
	return ln.Addr().String(), nil
}

func serveFloor(ctx context.Context, ln net.Listener, dial func() (net.Conn, error)) {
	context.AfterFunc(ctx, func() { ln.Close() })
	for {
		in, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			out, err := dial()
			if err != nil {
				in.Close()
				return
			}
			copyConns(in, out)
		}()
	}
}

// copyConns copies both ways, passing each direction's end on, then closes both.
func copyConns(a, b net.Conn) {
	done := make(chan struct{})
	go func() {
		io.Copy(b, a) //nolint:errcheck
		closeWrite(b)
		close(done)
	}()
	io.Copy(a, b) //nolint:errcheck
	closeWrite(a)
	<-done
	a.Close()
	b.Close()
}

// quicBack accepts one QUIC connection at a time and dials target (the upstream) for
// each of its streams.
func quicBack(ctx context.Context, target string) (string, error) {
	cert, err := chainCert()
	if err != nil {
		return "", err
	}
	ln, err := quic.ListenAddr("127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"floor"},
		MinVersion: tls.VersionTLS13}, transport.QUICConfig())
	if err != nil {
		return "", err
	}
	go func() {
		context.AfterFunc(ctx, func() { ln.Close() })
		for {
			sc, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				for {
					st, err := sc.AcceptStream(ctx)
					if err != nil {
						return
					}
					go func() {
						out, err := net.Dial("tcp", target)
						if err != nil {
							st.CancelRead(0)
							st.CancelWrite(0)
							return
						}
						copyStream(out, st)
					}()
				}
			}()
		}
	}()
	return ln.Addr().String(), nil
}

// quicFront dials target (the back) once over QUIC and opens a stream per client.
func quicFront(ctx context.Context, target string) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := quic.DialAddr(dctx, target, floorTLSClient, transport.QUICConfig())
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		conn.CloseWithError(0, "")
		return "", err
	}
	go func() {
		context.AfterFunc(ctx, func() { ln.Close(); conn.CloseWithError(0, "") })
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				st, err := conn.OpenStreamSync(ctx)
				if err != nil {
					in.Close()
					return
				}
				copyStream(in, st)
			}()
		}
	}()
	return ln.Addr().String(), nil
}

// copyStream copies between a TCP connection and a QUIC stream both ways, passing on
// each direction's end (FIN), and closes both when done.
func copyStream(c net.Conn, st *quic.Stream) {
	done := make(chan struct{})
	go func() {
		io.Copy(st, c) //nolint:errcheck
		st.Close()     // FIN on the stream's write side
		close(done)
	}()
	io.Copy(c, st) //nolint:errcheck
	closeWrite(c)
	<-done
	c.Close()
	st.CancelRead(0)
}
