package store_test

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ferrytunnel/ferry/relay/store"
)

// The store suite runs against SQLite always and against PostgreSQL when
// FERRY_TEST_POSTGRES holds a DSN (scripts/postgres.sh start DIR prints one).

func TestSQLite(t *testing.T) {
	runStoreSuite(t, openSQLite)
}

func openSQLite(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.Context(), "", filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatalf("Open(sqlite) = %v, want nil", err)
	}
	t.Cleanup(func() { s.Close() })
	if got := s.Driver(); got != store.DriverSQLite {
		t.Fatalf("Driver() = %q, want %q", got, store.DriverSQLite)
	}
	return s
}

func TestPostgres(t *testing.T) {
	dsn := os.Getenv("FERRY_TEST_POSTGRES")
	if dsn == "" {
		t.Skip("set FERRY_TEST_POSTGRES (make test-postgres starts a server)")
	}
	admin, err := sql.Open("pgx", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close() })
	if err := admin.PingContext(t.Context()); err != nil {
		t.Fatalf("FERRY_TEST_POSTGRES: %v", err)
	}
	runStoreSuite(t, func(t *testing.T) *store.Store {
		t.Helper()
		// Each test gets a schema of its own, dropped when it ends.
		schema := "ferry_test_" + strings.ToLower(rand.Text()[:12])
		if _, err := admin.ExecContext(t.Context(), "CREATE SCHEMA "+schema); err != nil {
			t.Fatalf("create schema: %v", err)
		}
		t.Cleanup(func() {
			if _, err := admin.ExecContext(context.Background(), "DROP SCHEMA "+schema+" CASCADE"); err != nil {
				t.Errorf("drop schema %s: %v", schema, err)
			}
		})
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("FERRY_TEST_POSTGRES: %v", err)
		}
		q := u.Query()
		q.Set("search_path", schema)
		u.RawQuery = q.Encode()
		s, err := store.Open(t.Context(), u.String(), "")
		if err != nil {
			t.Fatalf("Open(postgres) = %v, want nil", err)
		}
		t.Cleanup(func() { s.Close() })
		if got := s.Driver(); got != store.DriverPostgres {
			t.Fatalf("Driver() = %q, want %q", got, store.DriverPostgres)
		}
		return s
	})
}

// runStoreSuite checks every behaviour of the store that both engines must share.
func runStoreSuite(t *testing.T, open func(t *testing.T) *store.Store) {
	t.Run("Migrations", func(t *testing.T) { testMigrations(t, open) })
	t.Run("FutureVersion", func(t *testing.T) { testFutureVersion(t, open) })
	t.Run("Accounts", func(t *testing.T) { testAccounts(t, open) })
	t.Run("Credentials", func(t *testing.T) { testSecrets(t, open, credentialOps) })
	t.Run("APIKeys", func(t *testing.T) { testSecrets(t, open, apiKeyOps) })
	t.Run("TokensNotStored", func(t *testing.T) { testTokensNotStored(t, open) })
	t.Run("TLSCertificates", func(t *testing.T) { testTLSCertificates(t, open) })
	t.Run("CertificateAuthorities", func(t *testing.T) { testCertificateAuthorities(t, open) })
	t.Run("ReservedDomains", func(t *testing.T) { testReservedDomains(t, open) })
	t.Run("CertificateInUse", func(t *testing.T) { testCertificateInUse(t, open) })
	t.Run("ReservedAddrs", func(t *testing.T) { testReservedAddrs(t, open) })
	t.Run("Conflicts", func(t *testing.T) { testConflicts(t, open) })
	t.Run("ConstraintErrors", func(t *testing.T) { testConstraintErrors(t, open) })
	t.Run("Isolation", func(t *testing.T) { testIsolation(t, open) })
	t.Run("Pagination", func(t *testing.T) { testPagination(t, open) })
	t.Run("Validation", func(t *testing.T) { testValidation(t, open) })
	t.Run("Objects", func(t *testing.T) { testObjects(t, open) })
	t.Run("Reopen", func(t *testing.T) { testReopen(t, open) })
	t.Run("ConcurrentWrites", func(t *testing.T) { testConcurrentWrites(t, open) })
	t.Run("Revision", func(t *testing.T) { testRevision(t, open) })
}

// testRevision: a Bump through one store is seen by another on the same database (two
// relays), and CredentialExists follows a deletion made through either.
func testRevision(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	other, err := store.OpenAlso(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	r0 := must(other.Revision(ctx))(t)
	r1 := must(s.Bump(ctx))(t)
	if r1 == r0 {
		t.Errorf("Bump = %d, want a revision after %d", r1, r0)
	}
	if got := must(other.Revision(ctx))(t); got != r1 {
		t.Errorf("the other store's Revision = %d, want %d", got, r1)
	}
	alice := newAccount(t, s, "alice")
	cred := must(s.CreateCredential(ctx, alice.ID, "laptop", ""))(t)
	if !must(other.CredentialExists(ctx, cred.ID))(t) {
		t.Errorf("CredentialExists(%s) = false after create", cred.ID)
	}
	if err := other.DeleteCredential(ctx, alice.ID, cred.ID); err != nil {
		t.Fatal(err)
	}
	if must(s.CredentialExists(ctx, cred.ID))(t) {
		t.Errorf("CredentialExists(%s) = true after delete", cred.ID)
	}
}

// Helpers.

func newAccount(t *testing.T, s *store.Store, name string) store.Account {
	t.Helper()
	a, err := s.CreateAccount(t.Context(), name)
	if err != nil {
		t.Fatalf("CreateAccount(%q) = %v, want nil", name, err)
	}
	return a
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s = %v, want %v", what, err, want)
	}
}

func wantEqual(t *testing.T, what string, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s =\n  %+v\nwant\n  %+v", what, got, want)
	}
}

func checkNew(t *testing.T, what, id, prefix string, created time.Time) {
	t.Helper()
	if !regexp.MustCompile(`^` + prefix + `_[0-9a-hjkmnp-tv-z]{26}$`).MatchString(id) {
		t.Errorf("%s id = %q, want %s_ and 26 base32 digits", what, id, prefix)
	}
	if d := time.Since(created); d < 0 || d > time.Minute || created.Location() != time.UTC {
		t.Errorf("%s CreatedAt = %v, want a moment ago in UTC", what, created)
	}
}

// A certificate to store (the store does not parse it).
func testCert(accountID string) store.TLSCertificate {
	return store.TLSCertificate{
		AccountID:      accountID,
		Description:    "wildcard cert",
		Metadata:       `{"team":"edge"}`,
		CertificatePEM: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
		SealedKey:      []byte{0, 1, 2, 0xfe, 0xff, 0},
		Info:           json.RawMessage(`{"subject_common_name":"example.com","dns_names":["example.com","*.example.com"]}`),
		NotAfter:       time.Date(2031, 2, 3, 4, 5, 6, 789012345, time.UTC),
	}
}

// Migrations and versions.

