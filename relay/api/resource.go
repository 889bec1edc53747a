package api

import (
	"context"
	"net/http"

	"github.com/ferrytunnel/ferry/relay/store"
)

// resource wires the routes every collection shares: list, get, update of description
// and metadata, delete. Creation differs per kind and is routed by the caller.
type resource[T any] struct {
	kind, collection string
	list             func(ctx context.Context, account string, p store.Page) ([]T, string, error)
	get              func(ctx context.Context, account, id string) (T, error)
	update           func(ctx context.Context, account, id, desc, md string) (T, error)
	del              func(ctx context.Context, account, id string) error
	out              func(T) any
	// fields returns the object's description and metadata for an update.
	fields func(*T) (desc, md *string)
	// deleted runs after a delete (nil: nothing).
	deleted func(r *http.Request, id string)
}

func (res resource[T]) route(a *API) {
	c := "/" + res.collection
	a.mux.HandleFunc("GET "+c, func(w http.ResponseWriter, r *http.Request) {
		p, e := page(r)
		if e != nil {
			writeErr(w, e)
			return
		}
		items, next, err := res.list(r.Context(), account(r), p)
		if err != nil {
			writeErr(w, storeErr(res.kind, p.BeforeID, err))
			return
		}
		out := make([]any, len(items))
		for i, v := range items {
			out[i] = res.out(v)
		}
		list(w, r, res.collection, out, next)
	})
	a.mux.HandleFunc("GET "+c+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		v, err := res.get(r.Context(), account(r), r.PathValue("id"))
		if err != nil {
			writeErr(w, storeErr(res.kind, r.PathValue("id"), err))
			return
		}
		writeJSON(w, http.StatusOK, res.out(v))
	})
	a.mux.HandleFunc("PATCH "+c+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		var in metaUpdate
		if e := decode(r, &in); e != nil {
			writeErr(w, e)
			return
		}
		id := r.PathValue("id")
		v, err := res.get(r.Context(), account(r), id)
		if err == nil {
			desc, md := res.fields(&v)
			apply(desc, in.Description)
			apply(md, in.Metadata)
			v, err = res.update(r.Context(), account(r), id, *desc, *md)
		}
		if err != nil {
			writeErr(w, storeErr(res.kind, id, err))
			return
		}
		writeJSON(w, http.StatusOK, res.out(v))
	})
	a.mux.HandleFunc("DELETE "+c+"/{id}", func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := res.del(r.Context(), account(r), id); err != nil {
			writeErr(w, storeErr(res.kind, id, err))
			return
		}
		if res.deleted != nil {
			res.deleted(r, id)
		}
		w.WriteHeader(http.StatusNoContent)
	})
}

// metaUpdate is the body of a PATCH on objects whose only mutable fields are these.
type metaUpdate struct {
	Description optString `json:"description"`
	Metadata    optString `json:"metadata"`
}
