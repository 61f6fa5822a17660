package rules

import (
	"strconv"
	"strings"
	"time"
)

// MaxDuration bounds a duration ParseDuration reads, all its parts
// together, so that their sum stays far from overflowing a Duration (292
// years): no log is that old, and no feed waits that long.
const MaxDuration = 100 * 365 * 24 * time.Hour

// ParseDuration is time.ParseDuration plus the units an age or an interval
// is usually given in: d (24 h) and w (7 d), in front of any Go duration
// ("1w2d", "1d12h"). Days are 24 hours: the log's timestamps are UTC. It
// reports false for anything else, or over MaxDuration.
func ParseDuration(s string) (time.Duration, bool) {
	rest, neg := s, false
	if r, ok := strings.CutPrefix(rest, "-"); ok {
		rest, neg = r, true
	}
	var d time.Duration
	days := false
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"w", 7 * 24 * time.Hour}, {"d", 24 * time.Hour}} {
		i := strings.Index(rest, u.suffix)
		if i <= 0 {
			continue
		}
		// A century at most, with the parts before: a century for
		// each part let "5214w36500d876000h" overflow into a negative
		// age, and its "-" form into one 284 years back.
		n, err := strconv.ParseUint(rest[:i], 10, 16)
		if err != nil || time.Duration(n) > (MaxDuration-d)/u.unit {
			return 0, false
		}
		d += time.Duration(n) * u.unit
		rest, days = rest[i+1:], true
	}
	if rest != "" || !days {
		more, err := time.ParseDuration(rest)
		if err != nil {
			return 0, false
		}
		if more < 0 || more > MaxDuration-d {
			return 0, false // "1d-2h", or over a century in all
		}
		d += more
	}
	if neg {
		d = -d
	}
	return d, true
}
