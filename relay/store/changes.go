package store

import (
	"context"
	"fmt"
)

// Relays sharing one database learn of each other's changes through a revision counter:
// the relay whose API changed something bumps it, and every relay polls it and, when it
// moved, reads reservations, edges and subscriptions again and checks its sessions'
// credentials (relay/server). A relay alone on its database sees its own bumps only.

// Bump records that the configuration changed; it returns the new revision.
func (s *Store) Bump(ctx context.Context) (int64, error) {
	if _, err := s.exec(ctx, s.db, "UPDATE revision SET rev = rev + 1 WHERE id = 1"); err != nil {
		return 0, fmt.Errorf("bump revision: %w", err)
	}
	return s.Revision(ctx)
}

// Revision returns the configuration's revision: it changes after every Bump, by any
// relay sharing the database.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	var rev int64
	if err := s.queryRow(ctx, s.ro, "SELECT rev FROM revision WHERE id = 1").Scan(&rev); err != nil {
		return 0, fmt.Errorf("read revision: %w", err)
	}
	return rev, nil
}

// CredentialExists reports whether the authtoken credential id is still in the store.
func (s *Store) CredentialExists(ctx context.Context, id string) (bool, error) {
	var n int
	if err := s.queryRow(ctx, s.ro, "SELECT COUNT(*) FROM credentials WHERE id = ?", id).Scan(&n); err != nil {
		return false, fmt.Errorf("look up credential %s: %w", id, err)
	}
	return n > 0, nil
}
