package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/urfave/cli/v2"
)

// version is set at build time (the Makefile's -X main.version).
var version = "dev"

// urfave/cli's version printer is a package variable; "fwctl dev" reads
// better than its "fwctl version dev".
func init() {
	cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintf(c.App.Writer, "fwctl %s\n", c.App.Version) }
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one fwctl command line (the arguments after the program
// name) and returns the exit status. Tests call it in-process.
func run(args []string, stdout, stderr io.Writer) int {
	return runContext(context.Background(), args, stdout, stderr)
}

// runContext is run with a context whose end stops `logs --follow`, so a
// test can end it as SIGINT would.
func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	args, err := reorderArgs(app, args)
	if err == nil {
		err = app.RunContext(ctx, append([]string{"fwctl"}, args...))
	}
	return exitCode(err, stderr)
}

// stdin is what `check -` reads; tests replace it.
var stdin io.Reader = os.Stdin

// newApp builds the command tree. It is built afresh for every run:
// urfave/cli keeps parse state in its flag values.
func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:     "fwctl",
		HelpName: "fwctl",
		Usage:    "control the pfw personal firewall",
		Description: "fwctl edits the firewall's rules file (changes are validated, written atomically and\n" +
			"in force in a running pfwd within a second), explains verdicts, and reads the packet log\n" +
			"and the daemon's state. Every command takes --json, and flags may follow the arguments.",
		UsageText: "fwctl [--config FILE] [--db FILE] [--socket FILE] [--json] COMMAND [ARGS...] [FLAGS...]",
		Commands: []*cli.Command{
			listCommand(),
			addCommand(),
			removeCommand(),
			toggleCommand(),
			listEditCommand(blacklist),
			listEditCommand(whitelist),
			checkCommand(),
			explainCommand(),
			logsCommand(),
			statsCommand(),
			threatsCommand(),
			statusCommand(),
		},
		Flags:        globalFlags(),
		Version:      version,
		Reader:       stdin,
		Writer:       stdout,
		ErrWriter:    stderr,
		OnUsageError: onUsageError,
		// Errors are reported by exitCode; urfave/cli must never os.Exit.
		ExitErrHandler: func(*cli.Context, error) {},
		Action: func(c *cli.Context) error {
			if c.NArg() == 0 {
				return badUsage(c, "no command given")
			}
			return badUsage(c, "unknown command %q", c.Args().First())
		},
	}
	for _, cmd := range app.Commands {
		prepare(cmd)
	}
	return app
}

// prepare gives every command the global flags (reorderArgs moves them
// behind the command, so the command must know them), the usage-error
// handler, and, for commands without subcommands, no "help" subcommand: a
// rule may well be called "help".
func prepare(cmd *cli.Command) {
	cmd.Flags = append(cmd.Flags, globalFlags()...)
	cmd.OnUsageError = onUsageError
	if len(cmd.Subcommands) == 0 {
		cmd.HideHelpCommand = true
	} else {
		cmd.CustomHelpTemplate = groupHelpTemplate
		if cmd.Action == nil {
			cmd.Action = func(c *cli.Context) error {
				if c.NArg() == 0 {
					return badUsage(c, "%s: missing subcommand", cmd.Name)
				}
				return badUsage(c, "%s: unknown subcommand %q", cmd.Name, c.Args().First())
			}
		}
	}
	for _, sub := range cmd.Subcommands {
		prepare(sub)
	}
}

// groupHelpTemplate lists a group's subcommands. urfave/cli's own
// template lists them by category, which it only fills in once the group
// runs, so `fwctl help blacklist` would show none.
const groupHelpTemplate = `NAME:
   {{.HelpName}} - {{.Usage}}

USAGE:
   {{.UsageText}}

COMMANDS:{{range .VisibleCommands}}
   {{join .Names ", "}}{{"\t"}}{{.Usage}}{{end}}

OPTIONS:{{range .VisibleFlags}}
   {{.}}{{end}}
`

// globalFlags are the contract's paths, defaults shared with pfwd, each
// overridden by a flag or an environment variable.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: rules.DefaultPath, EnvVars: []string{"PFW_CONFIG"}, Usage: "rules `FILE`"},
		&cli.StringFlag{Name: "db", Value: store.DefaultPath, EnvVars: []string{"PFW_DB"}, Usage: "SQLite log `FILE`"},
		&cli.StringFlag{Name: "socket", Value: control.DefaultSocket, EnvVars: []string{"PFW_SOCKET"}, Usage: "pfwd's control socket `FILE`"},
		&cli.BoolFlag{Name: "json", Usage: "print JSON instead of text"},
	}
}

// globals is what every command reads from the global flags.
type globals struct {
	config, db, socket string
	json               bool
	out, errOut        io.Writer
}

func globalsOf(c *cli.Context) *globals {
	return &globals{
		config: c.String("config"),
		db:     c.String("db"),
		socket: c.String("socket"),
		json:   c.Bool("json"),
		out:    c.App.Writer,
		errOut: c.App.ErrWriter,
	}
}
