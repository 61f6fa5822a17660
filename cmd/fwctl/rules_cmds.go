package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/pfw/pfw/rules"
	"github.com/urfave/cli/v2"
)

// loadConfig reads the config for a command that only looks at it. With
// no file there it shows the embedded default, which is what pfwd writes
// and enforces on its first start, and says so on stderr; unless a pfwd
// runs on the missing file, which then enforces something else
// (configMissing).
func loadConfig(g *globals) (*rules.Config, error) {
	cfg, err := rules.Load(g.config)
	if errors.Is(err, fs.ErrNotExist) {
		if st, onConfig, qerr := pfwdOnConfig(g); onConfig {
			return nil, configMissing(g, st)
		} else if noAnswer(qerr) {
			return nil, configMissingUnanswered(g)
		}
		fmt.Fprintf(g.errOut, "fwctl: no config file at %s yet; using the default config (pfwd writes it on first start)\n", g.config)
		return rules.Default(), nil
	}
	return cfg, err
}

// editConfig applies edit through rules.Update: locked, validated, written
// atomically, and not written at all when anything fails. A missing file
// is created from the embedded default with the edit applied, as if pfwd
// had started first, so rules can be set up before the daemon ever ran; a
// failed edit creates nothing. A missing file a pfwd still runs on is
// refused instead (configMissing). When a pfwd runs on this file,
// editConfig waits for it to apply the change (3 s, up to 2 minutes while
// pfwd reports a reload in progress) and warns when it did not.
func editConfig(g *globals, edit func(*rules.Config) error) (*rules.Config, error) {
	_, statErr := os.Stat(g.config)
	w := watchPfwd(g)
	if errors.Is(statErr, fs.ErrNotExist) && w.running {
		return nil, configMissing(g, w.status)
	}
	if errors.Is(statErr, fs.ErrNotExist) && w.silent {
		return nil, configMissingUnanswered(g)
	}
	cfg, err := rules.Update(g.config, edit)
	if err != nil {
		return nil, err
	}
	if errors.Is(statErr, fs.ErrNotExist) {
		fmt.Fprintf(g.errOut, "fwctl: created %s from the default config\n", g.config)
	}
	w.confirm(cfg)
	return cfg, nil
}

// numberedRule is a rule as `list --json` prints it: the config keys plus
// the 1-based number remove and toggle take.
type numberedRule struct {
	Number int `json:"number"`
	rules.FileRule
}

func numbered(cfg *rules.Config, i int) numberedRule {
	return numberedRule{Number: i + 1, FileRule: cfg.Rules[i].ToFile()}
}

func listCommand() *cli.Command {
	return &cli.Command{
		Name:      "list",
		Usage:     "show the rules, numbered as remove and toggle take them",
		UsageText: "fwctl list [--json]",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0, ""); err != nil {
				return err
			}
			g := globalsOf(c)
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			if g.json {
				out := make([]numberedRule, len(cfg.Rules))
				for i := range cfg.Rules {
					out[i] = numbered(cfg, i)
				}
				return writeJSON(g.out, out)
			}
			if len(cfg.Rules) == 0 {
				fmt.Fprintln(g.out, "No rules: every packet the lists do not decide gets the default policy.")
			} else {
				t := newTable(g.out, "#", "STATUS", "NAME", "ACTION", "PROTOCOL", "PORTS", "SOURCES", "DIRECTION")
				for i := range cfg.Rules {
					r := &cfg.Rules[i]
					t.add(strconv.Itoa(i+1), enabledWord(r.Enabled), r.Name, r.Action.String(), r.Protocol.String(),
						formatPorts(r.Ports), orAny(rules.FormatPrefixes(r.SrcIPs)), r.Direction.String())
				}
				if err := t.flush(); err != nil {
					return err
				}
			}
			_, err = fmt.Fprintf(g.out, "Default policy: %s inbound, %s outbound.\n", cfg.DefaultPolicy, cfg.OutboundPolicy())
			return err
		},
	}
}

func enabledWord(on bool) string {
	if on {
		return "enabled"
	}
	return "disabled"
}

func formatPorts(ps []rules.PortRange) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return orAny(s)
}

