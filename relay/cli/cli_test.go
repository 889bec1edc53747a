package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/ferrytunnel/ferry/relay/store"
)

// TestAccountCreateFlagAfterName: urfave/cli stops reading flags at the first argument, so
// a flag after NAME is refused with the command that works, and nothing is created.
func TestAccountCreateFlagAfterName(t *testing.T) {
	dir := t.TempDir()
	var out, errOut bytes.Buffer
	code := Main(context.Background(), []string{"ferry-relay", "account", "create", "acme", "--data", dir}, Env{Stdout: &out, Stderr: &errOut})
	if code != 2 {
		t.Fatalf("exit %d, want 2; stderr %q", code, errOut.String())
	}
	if want := "ferry-relay account create --data " + dir + " acme"; !strings.Contains(errOut.String(), want) {
		t.Fatalf("stderr %q, want the fixed command %q", errOut.String(), want)
	}
	out.Reset()
	errOut.Reset()
	if code := Main(context.Background(), []string{"ferry-relay", "account", "create", "--data", dir, "acme"}, Env{Stdout: &out, Stderr: &errOut}); code != 0 {
		t.Fatalf("the fixed command: exit %d, stderr %q", code, errOut.String())
	}
	if !strings.Contains(out.String(), "acme") {
		t.Fatalf("stdout %q, want the new account", out.String())
	}
}

// TestTokenAccountChoice: without --account a token goes to the store's only account (a
// dev relay's "dev"), to "default" in an empty store, and is refused, naming the accounts,
// when there are several and none is "default".
func TestTokenAccountChoice(t *testing.T) {
	dir := t.TempDir()
	relay := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"ferry-relay"}, args...), Env{Stdout: &out, Stderr: &errOut})
		return code, out.String(), errOut.String()
	}
	accountOf := func(token string) string {
		st, err := store.Open(context.Background(), "", dir)
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		cr, err := st.VerifyCredential(context.Background(), strings.TrimSpace(token))
		if err != nil {
			t.Fatal(err)
		}
		a, err := st.GetAccount(context.Background(), cr.AccountID)
		if err != nil {
			t.Fatal(err)
		}
		return a.Name
	}
	if code, _, errOut := relay("account", "create", "--data", dir, "dev"); code != 0 {
		t.Fatalf("account create: %d %s", code, errOut)
	}
	if code, out, errOut := relay("token", "create", "--data", dir); code != 0 || accountOf(out) != "dev" {
		t.Fatalf("token create with one account (dev): %d %q %s, want a token of dev", code, out, errOut)
	}
	relay("account", "create", "--data", dir, "acme")
	if code, _, errOut := relay("token", "create", "--data", dir); code != 2 || !strings.Contains(errOut, "several accounts (") || !strings.Contains(errOut, "--account NAME") {
		t.Fatalf("token create with dev and acme: %d %q, want a usage error naming them", code, errOut)
	}
	if code, out, errOut := relay("token", "create", "--data", dir, "--account", "acme"); code != 0 || accountOf(out) != "acme" {
		t.Fatalf("token create --account acme: %d %q %s", code, out, errOut)
	}
	empty := t.TempDir()
	dir = empty
	if code, out, errOut := relay("token", "create", "--data", empty); code != 0 || accountOf(out) != "default" {
		t.Fatalf("token create in an empty store: %d %q %s, want a token of default", code, out, errOut)
	}
}
