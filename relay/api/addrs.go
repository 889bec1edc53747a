package api

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strconv"

	"github.com/ferrytunnel/ferry/relay/reserve"
	"github.com/ferrytunnel/ferry/relay/store"
)

type addrJSON struct {
	meta
	Addr string `json:"addr"`
}

func addrOut(ra store.ReservedAddr) any {
	return addrJSON{meta: metaOf("reserved_addrs", ra.ID, ra.CreatedAt, ra.Description, ra.Metadata), Addr: ra.Addr}
}

// AddrReservation converts a stored reserved address for the in-memory set.
func AddrReservation(ra store.ReservedAddr) reserve.Addr {
	_, p, _ := net.SplitHostPort(ra.Addr)
	port, _ := strconv.Atoi(p)
	return reserve.Addr{ID: ra.ID, AccountID: ra.AccountID, Addr: ra.Addr, Port: port}
}

func (a *API) routeAddrs() {
	st := a.cfg.Store
	resource[store.ReservedAddr]{
		kind: "reserved address", collection: "reserved_addrs",
		list: st.ListReservedAddrs, get: st.GetReservedAddr, update: st.UpdateReservedAddr,
		out:    addrOut,
		fields: func(ra *store.ReservedAddr) (*string, *string) { return &ra.Description, &ra.Metadata },
		del: func(ctx context.Context, account, id string) error {
			ra, err := st.GetReservedAddr(ctx, account, id)
			if err == nil {
				var edge string
				if edge, err = a.hostportUser(ctx, account, "", ra.Addr); edge != "" {
					return fmt.Errorf("%s is served by edge %s: delete the edge first: %w", ra.Addr, edge, store.ErrInUse)
				}
			}
			if err == nil {
				err = st.DeleteReservedAddr(ctx, account, id)
			}
			if err == nil {
				a.cfg.Addrs.Delete(AddrReservation(ra).Port)
			}
			return err
		},
	}.route(a)
	a.mux.HandleFunc("POST /reserved_addrs", a.createAddr)
}

// createAddr reserves a random free port of the tcp range for the account; the user does
// not choose it (as with ngrok), so reserved ports cannot be squatted by guessing.
func (a *API) createAddr(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Description string `json:"description"`
		Metadata    string `json:"metadata"`
	}
	if e := decode(r, &in); e != nil {
		writeErr(w, e)
		return
	}
	n := a.cfg.TCPHigh - a.cfg.TCPLow + 1
	if n <= 0 {
		writeErr(w, &Error{Status: http.StatusConflict, Code: "FERRY_NO_CAPACITY", Msg: "this relay has no tcp port range (--tcp-ports)"})
		return
	}
	start, _ := rand.Int(rand.Reader, big.NewInt(int64(n)))
	for i := range n {
		port := a.cfg.TCPLow + (int(start.Int64())+i)%n
		if a.cfg.Addrs.Reserved(port) || (a.cfg.PortFree != nil && !a.cfg.PortFree(port)) {
			continue
		}
		ra, err := a.cfg.Store.CreateReservedAddr(r.Context(), store.ReservedAddr{AccountID: account(r),
			Addr: net.JoinHostPort(a.cfg.AddrHost, strconv.Itoa(port)), Description: in.Description, Metadata: in.Metadata})
		if errors.Is(err, store.ErrConflict) {
			continue // reserved a moment ago by another request
		}
		if err != nil {
			writeErr(w, storeErr("reserved address", "", err))
			return
		}
		a.cfg.Addrs.Put(AddrReservation(ra))
		a.cfg.Log.Info("reserved address created", "account", ra.AccountID, "id", ra.ID, "addr", ra.Addr)
		writeJSON(w, http.StatusCreated, addrOut(ra))
		return
	}
	writeErr(w, &Error{Status: http.StatusConflict, Code: "FERRY_NO_CAPACITY",
		Msg: "every port of the relay's tcp range " + strconv.Itoa(a.cfg.TCPLow) + "-" + strconv.Itoa(a.cfg.TCPHigh) + " is reserved or in use"})
}
