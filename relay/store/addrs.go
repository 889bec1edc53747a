package store

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// ReservedAddr is a public TCP address ("host:port") an account holds for its tcp
// tunnels. Addresses are unique across every account; the caller picks the port.
type ReservedAddr struct {
	ID          string
	AccountID   string
	Addr        string
	Description string
	Metadata    string
	CreatedAt   time.Time
}

// NormalizeAddr checks that addr is "host:port" with a port of 1-65535 and returns it
// in canonical form: the host in lower case, IPv6 in brackets, the port without
// leading zeros.
func NormalizeAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%w addr %q: want host:port", ErrInvalid, addr)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 {
		return "", fmt.Errorf("%w addr %q: port must be 1-65535", ErrInvalid, addr)
	}
	if host == "" {
		return "", fmt.Errorf("%w addr %q: no host", ErrInvalid, addr)
	}
	if strings.ContainsAny(host, " \t\r\n/\x00") {
		return "", fmt.Errorf("%w addr %q: bad host", ErrInvalid, addr)
	}
	return net.JoinHostPort(strings.ToLower(host), strconv.FormatUint(p, 10)), nil
}

const addrCols = "id, account_id, addr, description, metadata, created_at"

func scanAddr(sc scanner) (ReservedAddr, error) {
	var a ReservedAddr
	var created string
	if err := sc.Scan(&a.ID, &a.AccountID, &a.Addr, &a.Description, &a.Metadata, &created); err != nil {
		return ReservedAddr{}, err
	}
	var err error
	a.CreatedAt, err = parseTime(created)
	return a, err
}

// CreateReservedAddr reserves a.Addr for a.AccountID, setting ID and CreatedAt.
// ErrConflict if any account holds the address.
func (s *Store) CreateReservedAddr(ctx context.Context, a ReservedAddr) (ReservedAddr, error) {
	addr, err := NormalizeAddr(a.Addr)
	if err != nil {
		return ReservedAddr{}, fmt.Errorf("create reserved addr: %w", err)
	}
	if err := checkDescMeta(a.Description, a.Metadata); err != nil {
		return ReservedAddr{}, fmt.Errorf("create reserved addr %s: %w", addr, err)
	}
	a.ID, a.Addr, a.CreatedAt = NewID(PrefixReservedAddr), addr, now()
	_, err = s.exec(ctx, s.db, "INSERT INTO reserved_addrs ("+addrCols+") VALUES (?, ?, ?, ?, ?, ?)",
		a.ID, a.AccountID, a.Addr, a.Description, a.Metadata, formatTime(a.CreatedAt))
	switch {
	case isUniqueViolation(err):
		return ReservedAddr{}, fmt.Errorf("create reserved addr %s: %w", addr, ErrConflict)
	case isForeignKeyViolation(err):
		return ReservedAddr{}, fmt.Errorf("create reserved addr %s: account %s: %w", addr, a.AccountID, ErrNotFound)
	case err != nil:
		return ReservedAddr{}, fmt.Errorf("create reserved addr %s: %w", addr, err)
	}
	return a, nil
}

// GetReservedAddr returns the account's reserved addr id.
func (s *Store) GetReservedAddr(ctx context.Context, accountID, id string) (ReservedAddr, error) {
	a, err := scanAddr(s.queryRow(ctx, s.ro, "SELECT "+addrCols+" FROM reserved_addrs WHERE id = ? AND account_id = ?", id, accountID))
	if err != nil {
		return ReservedAddr{}, fmt.Errorf("get reserved addr %s: %w", id, notFound(err))
	}
	return a, nil
}

// ListReservedAddrs returns a page of the account's reserved addrs, newest first, and
// the BeforeID of the next page ("" after the last).
func (s *Store) ListReservedAddrs(ctx context.Context, accountID string, p Page) ([]ReservedAddr, string, error) {
	out, next, err := listPage(ctx, s, "reserved_addrs", addrCols, accountID, p, scanAddr, func(a ReservedAddr) string { return a.ID })
	if err != nil {
		return nil, "", fmt.Errorf("list reserved addrs: %w", err)
	}
	return out, next, nil
}

// UpdateReservedAddr sets the description and metadata of the account's reserved addr
// id.
func (s *Store) UpdateReservedAddr(ctx context.Context, accountID, id, description, metadata string) (ReservedAddr, error) {
	if err := checkDescMeta(description, metadata); err != nil {
		return ReservedAddr{}, fmt.Errorf("update reserved addr %s: %w", id, err)
	}
	a, err := scanAddr(s.queryRow(ctx, s.db, "UPDATE reserved_addrs SET description = ?, metadata = ? WHERE id = ? AND account_id = ? RETURNING "+addrCols,
		description, metadata, id, accountID))
	if err != nil {
		return ReservedAddr{}, fmt.Errorf("update reserved addr %s: %w", id, notFound(err))
	}
	return a, nil
}

// DeleteReservedAddr releases the account's reserved addr id.
func (s *Store) DeleteReservedAddr(ctx context.Context, accountID, id string) error {
	res, err := s.exec(ctx, s.db, "DELETE FROM reserved_addrs WHERE id = ? AND account_id = ?", id, accountID)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("delete reserved addr %s: %w", id, err)
	}
	return nil
}

// AllReservedAddrs returns the reserved addrs of every account, oldest first.
func (s *Store) AllReservedAddrs(ctx context.Context) ([]ReservedAddr, error) {
	rows, err := s.query(ctx, s.ro, "SELECT "+addrCols+" FROM reserved_addrs ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list all reserved addrs: %w", err)
	}
	out, err := collect(rows, scanAddr)
	if err != nil {
		return nil, fmt.Errorf("list all reserved addrs: %w", err)
	}
	return out, nil
}

// AddrByAddr returns the reservation of addr (of any account), in any form
// NormalizeAddr accepts.
func (s *Store) AddrByAddr(ctx context.Context, addr string) (ReservedAddr, error) {
	norm, err := NormalizeAddr(addr)
	if err != nil {
		return ReservedAddr{}, fmt.Errorf("reserved addr %q: %w", addr, ErrNotFound)
	}
	a, err := scanAddr(s.queryRow(ctx, s.ro, "SELECT "+addrCols+" FROM reserved_addrs WHERE addr = ?", norm))
	if err != nil {
		return ReservedAddr{}, fmt.Errorf("reserved addr %s: %w", norm, notFound(err))
	}
	return a, nil
}
