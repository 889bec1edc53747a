package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Object is a configuration object kept as a JSON document: an edge (with its routes),
// a backend or an IP policy. Kind names the collection ("edges/https", "backends/weighted",
// "ip_policies", ...); the API owns the document's shape and checks it.
type Object struct {
	ID        string
	AccountID string
	Kind      string
	Doc       json.RawMessage
	CreatedAt time.Time
}

// MaxObjectDoc bounds one object's document.
const MaxObjectDoc = 256 << 10

const objectCols = "id, account_id, kind, doc, created_at"

func scanObject(sc scanner) (Object, error) {
	var o Object
	var doc, created string
	if err := sc.Scan(&o.ID, &o.AccountID, &o.Kind, &doc, &created); err != nil {
		return Object{}, err
	}
	o.Doc = json.RawMessage(doc)
	var err error
	o.CreatedAt, err = parseTime(created)
	return o, err
}

func checkDoc(doc json.RawMessage) error {
	if len(doc) > MaxObjectDoc {
		return fmt.Errorf("document is %d bytes, at most %d: %w", len(doc), MaxObjectDoc, ErrInvalid)
	}
	if !json.Valid(doc) {
		return fmt.Errorf("document is not JSON: %w", ErrInvalid)
	}
	return nil
}

// CreateObject stores a new object of o.Kind for o.AccountID with an id of prefix.
func (s *Store) CreateObject(ctx context.Context, o Object, prefix string) (Object, error) {
	if err := checkDoc(o.Doc); err != nil {
		return Object{}, fmt.Errorf("create %s: %w", o.Kind, err)
	}
	o.ID, o.CreatedAt = NewID(prefix), now()
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var one int
		if err := s.queryRow(ctx, tx, "SELECT 1 FROM accounts WHERE id = ?", o.AccountID).Scan(&one); err != nil {
			return fmt.Errorf("account %s: %w", o.AccountID, notFound(err))
		}
		_, err := s.exec(ctx, tx, "INSERT INTO objects ("+objectCols+") VALUES (?, ?, ?, ?, ?)",
			o.ID, o.AccountID, o.Kind, string(o.Doc), formatTime(o.CreatedAt))
		return err
	})
	if err != nil {
		return Object{}, fmt.Errorf("create %s: %w", o.Kind, err)
	}
	return o, nil
}

// GetObject returns the account's object id of kind.
func (s *Store) GetObject(ctx context.Context, accountID, kind, id string) (Object, error) {
	o, err := scanObject(s.queryRow(ctx, s.ro, "SELECT "+objectCols+" FROM objects WHERE id = ? AND account_id = ? AND kind = ?", id, accountID, kind))
	if err != nil {
		return Object{}, fmt.Errorf("get %s %s: %w", kind, id, notFound(err))
	}
	return o, nil
}

// ListObjects returns a page of the account's objects of kind, newest first.
func (s *Store) ListObjects(ctx context.Context, accountID, kind string, p Page) ([]Object, string, error) {
	out, next, err := listPageWhere(ctx, s, "objects", objectCols, "account_id = ? AND kind = ?", []any{accountID, kind}, p, scanObject,
		func(o Object) string { return o.ID })
	if err != nil {
		return nil, "", fmt.Errorf("list %s: %w", kind, err)
	}
	return out, next, nil
}

// UpdateObject replaces the document of the account's object id of kind.
func (s *Store) UpdateObject(ctx context.Context, accountID, kind, id string, doc json.RawMessage) (Object, error) {
	if err := checkDoc(doc); err != nil {
		return Object{}, fmt.Errorf("update %s %s: %w", kind, id, err)
	}
	var out Object
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = scanObject(s.queryRow(ctx, tx, "UPDATE objects SET doc = ? WHERE id = ? AND account_id = ? AND kind = ? RETURNING "+objectCols,
			string(doc), id, accountID, kind))
		return notFound(err)
	})
	if err != nil {
		return Object{}, fmt.Errorf("update %s %s: %w", kind, id, err)
	}
	return out, nil
}

// DeleteObject deletes the account's object id of kind.
func (s *Store) DeleteObject(ctx context.Context, accountID, kind, id string) error {
	res, err := s.exec(ctx, s.db, "DELETE FROM objects WHERE id = ? AND account_id = ? AND kind = ?", id, accountID, kind)
	if err == nil {
		err = affected(res)
	}
	if err != nil {
		return fmt.Errorf("delete %s %s: %w", kind, id, err)
	}
	return nil
}

// AllObjects returns every object of every account, oldest first (for the relay's
// routing state).
func (s *Store) AllObjects(ctx context.Context) ([]Object, error) {
	rows, err := s.query(ctx, s.ro, "SELECT "+objectCols+" FROM objects ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("all objects: %w", err)
	}
	return collect(rows, scanObject)
}