func testMigrations(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	versions := func(s *store.Store) []int {
		rows, err := store.RawDB(s).QueryContext(t.Context(), "SELECT version, applied_at FROM schema_migrations ORDER BY version")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []int
		for rows.Next() {
			var v int
			var at string
			if err := rows.Scan(&v, &at); err != nil {
				t.Fatal(err)
			}
			if _, err := time.Parse(time.RFC3339Nano, at); err != nil {
				t.Errorf("schema_migrations version %d applied_at = %q, want RFC 3339: %v", v, at, err)
			}
			out = append(out, v)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	var want []int
	for v := 1; v <= store.SchemaVersion(); v++ {
		want = append(want, v)
	}
	wantEqual(t, "schema_migrations versions", versions(s), want)
	s2, err := store.Reopen(t.Context(), s)
	if err != nil {
		t.Fatalf("reopen = %v, want nil", err)
	}
	t.Cleanup(func() { s2.Close() })
	wantEqual(t, "schema_migrations versions after a reopen", versions(s2), want)
}

func testFutureVersion(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	newAccount(t, s, "alice")
	future := store.SchemaVersion() + 1
	if _, err := store.RawDB(s).ExecContext(t.Context(), fmt.Sprintf("INSERT INTO schema_migrations (version, applied_at) VALUES (%d, '2099-01-01T00:00:00.000000000Z')", future)); err != nil {
		t.Fatal(err)
	}
	s2, err := store.Reopen(t.Context(), s)
	if err == nil {
		s2.Close()
		t.Fatalf("Open of a database at schema version %d = nil error, want a refusal", future)
	}
	want := fmt.Sprintf("schema version %d is newer than this ferry-relay knows (%d)", future, store.SchemaVersion())
	if !strings.Contains(err.Error(), want) {
		t.Errorf("Open of a newer database = %q, want it to say %q", err, want)
	}
}

// Accounts.

func testAccounts(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	checkNew(t, "account", alice.ID, store.PrefixAccount, alice.CreatedAt)
	if alice.Name != "alice" {
		t.Errorf("CreateAccount name = %q, want alice", alice.Name)
	}
	bob := newAccount(t, s, "bob-2.ops_team")
	got, err := s.GetAccount(ctx, alice.ID)
	if err != nil {
		t.Fatalf("GetAccount = %v", err)
	}
	wantEqual(t, "GetAccount", got, alice)
	got, err = s.AccountByName(ctx, "bob-2.ops_team")
	if err != nil {
		t.Fatalf("AccountByName = %v", err)
	}
	wantEqual(t, "AccountByName", got, bob)
	all, err := s.ListAccounts(ctx)
	if err != nil {
		t.Fatalf("ListAccounts = %v", err)
	}
	wantEqual(t, "ListAccounts", all, []store.Account{alice, bob})

	_, err = s.GetAccount(ctx, "acct_nope")
	wantErr(t, "GetAccount(unknown)", err, store.ErrNotFound)
	_, err = s.AccountByName(ctx, "carol")
	wantErr(t, "AccountByName(unknown)", err, store.ErrNotFound)
	_, err = s.CreateAccount(ctx, "alice")
	wantErr(t, "CreateAccount(taken name)", err, store.ErrConflict)
	for _, bad := range []string{"", "Alice", "al ice", "ål", strings.Repeat("a", 65), "a/b"} {
		_, err := s.CreateAccount(ctx, bad)
		wantErr(t, fmt.Sprintf("CreateAccount(%q)", bad), err, store.ErrInvalid)
		if err != nil && !strings.Contains(err.Error(), "1-64 characters of a-z, 0-9") {
			t.Errorf("CreateAccount(%q) = %q, want the rule in the message", bad, err)
		}
	}
	if _, err := s.CreateAccount(ctx, strings.Repeat("z", 64)); err != nil {
		t.Errorf("CreateAccount(64 characters) = %v, want nil", err)
	}
}

// Credentials and API keys share a shape; secretOps adapts each to one test.

type secretOps struct {
	prefix, tokenPrefix string
	create              func(s *store.Store, ctx context.Context, account, desc, meta string) (store.Credential, error)
	verify              func(s *store.Store, ctx context.Context, token string) (store.Credential, error)
	get                 func(s *store.Store, ctx context.Context, account, id string) (store.Credential, error)
	list                func(s *store.Store, ctx context.Context, account string, p store.Page) ([]store.Credential, string, error)
	update              func(s *store.Store, ctx context.Context, account, id, desc, meta string) (store.Credential, error)
	del                 func(s *store.Store, ctx context.Context, account, id string) error
}

var credentialOps = secretOps{
	prefix: store.PrefixCredential, tokenPrefix: "fy_",
	create: (*store.Store).CreateCredential,
	verify: (*store.Store).VerifyCredential,
	get:    (*store.Store).GetCredential,
	list:   (*store.Store).ListCredentials,
	update: (*store.Store).UpdateCredential,
	del:    (*store.Store).DeleteCredential,
}

var apiKeyOps = secretOps{
	prefix: store.PrefixAPIKey, tokenPrefix: "fyk_",
	create: func(s *store.Store, ctx context.Context, account, desc, meta string) (store.Credential, error) {
		k, err := s.CreateAPIKey(ctx, account, desc, meta)
		return store.Credential(k), err
	},
	verify: func(s *store.Store, ctx context.Context, token string) (store.Credential, error) {
		k, err := s.VerifyAPIKey(ctx, token)
		return store.Credential(k), err
	},
	get: func(s *store.Store, ctx context.Context, account, id string) (store.Credential, error) {
		k, err := s.GetAPIKey(ctx, account, id)
		return store.Credential(k), err
	},
	list: func(s *store.Store, ctx context.Context, account string, p store.Page) ([]store.Credential, string, error) {
		ks, next, err := s.ListAPIKeys(ctx, account, p)
		out := make([]store.Credential, len(ks))
		for i, k := range ks {
			out[i] = store.Credential(k)
		}
		return out, next, err
	},
	update: func(s *store.Store, ctx context.Context, account, id, desc, meta string) (store.Credential, error) {
		k, err := s.UpdateAPIKey(ctx, account, id, desc, meta)
		return store.Credential(k), err
	},
	del: (*store.Store).DeleteAPIKey,
}

func testSecrets(t *testing.T, open func(*testing.T) *store.Store, ops secretOps) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	c, err := ops.create(s, ctx, alice.ID, "laptop", `{"host":"mbp"}`)
	if err != nil {
		t.Fatalf("create = %v, want nil", err)
	}
	checkNew(t, "create", c.ID, ops.prefix, c.CreatedAt)
	if !regexp.MustCompile(`^` + ops.tokenPrefix + `[0-9a-f]{48}$`).MatchString(c.Token) {
		t.Errorf("create Token = %q, want %s and 48 hex digits", c.Token, ops.tokenPrefix)
	}
	if c.AccountID != alice.ID || c.Description != "laptop" || c.Metadata != `{"host":"mbp"}` {
		t.Errorf("create = %+v, want account %s, description laptop, metadata {\"host\":\"mbp\"}", c, alice.ID)
	}
	stored := c
	stored.Token = ""

	got, err := ops.verify(s, ctx, c.Token)
	if err != nil {
		t.Fatalf("verify(right token) = %v, want nil", err)
	}
	wantEqual(t, "verify(right token)", got, stored)
	for _, bad := range []string{"", ops.tokenPrefix, c.Token[:len(c.Token)-1], c.Token + "0", strings.ToUpper(c.Token), " " + c.Token, hashHex(c.Token)} {
		_, err := ops.verify(s, ctx, bad)
		wantErr(t, fmt.Sprintf("verify(%q)", bad), err, store.ErrUnknownToken)
	}

	got, err = ops.get(s, ctx, alice.ID, c.ID)
	if err != nil {
		t.Fatalf("get = %v", err)
	}
	wantEqual(t, "get", got, stored)
	list, next, err := ops.list(s, ctx, alice.ID, store.Page{})
	if err != nil || next != "" {
		t.Fatalf("list = %v, next %q; want nil, \"\"", err, next)
	}
	wantEqual(t, "list", list, []store.Credential{stored})

	upd, err := ops.update(s, ctx, alice.ID, c.ID, "desktop", "")
	if err != nil {
		t.Fatalf("update = %v", err)
	}
	stored.Description, stored.Metadata = "desktop", ""
	wantEqual(t, "update", upd, stored)
	got, _ = ops.get(s, ctx, alice.ID, c.ID)
	wantEqual(t, "get after update", got, stored)
	got, err = ops.verify(s, ctx, c.Token)
	if err != nil {
		t.Fatalf("verify after update = %v", err)
	}
	wantEqual(t, "verify after update", got, stored)

	_, err = ops.update(s, ctx, alice.ID, "nope", "x", "")
	wantErr(t, "update(unknown id)", err, store.ErrNotFound)
	_, err = ops.create(s, ctx, "acct_nope", "", "")
	wantErr(t, "create(unknown account)", err, store.ErrNotFound)

	if err := ops.del(s, ctx, alice.ID, c.ID); err != nil {
		t.Fatalf("delete = %v", err)
	}
	_, err = ops.verify(s, ctx, c.Token)
	wantErr(t, "verify after delete", err, store.ErrUnknownToken)
	_, err = ops.get(s, ctx, alice.ID, c.ID)
	wantErr(t, "get after delete", err, store.ErrNotFound)
	wantErr(t, "delete again", ops.del(s, ctx, alice.ID, c.ID), store.ErrNotFound)

	// An authtoken is no API key, and the reverse.
	other := apiKeyOps
	if ops.prefix == store.PrefixAPIKey {
		other = credentialOps
	}
	o, err := other.create(s, ctx, alice.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = ops.verify(s, ctx, o.Token)
	wantErr(t, "verify(a token of the other kind)", err, store.ErrUnknownToken)
}

func hashHex(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// testTokensNotStored checks the tables (and, for SQLite, the files) hold each token's
// hash and never the token.
func testTokensNotStored(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	var tokens []string
	for i := range 3 {
		c, err := s.CreateCredential(ctx, alice.ID, fmt.Sprintf("token %d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		k, err := s.CreateAPIKey(ctx, alice.ID, fmt.Sprintf("key %d", i), "")
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, c.Token, k.Token)
	}
	var dump strings.Builder
	for _, table := range []string{"credentials", "api_keys"} {
		rows, err := store.RawDB(s).QueryContext(ctx, "SELECT * FROM "+table)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := rows.Columns()
		if !contains(cols, "token_hash") {
			t.Errorf("%s columns = %v, want token_hash among them", table, cols)
		}
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				if b, ok := v.([]byte); ok {
					v = string(b)
				}
				fmt.Fprintf(&dump, "%s.%s=%v\n", table, cols[i], v)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
	}
	var files []byte
	if path := store.FilePath(s); path != "" {
		for _, p := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(p)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			files = append(files, b...)
		}
	}
	for _, tok := range tokens {
		body := tok[strings.IndexByte(tok, '_')+1:]
		if strings.Contains(dump.String(), body) {
			t.Errorf("the token tables hold the token %s:\n%s", tok, dump.String())
		}
		if !strings.Contains(dump.String(), "token_hash="+hashHex(tok)) {
			t.Errorf("the token tables lack token_hash=sha256(%s):\n%s", tok, dump.String())
		}
		if files != nil {
			if strings.Contains(string(files), body) {
				t.Errorf("the SQLite files hold the token %s", tok)
			}
			if !strings.Contains(string(files), hashHex(tok)) {
				t.Errorf("the SQLite files lack sha256(%s): did the test read the right files?", tok)
			}
		}
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// TLS certificates and CAs.

func testTLSCertificates(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	in := testCert(alice.ID)
	c, err := s.CreateTLSCertificate(ctx, in)
	if err != nil {
		t.Fatalf("CreateTLSCertificate = %v", err)
	}
	checkNew(t, "certificate", c.ID, store.PrefixTLSCertificate, c.CreatedAt)
	want := in
	want.ID, want.CreatedAt = c.ID, c.CreatedAt
	wantEqual(t, "CreateTLSCertificate", c, want)
	got, err := s.GetTLSCertificate(ctx, alice.ID, c.ID)
	if err != nil {
		t.Fatalf("GetTLSCertificate = %v", err)
	}
	wantEqual(t, "GetTLSCertificate", got, want)
	list, next, err := s.ListTLSCertificates(ctx, alice.ID, store.Page{})
	if err != nil || next != "" {
		t.Fatalf("ListTLSCertificates = %v, next %q", err, next)
	}
	wantEqual(t, "ListTLSCertificates", list, []store.TLSCertificate{want})

	upd, err := s.UpdateTLSCertificate(ctx, alice.ID, c.ID, "renamed", "m2")
	if err != nil {
		t.Fatalf("UpdateTLSCertificate = %v", err)
	}
	want.Description, want.Metadata = "renamed", "m2"
	wantEqual(t, "UpdateTLSCertificate", upd, want)

	// No key, no info.
	bare, err := s.CreateTLSCertificate(ctx, store.TLSCertificate{AccountID: alice.ID, CertificatePEM: "pem"})
	if err != nil {
		t.Fatalf("CreateTLSCertificate(no key, no info) = %v", err)
	}
	got, _ = s.GetTLSCertificate(ctx, alice.ID, bare.ID)
	wantEqual(t, "GetTLSCertificate(no key, no info)", got, bare)
	if got.SealedKey != nil || got.Info != nil || !got.NotAfter.IsZero() {
		t.Errorf("bare certificate = %+v, want nil SealedKey and Info, zero NotAfter", got)
	}

	all, err := s.AllTLSCertificates(ctx)
	if err != nil {
		t.Fatalf("AllTLSCertificates = %v", err)
	}
	wantEqual(t, "AllTLSCertificates", all, []store.TLSCertificate{want, bare})

	if err := s.DeleteTLSCertificate(ctx, alice.ID, c.ID); err != nil {
		t.Fatalf("DeleteTLSCertificate = %v", err)
	}
	_, err = s.GetTLSCertificate(ctx, alice.ID, c.ID)
	wantErr(t, "GetTLSCertificate after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteTLSCertificate again", s.DeleteTLSCertificate(ctx, alice.ID, c.ID), store.ErrNotFound)
	_, err = s.CreateTLSCertificate(ctx, testCert("acct_nope"))
	wantErr(t, "CreateTLSCertificate(unknown account)", err, store.ErrNotFound)
}

func testCertificateAuthorities(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	in := store.CertificateAuthority{
		AccountID:   alice.ID,
		Description: "client CA",
		Metadata:    "m",
		CAPEM:       "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
		Info:        json.RawMessage(`{"subject_common_name":"Ferry Test CA"}`),
	}
	ca, err := s.CreateCertificateAuthority(ctx, in)
	if err != nil {
		t.Fatalf("CreateCertificateAuthority = %v", err)
	}
	checkNew(t, "certificate authority", ca.ID, store.PrefixCertificateAuthority, ca.CreatedAt)
	want := in
	want.ID, want.CreatedAt = ca.ID, ca.CreatedAt
	wantEqual(t, "CreateCertificateAuthority", ca, want)
	got, err := s.GetCertificateAuthority(ctx, alice.ID, ca.ID)
	if err != nil {
		t.Fatalf("GetCertificateAuthority = %v", err)
	}
	wantEqual(t, "GetCertificateAuthority", got, want)
	list, next, err := s.ListCertificateAuthorities(ctx, alice.ID, store.Page{})
	if err != nil || next != "" {
		t.Fatalf("ListCertificateAuthorities = %v, next %q", err, next)
	}
	wantEqual(t, "ListCertificateAuthorities", list, []store.CertificateAuthority{want})
	upd, err := s.UpdateCertificateAuthority(ctx, alice.ID, ca.ID, "", `{"k":1}`)
	if err != nil {
		t.Fatalf("UpdateCertificateAuthority = %v", err)
	}
	want.Description, want.Metadata = "", `{"k":1}`
	wantEqual(t, "UpdateCertificateAuthority", upd, want)
	if err := s.DeleteCertificateAuthority(ctx, alice.ID, ca.ID); err != nil {
		t.Fatalf("DeleteCertificateAuthority = %v", err)
	}
	_, err = s.GetCertificateAuthority(ctx, alice.ID, ca.ID)
	wantErr(t, "GetCertificateAuthority after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteCertificateAuthority again", s.DeleteCertificateAuthority(ctx, alice.ID, ca.ID), store.ErrNotFound)
	_, err = s.CreateCertificateAuthority(ctx, store.CertificateAuthority{AccountID: "acct_nope", CAPEM: "pem"})
	wantErr(t, "CreateCertificateAuthority(unknown account)", err, store.ErrNotFound)
}

// Reserved domains.

func testReservedDomains(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	cert, err := s.CreateTLSCertificate(ctx, testCert(alice.ID))
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.CreateReservedDomain(ctx, store.ReservedDomain{
		AccountID:     alice.ID,
		Domain:        "App.Example.COM.",
		Description:   "app",
		Metadata:      "m",
		CertificateID: cert.ID,
	})
	if err != nil {
		t.Fatalf("CreateReservedDomain = %v", err)
	}
	checkNew(t, "reserved domain", d.ID, store.PrefixReservedDomain, d.CreatedAt)
	want := store.ReservedDomain{ID: d.ID, AccountID: alice.ID, Domain: "app.example.com", Description: "app", Metadata: "m", CertificateID: cert.ID, CreatedAt: d.CreatedAt}
	wantEqual(t, "CreateReservedDomain", d, want)
	got, err := s.GetReservedDomain(ctx, alice.ID, d.ID)
	if err != nil {
		t.Fatalf("GetReservedDomain = %v", err)
	}
	wantEqual(t, "GetReservedDomain", got, want)

	policy := &store.CertPolicy{Authority: "letsencrypt", PrivateKeyType: "ecdsa"}
	wild, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "*.Apps.example.com", CertPolicy: policy})
	if err != nil {
		t.Fatalf("CreateReservedDomain(wildcard) = %v", err)
	}
	wantWild := store.ReservedDomain{ID: wild.ID, AccountID: alice.ID, Domain: "*.apps.example.com", CertPolicy: policy, CreatedAt: wild.CreatedAt}
	wantEqual(t, "CreateReservedDomain(wildcard)", wild, wantWild)

	list, next, err := s.ListReservedDomains(ctx, alice.ID, store.Page{})
	if err != nil || next != "" {
		t.Fatalf("ListReservedDomains = %v, next %q", err, next)
	}
	wantEqual(t, "ListReservedDomains (newest first)", list, []store.ReservedDomain{wantWild, want})
	all, err := s.AllReservedDomains(ctx)
	if err != nil {
		t.Fatalf("AllReservedDomains = %v", err)
	}
	wantEqual(t, "AllReservedDomains (oldest first)", all, []store.ReservedDomain{want, wantWild})
	for _, name := range []string{"app.example.com", "APP.example.com."} {
		got, err := s.DomainByName(ctx, name)
		if err != nil {
			t.Fatalf("DomainByName(%q) = %v", name, err)
		}
		wantEqual(t, fmt.Sprintf("DomainByName(%q)", name), got, want)
	}
	got, err = s.DomainByName(ctx, "*.apps.example.com")
	if err != nil {
		t.Fatalf("DomainByName(wildcard) = %v", err)
	}
	wantEqual(t, "DomainByName(wildcard)", got, wantWild)
	for _, name := range []string{"x.apps.example.com", "example.com", "", "bad name"} {
		_, err := s.DomainByName(ctx, name)
		wantErr(t, fmt.Sprintf("DomainByName(%q)", name), err, store.ErrNotFound)
	}

	// Update: description, metadata, certificate and policy; not the name or status.
	started := time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)
	retries := started.Add(time.Hour)
	renews := time.Date(2026, 3, 1, 0, 0, 0, 0, time.FixedZone("X", 3600))
	status := &store.CertStatus{
		RenewsAt:        &renews,
		ProvisioningJob: &store.ProvisioningJob{ErrorCode: "ERR_DNS", Msg: "no TXT record", StartedAt: &started, RetriesAt: &retries},
	}
	if err := s.SetCertStatus(ctx, d.ID, status); err != nil {
		t.Fatalf("SetCertStatus = %v", err)
	}
	upd, err := s.UpdateReservedDomain(ctx, store.ReservedDomain{
		ID: d.ID, AccountID: alice.ID, Domain: "ignored.example.com", Description: "app2", Metadata: "m2",
		CertPolicy: &store.CertPolicy{Authority: "internal"},
	})
	if err != nil {
		t.Fatalf("UpdateReservedDomain = %v", err)
	}
	renewsUTC := renews.UTC()
	wantStatus := &store.CertStatus{
		RenewsAt:        &renewsUTC,
		ProvisioningJob: &store.ProvisioningJob{ErrorCode: "ERR_DNS", Msg: "no TXT record", StartedAt: &started, RetriesAt: &retries},
	}
	want.Description, want.Metadata, want.CertificateID, want.CertPolicy, want.CertStatus = "app2", "m2", "", &store.CertPolicy{Authority: "internal"}, wantStatus
	wantEqual(t, "UpdateReservedDomain", upd, want)
	got, _ = s.GetReservedDomain(ctx, alice.ID, d.ID)
	wantEqual(t, "GetReservedDomain after update", got, want)
	if err := s.SetCertStatus(ctx, d.ID, nil); err != nil {
		t.Fatalf("SetCertStatus(nil) = %v", err)
	}
	got, _ = s.GetReservedDomain(ctx, alice.ID, d.ID)
	if got.CertStatus != nil {
		t.Errorf("CertStatus after SetCertStatus(nil) = %+v, want nil", got.CertStatus)
	}
	wantErr(t, "SetCertStatus(unknown)", s.SetCertStatus(ctx, "rd_nope", status), store.ErrNotFound)
	_, err = s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: "rd_nope", AccountID: alice.ID})
	wantErr(t, "UpdateReservedDomain(unknown)", err, store.ErrNotFound)
	_, err = s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: d.ID, AccountID: alice.ID, CertificateID: "cert_nope"})
	wantErr(t, "UpdateReservedDomain(unknown certificate)", err, store.ErrNotFound)
	_, err = s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "c.example.com", CertificateID: "cert_nope"})
	wantErr(t, "CreateReservedDomain(unknown certificate)", err, store.ErrNotFound)
	_, err = s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: "acct_nope", Domain: "c.example.com"})
	wantErr(t, "CreateReservedDomain(unknown account)", err, store.ErrNotFound)

	if err := s.DeleteReservedDomain(ctx, alice.ID, d.ID); err != nil {
		t.Fatalf("DeleteReservedDomain = %v", err)
	}
	_, err = s.GetReservedDomain(ctx, alice.ID, d.ID)
	wantErr(t, "GetReservedDomain after delete", err, store.ErrNotFound)
	_, err = s.DomainByName(ctx, "app.example.com")
	wantErr(t, "DomainByName after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteReservedDomain again", s.DeleteReservedDomain(ctx, alice.ID, d.ID), store.ErrNotFound)
	// The name is free again.
	if _, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "app.example.com"}); err != nil {
		t.Errorf("CreateReservedDomain(released name) = %v, want nil", err)
	}
}

