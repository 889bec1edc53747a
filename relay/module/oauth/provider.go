package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/oauth2"
)

// oauthProvider is one OAuth 2.0 / OpenID Connect identity provider.
type oauthProvider interface {
	// endpoint returns the authorize and token URLs (oidc: after discovery).
	endpoint(ctx context.Context) (oauth2.Endpoint, error)
	// scopes are all the scopes to ask for.
	scopes() []string
	// authOptions are provider-specific parameters of the authorize URL.
	authOptions(st *loginState) []oauth2.AuthCodeOption
	// login identifies the user from the token the code was exchanged for.
	login(ctx context.Context, tok *oauth2.Token, st *loginState) (*identity, error)
	// recheck identifies the user again with the stored token, refreshing it when it
	// has expired (oidc: always, when there is a refresh token), and returns the token
	// to keep.
	recheck(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token) (*oauth2.Token, *identity, error)
}

// apiError is a provider API answer other than 200.
type apiError struct {
	url         string
	status      int
	rateLimited bool
	body        string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("GET %s: HTTP %d: %s", e.url, e.status, e.body)
}

// rejected reports whether err means the provider no longer accepts the grant or
// the user (the session ends), as opposed to a failure that may pass (network,
// timeout, 5xx, rate limit: the session is kept and the request answered 502).
func rejected(err error) bool {
	if errors.Is(err, errInvalidIdentity) {
		return true
	}
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		if re.Response == nil {
			return re.ErrorCode != ""
		}
		c := re.Response.StatusCode
		return c >= 400 && c < 500 && c != http.StatusRequestTimeout && c != http.StatusTooManyRequests
	}
	var ae *apiError
	if errors.As(err, &ae) {
		if ae.rateLimited {
			return false
		}
		return ae.status >= 400 && ae.status < 500 && ae.status != http.StatusRequestTimeout && ae.status != http.StatusTooManyRequests
	}
	return false
}

// getJSON GETs rawURL with the access token and decodes the JSON answer into out.
func getJSON(ctx context.Context, client *http.Client, rawURL, accessToken string, hdr http.Header, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", redactQuery(rawURL), err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxProviderBody+1))
	if err != nil {
		return fmt.Errorf("GET %s: reading body: %w", redactQuery(rawURL), err)
	}
	if len(body) > maxProviderBody {
		return fmt.Errorf("GET %s: %w", redactQuery(rawURL), errBodyTooLarge)
	}
	if resp.StatusCode != http.StatusOK {
		return &apiError{
			url:         redactQuery(rawURL),
			status:      resp.StatusCode,
			rateLimited: resp.Header.Get("X-RateLimit-Remaining") == "0",
			body:        shorten(string(body), 200),
		}
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: decoding the answer: %w", redactQuery(rawURL), err)
	}
	return nil
}

// refresh returns a usable access token: tok while it is valid, else a refreshed one.
// force refreshes whenever there is a refresh token, which makes the provider decide
// again whether the user may still sign in.
func refresh(ctx context.Context, cfg *oauth2.Config, tok *oauth2.Token, force bool) (*oauth2.Token, error) {
	if tok.RefreshToken == "" {
		if !tok.Valid() {
			return nil, fmt.Errorf("%w: the access token has expired and there is no refresh token", errInvalidIdentity)
		}
		return tok, nil
	}
	if force {
		tok = &oauth2.Token{RefreshToken: tok.RefreshToken}
	}
	nt, err := cfg.TokenSource(ctx, tok).Token()
	if err != nil {
		return nil, fmt.Errorf("refresh token: %w", err)
	}
	return nt, nil
}

// redactQuery drops the query (which may carry a proof or a token) for messages.
func redactQuery(s string) string {
	if u, err := url.Parse(s); err == nil {
		u.RawQuery = ""
		return u.String()
	}
	return "(bad URL)"
}

func shorten(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// unionScopes returns base followed by the extra scopes not already in it.
func unionScopes(base, extra []string) []string {
	out := append([]string(nil), base...)
	for _, s := range extra {
		found := false
		for _, b := range out {
			if b == s {
				found = true
				break
			}
		}
		if !found {
			out = append(out, s)
		}
	}
	return out
}

// boolish decodes a JSON boolean that some providers send as a string.
type boolish bool

func (b *boolish) UnmarshalJSON(data []byte) error {
	switch strings.Trim(string(data), `"`) {
	case "true":
		*b = true
	case "false", "null", "":
		*b = false
	default:
		return fmt.Errorf("not a boolean: %s", data)
	}
	return nil
}

// idString decodes an id sent as a JSON number or string.
type idString string

func (s *idString) UnmarshalJSON(data []byte) error {
	if len(data) > 0 && data[0] == '"' {
		var v string
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		*s = idString(v)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil {
		return err
	}
	*s = idString(n.String())
	return nil
}
