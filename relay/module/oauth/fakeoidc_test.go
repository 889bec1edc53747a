package oauth

import (
	"net/http"
	"testing"

	"github.com/ferrytunnel/ferry/relay/module/oauth/oauthtest"
)

const (
	testClientID     = oauthtest.ClientID
	testClientSecret = oauthtest.ClientSecret
)

// newFakeOIDC serves oauthtest's OIDC provider as https://idpHost in w, accepting only
// the app's callback as redirect URI.
func newFakeOIDC(t *testing.T, w *world) *oauthtest.OIDC {
	t.Helper()
	f := oauthtest.NewOIDC(t, oauthtest.OIDCOptions{
		Issuer:      "https://" + idpHost,
		RedirectURI: func(u string) bool { return u == "https://"+appHost+PathCallback },
	})
	w.serve(idpHost, f)
	return f
}

func writeJSON(w http.ResponseWriter, code int, v any) { oauthtest.WriteJSON(w, code, v) }
