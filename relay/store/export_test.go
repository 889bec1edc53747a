package store

import (
	"context"
	"database/sql"
)

// Hooks for the external tests.

// RawDB is the store's write pool, for looking at (and tampering with) the tables.
func RawDB(s *Store) *sql.DB { return s.db }

// FilePath is the SQLite file ("" for PostgreSQL).
func FilePath(s *Store) string { return s.path }

// Reopen closes s and opens the same database again, as a relay restart does.
func Reopen(ctx context.Context, s *Store) (*Store, error) {
	if err := s.Close(); err != nil {
		return nil, err
	}
	return Open(ctx, s.database, s.dataDir)
}

// OpenAlso opens the database s uses a second time, as a second relay sharing it does.
func OpenAlso(ctx context.Context, s *Store) (*Store, error) {
	return Open(ctx, s.database, s.dataDir)
}

var (
	SchemaVersion         = schemaVersion
	IsUniqueViolation     = isUniqueViolation
	IsForeignKeyViolation = isForeignKeyViolation
)
