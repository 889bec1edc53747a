// Package store keeps the relay's durable state. One *Store holds the relay's objects (accounts, authtokens, API keys,
// reserved domains and addresses, TLS certificates, certificate authorities) in SQLite
// (modernc.org/sqlite, pure Go, no cgo) in the data directory, or in PostgreSQL for a
// cluster of relays. The SQL is written once, with "?" placeholders, and rebound to
// "$1, $2, ..." for PostgreSQL; the few type names that differ are substituted in the
// migrations (see migrate.go). Timestamps are UTC text of fixed width (timeLayout), so
// they read the same in both engines and sort as text.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// Errors the callers decide on. Each is returned wrapped with what was asked for, e.g.
// "get reserved domain rd_...: not found"; test with errors.Is.
var (
	// ErrNotFound: no such object, or it belongs to another account.
	ErrNotFound = errors.New("not found")
	// ErrConflict: a name that must be unique (account name, domain, address) is taken.
	ErrConflict = errors.New("already exists")
	// ErrInUse: the object cannot be deleted while another refers to it (a certificate
	// attached to a reserved domain).
	ErrInUse = errors.New("in use")
	// ErrInvalid: a field breaks a rule; the message names the field and the rule.
	ErrInvalid = errors.New("invalid")
	// ErrUnknownToken: no authtoken or API key with that value.
	ErrUnknownToken = errors.New("token not recognised")
)

// Driver names returned by Store.Driver.
const (
	DriverSQLite   = "sqlite"
	DriverPostgres = "postgres"
)

// DBFile is the name of the SQLite database inside the data directory.
const DBFile = "ferry.db"

// Page selects one page of a list, newest first.
type Page struct {
	// BeforeID returns only objects older than this id ("" = from the newest). Pass the
	// next value a list returned to get the following page.
	BeforeID string
	// Limit is the most objects to return: 0 means DefaultPageLimit, more than
	// MaxPageLimit means MaxPageLimit.
	Limit int
}

// Page sizes.
const (
	DefaultPageLimit = 100
	MaxPageLimit     = 1000
)

func (p Page) limit() (int, error) {
	switch {
	case p.Limit < 0:
		return 0, fmt.Errorf("%w page limit %d: must be 0 (default %d) to %d", ErrInvalid, p.Limit, DefaultPageLimit, MaxPageLimit)
	case p.Limit == 0:
		return DefaultPageLimit, nil
	case p.Limit > MaxPageLimit:
		return MaxPageLimit, nil
	}
	return p.Limit, nil
}

// Store is the relay's durable state. It is safe for concurrent use.
type Store struct {
	driver string
	// db takes every write. For SQLite it holds a single connection whose transactions
	// begin IMMEDIATE, so writers queue in Go (and behind busy_timeout for other
	// processes) instead of failing with SQLITE_BUSY.
	db *sql.DB
	// ro serves reads: a pool of query-only connections for SQLite (WAL lets them run
	// beside the writer); the same pool as db for PostgreSQL.
	ro *sql.DB
	// where names the database in messages: the SQLite file, or the DSN with its
	// password redacted.
	where string
	// path is the SQLite file ("" for PostgreSQL).
	path string
	// database and dataDir are Open's arguments, kept so a test can reopen the store.
	database, dataDir string

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating and migrating as needed) the store that database names:
//   - "" : SQLite in dataDir/ferry.db (the directory is created 0700, the file 0600);
//   - "sqlite:/path/to/file.db" : SQLite in that file;
//   - "postgres://..." or "postgresql://..." : PostgreSQL, through pgx.
//
// It fails if the database was migrated by a newer ferry-relay than this one.
func Open(ctx context.Context, database, dataDir string) (*Store, error) {
	var (
		s   *Store
		err error
	)
	switch {
	case database == "":
		if dataDir == "" {
			return nil, errors.New("open store: no data directory (--data) and no --database")
		}
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: data dir %s: %w", dataDir, err)
		}
		s, err = openSQLite(ctx, filepath.Join(dataDir, DBFile))
	case strings.HasPrefix(database, "sqlite:"):
		// sqlite:/abs/file.db, sqlite:rel/file.db, or sqlite:///abs/file.db
		p := strings.TrimPrefix(strings.TrimPrefix(database, "sqlite:"), "//")
		if p == "" {
			return nil, fmt.Errorf("--database %q: no file after sqlite: (want sqlite:/path/to/ferry.db)", database)
		}
		s, err = openSQLite(ctx, p)
	case strings.HasPrefix(database, "postgres://"), strings.HasPrefix(database, "postgresql://"):
		s, err = openPostgres(ctx, database)
	default:
		return nil, fmt.Errorf("--database %s: unsupported; want empty (SQLite in the data directory), sqlite:/path/to/ferry.db, or postgres://user:password@host:5432/dbname", quoteDSN(database))
	}
	if err != nil {
		return nil, err
	}
	s.database, s.dataDir = database, dataDir
	if err := s.migrate(ctx); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// quoteDSN quotes a --database value for a message, with any password redacted.
func quoteDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil {
		return strconv.Quote(u.Redacted())
	}
	return "(unparsable value)"
}

