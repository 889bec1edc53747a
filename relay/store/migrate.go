package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// migrations are the schema, one entry per version (migrations[0] is version 1), each a
// list of statements applied in one transaction. Never edit a released entry: append a
// new one. Type names that differ between the engines are written as
//
//	{{id}}    an object id: TEXT, compared byte-wise (COLLATE "C" on PostgreSQL, so
//	          "id < ?" pages the same way as SQLite's binary TEXT)
//	{{blob}}  opaque bytes: BLOB on SQLite, BYTEA on PostgreSQL
//
// Timestamps are TEXT in timeLayout; JSON documents are TEXT.
var migrations = [][]string{
	// 1: accounts, authtokens, API keys, TLS certificates, CAs, reserved domains and addrs.
	{
		`CREATE TABLE accounts (
			id {{id}} PRIMARY KEY,
			name TEXT NOT NULL UNIQUE,
			created_at TEXT NOT NULL
		)`,
		`CREATE TABLE credentials (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			token_hash TEXT NOT NULL UNIQUE,
			description TEXT NOT NULL,
			metadata TEXT NOT NULL,
			created_at TEXT NOT NULL
		)`,
		`CREATE INDEX credentials_account ON credentials (account_id, id)`,
		`CREATE TABLE api_keys (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			token_hash TEXT NOT NULL UNIQUE,
			description TEXT NOT NULL,
			metadata TEXT NOT NULL,
			created_at TEXT NOT NULL
		)`,
		`CREATE INDEX api_keys_account ON api_keys (account_id, id)`,
		`CREATE TABLE tls_certificates (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			description TEXT NOT NULL,
			metadata TEXT NOT NULL,
			certificate_pem TEXT NOT NULL,
			sealed_key {{blob}},
			info TEXT NOT NULL,
			not_after TEXT NOT NULL,
			created_at TEXT NOT NULL,
			UNIQUE (id, account_id)
		)`,
		`CREATE INDEX tls_certificates_account ON tls_certificates (account_id, id)`,
		`CREATE TABLE certificate_authorities (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			description TEXT NOT NULL,
			metadata TEXT NOT NULL,
			ca_pem TEXT NOT NULL,
			info TEXT NOT NULL,
			created_at TEXT NOT NULL
		)`,
		`CREATE INDEX certificate_authorities_account ON certificate_authorities (account_id, id)`,
		// A domain's certificate must belong to the domain's account: the foreign key
		// is on the pair. Deleting a certificate a domain still uses fails.
		`CREATE TABLE reserved_domains (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			domain TEXT NOT NULL UNIQUE,
			description TEXT NOT NULL,
			metadata TEXT NOT NULL,
			certificate_id {{id}},
			cert_policy TEXT,
			cert_status TEXT,
			created_at TEXT NOT NULL,
			FOREIGN KEY (certificate_id, account_id) REFERENCES tls_certificates (id, account_id)
		)`,
		`CREATE INDEX reserved_domains_account ON reserved_domains (account_id, id)`,
		`CREATE INDEX reserved_domains_certificate ON reserved_domains (certificate_id)`,
		`CREATE TABLE reserved_addrs (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			addr TEXT NOT NULL UNIQUE,
			description TEXT NOT NULL,
			metadata TEXT NOT NULL,
			created_at TEXT NOT NULL
		)`,
		`CREATE INDEX reserved_addrs_account ON reserved_addrs (account_id, id)`,
	},
	// 2: per-domain edge TLS settings (minimum version, client CAs), JSON.
	{
		`ALTER TABLE reserved_domains ADD COLUMN tls_settings TEXT`,
	},
	// 3: configuration objects kept as JSON documents (edges with their routes,
	// backends, IP policies), checked by the API that writes them.
	{
		`CREATE TABLE objects (
			id {{id}} PRIMARY KEY,
			account_id {{id}} NOT NULL REFERENCES accounts (id),
			kind TEXT NOT NULL,
			doc TEXT NOT NULL,
			created_at TEXT NOT NULL
		)`,
		`CREATE INDEX objects_account_kind ON objects (account_id, kind, id)`,
	},
	// 4: one revision counter that every relay sharing the database bumps after a change
	// through its API, and polls to apply the others' changes (see changes.go).
	{
		`CREATE TABLE revision (
			id INTEGER PRIMARY KEY,
			rev BIGINT NOT NULL
		)`,
		`INSERT INTO revision (id, rev) VALUES (1, 0)`,
	},
}

// schemaVersion is the schema version this binary migrates to.
func schemaVersion() int { return len(migrations) }

// migrationLock is the PostgreSQL advisory lock key that serialises relays migrating
// the same database at once ("ferry" in ASCII).
const migrationLock = 0x6665727279

// ddl substitutes the engine's type names into a migration statement.
func (s *Store) ddl(stmt string) string {
	id, blob := "TEXT", "BLOB"
	if s.driver == DriverPostgres {
		id, blob = `TEXT COLLATE "C"`, "BYTEA"
	}
	return strings.NewReplacer("{{id}}", id, "{{blob}}", blob).Replace(stmt)
}

// migrate brings the schema up to schemaVersion(), one transaction per version, and
// refuses a database a newer binary has migrated.
func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version INTEGER PRIMARY KEY,
		applied_at TEXT NOT NULL
	)`); err != nil {
		return fmt.Errorf("store %s: create schema_migrations: %w", s.where, err)
	}
	latest := schemaVersion()
	for {
		done := false
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			if s.driver == DriverPostgres {
				if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", int64(migrationLock)); err != nil {
					return fmt.Errorf("lock: %w", err)
				}
			}
			var cur int
			if err := tx.QueryRowContext(ctx, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations").Scan(&cur); err != nil {
				return fmt.Errorf("read version: %w", err)
			}
			switch {
			case cur > latest:
				return fmt.Errorf("schema version %d is newer than this ferry-relay knows (%d): run the newer ferry-relay that migrated it", cur, latest)
			case cur == latest:
				done = true
				return nil
			}
			v := cur + 1
			for i, stmt := range migrations[v-1] {
				if _, err := tx.ExecContext(ctx, s.ddl(stmt)); err != nil {
					return fmt.Errorf("migration %d statement %d: %w", v, i+1, err)
				}
			}
			if _, err := s.exec(ctx, tx, "INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)", v, formatTime(now())); err != nil {
				return fmt.Errorf("migration %d: record: %w", v, err)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store %s: %w", s.where, err)
		}
		if done {
			return nil
		}
	}
}