func testCertificateInUse(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	cert, err := s.CreateTLSCertificate(ctx, testCert(alice.ID))
	if err != nil {
		t.Fatal(err)
	}
	bobCert, err := s.CreateTLSCertificate(ctx, testCert(bob.ID))
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "a.example.com", CertificateID: cert.ID})
	if err != nil {
		t.Fatal(err)
	}
	err = s.DeleteTLSCertificate(ctx, alice.ID, cert.ID)
	wantErr(t, "DeleteTLSCertificate(attached)", err, store.ErrInUse)
	if err != nil && !strings.Contains(err.Error(), "a.example.com") {
		t.Errorf("DeleteTLSCertificate(attached) = %q, want the domain named", err)
	}
	if _, err := s.GetTLSCertificate(ctx, alice.ID, cert.ID); err != nil {
		t.Errorf("GetTLSCertificate after a refused delete = %v, want nil", err)
	}
	// Bob cannot learn that Alice's certificate is in use, nor attach his to her domain,
	// nor hers to his.
	wantErr(t, "DeleteTLSCertificate(other account's, attached)", s.DeleteTLSCertificate(ctx, bob.ID, cert.ID), store.ErrNotFound)
	_, err = s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: d.ID, AccountID: alice.ID, CertificateID: bobCert.ID})
	wantErr(t, "UpdateReservedDomain(other account's certificate)", err, store.ErrNotFound)
	_, err = s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: bob.ID, Domain: "b.example.com", CertificateID: cert.ID})
	wantErr(t, "CreateReservedDomain(other account's certificate)", err, store.ErrNotFound)

	// Detached, it deletes.
	if _, err := s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: d.ID, AccountID: alice.ID}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTLSCertificate(ctx, alice.ID, cert.ID); err != nil {
		t.Errorf("DeleteTLSCertificate(detached) = %v, want nil", err)
	}
	// Deleting the domain frees its certificate too.
	if _, err := s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: d.ID, AccountID: alice.ID, CertificateID: ""}); err != nil {
		t.Fatal(err)
	}
	c2, err := s.CreateTLSCertificate(ctx, testCert(alice.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: d.ID, AccountID: alice.ID, CertificateID: c2.ID}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, "DeleteTLSCertificate(attached again)", s.DeleteTLSCertificate(ctx, alice.ID, c2.ID), store.ErrInUse)
	if err := s.DeleteReservedDomain(ctx, alice.ID, d.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteTLSCertificate(ctx, alice.ID, c2.ID); err != nil {
		t.Errorf("DeleteTLSCertificate(domain deleted) = %v, want nil", err)
	}
}

