package nft

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// The table's shape: its chains (hook, priority, policy) with a digest of
// each rule, in order, and its sets, as text. Firewall records it after
// each change it makes, and Repair compares it with the kernel's, so a
// rule replaced by another (`nft replace rule … accept`) is caught like
// one deleted. Set elements are not part of it: Repair reads them
// (setsIntact) only once the ruleset generation says somebody else
// committed something, since dumping a hundred thousand of them at every
// check would cost more than it guards.
func (fw *Firewall) shapeLocked() (string, error) {
	t, err := fw.findTable()
	if err != nil || t == nil {
		return "", err
	}
	chains, err := fw.conn.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("list chains: %w", err)
	}
	var parts []string
	for _, c := range chains {
		if c.Table.Name != fw.cfg.Table {
			continue
		}
		rules, err := fw.conn.GetRules(fw.table, &nftables.Chain{Name: c.Name, Table: fw.table})
		if err != nil {
			return "", fmt.Errorf("read rules of chain %s: %w", c.Name, err)
		}
		part := fmt.Sprintf("chain %s hook %s priority %s policy %s type %s rules %d:",
			c.Name, orNone(c.Hooknum), orNone(c.Priority), orNone(c.Policy), c.Type, len(rules))
		for _, r := range rules {
			part += " " + ruleDigest(r)
		}
		parts = append(parts, part)
	}
	sets, err := fw.conn.GetSets(fw.table)
	if err != nil {
		return "", fmt.Errorf("list sets: %w", err)
	}
	for _, s := range sets {
		if !s.Anonymous {
			parts = append(parts, "set "+s.Name)
		}
	}
	slices.Sort(parts)
	return strings.Join(parts, "\n"), nil
}

// ruleDigest identifies a rule by its comment and expressions, as the
// kernel returned them (both shapes Repair compares are read back, so
// decoding and encoding again is the same on both sides).
func ruleDigest(r *nftables.Rule) string {
	h := sha256.New()
	h.Write(r.UserData)
	for _, e := range r.Exprs {
		b, err := expr.Marshal(byte(nftables.TableFamilyINet), e)
		if err != nil {
			fmt.Fprintf(h, "%T: %v", e, err)
			continue
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

func orNone[T any](p *T) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprint(*p)
}

// recordShape notes the table's shape after a change fw made (fw.mu held).
// It is used only with FailClosed; a failure to read leaves the old shape,
// so the next Repair looks closer.
func (fw *Firewall) recordShape() {
	if !fw.cfg.FailClosed {
		return
	}
	if s, err := fw.shapeLocked(); err == nil && s != "" {
		fw.shape = s
	}
}

// Repair puts the table back when something other than fw removed or
// changed it, and reports whether it did. In the default mode the table is
// owned by fw's socket and the kernel lets no one else touch it (not even
// `nft flush ruleset`, which skips it), so there is nothing to repair. With
// FailClosed the table is an ordinary one: `nft flush ruleset` (as
// nftables.service runs on every start and reload) deletes it, and traffic
// then flows unfiltered while pfwd believes it decides it. Repair then
// installs the ruleset again, with the sets as fw last left them and the
// fast path's current generation, in one transaction that also deletes
// what is left of the damaged table. The rate-limit guard's sets come
// back empty; the guard holds sources again as the limiter refuses them.
//
// The check itself is one request while nobody else commits anything to
// nftables (the ruleset generation is the one fw's last commit made).
// After a commit by anyone it compares the table's shape and the
// elements of its list sets with what fw put there, so `nft delete
// element` on a blacklist is undone like `nft flush ruleset`.
func (fw *Firewall) Repair() (bool, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	defer fw.publish() // a repair may have turned the fast path off
	if !fw.cfg.FailClosed || fw.usable() != nil {
		return false, nil
	}
	var gen uint32
	genErr := errors.New("nft: ruleset generation not tracked")
	if fw.gen != nil {
		gen, genErr = fw.gen.read() // before the checks: a commit during them shows next time
		if genErr == nil && fw.genKnown && gen == fw.genID {
			return false, nil
		}
	}
	now, err := fw.shapeLocked()
	if err != nil {
		return false, fmt.Errorf("nft: check table inet %s: %w", fw.cfg.Table, err)
	}
	intact := now == fw.shape
	if intact && fw.gen != nil {
		if intact, err = fw.setsIntact(); err != nil {
			return false, fmt.Errorf("nft: check table inet %s: %w", fw.cfg.Table, err)
		}
	}
	if intact {
		// Somebody else's commit, to another table or to nothing of
		// fw's: no need to look again until the next one.
		fw.genID, fw.genKnown = gen, genErr == nil
		return false, nil
	}
	label := -1
	if fw.fast.supported {
		label = labelBits[fw.fast.gen]
	}
	if err := fw.installRuleset(fw.ranges, fw.queueMode, label, now != "", false); err != nil {
		return true, fmt.Errorf("nft: repair table inet %s: %w", fw.cfg.Table, err)
	}
	if fw.fast.armed {
		// The established rule already labels with the current bit; the
		// fast-path rule, which needs the new rules' handles, follows.
		// Flows labelled before the damage passed these same lists.
		err := fw.switchRules(fw.fast.gen, true)
		if err != nil {
			err = fw.fail(err)
		} else {
			err = fw.flush()
		}
		if err != nil {
			// The table is back, without the fast path: every flow is
			// then checked against the lists, which is slower, not wrong.
			fw.fast.armed, fw.fast.off = false, fmt.Errorf("fast path off: repair: %w", err)
		}
	}
	fw.recordShape()
	return true, nil
}

// setsIntact reports whether the list sets hold what fw last put in them.
func (fw *Firewall) setsIntact() (bool, error) {
	for name, want := range fw.ranges {
		elems, err := fw.conn.GetSetElements(fw.sets[name])
		if err != nil {
			return false, fmt.Errorf("read set %s: %w", name, err)
		}
		if !slices.Equal(rangesFromElements(elems), want) {
			return false, nil
		}
	}
	return true, nil
}
