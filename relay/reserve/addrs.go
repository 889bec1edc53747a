package reserve

import (
	"fmt"
	"sync"
)

// Addr is one reserved TCP address: a public port of the relay's tcp range held by an
// account. `ferry tcp --remote-addr` binds only an address its account reserved.
type Addr struct {
	ID        string
	AccountID string
	Addr      string // "host:port" as shown to the user
	Port      int
}

// Addrs is the in-memory set of reserved TCP addresses, by port.
type Addrs struct {
	mu sync.RWMutex
	m  map[int]Addr
}

// NewAddrs returns an empty set.
func NewAddrs() *Addrs { return &Addrs{m: make(map[int]Addr)} }

// Replace swaps the whole set (at startup, from the store).
func (s *Addrs) Replace(all []Addr) {
	m := make(map[int]Addr, len(all))
	for _, a := range all {
		m[a.Port] = a
	}
	s.mu.Lock()
	s.m = m
	s.mu.Unlock()
}

// Put adds or updates one reservation.
func (s *Addrs) Put(a Addr) {
	s.mu.Lock()
	s.m[a.Port] = a
	s.mu.Unlock()
}

// Delete removes the reservation of port.
func (s *Addrs) Delete(port int) {
	s.mu.Lock()
	delete(s.m, port)
	s.mu.Unlock()
}

// Reserved reports whether any account holds port; random tcp tunnels skip such ports.
func (s *Addrs) Reserved(port int) bool {
	s.mu.RLock()
	_, ok := s.m[port]
	s.mu.RUnlock()
	return ok
}

// CanBind says whether account may bind port as a chosen remote address: only when the
// account reserved it.
func (s *Addrs) CanBind(account string, port int) error {
	s.mu.RLock()
	a, ok := s.m[port]
	s.mu.RUnlock()
	switch {
	case !ok:
		return fmt.Errorf("port %d: %w; reserve an address first (ferry api reserved-addrs create) and pass the addr it returns, or leave --remote-addr out for a random port", port, ErrNotReserved)
	case a.AccountID != account:
		return fmt.Errorf("port %d: %w", port, ErrTaken)
	}
	return nil
}