// describeRule is the one-line account of a rule that edits print.
func describeRule(r *rules.Rule) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%q (%s %s, %s", r.Name, r.Action, r.Direction, r.Protocol)
	if len(r.Ports) == 1 && r.Ports[0].First == r.Ports[0].Last {
		fmt.Fprintf(&b, " port %s", formatPorts(r.Ports))
	} else if len(r.Ports) > 0 {
		fmt.Fprintf(&b, " ports %s", formatPorts(r.Ports))
	}
	remote := "from"
	if r.Direction == rules.DirOut {
		remote = "to"
	}
	fmt.Fprintf(&b, ", %s %s", remote, orAny(rules.FormatPrefixes(r.SrcIPs)))
	if !r.Enabled {
		b.WriteString(", disabled")
	}
	b.WriteString(")")
	return b.String()
}

func addCommand() *cli.Command {
	return &cli.Command{
		Name:      "add",
		Usage:     "add a rule (appended unless --position)",
		ArgsUsage: "NAME ACTION",
		UsageText: "fwctl add NAME allow|block [--protocol tcp|udp|icmp|icmpv6|any] [--ports 23,445,8000-8100] [--src-ips A,B] [--direction in|out] [--position N]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "protocol", Value: "any", Usage: "protocol `P` (tcp, udp, icmp, icmpv6 or any)"},
			&cli.StringFlag{Name: "ports", Usage: "destination `PORTS`, comma-separated numbers or lo-hi ranges (default: any)"},
			&cli.StringFlag{Name: "src-ips", Usage: "remote `ADDRESSES`, comma-separated IPs or CIDRs, v4 or v6 (default: any)"},
			&cli.StringFlag{Name: "direction", Value: "in", Usage: "direction `DIR` (in, or out: then --src-ips are destinations)"},
			&cli.StringFlag{Name: "position", Usage: "insert as rule `N` (1 = first) instead of appending"},
		},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 2, 2, "NAME and ACTION"); err != nil {
				return err
			}
			g := globalsOf(c)
			r, err := ruleFromFlags(c)
			if err != nil {
				return err
			}
			position := 0 // 0: append
			if c.IsSet("position") {
				if position, err = strconv.Atoi(strings.TrimSpace(c.String("position"))); err != nil {
					return badUsage(c, "add: --position %q is not a number", c.String("position"))
				}
			}
			var at int
			_, err = editConfig(g, func(cfg *rules.Config) error {
				if i := cfg.RuleIndex(r.Name); i >= 0 {
					return fmt.Errorf("a rule named %q already exists (rule %d)", r.Name, i+1)
				}
				at = len(cfg.Rules)
				if c.IsSet("position") {
					if position < 1 || position > len(cfg.Rules)+1 {
						return fmt.Errorf("--position %d: want a number from 1 to %d", position, len(cfg.Rules)+1)
					}
					at = position - 1
				}
				cfg.Rules = append(cfg.Rules[:at], append([]rules.Rule{r}, cfg.Rules[at:]...)...)
				return nil
			})
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.out, numberedRule{Number: at + 1, FileRule: r.ToFile()})
			}
			_, err = fmt.Fprintf(g.out, "Added rule %d: %s\n", at+1, describeRule(&r))
			return err
		},
	}
}

