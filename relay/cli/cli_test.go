package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
