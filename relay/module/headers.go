package module

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"sort"
	"strings"
)

// templateVars are the ${...} variables a header value may use.
var templateVars = map[string]func(r *http.Request, tunnel string) string{
	"conn.client_ip": func(r *http.Request, _ string) string {
		if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			return h
		}
		return r.RemoteAddr
	},
	"conn.tls.version": func(r *http.Request, _ string) string {
		if r.TLS == nil {
			return ""
		}
		return tls.VersionName(r.TLS.Version)
	},
	"conn.tls.sni": func(r *http.Request, _ string) string {
		if r.TLS == nil {
			return ""
		}
		return r.TLS.ServerName
	},
	"req.host":   func(r *http.Request, _ string) string { return r.Host },
	"req.method": func(r *http.Request, _ string) string { return r.Method },
	"req.path":   func(r *http.Request, _ string) string { return r.URL.Path },
	"tunnel.host": func(_ *http.Request, tunnel string) string {
		return tunnel
	},
}

// TemplateVars lists the variables header templates may use, for error messages and docs.
func TemplateVars() []string {
	names := make([]string, 0, len(templateVars))
	for n := range templateVars {
		names = append(names, "${"+n+"}")
	}
	sort.Strings(names)
	return names
}

// template is a header value split into literal text and variables.
type template struct {
	parts []string // even: literal, odd: variable name
}

func parseTemplate(s string) (template, error) {
	var t template
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			t.parts = append(t.parts, s)
			return t, nil
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			return t, fmt.Errorf("unclosed ${ in %q", s)
		}
		name := s[i+2 : i+j]
		if _, ok := templateVars[name]; !ok {
			return t, fmt.Errorf("unknown variable ${%s}; known: %s", name, strings.Join(TemplateVars(), ", "))
		}
		t.parts = append(t.parts, s[:i], name)
		s = s[i+j+1:]
	}
}

func (t template) expand(r *http.Request, tunnel string) string {
	if len(t.parts) == 1 {
		return t.parts[0]
	}
	var b strings.Builder
	for i, p := range t.parts {
		if i%2 == 0 {
			b.WriteString(p)
		} else {
			writeSafe(&b, templateVars[p](r, tunnel))
		}
	}
	return b.String()
}

// writeSafe writes a value a client controls (path, Host, SNI) with control characters
// replaced by spaces, so it can never end the header line it is put in.
func writeSafe(b *strings.Builder, v string) {
	for _, c := range v {
		if c < 0x20 || c == 0x7f {
			c = ' '
		}
		b.WriteRune(c)
	}
}

type headerAdd struct {
	name  string
	value template
}

// Headers adds and removes request headers (sent to the agent) and response headers
// (sent to the client). Removal runs before addition, so "remove X, add X: v" replaces X.
type Headers struct {
	tunnel                string
	reqAdd, respAdd       []headerAdd
	reqRemove, respRemove []string
}

// NewHeaders parses "Name: value" additions and "Name" removals; nil when there are none.
func NewHeaders(tunnel string, reqAdd, reqRemove, respAdd, respRemove []string) (*Headers, error) {
	if len(reqAdd)+len(reqRemove)+len(respAdd)+len(respRemove) == 0 {
		return nil, nil
	}
	h := &Headers{tunnel: tunnel}
	var err error
	if h.reqAdd, err = parseAdds("request_header_add", reqAdd); err != nil {
		return nil, err
	}
	if h.respAdd, err = parseAdds("response_header_add", respAdd); err != nil {
		return nil, err
	}
	if h.reqRemove, err = parseNames("request_header_remove", reqRemove); err != nil {
		return nil, err
	}
	if h.respRemove, err = parseNames("response_header_remove", respRemove); err != nil {
		return nil, err
	}
	return h, nil
}

func parseAdds(key string, in []string) ([]headerAdd, error) {
	var out []headerAdd
	for _, s := range in {
		name, value, ok := strings.Cut(s, ":")
		if !ok {
			return nil, fmt.Errorf("%s %q: want \"Name: value\"", key, s)
		}
		n, err := headerName(key, name)
		if err != nil {
			return nil, err
		}
		if strings.ContainsFunc(value, func(c rune) bool { return c < 0x20 && c != '\t' || c == 0x7f }) {
			return nil, fmt.Errorf("%s %q: the value has a control character (a line break would start another header)", key, s)
		}
		t, err := parseTemplate(strings.TrimSpace(value))
		if err != nil {
			return nil, fmt.Errorf("%s %q: %w", key, s, err)
		}
		out = append(out, headerAdd{name: n, value: t})
	}
	return out, nil
}

func parseNames(key string, in []string) ([]string, error) {
	var out []string
	for _, s := range in {
		n, err := headerName(key, s)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func headerName(key, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || strings.ContainsAny(s, " \t\r\n:()<>@,;\\\"/[]?={}") {
		return "", fmt.Errorf("%s: %q is not a valid header name", key, s)
	}
	return textproto.CanonicalMIMEHeaderKey(s), nil
}

// Request applies the request changes to h (the outgoing headers) for request r.
func (h *Headers) Request(out http.Header, r *http.Request) {
	if h == nil {
		return
	}
	for _, n := range h.reqRemove {
		out.Del(n)
	}
	for _, a := range h.reqAdd {
		out.Add(a.name, a.value.expand(r, h.tunnel))
	}
}

// Response applies the response changes to the headers of the response to r.
func (h *Headers) Response(out http.Header, r *http.Request) {
	if h == nil {
		return
	}
	for _, n := range h.respRemove {
		out.Del(n)
	}
	for _, a := range h.respAdd {
		out.Add(a.name, a.value.expand(r, h.tunnel))
	}
}
