package oauth

import (
	"errors"
	"io"
	"net/http"
)

var errBodyTooLarge = errors.New("provider response body larger than 1 MiB")

// providerClient returns a copy of base (or a new client) whose response bodies are
// capped at maxProviderBody and whose calls time out.
func providerClient(base *http.Client) *http.Client {
	var c http.Client
	if base != nil {
		c = *base
	}
	tr := c.Transport
	if tr == nil {
		tr = http.DefaultTransport
	}
	c.Transport = &limitTransport{base: tr, max: maxProviderBody}
	if c.Timeout == 0 {
		c.Timeout = providerTimeout
	}
	return &c
}

// limitTransport caps every response body: reading past max fails with
// errBodyTooLarge. Libraries that read bodies whole (go-oidc, crewjam/saml) are
// bounded this way too.
type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64 // bytes still allowed; -1 once the limit was passed
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left < 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = -1
		return n, errBodyTooLarge
	}
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
