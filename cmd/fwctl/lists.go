package main

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
	"github.com/urfave/cli/v2"
)

// addressList is one of the config's address lists; blacklist and
// whitelist are the same commands over a different key.
//
// add and remove take time linear in the arguments and the lists, with
// sets built once per command rather than a scan per argument: `xargs
// fwctl blacklist add` hands them thousands of addresses at once, against
// lists of a feed's size.
type addressList struct {
	name    string // the command, "blacklist"
	effect  string // what the list does, for the help text
	entries func(*rules.Config) *[]netip.Prefix
	// shadowedBy returns the entries of a list the pipeline checks first,
	// so adding an address that is there as well deserves a note.
	shadowedBy func(*rules.Config) []netip.Prefix
	// overrides returns the entries of a list this one takes precedence
	// over, which deserve the same note the other way round.
	overrides func(*rules.Config) []netip.Prefix
}

var (
	whitelist = &addressList{
		name:      "whitelist",
		effect:    "always allowed (checked first)",
		entries:   func(c *rules.Config) *[]netip.Prefix { return &c.WhitelistIPs },
		overrides: func(c *rules.Config) []netip.Prefix { return c.BlacklistIPs },
	}
	blacklist = &addressList{
		name:       "blacklist",
		effect:     "always blocked (unless whitelisted)",
		entries:    func(c *rules.Config) *[]netip.Prefix { return &c.BlacklistIPs },
		shadowedBy: func(c *rules.Config) []netip.Prefix { return c.WhitelistIPs },
	}
)

// listAdded and listRemoved are what `blacklist add|remove --json` print;
// every key is there, as [] when empty, so scripts need no special case.
type listAdded struct {
	Added         []string `json:"added"`
	AlreadyListed []string `json:"already_listed"`
	Entries       []string `json:"entries"` // the whole list after the change
}

type listRemoved struct {
	Removed []string `json:"removed"`
	Entries []string `json:"entries"` // the whole list after the change
}

func listEditCommand(l *addressList) *cli.Command {
	return &cli.Command{
		Name:      l.name,
		Usage:     fmt.Sprintf("add, remove or list %s addresses: %s", l.name, l.effect),
		UsageText: fmt.Sprintf("fwctl %s add|remove IP|CIDR... | fwctl %s list", l.name, l.name),
		Subcommands: []*cli.Command{
			{
				Name:      "add",
				Usage:     fmt.Sprintf("add IPs or CIDRs (v4 or v6) to the %s", l.name),
				ArgsUsage: "IP|CIDR...",
				UsageText: fmt.Sprintf("fwctl %s add IP|CIDR...", l.name),
				Action:    l.add,
			},
			{
				Name:      "remove",
				Usage:     fmt.Sprintf("remove IPs or CIDRs from the %s", l.name),
				ArgsUsage: "IP|CIDR...",
				UsageText: fmt.Sprintf("fwctl %s remove IP|CIDR...", l.name),
				Action:    l.remove,
			},
			{
				Name:      "list",
				Usage:     fmt.Sprintf("print the %s, one entry per line", l.name),
				UsageText: fmt.Sprintf("fwctl %s list [--json]", l.name),
				Action:    l.list,
			},
		},
	}
}

// args parses every argument before anything is changed: one bad address
// and the list is left alone. Repeats collapse into one.
func (l *addressList) args(c *cli.Context) ([]netip.Prefix, error) {
	if err := wantArgs(c, 1, -1, "IP or CIDR"); err != nil {
		return nil, err
	}
	ps, err := parsePrefixes(l.name+" "+c.Command.Name, c.Args().Slice())
	if err != nil {
		return nil, err
	}
	noteHostBits(globalsOf(c).errOut, c.Args().Slice(), ps)
	seen := make(map[netip.Prefix]bool, len(ps))
	uniq := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if !seen[p] {
			seen[p] = true
			uniq = append(uniq, p)
		}
	}
	return uniq, nil
}