func openSQLite(ctx context.Context, path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	// Create the file ourselves so it is 0600; SQLite gives its -wal and -shm files the
	// database file's mode.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	f.Close()

	dsn := func(extra ...string) string {
		q := []string{
			"_pragma=busy_timeout(10000)",
			"_pragma=foreign_keys(1)",
		}
		q = append(q, extra...)
		return (&url.URL{Scheme: "file", Path: abs, RawQuery: strings.Join(q, "&")}).String()
	}
	w, err := sql.Open("sqlite", dsn("_pragma=journal_mode(WAL)", "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	// The first connection switches the file to WAL before any reader opens it.
	if err := w.PingContext(ctx); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	r, err := sql.Open("sqlite", dsn("_pragma=query_only(1)"))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	r.SetMaxOpenConns(4)
	r.SetMaxIdleConns(4)
	return &Store{driver: DriverSQLite, db: w, ro: r, where: abs, path: abs}, nil
}

func openPostgres(ctx context.Context, dsn string) (*Store, error) {
	where := quoteDSN(dsn)
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(4)
	db.SetConnMaxIdleTime(5 * time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open store %s: %w", where, err)
	}
	return &Store{driver: DriverPostgres, db: db, ro: db, where: where}, nil
}

// Driver returns "sqlite" or "postgres".
func (s *Store) Driver() string { return s.driver }

// Close closes the database. Calling it again returns the first result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.db.Close()
		if s.ro != s.db {
			if err := s.ro.Close(); s.closeErr == nil {
				s.closeErr = err
			}
		}
	})
	return s.closeErr
}

// querier is what *sql.DB and *sql.Tx share.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// scanner is what *sql.Row and *sql.Rows share.
type scanner interface {
	Scan(dest ...any) error
}

// bind turns the "?" placeholders of query into the driver's.
func (s *Store) bind(query string) string {
	if s.driver == DriverPostgres {
		return rebindDollar(query)
	}
	return query
}

// rebindDollar replaces each "?" outside quotes with $1, $2, ...
func rebindDollar(query string) string {
	var b strings.Builder
	b.Grow(len(query) + 8)
	n := 0
	var quote byte
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == '?':
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	return q.ExecContext(ctx, s.bind(query), args...)
}

func (s *Store) query(ctx context.Context, q querier, query string, args ...any) (*sql.Rows, error) {
	return q.QueryContext(ctx, s.bind(query), args...)
}

func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	return q.QueryRowContext(ctx, s.bind(query), args...)
}

// inTx runs fn in a write transaction, committing if it returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// collect scans every row of rows with scan.
func collect[T any](rows *sql.Rows, scan func(scanner) (T, error)) ([]T, error) {
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// listPage returns one page of an account's rows of table, newest first, and the
// BeforeID of the next page ("" after the last). cols must start with the id.
func listPage[T any](ctx context.Context, s *Store, table, cols, accountID string, p Page, scan func(scanner) (T, error), id func(T) string) ([]T, string, error) {
	return listPageWhere(ctx, s, table, cols, "account_id = ?", []any{accountID}, p, scan, id)
}

// listPageWhere is listPage with any condition (which must include the account).
func listPageWhere[T any](ctx context.Context, s *Store, table, cols, where string, whereArgs []any, p Page, scan func(scanner) (T, error), id func(T) string) ([]T, string, error) {
	limit, err := p.limit()
	if err != nil {
		return nil, "", err
	}
	query := "SELECT " + cols + " FROM " + table + " WHERE " + where
	args := append([]any(nil), whereArgs...)
	if p.BeforeID != "" {
		query += " AND id < ?"
		args = append(args, p.BeforeID)
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit+1)
	rows, err := s.query(ctx, s.ro, query, args...)
	if err != nil {
		return nil, "", err
	}
	items, err := collect(rows, scan)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(items) > limit {
		items = items[:limit]
		next = id(items[limit-1])
	}
	return items, next, nil
}

// Constraint violations, as both drivers report them.

func isUniqueViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" // unique_violation
}

func isForeignKeyViolation(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code() == sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503" // foreign_key_violation
}

// notFound turns sql.ErrNoRows into ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// affected returns ErrNotFound when res changed no row.
func affected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Timestamps are stored as UTC text of fixed width, nanosecond precision.
const timeLayout = "2006-01-02T15:04:05.000000000Z07:00"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(v string) (time.Time, error) {
	t, err := time.Parse(timeLayout, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("stored time %q: %w", v, err)
	}
	return t.UTC(), nil
}

// now is the creation time of a new object: UTC, no monotonic reading, so the value
// Create returns equals the one read back.
func now() time.Time { return time.Now().UTC() }

// Field limits, as ngrok's API has them.
const (
	maxDescription = 255
	maxMetadata    = 4096
)

// checkText checks a free-text field: valid UTF-8 without NUL (PostgreSQL's text
// cannot hold either), at most limit bytes.
func checkText(field, v string, limit int) error {
	switch {
	case len(v) > limit:
		return fmt.Errorf("%w %s: %d bytes, the limit is %d", ErrInvalid, field, len(v), limit)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w %s: not valid UTF-8", ErrInvalid, field)
	case strings.IndexByte(v, 0) >= 0:
		return fmt.Errorf("%w %s: contains a NUL byte", ErrInvalid, field)
	}
	return nil
}

func checkDescMeta(description, metadata string) error {
	if err := checkText("description", description, maxDescription); err != nil {
		return err
	}
	return checkText("metadata", metadata, maxMetadata)
}

// nullString stores "" as NULL.
func nullString(v string) sql.NullString { return sql.NullString{String: v, Valid: v != ""} }
