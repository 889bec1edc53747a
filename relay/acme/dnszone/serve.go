package dnszone

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// tcpIdleTimeout bounds how long a TCP client may keep a connection open between queries
// (RFC 7766 suggests seconds, not minutes).
const tcpIdleTimeout = 10 * time.Second

// ServeUDP answers the queries that arrive on pc, one at a time, until pc is closed. It returns nil
// once pc is closed and the read error otherwise. Malformed packets are dropped without an answer.
func (z *Zone) ServeUDP(pc net.PacketConn) error {
	buf := make([]byte, dns.MaxMsgSize)
	for {
		n, addr, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if out := z.respond(buf[:n], false); out != nil {
			_, _ = pc.WriteTo(out, addr) // a lost answer is retried by the client
		}
	}
}

// ServeTCP answers DNS over TCP (RFC 7766: two-byte length prefix, several queries per connection)
// on the connections accepted from ln, until ln is closed. It closes the connections it still
// holds and waits for their goroutines before it returns; it returns nil once ln is closed.
func (z *Zone) ServeTCP(ln net.Listener) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[net.Conn]struct{})
	)
	defer func() {
		mu.Lock()
		for c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of file descriptors and the like: wait a little and go on, as net/http does.
			var ne net.Error
			if (errors.As(err, &ne) && ne.Timeout()) || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			z.serveTCPConn(c)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
		}()
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (z *Zone) serveTCPConn(c net.Conn) {
	defer c.Close()
	var lenBuf [2]byte
	buf := make([]byte, dns.MaxMsgSize)
	for {
		_ = c.SetDeadline(time.Now().Add(tcpIdleTimeout))
		if _, err := io.ReadFull(c, lenBuf[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(lenBuf[:]))
		if _, err := io.ReadFull(c, buf[:n]); err != nil {
			return
		}
		out := z.respond(buf[:n], true)
		if out == nil {
			return // malformed: the stream cannot be trusted any more
		}
		msg := make([]byte, 2+len(out))
		binary.BigEndian.PutUint16(msg, uint16(len(out)))
		copy(msg[2:], out)
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// respond parses one query and packs the answer, truncated to what the transport allows. It
// returns nil for packets that must not be answered.
func (z *Zone) respond(raw []byte, tcp bool) []byte {
	req := new(dns.Msg)
	if err := req.Unpack(raw); err != nil {
		return nil
	}
	resp := z.Answer(req)
	if resp == nil {
		return nil
	}
	size := dns.MaxMsgSize
	if !tcp {
		size = dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			size = max(int(opt.UDPSize()), dns.MinMsgSize)
		}
	}
	resp.Truncate(size)
	out, err := resp.Pack()
	if err != nil {
		return nil
	}
	return out
}
