package main

import (
	"cmp"
	"context"
	"fmt"
	"io"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/store"
	"github.com/urfave/cli/v2"
)

// dbChoice is the database logs, stats, threats and explain read. A pfwd
// that cannot open its database (a read-only file system, a full disk)
// logs to a temporary one beside its socket until it restarts: reading the
// configured file then shows a stale log, or a 0-byte file "not set up"
// while pfwd runs. So when the pfwd on the socket says it could not open
// the default database, fwctl reads the one pfwd logs to, and says so. A
// file named with --db or $PFW_DB is read as asked, with a warning naming
// the database pfwd writes when pfwd could not open that file.
type dbChoice struct {
	path string // the file to read
	// note, when path is pfwd's temporary database, says fwctl reads it
	// rather than the configured one.
	note string
	// warning, when --db or $PFW_DB named the file pfwd could not open,
	// says where pfwd logs instead.
	warning string
}

// chooseDB asks the pfwd on g.socket, within queryWait, where it logs,
// and picks the database to read (dbChoice). No answer is no pfwd to follow:
// g.db is read as ever.
func chooseDB(c *cli.Context, g *globals) dbChoice {
	ctx, cancel := context.WithTimeout(c.Context, queryWait)
	defer cancel()
	st, err := control.Query(ctx, g.socket)
	rows := st.LogRows
	if err != nil || !st.Running || rows.Fallback == "" || rows.Database == "" || !samePath(rows.Configured, g.db) {
		return dbChoice{path: g.db}
	}
	if c.IsSet("db") { // --db or $PFW_DB
		return dbChoice{path: g.db, warning: fmt.Sprintf("pfwd (pid %d) could not open %s and logs to a temporary database until it restarts: --db %s reads it",
			st.PID, g.db, rows.Database)}
	}
	return dbChoice{path: rows.Database, note: fmt.Sprintf("pfwd (pid %d) could not open %s and logs to a temporary database until it restarts: reading %s",
		st.PID, g.db, rows.Database)}
}

// open opens the database read-only and writes its note or warning on
// stderr; an error carries them instead, on its one line.
func (d dbChoice) open(g *globals) (*store.Store, error) {
	s, err := store.OpenReader(d.path)
	if err != nil {
		if why := cmp.Or(d.warning, d.note); why != "" {
			return nil, fmt.Errorf("%w; %s", err, why)
		}
		return nil, err
	}
	d.tell(g.errOut)
	return s, nil
}

// tell writes the note or warning, if any.
func (d dbChoice) tell(w io.Writer) {
	switch {
	case d.warning != "":
		fmt.Fprintf(w, "fwctl: warning: %s\n", d.warning)
	case d.note != "":
		fmt.Fprintf(w, "fwctl: note: %s\n", d.note)
	}
}