// Reserved addrs.

func testReservedAddrs(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	a, err := s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: alice.ID, Addr: "TCP.Example.com:020001", Description: "db", Metadata: "m"})
	if err != nil {
		t.Fatalf("CreateReservedAddr = %v", err)
	}
	checkNew(t, "reserved addr", a.ID, store.PrefixReservedAddr, a.CreatedAt)
	want := store.ReservedAddr{ID: a.ID, AccountID: alice.ID, Addr: "tcp.example.com:20001", Description: "db", Metadata: "m", CreatedAt: a.CreatedAt}
	wantEqual(t, "CreateReservedAddr", a, want)
	got, err := s.GetReservedAddr(ctx, alice.ID, a.ID)
	if err != nil {
		t.Fatalf("GetReservedAddr = %v", err)
	}
	wantEqual(t, "GetReservedAddr", got, want)
	v6, err := s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: alice.ID, Addr: "[::1]:20002"})
	if err != nil {
		t.Fatalf("CreateReservedAddr(IPv6) = %v", err)
	}
	list, next, err := s.ListReservedAddrs(ctx, alice.ID, store.Page{})
	if err != nil || next != "" {
		t.Fatalf("ListReservedAddrs = %v, next %q", err, next)
	}
	wantEqual(t, "ListReservedAddrs", list, []store.ReservedAddr{v6, want})
	all, err := s.AllReservedAddrs(ctx)
	if err != nil {
		t.Fatalf("AllReservedAddrs = %v", err)
	}
	wantEqual(t, "AllReservedAddrs", all, []store.ReservedAddr{want, v6})
	for _, addr := range []string{"tcp.example.com:20001", "TCP.EXAMPLE.COM:20001"} {
		got, err := s.AddrByAddr(ctx, addr)
		if err != nil {
			t.Fatalf("AddrByAddr(%q) = %v", addr, err)
		}
		wantEqual(t, fmt.Sprintf("AddrByAddr(%q)", addr), got, want)
	}
	for _, addr := range []string{"tcp.example.com:20003", "nonsense", ""} {
		_, err := s.AddrByAddr(ctx, addr)
		wantErr(t, fmt.Sprintf("AddrByAddr(%q)", addr), err, store.ErrNotFound)
	}
	upd, err := s.UpdateReservedAddr(ctx, alice.ID, a.ID, "postgres", "")
	if err != nil {
		t.Fatalf("UpdateReservedAddr = %v", err)
	}
	want.Description, want.Metadata = "postgres", ""
	wantEqual(t, "UpdateReservedAddr", upd, want)
	if err := s.DeleteReservedAddr(ctx, alice.ID, a.ID); err != nil {
		t.Fatalf("DeleteReservedAddr = %v", err)
	}
	_, err = s.GetReservedAddr(ctx, alice.ID, a.ID)
	wantErr(t, "GetReservedAddr after delete", err, store.ErrNotFound)
	_, err = s.AddrByAddr(ctx, "tcp.example.com:20001")
	wantErr(t, "AddrByAddr after delete", err, store.ErrNotFound)
	wantErr(t, "DeleteReservedAddr again", s.DeleteReservedAddr(ctx, alice.ID, a.ID), store.ErrNotFound)
	_, err = s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: "acct_nope", Addr: "tcp.example.com:20009"})
	wantErr(t, "CreateReservedAddr(unknown account)", err, store.ErrNotFound)
}

