package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/ferrytunnel/ferry/protocol/transport"
)

// CopyBody copies n bytes (n < 0: until EOF) from src to dst, and to tee unless it is
// nil, flushing dst whenever src has nothing buffered, so a slow sender's bytes are not
// held back.
func CopyBody(dst *bufio.Writer, src *bufio.Reader, n int64, tee io.Writer) (int64, error) {
	if n == 0 {
		return 0, nil
	}
	if n > 0 && n <= int64(src.Buffered()) {
		b, _ := src.Peek(int(n))
		w, err := dst.Write(b)
		if tee != nil {
			tee.Write(b[:w]) //nolint:errcheck // a capture
		}
		src.Discard(w) //nolint:errcheck // buffered
		return int64(w), err
	}
	buf := transport.ProxyBuffers{}.Get()
	defer transport.ProxyBuffers{}.Put(buf)
	var total int64
	for n < 0 || total < n {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		p := buf
		if n >= 0 && int64(len(p)) > n-total {
			p = p[:n-total]
		}
		r, err := src.Read(p)
		if r > 0 {
			if _, werr := dst.Write(p[:r]); werr != nil {
				return total, werr
			}
			if tee != nil {
				tee.Write(p[:r]) //nolint:errcheck
			}
			total += int64(r)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				if n < 0 {
					return total, nil
				}
				err = io.ErrUnexpectedEOF
			}
			return total, err
		}
	}
	return total, nil
}

// CopyChunked copies a chunked body as it came (chunk lines, data, trailers) and returns
// its data bytes; tee (nil: none) gets the data.
func CopyChunked(dst *bufio.Writer, src *bufio.Reader, tee io.Writer) (int64, error) {
	var total int64
	for {
		if src.Buffered() == 0 {
			if err := dst.Flush(); err != nil {
				return total, err
			}
		}
		line, err := src.ReadSlice('\n')
		if err != nil {
			return total, chunkErr(err)
		}
		sz, _, _ := bytes.Cut(bytes.TrimRight(line, "\r\n"), []byte(";"))
		sz = bytes.TrimRight(sz, " \t")
		size, err := strconv.ParseUint(string(sz), 16, 62)
		if err != nil || len(sz) == 0 {
			return total, errors.New("malformed chunk size in the answer")
		}
		dst.Write(line) //nolint:errcheck // sticky
		if size == 0 {
			for n := 0; ; n++ { // trailers, then the blank line
				line, err := src.ReadSlice('\n')
				if err != nil || n == maxAnswerHeaders {
					return total, chunkErr(err)
				}
				if _, err := dst.Write(line); err != nil {
					return total, err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return total, nil
				}
			}
		}
		w, err := CopyBody(dst, src, int64(size), tee)
		total += w
		if err != nil {
			return total, err
		}
		crlf, err := src.ReadSlice('\n')
		if err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return total, errors.New("malformed chunk in the answer")
		}
		if _, err := dst.Write(crlf); err != nil {
			return total, err
		}
	}
}

func chunkErr(err error) error {
	if err == nil || errors.Is(err, bufio.ErrBufferFull) {
		return errors.New("malformed chunked body in the answer")
	}
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
