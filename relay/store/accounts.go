package store

import (
	"context"
	"fmt"
	"time"
)

// Account owns every other object. Its Name is unique.
type Account struct {
	ID        string
	Name      string
	CreatedAt time.Time
}

// checkAccountName enforces 1-64 characters of a-z, 0-9, '-', '_' and '.'.
func checkAccountName(name string) error {
	ok := len(name) >= 1 && len(name) <= 64
	for i := 0; ok && i < len(name); i++ {
		c := name[i]
		ok = c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.'
	}
	if !ok {
		return fmt.Errorf("%w account name %q: want 1-64 characters of a-z, 0-9, '-', '_', '.'", ErrInvalid, name)
	}
	return nil
}

const accountCols = "id, name, created_at"

func scanAccount(sc scanner) (Account, error) {
	var a Account
	var created string
	if err := sc.Scan(&a.ID, &a.Name, &created); err != nil {
		return Account{}, err
	}
	var err error
	a.CreatedAt, err = parseTime(created)
	return a, err
}

// CreateAccount creates an account; ErrConflict if the name is taken.
func (s *Store) CreateAccount(ctx context.Context, name string) (Account, error) {
	if err := checkAccountName(name); err != nil {
		return Account{}, fmt.Errorf("create account: %w", err)
	}
	a := Account{ID: NewID(PrefixAccount), Name: name, CreatedAt: now()}
	_, err := s.exec(ctx, s.db, "INSERT INTO accounts ("+accountCols+") VALUES (?, ?, ?)", a.ID, a.Name, formatTime(a.CreatedAt))
	if isUniqueViolation(err) {
		return Account{}, fmt.Errorf("create account %s: %w", name, ErrConflict)
	}
	if err != nil {
		return Account{}, fmt.Errorf("create account %s: %w", name, err)
	}
	return a, nil
}

// GetAccount returns the account with id.
func (s *Store) GetAccount(ctx context.Context, id string) (Account, error) {
	a, err := scanAccount(s.queryRow(ctx, s.ro, "SELECT "+accountCols+" FROM accounts WHERE id = ?", id))
	if err != nil {
		return Account{}, fmt.Errorf("get account %s: %w", id, notFound(err))
	}
	return a, nil
}

// AccountByName returns the account called name.
func (s *Store) AccountByName(ctx context.Context, name string) (Account, error) {
	a, err := scanAccount(s.queryRow(ctx, s.ro, "SELECT "+accountCols+" FROM accounts WHERE name = ?", name))
	if err != nil {
		return Account{}, fmt.Errorf("account %s: %w", name, notFound(err))
	}
	return a, nil
}

// ListAccounts returns every account, oldest first.
func (s *Store) ListAccounts(ctx context.Context) ([]Account, error) {
	rows, err := s.query(ctx, s.ro, "SELECT "+accountCols+" FROM accounts ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	out, err := collect(rows, scanAccount)
	if err != nil {
		return nil, fmt.Errorf("list accounts: %w", err)
	}
	return out, nil
}