// ruleFromFlags builds the rule `add` describes, checking each part so the
// error names the argument or flag at fault.
func ruleFromFlags(c *cli.Context) (rules.Rule, error) {
	name, actionArg := strings.TrimSpace(c.Args().Get(0)), c.Args().Get(1) // "  SSH " is a slip of the shell, not a name
	r := rules.Rule{Name: name, Enabled: true}
	if err := rules.CheckRuleName(name); err != nil {
		return r, fmt.Errorf("NAME: %w", err)
	}
	var err error
	// A word outside the choices the synopsis lists is bad usage (exit 2).
	if r.Action, err = rules.ParseAction(strings.ToLower(actionArg)); err != nil {
		return r, badUsage(c, "add: ACTION: %v", err)
	}
	if r.Protocol, err = rules.ParseProtocol(strings.ToLower(c.String("protocol"))); err != nil {
		return r, badUsage(c, "add: --protocol: %v", err)
	}
	if r.Direction, err = rules.ParseDirection(strings.ToLower(c.String("direction"))); err != nil {
		return r, badUsage(c, "add: --direction: %v", err)
	}
	ports, err := splitList(c, "ports")
	if err != nil {
		return r, err
	}
	for _, p := range ports {
		pr, err := rules.ParsePortRange(p)
		if err != nil {
			return r, fmt.Errorf("--ports: %w", err)
		}
		r.Ports = append(r.Ports, pr)
	}
	if len(r.Ports) > 0 && !r.Protocol.HasPorts() {
		return r, fmt.Errorf("--ports: %s has no ports (leave --ports out, or use tcp, udp or any)", r.Protocol)
	}
	srcs, err := splitList(c, "src-ips")
	if err != nil {
		return r, err
	}
	if r.SrcIPs, err = parsePrefixes("--src-ips", srcs); err != nil {
		return r, err
	}
	if fam := r.Protocol.Family(); fam != 0 && len(r.SrcIPs) > 0 &&
		!slices.ContainsFunc(r.SrcIPs, func(p netip.Prefix) bool { return familyOf(p) == fam }) {
		return r, fmt.Errorf("--src-ips: %s is IPv%d only, and every address given is IPv%d: the rule could never match", r.Protocol, fam, 10-fam)
	}
	noteHostBits(globalsOf(c).errOut, srcs, r.SrcIPs)
	return r, nil
}

func familyOf(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 4
	}
	return 6
}

// noteHostBits says which of the typed prefixes had host bits set, which
// parsing cleared (192.0.2.9/24 is the network 192.0.2.0/24), in case the
// address was meant (192.0.2.9, or /32).
func noteHostBits(w io.Writer, typed []string, parsed []netip.Prefix) {
	for i, s := range typed {
		if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && p.Addr().Unmap() != parsed[i].Addr() {
			fmt.Fprintf(w, "fwctl: note: %s has host bits set: it means the network %s\n", s, rules.FormatPrefix(parsed[i]))
		}
	}
}

// splitList reads a comma-separated list flag. Left out, or given as
// "any" (the way `list` prints it), it is the empty list: any. Given but
// empty, or with an empty item ("22,,23", a trailing comma), it is an
// error: a script whose variable came out empty must not open a rule to
// every port or address.
func splitList(c *cli.Context, flag string) ([]string, error) {
	s := strings.TrimSpace(c.String(flag))
	if !c.IsSet(flag) || strings.EqualFold(s, "any") {
		return nil, nil
	}
	if s == "" {
		return nil, fmt.Errorf("--%s: the list is empty (leave --%s out, or say any)", flag, flag)
	}
	items := strings.Split(s, ",")
	for i, f := range items {
		if items[i] = strings.TrimSpace(f); items[i] == "" {
			return nil, fmt.Errorf("--%s %q: item %d is empty", flag, s, i+1)
		}
	}
	return items, nil
}

// parsePrefixes reads IPs or CIDRs, all or none: the first bad one is the
// error, named with where it came from.
func parsePrefixes(where string, items []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range items {
		p, err := rules.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ruleIndex checks the 1-based number n `list` shows against cfg, inside
// the edit so that it is checked under the lock, and returns its index.
func ruleIndex(n int, cfg *rules.Config) (int, error) {
	if n < 1 || n > len(cfg.Rules) {
		switch len(cfg.Rules) {
		case 0:
			return 0, fmt.Errorf("no rule %d (there are no rules)", n)
		case 1:
			return 0, fmt.Errorf("no rule %d (there is 1 rule)", n)
		}
		return 0, fmt.Errorf("no rule %d (there are %d rules)", n, len(cfg.Rules))
	}
	return n - 1, nil
}

// numberedEdit is remove and toggle: find rule N under the lock, change
// the config, and say what was done to which rule. edit returns the rule as
// it is after the change (as it was, for remove) and the verb for the
// message.
func numberedEdit(name, usage string, edit func(cfg *rules.Config, i int) (rules.Rule, string)) *cli.Command {
	return &cli.Command{
		Name:      name,
		Usage:     usage,
		ArgsUsage: "N",
		UsageText: "fwctl " + name + " N",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 1, 1, "the rule number N (fwctl list shows them)"); err != nil {
				return err
			}
			n, err := strconv.Atoi(strings.TrimSpace(c.Args().First()))
			if err != nil {
				return badUsage(c, "%s: %q is not a rule number (fwctl list shows them)", name, c.Args().First())
			}
			g := globalsOf(c)
			var (
				i    int
				rule rules.Rule
				done string
			)
			_, err = editConfig(g, func(cfg *rules.Config) error {
				var err error
				if i, err = ruleIndex(n, cfg); err != nil {
					return err
				}
				rule, done = edit(cfg, i)
				return nil
			})
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.out, numberedRule{Number: i + 1, FileRule: rule.ToFile()})
			}
			_, err = fmt.Fprintf(g.out, "%s rule %d: %s\n", done, i+1, describeRule(&rule))
			return err
		},
	}
}