// Uniqueness.

func testConflicts(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	_, err := s.CreateAccount(ctx, "bob")
	wantErr(t, "CreateAccount(taken)", err, store.ErrConflict)

	if _, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "app.example.com"}); err != nil {
		t.Fatal(err)
	}
	for _, acct := range []string{alice.ID, bob.ID} {
		for _, name := range []string{"app.example.com", "APP.Example.com", "app.example.com."} {
			_, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: acct, Domain: name})
			wantErr(t, fmt.Sprintf("CreateReservedDomain(%q) by %s", name, acct), err, store.ErrConflict)
		}
	}
	if _, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "*.example.com"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: bob.ID, Domain: "*.EXAMPLE.com"})
	wantErr(t, "CreateReservedDomain(taken wildcard)", err, store.ErrConflict)

	if _, err := s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: alice.ID, Addr: "tcp.example.com:20001"}); err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{"tcp.example.com:20001", "TCP.example.com:20001", "tcp.example.com:020001"} {
		_, err := s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: bob.ID, Addr: addr})
		wantErr(t, fmt.Sprintf("CreateReservedAddr(%q)", addr), err, store.ErrConflict)
	}
	// The refused creates left nothing behind.
	for _, acct := range []store.Account{alice, bob} {
		ds, _, _ := s.ListReservedDomains(ctx, acct.ID, store.Page{})
		as, _, _ := s.ListReservedAddrs(ctx, acct.ID, store.Page{})
		want := map[string]int{"alice": 2, "bob": 0}[acct.Name]
		if len(ds) != want || len(as) != want/2 {
			t.Errorf("%s holds %d domains and %d addrs, want %d and %d", acct.Name, len(ds), len(as), want, want/2)
		}
	}
}

