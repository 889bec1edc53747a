package oauth

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
)

var pageTmpl = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{{.Title}}</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}</style>
</head><body>
<h1>{{.Title}}</h1>
<p>{{.Message}}</p>
{{if .Link}}<p><a href="{{.Link}}">{{.LinkText}}</a></p>{{end}}
</body></html>
`))

type page struct {
	Title, Message, Link, LinkText string
}

// securityHeaders are set on every response the middleware writes itself.
func securityHeaders(h http.Header) {
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
}

// writePage answers with a small HTML page and the Ferry-Error header that marks
// responses the relay wrote itself (for errors).
func writePage(w http.ResponseWriter, code int, p page) {
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	if code >= 400 {
		h.Set("Ferry-Error", fmt.Sprintf("%d %s", code, p.Title))
	}
	w.WriteHeader(code)
	_ = pageTmpl.Execute(w, p)
}

// retryLink is the link that starts a fresh login.
func retryLink(p page) page {
	p.Link, p.LinkText = PathAuthorize, "Sign in again"
	return p
}

var samlPostTmpl = template.Must(template.New("saml").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Signing in…</title></head><body>
<form method="post" action="{{.URL}}" id="f">
<input type="hidden" name="SAMLRequest" value="{{.SAMLRequest}}">
<input type="hidden" name="RelayState" value="{{.RelayState}}">
<noscript><button type="submit">Continue to sign in</button></noscript>
</form>
<script nonce="{{.Nonce}}">document.getElementById('f').submit();</script>
</body></html>
`))

// writeSAMLPost sends the browser to the IdP with an auto-submitted form (the
// HTTP-POST binding).
func writeSAMLPost(w http.ResponseWriter, dest, samlRequest, relayState string) {
	nonce := make([]byte, 16)
	_, _ = rand.Read(nonce)
	n := base64.StdEncoding.EncodeToString(nonce)
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+n+"'; form-action *")
	w.WriteHeader(http.StatusOK)
	_ = samlPostTmpl.Execute(w, struct{ URL, SAMLRequest, RelayState, Nonce string }{dest, samlRequest, relayState, n})
}
