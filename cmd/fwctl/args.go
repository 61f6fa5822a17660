package main

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// flagArity maps every flag name (and alias) defined anywhere in the
// command tree to whether it takes a value. A name has one arity across
// the tree (TestFlagArityIsConsistent), so the reordering need not know
// which command a flag belongs to before it has seen the whole line.
func flagArity(app *cli.App) map[string]bool {
	arity := map[string]bool{"help": false, "h": false}
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			_, isBool := f.(*cli.BoolFlag)
			for _, n := range f.Names() {
				arity[n] = !isBool
			}
		}
		for _, c := range cmds {
			walk(c.Flags, c.Subcommands)
		}
	}
	walk(app.Flags, app.Commands)
	return arity
}

// reorderArgs rewrites a command line so that urfave/cli, which stops
// reading flags at the first positional argument, sees every flag. The
// contract writes flags after positionals (`fwctl add NAME ACTION
// --protocol tcp`) and global flags either before or after the command
// (`fwctl --json list`, `fwctl list --json`), so the line becomes
//
//	COMMAND [SUBCOMMAND] FLAGS... -- POSITIONALS...
//
// with every flag moved behind the deepest command named, in its original
// order. The inserted "--" keeps a positional that looks like a flag (a
// negative rule number) a positional. A "--" given by the user ends the
// flags as usual. Unknown flags are moved too, so the command that
// received them reports them.
func reorderArgs(app *cli.App, args []string) []string {
	arity := flagArity(app)
	var path, flags, positionals []string
	dangling := false // a flag that takes a value ended the line
	subcommands := app.Commands
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positionals = append(positionals, args[i+1:]...)
			i = len(args)
		case a == "--help" || a == "-h":
			// urfave/cli takes the arguments of `add X block --help` for
			// help topics; the help of the command named is what is meant.
			return append(path, "--help")
		case isFlagToken(a):
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if _, _, hasValue := strings.Cut(name, "="); !hasValue && arity[name] {
				if i+1 == len(args) {
					dangling = true
					break
				}
				i++
				flags = append(flags, args[i])
			}
		case len(positionals) == 0 && findCommand(subcommands, a) != nil:
			cmd := findCommand(subcommands, a)
			path = append(path, a)
			subcommands = cmd.Subcommands
		default:
			positionals = append(positionals, a)
		}
	}
	out := make([]string, 0, len(args)+1)
	out = append(out, path...)
	out = append(out, flags...)
	// Behind a value-less flag, the "--" would be taken for its value; the
	// command reports the missing value instead, and the positionals no
	// longer matter.
	if len(positionals) > 0 && !dangling {
		out = append(out, "--")
		out = append(out, positionals...)
	}
	return out
}

// isFlagToken reports whether a starts a flag. "-" alone (stdin, by
// convention) and negative numbers are positionals.
func isFlagToken(a string) bool {
	if len(a) < 2 || a[0] != '-' {
		return false
	}
	rest := strings.TrimLeft(a, "-")
	return rest != "" && (rest[0] < '0' || rest[0] > '9')
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}