// testConstraintErrors checks the driver's own constraint errors are recognised, should
// a check before a statement ever miss (another relay writing to PostgreSQL meanwhile).
func testConstraintErrors(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	cert, err := s.CreateTLSCertificate(ctx, testCert(alice.ID))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "a.example.com", CertificateID: cert.ID}); err != nil {
		t.Fatal(err)
	}
	db := store.RawDB(s)
	_, err = db.ExecContext(ctx, "DELETE FROM tls_certificates WHERE id = '"+cert.ID+"'")
	if !store.IsForeignKeyViolation(err) {
		t.Errorf("raw delete of an attached certificate = %v, want a foreign key violation", err)
	}
	_, err = db.ExecContext(ctx, "INSERT INTO accounts (id, name, created_at) VALUES ('acct_x', 'alice', 'now')")
	if !store.IsUniqueViolation(err) {
		t.Errorf("raw insert of a taken account name = %v, want a unique violation", err)
	}
	if store.IsUniqueViolation(nil) || store.IsForeignKeyViolation(errors.New("x")) {
		t.Error("nil or a plain error taken for a constraint violation")
	}
}

// Isolation between accounts, for every kind of object.

// kind adapts one kind of per-account object to the isolation and pagination tests.
type kind struct {
	name   string
	create func(t *testing.T, s *store.Store, account string, n int) string
	get    func(ctx context.Context, s *store.Store, account, id string) (desc string, err error)
	update func(ctx context.Context, s *store.Store, account, id, desc string) error
	del    func(s *store.Store, ctx context.Context, account, id string) error
	list   func(ctx context.Context, s *store.Store, account string, p store.Page) ([]string, string, error)
}

