// Package rules is pfw's configuration: the firewall_rules.json schema, its
// strict parser and validator, the embedded default, and atomic saving.
//
// Invariant: a *Config that this package hands out has passed validation,
// and a file that this package writes parses back to the same Config. Every
// error names the place it was found (`rules[2].ports[0]: 70000 is not a
// port (1-65535)`), and a failed or invalid edit leaves the file on disk
// byte-for-byte unchanged: Update takes an exclusive lock, validates the
// edited Config, writes a temporary file in the same directory, fsyncs it
// and renames it over the old one.
//
// A feed's url is checked by ParseFeedURL, which the intel package applies
// too before every fetch: a config Parse accepts never holds a feed URL the
// daemon refuses (https or http with a host, file:///absolute/path; no host
// but localhost, user, query or fragment in a file URL).
//
// The package knows nothing of packets. The verdict package compiles a
// Config into lookup structures; the daemon and fwctl load and save it here,
// at DefaultPath unless told otherwise.
package rules