func removeCommand() *cli.Command {
	return numberedEdit("remove", "remove rule N (as numbered by list)", func(cfg *rules.Config, i int) (rules.Rule, string) {
		removed := cfg.Rules[i]
		cfg.Rules = append(cfg.Rules[:i], cfg.Rules[i+1:]...)
		return removed, "Removed"
	})
}

func toggleCommand() *cli.Command {
	return numberedEdit("toggle", "enable rule N if it is disabled, disable it otherwise", func(cfg *rules.Config, i int) (rules.Rule, string) {
		r := &cfg.Rules[i]
		r.Enabled = !r.Enabled
		if r.Enabled {
			return *r, "Enabled"
		}
		return *r, "Disabled"
	})
}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:      "check",
		Usage:     "validate a config file without applying it (default: --config; - reads standard input)",
		ArgsUsage: "[FILE]",
		UsageText: "fwctl check [FILE|-]",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 1, ""); err != nil {
				return err
			}
			g := globalsOf(c)
			path := g.config
			if c.NArg() == 1 {
				path = c.Args().First()
			}
			var cfg *rules.Config
			var err error
			if path == "-" {
				// A script's generated config, checked before it is
				// written anywhere: `gen | fwctl check -`.
				path = "(standard input)"
				cfg, err = checkStdin(c.App.Reader)
			} else {
				cfg, err = rules.Load(path)
			}
			if errors.Is(err, fs.ErrNotExist) && c.NArg() == 0 {
				if st, onConfig, _ := pfwdOnConfig(g); onConfig {
					err = configMissing(g, st)
				}
			}
			if g.json {
				res := checkResult{File: path, Valid: err == nil}
				if err != nil {
					res.Error = oneLine(err.Error())
				} else {
					res.Rules = len(cfg.Rules)
				}
				if jerr := writeJSON(g.out, res); jerr != nil {
					return jerr
				}
			}
			if err != nil {
				return err
			}
			if !g.json {
				_, err = fmt.Fprintf(g.out, "%s: OK (%s)\n", path, summarize(cfg))
			}
			return err
		},
	}
}

// checkStdin parses a config read from r, capped as a file is.
func checkStdin(r io.Reader) (*rules.Config, error) {
	data, err := io.ReadAll(io.LimitReader(r, rules.MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read standard input: %w", err)
	}
	if len(data) > rules.MaxFileSize {
		return nil, fmt.Errorf("standard input: over the %d MiB limit", rules.MaxFileSize>>20)
	}
	cfg, err := rules.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("(standard input): %w", err)
	}
	return cfg, nil
}

type checkResult struct {
	File  string `json:"file"`
	Valid bool   `json:"valid"`
	Error string `json:"error,omitempty"`
	Rules int    `json:"rules"`
}

func summarize(cfg *rules.Config) string {
	return fmt.Sprintf("%s, %d enabled; %s, %s, %s; default policy %s in, %s out",
		plural(len(cfg.Rules), "rule", "rules"), cfg.EnabledRules(),
		plural(len(cfg.BlacklistIPs), "blacklist entry", "blacklist entries"),
		plural(len(cfg.WhitelistIPs), "whitelist entry", "whitelist entries"),
		plural(len(cfg.ThreatFeeds), "threat feed", "threat feeds"),
		cfg.DefaultPolicy, cfg.OutboundPolicy())
}
