package daemon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// unopenableDB returns Options whose database cannot be opened (its
// directory is a regular file), so pfwd falls back to a temporary one.
func unopenableDB(t *testing.T) Options {
	t.Helper()
	opts := testOptions(t, `{"default_policy": "allow"}`)
	notADir := filepath.Join(filepath.Dir(opts.DBPath), "not-a-directory")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opts.DBPath = filepath.Join(notADir, "firewall.db")
	return opts
}

// The start-up line names the database pfwd writes, the temporary one
// after a fallback, not the configured one it could not open.
func TestStartedLineNamesTheTemporaryDatabase(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	d, log := startedDaemon(t, unopenableDB(t))
	tmp := d.store.Path()
	if !strings.HasPrefix(filepath.Base(filepath.Dir(tmp)), "pfwd-db-") {
		t.Fatalf("pfwd writes %s, want a temporary database", tmp)
	}
	for line := range strings.Lines(log.String()) {
		if strings.Contains(line, "pfwd started") && !strings.Contains(line, " db="+tmp) {
			t.Errorf("the start-up line does not name the temporary database %s:\n%s", tmp, line)
		}
	}
	if !strings.Contains(log.String(), "pfwd started") {
		t.Errorf("no start-up line:\n%s", log.String())
	}
}