// must(f())(t) is f's value, or t.Fatal with f's error.
func must[T any](v T, err error) func(*testing.T) T {
	return func(t *testing.T) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func ids[T any](items []T, next string, err error, id func(T) string) ([]string, string, error) {
	out := make([]string, len(items))
	for i, v := range items {
		out[i] = id(v)
	}
	return out, next, err
}

func secretKind(name string, ops secretOps) kind {
	return kind{
		name: name,
		create: func(t *testing.T, s *store.Store, account string, n int) string {
			return must(ops.create(s, t.Context(), account, fmt.Sprint(n), ""))(t).ID
		},
		get: func(ctx context.Context, s *store.Store, account, id string) (string, error) {
			c, err := ops.get(s, ctx, account, id)
			return c.Description, err
		},
		update: func(ctx context.Context, s *store.Store, account, id, desc string) error {
			_, err := ops.update(s, ctx, account, id, desc, "")
			return err
		},
		del: ops.del,
		list: func(ctx context.Context, s *store.Store, account string, p store.Page) ([]string, string, error) {
			items, next, err := ops.list(s, ctx, account, p)
			return ids(items, next, err, func(c store.Credential) string { return c.ID })
		},
	}
}

var kinds = []kind{
	secretKind("credential", credentialOps),
	secretKind("API key", apiKeyOps),
	{
		name: "TLS certificate",
		create: func(t *testing.T, s *store.Store, account string, n int) string {
			c := testCert(account)
			c.Description = fmt.Sprint(n)
			return must(s.CreateTLSCertificate(t.Context(), c))(t).ID
		},
		get: func(ctx context.Context, s *store.Store, account, id string) (string, error) {
			c, err := s.GetTLSCertificate(ctx, account, id)
			return c.Description, err
		},
		update: func(ctx context.Context, s *store.Store, account, id, desc string) error {
			_, err := s.UpdateTLSCertificate(ctx, account, id, desc, "")
			return err
		},
		del: (*store.Store).DeleteTLSCertificate,
		list: func(ctx context.Context, s *store.Store, account string, p store.Page) ([]string, string, error) {
			items, next, err := s.ListTLSCertificates(ctx, account, p)
			return ids(items, next, err, func(c store.TLSCertificate) string { return c.ID })
		},
	},
	{
		name: "certificate authority",
		create: func(t *testing.T, s *store.Store, account string, n int) string {
			return must(s.CreateCertificateAuthority(t.Context(), store.CertificateAuthority{AccountID: account, Description: fmt.Sprint(n), CAPEM: "pem"}))(t).ID
		},
		get: func(ctx context.Context, s *store.Store, account, id string) (string, error) {
			c, err := s.GetCertificateAuthority(ctx, account, id)
			return c.Description, err
		},
		update: func(ctx context.Context, s *store.Store, account, id, desc string) error {
			_, err := s.UpdateCertificateAuthority(ctx, account, id, desc, "")
			return err
		},
		del: (*store.Store).DeleteCertificateAuthority,
		list: func(ctx context.Context, s *store.Store, account string, p store.Page) ([]string, string, error) {
			items, next, err := s.ListCertificateAuthorities(ctx, account, p)
			return ids(items, next, err, func(c store.CertificateAuthority) string { return c.ID })
		},
	},
	{
		name: "reserved domain",
		create: func(t *testing.T, s *store.Store, account string, n int) string {
			return must(s.CreateReservedDomain(t.Context(), store.ReservedDomain{AccountID: account, Domain: fmt.Sprintf("d%d.example.com", n), Description: fmt.Sprint(n)}))(t).ID
		},
		get: func(ctx context.Context, s *store.Store, account, id string) (string, error) {
			d, err := s.GetReservedDomain(ctx, account, id)
			return d.Description, err
		},
		update: func(ctx context.Context, s *store.Store, account, id, desc string) error {
			_, err := s.UpdateReservedDomain(ctx, store.ReservedDomain{ID: id, AccountID: account, Description: desc})
			return err
		},
		del: (*store.Store).DeleteReservedDomain,
		list: func(ctx context.Context, s *store.Store, account string, p store.Page) ([]string, string, error) {
			items, next, err := s.ListReservedDomains(ctx, account, p)
			return ids(items, next, err, func(d store.ReservedDomain) string { return d.ID })
		},
	},
	{
		name: "reserved addr",
		create: func(t *testing.T, s *store.Store, account string, n int) string {
			return must(s.CreateReservedAddr(t.Context(), store.ReservedAddr{AccountID: account, Addr: fmt.Sprintf("tcp.example.com:%d", 20000+n), Description: fmt.Sprint(n)}))(t).ID
		},
		get: func(ctx context.Context, s *store.Store, account, id string) (string, error) {
			a, err := s.GetReservedAddr(ctx, account, id)
			return a.Description, err
		},
		update: func(ctx context.Context, s *store.Store, account, id, desc string) error {
			_, err := s.UpdateReservedAddr(ctx, account, id, desc, "")
			return err
		},
		del: (*store.Store).DeleteReservedAddr,
		list: func(ctx context.Context, s *store.Store, account string, p store.Page) ([]string, string, error) {
			items, next, err := s.ListReservedAddrs(ctx, account, p)
			return ids(items, next, err, func(a store.ReservedAddr) string { return a.ID })
		},
	},
}

func testIsolation(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	for i, k := range kinds {
		t.Run(strings.ReplaceAll(k.name, " ", "_"), func(t *testing.T) {
			id := k.create(t, s, alice.ID, 100+i)
			_, err := k.get(ctx, s, bob.ID, id)
			wantErr(t, "get by another account", err, store.ErrNotFound)
			wantErr(t, "update by another account", k.update(ctx, s, bob.ID, id, "bob was here"), store.ErrNotFound)
			wantErr(t, "delete by another account", k.del(s, ctx, bob.ID, id), store.ErrNotFound)
			list, next, err := k.list(ctx, s, bob.ID, store.Page{})
			if err != nil || len(list) != 0 || next != "" {
				t.Errorf("list by another account = %v, %q, %v; want nothing", list, next, err)
			}
			// Paging from alice's id does not reach alice's rows either.
			list, _, err = k.list(ctx, s, bob.ID, store.Page{BeforeID: "~"})
			if err != nil || len(list) != 0 {
				t.Errorf("list by another account before \"~\" = %v, %v; want nothing", list, err)
			}
			desc, err := k.get(ctx, s, alice.ID, id)
			if err != nil || desc != fmt.Sprint(100+i) {
				t.Errorf("owner's get after the other account's tries = %q, %v; want %q, nil", desc, err, fmt.Sprint(100+i))
			}
			list, _, err = k.list(ctx, s, alice.ID, store.Page{})
			if err != nil || !reflect.DeepEqual(list, []string{id}) {
				t.Errorf("owner's list = %v, %v; want [%s]", list, err, id)
			}
			if err := k.del(s, ctx, alice.ID, id); err != nil {
				t.Errorf("owner's delete = %v, want nil", err)
			}
		})
	}
}

// Pagination: 7 objects in pages of 3 are 3, 3, 1, newest first, for every kind.

func testPagination(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	for i, k := range kinds {
		t.Run(strings.ReplaceAll(k.name, " ", "_"), func(t *testing.T) {
			var created []string
			for j := range 7 {
				created = append(created, k.create(t, s, alice.ID, 10*i+j))
				k.create(t, s, bob.ID, 1000+10*i+j) // interleaved, never listed
			}
			var want []string
			for j := len(created) - 1; j >= 0; j-- {
				want = append(want, created[j])
			}
			var got []string
			var sizes []int
			p := store.Page{Limit: 3}
			for range 10 {
				page, next, err := k.list(ctx, s, alice.ID, p)
				if err != nil {
					t.Fatalf("list(%+v) = %v", p, err)
				}
				got = append(got, page...)
				sizes = append(sizes, len(page))
				if next == "" {
					break
				}
				if next != page[len(page)-1] {
					t.Errorf("list(%+v) next = %q, want the page's last id %q", p, next, page[len(page)-1])
				}
				p.BeforeID = next
			}
			wantEqual(t, "page sizes", sizes, []int{3, 3, 1})
			wantEqual(t, "ids over all pages (newest first)", got, want)
			all, next, err := k.list(ctx, s, alice.ID, store.Page{})
			if err != nil || next != "" {
				t.Fatalf("list(default limit) = %v, next %q", err, next)
			}
			wantEqual(t, "list(default limit)", all, want)
			exact, next, err := k.list(ctx, s, alice.ID, store.Page{Limit: 7})
			if err != nil || next != "" || len(exact) != 7 {
				t.Errorf("list(limit 7 of 7) = %d items, next %q, %v; want 7, \"\"", len(exact), next, err)
			}
			if _, _, err := k.list(ctx, s, alice.ID, store.Page{Limit: -1}); !errors.Is(err, store.ErrInvalid) {
				t.Errorf("list(limit -1) = %v, want ErrInvalid", err)
			}
			big, _, err := k.list(ctx, s, alice.ID, store.Page{Limit: 5000})
			if err != nil || len(big) != 7 {
				t.Errorf("list(limit 5000) = %d items, %v; want 7 (capped at 1000), nil", len(big), err)
			}
		})
	}
}

// Validation of free-text and structured fields.

func testValidation(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	for _, tc := range []struct{ desc, meta string }{
		{strings.Repeat("d", 256), ""},
		{"", strings.Repeat("m", 4097)},
		{"nul\x00byte", ""},
		{"", "bad utf-8 \xff"},
	} {
		_, err := s.CreateCredential(ctx, alice.ID, tc.desc, tc.meta)
		wantErr(t, fmt.Sprintf("CreateCredential(%.20q, %.20q)", tc.desc, tc.meta), err, store.ErrInvalid)
		_, err = s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: alice.ID, Addr: "h:1", Description: tc.desc, Metadata: tc.meta})
		wantErr(t, fmt.Sprintf("CreateReservedAddr(%.20q, %.20q)", tc.desc, tc.meta), err, store.ErrInvalid)
	}
	if _, err := s.CreateCredential(ctx, alice.ID, strings.Repeat("d", 255), strings.Repeat("m", 4096)+""); err != nil {
		t.Errorf("CreateCredential(at the limits) = %v, want nil", err)
	}
	_, err := s.CreateTLSCertificate(ctx, store.TLSCertificate{AccountID: alice.ID, CertificatePEM: "pem", Info: json.RawMessage("{not json")})
	wantErr(t, "CreateTLSCertificate(bad info JSON)", err, store.ErrInvalid)
	_, err = s.CreateTLSCertificate(ctx, store.TLSCertificate{AccountID: alice.ID})
	wantErr(t, "CreateTLSCertificate(no PEM)", err, store.ErrInvalid)
	_, err = s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "not a domain"})
	wantErr(t, "CreateReservedDomain(bad name)", err, store.ErrInvalid)
	_, err = s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: alice.ID, Addr: "no-port"})
	wantErr(t, "CreateReservedAddr(no port)", err, store.ErrInvalid)
}

// Persistence across a restart.

