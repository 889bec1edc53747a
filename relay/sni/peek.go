package sni

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"
)

// DefaultMaxBytes is the peek limit Peek uses when maxBytes <= 0. Current browsers send
// ClientHellos of about 2 KiB (post-quantum key shares included); 16 KiB leaves room for large
// session tickets while bounding what one slow client can pin.
const DefaultMaxBytes = 16 << 10

// initialBufLen is Peek's first buffer size: a typical ClientHello fits in one read.
const initialBufLen = 2048

// Peek reads from c until a whole ClientHello has arrived (or an error, the deadline, or
// maxBytes; DefaultMaxBytes if maxBytes <= 0), and returns the hello plus a net.Conn (a *Conn)
// that replays every byte read so far before reading from c again, so crypto/tls or a raw copy
// sees the stream from its first byte.
//
// If timeout > 0, Peek sets a read deadline of now+timeout on c and clears it before returning.
// On error the returned conn is still usable (to write an alert, or to replay plain HTTP to a
// redirect handler) and the error matches one of ErrTimeout, ErrTooLarge, ErrNotTLS,
// ErrMalformed, io.EOF (closed before sending anything), io.ErrUnexpectedEOF (closed mid-hello),
// or wraps the read error.
func Peek(c net.Conn, timeout time.Duration, maxBytes int) (hello *ClientHello, conn net.Conn, err error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxBytes
	}
	if timeout > 0 {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return nil, newConn(c, nil), fmt.Errorf("set read deadline: %w", err)
		}
		defer func() {
			if derr := c.SetReadDeadline(time.Time{}); derr != nil && err == nil {
				err = fmt.Errorf("clear read deadline: %w", derr)
			}
		}()
	}

	buf := make([]byte, 0, min(maxBytes, initialBufLen))
	need := 1 // parse as soon as anything arrives, so non-TLS data fails fast
	for {
		if len(buf) == cap(buf) {
			if len(buf) >= maxBytes { // unreachable while need > len(buf) holds; kept as a guard
				return nil, newConn(c, buf), &tooLargeError{limit: maxBytes}
			}
			grown := make([]byte, len(buf), min(max(2*cap(buf), need), maxBytes))
			copy(grown, buf)
			buf = grown
		}
		n, rerr := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 && len(buf) >= need {
			h, nextNeed, perr := parse(buf)
			if perr == nil {
				return h, newConn(c, buf), nil
			}
			if !errors.Is(perr, ErrIncomplete) {
				return nil, newConn(c, buf), perr
			}
			if nextNeed > maxBytes {
				return nil, newConn(c, buf), &tooLargeError{limit: maxBytes}
			}
			need = nextNeed
		}
		if rerr != nil {
			return nil, newConn(c, buf), readError(rerr, timeout, len(buf))
		}
	}
}

func readError(err error, timeout time.Duration, got int) error {
	var ne net.Error
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
		return &timeoutError{timeout: timeout, got: got, err: err}
	case errors.Is(err, io.EOF) && got == 0:
		return fmt.Errorf("read ClientHello: %w", err)
	case errors.Is(err, io.EOF):
		return fmt.Errorf("read ClientHello: connection closed after %d bytes: %w", got, io.ErrUnexpectedEOF)
	default:
		return fmt.Errorf("read ClientHello after %d bytes: %w", got, err)
	}
}

// timeoutError is Peek's deadline error. It matches ErrTimeout and unwraps to the read error,
// so errors.Is(err, os.ErrDeadlineExceeded) holds too.
type timeoutError struct {
	timeout time.Duration
	got     int
	err     error
}

func (e *timeoutError) Error() string {
	when := "before the read deadline"
	if e.timeout > 0 {
		when = "within " + e.timeout.String()
	}
	return fmt.Sprintf("client sent no complete ClientHello %s (got %d bytes)", when, e.got)
}

func (e *timeoutError) Is(target error) bool { return target == ErrTimeout }
func (e *timeoutError) Unwrap() error        { return e.err }

// Timeout reports true, as net.Error does for deadline errors.
func (e *timeoutError) Timeout() bool { return true }

// tooLargeError matches ErrTooLarge.
type tooLargeError struct{ limit int }

func (e *tooLargeError) Error() string {
	return fmt.Sprintf("ClientHello larger than %d bytes", e.limit)
}

func (e *tooLargeError) Is(target error) bool { return target == ErrTooLarge }
