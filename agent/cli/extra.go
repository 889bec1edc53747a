package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/ferrytunnel/ferry/agent/service"
)

// serviceCommand builds one `ferry service ...` subcommand.
func serviceCommand(env Env, name, usage string, do func(service.Options) error) *cli.Command {
	return &cli.Command{
		Name: name, Usage: usage,
		Flags: append(globalFlags(),
			&cli.BoolFlag{Name: "user", Usage: "a systemd --user unit instead of a system unit"},
			&cli.StringFlag{Name: "name", Usage: "unit `NAME`", Value: service.DefaultName},
		),
		Action: func(c *cli.Context) error {
			bin, err := os.Executable()
			if err != nil {
				return err
			}
			path, _ := configPath(c)
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			return do(service.Options{Name: c.String("name"), Binary: bin, ConfigPath: path, User: c.Bool("user")})
		},
	}
}

// editFile opens path in $VISUAL, $EDITOR or vi, creating it (0600) if needed.
func editFile(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return err
		}
		if err := os.WriteFile(path, []byte("version = \"1\"\n"), 0o600); err != nil {
			return err
		}
	}
	editor := os.Getenv("VISUAL")
	if editor == "" {
		editor = os.Getenv("EDITOR")
	}
	if editor == "" {
		editor = "vi"
	}
	args := strings.Fields(editor)
	cmd := exec.Command(args[0], append(args[1:], path)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("editor %q: %w (set $EDITOR)", editor, err)
	}
	return nil
}

// completionFlag, last on the command line, asks for the words that may complete the one
// before it (the shell scripts below pass the words typed so far, the current one last).
const completionFlag = "--generate-bash-completion"

// complete prints the completions of the last of words (the one being typed; "" for a
// new word): the flags of the command words name when it starts with "-", else the
// commands (or subcommands) that may come next. Positional arguments get none, so the
// shell falls back to file names. It never runs a command.
func complete(app *cli.App, words []string, w io.Writer) {
	cur := ""
	if len(words) > 0 {
		cur, words = words[len(words)-1], words[:len(words)-1]
	}
	cmds, flags := app.Commands, app.Flags
	var cmd *cli.Command
	positional := false
	for i := 0; i < len(words); i++ {
		a := words[i]
		if a == "--" {
			return // only positional arguments after it
		}
		if strings.HasPrefix(a, "-") {
			i += flagArity(flags, a) - 1
			continue
		}
		if c := findCommand(cmds, a); c != nil && !positional {
			cmd, cmds, flags = c, c.Subcommands, c.Flags
			continue
		}
		positional = true
	}
	if strings.HasPrefix(cur, "-") {
		for _, f := range flags {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			for _, name := range f.Names() {
				opt := "--" + name
				if len(name) == 1 {
					opt = "-" + name
				}
				if strings.HasPrefix(opt, cur) {
					fmt.Fprintln(w, opt)
				}
			}
		}
		return
	}
	if positional || (cmd != nil && len(cmds) == 0) {
		return
	}
	for _, c := range cmds {
		if c.Hidden || !strings.HasPrefix(c.Name, cur) {
			continue
		}
		fmt.Fprintln(w, c.Name)
	}
}

// completionScript returns the shell script that completes ferry's commands and flags
// with complete.
func completionScript(app *cli.App, shell string) (string, error) {
	switch shell {
	case "bash":
		return `# ferry bash completion: source <(ferry completion bash)
_ferry_complete() {
  local cur opts
  cur="${COMP_WORDS[COMP_CWORD]}"
  opts=$("${COMP_WORDS[0]}" "${COMP_WORDS[@]:1:$COMP_CWORD}" --generate-bash-completion 2>/dev/null)
  COMPREPLY=($(compgen -W "${opts}" -- "${cur}"))
}
complete -o default -F _ferry_complete ferry
`, nil
	case "zsh":
		return `#compdef ferry
# ferry zsh completion: source <(ferry completion zsh)
_ferry() {
  local -a opts
  opts=("${(@f)$(${words[1]} "${(@)words[2,$CURRENT]}" --generate-bash-completion 2>/dev/null)}")
  _describe 'values' opts
}
compdef _ferry ferry
`, nil
	case "fish":
		return app.ToFishCompletion()
	}
	return "", fmt.Errorf("completion %q: want bash, zsh or fish", shell)
}
