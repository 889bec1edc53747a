package cli

import (
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

func TestReorder(t *testing.T) {
	app := newApp(Env{})
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"flags after the upstream", "ferry http 8080 --domain x --authtoken T", "ferry http --domain x --authtoken T 8080"},
		{"flags already first", "ferry http --domain x 8080", "ferry http --domain x 8080"},
		{"flags on both sides", "ferry http --relay r:1 8080 --domain x", "ferry http --relay r:1 --domain x 8080"},
		{"--name=value form", "ferry http 8080 --domain=x", "ferry http --domain=x 8080"},
		{"single dash", "ferry http 8080 -domain x", "ferry http -domain x 8080"},
		{"tls flags", "ferry tls 443 --crt c.pem --key k.pem --terminate-at agent", "ferry tls --crt c.pem --key k.pem --terminate-at agent 443"},
		{"tcp flag", "ferry tcp 22 --remote-addr :10022", "ferry tcp --remote-addr :10022 22"},
		{"-- stops reordering", "ferry http 8080 -- --domain x", "ferry http 8080 -- --domain x"},
		{"flags before --", "ferry http 8080 --domain x -- --authtoken T", "ferry http --domain x 8080 -- --authtoken T"},
		{"global flags before the command stay", "ferry --relay r:1 --authtoken T http 8080 --domain x", "ferry --relay r:1 --authtoken T http --domain x 8080"},
		{"global --name=value before the command", "ferry --relay=r:1 http 8080", "ferry --relay=r:1 http 8080"},
		{"nested command", "ferry config add-authtoken TOK --config F", "ferry config add-authtoken --config F TOK"},
		{"nested command, flag first", "ferry config add-authtoken --config F TOK", "ferry config add-authtoken --config F TOK"},
		{"nested command, no args", "ferry config check --config F", "ferry config check --config F"},
		{"lone dash is an argument", "ferry http - --domain x", "ferry http --domain x -"},
		{"unknown flag takes no value", "ferry http 8080 --nope v", "ferry http --nope 8080 v"},
		{"unknown command is left alone", "ferry nope 8080 --domain x", "ferry nope 8080 --domain x"},
		{"command only", "ferry version", "ferry version"},
		{"program only", "ferry", "ferry"},
		{"help flag", "ferry http 8080 --help", "ferry http --help 8080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Reorder(app, strings.Fields(tt.in))
			if want := strings.Fields(tt.want); !slices.Equal(got, want) {
				t.Errorf("Reorder(%q) = %q, want %q", tt.in, got, want)
			}
		})
	}
}

func TestReorderEmpty(t *testing.T) {
	app := newApp(Env{})
	if got := Reorder(app, nil); len(got) != 0 {
		t.Errorf("Reorder(nil) = %q, want empty", got)
	}
}

func TestReorderDoesNotModifyInput(t *testing.T) {
	app := newApp(Env{})
	in := strings.Fields("ferry http 8080 --domain x")
	orig := slices.Clone(in)
	Reorder(app, in)
	if !slices.Equal(in, orig) {
		t.Errorf("Reorder changed its input to %q, want %q", in, orig)
	}
}

func TestReorderBoolFlag(t *testing.T) {
	// No ferry command has a boolean flag today; this app has one so the arity rule is covered.
	app := &cli.App{
		Name:  "app",
		Flags: []cli.Flag{&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}}, &cli.StringFlag{Name: "relay"}},
		Commands: []*cli.Command{{
			Name:  "run",
			Flags: []cli.Flag{&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}}, &cli.StringFlag{Name: "name", Aliases: []string{"n"}}},
		}},
	}
	tests := []struct {
		in, want string
	}{
		{"app run a --verbose b", "app run --verbose a b"},
		{"app run a -v b", "app run -v a b"},
		{"app run a --verbose=false b", "app run --verbose=false a b"},
		{"app run a --name n1 b", "app run --name n1 a b"},
		{"app run a -n n1 --verbose b", "app run -n n1 --verbose a b"},
		{"app --quiet run a -v", "app --quiet run -v a"},
		{"app -q --relay r run a", "app -q --relay r run a"},
	}
	for _, tt := range tests {
		got := Reorder(app, strings.Fields(tt.in))
		if want := strings.Fields(tt.want); !slices.Equal(got, want) {
			t.Errorf("Reorder(%q) = %q, want %q", tt.in, got, want)
		}
	}
}

func TestFlagArity(t *testing.T) {
	flags := []cli.Flag{
		&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}},
		&cli.StringFlag{Name: "domain", Aliases: []string{"d"}},
		&cli.IntFlag{Name: "count"},
	}
	tests := []struct {
		arg  string
		want int
	}{
		{"--verbose", 1},
		{"-verbose", 1},
		{"-v", 1},
		{"--verbose=true", 1},
		{"--domain", 2},
		{"-d", 2},
		{"--domain=x", 1},
		{"-d=x", 1},
		{"--count", 2},
		{"--unknown", 1},
		{"--", 1},
	}
	for _, tt := range tests {
		if got := flagArity(flags, tt.arg); got != tt.want {
			t.Errorf("flagArity(%q) = %d, want %d", tt.arg, got, tt.want)
		}
	}
}
