package intel

import (
	"log/slog"
	"net/netip"
	"slices"
)

// maxWithheld bounds the entries a feed remembers as refused for
// protection alone. A whitelist or the host's addresses overlap a handful
// of a feed's entries; a list that has many more inside a whitelisted
// range (hostile, or a /16 whitelisted against a list of /32s) must not
// pin that many in memory for good: 4096 cost about 220 KiB.
const maxWithheld = 4096

// withheld is what a feed's list in force lost to protection alone: the
// entries Sanitize refused because of the whitelist, the host's addresses
// or a server pfwd needs, and would have kept with nothing protected. They
// are the feed's all the same, and go into force again as soon as that
// protection goes, without a fetch: the fetcher keeps only the validators
// of the list, so the next fetch is a 304 that brings nothing back until
// the feed's content changes (a day, for a daily list).
type withheld struct {
	entries []Skipped // sorted by prefix, unique, at most maxWithheld
	// cut: more than maxWithheld were refused for protection alone, and
	// those beyond were forgotten; only a full fetch brings them back.
	cut bool
}

// withheldOf returns the entries of Sanitize's report refused for
// protection alone (see refusedForProtection).
func withheldOf(skipped []Skipped) withheld {
	var w withheld
	var refused []Skipped
	for _, s := range skipped {
		if refusedForProtection(s) {
			refused = append(refused, s)
		}
	}
	w.add(refused)
	return w
}

// add withholds more entries, keeping the list sorted, unique and bounded.
func (w *withheld) add(more []Skipped) {
	w.entries = append(w.entries, more...)
	slices.SortStableFunc(w.entries, func(a, b Skipped) int { return comparePrefix(a.Prefix, b.Prefix) })
	w.entries = slices.CompactFunc(w.entries, func(a, b Skipped) bool { return a.Prefix == b.Prefix })
	if len(w.entries) > maxWithheld {
		w.entries = slices.Clip(w.entries[:maxWithheld])
		w.cut = true
	}
}

// reprotectEverywhere brings every feed's entries in force in line with a
// change of what is protected (see reprotect): grown is what became
// protected, shrank whether anything stopped being. The Manager's
// protection is already the new one; m.mu is held.
func (m *Manager) reprotectEverywhere(grown Protected, shrank bool) {
	var refuseGrown, refuseNow *refusal
	if len(grown.Whitelist)+len(grown.Host)+len(grown.FeedServers)+len(grown.Resolvers) > 0 {
		refuseGrown = newRefusal(grown)
	}
	if shrank {
		refuseNow = newRefusal(m.protection())
	}
	if refuseGrown == nil && refuseNow == nil {
		return
	}
	for _, name := range m.order {
		m.reprotect(m.feeds[name], refuseGrown, refuseNow)
	}
}

// reprotect applies a change of what is protected to f at once, rather
// than at its next accepted fetch, an interval away or, behind a 304, a
// change of the feed's content away:
//
//   - grown (nil: nothing became protected) refuses what became
//     protected: the entries in force it refuses are dropped and
//     withheld, with a warning "dropped N entries in force: ...". Those
//     entries passed Sanitize once, so only what grown protects beyond
//     that can refuse one, for the reason Sanitize would give.
//   - now (nil: nothing stopped being protected) refuses what is
//     protected now: the withheld entries it accepts go into force again,
//     with an info "restored N entries ...", the others stay withheld
//     under the reason that holds now.
//
// Both go to OnUpdate as one new list. m.mu is held.
func (m *Manager) reprotect(f *feed, grown, now *refusal) {
	entries := f.entries
	var dropped, restored []Skipped
	if grown != nil {
		entries, dropped = refuseEntries(entries, grown)
	}
	if now != nil {
		var still []Skipped
		for _, w := range f.withheld.entries {
			if reason := now.reason(w.Prefix); reason != "" {
				still = append(still, Skipped{Prefix: w.Prefix, Reason: reason})
			} else {
				restored = append(restored, w)
			}
		}
		f.withheld.entries = still
		if f.withheld.cut && f.validators != (Validators{}) {
			// The entries forgotten may be free too: the next fetch must
			// bring the whole list, not a 304. Once per fetch is enough:
			// host addresses come and go (IPv6 temporary ones), and each
			// shrink would log again for the same fetch.
			f.validators = Validators{}
			m.event(f.cfg.Name, slog.LevelInfo, "more than %d entries were refused for protection alone: any others it no longer refuses come back with the next fetch", maxWithheld)
		}
	}
	if dropped == nil && restored == nil {
		return
	}
	f.withheld.add(dropped)
	if restored != nil {
		entries = slices.Grow(entries, len(restored))
		for _, s := range restored {
			entries = append(entries, s.Prefix)
		}
		entries = normalize(entries)
	}
	f.entries = entries
	f.state.Entries = len(entries)
	if dropped != nil {
		m.event(f.cfg.Name, slog.LevelWarn, "%s", describe("dropped %d %s in force", dropped, 5))
	}
	if restored != nil {
		m.event(f.cfg.Name, slog.LevelInfo, "%s", describe("restored %d %s refused for a protection now gone", restored, 5))
	}
	m.update(f.cfg, entries)
}

// refuseEntries splits entries into those r accepts, kept (entries itself
// when r refuses none), and those it refuses, with the reason.
func refuseEntries(entries []netip.Prefix, r *refusal) (kept []netip.Prefix, refused []Skipped) {
	for i, p := range entries {
		reason := r.reason(p)
		if reason != "" && refused == nil {
			kept = append(make([]netip.Prefix, 0, len(entries)-1), entries[:i]...)
		}
		switch {
		case reason != "":
			refused = append(refused, Skipped{Prefix: p, Reason: reason})
		case refused != nil:
			kept = append(kept, p)
		}
	}
	if refused == nil {
		return entries, nil
	}
	return kept, refused
}
