//go:build unix

package transport

import (
	"crypto/tls"
	"errors"
	"syscall"
)

// idleConnAlive reports whether an idle data connection's peer is still there: a peek
// that would block means yes; end of stream, an error or unexpected bytes (agents send
// nothing on an idle data connection) mean no. One system call, no blocking.
func idleConnAlive(c *tls.Conn) bool {
	sc, ok := baseConn(c).(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	var buf [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n
		alive = errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK)
		return true
	})
	return err == nil && alive
}
