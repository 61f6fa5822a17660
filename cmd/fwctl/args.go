package main

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"
)

// flagSpec is what reorderArgs knows of a flag name (or alias).
type flagSpec struct {
	name       string // the flag's first name, which its aliases count as
	takesValue bool
	// repeatable flags (urfave/cli's slice flags) collect every value;
	// any other flag given twice keeps only the last.
	repeatable bool
	// list flags take a comma-separated list, which is what a user who
	// repeats one meant.
	list bool
	// global flags (--config, --db, --socket) may be given again, the
	// last one counting, as with any Unix tool: a wrapper or an alias that
	// names a default file can then be overridden on the command line.
	global bool
}

// flagSpecs maps every flag name (and alias) defined anywhere in the
// command tree to its spec. A name has one arity across the tree
// (TestFlagArityIsConsistent), so the reordering need not know which
// command a flag belongs to before it has seen the whole line.
func flagSpecs(app *cli.App) map[string]flagSpec {
	specs := map[string]flagSpec{"help": {name: "help"}, "h": {name: "help"}}
	global := map[string]bool{}
	for _, f := range globalFlags() {
		global[f.Names()[0]] = true
	}
	var walk func(flags []cli.Flag, cmds []*cli.Command)
	walk = func(flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			_, isBool := f.(*cli.BoolFlag)
			spec := flagSpec{name: f.Names()[0], takesValue: !isBool, global: global[f.Names()[0]]}
			if sf, ok := f.(cli.DocGenerationSliceFlag); ok {
				spec.repeatable = sf.IsSliceFlag()
			}
			if df, ok := f.(cli.DocGenerationFlag); ok {
				spec.list = strings.Contains(df.GetUsage(), "comma-separated")
			}
			for _, n := range f.Names() {
				specs[n] = spec
			}
		}
		for _, c := range cmds {
			walk(c.Flags, c.Subcommands)
		}
	}
	walk(app.Flags, app.Commands)
	return specs
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
//
// A command's flag that takes one value given twice is bad usage:
// urfave/cli would keep the last value silently, and `add X block --ports
// 23 --ports 445` would block 445 alone (the global file flags are the
// exception, see flagSpec.global). Seeing the raw line, reorderArgs is the one place
// that can tell, whatever the spelling (--ports=23, -ports 23, an alias).
func reorderArgs(app *cli.App, args []string) ([]string, error) {
	specs := flagSpecs(app)
	var path, flags, positionals []string
	dangling := false // a flag that takes a value ended the line
	given := map[string]bool{}
	var twice *flagSpec // the first flag given twice
	subcommands := app.Commands
	command := app.UsageText
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			positionals = append(positionals, args[i+1:]...)
			i = len(args)
		case a == "--help" || a == "-h":
			// urfave/cli takes the arguments of `add X block --help` for
			// help topics; the help of the command named is what is meant.
			return append(path, "--help"), nil
		case isFlagToken(a):
			flags = append(flags, a)
			name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
			spec, known := specs[name]
			if known && spec.takesValue && !spec.repeatable && !spec.global {
				if given[spec.name] && twice == nil {
					twice = &spec
				}
				given[spec.name] = true
			}
			if !hasValue && spec.takesValue {
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
			command = cmd.UsageText
		default:
			positionals = append(positionals, a)
		}
	}
	if twice != nil {
		hint := "give it once"
		if twice.list {
			hint = fmt.Sprintf("use one --%s with a comma-separated list", twice.name)
		}
		return nil, &usageError{
			command: strings.Join(append([]string{"fwctl"}, path...), " "),
			usage:   command,
			msg:     fmt.Sprintf("--%s given twice (%s)", twice.name, hint),
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
	return out, nil
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
