package cli

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Reorder moves flags that follow a command's positional arguments in front of them, so
// `ferry http 8080 --domain x` parses like `ferry http --domain x 8080` (Go's flag
// package stops at the first positional argument). Everything after "--" stays as is.
func Reorder(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	out := []string{args[0]}
	rest := args[1:]
	// Global flags before the command.
	i := 0
	for i < len(rest) && strings.HasPrefix(rest[i], "-") && rest[i] != "--" {
		n := flagArity(app.Flags, rest[i])
		out = append(out, rest[i:min(i+n, len(rest))]...)
		i += n
	}
	rest = rest[i:]
	cmds := app.Commands
	// Walk nested commands (e.g. config add-authtoken).
	for len(rest) > 0 {
		cmd := findCommand(cmds, rest[0])
		if cmd == nil {
			return append(out, rest...)
		}
		out = append(out, rest[0])
		rest = rest[1:]
		if len(cmd.Subcommands) > 0 && len(rest) > 0 && findCommand(cmd.Subcommands, rest[0]) != nil {
			cmds = cmd.Subcommands
			continue
		}
		var flags, pos []string
		for j := 0; j < len(rest); j++ {
			a := rest[j]
			if a == "--" {
				pos = append(pos, rest[j:]...)
				break
			}
			if strings.HasPrefix(a, "-") && len(a) > 1 {
				n := flagArity(cmd.Flags, a)
				if j+n > len(rest) {
					// A flag missing its value: keep it last so the parser reports
					// "flag needs an argument" instead of eating a positional argument.
					return append(append(append(out, flags...), pos...), a)
				}
				flags = append(flags, rest[j:j+n]...)
				j += n - 1
				continue
			}
			pos = append(pos, a)
		}
		return append(append(out, flags...), pos...)
	}
	return out
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// flagArity is 1 for a boolean flag or --name=value, 2 for a flag that takes a value.
func flagArity(flags []cli.Flag, arg string) int {
	name := strings.TrimLeft(arg, "-")
	if strings.Contains(name, "=") {
		return 1
	}
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				if _, ok := f.(*cli.BoolFlag); ok {
					return 1
				}
				return 2
			}
		}
	}
	return 1
}
