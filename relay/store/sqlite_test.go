package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ferrytunnel/ferry/relay/store"
)

// SQLite-only behaviour: files, modes, pragmas, and two processes on one file.

func TestSQLiteFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := store.Open(t.Context(), "", dir)
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	defer s.Close()
	if _, err := s.CreateAccount(t.Context(), "alice"); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, store.DBFile)
	if got := store.FilePath(s); got != path {
		t.Errorf("database file = %s, want %s", got, path)
	}
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{{dir, 0o700}, {path, 0o600}, {path + "-wal", 0o600}, {path + "-shm", 0o600}} {
		st, err := os.Stat(f.path)
		if err != nil {
			t.Errorf("stat %s: %v", f.path, err)
			continue
		}
		if got := st.Mode().Perm(); got != f.mode {
			t.Errorf("%s mode = %v, want %v", f.path, got, f.mode)
		}
	}
	db := store.RawDB(s)
	for pragma, want := range map[string]string{"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "10000"} {
		var got string
		if err := db.QueryRowContext(t.Context(), "PRAGMA "+pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("PRAGMA %s = %s, want %s", pragma, got, want)
		}
	}
}

func TestSQLiteDatabaseFlag(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct{ database, file string }{
		{"sqlite:" + filepath.Join(dir, "a", "one.db"), filepath.Join(dir, "a", "one.db")},
		{"sqlite://" + filepath.Join(dir, "two.db"), filepath.Join(dir, "two.db")},
		{"sqlite:" + filepath.Join(dir, "with space?and#odd%chars.db"), filepath.Join(dir, "with space?and#odd%chars.db")},
	} {
		s, err := store.Open(t.Context(), tc.database, filepath.Join(dir, "unused"))
		if err != nil {
			t.Errorf("Open(%q) = %v, want nil", tc.database, err)
			continue
		}
		if _, err := s.CreateAccount(t.Context(), "alice"); err != nil {
			t.Errorf("CreateAccount in %s = %v", tc.database, err)
		}
		if got := store.FilePath(s); got != tc.file {
			t.Errorf("Open(%q) file = %s, want %s", tc.database, got, tc.file)
		}
		s.Close()
		if _, err := os.Stat(tc.file); err != nil {
			t.Errorf("Open(%q): %v", tc.database, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "unused")); !os.IsNotExist(err) {
		t.Errorf("Open(sqlite:...) made the data dir (stat: %v), want it untouched", err)
	}
}

func TestOpenRejects(t *testing.T) {
	for _, tc := range []struct{ database, dataDir, want string }{
		{"mysql://u:hunter2@db/ferry", "d", "--database"},
		{"ferry.db", "d", "sqlite:/path/to/ferry.db, or postgres://"},
		{"sqlite:", "d", "no file after sqlite:"},
		{"", "", "--data"},
	} {
		s, err := store.Open(t.Context(), tc.database, tc.dataDir)
		if err == nil {
			s.Close()
			t.Errorf("Open(%q, %q) = nil error, want one", tc.database, tc.dataDir)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%q, %q) = %q, want it to mention %q", tc.database, tc.dataDir, err, tc.want)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("Open(%q) = %q, shows the password", tc.database, err)
		}
	}
}

func TestPostgresUnreachable(t *testing.T) {
	// Port 1 on loopback refuses at once.
	dsn := "postgres://ferry:hunter2@127.0.0.1:1/ferry?sslmode=disable&connect_timeout=5"
	s, err := store.Open(t.Context(), dsn, "")
	if err == nil {
		s.Close()
		t.Fatal("Open(unreachable postgres) = nil error, want one")
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("Open(unreachable postgres) = %q, shows the password", err)
	}
	if !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Errorf("Open(unreachable postgres) = %q, want the server named", err)
	}
}

// TestSQLiteTwoStores is the relay and `ferry-relay` admin commands writing one file at
// once from two processes (two Stores stand in for them): busy_timeout queues them.
func TestSQLiteTwoStores(t *testing.T) {
	dir := t.TempDir()
	var stores [2]*store.Store
	for i := range stores {
		s, err := store.Open(t.Context(), "", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		stores[i] = s
	}
	acct, err := stores[0].CreateAccount(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	const each = 15
	tokens := make([][]string, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Go(func() {
			for j := range each {
				c, err := s.CreateCredential(t.Context(), acct.ID, fmt.Sprintf("s%d-%d", i, j), "")
				if err != nil {
					t.Errorf("store %d: CreateCredential = %v", i, err)
					return
				}
				tokens[i] = append(tokens[i], c.Token)
			}
		})
	}
	wg.Wait()
	for i := range stores {
		other := stores[1-i]
		for _, tok := range tokens[i] {
			if _, err := other.VerifyCredential(t.Context(), tok); err != nil {
				t.Errorf("store %d: VerifyCredential(token from store %d) = %v", 1-i, i, err)
			}
		}
	}
}
