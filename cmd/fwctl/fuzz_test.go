package main

import (
	"flag"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/pfw/pfw/rules"
)

// FuzzParseSince feeds parseSince what a user may give --since: an age
// (rules.ParseDuration) or a time. An age never comes out with the other sign than
// it was written with, whatever its size (a Duration overflows at 292
// years), and stays within rules.MaxDuration; so an accepted age points at most a
// century into the past, never into the future. A time or an error, never
// both; the error quotes what was typed.
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{
		"1h", "90s", "2d", "1w", "1w2d", "1d12h", "0d", "5200w", " 30m ", "-2d", "1d-2h", "2dd", "d", "",
		"5214w36500d876000h", "-5214w36500d876000h", "36500d876000h", "65535w", "1w1000000h", "+1h", "-+1h",
		"2026-11-25 14:00", "2026-11-25 14:00:01.500", "2026-11-25T14:00:01", "2026-11-25",
		"2026-11-25T15:00:00+01:00", "9999-12-31T23:59:59Z", "yesterday", "1.5d", "1e3h",
	} {
		f.Add(s)
	}
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		if d, ok := rules.ParseDuration(strings.TrimSpace(s)); ok {
			if neg := strings.HasPrefix(strings.TrimSpace(s), "-"); (neg && d > 0) || (!neg && d < 0) {
				t.Fatalf("ParseDuration(%q) = %v: the sign changed", s, d)
			}
			if d > rules.MaxDuration || d < -rules.MaxDuration {
				t.Fatalf("ParseDuration(%q) = %v, beyond %v", s, d, rules.MaxDuration)
			}
		}
		got, err := parseSince(s, now)
		if err != nil {
			if !got.IsZero() {
				t.Fatalf("parseSince(%q) = %v and error %v", s, got, err)
			}
			if msg := err.Error(); !strings.Contains(msg, strconv.Quote(strings.TrimSpace(s))) {
				t.Fatalf("parseSince(%q) error does not quote it: %s", s, msg)
			}
			return
		}
		if d, ok := rules.ParseDuration(strings.TrimSpace(s)); ok {
			if got.After(now) || got.Before(now.Add(-rules.MaxDuration)) || !got.Equal(now.Add(-d)) {
				t.Fatalf("parseSince(%q) = %v: not %v before %v", s, got, d, now)
			}
		}
	})
}

// FuzzRuleFromFlags feeds `fwctl add NAME ACTION` every value its flags
// take (--protocol, --ports, --src-ips, --direction, set or left out, as
// set says bit by bit) through the command's own flag definitions. A
// refusal names the argument or flag at fault; a rule it builds has one
// port range per --ports item and one prefix per --src-ips item, and is
// saved and read back unchanged, so what fwctl reports adding is what the
// file holds and pfwd applies.
func FuzzRuleFromFlags(f *testing.F) {
	f.Add("SSH", "allow", "tcp", "22", "10.0.0.0/8,2001:db8::/32", "in", uint8(0xff))
	f.Add("Block Telnet and SMB", "block", "tcp", "23,445", "", "in", uint8(0b0011))
	f.Add("Game servers", "ALLOW", "UDP", "27000-27050", "198.51.100.0/24", "Out", uint8(0xff))
	f.Add("  spaced  ", "block", "any", "any", "any", "in", uint8(0xff))
	f.Add("ping", "block", "icmp", "1", "", "in", uint8(0b0011))
	f.Add("x", "block", "tcp", "22,,23", "", "in", uint8(0b0011))
	f.Add("x", "block", "tcp", "", "", "in", uint8(0b0011))
	f.Add("x", "block", "tcp", "-1", "", "in", uint8(0b0011))
	f.Add("x", "block", "tcp", "8000-", "", "in", uint8(0b0011))
	f.Add("x", "block", "tcp", "1-65535", "::ffff:192.0.2.1,192.0.2.9/24", "out", uint8(0xff))
	f.Add("x", "deny", "tcp", "22", "", "in", uint8(0))
	f.Add("bad\xff", "block", "any", "", "", "in", uint8(0))
	f.Add("", "block", "any", "", "", "in", uint8(0))
	f.Add("x", "block", "sctp", "", "fe80::1%eth0", "both", uint8(0xff))
	f.Fuzz(func(t *testing.T, name, action, protocol, ports, srcIPs, direction string, set uint8) {
		c, ok := addContext(name, action, map[string]string{"protocol": protocol, "ports": ports, "src-ips": srcIPs, "direction": direction}, set)
		if !ok {
			return
		}
		r, err := ruleFromFlags(c)
		if err != nil {
			msg := err.Error()
			if !slices.ContainsFunc([]string{"NAME: ", "add: ACTION: ", "add: --protocol: ", "add: --direction: ", "--ports", "--src-ips"},
				func(place string) bool { return strings.HasPrefix(msg, place) }) {
				t.Fatalf("error %q names no argument or flag", msg)
			}
			return
		}
		if r.Name != strings.TrimSpace(name) || !r.Enabled {
			t.Fatalf("rule %+v from NAME %q", r, name)
		}
		if want := listItems(c, "ports"); len(r.Ports) != want {
			t.Fatalf("--ports %q gave %d port ranges, want %d", c.String("ports"), len(r.Ports), want)
		}
		if want := listItems(c, "src-ips"); len(r.SrcIPs) != want {
			t.Fatalf("--src-ips %q gave %d prefixes, want %d", c.String("src-ips"), len(r.SrcIPs), want)
		}
		cfg := &rules.Config{DefaultPolicy: rules.ActionAllow, RateLimit: rules.RateLimit{MaxConnections: 100, WindowSeconds: 10},
			Rules: []rules.Rule{r}}
		data, err := rules.Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal: %v", err)
		}
		back, err := rules.Parse(data)
		if err != nil {
			t.Fatalf("the rule fwctl add built (%+v) is saved as a config Parse refuses: %v\n%s", r, err, data)
		}
		got := back.Rules[0]
		if got.Name != r.Name || got.Action != r.Action || got.Protocol != r.Protocol || got.Direction != r.Direction ||
			got.Enabled != r.Enabled || !slices.Equal(got.Ports, r.Ports) || !slices.Equal(got.SrcIPs, r.SrcIPs) {
			t.Fatalf("rule %+v reads back as %+v", r, got)
		}
	})
}

// addContext is the cli.Context `fwctl add NAME ACTION` runs with, the
// flags whose bit is set in set given their value; ok is false when the
// flag package itself refuses the line.
func addContext(name, action string, values map[string]string, set uint8) (*cli.Context, bool) {
	cmd := addCommand()
	fs := flag.NewFlagSet("add", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var args []string
	for i, fl := range cmd.Flags {
		if err := fl.Apply(fs); err != nil {
			panic(err)
		}
		if v, ok := values[fl.Names()[0]]; ok && set&(1<<i) != 0 {
			args = append(args, "--"+fl.Names()[0]+"="+v)
		}
	}
	if err := fs.Parse(append(args, "--", name, action)); err != nil {
		return nil, false
	}
	c := cli.NewContext(cli.NewApp(), fs, nil)
	c.Command = cmd
	return c, true
}

// listItems is how many items the list flag holds: none when it is left
// out or says any.
func listItems(c *cli.Context, flag string) int {
	s := strings.TrimSpace(c.String(flag))
	if !c.IsSet(flag) || strings.EqualFold(s, "any") {
		return 0
	}
	return strings.Count(s, ",") + 1
}
