package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/rules"
)

// applyWait is how long an edit waits for the running pfwd to apply it.
// pfwd sees the file within 150 ms and applies it in milliseconds (about
// a second for 100,000 entries); past this something is wrong, unless
// pfwd says a reload is under way (lists of a million addresses take
// seconds): then the edit waits for it, up to reloadWait.
const (
	applyWait  = 3 * time.Second
	reloadWait = 2 * time.Minute
	// queryWait bounds one status question. pfwd answers in milliseconds,
	// even during a large reload.
	queryWait = time.Second
)

// pfwdWatch notes, before an edit, whether a pfwd runs on this config, so
// that after the edit fwctl can tell whether the change reached the
// kernel: an edit pfwd could not apply must not pass in silence.
type pfwdWatch struct {
	g       *globals
	running bool
	before  []byte
	// inForce is the digest of the config pfwd held before the edit.
	inForce string
	// status is pfwd's answer before the edit, when it runs on the file.
	status control.Status
	// silent is set when something holds the control socket but did not
	// answer (a hung or stopped pfwd): whether it runs on this file, and
	// will apply the edit, is unknown, and the user must hear so.
	silent bool
}

func watchPfwd(g *globals) pfwdWatch {
	w := pfwdWatch{g: g}
	w.before, _ = rules.ReadFile(g.config)
	st, onConfig, err := pfwdOnConfig(g)
	if !onConfig {
		// No pfwd, or one that reads another file: nothing to wait for.
		w.silent = noAnswer(err)
		return w
	}
	w.running, w.inForce, w.status = true, st.ConfigDigest, st
	return w
}

// pfwdOnConfig asks the pfwd on g.socket, within queryWait, for its status
// and reports whether it runs on g.config; err is why it could not tell.
func pfwdOnConfig(g *globals) (st control.Status, onConfig bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), queryWait)
	defer cancel()
	st, err = control.Query(ctx, g.socket)
	if err != nil || !st.Running || !samePath(st.ConfigPath, g.config) {
		return st, false, err
	}
	return st, true, nil
}

// noAnswer reports whether a failed status query met a socket that takes
// connections but no answer in time: a pfwd that is hung or stopped
// (kill -STOP; the kernel still queues connections for it), or no answer
// fwctl can trust (control.ErrNotPfwd: another user's process took the
// path, and a pfwd may still run behind it). No socket file or a refused
// connection is no pfwd at all (control.ErrNotRunning).
func noAnswer(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) || errors.Is(err, control.ErrNotPfwd)
}

// configMissing is the refusal for a config file that is gone while a pfwd
// still runs on it (deleted by mistake: pfwd keeps the rules it last
// loaded and reports the failed reload). Showing the embedded default
// would misstate the rules in force, and creating the file from it would
// have pfwd replace every custom rule, the policy and the lists with the
// default's: the firewall would open. So fwctl reads and edits nothing
// until the file is back, or pfwd is stopped and the default is what a
// new start enforces anyway.
func configMissing(g *globals, st control.Status) error {
	return fmt.Errorf("%s is missing, but pfwd (pid %d) still enforces the config it last loaded from it; "+
		"restore the file (pfwd applies it within a second), or stop pfwd to start over from the default config", g.config, st.PID)
}

// configMissingUnanswered is configMissing when something holds the
// control socket but does not answer (a pfwd hung or stopped): it may run
// on the missing file, and once it answers again it would apply a default
// created now, so fwctl refuses as if it did.
func configMissingUnanswered(g *globals) error {
	return fmt.Errorf("%s is missing, and the pfwd on %s does not answer, so it may still enforce the config it last loaded from it; "+
		"restore the file, or stop pfwd to start over from the default config", g.config, g.socket)
}

// confirm waits until pfwd applied the edit, saved as the config saved,
// and warns on stderr when it did not: the file is changed either way (the
// exit code says so), but the rules in force are not yet the file's.
// "Applied" means the config in force has the saved config's digest
// (rules.Digest): pfwd skips a reload that changes nothing, such as an
// edit that only rewrote a hand-formatted file in fwctl's layout, so the
// time it last loaded is no answer. The digest is taken once, from the
// config the edit saved: loading the file again on every poll would cost
// seconds of CPU each with a million-entry list.
//
// When pfwd did not answer before the edit, confirm cannot wait for it,
// and warns that whether the change is in force is unknown.
func (w pfwdWatch) confirm(saved *rules.Config) {
	if !w.running && !w.silent {
		return
	}
	if after, err := rules.ReadFile(w.g.config); err == nil && bytes.Equal(after, w.before) {
		return // nothing changed, nothing to apply
	}
	if w.silent {
		fmt.Fprintf(w.g.errOut, "fwctl: warning: the file is changed, but pfwd did not answer on %s within %v, "+
			"so whether the running firewall applied the change is unknown (`fwctl status`)\n", w.g.socket, queryWait)
		return
	}
	want := rules.Digest(saved)
	start := time.Now()
	deadline, extended := start.Add(applyWait), false
	seen := w.inForce
	var st control.Status
	for {
		ctx, cancel := context.WithTimeout(context.Background(), queryWait)
		var err error
		st, err = control.Query(ctx, w.g.socket)
		cancel()
		if err != nil {
			fmt.Fprintf(w.g.errOut, "fwctl: warning: could not ask pfwd whether it applied the change: %v\n", err)
			return
		}
		if st.ConfigDigest == want {
			return
		}
		if st.ConfigDigest != seen { // pfwd applied something, not this edit
			seen = st.ConfigDigest
			if w.superseded(want, seen) {
				return
			}
		}
		if now := time.Now(); now.After(deadline) {
			if !st.Reload.InProgress || now.Sub(start) >= reloadWait {
				break
			}
			deadline, extended = now.Add(time.Second), true // a large change: wait while pfwd applies it
		}
		time.Sleep(50 * time.Millisecond)
	}
	waited := applyWait
	if extended {
		waited = time.Since(start).Round(time.Second)
	}
	if st.Reload.InProgress {
		fmt.Fprintf(w.g.errOut, "fwctl: warning: the file is changed; pfwd is still applying it after %v (`fwctl status` shows when it is done)\n", waited)
		return
	}
	why := "`fwctl status` and pfwd's log say why"
	if st.ReloadError != "" {
		why = st.ReloadError
	}
	fmt.Fprintf(w.g.errOut, "fwctl: warning: the file is changed, but pfwd has not applied it within %v (it retries): %s\n", waited, why)
}

// superseded reports whether another edit replaced this one (digest
// want) in the file, and pfwd applied that one (digest inForce): pfwd may
// go straight to the newer file, so this edit's digest is never in force,
// yet nothing is left to apply. It loads the file, so confirm asks only
// when the digest in force changes, which is once per reload.
func (w pfwdWatch) superseded(want, inForce string) bool {
	cfg, err := rules.Load(w.g.config)
	if err != nil {
		return false
	}
	d := rules.Digest(cfg)
	return d != want && d == inForce
}

// samePath reports whether two paths name the same file, through
// symlinks and relative paths.
func samePath(a, b string) bool {
	return resolve(a) == resolve(b)
}

func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	if abs, err := filepath.Abs(p); err == nil {
		p = abs
	}
	return p
}