func (l *addressList) add(c *cli.Context) error {
	ps, err := l.args(c)
	if err != nil {
		return err
	}
	g := globalsOf(c)
	var res listAdded
	var shadowed, overriding []string
	cfg, err := editConfig(g, func(cfg *rules.Config) error {
		res = listAdded{Added: []string{}, AlreadyListed: []string{}}
		shadowed, overriding = nil, nil
		list := l.entries(cfg)
		listed := entrySet(*list)
		var shadowing, overridden *verdict.PrefixSet // nil overlaps nothing
		if l.shadowedBy != nil {
			shadowing = verdict.NewPrefixSet(l.shadowedBy(cfg))
		}
		if l.overrides != nil {
			overridden = verdict.NewPrefixSet(l.overrides(cfg))
		}
		for _, p := range ps {
			if listed[p] {
				res.AlreadyListed = append(res.AlreadyListed, rules.FormatPrefix(p))
				continue
			}
			listed[p] = true
			*list = append(*list, p)
			res.Added = append(res.Added, rules.FormatPrefix(p))
			if shadowing.Overlaps(p) {
				shadowed = append(shadowed, rules.FormatPrefix(p))
			}
			if overridden.Overlaps(p) {
				overriding = append(overriding, rules.FormatPrefix(p))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, s := range shadowed {
		fmt.Fprintf(g.errOut, "fwctl: note: %s overlaps the whitelist, which is checked first: whitelisted addresses stay allowed\n", s)
	}
	for _, s := range overriding {
		fmt.Fprintf(g.errOut, "fwctl: note: %s overlaps the blacklist; the whitelist is checked first, so these addresses are now allowed\n", s)
	}
	if g.json {
		res.Entries = rules.FormatPrefixes(*l.entries(cfg))
		return writeJSON(g.out, res)
	}
	for _, s := range res.Added {
		fmt.Fprintf(g.out, "Added %s to the %s.\n", s, l.name)
	}
	for _, s := range res.AlreadyListed {
		fmt.Fprintf(g.out, "%s is already listed in the %s.\n", s, l.name)
	}
	return nil
}

func (l *addressList) remove(c *cli.Context) error {
	ps, err := l.args(c)
	if err != nil {
		return err
	}
	g := globalsOf(c)
	var res listRemoved
	cfg, err := editConfig(g, func(cfg *rules.Config) error {
		res = listRemoved{Removed: []string{}}
		list := l.entries(cfg)
		listed := entrySet(*list)
		removed := make(map[netip.Prefix]bool, len(ps))
		isRemoved := func(q netip.Prefix) bool { return removed[q] }
		for _, p := range ps {
			if !listed[p] {
				// Named against the list as the earlier arguments left it.
				return notListedError(p, slices.DeleteFunc(slices.Clone(*list), isRemoved), l.name)
			}
			delete(listed, p)
			removed[p] = true
			res.Removed = append(res.Removed, rules.FormatPrefix(p))
		}
		// Every copy goes: a hand-edited file may list one entry in
		// several spellings (10.0.0.1, 10.0.0.1/32, ::ffff:10.0.0.1),
		// and one left behind would keep it in force.
		*list = slices.DeleteFunc(*list, isRemoved)
		return nil
	})
	if err != nil {
		return err
	}
	if g.json {
		res.Entries = rules.FormatPrefixes(*l.entries(cfg))
		return writeJSON(g.out, res)
	}
	for _, s := range res.Removed {
		fmt.Fprintf(g.out, "Removed %s from the %s.\n", s, l.name)
	}
	return nil
}

// entrySet is the entries of a list, for lookups by value.
func entrySet(list []netip.Prefix) map[netip.Prefix]bool {
	set := make(map[netip.Prefix]bool, len(list))
	for _, p := range list {
		set[p] = true
	}
	return set
}

// notListedError says p is not an entry of the list, and which entry
// covers it if one does: removing an address does not carve it out of a
// listed network.
func notListedError(p netip.Prefix, list []netip.Prefix, name string) error {
	i := slices.IndexFunc(list, func(q netip.Prefix) bool { return q.Bits() < p.Bits() && q.Contains(p.Addr()) })
	if i < 0 {
		return fmt.Errorf("%s is not in the %s (nothing was removed)", rules.FormatPrefix(p), name)
	}
	return fmt.Errorf("%s is not an entry of the %s, but lies within its entry %s (nothing was removed)",
		rules.FormatPrefix(p), name, rules.FormatPrefix(list[i]))
}

func (l *addressList) list(c *cli.Context) error {
	if err := wantArgs(c, 0, 0, ""); err != nil {
		return err
	}
	g := globalsOf(c)
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	entries := rules.FormatPrefixes(*l.entries(cfg))
	if g.json {
		return writeJSON(g.out, entries)
	}
	if len(entries) == 0 {
		_, err = fmt.Fprintf(g.out, "The %s is empty.\n", l.name)
		return err
	}
	for _, e := range entries {
		if _, err := fmt.Fprintln(g.out, e); err != nil {
			return err
		}
	}
	return nil
}