func testReopen(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	bob := newAccount(t, s, "bob")
	cred := must(s.CreateCredential(ctx, alice.ID, "laptop", "m"))(t)
	key := must(s.CreateAPIKey(ctx, bob.ID, "ci", ""))(t)
	cert := must(s.CreateTLSCertificate(ctx, testCert(alice.ID)))(t)
	ca := must(s.CreateCertificateAuthority(ctx, store.CertificateAuthority{AccountID: alice.ID, CAPEM: "pem", Info: json.RawMessage(`{"a":1}`)}))(t)
	dom := must(s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: "a.example.com", CertificateID: cert.ID, CertPolicy: &store.CertPolicy{Authority: "letsencrypt"}}))(t)
	renews := time.Date(2027, 1, 1, 0, 0, 0, 1, time.UTC)
	if err := s.SetCertStatus(ctx, dom.ID, &store.CertStatus{RenewsAt: &renews}); err != nil {
		t.Fatal(err)
	}
	dom.CertStatus = &store.CertStatus{RenewsAt: &renews}
	addr := must(s.CreateReservedAddr(ctx, store.ReservedAddr{AccountID: bob.ID, Addr: "tcp.example.com:20001"}))(t)

	s2, err := store.Reopen(ctx, s)
	if err != nil {
		t.Fatalf("reopen = %v, want nil", err)
	}
	t.Cleanup(func() { s2.Close() })
	accounts := must(s2.ListAccounts(ctx))(t)
	wantEqual(t, "accounts after reopen", accounts, []store.Account{alice, bob})
	token := cred.Token
	cred.Token, key.Token = "", ""
	wantEqual(t, "credential after reopen", must(s2.VerifyCredential(ctx, token))(t), cred)
	wantEqual(t, "credential by id after reopen", must(s2.GetCredential(ctx, alice.ID, cred.ID))(t), cred)
	wantEqual(t, "API key after reopen", must(s2.GetAPIKey(ctx, bob.ID, key.ID))(t), key)
	wantEqual(t, "TLS certificate after reopen", must(s2.GetTLSCertificate(ctx, alice.ID, cert.ID))(t), cert)
	wantEqual(t, "certificate authority after reopen", must(s2.GetCertificateAuthority(ctx, alice.ID, ca.ID))(t), ca)
	wantEqual(t, "reserved domain after reopen", must(s2.DomainByName(ctx, "a.example.com"))(t), dom)
	wantEqual(t, "all reserved domains after reopen", must(s2.AllReservedDomains(ctx))(t), []store.ReservedDomain{dom})
	wantEqual(t, "reserved addr after reopen", must(s2.AddrByAddr(ctx, "tcp.example.com:20001"))(t), addr)
	wantEqual(t, "all reserved addrs after reopen", must(s2.AllReservedAddrs(ctx))(t), []store.ReservedAddr{addr})
	// Still enforced after the restart.
	wantErr(t, "DeleteTLSCertificate(attached) after reopen", s2.DeleteTLSCertificate(ctx, alice.ID, cert.ID), store.ErrInUse)
	_, err = s2.CreateAccount(ctx, "alice")
	wantErr(t, "CreateAccount(taken) after reopen", err, store.ErrConflict)
	// New ids still sort after the old ones.
	newer := must(s2.CreateCredential(ctx, alice.ID, "", ""))(t)
	if newer.ID <= cred.ID {
		t.Errorf("id after reopen %s <= id before %s, want ids to sort by creation", newer.ID, cred.ID)
	}
}

// Many writers at once: every write lands (SQLite queues them on its one writer).

func testConcurrentWrites(t *testing.T, open func(*testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	alice := newAccount(t, s, "alice")
	const workers, each = 4, 10
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				c, err := s.CreateCredential(ctx, alice.ID, fmt.Sprintf("w%d-%d", w, i), "")
				if err != nil {
					t.Errorf("CreateCredential = %v", err)
					return
				}
				if _, err := s.VerifyCredential(ctx, c.Token); err != nil {
					t.Errorf("VerifyCredential = %v", err)
				}
				if _, err := s.CreateReservedDomain(ctx, store.ReservedDomain{AccountID: alice.ID, Domain: fmt.Sprintf("w%d-%d.example.com", w, i)}); err != nil {
					t.Errorf("CreateReservedDomain = %v", err)
				}
				if _, _, err := s.ListCredentials(ctx, alice.ID, store.Page{Limit: 5}); err != nil {
					t.Errorf("ListCredentials = %v", err)
				}
			}
		})
	}
	wg.Wait()
	list, _, err := s.ListCredentials(ctx, alice.ID, store.Page{Limit: store.MaxPageLimit})
	if err != nil || len(list) != workers*each {
		t.Errorf("ListCredentials after concurrent creates = %d items, %v; want %d", len(list), err, workers*each)
	}
	seen := map[string]bool{}
	for _, c := range list {
		if seen[c.ID] {
			t.Errorf("id %s twice", c.ID)
		}
		seen[c.ID] = true
	}
}

func testObjects(t *testing.T, open func(t *testing.T) *store.Store) {
	s := open(t)
	ctx := t.Context()
	a, b := newAccount(t, s, "obj-a"), newAccount(t, s, "obj-b")
	var ids []string
	for i := range 4 {
		o, err := s.CreateObject(ctx, store.Object{AccountID: a.ID, Kind: "edges/https", Doc: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}, "edghts")
		if err != nil {
			t.Fatalf("CreateObject = %v", err)
		}
		ids = append(ids, o.ID)
	}
	if _, err := s.CreateObject(ctx, store.Object{AccountID: a.ID, Kind: "backends/weighted", Doc: json.RawMessage(`{}`)}, "bkdwt"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateObject(ctx, store.Object{AccountID: a.ID, Kind: "x", Doc: json.RawMessage(`{bad`)}, "x"); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("CreateObject(bad JSON) = %v, want ErrInvalid", err)
	}
	page1, next, err := s.ListObjects(ctx, a.ID, "edges/https", store.Page{Limit: 3})
	if err != nil || len(page1) != 3 || page1[0].ID != ids[3] || next == "" {
		t.Fatalf("ListObjects page 1 = %d items, next %q, %v; want 3 newest first and a next", len(page1), next, err)
	}
	page2, next, _ := s.ListObjects(ctx, a.ID, "edges/https", store.Page{Limit: 3, BeforeID: next})
	if len(page2) != 1 || next != "" {
		t.Errorf("ListObjects page 2 = %d items, next %q; want 1, \"\"", len(page2), next)
	}
	if l, _, _ := s.ListObjects(ctx, b.ID, "edges/https", store.Page{}); len(l) != 0 {
		t.Errorf("account B lists %d of A's objects", len(l))
	}
	if _, err := s.GetObject(ctx, b.ID, "edges/https", ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("B GetObject(A's) = %v, want ErrNotFound", err)
	}
	if _, err := s.GetObject(ctx, a.ID, "backends/weighted", ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetObject of the wrong kind = %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateObject(ctx, b.ID, "edges/https", ids[0], json.RawMessage(`{}`)); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("B UpdateObject(A's) = %v, want ErrNotFound", err)
	}
	o, err := s.UpdateObject(ctx, a.ID, "edges/https", ids[0], json.RawMessage(`{"n":"changed"}`))
	if err != nil || string(o.Doc) != `{"n":"changed"}` {
		t.Errorf("UpdateObject = %s, %v", o.Doc, err)
	}
	if err := s.DeleteObject(ctx, b.ID, "edges/https", ids[0]); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("B DeleteObject(A's) = %v, want ErrNotFound", err)
	}
	if err := s.DeleteObject(ctx, a.ID, "edges/https", ids[0]); err != nil {
		t.Errorf("DeleteObject = %v", err)
	}
	all, err := s.AllObjects(ctx)
	if err != nil || len(all) != 4 {
		t.Errorf("AllObjects = %d, %v; want 4", len(all), err)
	}
}
