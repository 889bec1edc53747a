package h1

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"sync/atomic"
)

// Forwarder carries one inbound HTTP/1.1 connection's requests to an outbound connection
// of its own (the relay: a stream to the agent; the agent: a connection to the upstream)
// and their answers back.
type Forwarder struct {
	// In is the inbound connection, read through InR (request heads are peeked there)
	// and written through InW.
	In  net.Conn
	InR *bufio.Reader
	InW *bufio.Writer
	// Out is the outbound connection (nil: none yet), with its buffers.
	Out  net.Conn
	OutR *bufio.Reader
	OutW *bufio.Writer
	// Dial opens Out when there is none.
	Dial func() (net.Conn, error)

	answer []byte // an answer's head, rewritten for the inbound side
}

// Exchange is one request for Forward.
type Exchange struct {
	Req  *Request
	Head []byte // Req's head, peeked from InR
	// WriteHead writes the head for the outbound side, blank line included.
	WriteHead func(w *bufio.Writer)
	// ReqTee and RespTee get the request's and the answer's body bytes (nil: none).
	ReqTee, RespTee io.Writer
	// AnswerHead, when set, is called with the answer's head before its body is copied.
	AnswerHead func(a *Answer, head []byte)
}

// Result is what Forward did.
type Result struct {
	Answer   Answer
	BytesOut int64 // the answer's body bytes
	// HandOff: nothing was sent (Out could not be dialed) and nothing consumed from
	// InR; serve the connection with net/http.
	HandOff bool
	// Failed is set when no answer came: the caller answers (a 502 page) and closes.
	Failed error
	// Gone: the inbound side went away while the answer was awaited or copied.
	Gone bool
	// Answered: the answer's head went to InW.
	Answered bool
	// Keep: the inbound connection may carry another request.
	Keep bool
	// Err is set when the exchange broke after the answer began; close the connection.
	Err error
}

// DropOut closes the outbound connection; the next request dials another.
func (f *Forwarder) DropOut() {
	if f.Out != nil {
		f.Out.Close()
		f.Out, f.OutR, f.OutW = nil, nil, nil
	}
}

func (f *Forwarder) dial() error {
	c, err := f.Dial()
	if err != nil {
		return err
	}
	f.Out, f.OutR, f.OutW = c, bufio.NewReaderSize(c, BufSize), bufio.NewWriterSize(c, BufSize)
	return nil
}

// Forward sends one request and copies its answer back into InW (not flushed). A safe
// request whose reused outbound connection fails before answering is sent once more on
// a fresh one (the other side may have closed it while idle). While the answer is
// awaited and copied, a Watch notices the inbound side going away and closes Out.
func (f *Forwarder) Forward(x *Exchange) (res Result) {
	rq := x.Req
	var w *Watch
	var gone atomic.Bool
	unread := len(x.Head) // the head stays in InR until the watch stops: InR is the watch's meanwhile
	settle := func() {
		if w != nil {
			w.Stop()
			w = nil
		}
		f.InR.Discard(unread) //nolint:errcheck // peeked
		unread = 0
	}
	defer settle()
	a := &res.Answer
	for attempt := 0; ; attempt++ {
		reused := f.Out != nil
		if !reused {
			if err := f.dial(); err != nil {
				unread = 0 // the request stays in InR for net/http
				res.HandOff = true
				return res
			}
		}
		x.WriteHead(f.OutW)
		var err error
		if rq.ContentLength > 0 {
			rq.Detach() // the body's bytes may reuse the head's buffer
			settle()
			if _, err = CopyBody(f.OutW, f.InR, rq.ContentLength, x.ReqTee); err == nil {
				err = f.OutW.Flush()
			}
			if err != nil {
				f.DropOut()
				res.Err = fmt.Errorf("request body: %w", err)
				return res
			}
		} else if err = f.OutW.Flush(); err != nil {
			err = fmt.Errorf("request: %w", err)
		}
		if err == nil {
			out := f.Out
			w = StartWatch(f.In, f.InR, unread, func() { gone.Store(true); out.Close() })
			err = a.ReadHead(f.OutR, rq.IsHead(), f.InW, &f.answer)
		}
		if err == nil {
			break
		}
		f.DropOut()
		if w != nil {
			w.Stop()
			w = nil
		}
		if gone.Load() {
			res.Gone = true
			return res
		}
		if reused && attempt == 0 && a.Interim == 0 && rq.ContentLength == 0 && Idempotent(rq.Method) {
			continue
		}
		res.Failed = err
		return res
	}
	if x.AnswerHead != nil {
		x.AnswerHead(a, f.answer)
	}
	closeAfter := rq.Close || a.UntilEOF
	f.InW.Write(f.answer) //nolint:errcheck // sticky: the body's copy or Flush reports it
	if closeAfter {
		f.InW.WriteString("Connection: close\r\n") //nolint:errcheck
	}
	f.InW.WriteString("\r\n") //nolint:errcheck
	res.Answered = true
	if cap(f.answer) > BufSize {
		f.answer = nil // an unusual head: don't keep its buffer
	}
	var err error
	switch {
	case a.NoBody:
	case a.Chunked:
		res.BytesOut, err = CopyChunked(f.InW, f.OutR, x.RespTee)
	case a.UntilEOF:
		res.BytesOut, err = CopyBody(f.InW, f.OutR, -1, x.RespTee)
	default:
		res.BytesOut, err = CopyBody(f.InW, f.OutR, a.ContentLength, x.RespTee)
	}
	if err != nil || a.UntilEOF || a.Close {
		f.DropOut()
	}
	res.Gone = gone.Load()
	if res.Gone {
		f.DropOut() // the watch closed it
	}
	if err != nil {
		res.Err = err
		return res
	}
	res.Keep = !closeAfter && !res.Gone
	return res
}
