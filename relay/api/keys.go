package api

import (
	"context"
	"time"

	"net/http"

	"github.com/ferrytunnel/ferry/relay/store"
)

// keyJSON is a credential (agent authtoken) or an API key. Token is only set in the
// answer to the create request: the relay keeps a hash and cannot show it again.
type keyJSON struct {
	meta
	Token   *string `json:"token"`
	OwnerID string  `json:"owner_id"`
}

func keyOut(collection string, id, account, desc, md, token string, created time.Time) keyJSON {
	k := keyJSON{meta: metaOf(collection, id, created, desc, md), OwnerID: account}
	if token != "" {
		k.Token = &token
	}
	return k
}

func credOut(c store.Credential) any {
	return keyOut("credentials", c.ID, c.AccountID, c.Description, c.Metadata, c.Token, c.CreatedAt)
}

func apiKeyOut(k store.APIKey) any {
	return keyOut("api_keys", k.ID, k.AccountID, k.Description, k.Metadata, k.Token, k.CreatedAt)
}

type keyCreate struct {
	Description string `json:"description"`
	Metadata    string `json:"metadata"`
}

func (a *API) routeKeys() {
	st := a.cfg.Store
	resource[store.Credential]{
		kind: "credential", collection: "credentials",
		list: st.ListCredentials, get: st.GetCredential, update: st.UpdateCredential, del: st.DeleteCredential,
		out: credOut, fields: func(c *store.Credential) (*string, *string) { return &c.Description, &c.Metadata },
		// A deleted authtoken must stop working now, not at the agent's next reconnect.
		deleted: func(_ *http.Request, id string) { a.cfg.Revoked(id) },
	}.route(a)
	a.mux.HandleFunc("POST /credentials", createKey(a, "credential", st.CreateCredential, credOut))

	resource[store.APIKey]{
		kind: "API key", collection: "api_keys",
		list: st.ListAPIKeys, get: st.GetAPIKey, update: st.UpdateAPIKey, del: st.DeleteAPIKey,
		out: apiKeyOut, fields: func(k *store.APIKey) (*string, *string) { return &k.Description, &k.Metadata },
	}.route(a)
	a.mux.HandleFunc("POST /api_keys", createKey(a, "API key", st.CreateAPIKey, apiKeyOut))
}

// createKey makes a new authtoken or API key for the caller's account.
func createKey[T any](a *API, kind string, create func(ctx context.Context, account, desc, md string) (T, error), out func(T) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var in keyCreate
		if e := decode(r, &in); e != nil {
			writeErr(w, e)
			return
		}
		k, err := create(r.Context(), account(r), in.Description, in.Metadata)
		if err != nil {
			writeErr(w, storeErr(kind, "", err))
			return
		}
		a.cfg.Log.Info(kind+" created", "account", account(r))
		writeJSON(w, http.StatusCreated, out(k))
	}
}
