package module

import (
	"bufio"
	"compress/flate"
	"io"
	"mime"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// minCompressSize: bodies with a known length below this are sent as they are.
const minCompressSize = 512

// encodings in our order of preference among those a client accepts equally.
var encodings = []string{"br", "zstd", "gzip", "deflate"}

// Compress encodes responses with br, zstd, gzip or deflate when the client's
// Accept-Encoding asks for it, and leaves alone responses the upstream already encoded,
// small or already-compressed types (images, video, archives), and upgrades.
func Compress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		enc := negotiate(r.Header.Get("Accept-Encoding"))
		if enc == "" || r.Method == http.MethodHead || r.Header.Get("Upgrade") != "" {
			next.ServeHTTP(w, r)
			return
		}
		cw := &compressWriter{ResponseWriter: w, encoding: enc}
		defer cw.close()
		next.ServeHTTP(cw, r)
	})
}

// negotiate picks an encoding from Accept-Encoding (q-values respected; ties by our order).
func negotiate(accept string) string {
	best, bestQ := "", 0.0
	for _, part := range strings.Split(accept, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if q <= 0 || !known(name) {
			continue
		}
		if q > bestQ || q == bestQ && rank(name) < rank(best) {
			best, bestQ = name, q
		}
	}
	return best
}

func known(e string) bool { return rank(e) < len(encodings) }

func rank(e string) int {
	for i, x := range encodings {
		if x == e {
			return i
		}
	}
	return len(encodings)
}

// compressible reports whether a content type is worth compressing.
func compressible(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct == "" // unknown type: compress
	}
	switch {
	case strings.HasPrefix(mt, "text/"), strings.HasSuffix(mt, "+json"), strings.HasSuffix(mt, "+xml"):
		return true
	case strings.HasPrefix(mt, "image/"):
		return mt == "image/svg+xml" || mt == "image/bmp"
	case strings.HasPrefix(mt, "video/"), strings.HasPrefix(mt, "audio/"), strings.HasPrefix(mt, "font/woff"):
		return false
	}
	switch mt {
	case "application/zip", "application/gzip", "application/x-gzip", "application/zstd", "application/x-brotli",
		"application/octet-stream", "application/pdf", "application/x-7z-compressed", "application/vnd.rar":
		return false
	}
	return true
}

type compressWriter struct {
	http.ResponseWriter
	encoding    string
	decided     bool
	enc         io.WriteCloser
	wroteHeader bool
}

func (c *compressWriter) WriteHeader(code int) {
	if c.wroteHeader {
		return
	}
	c.wroteHeader = true
	c.decide(code)
	c.ResponseWriter.WriteHeader(code)
}

func (c *compressWriter) decide(code int) {
	c.decided = true
	h := c.Header()
	if code < 200 || code == http.StatusNoContent || code == http.StatusNotModified ||
		h.Get("Content-Encoding") != "" || h.Get("Content-Range") != "" || !compressible(h.Get("Content-Type")) {
		return
	}
	if n, err := strconv.Atoi(h.Get("Content-Length")); err == nil && n < minCompressSize {
		return
	}
	h.Del("Content-Length")
	h.Set("Content-Encoding", c.encoding)
	h.Add("Vary", "Accept-Encoding")
	if et := h.Get("ETag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("ETag", "W/"+et) // a different representation of the same resource
	}
	switch c.encoding {
	case "br":
		c.enc = brotli.NewWriterLevel(c.ResponseWriter, 4)
	case "zstd":
		c.enc, _ = zstd.NewWriter(c.ResponseWriter, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	case "gzip":
		c.enc, _ = gzip.NewWriterLevel(c.ResponseWriter, gzip.DefaultCompression)
	case "deflate":
		c.enc, _ = flate.NewWriter(c.ResponseWriter, flate.DefaultCompression)
	}
}

func (c *compressWriter) Write(p []byte) (int, error) {
	if !c.wroteHeader {
		if c.Header().Get("Content-Type") == "" {
			c.Header().Set("Content-Type", http.DetectContentType(p))
		}
		c.WriteHeader(http.StatusOK)
	}
	if c.enc != nil {
		return c.enc.Write(p)
	}
	return c.ResponseWriter.Write(p)
}

// Flush pushes what is encoded so far to the client (streaming responses).
func (c *compressWriter) Flush() {
	if f, ok := c.enc.(interface{ Flush() error }); ok {
		f.Flush() //nolint:errcheck // the client went away
	}
	http.NewResponseController(c.ResponseWriter).Flush() //nolint:errcheck
}

// Hijack is for upgrades, which are never compressed.
func (c *compressWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(c.ResponseWriter).Hijack()
}

func (c *compressWriter) close() {
	if c.enc != nil {
		c.enc.Close()
	}
}
